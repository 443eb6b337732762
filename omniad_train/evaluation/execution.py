"""The resumable, sharded, batched loop that writes a rank's JSONL.

- :class:`Item`: one unit of work (a question to ask, or a bad input to list as skipped).
- :func:`select`: filter, cap and number the items of a run.
- :class:`Task`: what a runner plugs in (load an item, ask, write its line).
- :func:`execute`: run this process's shard, resuming from its JSONL, and, once every
  shard has finished, rebuild the report with the runner's report function.

In process the items are answered a batch at a time; for a served model
(``concurrency`` given) up to that many requests are in flight at once and each answer
is written as it arrives (:mod:`omniad_train.evaluation.answering`).  A request that
fails after its last retry is a ``failed`` line: the run goes on, the report counts it,
and a resumed run retries only those.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from omniad_train.data.records import Record
from omniad_train.evaluation.answering import (
    InFlight,
    SkipItem,
    answer_batch,
    base_line,
    completion_tokens,
    failed_line,
    prepare_groups,
    served_fields,
)
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
from omniad_train.evaluation.schema import is_finished, line_validator

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
    n_failed : int
        Items of this shard whose request failed after its last retry (a ``failed``
        line; re-running the same command retries only those).
    """

    out_dir: Path
    results: Path
    shard: tuple[int, int]
    n_items: int
    n_new: int
    complete: bool
    report: dict[str, Any] | None = field(default=None, repr=False)
    n_failed: int = 0

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
    concurrency: int | None = None
    give_up_after: int = 16


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
    concurrency: int | None = None,
    give_up_after: int | None = None,
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

    ``concurrency`` (a served model): that many requests in flight, each answer written
    as it arrives; after ``give_up_after`` requests in a row could not reach the server
    (default ``2 * concurrency``, at least 8) the rest are failed lines at once.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if concurrency is not None and (not isinstance(concurrency, int) or concurrency < 1):
        raise ValueError(f"concurrency must be an integer >= 1, got {concurrency!r}")
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
        concurrency=concurrency,
        give_up_after=give_up_after or max(8, 2 * (concurrency or 1)),
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
        # failed requests are retried
        finished = {d["id"] for d in lines_on_disk if is_finished(d)}
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
    bar = tqdm(
        total=len(mine),
        initial=n_done,
        desc=kind if n == 1 else f"{kind} {i}/{n}",
        unit=run.unit,
        disable=not run.progress,
        dynamic_ncols=True,
        smoothing=0.1,
    )
    progress = _Progress(bar, t0)
    state = {"committed": False}

    def start() -> None:
        if not state["committed"]:
            commit()
            state["committed"] = True

    try:
        if run.concurrency is None:
            n_new = _answer_in_process(run, todo, runlog, progress, start)
        else:
            n_new = _answer_served(run, todo, runlog, progress, start)
        start()  # nothing to do: refresh run.json, repair the log
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
    n_failed = sum(1 for it in mine if runlog.done.get(it.id, {}).get("status") == "failed")
    if n_failed:
        log.warning(
            "%d request(s) failed after their last retry (status 'failed' in %s); re-run the "
            "same command to retry only them",
            n_failed,
            path,
        )
    result = EvalResult(out, path, run.shard, len(mine), n_new, complete=False, n_failed=n_failed)
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


# --------------------------------------------------------------------------- answering
class _Progress:
    """The bar's counts: requests/s and generated tokens/s since the start, skipped, failed."""

    def __init__(self, bar: Any, t0: float) -> None:
        self.bar, self.t0 = bar, t0
        self.answered = self.tokens = self.skipped = self.failed = 0

    def update(self, lines: Iterable[dict[str, Any]], tokens: int) -> None:
        n = 0
        for line in lines:
            n += 1
            status = line.get("status")
            self.skipped += status == "skipped"
            self.failed += status == "failed"
            self.answered += status == "ok"
        self.tokens += tokens
        self.bar.update(n)
        dt = max(time.perf_counter() - self.t0, 1e-9)
        post: dict[str, Any] = {}
        if self.answered:
            post["req/s"] = f"{self.answered / dt:.2f}"
            if self.tokens:
                post["tok/s"] = f"{self.tokens / dt:.1f}"
        if self.skipped:
            post["skipped"] = self.skipped
        if self.failed:
            post["failed"] = self.failed
        if post:
            self.bar.set_postfix(post, refresh=False)


def _answer_in_process(
    run: _Shard, todo: list[Item], runlog: RunLog, progress: _Progress, start: Callable[[], None]
) -> int:
    """Batched ``generate`` calls; one append per group. Returns the lines written."""
    inspector = None
    had_success = False
    n_new = 0
    for group, lines, ready in prepare_groups(todo, run.task, run.batch_size):
        if ready and inspector is None:
            inspector = run.model_factory()
        start()
        tokens = 0
        if ready:
            answered, had_success, tokens = answer_batch(inspector, run.task, ready, had_success)
            lines.update(answered)
        runlog.append(lines[it.id] for it in group)
        n_new += len(group)
        progress.update((lines[it.id] for it in group), tokens)
    return n_new


def _answer_served(
    run: _Shard, todo: list[Item], runlog: RunLog, progress: _Progress, start: Callable[[], None]
) -> int:
    """Up to ``run.concurrency`` requests in flight; each answer is written as it arrives."""
    concurrency = int(run.concurrency or 1)
    pool: InFlight | None = None
    n_new = 0

    def write(lines: list[dict[str, Any]], tokens: int = 0) -> None:
        nonlocal n_new
        if lines:
            runlog.append(lines)
            n_new += len(lines)
            progress.update(lines, tokens)

    def handle(answers: list[tuple[Item, Any, Any, BaseException | None]]) -> None:
        lines, tokens = [], 0
        for item, prep, analysis, exc in answers:
            if exc is not None:
                lines.append(run.task.skipped(item, "model_error", f"generation failed: {exc}"))
            elif analysis is None:  # not sent: the server is gone
                lines.append(failed_line(item, (pool and pool.gave_up) or "not sent"))
            elif getattr(analysis, "error", None) is not None:
                lines.append(failed_line(item, str(analysis.error), analysis))
            else:
                lines.append({**run.task.finish(item, prep, analysis), **served_fields(analysis)})
                tokens += completion_tokens(analysis)
        write(lines, tokens)

    try:
        for _group, skipped, ready in prepare_groups(todo, run.task, concurrency):
            if ready and pool is None:
                pool = InFlight(run.model_factory(), run.task, concurrency, run.give_up_after)
            start()
            write(list(skipped.values()))
            for item, prep in ready:
                pool.submit(item, prep)  # type: ignore[union-attr]
            while pool is not None and pool.pending > 2 * concurrency:
                handle(pool.poll(wait=True))
            if pool is not None:
                handle(pool.poll(wait=False))
                if pool.gave_up:
                    break
        while pool is not None and pool.pending:
            handle(pool.poll(wait=True))
    finally:
        if pool is not None:
            pool.close()
    if pool is not None and pool.gave_up:  # the rest fail at once; a re-run retries them
        log.warning("%s; the remaining items are marked failed", pool.gave_up)
        write([failed_line(it, pool.gave_up) for it in todo if it.id not in runlog.done])
    return n_new
