"""MMAD multiple-choice accuracy in the benchmark's 7 question types, in the paper's Table 2 layout."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from omniad_core.metrics._common import (
    MMAD_FORMAT,
    STATE_VERSION,
    check_state,
    count,
    flag,
    fmt,
    md_table,
    mean,
    name_str,
)

__all__ = [
    "MMAD_TYPES",
    "MMADMeter",
    "MMADReport",
    "MMADRow",
    "Unanswerable",
    "normalize_question_type",
]

Unanswerable = Literal["wrong", "drop"]


MMAD_TYPES: tuple[str, ...] = (
    "Anomaly Discrimination",
    "Defect Classification",
    "Defect Localization",
    "Defect Description",
    "Defect Analysis",
    "Object Classification",
    "Object Analysis",
)
"""The 7 MMAD question types, in the paper's column order."""

_TYPE_ALIASES = {
    "anomalydetection": "Anomaly Discrimination",  # MMAD's raw name
    "objectstructure": "Object Analysis",
    "objectdetails": "Object Analysis",
}


def _type_key(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", name).lower()


_TYPE_LOOKUP = {_type_key(t): t for t in MMAD_TYPES} | _TYPE_ALIASES


def normalize_question_type(name: str) -> str:
    """The canonical MMAD question type of a raw type name.

    Case, spaces, ``_`` and ``-`` are ignored.  MMAD's raw names "Anomaly Detection",
    "Object Structure" and "Object Details" map to "Anomaly Discrimination" and (both)
    "Object Analysis".

    Raises
    ------
    ValueError
        For an unknown name; the message lists the 7 valid names.

    Examples
    --------
    >>> normalize_question_type("object_details")
    'Object Analysis'
    >>> normalize_question_type("  Anomaly   Detection ")
    'Anomaly Discrimination'
    >>> normalize_question_type("Defect Colour")
    Traceback (most recent call last):
    ...
    ValueError: unknown MMAD question type 'Defect Colour'; valid types: Anomaly Discrimination, Defect Classification, Defect Localization, Defect Description, Defect Analysis, Object Classification, Object Analysis (also accepted: Anomaly Detection, Object Structure, Object Details; case, spaces, '_' and '-' are ignored)
    """
    if not isinstance(name, str):
        raise TypeError(f"question type must be a str, got {name!r}")
    found = _TYPE_LOOKUP.get(_type_key(name))
    if found is None:
        raise ValueError(
            f"unknown MMAD question type {name!r}; valid types: {', '.join(MMAD_TYPES)} "
            "(also accepted: Anomaly Detection, Object Structure, Object Details; "
            "case, spaces, '_' and '-' are ignored)"
        )
    return found


@dataclass(frozen=True)
class MMADRow:
    """One row of an MMAD report.  Accuracies are percentages; NaN means no questions.

    Attributes
    ----------
    scope : {"dataset", "overall", "pooled"}
        A dataset, the mean over datasets, or all datasets pooled as one.
    dataset : str or None
        None for the overall and pooled rows.
    accuracy : dict
        Accuracy per question type, keyed and ordered as :data:`MMAD_TYPES`.  Anomaly
        Discrimination is the mean of ``normal_acc`` and ``abnormal_acc``.
    average : float
        Mean of the 7 type accuracies (NaN types skipped).
    normal_acc, abnormal_acc : float
        Anomaly Discrimination accuracy on normal and on abnormal images.
    n_questions, n_unanswerable : int
        Questions recorded (unanswerable included, whatever the variant) and how many
        of them were unanswerable.
    n_by_type : dict
        Questions recorded per type.
    """

    scope: Literal["dataset", "overall", "pooled"]
    dataset: str | None
    accuracy: dict[str, float]
    average: float
    normal_acc: float
    abnormal_acc: float
    n_questions: int
    n_unanswerable: int
    n_by_type: dict[str, int]

    def __getitem__(self, question_type: str) -> float:
        """Accuracy of a question type (any spelling :func:`normalize_question_type` reads)."""
        return self.accuracy[normalize_question_type(question_type)]

    def to_dict(self) -> dict[str, Any]:
        """A flat, JSON-friendly dict: one key per type, then the other fields."""
        d: dict[str, Any] = {"scope": self.scope, "dataset": self.dataset}
        d.update(self.accuracy)
        d.update(
            average=self.average,
            normal_acc=self.normal_acc,
            abnormal_acc=self.abnormal_acc,
            n_questions=self.n_questions,
            n_unanswerable=self.n_unanswerable,
        )
        return d


@dataclass(frozen=True)
class MMADReport:
    """The table :meth:`MMADMeter.results` returns: datasets (sorted), then overall.

    ``pooled`` is an extra row treating all datasets as one; ``unanswerable`` records
    the variant the figures were computed with.
    """

    rows: tuple[MMADRow, ...]
    pooled: MMADRow
    unanswerable: Unanswerable

    def __iter__(self) -> Iterator[MMADRow]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def overall(self) -> MMADRow:
        """The overall row: per type, the mean over datasets (MMAD's "Average" row)."""
        return self.rows[-1]

    def dataset(self, name: str) -> MMADRow:
        """The row of dataset ``name`` (KeyError if absent)."""
        for r in self.rows:
            if r.scope == "dataset" and r.dataset == name:
                return r
        raise KeyError(f"no dataset {name!r} in the report")

    def to_dicts(self) -> list[dict[str, Any]]:
        """All rows (datasets, overall) as flat dicts."""
        return [r.to_dict() for r in self.rows]

    def to_markdown(self, *, digits: int = 1) -> str:
        """The paper's Table 2 layout: rows = datasets + average, columns = types + average."""
        header = ["Dataset", *MMAD_TYPES, "Average"]
        align = ["---"] + ["--:"] * (len(MMAD_TYPES) + 1)
        body = [
            [
                r.dataset if r.scope == "dataset" and r.dataset is not None else "**Average**",
                *(fmt(r.accuracy[t], digits) for t in MMAD_TYPES),
                fmt(r.average, digits),
            ]
            for r in self.rows
        ]
        return md_table(header, align, body)


class MMADMeter:
    """Streaming MMAD multiple-choice accuracy, per dataset and overall.

    Call :meth:`update` once per answered question.  :meth:`results` follows MMAD's
    summary script: per dataset, the accuracy of each of the 7 types (Anomaly
    Discrimination = mean of the accuracy on normal images and on abnormal images) and
    their average; the overall row is, per type, the mean over datasets, and its
    average is the mean of those 7.

    Two variants for unanswerable responses (``correct=None``, e.g. no option letter
    could be read): ``"wrong"`` (default) counts them as wrong answers; ``"drop"``
    leaves them out, as MMAD's own script does.

    Differences from MMAD's script (``helper/summary.py``): a type (or one side of
    Anomaly Discrimination) without questions has accuracy NaN and is skipped by the
    means, where the script counts it as 0; and the script's overall average is the
    mean of the per-dataset averages, which equals the mean of the overall row's 7
    types whenever no accuracy is NaN.  Unanswerable handling defaults to "wrong",
    the script's behaviour is ``unanswerable="drop"``.

    Examples
    --------
    >>> m = MMADMeter()
    >>> for ok in (True, True, True, False):
    ...     m.update("Defect Classification", ok, dataset="VisA", category="pcb1",
    ...              is_normal=False)
    >>> m.update("Anomaly Detection", True, dataset="VisA", category="pcb1", is_normal=True)
    >>> m.update("anomaly discrimination", None, dataset="VisA", category="pcb1",
    ...          is_normal=False)
    >>> r = m.results().dataset("VisA")
    >>> r["Defect Classification"], r.normal_acc, r.abnormal_acc, r["Anomaly Discrimination"]
    (75.0, 100.0, 0.0, 50.0)
    >>> r.average                                   # the mean of the 2 types present
    62.5
    >>> m.results(unanswerable="drop").dataset("VisA")["Anomaly Discrimination"]
    100.0
    """

    __slots__ = ("_counts",)
    __hash__ = None  # type: ignore[assignment]  # mutable

    def __init__(self) -> None:
        # (dataset, category, type, is_normal) -> [correct, wrong, unanswerable]
        self._counts: dict[tuple[str, str, str, bool], list[int]] = {}

    def __repr__(self) -> str:
        return f"MMADMeter(questions={self.n_questions}, unanswerable={self.n_unanswerable})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MMADMeter):
            return NotImplemented
        return self._counts == other._counts

    @property
    def n_questions(self) -> int:
        """Questions recorded, unanswerable included."""
        return sum(sum(c) for c in self._counts.values())

    @property
    def n_unanswerable(self) -> int:
        """Questions recorded as unanswerable."""
        return sum(c[2] for c in self._counts.values())

    def update(
        self,
        question_type: str,
        correct: bool | None,
        *,
        dataset: str,
        category: str,
        is_normal: bool,
    ) -> None:
        """Record one question.

        Parameters
        ----------
        question_type : str
            Raw or canonical type name (see :func:`normalize_question_type`).
        correct : bool or None
            Whether the answer was right; None when the response was unanswerable.
        dataset, category : str
            Where the image comes from (MMAD: the first two path components).
        is_normal : bool
            Whether the image is normal (MMAD: ``good`` in its path).
        """
        t = normalize_question_type(question_type)
        slot = 2 if correct is None else 0 if flag(correct, "correct") else 1
        key = (name_str(dataset, "dataset"), name_str(category, "category"), t)
        c = self._counts.setdefault((*key, flag(is_normal, "is_normal")), [0, 0, 0])
        c[slot] += 1

    def merge(self, other: MMADMeter) -> MMADMeter:
        """Add the counts of ``other`` into this meter and return this meter."""
        if not isinstance(other, MMADMeter):
            raise TypeError(f"can only merge an MMADMeter, got {type(other).__name__}")
        for key, c in other._counts.items():
            mine = self._counts.setdefault(key, [0, 0, 0])
            for i, v in enumerate(c):
                mine[i] += v
        return self

    def state_dict(self) -> dict[str, Any]:
        """A plain dict of the counts (JSON-serialisable); see :meth:`from_state_dict`."""
        entries = [
            {
                "dataset": d,
                "category": c,
                "type": t,
                "normal": n,
                "correct": v[0],
                "wrong": v[1],
                "unanswerable": v[2],
            }
            for (d, c, t, n), v in sorted(self._counts.items())
        ]
        return {"format": MMAD_FORMAT, "version": STATE_VERSION, "entries": entries}

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> MMADMeter:
        """Rebuild a meter from :meth:`state_dict` output (validated)."""
        meter = cls()
        for e in check_state(state, MMAD_FORMAT):
            if not isinstance(e, Mapping):
                raise ValueError(f"state entry must be a dict, got {e!r}")
            key = (
                name_str(e.get("dataset"), "dataset"),
                name_str(e.get("category"), "category"),
                normalize_question_type(e.get("type")),  # type: ignore[arg-type]
                flag(e.get("normal"), "normal"),
            )
            if key in meter._counts:
                raise ValueError(f"duplicate state entry for {key}")
            meter._counts[key] = [count(e.get(k), k) for k in ("correct", "wrong", "unanswerable")]
        return meter

    def _row(
        self,
        scope: Literal["dataset", "pooled"],
        dataset: str | None,
        unanswerable: Unanswerable,
    ) -> MMADRow:
        sums: dict[tuple[str, bool], list[int]] = {}
        for (d, _, t, n), v in self._counts.items():
            if dataset is None or d == dataset:
                s = sums.setdefault((t, n), [0, 0, 0])
                for i in range(3):
                    s[i] += v[i]

        def acc(parts: list[list[int]]) -> tuple[float, int]:
            c = sum(p[0] for p in parts)
            w = sum(p[1] for p in parts)
            u = sum(p[2] for p in parts)
            den = c + w + (u if unanswerable == "wrong" else 0)
            return (100.0 * c / den if den else math.nan), c + w + u

        accuracy: dict[str, float] = {}
        n_by_type: dict[str, int] = {}
        normal_acc = abnormal_acc = math.nan
        for t in MMAD_TYPES:
            parts = {n: s for (tt, n), s in sums.items() if tt == t}
            if t == MMAD_TYPES[0]:
                normal_acc, n_norm = acc([parts[True]] if True in parts else [])
                abnormal_acc, n_abn = acc([parts[False]] if False in parts else [])
                accuracy[t] = mean([normal_acc, abnormal_acc])
                n_by_type[t] = n_norm + n_abn
            else:
                accuracy[t], n_by_type[t] = acc(list(parts.values()))
        return MMADRow(
            scope,
            dataset,
            accuracy,
            mean(list(accuracy.values())),
            normal_acc,
            abnormal_acc,
            sum(sum(s) for s in sums.values()),
            sum(s[2] for s in sums.values()),
            n_by_type,
        )

    def results(self, *, unanswerable: Unanswerable = "wrong") -> MMADReport:
        """Accuracy per dataset (sorted) and overall, in percent.

        Parameters
        ----------
        unanswerable : {"wrong", "drop"}
            Count unanswerable responses as wrong (default) or leave them out (MMAD's
            script).
        """
        if unanswerable not in ("wrong", "drop"):
            raise ValueError(f"unanswerable must be 'wrong' or 'drop', got {unanswerable!r}")
        ds_rows = [
            self._row("dataset", d, unanswerable) for d in sorted({k[0] for k in self._counts})
        ]
        accuracy = {t: mean([r.accuracy[t] for r in ds_rows]) for t in MMAD_TYPES}
        overall = MMADRow(
            "overall",
            None,
            accuracy,
            mean(list(accuracy.values())),
            mean([r.normal_acc for r in ds_rows]),
            mean([r.abnormal_acc for r in ds_rows]),
            sum(r.n_questions for r in ds_rows),
            sum(r.n_unanswerable for r in ds_rows),
            {t: sum(r.n_by_type[t] for r in ds_rows) for t in MMAD_TYPES},
        )
        return MMADReport(
            (*ds_rows, overall), self._row("pooled", None, unanswerable), unanswerable
        )

    def to_markdown(self, *, unanswerable: Unanswerable = "wrong", digits: int = 1) -> str:
        """:meth:`results` as Markdown in the paper's Table 2 layout."""
        return self.results(unanswerable=unanswerable).to_markdown(digits=digits)
