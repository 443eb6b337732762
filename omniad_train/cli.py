"""``omniad-train prepare|synth|eval|plan|sft|grpo|demo``: the training command line.

``sft`` and ``grpo`` take ``--config RECIPE.yaml`` plus ``--key value`` overrides (any
field of the recipe's dataclasses); ``prepare`` builds the datasets they read.  A bad
recipe (unknown key, wrong type or range, a YAML tag, a missing file) is a one-line
``error: ...`` and exit status 1, before any model loads.  ``plan`` takes the same
recipe and prints what it means on N GPUs (:mod:`omniad_train.planner.cli`).  Under
``accelerate launch`` or ``torchrun`` run ``python -m omniad_train sft ...``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["main"]

_USAGE = """usage: omniad-train {prepare,synth,eval,plan,sft,grpo,demo} [options]

  prepare   build SFT and GRPO datasets from MMAD, MVTec-style folders or JSONL
  synth     write synthetic defect images (MVTec folders + mmad.json)
  eval      evaluate a model: omniad-train eval {mmad,detection,merge} ...
  plan      what a recipe means on N GPUs (batch, lengths, memory), before it runs:
            omniad-train plan --config recipe.yaml --world_size 4 [--dataset DIR] [--json]
  sft       supervised fine-tuning:  omniad-train sft --config recipe.yaml
  grpo      GRPO with the three rewards:  omniad-train grpo --config recipe.yaml
  demo      the whole method on synthetic defects, end to end (also `omniad demo`)

Run `omniad-train COMMAND --help` for a command's options."""


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch to a sub-command; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_USAGE)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "prepare":
        from omniad_train.data.cli import prepare_main

        return int(prepare_main(rest))
    if command == "eval":
        from omniad_train.evaluation.cli import main as eval_main

        return int(eval_main(rest))
    if command == "demo":
        from omniad_train.demo import demo_main

        return int(demo_main(rest))
    if command == "plan":
        from omniad_train.planner.cli import plan_main

        return int(plan_main(rest))
    if command == "synth":
        from omniad_train.synthetic import synthetic_main

        return int(synthetic_main(rest))
    if command not in ("sft", "grpo"):
        print(f"omniad-train: unknown command {command!r}\n\n{_USAGE}", file=sys.stderr)
        return 2
    from omniad_core.checkpoint import MissingPackageError
    from omniad_train.config import RecipeError

    try:
        if command == "sft":
            from omniad_train.sft import cli
        else:
            from omniad_train.grpo import cli
        cli(rest)
    except (RecipeError, FileNotFoundError, MissingPackageError) as exc:
        message = " ".join(str(exc).split())  # one line, whatever the library wrote
        print(f"omniad-train {command}: error: {message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
