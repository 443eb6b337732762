"""The plan of a run: its figures, its checks, and the same checks at SFT/GRPO start-up.

:func:`build_plan` takes the three parsed dataclasses of a recipe and a world size and
returns one JSON-ready mapping: the batch (global, per device, accumulation, prompts x
generations), optimizer steps per epoch, image tokens per prompt, target-length
percentiles and the fraction the length limit cuts, GPU memory per device, and the lists
``errors`` and ``warnings``.  It loads the checkpoint's configs, tokenizer and processor,
never its weights.  :func:`startup_checks` runs it inside ``sft``/``grpo`` before any
weight loads: errors raise :class:`~omniad_train.recipe_checks.RecipeError`, warnings
are printed.  The checks themselves live in :mod:`omniad_train.planner.checks`.
"""

from __future__ import annotations

import logging
import math
import sys
from pathlib import Path
from typing import Any

from omniad_train.planner import memory, tokens
from omniad_train.planner.batch import BatchPlan, resolve_batch
from omniad_train.planner.checks import Findings, environment_checks, zero_config
from omniad_train.prepared_data import dataset_spec
from omniad_train.recipe_checks import RecipeError

__all__ = ["build_plan", "startup_checks"]

log = logging.getLogger(__name__)

#: Prompt text tokens assumed besides the images when no dataset is given.
PROMPT_TEXT_ALLOWANCE = 256


def _batch(s: Any, t: Any, kind: str, world: int, f: Findings) -> BatchPlan | None:
    grpo = kind == "grpo"
    try:
        batch = resolve_batch(
            None,
            world_size=world,
            per_device=t.per_device_train_batch_size,
            grad_accum=t.gradient_accumulation_steps,
            num_generations=t.num_generations if grpo else None,
            generation_batch_size=t.generation_batch_size if grpo else None,
        )
    except RecipeError as exc:
        f.error(str(exc))
        return None
    want = getattr(s, "global_batch_size", None)
    if want is not None and batch.global_batch != want:
        f.error(
            f"per_device_train_batch_size {batch.per_device} x gradient_accumulation_steps "
            f"{batch.grad_accum} x {world} processes = {batch.global_batch}, but "
            f"global_batch_size is {want}; leave the first two unset (they are derived)"
        )
    if grpo and batch.per_device * (batch.steps_per_generation or 1) > t.num_generations:
        f.note(
            f"{batch.prompts_per_generation} prompts are generated together per process "
            "batch: prompts of different lengths share a batch (left padding keeps it right)"
        )
    return batch


def _steps_per_epoch(rows: int | None, batch: BatchPlan, kind: str, t: Any) -> int | None:
    if not rows:
        return None
    if kind == "sft":  # transformers: ceil over the per-process dataloader, then accumulation
        per_process = math.ceil(rows / (batch.world_size * batch.per_device))
        return max(1, math.ceil(per_process / batch.grad_accum))
    # TRL's RepeatSampler keeps only whole generation rounds of distinct prompts
    rounds = rows // (batch.prompts_per_generation or 1)
    steps = rounds * (batch.generation_batch_size or batch.global_batch) // batch.global_batch
    return steps * int(getattr(t, "num_iterations", 1) or 1)


