"""The paper's headline numbers and side-by-side comparisons with a run.

``paper_numbers.json`` (package data next to this module) holds only the numbers that
``docs/method.md`` ("Published numbers our reports compare against") quotes from the
OmniAD paper: the MMAD average 0-shot and 1-shot, the 7 MMAD type accuracies 0-shot,
MVTec-AD pixel / image F1 and accuracy 0-shot, and the 4-dataset averages 0-shot.
Nothing else is compared.

The paper's figures are for whole test sets.  A run on a subset (``--limit``,
``--limit_per_category``, ``--categories``, a held-out split, training images left out,
missing shards, fewer categories or other datasets than the paper's) is marked **not
comparable** in the table itself, with the reason (:func:`subset_reasons`).

>>> paper = load_paper_numbers()
>>> paper["mmad"]["0"]["average"], paper["mmad"]["1"]["average"]
(79.1, 79.9)
>>> dataset_key("MVTec_AD") == dataset_key("mvtec-ad")
True
>>> subset_reasons({"limit": 6, "categories": ["bottle"], "complete": True})
['--limit 6 (the first 6 items only)', '--categories bottle']
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from omniad_core.metrics import MMAD_TYPES

__all__ = [
    "MMAD_DATASETS",
    "PAPER_CATEGORIES",
    "ComparisonRow",
    "compare_detection",
    "compare_mmad",
    "comparison_markdown",
    "dataset_key",
    "load_paper_numbers",
    "mmad_dataset_reasons",
    "not_comparable_text",
    "subset_reasons",
]

#: Categories of the detection test sets the paper's figures cover (all of each).
PAPER_CATEGORIES: dict[str, int] = {"MVTec-AD": 15, "VisA": 12, "MVTec-LOCO": 5, "GoodsAD": 6}
#: The datasets of the MMAD benchmark (the paper's MMAD figures cover all of them).
MMAD_DATASETS = ("DS-MVTec", "MVTec-AD", "VisA", "MVTec-LOCO", "GoodsAD")

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
    ``ours - paper`` when both exist and the figure measures the same thing, else None
    (``note`` says why).  ``not_comparable`` lists why the run's figure is not the
    paper's (a subset of its test set); ``comparable`` is None when there is nothing
    to compare.
    """

    metric: str
    ours: float | None
    paper: float | None
    difference: float | None
    note: str = ""
    not_comparable: tuple[str, ...] = ()

    @property
    def comparable(self) -> bool | None:
        if self.ours is None or self.paper is None:
            return None
        return not self.not_comparable and self.difference is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "ours": self.ours,
            "paper": self.paper,
            "difference": self.difference,
            "note": self.note,
            "comparable": self.comparable,
            "not_comparable": list(self.not_comparable),
        }


def _num(v: Any) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def _row(
    metric: str,
    ours: Any,
    paper: Any,
    note: str = "",
    comparable: bool = True,
    reasons: Sequence[str] = (),
) -> ComparisonRow:
    o, p = _num(ours), _num(paper)
    diff = o - p if (o is not None and p is not None and comparable) else None
    return ComparisonRow(metric, o, p, diff, note, tuple(reasons))


def subset_reasons(config: Mapping[str, Any]) -> list[str]:
    """Why a run's selection is a subset of the benchmark (empty: the whole of it).

    ``config`` is a report's configuration (``report_config``): ``limit``,
    ``limit_per_category``, ``categories``, ``protocol`` (MMAD's split and left-out
    training images), ``complete`` and ``missing_shards``.
    """
    out = []
    if config.get("limit"):
        out.append(f"--limit {config['limit']} (the first {config['limit']} items only)")
    if config.get("limit_per_category"):
        out.append(f"--limit_per_category {config['limit_per_category']}")
    if config.get("categories"):
        out.append("--categories " + ",".join(map(str, config["categories"])))
    protocol = config.get("protocol") or {}
    if protocol.get("split") == "holdout":
        out.append(f"held-out split ({float(protocol['holdout_fraction']):.0%} of the images)")
    elif protocol.get("split") == "file":
        out.append("a split file's images only")
    if protocol.get("exclude_training"):
        out.append("training images left out")
    if config.get("complete") is False:
        missing = config.get("missing_shards") or []
        out.append(
            "partial run" + (f" (shards {', '.join(map(str, missing))} missing)" if missing else "")
        )
    return out


def mmad_dataset_reasons(datasets: Iterable[str]) -> list[str]:
    """Why a run's datasets are not MMAD's five (empty: they are).

    >>> mmad_dataset_reasons(["MVTec-AD", "mine"])
    ['1 of 5 MMAD datasets (MVTec-AD)', 'datasets not in MMAD: mine']
    """
    names = sorted(set(datasets))
    known = {dataset_key(d) for d in MMAD_DATASETS}
    ours = [n for n in names if dataset_key(n) in known]
    other = [n for n in names if dataset_key(n) not in known]
    out = []
    if len({dataset_key(n) for n in ours}) < len(known):
        out.append(
            f"{len(ours)} of {len(known)} MMAD datasets" + (f" ({', '.join(ours)})" if ours else "")
        )
    if other:
        out.append("datasets not in MMAD: " + ", ".join(other))
    return out


