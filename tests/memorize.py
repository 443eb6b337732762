"""Teach a tiny model one fixed response, so tests can check exact end-to-end behaviour.

A randomly initialised model writes arbitrary text; after this it answers the given
prompts (and, in practice, similar ones) with ``target``.  It is a test fixture, not a
trainer: plain AdamW on the completion tokens until greedy decoding reproduces the target.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pytest
import torch

from omniad_core import Inspector


def memorize(
    model: Any,
    processor: Any,
    target: str,
    prompts: Sequence[tuple[Any, Any, Any, Any]],
    *,
    system_prompt: str,
    image_size: int = 56,
    probes: Sequence[tuple[Any, Any, Any, Any]] = (),
    rounds: int = 4,
    steps: int = 800,
    lr: float = 1e-2,
) -> None:
    """Train until greedy decoding gives ``target`` for every prompt and probe.

    ``prompts`` and ``probes`` are ``(image, question, options, reference)`` tuples as
    :meth:`Inspector.analyze` takes them; probes are checked but not trained on.
    """
    insp = Inspector(
        model, processor, image_size=image_size, max_new_tokens=64, system_prompt=system_prompt
    )
    batches = []
    for image, question, options, reference in prompts:
        text, images, *_ = insp._prepare(image, question, options, reference)
        n_prompt = processor(text=[text], images=images, return_tensors="pt")["input_ids"].shape[1]
        full = processor(text=[text + target + "<|im_end|>"], images=images, return_tensors="pt")
        labels = full["input_ids"].clone()
        labels[:, :n_prompt] = -100
        batches.append({**full, "labels": labels})
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    torch.manual_seed(0)
    checks = [*prompts, *probes]
    for _ in range(rounds):
        model.train()
        losses = [math.inf] * len(batches)
        for step in range(steps):
            k = step % len(batches)
            loss = model(**batches[k]).loss
            losses[k] = loss.item()
            opt.zero_grad()
            loss.backward()
            opt.step()
            if max(losses) < 2e-3:
                break
        model.eval()
        got = insp.analyze_batch(*zip(*checks, strict=True), batch_size=2, progress=False)
        if all(g.response.strip() == target for g in got):
            return
    pytest.fail("the tiny model did not learn its fixed response")


def memorized_checkpoint(
    tmp_path_factory: Any,
    target: str,
    prompts: Sequence[tuple[Any, Any, Any, Any]],
    *,
    system_prompt: str,
    probes: Sequence[tuple[Any, Any, Any, Any]] = (),
) -> Any:
    """Build the tiny test model, :func:`memorize` ``target`` and save a checkpoint the
    Inspector loads (safetensors, processor, ``omniad.json`` with 56-px images)."""
    from omniad_core import save_spec
    from omniad_train.tiny import TinyConfig, build_tiny_qwen2_5_vl, load_tiny

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # faster for a tiny model on a small machine, and deterministic
    try:
        path = build_tiny_qwen2_5_vl(tmp_path_factory.mktemp("tiny") / "model", TinyConfig.test())
        model, processor = load_tiny(path)
        memorize(model, processor, target, prompts, system_prompt=system_prompt, probes=probes)
        out = tmp_path_factory.mktemp("memorized") / "ckpt"
        model.save_pretrained(out)
        processor.save_pretrained(out)
        save_spec(out, grid=24, image_size=56, system_prompt=system_prompt)
        return out
    finally:
        torch.set_num_threads(threads)
