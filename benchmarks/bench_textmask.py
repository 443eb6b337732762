"""Benchmark of :mod:`textmask` against its baselines, all measured in one run.

Usage::

    python benchmarks/bench_textmask.py [--quick] [--out docs/benchmarks.md]

Sections (see ``benchmarks/README.md`` for what each one means):

1. textmask operations on 0/1 ``uint8`` masks of 512 x 512, 1024 x 1024, 900 x 1200 and
   1200 x 900 pixels (kinds ``sparse``, ``empty``, ``checker``, ``noise50``);
2. the same masks through the baselines: a memory pass, pycocotools' C RLE, the pure
   Python reference of ``tests/reference.py`` and the naive NumPy reward path of
   ``benchmarks/naive.py``;
3. ratios of the two, with the targets they are held to;
4. a GRPO batch: 16 ground truths x 16 completions = 256 seg texts;
5. cold and warm start of ``import textmask; textmask.encode(mask)`` in fresh processes;
6. codec fidelity: the best pixel F1 a perfect model reaches through the codec.

Times are the best of several ``timeit`` repeats, each ``number`` calls long with
``number`` chosen so that one repeat takes about 0.15 s (slow reference functions run
once per repeat).  ``--quick`` keeps one calibrated repeat per measurement, drops the
1200 x 900 masks, times the pure-Python reference on the 512 x 512 masks only and skips
the cold ``warmup()`` run, to finish in under a minute.  ``--out PATH`` also writes
every table as Markdown to ``PATH``, preceded by the command line.

This file is the entry point: the command line, the machine description, the console
output and the Markdown report.  The measurements live next to it, one module per group:
``_timing.py`` (run settings, ``timeit`` best-of-N, time and ratio formatting),
``_tables.py`` (console and table output), ``_inputs.py`` (masks and the non-textmask
baselines), ``_codec_speed.py`` (sections 1-3), ``_grpo_batch.py`` (4), ``_startup.py``
(5), ``_fidelity.py`` (6) and ``_targets.py`` (the targets table).  Run it as a script
(``python benchmarks/bench_textmask.py``), which puts ``benchmarks/`` on ``sys.path``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shlex
import sys
import time
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
from _codec_speed import BASELINES, OURS, MaskResult, bench_masks, bench_one, mask_sections
from _fidelity import fidelity_section
from _grpo_batch import GrpoResult, bench_grpo, grpo_batch, grpo_section
from _inputs import (
    BENCH_DIR,
    GRID,
    KINDS,
    REFERENCE,
    ROOT,
    cell_edges,
    load_naive,
    load_reference,
    make_mask,
    memory_pass,
)
from _startup import Sandbox, Startup, bench_startup, startup_section
from _tables import Section, console, log
from _targets import RATIO_TARGETS, Target, targets, targets_section
from _timing import (
    MIN_SECONDS,
    QUICK_REFERENCE_SHAPES,
    QUICK_SHAPES,
    SHAPES,
    TARGET_SECONDS,
    Config,
    best_time,
    best_times,
    div,
    ratio,
    us,
)

import textmask as tm

#: The script's own names and, re-exported, those it held before the measurements moved out.
__all__ = [
    "BASELINES",
    "BENCH_DIR",
    "GRID",
    "KINDS",
    "MIN_SECONDS",
    "OURS",
    "QUICK_REFERENCE_SHAPES",
    "QUICK_SHAPES",
    "RATIO_TARGETS",
    "REFERENCE",
    "ROOT",
    "SHAPES",
    "TARGET_SECONDS",
    "Config",
    "GrpoResult",
    "MaskResult",
    "Sandbox",
    "Section",
    "Startup",
    "Target",
    "bench_grpo",
    "bench_masks",
    "bench_one",
    "bench_startup",
    "best_time",
    "best_times",
    "cell_edges",
    "console",
    "div",
    "fidelity_section",
    "grpo_batch",
    "grpo_section",
    "load_naive",
    "load_reference",
    "loadavg",
    "log",
    "machine_info",
    "main",
    "make_mask",
    "mask_sections",
    "memory_pass",
    "ratio",
    "render_markdown",
    "startup_section",
    "targets",
    "targets_section",
    "us",
]


# --------------------------------------------------------------------------- machine
def _version(dist: str) -> str:
    """The installed version of ``dist``, or ``"not installed"``."""
    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages (other processes share the machine)."""
    return " / ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "-"


