"""The names ``omniad_train.evaluation.common`` held before the split, re-exported.

What was here now lives in one module per concept (nothing inside the package imports
this module):

- :mod:`~omniad_train.evaluation.runfiles`: run-folder files, JSON helpers, errors,
  merging shards, rebuilding a report with a given report function;
- :mod:`~omniad_train.evaluation.model`: model settings, checks and loading;
- :mod:`~omniad_train.evaluation.execution`: items, the task protocol and
  :func:`execute`;
- :mod:`~omniad_train.evaluation.merge`: :func:`build_report` for any kind of run.
"""

from __future__ import annotations

from omniad_train.evaluation.execution import (
    EvalInterrupted,
    EvalResult,
    Item,
    SkipItem,
    Task,
    base_line,
    execute,
    parse_categories,
    select,
    wanted,
)
from omniad_train.evaluation.merge import build_report
from omniad_train.evaluation.model import check_model, load_inspector, model_settings
from omniad_train.evaluation.runfiles import (
    RESULTS_FILE,
    RUN_FILE,
    RUN_FORMAT,
    IncompleteRunError,
    RunConfigError,
    done_path,
    json_safe,
    merge_shards,
    now,
    package_versions,
    read_json,
    read_run,
    results_path,
    sha256_text,
    shard_status,
    write_json,
)

__all__ = [
    "RESULTS_FILE",
    "RUN_FILE",
    "RUN_FORMAT",
    "EvalInterrupted",
    "EvalResult",
    "IncompleteRunError",
    "Item",
    "RunConfigError",
    "SkipItem",
    "Task",
    "base_line",
    "build_report",
    "check_model",
    "done_path",
    "execute",
    "json_safe",
    "load_inspector",
    "merge_shards",
    "model_settings",
    "now",
    "package_versions",
    "parse_categories",
    "read_json",
    "read_run",
    "results_path",
    "select",
    "sha256_text",
    "shard_status",
    "wanted",
    "write_json",
]
