"""The paper's headline numbers and side-by-side comparisons with a run.

``paper_numbers.json`` (package data next to this module) holds only the numbers that
``docs/method.md`` ("Published numbers our reports compare against") quotes from the
OmniAD paper: the MMAD average 0-shot and 1-shot, the 7 MMAD type accuracies 0-shot,
MVTec-AD pixel / image F1 and accuracy 0-shot, and the 4-dataset averages 0-shot.
Nothing else is compared.

>>> paper = load_paper_numbers()
>>> paper["mmad"]["0"]["average"], paper["mmad"]["1"]["average"]
(79.1, 79.9)
>>> dataset_key("MVTec_AD") == dataset_key("mvtec-ad")
True
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from omniad_core.metrics import MMAD_TYPES

__all__ = [
    "ComparisonRow",
    "compare_detection",
    "compare_mmad",
    "comparison_markdown",
    "dataset_key",
    "load_paper_numbers",
]

_DETECTION_METRICS = (
    ("pixel_f1", "pixel F1"),
    ("pixel_acc", "pixel Acc"),
    ("image_f1", "image F1"),
    ("image_acc", "image Acc"),
)


@functools.lru_cache(maxsize=1)
def _load() -> str:
    return (
        importlib.resources.files("omniad_train.evaluation")
        .joinpath("paper_numbers.json")
        .read_text(encoding="utf-8")
    )


def load_paper_numbers() -> dict[str, Any]:
    """The shipped ``paper_numbers.json`` (a fresh dict on each call)."""
    return json.loads(_load())


def dataset_key(name: str) -> str:
    """A dataset name without case and punctuation, to match e.g. ``mvtec_ad`` to MVTec-AD."""
    return re.sub(r"[^0-9a-z]+", "", name.lower())


@dataclass(frozen=True)
class ComparisonRow:
    """One metric of a run next to the paper's value (percent).

    ``paper`` is None when the paper states no number for it; ``difference`` is
    ``ours - paper`` when both exist and the comparison is like for like, else None
    (``note`` says why).
    """

    metric: str
    ours: float | None
    paper: float | None
    difference: float | None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "ours": self.ours,
            "paper": self.paper,
            "difference": self.difference,
            "note": self.note,
        }


def _num(v: Any) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def _row(
    metric: str, ours: Any, paper: Any, note: str = "", comparable: bool = True
) -> ComparisonRow:
    o, p = _num(ours), _num(paper)
    diff = o - p if (o is not None and p is not None and comparable) else None
    return ComparisonRow(metric, o, p, diff, note)


def compare_mmad(overall: dict[str, Any], shots: int) -> list[ComparisonRow]:
    """The run's overall MMAD row (``MMADRow.to_dict()``) next to the paper's numbers."""
    numbers = load_paper_numbers()["mmad"].get(str(shots), {})
    types = numbers.get("types", {})
    rows = [
        _row(t, overall.get(t), types.get(t), "" if t in types else "not stated for this shot")
        for t in MMAD_TYPES
    ]
    present = [t for t in MMAD_TYPES if _num(overall.get(t)) is not None]
    full = len(present) == len(MMAD_TYPES)
    note = "" if full else f"this run's average covers {len(present)} of 7 types: not compared"
    rows.append(_row("Average", overall.get("average"), numbers.get("average"), note, full))
    return rows


def compare_detection(
    datasets: dict[str, dict[str, Any]], average: dict[str, Any] | None, shots: int
) -> list[ComparisonRow]:
    """Detection figures next to the paper's.

    Parameters
    ----------
    datasets : dict
        Dataset name -> dataset row dict (``DetectionRow.to_dict()``).
    average : dict or None
        The overall row dict (mean over the run's datasets).
    shots : int
        0 or 1; the paper's detection numbers quoted in the spec are 0-shot only.
    """
    numbers = load_paper_numbers()["detection"].get(str(shots))
    rows: list[ComparisonRow] = []
    if numbers is None:
        for name, d in sorted(datasets.items()):
            for key, label in _DETECTION_METRICS:
                rows.append(_row(f"{name} {label}", d.get(key), None, f"no {shots}-shot number"))
        return rows
    ours_by_key = {dataset_key(k): (k, v) for k, v in datasets.items()}
    for name, paper_vals in numbers["datasets"].items():
        found = ours_by_key.get(dataset_key(name))
        for key, label in _DETECTION_METRICS:
            ours = found[1].get(key) if found else None
            note = "" if found else "dataset not in this run"
            rows.append(_row(f"{name} {label}", ours, paper_vals.get(key), note))
    avg = numbers.get("average")
    if avg is not None:
        wanted = {dataset_key(d) for d in avg["datasets"]}
        comparable = set(ours_by_key) == wanted
        note = (
            ""
            if comparable
            else f"paper averages {', '.join(avg['datasets'])}; this run has "
            f"{', '.join(sorted(datasets)) or 'no dataset'}: not compared"
        )
        for key, label in _DETECTION_METRICS:
            ours = average.get(key) if average else None
            rows.append(
                _row(
                    f"Average ({len(wanted)} datasets) {label}",
                    ours,
                    avg.get(key),
                    note,
                    comparable,
                )
            )
    return rows


def _fmt(v: float | None, sign: bool = False) -> str:
    if v is None:
        return "-"
    return f"{v:+.1f}" if sign else f"{v:.1f}"


def comparison_markdown(rows: list[ComparisonRow], paper_label: str) -> str:
    """A Markdown table: metric | this run | paper | difference | note."""
    out = [
        f"| Metric | This run | {paper_label} | Difference | Note |",
        "|---|--:|--:|--:|---|",
    ]
    for r in rows:
        out.append(
            f"| {r.metric} | {_fmt(r.ours)} | {_fmt(r.paper)} | {_fmt(r.difference, True)} "
            f"| {r.note} |"
        )
    return "\n".join(out) + "\n"
