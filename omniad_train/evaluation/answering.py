"""Asking the model: batched generation in process, or many requests in flight to a server.

- :func:`prepare_groups`: groups of consecutive items, each item loaded by its task (a
  bad input becomes a skipped line at once).
- :func:`answer_batch`: one batched ``analyze_batch`` call (in process); a failing batch
  is retried item by item and the failures become ``model_error`` skipped lines.
- :class:`InFlight`: a served model; up to ``concurrency`` requests at once, one item
  each, answered in any order, so the server's batch stays full across the runner's
  groups (no drain at the end of each group) and every answer is written as it comes.
- :func:`failed_line`: the line of a request that failed after its last retry
  (``status: "failed"``; a resumed run retries it).

A request is *unreachable* when it failed without an HTTP status (connection refused,
reset or timed out); after ``give_up_after`` of them in a row the server is taken to
be gone and :class:`InFlight` stops sending: every item not answered yet gets a failed
line ("not sent") at once instead of waiting out each one's retries.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from omniad_core.backends import SEG_STRIPPED

__all__ = [
    "InFlight",
    "SkipItem",
    "answer_batch",
    "base_line",
    "completion_tokens",
    "failed_line",
    "prepare_groups",
    "served_fields",
    "unreachable",
]

log = logging.getLogger("omniad.evaluation")


class SkipItem(Exception):
    """Raised by a task for an input it cannot use; the item is listed as skipped."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


def base_line(item: Any, status: str) -> dict[str, Any]:
    """The fields every result line starts with."""
    return {
        "id": item.id,
        "index": item.index,
        "status": status,
        "dataset": item.dataset,
        "category": item.category,
    }


def failed_line(item: Any, reason: str, analysis: Any = None) -> dict[str, Any]:
    """The line of a request that failed after its last retry (redone on resume)."""
    line = {**base_line(item, "failed"), "image": item.extra.get("image"), "reason": reason}
    raw = getattr(analysis, "raw", None) or {}
    if isinstance(raw.get("attempts"), int):
        line["attempts"] = raw["attempts"]
    if "status" in raw:
        line["http_status"] = raw["status"]
    return line


def unreachable(analysis: Any) -> bool:
    """A failed request that got no HTTP answer at all (the server is down or gone)."""
    raw = getattr(analysis, "raw", None) or {}
    return getattr(analysis, "error", None) is not None and raw.get("status", 0) is None


def completion_tokens(analysis: Any) -> int:
    """Generated tokens of an answer (0 when the backend did not say)."""
    n = getattr(analysis, "completion_tokens", None)
    return n if isinstance(n, int) else 0


def served_fields(analysis: Any) -> dict[str, Any]:
    """What a served model's reply adds to a result line.

    ``served``: finish reason, token counts and attempts; where the server split the
    reply (its ``reasoning_content`` was not empty) also the two fields as they came,
    from which ``response`` was rebuilt.  ``seg_stripped``: the server dropped the
    ``<seg>`` block (the mask is lost; ``seg_problem`` says which server setting does it).
    """
    raw = getattr(analysis, "raw", None) or {}
    usage = raw.get("usage") if isinstance(raw.get("usage"), dict) else {}
    served: dict[str, Any] = {
        "finish_reason": raw.get("finish_reason"),
        "prompt_tokens": getattr(analysis, "prompt_tokens", None) or usage.get("prompt_tokens"),
        "completion_tokens": getattr(analysis, "completion_tokens", None)
        or usage.get("completion_tokens"),
        "attempts": raw.get("attempts"),
    }
    if raw.get("reasoning_content"):
        served["content"] = raw.get("content")
        served["reasoning_content"] = raw.get("reasoning_content")
    out: dict[str, Any] = {"served": served}
    stripped = bool(getattr(analysis, "seg_stripped", False))
    out["seg_stripped"] = stripped
    if stripped:
        out["seg_problem"] = SEG_STRIPPED
    return out


# --------------------------------------------------------------------------- preparing
def prepare_groups(
    todo: list[Any], task: Any, size: int
) -> Iterator[tuple[list[Any], dict[str, dict[str, Any]], list[tuple[Any, Any]]]]:
    """Groups of consecutive items holding up to ``size`` items for the model:
    ``(items, skipped lines by id, [(item, prepared)])``."""
    group: list[Any] = []
    skipped: dict[str, dict[str, Any]] = {}
    ready: list[tuple[Any, Any]] = []
    for item in todo:
        group.append(item)
        if item.skip is not None:
            skipped[item.id] = task.skipped(item, *item.skip)
        else:
            try:
                ready.append((item, task.prepare(item)))
            except SkipItem as s:
                skipped[item.id] = task.skipped(item, s.kind, s.reason)
        if len(ready) >= size:
            yield group, skipped, ready
            group, skipped, ready = [], {}, []
    if group:
        yield group, skipped, ready


