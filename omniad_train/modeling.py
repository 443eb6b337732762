"""Loading models safely, saving checkpoints the Inspector can load, and resuming.

A ``checkpoint-N`` folder is written in place by transformers (weights, then optimizer,
scheduler and RNG states, then ``trainer_state.json``), so a run killed while saving
leaves a partial folder.  :func:`checkpoint_problems` says what a folder lacks;
``resume_from_checkpoint: true`` resumes from the newest complete one and moves partial
ones newer than it aside (``incomplete-checkpoint-N``), saying so.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import struct
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omniad_core.inspector import load_processor, save_spec
from omniad_core.prompts import SYSTEM_PROMPT
from omniad_train.config import RecipeError

log = logging.getLogger(__name__)

__all__ = [
    "checkpoint_problems",
    "freeze_vision_tower",
    "last_checkpoint",
    "load_model_and_processor",
    "load_splits",
    "merge_lora",
    "resolve_attn_implementation",
    "resume_target",
    "save_final",
    "spec_callback",
    "train_and_save",
    "write_spec",
]


def resolve_attn_implementation(
    requested: str | None, *, flash_available: bool, cuda_available: bool
) -> str:
    """The attention kernel a recipe's ``attn_implementation`` means here.

    Unset: ``sdpa`` (in torch, nothing to install). ``auto``: ``flash_attention_2`` when
    the flash-attn package is importable and CUDA is present, else ``sdpa``.
    ``flash_attention_2`` (or ``flash_attention_3``) without the package or without CUDA is
    a :class:`~omniad_train.config.RecipeError` naming the install.  Any other value
    (``eager``, ``sdpa``, ``flex_attention``, a kernels-hub name) passes through.

    >>> resolve_attn_implementation(None, flash_available=False, cuda_available=True)
    'sdpa'
    >>> resolve_attn_implementation("auto", flash_available=True, cuda_available=True)
    'flash_attention_2'
    >>> resolve_attn_implementation("auto", flash_available=True, cuda_available=False)
    'sdpa'
    """
    if requested in (None, ""):
        return "sdpa"
    if requested == "auto":
        return "flash_attention_2" if flash_available and cuda_available else "sdpa"
    if str(requested).startswith("flash_attention"):
        if not flash_available:
            raise RecipeError(
                f"attn_implementation: {requested} needs the flash-attn package, which is not "
                "installed; install a build matching your torch and CUDA (pip install flash-attn "
                "--no-build-isolation) or set attn_implementation: sdpa (or auto: flash-attn "
                "when it is installed)"
            )
        if not cuda_available:
            raise RecipeError(
                f"attn_implementation: {requested} runs on CUDA GPUs only and none is available; "
                "set attn_implementation: sdpa (or auto)"
            )
    return str(requested)


def _flash_attn_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("flash_attn") is not None


def _join_deepspeed_group() -> None:
    """Give DeepSpeed the process group before a ZeRO-3 load partitions the weights.

    ``from_pretrained`` under ZeRO-3 runs ``deepspeed.zero.Init``, which counts the ranks
    through DeepSpeed's own communication layer; on the CPU accelerate starts
    ``torch.distributed`` (gloo) without it, so DeepSpeed would see one process and
    reject the batch size.  A no-op unless ZeRO-3 is on and only torch's group exists.
    """
    if not _zero3_enabled():
        return
    import deepspeed
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and not deepspeed.comm.is_initialized():
        deepspeed.init_distributed(dist_backend=dist.get_backend())


def load_model_and_processor(
    model_args: Any,
    training_args: Any,
    trust_remote_code: bool = False,
    *,
    image_size: int | None = None,
) -> tuple[Any, Any]:
    """Load an image-text-to-text model (safetensors only) and its processor.

    ``model_args`` is TRL's ``ModelConfig`` (``model_name_or_path``, ``model_revision``,
    ``dtype``, ``attn_implementation``: see :func:`resolve_attn_implementation`); remote
    code runs only when the recipe sets ``trust_remote_code: true``.  The processor is
    :func:`omniad_core.inspector.load_processor`'s: it pads on the **left** whatever the
    checkpoint says (TRL's GRPO reads ``mm_token_type_ids`` from the processor's own
    padded output, next to prompt ids it left-pads itself), its image-token budget is
    pinned to ``image_size`` (saved with every checkpoint), and a missing torchvision is
    a :class:`~omniad_core.checkpoint.MissingPackageError` naming the install.  Both
    are checked before any weight loads.
    """
    import torch
    from transformers import AutoModelForImageTextToText

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
    attn = resolve_attn_implementation(
        model_args.attn_implementation,
        flash_available=_flash_attn_installed(),
        cuda_available=torch.cuda.is_available(),
    )
    processor = load_processor(
        name,
        image_size=image_size,
        trust_remote_code=bool(trust_remote_code),
        revision=model_args.model_revision,
    )
    _join_deepspeed_group()
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
        "attn_implementation": attn,
    }
    model = AutoModelForImageTextToText.from_pretrained(name, **kwargs)
    return model, processor


def _spec_kwargs(script_args: Any, spec: dict[str, Any] | None = None) -> dict[str, Any]:
    if spec is not None:
        return {k: spec[k] for k in ("grid", "image_size", "system_prompt", "shots")}
    return {
        "grid": script_args.grid,
        "image_size": script_args.image_size,
        "system_prompt": SYSTEM_PROMPT,
    }


def write_spec(path: str | os.PathLike[str], script_args: Any, spec: dict[str, Any] | None) -> Path:
    """Write ``omniad.json`` into ``path``: the dataset's grid, image size, system prompt and
    shots (``spec`` from :func:`omniad_train.config.dataset_spec`), or, when ``spec`` is None, the
    recipe's grid and image size with the paper's prompt."""
    return save_spec(path, **_spec_kwargs(script_args, spec))


def spec_callback(script_args: Any, processor: Any, spec: dict[str, Any] | None = None) -> Any:
    """A ``TrainerCallback`` writing the processor and ``omniad.json`` into every checkpoint,
    so each ``checkpoint-N`` loads in the Inspector as it is (and prompts the model as the
    data it trained on did, when ``spec`` comes from :func:`~omniad_train.config.dataset_spec`)."""
    from transformers import TrainerCallback

    class SpecCallback(TrainerCallback):
        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if not state.is_world_process_zero:
                return
            ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if ckpt.is_dir():
                processor.save_pretrained(ckpt)
                write_spec(ckpt, script_args, spec)

    return SpecCallback()


# --------------------------------------------------------------------------- resuming
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
_WEIGHTS = ("model.safetensors", "adapter_model.safetensors")
_NAME = re.compile(r"(?!\.\.?$)[\w.-]+")  # a plain file or folder name


def _safetensors_ok(path: Path) -> bool:
    """Whether a ``.safetensors`` file is whole: its header parses and its data ends at EOF."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(8)
            if len(head) < 8:
                return False
            (n,) = struct.unpack("<Q", head)
            if n > min(size - 8, 100_000_000):
                return False
            header = json.loads(f.read(n))
        ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
        return 8 + n + max(ends, default=0) == size
    except (OSError, ValueError, KeyError, TypeError, IndexError, struct.error):
        return False


