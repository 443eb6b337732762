"""``--merge``: rebuild the report of any run folder, whichever runner made it.

The one place that maps a run's kind (``run.json``) to the runner's report function;
a runner passes its own report function to
:func:`~omniad_train.evaluation.execution.execute` and needs no such map.
"""

from __future__ import annotations

import os
from typing import Any

from omniad_train.evaluation.detection_runner import KIND as DETECTION
from omniad_train.evaluation.detection_runner import detection_report
from omniad_train.evaluation.mmad_runner import KIND as MMAD
from omniad_train.evaluation.mmad_runner import mmad_report
from omniad_train.evaluation.runfiles import ReportBuilder, rebuild_report

__all__ = ["REPORTS", "build_report"]

#: Run kind -> the function that rebuilds its report from the result lines.
REPORTS: dict[str, ReportBuilder] = {
    MMAD: mmad_report,
    DETECTION: detection_report,
}


def build_report(
    out_dir: str | os.PathLike[str],
    *,
    allow_partial: bool = False,
    **options: Any,
) -> dict[str, Any]:
    """Merge shards if needed and write ``report.md`` / ``report.json`` from the JSONL.

    ``options`` override the run's report options (``compare_paper``, and for detection
    ``image_decision``); None values keep the run's.
    """
    return rebuild_report(out_dir, REPORTS, allow_partial=allow_partial, **options)
