"""Evaluation metrics: detection F1 / accuracy, MMAD accuracy, thresholds and PR curves.

Everything here is NumPy only (no torch, no scikit-learn) and imports fast.  The names
below are re-exported from four modules: :mod:`~omniad_core.metrics.confusion`,
:mod:`~omniad_core.metrics.detection`, :mod:`~omniad_core.metrics.mmad` and
:mod:`~omniad_core.metrics.thresholds`.

Detection (:class:`DetectionMeter`)
    Pixel-level and image-level F1 and accuracy of predicted anomaly masks, accumulated
    one image at a time as confusion counts, per ``(dataset, category)``.  Pixels are
    pooled over the images of a category; a dataset's figure is the mean over its
    categories; the overall figure is the mean over datasets.  Pooled-over-everything
    figures are reported alongside.
MMAD (:class:`MMADMeter`)
    Multiple-choice accuracy in the benchmark's 7 question types, per dataset and
    overall, laid out as MMAD's own summary script does (see :class:`MMADMeter` for
    the two small differences).
Score-map baselines (:func:`optimal_threshold`, :func:`pr_curve`)
    The Anomalib-style single threshold that maximises the harmonic mean of pixel F1
    and image F1, exact over every candidate, and a precision-recall curve with the
    conventions of ``sklearn.metrics.precision_recall_curve``.

Conventions
-----------
- Report tables (:class:`DetectionReport`, :class:`MMADReport`) are in **percent**
  (0-100), as in the paper; the low-level functions (:class:`Confusion`,
  :func:`optimal_threshold`, :func:`f1_at_threshold`, :func:`pr_curve`) return
  **fractions** (0-1), as scikit-learn does.
- A ratio with a zero denominator is 1 (100 %): F1 when there is nothing to find and
  nothing was predicted (``tp + fp + fn == 0``) is perfect, as in ``textmask``.
- A mask value is anomalous when it is non-zero (bool, 0/1, 0/255 all work).
- A score-map prediction is positive when ``score >= threshold``.

>>> import numpy as np
>>> meter = DetectionMeter()
>>> gt = np.zeros((4, 4), bool); gt[0, :2] = True
>>> meter.update(gt, gt, dataset="MVTec-AD", category="bottle")
>>> meter.results().overall.pixel_f1
100.0
"""

from __future__ import annotations

from omniad_core.metrics.confusion import Confusion
from omniad_core.metrics.detection import DetectionMeter, DetectionReport, DetectionRow
from omniad_core.metrics.mmad import (
    MMAD_TYPES,
    MMADMeter,
    MMADReport,
    MMADRow,
    Unanswerable,
    normalize_question_type,
)
from omniad_core.metrics.thresholds import (
    ThresholdResult,
    apply_threshold,
    confusion_at_threshold,
    f1_at_threshold,
    optimal_threshold,
    pr_curve,
)

__all__ = [
    "MMAD_TYPES",
    "Confusion",
    "DetectionMeter",
    "DetectionReport",
    "DetectionRow",
    "MMADMeter",
    "MMADReport",
    "MMADRow",
    "ThresholdResult",
    "Unanswerable",
    "apply_threshold",
    "confusion_at_threshold",
    "f1_at_threshold",
    "normalize_question_type",
    "optimal_threshold",
    "pr_curve",
]
