"""The demo's figures: :class:`MetricKey`, a stage's :data:`Metrics` read from the
runners' reports and from GRPO's detection reward, and their ``metrics.json`` form."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from textmask import Scores

__all__ = [
    "BEST_RULE",
    "MEAN_R_DET",
    "BestChoice",
    "MetricKey",
    "Metrics",
    "mean_detection_reward",
    "metrics_from_json",
    "metrics_to_json",
    "pick_best",
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
    """One number to pick the demo's best checkpoint: detection and QA together
    (pixel F1 + image F1 + MMAD average, in percentage points; a missing figure is 0).

    >>> selection_score({_PIXEL_F1: 10.0, _MMAD_AVERAGE: 50.0, MEAN_R_DET: 1.0})
    60.0
    """
    return sum(_finite_or_zero(m.get(k)) for k in (_PIXEL_F1, _IMAGE_F1, _MMAD_AVERAGE))


def _finite_or_zero(v: float | None) -> float:
    return v if v is not None and v == v and abs(v) != float("inf") else 0.0


#: How the demo picks its best model, as the report and the end of the run print it.
BEST_RULE = (
    "the trained model (sft or sft+grpo) with the highest pixel F1 + image F1 + MMAD "
    "average on the held-out images (percentage points); a tie goes to the higher mean "
    "R_det, then to sft"
)


@dataclass(frozen=True)
class BestChoice:
    """The demo's best model by :data:`BEST_RULE`: its ``stage``, the ``rule``, each
    stage's ``scores`` and ``notes`` on what the choice does not mean."""

    stage: str
    rule: str = BEST_RULE
    scores: dict[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def lines(self) -> list[str]:
        """The choice, the rule and the notes, one line each."""
        return [f"best model: {self.stage} (rule: {self.rule})", *self.notes]


def pick_best(metrics: dict[str, Metrics]) -> BestChoice:
    """Pick the best of ``sft`` and ``sft+grpo`` by :data:`BEST_RULE`.

    The ``untrained`` stage is compared too: when the chosen model does not beat it on
    the rule, or has a lower mean R_det (an untrained model earns R_det 1 on each normal
    image by writing nothing readable), a note says so.

    >>> m = {"untrained": {MEAN_R_DET: 0.25}, "sft": {_PIXEL_F1: 1.0, MEAN_R_DET: 0.2},
    ...      "sft+grpo": {_PIXEL_F1: 0.5, MEAN_R_DET: 0.3}}
    >>> best = pick_best(m)
    >>> best.stage, len(best.notes)
    ('sft', 1)
    >>> print(best.notes[0])
    note: sft's mean R_det 0.200 is below the untrained model's 0.250 (which earns it by writing nothing on normal images)
    """
    candidates = ("sft", "sft+grpo")
    scores = {s: selection_score(metrics.get(s, {})) for s in ("untrained", *candidates)}

    def r_det(stage: str) -> float:
        return _finite_or_zero(metrics.get(stage, {}).get(MEAN_R_DET))

    # max keeps the first of equal keys: sft wins a full tie
    # rounded: a sum of percentages should not be decided by float rounding
    best = max(candidates, key=lambda s: (round(scores[s], 6), r_det(s)))
    notes = []
    if scores[best] <= scores["untrained"]:
        notes.append(
            f"note: no trained model beats the untrained one on this rule ({best}: "
            f"{scores[best]:.1f}, untrained: {scores['untrained']:.1f}); {best} is kept as "
            "the best, but it has learned nothing measurable here"
        )
    if MEAN_R_DET in metrics.get(best, {}) and r_det(best) < r_det("untrained"):
        notes.append(
            f"note: {best}'s mean R_det {r_det(best):.3f} is below the untrained model's "
            f"{r_det('untrained'):.3f} (which earns it by writing nothing on normal images)"
        )
    return BestChoice(best, BEST_RULE, scores, tuple(notes))


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
