"""The spread of the demo's figures over seeds: run ``omniad demo`` for K seeds, print ranges.

    python benchmarks/demo_spread.py --seeds 0 1 2 [--quick] [--out runs/spread]
    python benchmarks/demo_spread.py --from-runs runs/spread/seed0 runs/spread/seed1

Each seed runs ``omniad-train demo --out OUT/seedN --seed N`` in its own process, one
after the other (a full demo takes about 15 minutes on 2 cores; a run that stopped
resumes where it was).  The seed changes the synthetic data (training and held-out),
the model's initialisation and the training's sampling, so the spread is what a user
re-running the demo with another seed, or on another machine kind, should expect.
Then one Markdown table: every figure of every stage with its minimum, maximum, mean
and each seed's value.  ``--from-runs`` only reads finished runs (their
``report.json``) and prints the table.

docs/demo.md, "How much the figures vary", gives the measured ranges and the command.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["main", "read_run", "spread_table"]

#: report.json: ``{"metrics": {stage: {label: value}}, ...}``
Run = Mapping[str, Mapping[str, float]]


def read_run(folder: str | Path) -> tuple[int | None, Run]:
    """The seed (from the folder name ``seedN``, else None) and the figures of
    a finished demo run (its ``report.json``)."""
    folder = Path(folder)
    data = json.loads((folder / "report.json").read_text())
    seed = None
    name = folder.name
    if name.startswith("seed") and name[4:].isdigit():
        seed = int(name[4:])
    return seed, data["metrics"]


def _fmt(label: str, v: float) -> str:
    return f"{v:.3f}" if "R_det" in label else f"{v:.1f}"


def spread_table(runs: Mapping[int, Run], stages: Sequence[str] | None = None) -> str:
    """A Markdown table of each figure's range over the seeds of ``runs``.

    >>> runs = {0: {"sft": {"detection: pixel f1": 20.0}},
    ...         1: {"sft": {"detection: pixel f1": 16.0}}}
    >>> print(spread_table(runs))
    | stage | metric | min | max | mean | seed 0 | seed 1 |
    |---|---|---:|---:|---:|---:|---:|
    | sft | detection: pixel f1 | 16.0 | 20.0 | 18.0 | 20.0 | 16.0 |
    """
    seeds = sorted(runs)
    stages = list(stages or dict.fromkeys(s for r in runs.values() for s in r))
    head = "| stage | metric | min | max | mean | " + " | ".join(f"seed {s}" for s in seeds)
    lines = [head + " |", "|---|---|" + "---:|" * (3 + len(seeds))]
    for stage in stages:
        labels = dict.fromkeys(k for r in runs.values() for k in r.get(stage, {}))
        for label in labels:
            vals = [runs[s].get(stage, {}).get(label) for s in seeds]
            got = [v for v in vals if isinstance(v, (int, float)) and v == v]
            if not got:
                continue
            cells = [min(got), max(got), sum(got) / len(got)]
            shown = [_fmt(label, v) for v in cells]
            shown += ["-" if v is None or v != v else _fmt(label, v) for v in vals]
            lines.append(f"| {stage} | {label} | " + " | ".join(shown) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo for each seed (or read finished runs) and print the spread table."""
    p = argparse.ArgumentParser(
        prog="python benchmarks/demo_spread.py",
        description="Run `omniad demo` for several seeds and print each figure's range.",
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="default 0 1 2")
    p.add_argument("--quick", action="store_true", help="quick plans (a smoke test of this script)")
    p.add_argument("--out", default="runs/spread", help="folder of the runs (OUT/seedN)")
    p.add_argument(
        "--from-runs",
        "--from_runs",
        nargs="+",
        metavar="DIR",
        help="only read these finished runs (folders named seedN) and print the table",
    )
    a = p.parse_args(argv)
    runs: dict[int, Run] = {}
    if a.from_runs:
        for k, folder in enumerate(a.from_runs):
            seed, metrics = read_run(folder)
            runs[seed if seed is not None else k] = metrics
    else:
        for seed in a.seeds:
            folder = Path(a.out) / f"seed{seed}"
            cmd = [sys.executable, "-m", "omniad_train", "demo", "--out", str(folder)]
            cmd += ["--seed", str(seed), *(["--quick"] if a.quick else [])]
            print("$ " + " ".join(cmd), file=sys.stderr, flush=True)
            if subprocess.run(cmd, check=False).returncode != 0:
                print(f"demo_spread: the run of seed {seed} failed", file=sys.stderr)
                return 1
            runs[seed] = read_run(folder)[1]
    print(spread_table(runs, ("untrained", "sft", "sft+grpo")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
