"""The ``script_args`` of a recipe: what to train on and how the rewards score.

:class:`OmniADScriptArguments` is the first of the three dataclasses that
:class:`trl.TrlParser` fills from a recipe (the others are TRL's ``SFTConfig`` or
``GRPOConfig`` and ``ModelConfig``).  Each field's ``help`` is what ``--help`` prints;
each value is checked against its rule in
:data:`omniad_train.recipe_checks.SCRIPT_RULES` when the dataclass is built.

>>> OmniADScriptArguments(grid=16).grid
16
>>> OmniADScriptArguments(reward_level="region")
Traceback (most recent call last):
...
omniad_train.recipe_checks.RecipeError: reward_level = 'region' in the arguments is invalid: expected one of 'pixel', 'cell'
"""

from __future__ import annotations

from dataclasses import dataclass, field

from omniad_train.recipe_checks import SCRIPT_RULES, check_fields

__all__ = ["OmniADScriptArguments"]


@dataclass
class OmniADScriptArguments:
    """What to train on and how the rewards score (the ``script_args`` of a recipe)."""

    dataset_path: str = field(
        default="",
        metadata={
            "help": "Folder written by `omniad-train prepare` (holds sft/, grpo/, manifest.json)."
        },
    )
    dataset_train_split: str = field(default="train", metadata={"help": "Split to train on."})
    dataset_test_split: str | None = field(
        default=None, metadata={"help": "Split to evaluate on (None: no evaluation)."}
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Use only the first N training rows (quick runs)."}
    )
    global_batch_size: int | None = field(
        default=None,
        metadata={
            "help": "The batch of one optimizer step, on any number of GPUs: samples for SFT, "
            "completions for GRPO (prompts per step x num_generations). "
            "per_device_train_batch_size and gradient_accumulation_steps are derived from it "
            "and the world size (None: use them as given)."
        },
    )
    max_per_device_batch: int | None = field(
        default=None,
        metadata={
            "help": "Largest per-device batch the derivation from global_batch_size may pick "
            "(a memory cap); the rest becomes gradient accumulation (None: no cap)."
        },
    )
    grid: int = field(
        default=24, metadata={"help": "Grid size; must equal the prepared data's grid."}
    )
    image_size: int = field(
        default=512, metadata={"help": "Image side; must equal the prepared data's image size."}
    )
    freeze_vision_tower: bool = field(
        default=False,
        metadata={
            "help": "Train the vision tower's patch embedding and blocks or keep them fixed "
            "(the merger that projects into the language model always trains)."
        },
    )
    alpha: float = field(default=2.0, metadata={"help": "Detection reward: alpha * F1 (paper: 2)."})
    answer_correct: float = field(default=1.0, metadata={"help": "Answer reward when right."})
    answer_wrong: float = field(default=0.1, metadata={"help": "Answer reward when wrong."})
    reward_level: str = field(
        default="pixel",
        metadata={"help": "Detection F1 on mask pixels ('pixel') or grid cells ('cell')."},
    )

    def __post_init__(self) -> None:
        check_fields(self, SCRIPT_RULES, {}, "in the arguments")
