"""The targets the measurements are held to, judged from the measured tables of a run."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from _codec_speed import MaskResult
from _grpo_batch import GrpoResult
from _inputs import KINDS
from _startup import Startup
from _tables import Section
from _timing import div, ratio

__all__ = ["RATIO_TARGETS", "Target", "targets", "targets_section"]


@dataclass
class Target:
    """One target: what it asks, what was measured, whether it is met."""

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
    """Judge every target on the measurements of one run."""
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
    """The *Targets* table, with the count of targets met."""
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
