"""The demo's figures: :class:`MetricKey`, a stage's :data:`Metrics` read from the
runners' reports and from GRPO's detection reward, and their ``metrics.json`` form."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

from textmask import Scores

__all__ = [
    "MEAN_R_DET",
    "MetricKey",
    "Metrics",
    "mean_detection_reward",
    "metrics_from_json",
    "metrics_to_json",
    "selection_score",
    "summarize_reports",
]


class MetricKey(NamedTuple):
    """One figure of the demo's tables: a ``section`` (``"detection"`` or ``"MMAD"``) and
    the figure's ``name`` in it; :attr:`label` is how the report shows it.

    >>> MetricKey("detection", "pixel f1").label
    'detection: pixel f1'
    """

    section: str
    name: str

    @property
    def label(self) -> str:
        """``"section: name"``, as in the report's tables."""
        return f"{self.section}: {self.name}"


#: One stage's figures (percentages, except :data:`MEAN_R_DET`).
Metrics = dict[MetricKey, float]

#: GRPO's detection reward averaged over the held-out images (0 to 2, not a percentage).
MEAN_R_DET = MetricKey("detection", "mean R_det (0-2)")
_PIXEL_F1 = MetricKey("detection", "pixel f1")
_IMAGE_F1 = MetricKey("detection", "image f1")
_MMAD_AVERAGE = MetricKey("MMAD", "average")


def selection_score(m: Metrics) -> float:
    """One number to pick the demo's best checkpoint: detection and QA together.

    >>> selection_score({_PIXEL_F1: 10.0, _MMAD_AVERAGE: 50.0, MEAN_R_DET: 1.0})
    60.0
    """
    return m.get(_PIXEL_F1, 0.0) + m.get(_IMAGE_F1, 0.0) + m.get(_MMAD_AVERAGE, 0.0)


def metrics_to_json(metrics: Metrics) -> dict[str, dict[str, float]]:
    """``{section: {name: value}}``, as a stage's ``metrics.json`` holds them.

    >>> metrics_to_json({MetricKey("MMAD", "average"): 50.0})
    {'MMAD': {'average': 50.0}}
    """
    out: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        out.setdefault(key.section, {})[key.name] = value
    return out


def metrics_from_json(data: Any) -> Metrics:
    """A stage's figures from its ``metrics.json`` (anything else reads as none).

    Folders of earlier demo versions hold ``{"section: name": value}``; they are read too.

    >>> metrics_from_json({"MMAD": {"average": 50.0}})
    {MetricKey(section='MMAD', name='average'): 50.0}
    >>> metrics_from_json({"detection: pixel f1": 12.5})
    {MetricKey(section='detection', name='pixel f1'): 12.5}
    """
    out: Metrics = {}
    if not isinstance(data, dict):
        return out
    for section, value in data.items():
        if isinstance(value, dict):
            for name, v in value.items():
                if isinstance(v, (int, float)):
                    out[MetricKey(str(section), str(name))] = float(v)
        elif isinstance(value, (int, float)) and ": " in section:  # an earlier version's file
            head, _, name = section.partition(": ")
            out[MetricKey(head, name)] = float(value)
    return out


def _overall(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return next((r for r in rows if r.get("scope") == "overall"), {})


def mean_detection_reward(results: Path, alpha: float = 2.0) -> Metrics:
    """GRPO's detection reward R_det averaged over the images of a detection run.

    Per image, from the pixel counts the runner stores: 1 when the truth and the
    prediction are both empty, 0 when only the truth is, else ``alpha * F1`` (so 0 to 2).
    An unreadable seg counts as an empty prediction, as in training. Computed with
    :meth:`textmask.Scores.reward`, exact for images at least as large as the grid.
    """
    values = []
    for line in Path(results).read_text().splitlines():
        rec = json.loads(line)
        if rec.get("status") == "ok" and rec.get("pixel") is not None:
            values.append(Scores(*rec["pixel"]).reward(alpha))
    return {MEAN_R_DET: sum(values) / len(values)} if values else {}


def summarize_reports(det: dict[str, Any], mm: dict[str, Any]) -> Metrics:
    """The demo's table rows from the runners' ``report.json`` dicts (percentages)."""
    out: Metrics = {}
    d = _overall(det.get("rows", []))
    for key in ("pixel_f1", "pixel_acc", "image_f1", "image_acc"):
        if d.get(key) is not None:
            out[MetricKey("detection", key.replace("_", " "))] = float(d[key])
    counts = det.get("counts", {})
    if counts.get("evaluated"):
        unanswered = 100.0 * counts.get("unanswerable", 0) / counts["evaluated"]
        out[MetricKey("detection", "unreadable answers %")] = unanswered
    m = _overall(mm.get("accuracy", {}).get("rows", []))
    for key, value in m.items():
        if key in ("scope", "dataset", "n_questions", "n_unanswerable") or value is None:
            continue
        out[MetricKey("MMAD", key.replace("_", " "))] = float(value)
    if m.get("n_questions"):
        unanswered = 100.0 * m["n_unanswerable"] / m["n_questions"]
        out[MetricKey("MMAD", "unreadable answers %")] = unanswered
    return out
