"""Supervised fine-tuning on prepared OmniAD data with TRL's ``SFTTrainer``.

    omniad-train sft --config recipes/tiny_cpu/sft.yaml [--key value ...]

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

from omniad_train.config import SFT_COLUMNS, OmniADScriptArguments, check_dataset, parse_recipe
from omniad_train.modeling import load_model_and_processor, resume_target, save_final, spec_callback

__all__ = ["cli", "main"]

log = logging.getLogger(__name__)


def main(script_args: OmniADScriptArguments, training_args: Any, model_args: Any) -> Any:
    """Run SFT; returns the trainer (after training and saving)."""
    from datasets import load_from_disk
    from trl import SFTTrainer, get_peft_config

    folder = check_dataset(script_args, "sft", SFT_COLUMNS)  # before any model loads
    resume = resume_target(training_args)
    data = load_from_disk(str(folder))
    keep = list(SFT_COLUMNS)
    train = data[script_args.dataset_train_split].select_columns(keep)
    if script_args.max_train_samples:
        train = train.select(range(min(script_args.max_train_samples, len(train))))
    evaluation = None
    if script_args.dataset_test_split:
        evaluation = data[script_args.dataset_test_split].select_columns(keep)

    training_args.completion_only_loss = True
    training_args.remove_unused_columns = False
    model, processor = load_model_and_processor(
        model_args, training_args, training_args.trust_remote_code
    )
    trainer = SFTTrainer(
        model=model,
        args=training_args,
        train_dataset=train,
        eval_dataset=evaluation,
        processing_class=processor,
        peft_config=get_peft_config(model_args),
        callbacks=[spec_callback(script_args, processor)],
    )
    log.info("SFT on %d examples from %s", len(train), folder)
    trainer.train(resume_from_checkpoint=resume)
    save_final(trainer, processor, script_args)
    return trainer


def cli(argv: Sequence[str] | None = None) -> Any:
    """Parse a recipe and run :func:`main`."""
    from trl import SFTConfig

    return main(*parse_recipe(SFTConfig, argv))