def _torch_file_ok(path: Path) -> bool:
    """Whether a ``torch.save`` file is whole (its zip directory is readable); nothing is
    unpickled."""
    try:
        return path.is_file() and zipfile.is_zipfile(path)
    except OSError:
        return False


def _weights_problem(ckpt: Path) -> str | None:
    for name in _WEIGHTS:
        if (ckpt / name).is_file():
            return None if _safetensors_ok(ckpt / name) else f"{name} is truncated"
    index = ckpt / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = set(json.loads(index.read_text())["weight_map"].values())
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return f"{index.name} cannot be read"
        bad = sorted(
            str(s)
            for s in shards
            if not _NAME.fullmatch(str(s)) or not _safetensors_ok(ckpt / str(s))
        )
        return f"weight shard(s) {bad[:3]} missing or truncated" if bad else None
    if any(p.is_file() for p in ckpt.glob("*/adapter_model.safetensors")):
        return None  # several adapters, one folder each
    if _deepspeed_ok(ckpt):
        return None  # weights inside DeepSpeed's global_stepN/
    return "no weights (model.safetensors, its shards or adapter_model.safetensors)"


def _deepspeed_ok(ckpt: Path) -> bool:
    """DeepSpeed writes ``latest`` (naming its ``global_stepN`` folder) after the states."""
    latest = ckpt / "latest"
    try:
        tag = latest.read_text().strip() if latest.is_file() else ""
    except OSError:
        return False
    if not _NAME.fullmatch(tag):  # a folder name inside the checkpoint, nothing else
        return False
    return (ckpt / tag).is_dir() and any((ckpt / tag).iterdir())


