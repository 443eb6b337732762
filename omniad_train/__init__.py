"""omniad_train: data preparation, SFT and GRPO on TRL with DeepSpeed.

- :func:`omniad_train.data.prepare` builds SFT and GRPO datasets from MMAD, MVTec-style
  folders and JSONL records (``omniad-train prepare``).
- :mod:`omniad_train.sft` and :mod:`omniad_train.grpo` hold the open-r1 style entry
  points ``main(script_args, training_args, model_args)`` (``omniad-train sft|grpo``).
- ``omniad_train/recipes/`` holds YAML recipes, DeepSpeed and accelerate configs; they are
  addressable by name (``--config qwen2_5_vl_7b/sft``, ``omniad-train recipes``).

Importing this package is cheap: its names load on first use, and torch, transformers
and TRL load when training starts (so ``omniad-train COMMAND --help`` starts fast).
"""

from __future__ import annotations

from typing import Any

__all__ = ["OmniADScriptArguments", "RecipeError", "parse_recipe"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from omniad_train import config

        return getattr(config, name)
    raise AttributeError(f"module 'omniad_train' has no attribute {name!r}")
