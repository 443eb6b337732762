"""What a result line must hold to count as done when a run resumes.

Each runner writes one JSON object per item (see ``docs/evaluation.md``, "Output
folder").  On resume, and when a report is built, every line is checked against the
fields its runner writes, their types and the status values; a line that fails (e.g.
one holding only ``{"id": ...}``, or an unknown ``status``) is not a finished item: it
is dropped, its item is redone, and the file and line are named in a warning.  A
``failed`` line (a request that failed after its last retry) is a valid line but not a
finished item: a resumed run redoes it.  A report checks only the fields it reads (``full=False``), so hand-made result files
with just those fields can be reported on.

>>> check_line("mmad", {"id": "q1"})
"no 'index' (expected an integer)"
>>> check_line("mmad", {"id": "q1", "index": 0, "status": "maybe", "dataset": "D",
...                     "category": "c"})
"'status' is 'maybe'; expected 'ok', 'skipped' or 'failed'"
>>> check_line("mmad", {"id": "q1", "index": 0, "status": "failed", "dataset": "D",
...                     "category": "c", "reason": "HTTP 503 (after 5 attempts)"})
>>> is_finished({"status": "failed"}), is_finished({"status": "ok"})
(False, True)
>>> check_line("detection", {"id": "d", "index": 0, "status": "skipped", "dataset": "D",
...                          "category": "c", "skip_kind": "image", "reason": "unreadable"})
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from omniad_train.evaluation.runlog import Validator

__all__ = ["KINDS", "REDONE_ON_RESUME", "STATUSES", "check_line", "is_finished", "line_validator"]

#: The status values a runner writes: an answered item, an input it could not use, a
#: request that failed after its last retry (a served model that was down or overloaded).
STATUSES = ("ok", "skipped", "failed")

#: Lines of these statuses are valid but not finished: a resumed run redoes their items
#: (a skipped input is re-checked, a failed request retried).
REDONE_ON_RESUME = ("skipped", "failed")

Check = tuple[Callable[[Any], bool], str]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_count(v: Any) -> bool:
    return _is_int(v) and v >= 0


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0


def _is_str(v: Any) -> bool:
    return isinstance(v, str)


def _is_bool(v: Any) -> bool:
    return isinstance(v, bool)


def _opt(check: Check) -> Check:
    fn, what = check
    return (lambda v: v is None or fn(v)), f"{what} or null"


def _is_options(v: Any) -> bool:
    return isinstance(v, dict) and all(
        isinstance(k, str) and isinstance(t, str) for k, t in v.items()
    )


def _is_pixel(v: Any) -> bool:
    return isinstance(v, list) and len(v) == 4 and all(_is_count(x) for x in v)


INT: Check = (_is_int, "an integer")
COUNT: Check = (_is_count, "an integer >= 0")
POSITIVE: Check = (lambda v: _is_int(v) and v >= 1, "an integer >= 1")
NUMBER: Check = (_is_number, "a finite number >= 0")
STR: Check = (_is_str, "a string")
BOOL: Check = (_is_bool, "true or false")

_BASE: dict[str, Check] = {
    "index": INT,
    "status": STR,
    "dataset": STR,
    "category": STR,
}
_SKIPPED: dict[str, Check] = {"skip_kind": STR, "reason": STR}
_FAILED: dict[str, Check] = {"reason": STR}
_OK: dict[str, dict[str, Check]] = {
    "mmad": {
        "image": STR,
        "type": STR,
        "normal": BOOL,
        "question": STR,
        "options": (_is_options, "an object of option letter -> text"),
        "gold": STR,
        "predicted": _opt(STR),
        "correct": _opt(BOOL),
        "response": STR,
        "seg": STR,
        "format_ok": BOOL,
        "reference": _opt(STR),
        "seconds": NUMBER,
    },
    "detection": {
        "image": STR,
        "defect": STR,
        "gt_anomalous": BOOL,
        "height": POSITIVE,
        "width": POSITIVE,
        "predicted": _opt(STR),
        "answer_anomalous": _opt(BOOL),
        "seg_anomalous": BOOL,
        "pixel": (_is_pixel, "[tp, fp, fn, tn] (4 integers >= 0)"),
        "seg": STR,
        "response": STR,
        "format_ok": BOOL,
        "reference": _opt(STR),
        "mask_file": _opt(STR),
        "seconds": NUMBER,
    },
}

#: The fields a report reads from an answered line.
_REPORT: dict[str, tuple[str, ...]] = {
    "mmad": ("type", "normal", "gold", "predicted"),
    "detection": ("gt_anomalous", "seg_anomalous", "answer_anomalous", "pixel"),
}

#: The run kinds whose lines can be checked.
KINDS = tuple(_OK)


def _fields(line: Mapping[str, Any], checks: Mapping[str, Check]) -> str | None:
    for name, (fn, what) in checks.items():
        if name not in line:
            return f"no {name!r} (expected {what})"
        if not fn(line[name]):
            return f"{name!r} is {line[name]!r}; expected {what}"
    return None


def check_line(kind: str, line: Mapping[str, Any], *, full: bool = True) -> str | None:
    """None when ``line`` is a usable result line of a ``kind`` run, else what is wrong.

    Checks the fields the runner writes for the line's status and their types (only
    those a report reads when ``full`` is False); extra fields are allowed.
    ``line["id"]`` is checked by the log itself.
    """
    if kind not in _OK:
        raise ValueError(f"unknown run kind {kind!r}; expected one of {KINDS}")
    base = _BASE if full else {k: v for k, v in _BASE.items() if k != "index"}
    problem = _fields(line, base)
    if problem is not None:
        return problem
    status = line["status"]
    if status not in STATUSES:
        return f"'status' is {status!r}; expected 'ok', 'skipped' or 'failed'"
    if status == "skipped":
        return _fields(line, _SKIPPED) if full else None
    if status == "failed":
        return _fields(line, _FAILED) if full else None
    checks = _OK[kind] if full else {k: _OK[kind][k] for k in _REPORT[kind]}
    problem = _fields(line, checks)
    if problem is not None or kind != "detection" or not full:
        return problem
    h, w = line["height"], line["width"]
    if sum(line["pixel"]) != h * w:
        return f"'pixel' counts sum to {sum(line['pixel'])}, not height x width = {h * w}"
    return None


def is_finished(line: Mapping[str, Any]) -> bool:
    """Whether a (valid) line's item is done: not skipped, not a failed request."""
    return line.get("status") not in REDONE_ON_RESUME


def line_validator(kind: str, *, full: bool = True) -> Validator:
    """``check_line`` bound to ``kind``, for :class:`~omniad_train.evaluation.RunLog`."""
    if kind not in _OK:
        raise ValueError(f"unknown run kind {kind!r}; expected one of {KINDS}")

    def validate(line: Mapping[str, Any]) -> str | None:
        return check_line(kind, line, full=full)

    return validate