def checkpoint_problems(path: str | os.PathLike[str], *, optimizer: bool = True) -> list[str]:
    """What keeps a ``checkpoint-N`` folder from resuming a run (empty: it is complete).

    Complete means what transformers writes, in its order: weights (``model.safetensors``
    whole, every shard of ``model.safetensors.index.json``, ``adapter_model.safetensors``
    or a DeepSpeed ``global_stepN`` folder named by ``latest``); unless ``optimizer`` is
    False (``save_only_model``), ``optimizer.pt`` and ``scheduler.pt`` (or DeepSpeed's
    states) and an ``rng_state*.pth``; last ``trainer_state.json`` with a ``global_step``.
    Files are checked for truncation; nothing is unpickled.
    """
    ckpt = Path(path)
    if not ckpt.is_dir():
        return [f"{ckpt} is not a folder"]
    problems: list[str] = []
    weights = _weights_problem(ckpt)
    if weights:
        problems.append(weights)
    if optimizer:
        deepspeed = _deepspeed_ok(ckpt)
        for name in ("optimizer.pt", "scheduler.pt"):
            if not deepspeed and not _torch_file_ok(ckpt / name):
                problems.append(f"{name} missing or truncated")
        rng = list(ckpt.glob("rng_state*.pth"))
        if not rng or not all(_torch_file_ok(p) for p in rng):
            problems.append("rng_state*.pth missing or truncated")
    try:
        state = json.loads((ckpt / "trainer_state.json").read_text())
        if not isinstance(state.get("global_step"), int):
            raise ValueError
    except (OSError, ValueError, AttributeError):
        problems.append("trainer_state.json missing or unreadable")
    return problems


def _checkpoints(output_dir: Path) -> list[Path]:
    """``checkpoint-N`` folders, newest first."""
    if not output_dir.is_dir():
        return []
    found = [
        (int(m.group(1)), p)
        for p in output_dir.iterdir()
        if (m := _CHECKPOINT.match(p.name)) and p.is_dir()
    ]
    return [p for _, p in sorted(found, reverse=True)]


def last_checkpoint(
    output_dir: str | os.PathLike[str], *, complete: bool = True, optimizer: bool = True
) -> str | None:
    """The newest ``checkpoint-N`` folder in ``output_dir`` (by default the newest
    complete one, see :func:`checkpoint_problems`), or None."""
    for ckpt in _checkpoints(Path(output_dir)):
        if not complete or not checkpoint_problems(ckpt, optimizer=optimizer):
            return str(ckpt)
    return None


def _move_aside(ckpt: Path) -> Path:
    target = ckpt.with_name(f"incomplete-{ckpt.name}")
    k = 1
    while target.exists():
        k += 1
        target = ckpt.with_name(f"incomplete-{ckpt.name}.{k}")
    os.replace(ckpt, target)
    return target


def _is_main_process() -> bool:
    return os.environ.get("RANK", "0") == "0" and os.environ.get("LOCAL_RANK", "0") == "0"


def resume_target(training_args: Any) -> str | None:
    """What to resume from: a path, the newest complete checkpoint for ``true``, or None.

    With ``true`` a partial ``checkpoint-N`` newer than the one resumed from (a run killed
    while saving) is renamed ``incomplete-checkpoint-N`` (so transformers neither resumes
    from it nor keeps it over complete ones under ``save_total_limit``) and named in a
    warning; with no complete checkpoint the run starts fresh, saying so.

    Raises
    ------
    RecipeError
        A checkpoint path that is not a folder or is incomplete (naming what it lacks).
    """
    r = training_args.resume_from_checkpoint
    if r in (None, False, "", "false", "False"):
        return None
    optimizer = not getattr(training_args, "save_only_model", False)
    if r in (True, "true", "True", "last"):
        out = Path(training_args.output_dir)
        skipped: list[str] = []
        found = None
        for ckpt in _checkpoints(out):
            problems = checkpoint_problems(ckpt, optimizer=optimizer)
            if not problems:
                found = str(ckpt)
                break
            note = f"{ckpt.name} ({'; '.join(problems)})"
            if _is_main_process():
                note += f", moved to {_move_aside(ckpt).name}"
            skipped.append(note)
        if skipped:
            log.warning(
                "skipped incomplete checkpoint(s) in %s (a run stopped while saving): %s",
                out,
                ", ".join(skipped),
            )
        if found is None:
            log.warning(
                "resume_from_checkpoint is true but %s has no complete checkpoint-N folder; "
                "starting from the beginning",
                out,
            )
        else:
            log.warning("resuming from %s", found)
        return found
    path = Path(str(r))
    if not path.is_dir():
        raise RecipeError(
            f"resume_from_checkpoint: no checkpoint folder at {r}; pass a checkpoint-N folder "
            "or true (the newest complete checkpoint in output_dir)"
        )
    problems = checkpoint_problems(path, optimizer=optimizer)
    if problems:
        raise RecipeError(
            f"resume_from_checkpoint: {path} is not a complete checkpoint ({'; '.join(problems)})"
            "; it was probably being saved when the run stopped. Pass an older checkpoint-N or "
            "true (the newest complete one)"
        )
    return str(path)


def _zero3_enabled() -> bool:
    from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled

    return bool(is_deepspeed_zero3_enabled())


