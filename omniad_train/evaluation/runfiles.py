"""The files of a run folder, the JSON helpers that write them, merging and reports.

==========================  ==================================================
``run.json``                what was run (fingerprint checked on resume)
``results.jsonl``           one line per item (single process, or merged shards)
``results.rank{i}.jsonl``   shard ``i`` of a sharded run
``done.rank{i}.json``       shard ``i`` finished (item count, selection hash)
``report.md/.json``         the report, rebuilt from ``results.jsonl``
==========================  ==================================================

Every file is written atomically (a temporary file, then ``os.replace``).  A report is
rebuilt from the result lines by a runner's report function (:data:`ReportBuilder`),
which the caller passes in: this module knows no runner.

>>> json_safe({"f1": float("nan"), "grid": (24, 24)})
{'f1': None, 'grid': [24, 24]}
>>> results_path(Path("run"), 0, 1).name, results_path(Path("run"), 2, 4).name
('results.jsonl', 'results.rank2.jsonl')
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import math
import os
import platform
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from omniad_train.evaluation.runlog import (
    LogRepair,
    RunLog,
    RunLogLockedError,
    Validator,
    atomic_write_text,
    read_jsonl,
)
from omniad_train.evaluation.schema import KINDS, line_validator

__all__ = [
    "RESULTS_FILE",
    "RUN_FILE",
    "RUN_FORMAT",
    "IncompleteRunError",
    "ReportBuilder",
    "RunConfigError",
    "check_run",
    "clear_shard",
    "done_path",
    "hold_merged",
    "json_safe",
    "merge_shards",
    "now",
    "package_versions",
    "read_json",
    "read_run",
    "rebuild_report",
    "report_validator",
    "results_path",
    "sha256_text",
    "shard_status",
    "warn_repair",
    "write_json",
    "write_run",
]

log = logging.getLogger("omniad.evaluation")

RUN_FILE = "run.json"
RESULTS_FILE = "results.jsonl"
RUN_FORMAT = "omniad.evaluation.run/1"

#: A runner's report function: ``report(out_dir, lines, run, status, **options)``
#: writes ``report.md`` / ``report.json`` from the result lines and returns the report.
ReportBuilder = Callable[..., dict[str, Any]]


class RunConfigError(ValueError):
    """The output folder holds a run made with other settings."""


class IncompleteRunError(RuntimeError):
    """Not every shard of a sharded run has finished."""


# --------------------------------------------------------------------------- JSON helpers
def now() -> str:
    """The current UTC time, ISO 8601, seconds."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def package_versions() -> dict[str, str | None]:
    """Versions of omniad, torch, transformers, numpy, Pillow and Python (no imports)."""
    out: dict[str, str | None] = {}
    for name in ("omniad", "torch", "transformers", "numpy", "pillow"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    out["python"] = platform.python_version()
    return out


def sha256_text(text: str | None) -> str | None:
    """The SHA-256 of ``text`` (UTF-8) in hex; None stays None."""
    return None if text is None else hashlib.sha256(text.encode("utf-8")).hexdigest()


def json_safe(value: Any) -> Any:
    """NaN and inf become None; tuples become lists (report.json stays valid JSON)."""
    if isinstance(value, float):
        return None if not math.isfinite(value) else value
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write_json(path: Path, data: Any) -> Path:
    """Write ``data`` (made :func:`json_safe`) as indented JSON, atomically."""
    return atomic_write_text(path, json.dumps(json_safe(data), indent=2, ensure_ascii=False) + "\n")


def read_json(path: Path) -> Any:
    """The JSON in ``path``; None when missing, :class:`RunConfigError` when not JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise RunConfigError(f"{path} is not valid JSON ({exc}); delete it to start over") from None


# --------------------------------------------------------------------------- run files
def results_path(out_dir: Path, shard_index: int, num_shards: int) -> Path:
    """``results.jsonl`` for a single process, ``results.rank{i}.jsonl`` for shards."""
    return out_dir / (RESULTS_FILE if num_shards == 1 else f"results.rank{shard_index}.jsonl")


def done_path(out_dir: Path, shard_index: int) -> Path:
    """The marker a finished shard writes."""
    return out_dir / f"done.rank{shard_index}.json"


def check_run(
    out_dir: Path, kind: str, fingerprint: dict[str, Any], num_shards: int, overwrite: bool
) -> dict[str, Any] | None:
    """The folder's ``run.json`` (None if none); RunConfigError when it holds a run with
    other settings and ``overwrite`` is False.  Reads only."""
    old = read_json(out_dir / RUN_FILE)
    if old is not None and not isinstance(old, dict):
        raise RunConfigError(
            f"{out_dir / RUN_FILE} is not a run file (a JSON object); delete it to start over"
        )
    if old is None or overwrite:
        return old
    differ = []
    if old.get("kind") != kind:
        differ.append(f"kind: {old.get('kind')!r} -> {kind!r}")
    if old.get("num_shards") != num_shards:
        differ.append(f"num_shards: {old.get('num_shards')!r} -> {num_shards!r}")
    old_fp = old.get("fingerprint", {})
    old_fp = old_fp if isinstance(old_fp, dict) else {}
    for k in sorted(set(old_fp) | set(fingerprint)):
        if json_safe(old_fp.get(k)) != json_safe(fingerprint.get(k)):
            differ.append(f"{k}: {old_fp.get(k)!r} -> {fingerprint.get(k)!r}")
    if differ:
        raise RunConfigError(
            f"{out_dir} holds a run with other settings ({'; '.join(differ)}); resume it "
            "with the same settings, choose another output folder, or pass overwrite=True "
            "(--overwrite) to discard its results"
        )
    return old


def hold_merged(out_dir: Path, shard: tuple[int, int], overwrite: bool) -> RunLog | None:
    """``--overwrite`` of shard 0 of a sharded run deletes the merged ``results.jsonl``:
    take its lock first, so a live single-process run writing it is never robbed of
    its file (RunLogLockedError instead).  None when nothing needs holding."""
    shard_index, num_shards = shard
    merged = out_dir / RESULTS_FILE
    if not (overwrite and num_shards > 1 and shard_index == 0 and merged.exists()):
        return None
    guard = RunLog(merged)
    try:
        guard.acquire()
    except RunLogLockedError:
        raise RunLogLockedError(
            f"another process is writing {merged}; --overwrite does not delete the results "
            "of a live run: wait for it to finish (or stop it), or choose another --out"
        ) from None
    return guard


def clear_shard(out_dir: Path, shard: tuple[int, int]) -> None:
    """``--overwrite``: delete this shard's results (the caller holds their lock) and,
    for shard 0, the merged results (locked by :func:`hold_merged`) and the report."""
    shard_index, num_shards = shard
    results_path(out_dir, shard_index, num_shards).unlink(missing_ok=True)
    done_path(out_dir, shard_index).unlink(missing_ok=True)
    if shard_index == 0:
        for name in (RESULTS_FILE, "report.md", "report.json"):
            (out_dir / name).unlink(missing_ok=True)


def write_run(
    out_dir: Path,
    old: dict[str, Any] | None,
    *,
    kind: str,
    fingerprint: dict[str, Any],
    config: dict[str, Any],
    report_options: dict[str, Any],
    num_shards: int,
    overwrite: bool,
    selection: str,
) -> None:
    """Write ``run.json`` (keeping the creation date of ``old`` unless ``overwrite``)."""
    write_json(
        out_dir / RUN_FILE,
        {
            "format": RUN_FORMAT,
            "kind": kind,
            "num_shards": num_shards,
            "created": old.get("created") if old and not overwrite else now(),
            "updated": now(),
            "selection_sha256": selection,
            "fingerprint": fingerprint,
            "config": config,
            "report_options": report_options,
        },
    )


def read_run(out_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """``run.json`` of an output folder (FileNotFoundError when it is not a run)."""
    run = read_json(Path(out_dir) / RUN_FILE)
    if not isinstance(run, dict) or run.get("format") != RUN_FORMAT:
        raise FileNotFoundError(
            f"{out_dir} holds no evaluation run ({RUN_FILE} missing or not a run file)"
        )
    return run


def shard_status(out_dir: str | os.PathLike[str]) -> tuple[list[int], list[dict[str, Any]]]:
    """``(missing, markers)``: shards without a done marker for the run's current item
    selection (``selection_sha256`` in ``run.json``), and the markers found."""
    out = Path(out_dir)
    run = read_run(out)
    n = int(run["num_shards"])
    markers = [read_json(done_path(out, i)) for i in range(n)]
    want = run.get("selection_sha256")  # a marker of another selection is stale
    missing = [
        i
        for i, m in enumerate(markers)
        if not isinstance(m, dict) or (want is not None and m.get("selection_sha256") != want)
    ]
    return missing, [m for m in markers if isinstance(m, dict)]


# --------------------------------------------------------------------------- merge, report
def report_validator(run: dict[str, Any]) -> Validator | None:
    """The line check of the fields a report reads, for the run's kind."""
    kind = run.get("kind")
    return line_validator(kind, full=False) if kind in KINDS else None


def warn_repair(path: Path, repair: LogRepair, action: str) -> None:
    """Log one ``FILE:LINE: reason`` warning per line that could not be used."""
    if repair.clean:
        return
    log.warning("%s: %s %s", path, repair.describe(), action)
    for problem in repair.problems(path):
        log.warning("  %s", problem)


def merge_shards(out_dir: str | os.PathLike[str], *, allow_partial: bool = False) -> Path:
    """Combine ``results.rank{i}.jsonl`` into ``results.jsonl`` (sorted, one line per id).

    Raises :class:`IncompleteRunError` when a shard has not finished, unless
    ``allow_partial`` (then whatever is there is merged).  A single-process run needs
    no merge; its ``results.jsonl`` is returned as is.
    """
    out = Path(out_dir)
    run = read_run(out)
    n = int(run["num_shards"])
    target = out / RESULTS_FILE
    if n == 1:
        return target
    missing, _ = shard_status(out)
    if missing and not allow_partial:
        raise IncompleteRunError(
            f"shard(s) {missing} of {n} in {out} have not finished; run them (same settings, "
            "--shard_index i --num_shards n) or merge with allow_partial=True (--allow_partial)"
        )
    lines: dict[str, dict[str, Any]] = {}
    validate = report_validator(run)
    for i in range(n):
        path = results_path(out, i, n)
        found, repair = read_jsonl(path, validate)
        warn_repair(path, repair, "left out of the merge")
        for line in found:
            lines.setdefault(line["id"], line)
    ordered = sorted(lines.values(), key=lambda d: (d.get("index", math.inf), d["id"]))
    text = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in ordered)
    atomic_write_text(target, text)
    return target


