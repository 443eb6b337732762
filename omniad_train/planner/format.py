"""The plan as a plain aligned table (``omniad-train plan`` without ``--json``).

>>> print(format_plan({"trainer": "sft", "world_size": 2, "global_batch_size": 16,
...                    "errors": [], "warnings": ["w"], "notes": []}))
plan: sft on 2 processes
  batch
    global batch (samples / step)     16
  warnings
    - w
"""

from __future__ import annotations

from typing import Any

__all__ = ["format_plan"]

_WIDTH = 34


def _stats(d: dict[str, Any] | None) -> str | None:
    if not d:
        return None
    return f"p50 {d['p50']}  p90 {d['p90']}  p99 {d['p99']}  max {d['max']}  ({d['rows']} rows)"


def _rows(plan: dict[str, Any]) -> list[tuple[str, list[tuple[str, Any]]]]:
    grpo = plan.get("trainer") == "grpo"
    unit = "completions" if grpo else "samples"
    batch = [
        (f"global batch ({unit} / step)", plan.get("global_batch_size")),
        (
            "per device x accumulation",
            f"{plan.get('per_device_train_batch_size')} x {plan.get('gradient_accumulation_steps')}"
            if plan.get("per_device_train_batch_size")
            else None,
        ),
        ("derived from global_batch_size", plan.get("derived_from_global_batch_size")),
    ]
    if grpo:
        batch += [
            (
                "prompts x generations / step",
                f"{plan.get('prompts_per_step')} x {plan.get('num_generations')}"
                if plan.get("prompts_per_step")
                else None,
            ),
            (
                "generation batch (steps)",
                f"{plan.get('generation_batch_size')} completions, "
                f"{plan.get('steps_per_generation')} micro-step(s)"
                if plan.get("generation_batch_size")
                else None,
            ),
        ]
    batch += [
        ("train rows", plan.get("train_rows")),
        ("optimizer steps / epoch", plan.get("optimizer_steps_per_epoch")),
    ]
    img = plan.get("image_tokens") or {}
    images = [
        (
            "image tokens 0-shot / 1-shot",
            f"{img['zero_shot']} / {img['one_shot']} at {img['image_size']} px (pinned max_pixels "
            f"{img['pinned_max_pixels']})"
            if img
            else None,
        ),
        (
            "saved budget (max_pixels)",
            f"{img.get('saved_max_pixels')} = up to {img.get('saved_max_tokens_per_image')} tokens "
            "per image"
            if img
            else None,
        ),
    ]
    limit = "max_completion_length" if grpo else "max_length"
    cut = plan.get("truncated_fraction")
    lengths = [
        (
            "target tokens" + (f" (+{plan['reasoning_allowance']} reasoning)" if grpo else ""),
            _stats(plan.get("completion_tokens")),
        ),
        ("prompt tokens", _stats(plan.get("prompt_tokens"))),
        ("prompt + target tokens", _stats(plan.get("sequence_tokens"))),
        (f"{limit}", plan.get("max_length_limit")),
        ("truncated fraction", f"{cut:.2%}" if cut is not None else None),
    ]
    mem = plan.get("memory_gib") or {}
    memory = [
        ("ZeRO stage", f"{mem['zero_stage']} ({mem['zero_source']})" if mem else None),
        (
            "parameters (trainable)",
            f"{mem['params_total'] / 1e9:.3f} B ({mem['params_trainable'] / 1e9:.3f} B)"
            if mem
            else None,
        ),
        ("model states / device", f"{mem['model_states']} GiB" if mem else None),
        (
            "activations / device",
            f"{mem['activations']} GiB ({mem['sequence_tokens']} tokens)" if mem else None,
        ),
        (
            "reference model / device",
            f"{mem['reference_model']} GiB" if mem.get("reference_model") else None,
        ),
        ("total / device", f"{mem['total']} GiB" if mem else None),
        ("attention", plan.get("attn_implementation")),
    ]
    return [
        ("batch", batch),
        ("image tokens", images),
        ("lengths", lengths),
        ("memory (estimate)", memory),
    ]


def format_plan(plan: dict[str, Any]) -> str:
    """The plan as aligned text: one section per topic, then notes, warnings, errors."""
    head = f"plan: {plan.get('trainer')} on {plan.get('world_size')} processes"
    if plan.get("recipe"):
        head += f" ({plan['recipe']}, model {plan.get('model')})"
    lines = [head]
    for title, rows in _rows(plan):
        shown = [(k, v) for k, v in rows if v is not None]
        if shown:
            lines.append(f"  {title}")
            lines += [f"    {k:<{_WIDTH}}{v}" for k, v in shown]
    for title in ("notes", "warnings", "errors"):
        if plan.get(title):
            lines.append(f"  {title}")
            lines += [f"    - {x}" for x in plan[title]]
    return "\n".join(lines)