def _ask(inspector: Any, reqs: Sequence[tuple[Any, str, Any, Any]]) -> list[Any]:
    return inspector.analyze_batch(
        [r[0] for r in reqs],
        [r[1] for r in reqs],
        [r[2] for r in reqs],
        [r[3] for r in reqs],
        batch_size=len(reqs),
        progress=False,
    )


def _line(task: Any, item: Any, prep: Any, analysis: Any) -> dict[str, Any]:
    if getattr(analysis, "error", None) is not None:
        return failed_line(item, str(analysis.error), analysis)
    return task.finish(item, prep, analysis)


def answer_batch(
    inspector: Any, task: Any, ready: list[tuple[Any, Any]], had_success: bool
) -> tuple[dict[str, dict[str, Any]], bool, int]:
    """Answer a batch in one call: ``(lines by id, had_success, generated tokens)``.

    On a generation error the batch is retried one by one and the items that still fail
    are skipped (``model_error``); a first item failing alone raises (nothing works).
    """
    reqs = [task.request(p) for _, p in ready]
    lines: dict[str, dict[str, Any]] = {}
    tokens = 0
    try:
        results = _ask(inspector, reqs)
    except Exception as exc:  # e.g. out of memory, or one image the processor rejects
        if len(ready) == 1 and not had_success:
            raise
        log.warning("batch failed (%s); retrying its %d items one by one", exc, len(ready))
        failures = []
        for (item, prep), req in zip(ready, reqs, strict=True):
            try:
                res = _ask(inspector, [req])[0]
            except Exception as one:
                failures.append(one)
                lines[item.id] = task.skipped(item, "model_error", f"generation failed: {one}")
                continue
            lines[item.id] = _line(task, item, prep, res)
            tokens += completion_tokens(res)
            had_success = True
        if len(failures) == len(ready) and not had_success:
            raise failures[0] from exc
        return lines, had_success, tokens
    for (item, prep), res in zip(ready, results, strict=True):
        lines[item.id] = _line(task, item, prep, res)
        tokens += completion_tokens(res)
    return lines, True, tokens


# --------------------------------------------------------------------------- in flight
class InFlight:
    """Requests to a served model, at most ``concurrency`` at once, one item each.

    :meth:`submit` queues an item; :meth:`poll` returns the answered ones as
    ``(item, prepared, analysis, error)`` (``error`` is an exception raised by our own
    code for that item, e.g. an image the request builder rejects; a failed *request*
    is an analysis with ``error`` set).  Workers are daemon threads: Ctrl-C leaves them
    behind without waiting for their requests.
    """

    def __init__(self, inspector: Any, task: Any, concurrency: int, give_up_after: int) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        self.inspector, self.task = inspector, task
        self.concurrency = concurrency
        self.give_up_after = max(1, int(give_up_after))
        self._jobs: queue.Queue[tuple[Any, Any] | None] = queue.Queue()
        self._done: queue.Queue[tuple[Any, Any, Any, BaseException | None]] = queue.Queue()
        self._stopped = threading.Event()
        self.pending = 0
        self.down = 0  # unreachable requests in a row
        self.gave_up: str | None = None
        self._threads = [
            threading.Thread(target=self._work, name=f"omniad-request-{k}", daemon=True)
            for k in range(concurrency)
        ]
        for t in self._threads:
            t.start()

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            item, prep = job
            if self._stopped.is_set():
                self._done.put((item, prep, None, None))
                continue
            try:
                analysis = _ask(self.inspector, [self.task.request(prep)])[0]
            except Exception as exc:
                self._done.put((item, prep, None, exc))
            else:
                self._done.put((item, prep, analysis, None))

    def submit(self, item: Any, prep: Any) -> None:
        """Queue one item (it is sent when a request slot is free)."""
        self._jobs.put((item, prep))
        self.pending += 1

    def poll(self, wait: bool) -> list[tuple[Any, Any, Any, BaseException | None]]:
        """The answers that have arrived (waiting for at least one when ``wait``)."""
        out = []
        while self.pending:
            try:
                got = self._done.get(timeout=0.2) if wait and not out else self._done.get_nowait()
            except queue.Empty:
                if wait and not out:
                    continue  # wake up regularly so Ctrl-C is seen at once
                break
            self.pending -= 1
            _, _, analysis, _ = got
            if analysis is not None and unreachable(analysis):
                self.down += 1
                if self.down >= self.give_up_after and self.gave_up is None:
                    self.gave_up = (
                        f"not sent: {self.down} requests in a row could not reach the server "
                        f"({analysis.error})"
                    )
                    self._stopped.set()
            elif analysis is not None:
                self.down = 0
            out.append(got)
        return out

    def close(self) -> None:
        """Stop the workers once their queue is empty (never waits for a request)."""
        self._stopped.set()
        for _ in self._threads:
            self._jobs.put(None)