def rebuild_report(
    out_dir: str | os.PathLike[str],
    kinds: dict[str, ReportBuilder],
    *,
    allow_partial: bool = False,
    **options: Any,
) -> dict[str, Any]:
    """Merge shards if needed and write ``report.md`` / ``report.json`` from the JSONL.

    Parameters
    ----------
    out_dir : path
        The run folder.
    kinds : dict
        Run kind -> the report function that rebuilds it; a run of another kind is a
        :class:`RunConfigError`.  A runner passes only its own kind.
    allow_partial : bool
        Report on the shards present even if some have not finished.
    **options
        Override the run's report options (``compare_paper``, and for detection
        ``image_decision``); None values keep the run's.
    """
    out = Path(out_dir)
    run = read_run(out)
    report = kinds.get(run.get("kind"))  # type: ignore[arg-type]
    if report is None:
        raise RunConfigError(
            f"unknown run kind {run.get('kind')!r} in {out / RUN_FILE}; expected "
            f"{' or '.join(repr(k) for k in kinds)}"
        )
    merge_shards(out, allow_partial=allow_partial)
    missing, markers = shard_status(out)
    if missing and not allow_partial:
        raise IncompleteRunError(
            f"shard(s) {missing} of the run in {out} have not finished; finish them or pass "
            "allow_partial=True (--allow_partial) for a report on what is there"
        )
    lines, repair = read_jsonl(out / RESULTS_FILE, report_validator(run))
    warn_repair(out / RESULTS_FILE, repair, "left out of the report")
    opts = dict(run.get("report_options", {}))
    opts.update({k: v for k, v in options.items() if v is not None})
    status = {
        "complete": not missing,
        "missing_shards": missing,
        "num_shards": run["num_shards"],
        "n_items": sum(int(m.get("n_items", 0)) for m in markers) if not missing else None,
        "n_lines": len(lines),
        "unreadable_lines": repair.problems(out / RESULTS_FILE, limit=100),
    }
    return report(out, lines, run, status, **opts)
