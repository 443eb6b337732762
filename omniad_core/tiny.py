"""Moved: the tiny offline Qwen2.5-VL builder is :mod:`omniad_train.tiny`.

It is a fixture for tests and the demo, which live in the training layer, and the core
never imports the training layer.  Importing a name from here raises an ``ImportError``
that says where it went::

    from omniad_train.tiny import TinyConfig, build_tiny_qwen2_5_vl   # pip install 'omniad[train]'
"""

from __future__ import annotations

__all__: list[str] = []

#: The public names the module had; asking for one says where it went.
_MOVED = frozenset(
    {
        "DEFAULT_SYSTEM_PROMPT",
        "QWEN_SPECIAL_TOKENS",
        "TinyConfig",
        "build_processor",
        "build_tiny_qwen2_5_vl",
        "build_tokenizer",
        "default_corpus",
        "load_tiny",
        "qwen_processor_available",
        "train_bpe",
    }
)


def __getattr__(name: str) -> object:
    if name not in _MOVED:  # tools probe modules for attributes (pytest, doctest, IDEs)
        raise AttributeError(f"module 'omniad_core.tiny' has no attribute {name!r}")
    if name == "DEFAULT_SYSTEM_PROMPT":
        raise ImportError(
            "omniad_core.tiny.DEFAULT_SYSTEM_PROMPT is gone: use "
            "`from omniad_core.prompts import SYSTEM_PROMPT` (the same text)"
        )
    raise ImportError(
        f"omniad_core.tiny.{name} moved to omniad_train.tiny: write "
        f"`from omniad_train.tiny import {name}` (it needs the training extras: "
        "pip install 'omniad[train]')"
    )
