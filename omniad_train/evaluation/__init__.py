"""Evaluation runners: MMAD question answering and MVTec-style anomaly detection.

- :func:`run_mmad`: every MMAD question 0-shot or 1-shot; paper Table 2 layout.
- :func:`run_detection`: "Is there any defect in the object?" on MVTec-style test sets;
  pixel- and image-level F1 / accuracy (paper Tables 3/4, 10-17 layout), saved masks,
  precision / recall pictures.
- :func:`merge_shards` / :func:`build_report`: combine a sharded run and (re)build
  ``report.md`` / ``report.json`` from the JSONL results.
- :class:`RunLog`, :func:`resolve_shard`, :func:`shard_slice`: the resumable JSONL and
  the sharding they rely on.

Runs are resumable (an interrupted run continues from its JSONL), batched and
shardable across processes (``--shard_index i --num_shards n`` or ``torchrun``).
Importing this package does not import torch; loading a model does.  See
``docs/evaluation.md``; ``docs/architecture.md`` says which module holds what.
"""

from omniad_train.evaluation.detection_runner import (
    collect_detection_items,
    detection_meter,
    normalize_roots,
    run_detection,
)
from omniad_train.evaluation.execution import EvalInterrupted, EvalResult, Item
from omniad_train.evaluation.merge import build_report
from omniad_train.evaluation.mmad_runner import collect_mmad_items, mmad_meter, run_mmad
from omniad_train.evaluation.paper import compare_detection, compare_mmad, load_paper_numbers
from omniad_train.evaluation.runfiles import (
    IncompleteRunError,
    RunConfigError,
    merge_shards,
    read_run,
    shard_status,
)
from omniad_train.evaluation.runlog import (
    LogRepair,
    RunLog,
    RunLogLockedError,
    read_jsonl,
    resolve_shard,
    shard_slice,
)
from omniad_train.evaluation.schema import check_line, line_validator

__all__ = [
    "EvalInterrupted",
    "EvalResult",
    "IncompleteRunError",
    "Item",
    "LogRepair",
    "RunConfigError",
    "RunLog",
    "RunLogLockedError",
    "build_report",
    "check_line",
    "collect_detection_items",
    "collect_mmad_items",
    "compare_detection",
    "compare_mmad",
    "detection_meter",
    "line_validator",
    "load_paper_numbers",
    "merge_shards",
    "mmad_meter",
    "normalize_roots",
    "read_jsonl",
    "read_run",
    "resolve_shard",
    "run_detection",
    "run_mmad",
    "shard_slice",
    "shard_status",
]