def _load_checkpoint(m: Any, f: Findings, startup: bool) -> dict[str, Any] | None:
    """Tokenizer, image processor and processor of a local checkpoint folder."""
    name = str(m.model_name_or_path or "")
    path = Path(name)
    if not path.is_dir():
        if startup:  # from_pretrained may fetch a hub id; its files are checked then
            f.note(f"{name} is not a local folder: checkpoint checks skipped")
        else:
            f.error(
                f"model_name_or_path {name!r} is not a local folder: plan reads the "
                "checkpoint's config, tokenizer and processor from a folder and downloads "
                "nothing; download it first (e.g. `hf download Qwen/Qwen2.5-VL-7B-Instruct "
                "--local-dir DIR`) and pass --model_name_or_path DIR"
            )
        return None
    from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer

    out: dict[str, Any] = {"path": path}
    try:
        out["config"] = memory.read_model_config(path)
        out["params"] = memory.param_counts(out["config"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        f.error(f"{path}/config.json cannot be read as a Qwen2.5-VL config ({exc})")
    try:
        out["tokenizer"] = AutoTokenizer.from_pretrained(path)
        out["image_processor"] = AutoImageProcessor.from_pretrained(path)
    except Exception as exc:
        f.error(f"cannot load the tokenizer or image processor of {path}: {_one_line(exc)}")
        return out
    try:
        out["processor"] = AutoProcessor.from_pretrained(path)
    except Exception as exc:
        f.processor_error(path, exc)
    return out


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


def _images(
    ck: dict[str, Any] | None, s: Any, f: Findings, startup: bool = False
) -> dict[str, Any] | None:
    if not ck or "image_processor" not in ck:
        return None
    ip = ck["image_processor"]
    pinned = tokens.pinned_pixels(s.image_size)
    lo, hi = tokens.saved_pixel_budget(ip)
    try:
        per_image = tokens.image_tokens(ip, s.image_size, pinned)
    except Exception as exc:
        f.error(f"the image processor of {ck['path']} fails on an image: {_one_line(exc)}")
        return None
    merge = int(getattr(ip, "merge_size", 2) or 2) * int(getattr(ip, "patch_size", 14) or 14)
    out = {
        "image_size": s.image_size,
        "per_image": per_image,
        "zero_shot": per_image,
        "one_shot": 2 * per_image,
        "pinned_max_pixels": pinned,
        "saved_min_pixels": lo,
        "saved_max_pixels": hi,
        "saved_max_tokens_per_image": hi // merge**2 if hi else None,
    }
    if hi is None or hi > pinned:  # at start-up a note: the loader pins it for this run
        (f.note if startup else f.warn)(
            f"the checkpoint's saved pixel budget (max_pixels {hi}) allows up to "
            f"{out['saved_max_tokens_per_image']} tokens per image; training pins it to "
            f"{pinned} ({per_image} tokens for a {s.image_size}-px image) and saves that with "
            "every checkpoint, but the folder itself is unpinned"
        )
    return out


def _lengths(
    ck: dict[str, Any] | None,
    s: Any,
    t: Any,
    kind: str,
    images: dict[str, Any] | None,
    shots: int,
    f: Findings,
    reasoning: int,
) -> dict[str, Any]:
    limit = t.max_length if kind == "sft" else t.max_completion_length
    out: dict[str, Any] = {
        "limit": limit,
        "completion_tokens": None,
        "prompt_tokens": None,
        "truncated_fraction": None,
        "rows": None,
    }
    folder = Path(s.dataset_path) / kind if s.dataset_path else None
    if folder is None or not folder.is_dir():
        f.warn(
            f"no prepared {kind}/ dataset at {s.dataset_path!r}: target lengths not measured; "
            "pass --dataset PREPARED_DIR"
        )
        return out
    if not ck or "tokenizer" not in ck:
        return out
    tok = ck["tokenizer"]
    split = s.dataset_train_split
    targets, rows = tokens.target_lengths(folder, split, kind, tok, reasoning_tokens=reasoning)
    out["rows"] = rows
    out["completion_tokens"] = tokens.length_stats(targets)
    renderer = ck.get("processor") or (tok if getattr(tok, "chat_template", None) else None)
    prompts: list[int] = []
    if renderer is not None and images is not None:
        prompts = tokens.prompt_lengths(folder, split, renderer, tok, images["per_image"])
        out["prompt_tokens"] = tokens.length_stats(prompts)
    if kind == "sft":
        whole = [p + c for p, c in zip(prompts, targets, strict=True)] if prompts else targets
        out["sequence_tokens"] = tokens.length_stats(whole)
        out["truncated_fraction"] = tokens.truncated_fraction(whole, limit)
        if prompts and limit is not None and max(prompts) >= limit:
            f.error(
                f"max_length {limit} is not longer than the longest prompt ({max(prompts)} tokens "
                "with its images): SFT would cut image tokens; raise max_length"
            )
    else:
        out["truncated_fraction"] = tokens.truncated_fraction(targets, limit)
    cut = out["truncated_fraction"]
    if cut:
        what = "max_length" if kind == "sft" else "max_completion_length"
        p99 = (out.get("sequence_tokens") or out["completion_tokens"])["p99"]
        f.warn(
            f"{what} {limit} cuts {cut:.1%} of the training targets (p99 {p99} tokens"
            + (f", with a {reasoning}-token reasoning allowance" if kind == "grpo" else "")
            + f"); cut targets score format 0 and teach under-segmentation: raise {what}"
        )
    if kind == "grpo" and prompts and getattr(t, "use_vllm", False):
        need = max(prompts) + (limit or 0)
        cap = getattr(t, "vllm_max_model_length", None)
        if cap is not None and cap < need:
            f.error(
                f"vllm_max_model_length {cap} is shorter than the longest prompt plus "
                f"max_completion_length ({need}); raise it to at least {need}"
            )
    return out


def _memory(
    ck: dict[str, Any] | None,
    s: Any,
    t: Any,
    m: Any,
    kind: str,
    batch: BatchPlan | None,
    lengths: dict[str, Any],
    images: dict[str, Any] | None,
    shots: int,
    zero: dict[str, Any],
    f: Findings,
    gpu_gib: float | None,
) -> dict[str, Any] | None:
    if not ck or "params" not in ck or batch is None:
        return None
    p, cfg = ck["params"], ck["config"]
    trainable = None
    if getattr(m, "use_peft", False):
        h, inter, r = int(cfg["hidden_size"]), int(cfg["intermediate_size"]), int(m.lora_r)
        heads = int(cfg["num_attention_heads"])
        kv = int(cfg.get("num_key_value_heads") or heads)
        d = int(cfg.get("head_dim") or h // heads)
        per_layer = r * (2 * (h + heads * d) + 2 * (h + kv * d) + 3 * (h + inter))
        trainable = per_layer * int(cfg["num_hidden_layers"])
    states = memory.model_states_bytes(
        p["total"],
        p["largest_layer"],
        stage=zero["stage"],
        world_size=batch.world_size,
        offload_optimizer=zero["offload_optimizer"],
        offload_params=zero["offload_params"],
        trainable=trainable,
    )
    per_image = images["per_image"] if images else 0
    prompt = (lengths.get("prompt_tokens") or {}).get("max") or (
        per_image * (shots + 1) + PROMPT_TEXT_ALLOWANCE
    )
    if kind == "sft":
        seq = (lengths.get("sequence_tokens") or {}).get("max") or t.max_length or 1024
        seq = min(seq, t.max_length or seq)
        logits = seq
    else:
        seq, logits = prompt + (t.max_completion_length or 0), t.max_completion_length or 0
    acts = memory.activation_bytes(
        seq=seq,
        batch=batch.per_device,
        hidden=int(cfg["hidden_size"]),
        layers=int(cfg["num_hidden_layers"]),
        vocab=int(cfg["vocab_size"]),
        logit_positions=logits,
        checkpointing=bool(t.gradient_checkpointing),
    )
    ref = 0
    if kind == "grpo" and float(getattr(t, "beta", 0.0) or 0.0) > 0 and trainable is None:
        ref = 2 * p["total"] // (batch.world_size if zero["stage"] == 3 else 1)
    total = states + acts + ref
    g = memory.GIB
    out = {
        "zero_stage": zero["stage"],
        "zero_source": zero["source"],
        "offload_optimizer": zero["offload_optimizer"],
        "offload_params": zero["offload_params"],
        "params_total": p["total"],
        "params_vision": p["vision"],
        "params_trainable": trainable if trainable is not None else p["total"],
        "sequence_tokens": seq,
        "model_states": round(states / g, 3),
        "activations": round(acts / g, 3),
        "reference_model": round(ref / g, 3),
        "total": round(total / g, 3),
    }
    if kind == "grpo" and getattr(t, "use_vllm", False) and t.vllm_mode == "colocate":
        out["vllm_reserved_fraction"] = float(t.vllm_gpu_memory_utilization)
    if gpu_gib is not None:
        room = gpu_gib * (1 - out.get("vllm_reserved_fraction", 0.0))
        if total / g > room:
            f.warn(
                f"estimated {total / g:.1f} GiB per device (model states {states / g:.1f}, "
                f"activations {acts / g:.1f}) exceeds the {room:.0f} GiB available; use more "
                "GPUs, ZeRO-3 (with offload), LoRA, or a smaller max_per_device_batch"
            )
    return out


def build_plan(
    s: Any,
    t: Any,
    m: Any,
    *,
    kind: str,
    world_size: int,
    zero_stage: int | None = None,
    reasoning_tokens: int = tokens.DEFAULT_REASONING_TOKENS,
    gpu_gib: float | None = None,
    startup: bool = False,
) -> dict[str, Any]:
    """The plan of a run: every figure plus ``errors`` and ``warnings`` (see the module).

    ``kind`` is ``"sft"`` or ``"grpo"``; ``zero_stage`` overrides the stage found in the
    recipe's ``deepspeed`` config or the accelerate launcher's environment; ``gpu_gib``
    (GiB per device) enables the does-it-fit warning.  With ``startup`` a model that is
    not a local folder is a note, not an error (the trainer may fetch it).
    """
    f = Findings()
    out: dict[str, Any] = {
        "trainer": kind,
        "model": str(m.model_name_or_path),
        "world_size": world_size,
    }
    batch = _batch(s, t, kind, world_size, f)
    out.update(
        global_batch_size=batch.global_batch if batch else None,
        per_device_train_batch_size=batch.per_device if batch else None,
        gradient_accumulation_steps=batch.grad_accum if batch else None,
        derived_from_global_batch_size=getattr(s, "global_batch_size", None) is not None,
    )
    if kind == "grpo":
        out.update(
            num_generations=t.num_generations,
            prompts_per_step=batch.prompts_per_step if batch else None,
            generation_batch_size=batch.generation_batch_size if batch else None,
            steps_per_generation=batch.steps_per_generation if batch else None,
        )
    shots = 0
    try:
        if s.dataset_path and (Path(s.dataset_path) / "manifest.json").is_file():
            shots = int(dataset_spec(s)["shots"])
    except RecipeError as exc:
        f.error(str(exc))
    ck = _load_checkpoint(m, f, startup)
    images = _images(ck, s, f, startup)
    lengths = _lengths(ck, s, t, kind, images, shots, f, reasoning_tokens)
    zero = zero_config(t, zero_stage)
    out.update(
        shots=shots,
        optimizer_steps_per_epoch=_steps_per_epoch(lengths["rows"], batch, kind, t)
        if batch
        else None,
        train_rows=lengths["rows"],
        image_tokens=images,
        max_length_limit=lengths["limit"],
        completion_tokens=lengths["completion_tokens"],
        prompt_tokens=lengths["prompt_tokens"],
        sequence_tokens=lengths.get("sequence_tokens"),
        truncated_fraction=lengths["truncated_fraction"],
        reasoning_allowance=reasoning_tokens if kind == "grpo" else None,
        memory_gib=_memory(ck, s, t, m, kind, batch, lengths, images, shots, zero, f, gpu_gib),
    )
    out["attn_implementation"] = environment_checks(s, t, m, kind, zero, f)
    out["notes"], out["warnings"], out["errors"] = f.notes, f.warnings, f.errors
    return out


def startup_checks(s: Any, t: Any, m: Any, kind: str) -> dict[str, Any]:
    """The plan's checks at SFT/GRPO start-up, before any weight loads.

    Each warning is printed once, by the main process, to stderr
    (``omniad-train sft: warning: ...``); other processes log it at debug level only, so
    no line appears twice (a ``log.warning`` would also reach stderr through Python's
    last-resort handler when nothing configured logging).  The first error raises.

    Raises
    ------
    RecipeError
        The plan's first error (with how many more there are).
    """
    world = int(getattr(t, "world_size", 1) or 1)
    gpu = None
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_properties(0).total_memory / memory.GIB
    except Exception:
        gpu = None
    plan = build_plan(s, t, m, kind=kind, world_size=world, gpu_gib=gpu, startup=True)
    main = getattr(t, "process_index", 0) == 0
    for w in plan["warnings"]:
        if main:
            print(f"omniad-train {kind}: warning: {w}", file=sys.stderr)
        else:
            log.debug("%s", w)
    if plan["errors"]:
        more = len(plan["errors"]) - 1
        raise RecipeError(
            plan["errors"][0] + (f" (and {more} more: run `omniad-train plan`)" if more else "")
        )
    return plan