def machine_info() -> list[tuple[str, str]]:
    """``(name, value)`` lines describing the machine and the library versions."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = os.cpu_count() or 0
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    return [
        ("date", dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
        ("CPU", cpu),
        ("cores", f"{cores} ({usable} usable by this process)"),
        ("load average at start (1/5/15 min)", loadavg()),
        ("platform", platform.platform()),
        ("Python", platform.python_version()),
        ("numpy", np.__version__),
        ("numba", _version("numba")),
        ("llvmlite", _version("llvmlite")),
        ("pycocotools", _version("pycocotools")),
        ("scipy (affects Numba start-up)", _version("scipy")),
        ("textmask", tm.__version__),
    ]


# --------------------------------------------------------------------------- main
#: Sections other benchmarks write into the same page (kept when this one rewrites it).
KEPT_MARKERS = (("<!-- bench_serving: start -->", "<!-- bench_serving: end -->"),)


def kept_sections(path: Path) -> str:
    """The marked sections of other benchmarks in ``path``, to append after a rewrite."""
    if not path.is_file():
        return ""
    old = path.read_text(encoding="utf-8")
    kept = []
    for start, end in KEPT_MARKERS:
        i, j = old.find(start), old.find(end)
        if 0 <= i < j:
            kept.append(old[i : j + len(end)])
    return "".join(f"\n{block}\n" for block in kept)


def main(argv: Sequence[str] | None = None) -> int:
    """Run every section, print the tables and, with ``--out``, write them as Markdown."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, < 60 s in all")
    parser.add_argument("--out", type=Path, help="also write the tables as Markdown here")
    args = parser.parse_args(argv)
    cfg = Config.make(args.quick)
    command = shlex.join(["python", *sys.argv]) if argv is None else shlex.join(argv)
    started = time.perf_counter()

    info = machine_info()
    console.print("[bold]textmask benchmark[/bold]  " + command)
    for k, v in info:
        console.print(f"  {k}: {v}")

    tm.warmup()  # compile or load every kernel before anything is timed
    ref = load_reference()
    naive = load_naive()

    sections = mask_sections(results := bench_masks(cfg, ref, naive), cfg)
    grpo = bench_grpo(cfg, naive)
    sections.append(grpo_section(grpo))
    startup = bench_startup(cfg)
    sections.append(startup_section(startup))
    sections.append(fidelity_section(cfg))
    goals = targets_section(targets(results, grpo, startup))

    elapsed = time.perf_counter() - started
    info.append(("load average at end (1/5/15 min)", loadavg()))
    for sec in [*sections, goals]:
        sec.show()
    console.print(f"\n[dim]total time {elapsed:.0f} s, load average at end {loadavg()}[/dim]")

    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        text = render_markdown(command, info, [goals, *sections], cfg, elapsed)
        args.out.write_text(text + kept_sections(args.out))
        console.print(f"wrote {args.out}")
    return 0


def render_markdown(
    command: str, info: list[tuple[str, str]], sections: list[Section], cfg: Config, elapsed: float
) -> str:
    """The Markdown report: command, mode, machine, then every section."""
    head = [
        "# textmask benchmarks",
        "",
        "Generated by `benchmarks/bench_textmask.py` (see `benchmarks/README.md`); do not "
        "edit by hand.  Command:",
        "",
        "```",
        command,
        "```",
        "",
        f"Mode: {'quick' if cfg.quick else 'full'}; best of {cfg.repeat} timeit repeats of "
        f"about {TARGET_SECONDS} s each ({cfg.slow_repeat} single calls for the pure-Python "
        f"reference); the run took {elapsed:.0f} s.  Times are in microseconds unless "
        "marked otherwise; ratios are *baseline / textmask* (larger is better) except "
        "*encode / memory*.",
        "",
        "## Machine",
        "",
    ]
    head += [f"- {k}: {v}" for k, v in info]
    return "\n".join(head) + "\n\n" + "\n".join(sec.markdown() for sec in sections)


if __name__ == "__main__":
    raise SystemExit(main())
