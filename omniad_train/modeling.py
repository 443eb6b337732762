"""Loading models safely and saving checkpoints the Inspector can load."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from omniad_core.inspector import save_spec
from omniad_core.prompts import SYSTEM_PROMPT

log = logging.getLogger(__name__)

__all__ = [
    "freeze_vision_tower",
    "last_checkpoint",
    "load_model_and_processor",
    "load_splits",
    "resume_target",
    "save_final",
    "spec_callback",
    "train_and_save",
]


def load_model_and_processor(
    model_args: Any, training_args: Any, trust_remote_code: bool = False
) -> tuple[Any, Any]:
    """Load an image-text-to-text model (safetensors only) and its processor.

    ``model_args`` is TRL's ``ModelConfig`` (``model_name_or_path``, ``model_revision``,
    ``dtype``, ``attn_implementation``); remote code runs only when the recipe sets
    ``trust_remote_code: true``.
    """
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    name = model_args.model_name_or_path
    if not name:
        raise ValueError("model_name_or_path is not set in the recipe")
    p = Path(name)
    if (
        p.exists()
        and not any(p.glob("*.safetensors"))
        and not any(p.glob("*.safetensors.index.json"))
    ):
        raise FileNotFoundError(
            f"no *.safetensors weights in {p}; this toolkit loads safetensors only "
            "(re-save with save_pretrained(..., safe_serialization=True))"
        )
    dtype: Any = model_args.dtype
    if dtype in (None, "auto"):
        dtype = torch.bfloat16 if getattr(training_args, "bf16", False) else torch.float32
    elif isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    kwargs: dict[str, Any] = {
        "dtype": dtype,
        "use_safetensors": True,
        "trust_remote_code": bool(trust_remote_code),
        "revision": model_args.model_revision,
    }
    if model_args.attn_implementation:
        kwargs["attn_implementation"] = model_args.attn_implementation
    model = AutoModelForImageTextToText.from_pretrained(name, **kwargs)
    processor = AutoProcessor.from_pretrained(
        name, trust_remote_code=bool(trust_remote_code), revision=model_args.model_revision
    )
    return model, processor


def _spec_kwargs(script_args: Any) -> dict[str, Any]:
    return {
        "grid": script_args.grid,
        "image_size": script_args.image_size,
        "system_prompt": SYSTEM_PROMPT,
    }


def spec_callback(script_args: Any, processor: Any) -> Any:
    """A ``TrainerCallback`` writing the processor and ``omniad.json`` into every checkpoint,
    so each ``checkpoint-N`` loads in the Inspector as it is."""
    from transformers import TrainerCallback

    class SpecCallback(TrainerCallback):
        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if not state.is_world_process_zero:
                return
            ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if ckpt.is_dir():
                processor.save_pretrained(ckpt)
                save_spec(ckpt, **_spec_kwargs(script_args))

    return SpecCallback()


def last_checkpoint(output_dir: str | os.PathLike[str]) -> str | None:
    """The newest ``checkpoint-N`` folder in ``output_dir``, or None."""
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(output_dir)) if Path(output_dir).is_dir() else None


def resume_target(training_args: Any) -> str | None:
    """What to resume from: a path, the last checkpoint for ``true``, or None."""
    r = training_args.resume_from_checkpoint
    if r in (None, False, "", "false", "False"):
        return None
    if r in (True, "true", "True", "last"):
        found = last_checkpoint(training_args.output_dir)
        if found is None:
            raise FileNotFoundError(
                f"resume_from_checkpoint is true but {training_args.output_dir} has no checkpoint-N folder"
            )
        return found
    if not Path(str(r)).is_dir():
        raise FileNotFoundError(f"resume_from_checkpoint: no checkpoint folder at {r}")
    return str(r)


def save_final(trainer: Any, processor: Any, script_args: Any) -> Path:
    """Save weights (safetensors), processor and ``omniad.json`` into ``output_dir``.

    A LoRA run keeps its adapter in ``output_dir/adapter`` and saves the merged model in
    ``output_dir``, so the Inspector loads the result like any other checkpoint.
    """
    out = Path(trainer.args.output_dir)
    model = trainer.model
    if hasattr(model, "merge_and_unload") and hasattr(model, "peft_config"):
        trainer.save_model(str(out / "adapter"))
        if trainer.accelerator.is_main_process:
            merged = trainer.accelerator.unwrap_model(model).merge_and_unload()
            merged.save_pretrained(str(out), safe_serialization=True)
    else:
        trainer.save_model(str(out))
    if trainer.accelerator.is_main_process:
        processor.save_pretrained(out)
        save_spec(out, **_spec_kwargs(script_args))
    return out


def load_splits(script_args: Any, folder: Path, columns: Any = None) -> tuple[Any, Any]:
    """The recipe's train split (limited to ``max_train_samples``) and optional test split."""
    from datasets import load_from_disk

    data = load_from_disk(str(folder))

    def take(split: str) -> Any:
        ds = data[split]
        return ds.select_columns(list(columns)) if columns else ds

    train = take(script_args.dataset_train_split)
    if script_args.max_train_samples:
        train = train.select(range(min(script_args.max_train_samples, len(train))))
    evaluation = take(script_args.dataset_test_split) if script_args.dataset_test_split else None
    return train, evaluation


def freeze_vision_tower(model: Any) -> int:
    """Fix the vision tower's weights except its merger; return how many were frozen.

    Raises ``ValueError`` for a model without a Qwen-style ``visual`` tower.
    """
    visual = getattr(getattr(model, "model", model), "visual", None)
    if visual is None:
        raise ValueError(
            f"freeze_vision_tower: {type(model).__name__} has no `visual` tower; "
            "set freeze_vision_tower: false for this model"
        )
    frozen = 0
    for name, param in visual.named_parameters():
        if not name.startswith("merger."):
            param.requires_grad_(False)
            frozen += param.numel()
    log.info("froze %d vision-tower weights (the merger trains)", frozen)
    return frozen


def train_and_save(
    trainer_cls: Any,
    script_args: Any,
    training_args: Any,
    model_args: Any,
    train: Any,
    evaluation: Any,
    resume: str | None,
    **trainer_kwargs: Any,
) -> Any:
    """Load the model, build a TRL trainer, train (or resume) and save; return the trainer."""
    from trl import get_peft_config

    model, processor = load_model_and_processor(
        model_args, training_args, training_args.trust_remote_code
    )
    if getattr(script_args, "freeze_vision_tower", False):
        freeze_vision_tower(model)
    trainer = trainer_cls(
        model=model,
        args=training_args,
        train_dataset=train,
        eval_dataset=evaluation,
        processing_class=processor,
        peft_config=get_peft_config(model_args),
        callbacks=[spec_callback(script_args, processor)],
        **trainer_kwargs,
    )
    trainer.train(resume_from_checkpoint=resume)
    save_final(trainer, processor, script_args)
    return trainer
