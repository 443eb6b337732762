"""The resumable, sharded, batched loop that writes a rank's JSONL.

- :class:`Item`: one unit of work (a question to ask, or a bad input to list as skipped).
- :func:`select`: filter, cap and number the items of a run.
- :class:`Task`: what a runner plugs in (load an item, ask, write its line).
- :func:`execute`: run this process's shard, resuming from its JSONL, and, once every
  shard has finished, rebuild the report with the runner's report function.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from omniad_train.data.records import Record
from omniad_train.evaluation.runfiles import (
    ReportBuilder,
    check_run,
    clear_shard,
    done_path,
    hold_merged,
    now,
    rebuild_report,
    results_path,
    shard_status,
    warn_repair,
    write_json,
    write_run,
)
from omniad_train.evaluation.runlog import (
    RunLog,
    Validator,
    read_jsonl,
    resolve_shard,
    selection_sha256,
    shard_slice,
)
from omniad_train.evaluation.schema import line_validator

__all__ = [
    "EvalInterrupted",
    "EvalResult",
    "Item",
    "SkipItem",
    "Task",
    "base_line",
    "execute",
    "parse_categories",
    "select",
    "wanted",
]

log = logging.getLogger("omniad.evaluation")


class EvalInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a run; what was finished is saved and re-running resumes.

    A ``KeyboardInterrupt``, so code that stops on Ctrl-C still stops.

    Attributes
    ----------
    results : Path
        The JSONL holding the finished items.
    n_done, n_items : int
        Items of this shard with a line in ``results``, and items in the shard.
    shard : (index, num_shards)
    """

    def __init__(
        self,
        results: Path,
        n_done: int,
        n_items: int,
        shard: tuple[int, int],
        overwrite: bool = False,
    ) -> None:
        self.results, self.n_done, self.n_items, self.shard = results, n_done, n_items, shard
        where = "" if shard[1] == 1 else f"shard {shard[0]}/{shard[1]}: "
        again = "the same command without --overwrite" if overwrite else "the same command"
        super().__init__(
            f"{where}interrupted: {n_done} of {n_items} items finished, saved to {results}; "
            f"re-run {again} to resume"
        )


