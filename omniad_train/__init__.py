"""omniad_train: data preparation, SFT and GRPO on TRL with DeepSpeed.

- :func:`omniad_train.data.prepare` builds SFT and GRPO datasets from MMAD, MVTec-style
  folders and JSONL records (``omniad-train prepare``).
- :mod:`omniad_train.sft` and :mod:`omniad_train.grpo` hold the open-r1 style entry
  points ``main(script_args, training_args, model_args)`` (``omniad-train sft|grpo``).
- ``omniad_train/recipes/`` holds YAML recipes, DeepSpeed and accelerate configs.

Importing this package is cheap: torch, transformers and TRL load when training starts.
"""

from omniad_train.config import OmniADScriptArguments, RecipeError, parse_recipe

__all__ = ["OmniADScriptArguments", "RecipeError", "parse_recipe"]
