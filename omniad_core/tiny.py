"""Moved: the tiny offline Qwen2.5-VL builder is :mod:`omniad_train.tiny`.

It is a fixture for tests and the demo, which live in the training layer, and the core
never imports the training layer.  Importing a name from here raises an ``ImportError``
that says where it went::

    from omniad_train.tiny import TinyConfig, build_tiny_qwen2_5_vl   # pip install 'omniad[train]'
"""

from __future__ import annotations

__all__: list[str] = []


def __getattr__(name: str) -> object:
    if name.startswith("__"):
        raise AttributeError(name)
    raise ImportError(
        f"omniad_core.tiny.{name} moved to omniad_train.tiny: write "
        f"`from omniad_train.tiny import {name}` (it needs the training extras: "
        "pip install 'omniad[train]')"
    )
