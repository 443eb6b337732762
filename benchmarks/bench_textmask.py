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
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import importlib
import importlib.util
import math
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import timeit
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pycocotools.mask as coco
from rich.console import Console
from rich.table import Table

import textmask as tm
from textmask.fidelity import DEFECT_KINDS

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = Path(__file__).resolve().parent
REFERENCE = ROOT / "tests" / "reference.py"

GRID = 24
KINDS = ("sparse", "empty", "checker", "noise50")
#: Mask shapes (H, W).  900 x 1200 is not square; 1200 x 900 also has a width that is not
#: a multiple of 8, so encode cannot read the mask as 64-bit words.
SHAPES = ((512, 512), (1024, 1024), (900, 1200), (1200, 900))
QUICK_SHAPES = SHAPES[:3]
#: Shapes on which the slow pure-Python reference is timed in --quick mode.
QUICK_REFERENCE_SHAPES = ((512, 512),)
#: Aim for this many seconds per timeit repeat, and at least MIN_SECONDS.
TARGET_SECONDS = 0.15
MIN_SECONDS = 0.1

console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)


# --------------------------------------------------------------------------- config
@dataclass(frozen=True)
class Config:
    """How hard to measure."""

    quick: bool
    repeat: int  # timeit repeats of fast functions (best is kept)
    slow_repeat: int  # repeats of the pure-Python reference (one call each)
    startup_runs: int  # fresh processes per warm start-up measurement
    cold_runs: int  # fresh package copies + caches per cold measurement
    fidelity_n: int  # masks per defect kind in the fidelity table
    grpo_naive_repeat: int  # repeats of the 256-text naive loop
    shapes: tuple[tuple[int, int], ...]  # mask shapes

    @classmethod
    def make(cls, quick: bool) -> Config:
        if quick:  # one calibrated repeat per measurement, fewer shapes and processes
            return cls(True, 1, 1, 1, 1, 10, 1, QUICK_SHAPES)
        return cls(False, 7, 3, 5, 2, 30, 3, SHAPES)


# --------------------------------------------------------------------------- output
@dataclass
class Section:
    """One table with its title and the paragraph that explains it."""

    title: str
    intro: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def show(self) -> None:
        table = Table(title=self.title, title_justify="left", title_style="bold")
        for k, h in enumerate(self.headers):
            table.add_column(h, justify="left" if k == 0 else "right")
        for row in self.rows:
            table.add_row(*row)
        console.print()
        console.print(table)
        for note in self.notes:
            console.print(f"  {note}", style="dim")

    def markdown(self) -> str:
        out = [f"## {self.title}", "", self.intro, ""]
        out.append("| " + " | ".join(self.headers) + " |")
        out.append("|" + "|".join([":---"] + ["---:"] * (len(self.headers) - 1)) + "|")
        out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in self.rows]
        if self.notes:
            out.append("")
            out += [f"- {n}" for n in self.notes]
        return "\n".join(out) + "\n"


def us(seconds: float | None) -> str:
    """Seconds as a microsecond string with sensible precision."""
    if seconds is None:
        return "-"
    v = seconds * 1e6
    if v < 10:
        return f"{v:.2f}"
    if v < 1000:
        return f"{v:.1f}"
    return f"{v:,.0f}"


def ratio(x: float | None) -> str:
    if x is None:
        return "-"
    if x < 10:
        return f"{x:.2f}x"
    if x < 1000:
        return f"{x:.1f}x"
    return f"{x:,.0f}x"


