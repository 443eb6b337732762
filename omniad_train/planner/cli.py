"""``omniad-train plan``: what a recipe means on N GPUs, before anything runs.

    omniad-train plan --config RECIPE [--world_size N] [--dataset PREPARED_DIR] [--json]
                      [--trainer sft|grpo] [--zero_stage 0-3] [--reasoning_tokens N]
                      [--gpu_gib G] [--key value ...]

``RECIPE`` is a YAML path or a shipped recipe's name (``qwen2_5_vl_7b/grpo``).  Any other
``--key value`` overrides the recipe, as for ``sft``/``grpo``.  Exit status 1 when the
plan has errors (each printed), 0 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from omniad_train.planner.format import format_plan

__all__ = ["plan_main", "plan_recipe"]

#: Keys only GRPOConfig has, telling a GRPO recipe from an SFT one.
_GRPO_KEYS = ("num_generations", "max_completion_length", "reward_weights", "beta", "use_vllm")


def _parser() -> argparse.ArgumentParser:
    from omniad_train.cli import CommandParser

    p = CommandParser(
        prog="omniad-train plan",
        usage="omniad-train plan --config RECIPE [options] [--key value ...]",
        description="Plan a run from its recipe: batch, token lengths, memory, problems. "
        "Loads configs, tokenizer and processor only (no weights). Any other --key value "
        "overrides the recipe, as for `omniad-train sft` (its --help lists the keys).",
        epilog="example:\n  omniad-train plan --config qwen2_5_vl_7b/grpo --world_size 4 "
        "--zero_stage 3 \\\n      --model_name_or_path /models/Qwen2.5-VL-7B-Instruct "
        "--dataset data/omniad",
    )
    p.add_argument(
        "--config",
        required=True,
        metavar="RECIPE",
        help="a recipe YAML, or a shipped recipe's name (`omniad-train recipes`)",
    )
    p.add_argument(
        "--world_size",
        type=int,
        default=None,
        help="number of GPUs (processes); default: WORLD_SIZE or 1",
    )
    p.add_argument("--dataset", default=None, help="prepared dataset folder (dataset_path)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--trainer",
        choices=("sft", "grpo"),
        default=None,
        help="default: grpo when the recipe sets a GRPO-only key",
    )
    p.add_argument(
        "--zero_stage",
        type=int,
        choices=(0, 1, 2, 3),
        default=None,
        help="ZeRO stage for the memory estimate (e.g. 3 with accelerate/zero3.yaml)",
    )
    p.add_argument(
        "--reasoning_tokens",
        type=int,
        default=None,
        help="GRPO: tokens allowed for <think> on top of the ground truth (256)",
    )
    p.add_argument(
        "--gpu_gib",
        type=float,
        default=None,
        help="memory per GPU in GiB, to warn when the estimate does not fit",
    )
    return p


def _trainer(recipe: str) -> str:
    from omniad_train.recipe_yaml import read_recipe, resolve_recipe

    return "grpo" if any(k in read_recipe(resolve_recipe(recipe)) for k in _GRPO_KEYS) else "sft"


def _cuda() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:  # pragma: no cover
        return False


def plan_recipe(argv: Sequence[str]) -> dict[str, Any]:
    """Parse ``plan``'s arguments and build the plan (see :func:`plan_main`).

    Raises
    ------
    RecipeError
        A recipe that does not parse, or a world size that cannot realise its batch.
    """
    from omniad_train.config import parse_recipe
    from omniad_train.planner.batch import world_size_from_env
    from omniad_train.planner.report import build_plan
    from omniad_train.planner.tokens import DEFAULT_REASONING_TOKENS
    from omniad_train.recipe_checks import RecipeError

    opts, rest = _parser().parse_known_args(list(argv))
    if opts.world_size is not None and opts.world_size < 1:
        raise RecipeError(f"--world_size {opts.world_size}: expected an integer >= 1")
    kind = opts.trainer or _trainer(opts.config)
    world = opts.world_size if opts.world_size is not None else world_size_from_env()
    extra = ["--dataset_path", opts.dataset] if opts.dataset else []
    if not _cuda() and "--use_cpu" not in rest:
        extra += ["--use_cpu", "true"]  # only so TRL accepts bf16 here; nothing runs
    if kind == "sft":
        from trl import SFTConfig as cls
    else:
        from trl import GRPOConfig as cls
    s, t, m = parse_recipe(
        cls, ["--config", opts.config, *rest, *extra], world_size=world, plan_only=True
    )
    plan = build_plan(
        s,
        t,
        m,
        kind=kind,
        world_size=world,
        zero_stage=opts.zero_stage,
        reasoning_tokens=opts.reasoning_tokens or DEFAULT_REASONING_TOKENS,
        gpu_gib=opts.gpu_gib,
    )
    plan["recipe"] = opts.config
    return plan


def plan_main(argv: Sequence[str] | None = None) -> int:
    """``omniad-train plan``; returns the exit status (1 when the plan has errors)."""
    import contextlib
    import logging

    from omniad_core._quiet import quiet_known_noise
    from omniad_train.recipe_checks import RecipeError

    logging.getLogger("transformers").setLevel(logging.ERROR)
    args = list(sys.argv[1:] if argv is None else argv)
    _parser().parse_known_args(args)  # --help and a missing --config: before any library loads
    try:
        # libraries' messages (DeepSpeed logs to stdout on import) go to stderr, so stdout
        # holds the plan only (one JSON object with --json)
        with contextlib.redirect_stdout(sys.stderr):
            quiet_known_noise()  # known library noise only (omniad_core._quiet)
            plan = plan_recipe(args)
    except RecipeError as exc:
        message = " ".join(str(exc).split())
        if "--json" in args:
            print(json.dumps({"errors": [message], "warnings": []}))
        print(f"omniad-train plan: error: {message}", file=sys.stderr)
        return 1
    if "--json" in args:
        print(json.dumps(plan, default=str))
    else:
        print(format_plan(plan))
    for e in plan["errors"]:
        print(f"omniad-train plan: error: {e}", file=sys.stderr)
    return 1 if plan["errors"] else 0
