"""GRPO with the three OmniAD rewards on TRL's ``GRPOTrainer``.

    omniad-train grpo --config tiny_cpu/grpo [--key value ...]

Rewards: format (1/0), detection (``alpha * F1``, pixel-exact against the ``mask``
column), answer (``answer_correct`` / ``answer_wrong``); their weights are GRPOConfig's
``reward_weights`` (order: format, detection, answer) and TRL logs each one as
``rewards/<name>/mean``.  ``use_vllm`` and the other generation settings pass through
to TRL unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from omniad_core.rewards import make_rewards
from omniad_train.config import (
    GRPO_COLUMNS,
    OmniADScriptArguments,
    RecipeError,
    apply_defaults,
    check_args,
    check_dataset,
    dataset_spec,
    parse_recipe,
)
from omniad_train.modeling import load_splits, resume_target, train_and_save
from omniad_train.planner.report import startup_checks

__all__ = ["cli", "main", "rewards_for"]

log = logging.getLogger(__name__)


def rewards_for(script_args: OmniADScriptArguments, grid: Any = None) -> list[Any]:
    """The recipe's reward functions: ``[format, detection, answer]``.

    ``grid`` (a ``textmask.Grid``, e.g. the prepared data's) replaces the recipe's
    square ``grid`` size, so its threshold and index base apply too.
    """
    return make_rewards(
        alpha=script_args.alpha,
        grid=script_args.grid if grid is None else grid,
        correct=script_args.answer_correct,
        wrong=script_args.answer_wrong,
        level=script_args.reward_level,  # type: ignore[arg-type]
    )


def main(
    script_args: OmniADScriptArguments,
    training_args: Any,
    model_args: Any,
    *,
    reward_funcs: list[Any] | None = None,
) -> Any:
    """Run GRPO; returns the trainer (after training and saving).

    ``reward_funcs`` replaces the recipe's rewards (for experiments); by default the
    three paper rewards configured from ``script_args`` on the prepared data's grid.
    Every check runs before any model loads (see :func:`omniad_train.sft.main`).
    """
    from omniad_core._quiet import quiet_known_noise

    quiet_known_noise()  # known library noise only (omniad_core._quiet)
    from trl import GRPOTrainer

    apply_defaults(script_args, training_args, model_args)
    check_args(script_args, training_args, model_args)
    folder = check_dataset(script_args, "grpo", GRPO_COLUMNS)  # before any model loads
    spec = dataset_spec(script_args)
    funcs = reward_funcs if reward_funcs is not None else rewards_for(script_args, spec["grid"])
    weights = training_args.reward_weights
    if weights is not None and len(weights) != len(funcs):
        raise RecipeError(
            f"reward_weights has {len(weights)} entries for {len(funcs)} rewards "
            "(format, detection, answer); give one weight per reward"
        )
    startup_checks(script_args, training_args, model_args, "grpo")  # batch, lengths, packages
    resume = resume_target(training_args)
    train, evaluation = load_splits(script_args, folder)
    training_args.remove_unused_columns = False  # the rewards read mask, answer, options
    log.info("GRPO on %d prompts from %s", len(train), folder)
    return train_and_save(
        GRPOTrainer,
        script_args,
        training_args,
        model_args,
        train,
        evaluation,
        resume,
        spec,
        reward_funcs=funcs,
    )


def cli(argv: Sequence[str] | None = None) -> Any:
    """Parse a recipe and run :func:`main`."""
    from trl import GRPOConfig

    return main(*parse_recipe(GRPOConfig, argv))
