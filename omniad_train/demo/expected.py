"""What a full demo run measures when the install works: the range over seeds, and the
report's section that puts a run's SFT figures next to it.

The ranges are docs/demo.md's "How much the figures vary" table (three seeds, one
2-core x86-64 machine, 2026-12-01; ``python benchmarks/demo_spread.py --seeds 0 1 2``).
They hold for the full plan only (any seed); another CPU kind or other library versions
move figures too, so a figure a little outside the range is noise, not a fault.  What
a broken install looks like instead: unreadable answers (a full run's SFT model writes
readable answers to practically every question).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from omniad_train.demo.metrics import Metrics
from omniad_train.demo.plan import DemoPlan

__all__ = ["BROKEN_UNREADABLE", "MEASURED", "MEASURED_ON", "range_line", "range_section"]

#: Where and how :data:`MEASURED` was measured.
MEASURED_ON = (
    "three seeds (0, 1, 2) of `omniad demo` on a 2-core x86-64 CPU, 2026-12-01 "
    '(docs/demo.md, "How much the figures vary")'
)

#: The SFT model's figures of a full run: (minimum, maximum) over the seeds.
MEASURED: dict[str, tuple[float, float]] = {
    "detection: pixel f1": (7.9, 14.8),
    "detection: image f1": (68.0, 85.5),
    "MMAD: average": (32.9, 39.5),
    "detection: mean R_det (0-2)": (0.236, 0.342),
}

#: Above this share of unreadable answers (%), the SFT model of a full run is broken: the
#: three measured seeds had 0-0.4%, a quick run (far too short to learn) has 100%.
BROKEN_UNREADABLE = 5.0

_UNREADABLE = ("detection: unreadable answers %", "MMAD: unreadable answers %")


def _fmt(label: str, v: float) -> str:
    return f"{v:.3f}" if "R_det" in label else f"{v:.1f}"


def _sft(plan: DemoPlan, metrics: Mapping[str, Metrics]) -> dict[str, float] | None:
    """The SFT model's figures by label, or None: not the full plan, or no SFT figures."""
    if dataclasses.replace(plan, seed=0) != DemoPlan.full():
        return None
    sft = {k.label: v for k, v in metrics.get("sft", {}).items()}
    return sft or None


def _compared(sft: Mapping[str, float]) -> list[tuple[str, float, float, float, str]]:
    """``(label, value, low, high, "in range" | "below" | "above")`` of each measured figure."""
    out = []
    for label, (lo, hi) in MEASURED.items():
        if label in sft:
            v = sft[label]
            where = "in range" if lo <= v <= hi else ("below" if v < lo else "above")
            out.append((label, v, lo, hi, where))
    return out


def _unreadable(sft: Mapping[str, float]) -> float:
    return max((sft.get(k, 0.0) for k in _UNREADABLE), default=0.0)


def range_line(plan: DemoPlan, metrics: Mapping[str, Metrics]) -> str | None:
    """The one line the end of a full run prints about its SFT figures (``metrics``: the
    stages' figures); None for another plan or without SFT figures.

    >>> from omniad_train.demo.metrics import MetricKey
    >>> sft = {MetricKey("detection", "image f1"): 80.0, MetricKey("MMAD", "average"): 30.0}
    >>> range_line(DemoPlan.full(), {"sft": sft})
    'SFT figures against the measured range: detection image f1 80.0 in range, MMAD average 30.0 below (report.md)'
    >>> range_line(DemoPlan.full(), {"sft": {MetricKey("MMAD", "unreadable answers %"): 9.0}})[:25]
    'this run looks broken: 9%'
    >>> range_line(DemoPlan.full(), {}) is None
    True
    """
    sft = _sft(plan, metrics)
    if sft is None:
        return None
    if _unreadable(sft) > BROKEN_UNREADABLE:
        return (
            f"this run looks broken: {_unreadable(sft):.0f}% of the SFT model's answers are "
            "unreadable (a full run's are practically all readable); see report.md"
        )
    parts = [
        f"{label.replace(':', '').removesuffix(' (0-2)')} {_fmt(label, v)} {where}"
        for label, v, _, _, where in _compared(sft)
    ]
    return "SFT figures against the measured range: " + ", ".join(parts) + " (report.md)"


def range_section(plan: DemoPlan, metrics: Mapping[str, Metrics]) -> list[str]:
    """Report lines comparing the SFT model's figures (of the stages' ``metrics``) with
    :data:`MEASURED`; none for a plan other than the full one (any seed).

    >>> from omniad_train.demo.metrics import MetricKey
    >>> ok = {MetricKey("detection", "pixel f1"): 10.0, MetricKey("detection", "image f1"): 90.0}
    >>> print("\\n".join(range_section(DemoPlan.full(seed=4), {"sft": ok})[5:9]))
    | metric | this run | measured range |  |
    |---|---:|---:|---|
    | detection: pixel f1 | 10.0 | 7.9-14.8 | in range |
    | detection: image f1 | 90.0 | 68.0-85.5 | above |
    >>> range_section(DemoPlan.quick(), {"sft": ok})
    []
    """
    sft = _sft(plan, metrics)
    if sft is None:
        return []
    lines = ["", "## Against the measured range (SFT model)", "", f"Measured: {MEASURED_ON}.", ""]
    lines += ["| metric | this run | measured range |  |", "|---|---:|---:|---|"]
    for label, v, lo, hi, where in _compared(sft):
        lines.append(
            f"| {label} | {_fmt(label, v)} | {_fmt(label, lo)}-{_fmt(label, hi)} | {where} |"
        )
    unreadable = _unreadable(sft)
    lines.append("")
    if unreadable > BROKEN_UNREADABLE:
        lines.append(
            f"**This run looks broken**: {unreadable:.0f}% of the SFT model's answers are "
            "unreadable, where a full run's are practically all readable. Check the "
            "install (the README's commands, `python -m pytest`) and the training log."
        )
    else:
        lines.append(
            "A few points outside the range are noise (another CPU kind or library "
            "versions change the figures); a broken install shows as unreadable answers."
        )
    return lines
