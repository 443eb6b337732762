"""``omniad demo``: the whole method on synthetic defects, on a CPU, in minutes.

The command line of the demo (``omniad demo`` and ``omniad-train demo``): it parses the
options, runs :func:`~omniad_train.demo.pipeline.run_demo`, prints the best model with
the rule that picked it and exports it.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from omniad_train.demo.expected import range_line
from omniad_train.demo.export import export_model
from omniad_train.demo.pipeline import run_demo
from omniad_train.demo.plan import DemoPlan
from omniad_train.demo.steps import DemoError, say

__all__ = ["build_parser", "demo_main"]


_EPILOG = """\
examples:
  omniad demo --quick                        # a ~2-minute smoke test of the pipeline
  omniad demo --out runs/demo                # the full demo, about 15 minutes on 2 cores
  omniad demo --out runs/demo_s1 --seed 1    # the same with another seed
  python benchmarks/demo_spread.py --seeds 0 1 2   # the spread of the figures over seeds

The best model is the trained one with the highest pixel F1 + image F1 + MMAD average on
the held-out images; the run prints the rule and report.md says it too."""


def build_parser(prog: str = "omniad demo") -> argparse.ArgumentParser:
    """The demo's argument parser (``prog``: ``omniad demo`` or ``omniad-train demo``)."""
    from omniad_train.cli import CommandParser

    p = CommandParser(
        prog=prog,
        description="Train and evaluate a small OmniAD model on synthetic defects, on a CPU: "
        "synthetic images, data preparation, a small Qwen2.5-VL built offline, vision stage "
        "0, SFT then GRPO through TRL, evaluation of the three models on held-out images and "
        "a report (docs/demo.md).",
        epilog=_EPILOG,
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="a ~2-minute smoke test with tiny sizes: checks the install, its figures mean "
        "nothing (zeros are expected)",
    )
    p.add_argument(
        "--out",
        default="runs/demo",
        metavar="DIR",
        help="output folder, default runs/demo (re-running resumes; steps whose settings "
        "changed are redone)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        metavar="N",
        help="seed of the data, the model's initialisation and training (default 0); the "
        "same seed on the same kind of machine gives the same figures",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="first delete the demo files of an earlier run in --out (refused for a "
        "folder that is not a demo's)",
    )
    p.add_argument(
        "--export",
        metavar="DIR",
        help="copy the best checkpoint here with a model card "
        "(omniad_core/demo_model is the embedded model `omniad inspect` uses)",
    )
    return p


def demo_main(argv: Sequence[str] | None = None, prog: str = "omniad demo") -> int:
    """``omniad demo [--quick] [--out DIR] [--seed N] [--overwrite] [--export DIR]``."""
    a = build_parser(prog).parse_args(argv)
    plan = (DemoPlan.quick if a.quick else DemoPlan.full)(seed=a.seed)
    t0 = time.perf_counter()
    try:
        result = run_demo(a.out, plan, overwrite=a.overwrite)
    except DemoError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            f"{prog}: interrupted; finished steps are kept, run the same command again "
            "to go on from the step that was interrupted",
            file=sys.stderr,
        )
        return 130
    say(f"finished in {time.perf_counter() - t0:.0f} s; best model: {result.best_model}")
    say(f"  picked as {result.best.rule}")
    for note in result.best.notes:
        say(f"  {note}")
    checked = range_line(result.plan, result.metrics)
    if checked is not None:
        say(checked)
    if a.export:
        say(f"exported the best model to {export_model(result, a.export)}")
    return 0
