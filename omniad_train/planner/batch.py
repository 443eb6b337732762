"""The batch of a run: one global batch per recipe, realised on any number of processes.

A recipe states the paper's batch once, as ``global_batch_size``: samples per optimizer
step for SFT, completions per optimizer step for GRPO (``prompts_per_step x
num_generations``).  :func:`resolve_batch` derives the per-device batch and the gradient
accumulation from the world size and a per-device cap (``max_per_device_batch``), so a
recipe means the same thing on 1, 2, 4 or 8 GPUs:

>>> b = resolve_batch(16, world_size=1, max_per_device=4)
>>> (b.per_device, b.grad_accum, b.global_batch)
(4, 4, 16)
>>> b = resolve_batch(16, world_size=8, max_per_device=4, num_generations=16)
>>> (b.per_device, b.grad_accum, b.prompts_per_step, b.generation_batch_size)
(2, 1, 1, 16)

A world size that cannot realise the batch exactly is refused, never rounded:

>>> resolve_batch(16, world_size=3)
Traceback (most recent call last):
...
omniad_train.recipe_checks.RecipeError: global_batch_size 16 cannot be split evenly over 3 processes (16 / 3 is not a whole number): run on 1, 2, 4 or 8 processes, or set global_batch_size to a multiple of 3 (e.g. 15 or 18)

Without ``global_batch_size`` the explicit ``per_device_train_batch_size`` and
``gradient_accumulation_steps`` are kept, and the resulting batch is what the plan
reports.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

from omniad_train.recipe_checks import RecipeError

__all__ = ["BatchPlan", "resolve_batch", "world_size_from_env"]


@dataclass(frozen=True)
class BatchPlan:
    """How one optimizer step's batch is laid out over the processes.

    Attributes
    ----------
    world_size : int
        Number of training processes (GPUs).
    per_device, grad_accum : int
        ``per_device_train_batch_size`` and ``gradient_accumulation_steps``.
    global_batch : int
        ``per_device x grad_accum x world_size``: samples (SFT) or completions (GRPO) per
        optimizer step.
    num_generations : int or None
        GRPO: completions per prompt (None for SFT).
    generation_batch_size, steps_per_generation : int or None
        GRPO: completions generated at once and the optimizer micro-steps they feed
        (TRL's fields of the same names).
    derived : bool
        Whether per-device batch and accumulation were derived from ``global_batch_size``.
    """

    world_size: int
    per_device: int
    grad_accum: int
    global_batch: int
    num_generations: int | None = None
    generation_batch_size: int | None = None
    steps_per_generation: int | None = None
    derived: bool = False

    @property
    def prompts_per_step(self) -> int | None:
        """GRPO: distinct prompts per optimizer step (``global_batch / num_generations``)."""
        if not self.num_generations:
            return None
        return self.global_batch // self.num_generations

    @property
    def prompts_per_generation(self) -> int | None:
        """GRPO: distinct prompts per generation round."""
        if not self.num_generations or not self.generation_batch_size:
            return None
        return self.generation_batch_size // self.num_generations

    def as_dict(self) -> dict[str, Any]:
        """The fields and the prompt counts, for JSON."""
        out = asdict(self)
        out.update(
            prompts_per_step=self.prompts_per_step,
            prompts_per_generation=self.prompts_per_generation,
        )
        return out


def world_size_from_env() -> int:
    """The number of training processes: an initialised ``torch.distributed`` group's size,
    else ``WORLD_SIZE`` (set by ``torchrun`` and ``accelerate launch``), else 1."""
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return int(dist.get_world_size())
    except ImportError:  # pragma: no cover - torch is a dependency of training
        pass
    text = os.environ.get("WORLD_SIZE", "1").strip() or "1"
    try:
        n = int(text)
    except ValueError:
        raise RecipeError(
            f"WORLD_SIZE = {text!r} in the environment is not a whole number; unset it or "
            "launch with torchrun / accelerate launch"
        ) from None
    if n < 1:
        raise RecipeError(f"WORLD_SIZE = {n} in the environment must be >= 1")
    return n


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _near_multiples(n: int, k: int) -> str:
    lo, hi = (n // k) * k, (n // k + 1) * k
    return f"{lo} or {hi}" if lo > 0 else str(hi)


def resolve_batch(
    global_batch: int | None,
    *,
    world_size: int,
    max_per_device: int | None = None,
    per_device: int | None = None,
    grad_accum: int | None = None,
    num_generations: int | None = None,
    generation_batch_size: int | None = None,
    steps_per_generation: int | None = None,
) -> BatchPlan:
    """Lay out ``global_batch`` over ``world_size`` processes.

    Parameters
    ----------
    global_batch : int or None
        Samples (SFT) or completions (GRPO) per optimizer step; None keeps ``per_device``
        (default 8, TRL's) and ``grad_accum`` (default 1) as given.
    world_size : int
        Number of processes.
    max_per_device : int, optional
        Largest per-device batch the derivation may choose (a memory cap); the rest
        becomes gradient accumulation.  An explicit ``per_device`` is not capped.
    per_device, grad_accum : int, optional
        Values the recipe set explicitly: with ``global_batch`` they must agree with it.
    num_generations : int, optional
        GRPO: completions per prompt; the generation batch must hold whole groups.
    generation_batch_size, steps_per_generation : int, optional
        GRPO values the recipe set explicitly (at most one, as TRL requires).

    Raises
    ------
    RecipeError
        A world size that cannot realise the batch exactly, explicit values that disagree
        with it, or a generation batch that does not hold whole groups of
        ``num_generations``.
    """
    if world_size < 1:
        raise RecipeError(f"world size {world_size} must be >= 1")
    derived = global_batch is not None
    if global_batch is None:
        p, a = per_device or 8, grad_accum or 1
    else:
        p, a = _derive(global_batch, world_size, max_per_device, per_device, grad_accum)
    g = p * a * world_size
    if num_generations is None:
        return BatchPlan(world_size, p, a, g, derived=derived)
    if generation_batch_size is not None and steps_per_generation is not None:
        raise RecipeError(
            "generation_batch_size and steps_per_generation are both set; TRL takes one of them "
            "(leave both unset: one generation round per optimizer step)"
        )
    if generation_batch_size is not None:
        gen = generation_batch_size
        if gen % (p * world_size):
            raise RecipeError(
                f"generation_batch_size {gen} is not a multiple of per_device_train_batch_size "
                f"{p} x {world_size} processes = {p * world_size}; change it or unset it"
            )
        spg = gen // (p * world_size)
    else:
        spg = steps_per_generation or a
        gen = p * world_size * spg
    if gen % num_generations:
        raise RecipeError(
            f"the generation batch of {gen} completions (per_device_train_batch_size {p} x "
            f"{world_size} processes x steps_per_generation {spg}) is not divisible by "
            f"num_generations {num_generations}: every prompt needs a whole group. Fix: set "
            f"global_batch_size to a multiple of {num_generations} (e.g. {num_generations}), "
            "or make per_device_train_batch_size x number of processes x steps_per_generation "
            "a multiple of num_generations."
        )
    return BatchPlan(world_size, p, a, g, num_generations, gen, spg, derived)


def _derive(
    global_batch: int,
    world_size: int,
    cap: int | None,
    per_device: int | None,
    grad_accum: int | None,
) -> tuple[int, int]:
    if global_batch % world_size:
        fits = [str(d) for d in _divisors(global_batch) if d <= max(world_size * 2, 8)]
        counts = f"{', '.join(fits[:-1])} or {fits[-1]}" if len(fits) > 1 else fits[0]
        raise RecipeError(
            f"global_batch_size {global_batch} cannot be split evenly over {world_size} "
            f"processes ({global_batch} / {world_size} is not a whole number): run on "
            f"{counts} processes, or set "
            f"global_batch_size to a multiple of {world_size} "
            f"(e.g. {_near_multiples(global_batch, world_size)})"
        )
    share = global_batch // world_size  # samples each process sees per optimizer step
    if per_device is not None:
        a = share // per_device
        if share % per_device or (grad_accum is not None and grad_accum != a):
            raise RecipeError(
                f"per_device_train_batch_size {per_device}"
                + (f" x gradient_accumulation_steps {grad_accum}" if grad_accum else "")
                + f" x {world_size} processes does not make global_batch_size {global_batch}; "
                "remove per_device_train_batch_size and gradient_accumulation_steps from the "
                "recipe (they are derived from global_batch_size), or make them agree"
            )
        return per_device, a
    if grad_accum is not None:
        if share % grad_accum:
            raise RecipeError(
                f"gradient_accumulation_steps {grad_accum} x {world_size} processes does not "
                f"divide global_batch_size {global_batch}; remove gradient_accumulation_steps "
                "(it is derived from global_batch_size) or make them agree"
            )
        return share // grad_accum, grad_accum
    limit = share if cap is None else min(cap, share)
    p = max(d for d in _divisors(share) if d <= limit)
    return p, share // p
