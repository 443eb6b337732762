"""The detection runner under the name users import: :func:`run_detection`, its report
and CLI.

The runner (test images, the task, the report) lives in
:mod:`omniad_train.evaluation.detection_runner` and its command line in
:mod:`omniad_train.evaluation.cli`; this module gathers both, so that
``from omniad_train.evaluation.detection import run_detection, main`` keeps working.
"""

from __future__ import annotations

from omniad_train.evaluation.cli import build_detection_parser as build_parser
from omniad_train.evaluation.cli import detection_main as main
from omniad_train.evaluation.detection_runner import (
    IMAGE_DECISIONS,
    KIND,
    RootsLike,
    collect_detection_items,
    detection_meter,
    detection_report,
    image_prediction,
    normalize_roots,
    run_detection,
)

__all__ = [
    "IMAGE_DECISIONS",
    "KIND",
    "RootsLike",
    "build_parser",
    "collect_detection_items",
    "detection_meter",
    "detection_report",
    "image_prediction",
    "main",
    "normalize_roots",
    "run_detection",
]
