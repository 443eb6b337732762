"""Codec speed: textmask's operations and the baselines on every mask kind and shape.

:func:`bench_masks` first checks that every implementation computes the same thing on a
mask (texts, cells, pixels and rewards agree), then times it; :func:`mask_sections` turns
the results into the *textmask operations*, *Baselines* and *Ratios* tables.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
import pycocotools.mask as coco
from _inputs import GRID, KINDS, make_mask, memory_pass
from _tables import Section, log
from _timing import QUICK_REFERENCE_SHAPES, Config, best_times, div, ratio, us

import textmask as tm

__all__ = ["BASELINES", "OURS", "MaskResult", "bench_masks", "bench_one", "mask_sections"]

#: Keys of the textmask timings, in table column order.
OURS = ("patchify", "encode", "decode_cells", "decode_pixels", "reward_gt", "reward_mask")
#: Keys of the baseline timings, in table column order.
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
    """Timings of one mask: ``t`` maps each key of :data:`OURS` and :data:`BASELINES` to
    seconds per call (None when not measured, e.g. the reference in ``--quick`` mode)."""

    label: str
    kind: str
    shape: tuple[int, int]
    chars: int
    t: dict[str, float | None]


def bench_masks(cfg: Config, ref: ModuleType, naive: ModuleType) -> list[MaskResult]:
    """Check and time every mask kind of every shape of ``cfg``, in table order."""
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
    """Check that every implementation agrees on ``mask``, then time each of them."""
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
    """The *textmask operations*, *Baselines* and *Ratios* tables of ``results``."""
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