def compare_mmad(
    overall: dict[str, Any], shots: int, not_comparable: Sequence[str] = ()
) -> list[ComparisonRow]:
    """The run's overall MMAD row (``MMADRow.to_dict()``) next to the paper's numbers;
    ``not_comparable``: why the run is a subset (:func:`subset_reasons`,
    :func:`mmad_dataset_reasons`), shown in every row."""
    numbers = load_paper_numbers()["mmad"].get(str(shots), {})
    types = numbers.get("types", {})
    rows = [
        _row(
            t,
            overall.get(t),
            types.get(t),
            "" if t in types else "not stated for this shot",
            reasons=not_comparable,
        )
        for t in MMAD_TYPES
    ]
    present = [t for t in MMAD_TYPES if _num(overall.get(t)) is not None]
    full = len(present) == len(MMAD_TYPES)
    note = "" if full else f"this run's average covers {len(present)} of 7 types: not compared"
    rows.append(
        _row("Average", overall.get("average"), numbers.get("average"), note, full, not_comparable)
    )
    return rows


def compare_detection(
    datasets: dict[str, dict[str, Any]],
    average: dict[str, Any] | None,
    shots: int,
    not_comparable: Sequence[str] = (),
    categories: Mapping[str, int] | None = None,
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
    not_comparable : sequence of str
        Why the whole run is a subset (:func:`subset_reasons`), shown in every row.
    categories : mapping, optional
        Dataset name -> categories the run has; a dataset with fewer than the paper's
        (:data:`PAPER_CATEGORIES`) is not comparable, nor is the average over it.
    """
    cats = {dataset_key(k): v for k, v in (categories or {}).items()}
    partial: dict[str, str] = {}  # paper dataset -> "1 of 15 MVTec-AD categories"
    for name, total in PAPER_CATEGORIES.items():
        n = cats.get(dataset_key(name))
        if n is not None and n < total:
            partial[name] = f"{n} of {total} {name} categories"
    numbers = load_paper_numbers()["detection"].get(str(shots))
    rows: list[ComparisonRow] = []
    if numbers is None:
        for name, d in sorted(datasets.items()):
            for key, label in _DETECTION_METRICS:
                rows.append(
                    _row(
                        f"{name} {label}",
                        d.get(key),
                        None,
                        f"no {shots}-shot number",
                        reasons=not_comparable,
                    )
                )
        return rows
    ours_by_key = {dataset_key(k): (k, v) for k, v in datasets.items()}
    for name, paper_vals in numbers["datasets"].items():
        found = ours_by_key.get(dataset_key(name))
        reasons = [*not_comparable, *([partial[name]] if name in partial else [])]
        for key, label in _DETECTION_METRICS:
            ours = found[1].get(key) if found else None
            note = "" if found else "dataset not in this run"
            rows.append(_row(f"{name} {label}", ours, paper_vals.get(key), note, True, reasons))
    avg = numbers.get("average")
    if avg is not None:
        wanted = {dataset_key(d) for d in avg["datasets"]}
        comparable = set(ours_by_key) == wanted
        reasons = [*not_comparable, *(partial[d] for d in avg["datasets"] if d in partial)]
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
                    reasons,
                )
            )
    return rows


def _fmt(v: float | None, sign: bool = False) -> str:
    if v is None:
        return "-"
    return f"{v:+.1f}" if sign else f"{v:.1f}"


def not_comparable_text(reasons: Sequence[str], benchmark: str) -> str:
    """The sentence above a subset run's comparison table.

    >>> not_comparable_text(["--limit 6"], "MMAD")
    ' **Not comparable**: this run is not the whole of MMAD (--limit 6); differences are for orientation only.'
    """
    return (
        f" **Not comparable**: this run is not the whole of {benchmark} "
        f"({'; '.join(reasons)}); differences are for orientation only."
    )


def _comparable(r: ComparisonRow) -> str:
    if r.comparable is None:
        return "-"
    if r.not_comparable:
        return "**not comparable**: " + "; ".join(r.not_comparable)
    return "yes" if r.comparable else "no"


def comparison_markdown(rows: list[ComparisonRow], paper_label: str) -> str:
    """A Markdown table: metric | this run | paper | difference | note | comparable.

    A row of a subset run says **not comparable** and why, in the table itself.
    """
    out = [
        f"| Metric | This run | {paper_label} | Difference | Note | Comparable |",
        "|---|--:|--:|--:|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r.metric} | {_fmt(r.ours)} | {_fmt(r.paper)} | {_fmt(r.difference, True)} "
            f"| {r.note} | {_comparable(r)} |"
        )
    return "\n".join(out) + "\n"