@contextlib.contextmanager
def _plain_loading(training_args: Any) -> Iterator[None]:
    """Let ``from_pretrained`` load a whole model in this process alone, even in a ZeRO-3
    run (whose config would make it partition the weights across ranks: a collective call
    the other ranks never join)."""
    from transformers.integrations.deepspeed import (
        set_hf_deepspeed_config,
        unset_hf_deepspeed_config,
    )

    unset_hf_deepspeed_config()
    try:
        yield
    finally:
        config = getattr(training_args, "hf_deepspeed_config", None)
        if config is not None:
            set_hf_deepspeed_config(config)


def merge_lora(
    base: str | os.PathLike[str],
    adapter: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    dtype: Any = None,
    trust_remote_code: bool = False,
) -> Path:
    """Merge a saved LoRA adapter into a fresh copy of its base model; save it to ``out``.

    The merge step of a ZeRO-3 LoRA run (:func:`save_final` calls it on the main process):
    there the trained model's weights are partitioned across the ranks, so merging it in
    memory would merge fragments; the adapter saved by the trainer (gathered whole) and the
    base checkpoint are complete.  Loads ``base`` on the CPU (``dtype``: the checkpoint's
    own when None), applies ``adapter`` with PEFT, ``merge_and_unload()``, and writes
    safetensors.  Also usable on its own, after any LoRA run.
    """
    import torch
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    if isinstance(dtype, str) and dtype != "auto":
        dtype = getattr(torch, dtype)
    model = AutoModelForImageTextToText.from_pretrained(
        str(base),
        dtype=dtype if dtype is not None else "auto",
        device_map="cpu",
        use_safetensors=True,
        trust_remote_code=trust_remote_code,
    )
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    merged.save_pretrained(str(out), safe_serialization=True)
    return Path(out)


def save_final(
    trainer: Any, processor: Any, script_args: Any, spec: dict[str, Any] | None = None
) -> Path:
    """Save weights (safetensors), processor and ``omniad.json`` into ``output_dir``.

    A LoRA run keeps its adapter in ``output_dir/adapter`` and saves the merged model in
    ``output_dir``, so the Inspector loads the result like any other checkpoint.  Under
    DeepSpeed ZeRO-3 the trained weights are partitioned, so the merge is a separate step
    on the main process (:func:`merge_lora`: the saved adapter into a fresh copy of the base
    model, on the CPU), and the log says so; otherwise the trained model merges in memory.
    ``spec`` (from :func:`~omniad_train.config.dataset_spec`) is what ``omniad.json``
    records; without it, the recipe's grid and image size and the paper's prompt.
    """
    out = Path(trainer.args.output_dir)
    model = trainer.model
    main = trainer.accelerator.is_main_process
    if hasattr(model, "merge_and_unload") and hasattr(model, "peft_config"):
        adapter = out / "adapter"
        trainer.save_model(str(adapter))  # every rank: ZeRO-3 gathers the adapter here
        unwrapped = trainer.accelerator.unwrap_model(model)
        if _zero3_enabled():
            trainer.accelerator.wait_for_everyone()  # the adapter is on disk
            if main:
                base = unwrapped.peft_config["default"].base_model_name_or_path
                log.warning(
                    "ZeRO-3 partitions the trained weights, so the LoRA adapter is merged in a "
                    "separate step: %s into a fresh copy of %s on the CPU, saved to %s",
                    adapter,
                    base,
                    out,
                )
                with _plain_loading(trainer.args):
                    merge_lora(
                        base,
                        adapter,
                        out,
                        dtype=unwrapped.dtype,
                        trust_remote_code=bool(trainer.args.trust_remote_code),
                    )
        elif main:
            unwrapped.merge_and_unload().save_pretrained(str(out), safe_serialization=True)
    else:
        trainer.save_model(str(out))
    if main:
        processor.save_pretrained(out)
        write_spec(out, script_args, spec)
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
    spec: dict[str, Any] | None = None,
    **trainer_kwargs: Any,
) -> Any:
    """Load the model, build a TRL trainer, train (or resume) and save; return the trainer.

    ``spec`` (from :func:`~omniad_train.config.dataset_spec`) goes into the ``omniad.json``
    of every checkpoint and of the final model.
    """
    from trl import get_peft_config

    size = spec["image_size"] if spec else getattr(script_args, "image_size", None)
    model, processor = load_model_and_processor(
        model_args, training_args, training_args.trust_remote_code, image_size=size
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
        callbacks=[spec_callback(script_args, processor, spec)],
        **trainer_kwargs,
    )
    trainer.train(resume_from_checkpoint=resume)
    save_final(trainer, processor, script_args, spec)
    return trainer