def div(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def log(msg: str) -> None:
    console.print(f"[dim]{time.strftime('%H:%M:%S')}  {msg}[/dim]")


# --------------------------------------------------------------------------- timing
def _calibrate(timer: timeit.Timer) -> tuple[int, float]:
    """``number`` for which one repeat takes ~0.15 s (>= 0.1 s), and that repeat's time."""
    number = 1
    elapsed = timer.timeit(1)
    while elapsed < MIN_SECONDS:
        guess = int(number * TARGET_SECONDS / max(elapsed, 1e-7))
        number = max(number * 2, min(guess, number * 1000))
        elapsed = timer.timeit(number)
    return number, elapsed


def best_times(fns: dict[str, Callable[[], Any]], repeat: int) -> dict[str, float]:
    """Best seconds per call of each function over ``repeat`` timeit repeats.

    ``number`` is chosen per function so that one repeat takes about 0.15 s (a function
    slower than 0.1 s runs once per repeat); the calibrating repeat counts as the
    first.  The remaining repeats go round-robin over the functions, so that a burst
    of load from other processes spreads over all of them instead of spoiling every
    repeat of one.
    """
    timers = {k: timeit.Timer(fn) for k, fn in fns.items()}
    numbers, best = {}, {}
    for k, timer in timers.items():
        numbers[k], elapsed = _calibrate(timer)
        best[k] = elapsed / numbers[k]
    for _ in range(repeat - 1):
        for k, timer in timers.items():
            best[k] = min(best[k], timer.timeit(numbers[k]) / numbers[k])
    return best


def best_time(fn: Callable[[], Any], repeat: int) -> float:
    """Best seconds per call of one function (see :func:`best_times`)."""
    return best_times({"fn": fn}, repeat)["fn"]


# --------------------------------------------------------------------------- inputs
def cell_edges(n_pixels: int, n_cells: int = GRID) -> np.ndarray:
    """Exact grid geometry: edge ``k`` is ``floor(k * n_pixels / n_cells)``."""
    return (np.arange(n_cells + 1) * n_pixels) // n_cells


def make_mask(kind: str, shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A 0/1 ``uint8`` benchmark mask of one kind."""
    h, w = shape
    rng = np.random.default_rng(seed)
    if kind == "empty":
        return np.zeros(shape, np.uint8)
    if kind == "noise50":
        return rng.integers(0, 2, size=shape, dtype=np.uint8)
    if kind == "checker":
        row_cell = np.repeat(np.arange(GRID), np.diff(cell_edges(h)))
        col_cell = np.repeat(np.arange(GRID), np.diff(cell_edges(w)))
        return np.asarray((row_cell[:, None] + col_cell[None, :]) % 2 == 0, dtype=np.uint8)
    if kind == "sparse":  # three small blobs and two thin scratches
        m = np.zeros(shape, np.uint8)
        s = min(h, w)
        yy, xx = np.ogrid[:h, :w]
        for _ in range(3):
            cy, cx = rng.uniform(0.1, 0.9) * h, rng.uniform(0.1, 0.9) * w
            r = rng.uniform(0.005, 0.02) * s
            m[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 1
        for _ in range(2):
            y0, x0 = rng.uniform(0.1, 0.9) * h, rng.uniform(0.1, 0.9) * w
            angle, length = rng.uniform(0, np.pi), rng.uniform(0.05, 0.15) * s
            t = np.linspace(0.0, 1.0, int(2 * length) + 2)
            ys = np.clip(np.rint(y0 + t * length * np.sin(angle)), 0, h - 2).astype(np.intp)
            xs = np.clip(np.rint(x0 + t * length * np.cos(angle)), 0, w - 1).astype(np.intp)
            m[ys, xs] = 1
            m[ys + 1, xs] = 1  # 2 px wide
        return m
    raise ValueError(f"unknown mask kind {kind!r}")


def memory_pass(mask: np.ndarray) -> Callable[[], Any]:
    """``mask.view(np.uint64).max()``: one read of the mask at memory speed."""
    if mask.shape[1] % 8 == 0:
        return lambda: mask.view(np.uint64).max()
    return lambda: mask.reshape(-1).view(np.uint64).max()  # width not a multiple of 8


_PROSE = (
    "The anomalous region is {}.",
    "Looking at the surface, I see a defect.\n{}\nThe rest of the part is normal.",
    "Answer: {} (24 x 24 grid)",
)
_GARBAGE = (
    "none",
    "no anomaly",
    "(3, x)-(4,",
    "[[,]] 12 34 ((",
    "(99, 99), (-1, 5)",
    "the defect spans (2, 20)-(4, 3) roughly",
    "lorem ipsum dolor sit amet",
)


def _perturb(cells: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A slightly wrong prediction of ``cells``: shifted, dilated, eroded or spotted."""
    c = cells.copy()
    op = int(rng.integers(0, 5))
    if op == 1:  # shift by up to one cell
        dy, dx = (int(v) for v in rng.integers(-1, 2, size=2))
        c = np.roll(c, (dy, dx), axis=(0, 1))
    elif op == 2:  # dilate horizontally and vertically
        c = c | np.roll(c, 1, 0) | np.roll(c, -1, 0) | np.roll(c, 1, 1) | np.roll(c, -1, 1)
    elif op == 3:  # drop a third of the cells
        c &= rng.random(c.shape) > 0.33
    if op == 4 or rng.random() < 0.25:  # a few false positives
        c[rng.integers(0, GRID, 2), rng.integers(0, GRID, 2)] = True
    return c


def _dress(text: str, rng: np.random.Generator) -> str:
    """Write a canonical text the way a model might: prose, line breaks, brackets, junk."""
    u = rng.random()
    if u < 0.05:
        return ""
    if u < 0.10:
        return str(rng.choice(_GARBAGE))
    if u < 0.25:
        return str(rng.choice(_PROSE)).format(text)
    if u < 0.40:  # "(14,\n12)": line breaks inside pairs and between runs
        return text.replace(", ", ",\n")
    if u < 0.48:  # "[3, 4] to [3, 6]"
        return text.replace("(", "[").replace(")", "]").replace("]-[", "] to [")
    return text


def grpo_batch(seed: int = 1) -> tuple[list[np.ndarray], list[str]]:
    """16 ground truths (12 defects, 4 normal) and 16 completions for each of them."""
    rng = np.random.default_rng(seed)
    gts = [m.astype(np.uint8) for _, m in tm.defect_masks(4, (512, 512), seed=seed)]
    gts += [np.zeros((512, 512), np.uint8) for _ in range(4)]
    texts = []
    for gt in gts:
        cells = tm.patchify(gt)
        for _ in range(16):
            pred = _perturb(cells, rng) if rng.random() < 0.9 else cells
            texts.append(_dress(tm.runs_to_text(tm.cells_to_runs(pred)), rng))
    return gts, texts


# --------------------------------------------------------------------------- baselines
def load_reference(wait_seconds: float = 1800.0) -> ModuleType:
    """Import ``tests/reference.py``, waiting for it if another engineer is writing it."""
    deadline = time.monotonic() + wait_seconds
    while not REFERENCE.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"{REFERENCE} did not appear within {wait_seconds:.0f} s")
        log(f"waiting for {REFERENCE} ...")
        time.sleep(10)
    sys.path.insert(0, str(REFERENCE.parent))
    return importlib.import_module("reference")


def load_naive() -> ModuleType:
    spec = importlib.util.spec_from_file_location("naive", BENCH_DIR / "naive.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- section 1-3
OURS = ("patchify", "encode", "decode_cells", "decode_pixels", "reward_gt", "reward_mask")
BASELINES = (
    "memory",
    "coco_encode",
    "coco_decode",
    "ref_encode",
    "ref_decode_cells",
    "ref_decode_pixels",
    "ref_reward",
    "naive_reward",
)


@dataclass
class MaskResult:
    label: str
    kind: str
    shape: tuple[int, int]
    chars: int
    t: dict[str, float | None]


def bench_masks(cfg: Config, ref: ModuleType, naive: ModuleType) -> list[MaskResult]:
    results: list[MaskResult] = []
    for shape in cfg.shapes:
        for kind in KINDS:
            mask = make_mask(kind, shape, seed=len(results))
            label = f"{shape[0]}x{shape[1]} {kind}"
            log(f"masks: {label}")
            results.append(bench_one(cfg, ref, naive, label, kind, mask))
    return results


def bench_one(
    cfg: Config, ref: ModuleType, naive: ModuleType, label: str, kind: str, mask: np.ndarray
) -> MaskResult:
    h, w = mask.shape
    text = tm.encode(mask)
    gt = tm.GroundTruth(mask)
    fortran = np.asfortranarray(mask)
    rle = coco.encode(fortran)

    # correctness first: the baselines must compute the same thing
    assert np.array_equal(coco.decode(rle), mask), label
    cells = tm.decode(text)
    assert np.array_equal(cells, tm.patchify(mask)), label
    assert np.array_equal(tm.decode(text, shape=(h, w)), tm.unpatchify(cells, (h, w))), label
    reward = tm.detection_reward(text, gt)
    assert reward == tm.detection_reward(text, mask), label
    naive_reward = naive.naive_detection_reward(text, mask)
    assert math.isclose(naive_reward, reward, rel_tol=1e-12), (label, naive_reward, reward)

    t: dict[str, float | None] = dict.fromkeys(OURS + BASELINES)
    fast: dict[str, Callable[[], Any]] = {
        "patchify": lambda: tm.patchify(mask),
        "encode": lambda: tm.encode(mask),
        "decode_cells": lambda: tm.decode(text),
        "decode_pixels": lambda: tm.decode(text, shape=(h, w)),
        "reward_gt": lambda: tm.detection_reward(text, gt),
        "reward_mask": lambda: tm.detection_reward(text, mask),
        "memory": memory_pass(mask),
        "coco_encode": lambda: coco.encode(fortran),
        "coco_decode": lambda: coco.decode(rle),
        "naive_reward": lambda: naive.naive_detection_reward(text, mask),
    }
    t.update(best_times(fast, cfg.repeat))
    if not cfg.quick or (h, w) in QUICK_REFERENCE_SHAPES:
        out: dict[str, Any] = {}

        def keep(key: str, fn: Callable[[], Any]) -> Callable[[], None]:
            def run() -> None:
                out[key] = fn()

            return run

        slow = {
            "ref_encode": lambda: ref.ref_encode(mask, GRID, GRID, 0.0, 0),
            "ref_decode_cells": lambda: ref.ref_decode_tolerant(text, GRID, GRID, 0)[0],
            "ref_decode_pixels": lambda: ref.ref_unpatchify(
                ref.ref_decode_tolerant(text, GRID, GRID, 0)[0], h, w
            ),
            "ref_reward": lambda: ref.ref_detection_reward(
                text, mask, GRID, GRID, 2.0, "pixel", 0.0
            ),
        }
        t.update(best_times({k: keep(k, fn) for k, fn in slow.items()}, cfg.slow_repeat))
        assert out["ref_encode"] == text, label
        assert np.array_equal(out["ref_decode_cells"], cells), label
        assert np.array_equal(out["ref_decode_pixels"], tm.unpatchify(cells, (h, w))), label
        assert math.isclose(out["ref_reward"], reward, rel_tol=1e-12), label
    return MaskResult(label, kind, (h, w), len(text), t)


def mask_sections(results: list[MaskResult], cfg: Config) -> list[Section]:
    ours = Section(
        "textmask operations (µs)",
        "Best-of-N time of one call of each public operation on 0/1 `uint8` masks, 24 x 24 "
        "grid.  `chars` is the length of the canonical text.  *decode → cells* returns the "
        "24 x 24 grid, *decode → pixels* a mask of the input's shape.  *reward (GT)* is "
        "`detection_reward(text, gt)` with a prepared `GroundTruth`; *reward (mask)* "
        "prepares it from the raw mask on every call.  The text is the mask's own "
        "canonical text.",
        [
            "mask",
            "chars",
            "patchify",
            "encode",
            "decode → cells",
            "decode → pixels",
            "reward (GT)",
            "reward (mask)",
        ],
    )
    base = Section(
        "Baselines on the same masks (µs)",
        "*memory pass* is `mask.view(np.uint64).max()` (for a width that is not a multiple "
        "of 8, the flattened mask is viewed), the floor for anything that reads every "
        "pixel.  *coco* is pycocotools' C RLE (`mask.encode` of a mask already in Fortran "
        "order, which is its best case, and `mask.decode`).  *ref* is the pure-Python "
        "reference of `tests/reference.py` (one call per repeat).  *naive reward* is "
        "`benchmarks/naive.py`: regex parse, paint cells, upsample with `np.repeat`, F1 "
        "with NumPy sums; it was checked to give the same reward as textmask on every "
        "input before timing."
        + (
            "  With `--quick` the reference is timed on the 512 x 512 masks only."
            if cfg.quick
            else ""
        ),
        [
            "mask",
            "memory pass",
            "coco encode",
            "coco decode",
            "ref encode",
            "ref decode → cells",
            "ref decode → pixels",
            "ref reward",
            "naive reward",
        ],
    )
    rat = Section(
        "Ratios",
        "*encode / memory* is how many memory passes one encode costs (target ≤ 4).  The "
        "other columns are baseline time / textmask time, so larger is better: coco "
        "encode vs `encode` (targets > 1 everywhere, ≥ 5 on sparse, ≥ 50 on noise50), "
        "coco decode vs `decode(..., shape=)` (target ≥ 10), reference vs textmask "
        "(target ≥ 100 for encode), and the naive reward path vs `detection_reward` "
        "from the raw mask and with a prepared `GroundTruth`.",
        [
            "mask",
            "encode / memory",
            "coco enc / ours",
            "coco dec / ours",
            "ref enc / ours",
            "ref dec px / ours",
            "ref reward / ours",
            "naive / ours (mask)",
            "naive / ours (GT)",
        ],
    )
    for res in results:
        t = res.t
        ours.rows.append([res.label, str(res.chars)] + [us(t[k]) for k in OURS])
        base.rows.append([res.label] + [us(t[k]) for k in BASELINES])
        rat.rows.append(
            [
                res.label,
                ratio(div(t["encode"], t["memory"])),
                ratio(div(t["coco_encode"], t["encode"])),
                ratio(div(t["coco_decode"], t["decode_pixels"])),
                ratio(div(t["ref_encode"], t["encode"])),
                ratio(div(t["ref_decode_pixels"], t["decode_pixels"])),
                ratio(div(t["ref_reward"], t["reward_mask"])),
                ratio(div(t["naive_reward"], t["reward_mask"])),
                ratio(div(t["naive_reward"], t["reward_gt"])),
            ]
        )
    return [ours, base, rat]


# --------------------------------------------------------------------------- section 4
@dataclass
class GrpoResult:
    ours_gt: float
    ours_mask: float
    prepare: float
    loop_gt: float
    naive: float
    n_texts: int
    stats: str


def bench_grpo(cfg: Config, naive: ModuleType) -> GrpoResult:
    log("GRPO batch: 16 ground truths x 16 completions")
    gts, texts = grpo_batch()
    prepared = [tm.GroundTruth(m) for m in gts]
    targets_gt = [prepared[k // 16] for k in range(len(texts))]
    targets_mask = [gts[k // 16] for k in range(len(texts))]

    ours = tm.detection_rewards(texts, targets_gt)
    assert np.array_equal(ours, tm.detection_rewards(texts, targets_mask))
    slow = np.array(
        [naive.naive_detection_reward(x, m) for x, m in zip(texts, targets_mask, strict=True)]
    )
    assert np.allclose(ours, slow, rtol=1e-12, atol=0.0), np.flatnonzero(ours != slow)
    loop = np.array([tm.detection_reward(x, g) for x, g in zip(texts, targets_gt, strict=True)])
    assert np.array_equal(ours, loop)

    def naive_loop() -> list[float]:
        return [
            naive.naive_detection_reward(x, m) for x, m in zip(texts, targets_mask, strict=True)
        ]

    n_empty = sum(1 for x in texts if not x)
    stats = (
        f"{len(texts)} texts, {sum(map(len, texts)):,} characters, {n_empty} empty; "
        f"mean reward {ours.mean():.3f}, {int((ours == 0).sum())} zero rewards"
    )
    t = best_times(
        {
            "ours_gt": lambda: tm.detection_rewards(texts, targets_gt),
            "ours_mask": lambda: tm.detection_rewards(texts, targets_mask),
            "prepare": lambda: [tm.GroundTruth(m) for m in gts],
            "loop_gt": lambda: [
                tm.detection_reward(x, g) for x, g in zip(texts, targets_gt, strict=True)
            ],
        },
        cfg.repeat,
    )
    return GrpoResult(
        ours_gt=t["ours_gt"],
        ours_mask=t["ours_mask"],
        prepare=t["prepare"],
        loop_gt=t["loop_gt"],
        naive=best_time(naive_loop, cfg.grpo_naive_repeat),
        n_texts=len(texts),
        stats=stats,
    )


def grpo_section(g: GrpoResult) -> Section:
    sec = Section(
        "GRPO batch: 16 ground truths x 16 completions (256 seg texts, 512 x 512)",
        "Ground truths are 12 synthetic defects (`defect_masks(4, (512, 512), seed=1)`) "
        "and 4 normal (empty) masks.  Each completion is the canonical text of a slightly "
        "perturbed prediction (shifted, dilated, eroded, with false positives), some "
        "wrapped in prose, with line breaks inside pairs (`(14,\\n12)`), in `[r, c] to "
        "[r, c]` style, empty, or garbage.  `targets` is a list of 256 entries repeating "
        "16 objects: prepared `GroundTruth`s, or raw masks (then the 16 preparations are "
        "included).  The naive path loops over the 256 texts; its rewards were checked "
        "equal to textmask's before timing.",
        ["implementation", "µs / batch", "µs / text", "naive / this"],
    )
    rows = [
        ("detection_rewards(texts, GroundTruth x 256)", g.ours_gt),
        ("detection_rewards(texts, raw masks x 256)", g.ours_mask),
        ("  of which: 16 x GroundTruth(mask)", g.prepare),
        ("loop of 256 x detection_reward(text, gt)", g.loop_gt),
        ("naive path, loop of 256 (benchmarks/naive.py)", g.naive),
    ]
    for name, t in rows:
        sec.rows.append([name, us(t), us(t / g.n_texts), ratio(div(g.naive, t))])
    sec.notes.append(g.stats)
    return sec


# --------------------------------------------------------------------------- section 5
_CHILD = """\
import sys, time
{hide}t0 = time.perf_counter()
import numpy as np
import textmask
{call}
t1 = time.perf_counter()
assert textmask.__file__.startswith({pkg!r}), textmask.__file__
print(t1 - t0)
"""
_ENCODE = "m = np.zeros((512, 512), np.uint8); m[70:80, 90:140] = 1; textmask.encode(m)"
_WARMUP = "textmask.warmup()"
#: Start-up rows for context: (label, code run by ``python -c``).
_CONTEXT = (
    ("python -c pass", "pass"),
    ("import numpy", "import numpy"),
    ("import numba", "import numba"),
)
_HIDE_SCIPY = "sys.modules['scipy'] = None  # as if scipy were not installed\n"


@dataclass
class Startup:
    """Timings of one start-up command over several fresh processes."""

    label: str
    wall: list[float] = field(default_factory=list)
    inproc: list[float] = field(default_factory=list)

    def add(self, wall: float, inproc: float) -> None:
        self.wall.append(wall)
        self.inproc.append(inproc)

    @property
    def best_wall(self) -> float:
        return min(self.wall)

    @property
    def best_inproc(self) -> float:
        return min(self.inproc)


class Sandbox:
    """A private copy of the textmask package with an empty Numba cache directory."""

    def __init__(self, root: Path) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="sandbox-", dir=root))
        self.src = self.dir / "src"
        self.cache = self.dir / "numba-cache"
        self.cache.mkdir()
        shutil.copytree(
            Path(tm.__file__).parent,
            self.src / "textmask",
            ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc", "*.pyc"),
        )

    def run(self, call: str, *, hide_scipy: bool = False) -> tuple[float, float]:
        """(wall seconds of the process, in-process seconds of import + call)."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(self.src), env.get("PYTHONPATH", "")) if p
        )
        env["NUMBA_CACHE_DIR"] = str(self.cache)
        code = _CHILD.format(
            hide=_HIDE_SCIPY if hide_scipy else "",
            call=call,
            pkg=str(self.src / "textmask"),
        )
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-c", code],
            env=env,
            cwd=self.dir,  # not the repository: '' on sys.path would find its textmask
            capture_output=True,
            text=True,
            check=False,
        )
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"start-up child failed:\n{proc.stderr}")
        return wall, float(proc.stdout.strip().splitlines()[-1])


def _plain(code: str) -> tuple[float, float]:
    """(wall, in-process) seconds of ``python -c code`` in a fresh process."""
    timed = f"import time\nt0 = time.perf_counter()\n{code}\nprint(time.perf_counter() - t0)"
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", timed], capture_output=True, text=True, check=True)
    return time.perf_counter() - t0, float(proc.stdout.strip())


def bench_startup(cfg: Config) -> list[Startup]:
    """Cold runs first (each in a new sandbox), then rounds of every warm command.

    Going round-robin over the warm commands spreads a burst of load from other
    processes over all rows instead of spoiling every run of one.
    """
    log("start-up: fresh processes (cold runs compile every kernel used)")
    rows: list[Startup] = []
    jobs: list[tuple[Startup, Callable[[], tuple[float, float]]]] = []
    for label, code in _CONTEXT:
        rows.append(Startup(label))
        jobs.append((rows[-1], functools.partial(_plain, code)))
    calls = [("encode(mask)", _ENCODE)]
    if not cfg.quick:
        calls.append(("warmup() (every kernel)", _WARMUP))
    has_scipy = importlib.util.find_spec("scipy") is not None
    with tempfile.TemporaryDirectory(prefix="textmask-bench-") as tmp:
        for name, call in calls:
            cold = Startup(f"cold: import textmask; {name}")
            for _ in range(cfg.cold_runs):
                box = Sandbox(Path(tmp))
                cold.add(*box.run(call))
            rows.append(cold)
            rows.append(Startup(f"warm: import textmask; {name}"))
            jobs.append((rows[-1], functools.partial(box.run, call)))
            if has_scipy and call == _ENCODE:
                rows.append(Startup(f"warm, scipy hidden: import textmask; {name}"))
                jobs.append((rows[-1], functools.partial(box.run, call, hide_scipy=True)))
        for _ in range(cfg.startup_runs):
            for row, job in jobs:
                row.add(*job())
    return rows


def startup_section(rows: list[Startup]) -> Section:
    sec = Section(
        "Cold and warm start (fresh processes)",
        "Each row is a new `python -c ...` process.  *cold*: the `textmask` package is "
        "copied to a new temporary directory put first on `PYTHONPATH` (so no kernel "
        "cached next to the installed package is found) and `NUMBA_CACHE_DIR` is a new "
        "empty directory, so every kernel used is compiled.  *warm*: the same copy and "
        "cache again, now filled.  *scipy hidden* sets `sys.modules['scipy'] = None` "
        "first: Numba imports `scipy.linalg` (to look for BLAS) the first time it loads "
        "any kernel when scipy is installed, and this row shows the start-up of an "
        "environment without scipy.  *in-process* is the time from the first import to "
        "the end of the call, *process* the wall time of the whole subprocess, and "
        "*outside* the difference (interpreter start-up and shutdown; once Numba has "
        "loaded kernels, shutdown takes a few tenths of a second).  Best of the runs "
        "shown.",
        ["command", "in-process (s)", "process (s)", "outside (s)", "runs"],
    )
    for r in rows:
        outside = min(w - i for w, i in zip(r.wall, r.inproc, strict=True))
        sec.rows.append(
            [
                r.label,
                f"{r.best_inproc:.2f}",
                f"{r.best_wall:.2f}",
                f"{outside:.2f}",
                str(len(r.wall)),
            ]
        )
    return sec


# --------------------------------------------------------------------------- section 6
def fidelity_section(cfg: Config) -> Section:
    log(f"fidelity: codec_fidelity(defect_masks({cfg.fidelity_n}, (512, 512), seed=0))")
    masks = tm.defect_masks(cfg.fidelity_n, (512, 512), seed=0)
    grids, thresholds = (8, 16, 24, 32, 48), (0.0, 0.25, 0.5)
    rows = tm.codec_fidelity(masks, grids=grids, thresholds=thresholds)
    by = {(r["grid"], r["threshold"], r["kind"]): r for r in rows}
    kinds = [*DEFECT_KINDS, "all"]
    sec = Section(
        f"Codec fidelity ({cfg.fidelity_n} masks per kind, 512 x 512)",
        "`textmask.codec_fidelity(textmask.defect_masks(n, (512, 512), seed=0), "
        "grids=(8, 16, 24, 32, 48), thresholds=(0, 0.25, 0.5))`: every mask is encoded "
        "and decoded to pixels, and the result compared with the mask itself.  The mean "
        "pixel F1 is the best a perfect model can score through the codec; *lost* is the "
        "fraction of masks whose text is empty (the defect vanished).  Scratches are thin "
        "and pay most for coarse grids; thresholds above 0 lose small defects.",
        ["grid", "threshold"] + [f"F1 {k}" for k in kinds] + [f"lost {k}" for k in kinds],
    )
    for g in grids:
        for thr in thresholds:
            cells = [f"{by[(g, thr, k)]['mean_f1']:.3f}" for k in kinds]
            cells += [f"{by[(g, thr, k)]['lost']:.2f}" for k in kinds]
            sec.rows.append([f"{g} x {g}", f"{thr:g}", *cells])
    return sec


# --------------------------------------------------------------------------- targets
@dataclass
class Target:
    name: str
    measured: str
    met: bool


def _worst(
    results: list[MaskResult], num: str, den: str, *, kinds: Sequence[str] = KINDS, high: bool
) -> tuple[float, str] | None:
    """Worst ratio ``t[num] / t[den]`` over masks of ``kinds`` (high: larger is better)."""
    vals = [
        (v, r.label)
        for r in results
        if r.kind in kinds and (v := div(r.t[num], r.t[den])) is not None
    ]
    if not vals:
        return None
    return min(vals) if high else max(vals)


#: Ratio targets: name, numerator, denominator, bound, larger is better, mask kinds.
RATIO_TARGETS: tuple[tuple[str, str, str, float, bool, tuple[str, ...]], ...] = (
    ("encode within 4x of a memory pass", "encode", "memory", 4, False, KINDS),
    ("encode faster than coco, every mask", "coco_encode", "encode", 1, True, KINDS),
    ("encode ≥ 5x faster than coco on sparse", "coco_encode", "encode", 5, True, ("sparse",)),
    ("encode ≥ 50x faster than coco on noise50", "coco_encode", "encode", 50, True, ("noise50",)),
    ("decode to pixels ≥ 10x faster than coco", "coco_decode", "decode_pixels", 10, True, KINDS),
    ("encode ≥ 100x faster than the naive reference", "ref_encode", "encode", 100, True, KINDS),
)


def targets(results: list[MaskResult], g: GrpoResult, st: list[Startup]) -> list[Target]:
    out = []
    for name, num, den, bound, high, kinds in RATIO_TARGETS:
        w = _worst(results, num, den, kinds=kinds, high=high)
        if w is None:
            out.append(Target(name, "not measured", False))
            continue
        v, where = w
        out.append(Target(name, f"worst {ratio(v)} ({where})", v >= bound if high else v <= bound))
    out.append(
        Target(
            "GRPO batch (prepared GroundTruth) < 1 ms",
            f"{g.ours_gt * 1e3:.3f} ms",
            g.ours_gt < 1e-3,
        )
    )
    out.append(
        Target(
            "GRPO batch ≥ 100x faster than naive",
            f"{ratio(g.naive / g.ours_gt)} (GT), {ratio(g.naive / g.ours_mask)} (raw masks)",
            g.naive / g.ours_gt >= 100,
        )
    )
    by = {s.label: s for s in st}
    warm = by["warm: import textmask; encode(mask)"]
    cold = by["cold: import textmask; encode(mask)"]
    out.append(
        Target(
            "warm start < 1 s (import textmask + encode, in-process)",
            f"{warm.best_inproc:.2f} s (process {warm.best_wall:.2f} s)",
            warm.best_inproc < 1.0,
        )
    )
    out.append(
        Target(
            "cold start well under 30 s (in-process)",
            f"{cold.best_inproc:.2f} s (process {cold.best_wall:.2f} s)",
            cold.best_inproc < 15.0,
        )
    )
    return out


def targets_section(ts: list[Target]) -> Section:
    n_met = sum(t.met for t in ts)
    sec = Section(
        "Targets",
        f"Computed by the script from the measurements in the tables of this run, not "
        f"written by hand: **{n_met} of {len(ts)} targets met.**  A ratio target is judged "
        "on its worst mask; *well under 30 s* is read as under 15 s.",
        ["target", "measured", "status"],
    )
    for t in ts:
        sec.rows.append([t.name, t.measured, "met" if t.met else "NOT MET"])
    return sec


# --------------------------------------------------------------------------- machine
def _version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages (other processes share the machine)."""
    return " / ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "-"


def machine_info() -> list[tuple[str, str]]:
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
def main(argv: Sequence[str] | None = None) -> int:
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
        args.out.write_text(render_markdown(command, info, [goals, *sections], cfg, elapsed))
        console.print(f"wrote {args.out}")
    return 0


def render_markdown(
    command: str, info: list[tuple[str, str]], sections: list[Section], cfg: Config, elapsed: float
) -> str:
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