class SkipItem(Exception):
    """Raised by a task for an input it cannot use; the item is listed as skipped."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


@dataclass
class Item:
    """One unit of work, in the run's global order (``index``).

    ``record`` is the question to ask; ``skip`` is ``(kind, reason)`` for a bad input
    found while reading (then ``record`` is None).  ``extra`` holds task-specific data.
    """

    id: str
    index: int
    dataset: str
    category: str
    record: Record | None = None
    skip: tuple[str, str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class EvalResult:
    """What a runner call did.

    Attributes
    ----------
    out_dir : Path
        The run folder.
    results : Path
        The JSONL this process wrote (its shard's file).
    shard : (index, num_shards)
    n_items : int
        Items in this shard.
    n_new : int
        Items written by this call (the rest were already in the JSONL); inputs skipped
        by an earlier call are re-checked and count here too.
    complete : bool
        Every shard has finished and the report was written.
    report : dict or None
        The report (as in ``report.json``) when complete.
    """

    out_dir: Path
    results: Path
    shard: tuple[int, int]
    n_items: int
    n_new: int
    complete: bool
    report: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def report_md(self) -> Path:
        return self.out_dir / "report.md"

    @property
    def report_json(self) -> Path:
        return self.out_dir / "report.json"


# --------------------------------------------------------------------------- items
def parse_categories(value: str | Iterable[str] | None) -> frozenset[str] | None:
    """A category filter from ``"a,b"`` or a list; None keeps everything."""
    if value is None:
        return None
    parts = value.split(",") if isinstance(value, str) else list(value)
    kept = frozenset(p.strip() for p in parts if p and p.strip())
    return kept or None


def wanted(selection: frozenset[str] | None, dataset: str, category: str) -> bool:
    """An item is kept when its category, ``dataset/category`` or dataset is selected."""
    return selection is None or bool({category, f"{dataset}/{category}", dataset} & selection)


def select(
    stream: Iterable[Item],
    *,
    categories: frozenset[str] | None,
    limit: int | None,
    limit_per_category: int | None,
) -> list[Item]:
    """Filter, cap and number items (stops reading once ``limit`` items are kept)."""
    for name, v in (("limit", limit), ("limit_per_category", limit_per_category)):
        if v is not None and v < 0:
            raise ValueError(f"{name} must be >= 0, got {v}")
    out: list[Item] = []
    per_cat: dict[tuple[str, str], int] = {}
    seen: set[str] = set()
    if limit == 0:
        return out
    for item in stream:
        if not wanted(categories, item.dataset, item.category):
            continue
        key = (item.dataset, item.category)
        if limit_per_category is not None and per_cat.get(key, 0) >= limit_per_category:
            continue
        if item.id in seen:
            raise ValueError(f"two inputs have the same id {item.id!r}; ids must be unique")
        seen.add(item.id)
        item.extra["ordinal_in_category"] = per_cat.get(key, 0)
        per_cat[key] = per_cat.get(key, 0) + 1
        item.index = len(out)
        out.append(item)
        if limit is not None and len(out) >= limit:
            break
    return out


# --------------------------------------------------------------------------- execution
class Task(Protocol):
    """What a runner plugs into :func:`execute`."""

    def prepare(self, item: Item) -> Any:
        """Load what the item needs (images, masks); raise :class:`SkipItem` if unusable."""

    def request(self, prepared: Any) -> tuple[Any, str, Any, Any]:
        """``(image, question, options, reference)`` for ``Inspector.analyze_batch``."""

    def finish(self, item: Item, prepared: Any, analysis: Any) -> dict[str, Any]:
        """The JSONL line of an answered item."""

    def skipped(self, item: Item, kind: str, reason: str) -> dict[str, Any]:
        """The JSONL line of a skipped item."""


def base_line(item: Item, status: str) -> dict[str, Any]:
    return {
        "id": item.id,
        "index": item.index,
        "status": status,
        "dataset": item.dataset,
        "category": item.category,
    }


def _generate(
    inspector: Any, task: Task, ready: list[tuple[Item, Any]], had_success: bool
) -> tuple[dict[str, dict[str, Any]], bool]:
    """Answer a batch; on a generation error retry one by one and skip the failures."""
    reqs = [task.request(p) for _, p in ready]

    def run(rs: Sequence[tuple[Any, str, Any, Any]]) -> list[Any]:
        return inspector.analyze_batch(
            [r[0] for r in rs],
            [r[1] for r in rs],
            [r[2] for r in rs],
            [r[3] for r in rs],
            batch_size=len(rs),
            progress=False,
        )

    lines: dict[str, dict[str, Any]] = {}
    try:
        results = run(reqs)
    except Exception as exc:  # e.g. out of memory, or one image the processor rejects
        if len(ready) == 1 and not had_success:
            raise
        log.warning("batch failed (%s); retrying its %d items one by one", exc, len(ready))
        failures = []
        for (item, prep), req in zip(ready, reqs, strict=True):
            try:
                res = run([req])[0]
            except Exception as one:
                failures.append(one)
                lines[item.id] = task.skipped(item, "model_error", f"generation failed: {one}")
                continue
            lines[item.id] = task.finish(item, prep, res)
            had_success = True
        if len(failures) == len(ready) and not had_success:
            raise failures[0] from exc
        return lines, had_success
    for (item, prep), res in zip(ready, results, strict=True):
        lines[item.id] = task.finish(item, prep, res)
    return lines, True


def _batches(
    todo: list[Item], task: Task, batch_size: int
) -> Iterator[tuple[list[Item], dict[str, dict[str, Any]], list[tuple[Item, Any]]]]:
    """Groups of consecutive items holding up to ``batch_size`` items for the model."""
    group: list[Item] = []
    skipped: dict[str, dict[str, Any]] = {}
    ready: list[tuple[Item, Any]] = []
    for item in todo:
        group.append(item)
        if item.skip is not None:
            skipped[item.id] = task.skipped(item, *item.skip)
        else:
            try:
                ready.append((item, task.prepare(item)))
            except SkipItem as s:
                skipped[item.id] = task.skipped(item, s.kind, s.reason)
        if len(ready) >= batch_size:
            yield group, skipped, ready
            group, skipped, ready = [], {}, []
    if group:
        yield group, skipped, ready


def _interrupted(
    path: Path, mine: list[Item], shard: tuple[int, int], validate: Validator, overwrite: bool
) -> EvalInterrupted:
    """What Ctrl-C left: the shard's items that have a line on disk."""
    ids = {d["id"] for d in read_jsonl(path, validate)[0]}
    return EvalInterrupted(path, sum(1 for it in mine if it.id in ids), len(mine), shard, overwrite)


@dataclass(frozen=True)
class _Shard:
    """What one :func:`execute` call works on (its arguments, resolved)."""

    kind: str
    task: Task
    report: ReportBuilder
    mine: list[Item]
    out: Path
    shard: tuple[int, int]
    selection: str
    model_factory: Callable[[], Any]
    fingerprint: dict[str, Any]
    config: dict[str, Any]
    report_options: dict[str, Any]
    batch_size: int
    progress: bool
    overwrite: bool
    unit: str
    verbose: bool


def execute(
    *,
    kind: str,
    task: Task,
    report: ReportBuilder,
    items: list[Item],
    out_dir: str | os.PathLike[str],
    model_factory: Callable[[], Any],
    fingerprint: dict[str, Any],
    config: dict[str, Any],
    report_options: dict[str, Any],
    shard_index: int | None,
    num_shards: int | None,
    batch_size: int,
    progress: bool,
    overwrite: bool,
    unit: str,
    verbose: bool,
) -> EvalResult:
    """Run this process's shard of ``items``, resuming from its JSONL; report when complete.

    ``kind`` names the run (``run.json``, the result-line check); ``report`` is the
    runner's report function (:data:`~omniad_train.evaluation.runfiles.ReportBuilder`),
    called by the process that finishes the last shard.

    Order of work: the shard's log is locked first (a second process is refused before
    it touches anything); the folder's settings are checked and the log is read (no
    writes); the model is loaded when the first batch needs it; only then are the
    folder's files changed (``--overwrite`` clears them, ``run.json`` is written, the
    log is repaired).  A model that fails to load leaves the folder as it was.  Ctrl-C
    raises :class:`EvalInterrupted` (a ``KeyboardInterrupt``) saying what is saved.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    out = Path(out_dir)
    shard = resolve_shard(shard_index, num_shards)
    i, n = shard
    mine = shard_slice(items, i, n)
    run = _Shard(
        kind=kind,
        task=task,
        report=report,
        mine=mine,
        out=out,
        shard=shard,
        selection=selection_sha256(it.id for it in items),
        model_factory=model_factory,
        fingerprint=fingerprint,
        config=config,
        report_options=report_options,
        batch_size=batch_size,
        progress=progress,
        overwrite=overwrite,
        unit=unit,
        verbose=verbose,
    )
    path = results_path(out, i, n)
    validate = line_validator(kind)
    runlog = RunLog(path, validate=validate)
    try:
        with contextlib.ExitStack() as stack:
            runlog.acquire()  # before anything in the folder is read, deleted or written
            stack.callback(runlog.close)
            old = check_run(out, kind, fingerprint, n, overwrite)
            merged_guard = hold_merged(out, shard, overwrite)
            if merged_guard is not None:
                stack.callback(merged_guard.close)
            return _run_shard(run, runlog, old, merged_guard)
    except EvalInterrupted:
        raise
    except KeyboardInterrupt:
        raise _interrupted(path, mine, shard, validate, overwrite) from None


def _run_shard(
    run: _Shard, runlog: RunLog, old: dict[str, Any] | None, merged_guard: RunLog | None
) -> EvalResult:
    i, n = run.shard
    out, mine, kind = run.out, run.mine, run.kind
    path = runlog.path
    if run.overwrite:
        finished: set[str] = set()
    else:
        lines_on_disk, repair = read_jsonl(path, runlog.validate)
        if not repair.clean:
            warn_repair(path, repair, "dropped; those items are redone")
        # bad inputs are re-checked: a fixed file is picked up, a bad one skipped again
        finished = {d["id"] for d in lines_on_disk if d.get("status") != "skipped"}
    todo = [it for it in mine if it.id not in finished]
    n_done = len(mine) - len(todo)
    log.info(
        "%s shard %d/%d: %d items, %d already done, %d to do",
        kind,
        i,
        n,
        len(mine),
        n_done,
        len(todo),
    )

    def commit() -> None:
        """The first write to the folder: after the model loaded (or was not needed)."""
        if run.overwrite:
            current = old
            clear_shard(out, run.shard)
            if merged_guard is not None:
                merged_guard.close()
        else:
            current = check_run(out, kind, run.fingerprint, n, run.overwrite)
        write_run(
            out,
            current,
            kind=kind,
            fingerprint=run.fingerprint,
            config=run.config,
            report_options=run.report_options,
            num_shards=n,
            overwrite=run.overwrite,
            selection=run.selection,
        )
        runlog.open()
        runlog.discard(it.id for it in todo)
        if todo:
            done_path(out, i).unlink(missing_ok=True)

    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    n_new = 0
    bar = tqdm(
        total=len(mine),
        initial=n_done,
        desc=kind if n == 1 else f"{kind} {i}/{n}",
        unit=run.unit,
        disable=not run.progress,
        dynamic_ncols=True,
        smoothing=0.1,
    )
    inspector = None
    had_success = False
    n_skipped = 0
    committed = False
    try:
        for group, lines, ready in _batches(todo, run.task, run.batch_size):
            if ready and inspector is None:
                inspector = run.model_factory()
            if not committed:
                commit()
                committed = True
            if ready:
                answered, had_success = _generate(inspector, run.task, ready, had_success)
                lines.update(answered)
            n_skipped += sum(1 for v in lines.values() if v.get("status") == "skipped")
            runlog.append(lines[it.id] for it in group)
            n_new += len(group)
            bar.update(len(group))
            if n_skipped:
                bar.set_postfix(skipped=n_skipped, refresh=False)
        if not committed:  # nothing to do: refresh run.json, repair the log
            commit()
    finally:
        bar.close()
    n_lines = sum(1 for it in mine if it.id in runlog.done)
    if n_new:  # resumed items and re-checked inputs were appended: restore item order
        runlog.sort(key=lambda d: (d.get("index", math.inf), d["id"]))
    runlog.close()
    elapsed = time.perf_counter() - t0
    if n_lines == len(mine):
        write_json(
            done_path(out, i),
            {
                "shard_index": i,
                "num_shards": n,
                "n_items": len(mine),
                "selection_sha256": run.selection,
                "finished": now(),
                "elapsed_seconds": round(elapsed, 3),
                "n_new": n_new,
            },
        )
    result = EvalResult(out, path, run.shard, len(mine), n_new, complete=False)
    missing, _ = shard_status(out)
    if missing:
        log.info("waiting for shard(s) %s; then run the merge step to build the report", missing)
        return result
    report = rebuild_report(out, {kind: run.report})
    result.complete, result.report = True, report
    if run.verbose:
        print(report["markdown_summary"])
        print(f"report: {out / 'report.md'}")
    return result
