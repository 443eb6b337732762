"""Supervised fine-tuning on prepared OmniAD data with TRL's ``SFTTrainer``.

    omniad-train sft --config tiny_cpu/sft [--key value ...]

Completion-only loss (the prompt and images are context), full fine-tuning or LoRA
(``use_peft: true`` with TRL's ``ModelConfig`` LoRA fields), DeepSpeed through
``deepspeed: path/to/zero.json`` or an accelerate config.  Checkpoints and the final
model are safetensors with the processor and ``omniad.json``, so
``omniad_core.Inspector.from_pretrained`` loads any of them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from omniad_train.config import (
    SFT_COLUMNS,
    OmniADScriptArguments,
    apply_defaults,
    check_args,
    check_dataset,
    dataset_spec,
    parse_recipe,
)
from omniad_train.modeling import load_splits, resume_target, train_and_save
from omniad_train.planner.report import startup_checks

__all__ = ["cli", "main"]

log = logging.getLogger(__name__)


def main(script_args: OmniADScriptArguments, training_args: Any, model_args: Any) -> Any:
    """Run SFT; returns the trainer (after training and saving).

    Every check runs before any model loads: the arguments (:func:`check_args`), the
    dataset against the recipe, the plan's checks (batch, lengths, packages, memory:
    :func:`omniad_train.planner.report.startup_checks`; warnings are printed), the
    checkpoint to resume from.  Checkpoints record the dataset's prompt spec
    (:func:`dataset_spec`) in their ``omniad.json``.
    """
    from omniad_core._quiet import quiet_known_noise

    quiet_known_noise()  # known library noise only (omniad_core._quiet)
    from trl import SFTTrainer

    apply_defaults(script_args, training_args, model_args)
    check_args(script_args, training_args, model_args)
    folder = check_dataset(script_args, "sft", SFT_COLUMNS)  # before any model loads
    spec = dataset_spec(script_args)
    startup_checks(script_args, training_args, model_args, "sft")
    resume = resume_target(training_args)
    train, evaluation = load_splits(script_args, folder, SFT_COLUMNS)
    training_args.completion_only_loss = True
    training_args.remove_unused_columns = False
    log.info("SFT on %d examples from %s", len(train), folder)
    return train_and_save(
        SFTTrainer, script_args, training_args, model_args, train, evaluation, resume, spec
    )


def cli(argv: Sequence[str] | None = None) -> Any:
    """Parse a recipe and run :func:`main`."""
    from trl import SFTConfig

    return main(*parse_recipe(SFTConfig, argv))
