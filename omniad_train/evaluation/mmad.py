"""The MMAD runner under the name users import: :func:`run_mmad`, its report and CLI.

The runner (questions, the task, the report) lives in
:mod:`omniad_train.evaluation.mmad_runner` and its command line in
:mod:`omniad_train.evaluation.cli`; this module gathers both, so that
``from omniad_train.evaluation.mmad import run_mmad, main`` keeps working.
"""

from __future__ import annotations

from omniad_train.evaluation.cli import build_mmad_parser as build_parser
from omniad_train.evaluation.cli import mmad_main as main
from omniad_train.evaluation.mmad_runner import (
    KIND,
    collect_mmad_items,
    mmad_meter,
    mmad_report,
    reject_kind,
    run_mmad,
)

__all__ = [
    "KIND",
    "build_parser",
    "collect_mmad_items",
    "main",
    "mmad_meter",
    "mmad_report",
    "reject_kind",
    "run_mmad",
]
