"""``omniad demo``: the whole method on synthetic defects, on a CPU, in minutes.

The command line of the demo (``omniad demo`` and ``omniad-train demo``): it parses the
options, runs :func:`~omniad_train.demo.pipeline.run_demo` and exports the best model.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from omniad_train.demo.export import export_model
from omniad_train.demo.pipeline import run_demo
from omniad_train.demo.plan import DemoPlan
from omniad_train.demo.steps import DemoError, say

__all__ = ["demo_main"]


def demo_main(argv: Sequence[str] | None = None) -> int:
    """``omniad demo [--quick] [--out DIR] [--seed N] [--overwrite] [--export DIR]``."""
    p = argparse.ArgumentParser(prog="omniad demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a ~2-minute version with tiny sizes")
    p.add_argument(
        "--out",
        default="runs/demo",
        help="output folder (re-running resumes; steps whose settings changed are redone)",
    )
    p.add_argument("--seed", type=int, default=0)
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
    a = p.parse_args(argv)
    plan = (DemoPlan.quick if a.quick else DemoPlan.full)(seed=a.seed)
    t0 = time.perf_counter()
    try:
        result = run_demo(a.out, plan, overwrite=a.overwrite)
    except DemoError as exc:
        print(f"omniad demo: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            "omniad demo: interrupted; finished steps are kept, run the same command again "
            "to go on from the step that was interrupted",
            file=sys.stderr,
        )
        return 130
    say(f"finished in {time.perf_counter() - t0:.0f} s; best model: {result.best_model}")
    if a.export:
        say(f"exported the best model to {export_model(result, a.export)}")
    return 0
