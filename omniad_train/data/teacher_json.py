"""The teacher's reply: the first JSON object in model text, its schema, and its checks.

A teacher model answers in free text that should hold one JSON object.
:func:`find_json_object` finds the first complete object in linear time (a bounded
brace scanner that respects JSON strings, no backtracking regular expression, the text
size-limited); :func:`check_reply` validates it with pydantic (:class:`TeacherReply`)
and against what is known about the image: the question types asked for, and the mask's
region (:func:`region_problem`).  Every problem is a short sentence the teacher is shown
when it is asked again.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from omniad_core.metrics import normalize_question_type
from omniad_core.tags import has_tag
from omniad_train.data.records import MaskInfo, describe_value, safe_text
from textmask.regions import REGIONS

__all__ = [
    "MAX_CANDIDATES",
    "MAX_DEPTH",
    "MAX_REPLY_CHARS",
    "TEACHER_TYPES",
    "JsonScan",
    "TeacherQuestion",
    "TeacherReply",
    "allowed_regions",
    "check_reply",
    "find_json_object",
    "region_mentions",
    "region_problem",
]

#: The MMAD types a teacher writes (the template path writes the other five).
TEACHER_TYPES = ("Defect Analysis", "Object Analysis")
#: Only this many characters of a reply are scanned (a longer reply is cut, and says so).
MAX_REPLY_CHARS = 32_000
#: Deeper nesting of ``{}``/``[]`` ends a candidate (no recursion deep inside ``json``).
MAX_DEPTH = 32
#: At most this many ``{`` are tried as the start of an object: the scan stays linear.
MAX_CANDIDATES = 16

QUESTION_CHARS = (10, 400)
OPTION_CHARS = 200
REASONING_CHARS = (20, 2000)
LETTERS = "ABCDE"


# --------------------------------------------------------------------------- scanner
@dataclass(frozen=True)
class JsonScan:
    """What :func:`find_json_object` found.

    ``value`` is the object (None when there is none, then ``problem`` says why);
    ``span`` its ``(start, end)`` in the text; ``steps`` the characters examined (at
    most ``(MAX_CANDIDATES + 1) * min(len(text), MAX_REPLY_CHARS)``).
    """

    value: dict[str, Any] | None
    problem: str | None
    span: tuple[int, int] | None
    steps: int


def _balanced_end(s: str, start: int, max_depth: int) -> tuple[int | None, int]:
    """End (exclusive) of the balanced ``{...}`` from ``start``, and the steps taken.

    Strings are skipped with their escapes, so braces in them do not count.  None when
    the text ends first, a bracket does not match, or the nesting is deeper than
    ``max_depth``.
    """
    stack: list[str] = []
    in_string = escaped = False
    i, n = start, len(s)
    while i < n:
        c = s[i]
        i += 1
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
            continue
        if c == '"':
            in_string = True
        elif c in "{[":
            stack.append("}" if c == "{" else "]")
            if len(stack) > max_depth:
                return None, i - start
        elif c in "}]":
            if not stack or stack.pop() != c:
                return None, i - start
            if not stack:
                return i, i - start
    return None, i - start


def find_json_object(
    text: Any,
    *,
    max_chars: int = MAX_REPLY_CHARS,
    max_depth: int = MAX_DEPTH,
    max_candidates: int = MAX_CANDIDATES,
) -> JsonScan:
    """The first complete JSON object in ``text`` (model output around it is ignored).

    Each ``{`` (at most ``max_candidates`` of them, in order) is tried as a start: the
    scanner finds its balanced end (respecting strings and escapes, at most
    ``max_depth`` deep) and ``json.loads`` reads that span.  The first span that is a
    JSON object wins.  Only the first ``max_chars`` characters are read.  Never raises.

    >>> find_json_object('Sure! {"a": "}", "b": [1, {"c": 2}]} done').value
    {'a': '}', 'b': [1, {'c': 2}]}
    >>> find_json_object("no object here").problem
    'the reply holds no JSON object (no "{"); answer with one JSON object'
    """
    if not isinstance(text, str):
        return JsonScan(None, f"the reply is not text (got {describe_value(text)})", None, 0)
    cut = len(text) > max_chars
    s = text[:max_chars] if cut else text
    note = f" (only its first {max_chars:,} characters were read)" if cut else ""
    steps = 0
    pos = 0
    first_problem = None
    for _ in range(max_candidates):
        start = s.find("{", pos)
        steps += (len(s) if start < 0 else start) - pos
        if start < 0:
            break
        end, used = _balanced_end(s, start, max_depth)
        steps += used
        if end is None:
            first_problem = first_problem or (
                "the JSON object is not complete (a brace or bracket is not closed, or it "
                f"nests deeper than {max_depth}){note}"
            )
        else:
            try:
                value = json.loads(s[start:end])
            except (ValueError, RecursionError) as exc:
                first_problem = first_problem or f"the JSON object is not valid JSON ({exc})"
            else:
                if isinstance(value, dict):
                    return JsonScan(value, None, (start, end), steps)
        pos = start + 1
    if first_problem is None:
        first_problem = 'the reply holds no JSON object (no "{"); answer with one JSON object'
    if note and not first_problem.endswith(note):
        first_problem += note
    return JsonScan(None, first_problem, None, steps)


# --------------------------------------------------------------------------- schema
def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def _plain(text: str, what: str) -> str:
    """``text`` stripped; a text holding tags or a lone surrogate (a JSON ``\\udcxx``
    escape, not writable as UTF-8) is refused."""
    if safe_text(text) is not text:
        raise ValueError(f"{what} holds a character that is not valid UTF-8 (a lone surrogate)")
    if has_tag(text):
        raise ValueError(f"{what} must not contain <seg>/<think>/<answer> tags (plain text only)")
    return text.strip()


def _bounded(text: str, what: str, bounds: tuple[int, int]) -> str:
    """:func:`_plain` ``text`` of ``bounds[0]`` to ``bounds[1]`` characters."""
    text = _plain(text, what)
    lo, hi = bounds
    if not lo <= len(text) <= hi:
        raise ValueError(f"must have {lo} to {hi} characters, got {len(text)}")
    return text


class TeacherQuestion(BaseModel):
    """One multiple-choice question the teacher wrote, with its reasoning.

    ``options`` may come as a list (lettered A, B, ...) or as ``{"A": ..., ...}`` with
    the letters A, B, ... in order; 2 to 5 options, each non-empty, at most 200
    characters, no text twice (ignoring case and spacing); ``answer`` one of their
    letters; ``type`` Defect Analysis or Object Analysis (MMAD's raw names count);
    ``question`` 10 to 400 characters; ``reasoning`` 20 to 2,000, without response tags.
    """

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)

    type: str
    question: str
    options: dict[str, str]
    answer: str
    reasoning: str

    @field_validator("type", mode="after")
    @classmethod
    def _type(cls, v: str) -> str:
        try:
            t = normalize_question_type(v.strip())
        except (TypeError, ValueError):
            t = None
        if t not in TEACHER_TYPES:
            raise ValueError(f"must be one of {', '.join(TEACHER_TYPES)}, got {v[:60]!r}")
        return t

    @field_validator("question", mode="after")
    @classmethod
    def _question(cls, v: str) -> str:
        return _bounded(v, "the question", QUESTION_CHARS)

    @field_validator("options", mode="before")
    @classmethod
    def _options_in(cls, v: Any) -> Any:
        if isinstance(v, list):
            if len(v) > len(LETTERS):
                raise ValueError(f"must have 2 to 5 options, got {len(v)}")
            return {LETTERS[k]: x for k, x in enumerate(v)}
        if isinstance(v, dict):
            return {k.strip().upper() if isinstance(k, str) else k: x for k, x in v.items()}
        raise ValueError(
            f'must be a list of texts or {{"A": ..., "B": ...}}, got {describe_value(v)}'
        )

    @field_validator("options", mode="after")
    @classmethod
    def _options(cls, v: dict[str, str]) -> dict[str, str]:
        if not 2 <= len(v) <= len(LETTERS):
            raise ValueError(f"must have 2 to 5 options, got {len(v)}")
        if list(v) != list(LETTERS[: len(v)]):
            raise ValueError(
                f"letters must be {', '.join(LETTERS[: len(v)])} in order, got {', '.join(v)}"
            )
        seen: set[str] = set()
        out = {}
        for k, text in v.items():
            text = _plain(text, f"option {k}")
            if not text:
                raise ValueError(f"option {k} is empty")
            if len(text) > OPTION_CHARS:
                raise ValueError(f"option {k} has {len(text)} characters, at most {OPTION_CHARS}")
            if _norm(text) in seen:
                raise ValueError(f"option {k} repeats another option ({text[:40]!r})")
            seen.add(_norm(text))
            out[k] = text
        return out

    @field_validator("answer", mode="after")
    @classmethod
    def _answer(cls, v: str) -> str:
        v = v.strip().strip("().").strip().upper()
        if len(v) != 1 or v not in LETTERS:
            raise ValueError('must be one option letter, e.g. "B"')
        return v

    @field_validator("reasoning", mode="after")
    @classmethod
    def _reasoning(cls, v: str) -> str:
        return _bounded(v, "the reasoning", REASONING_CHARS)

    @model_validator(mode="after")
    def _answer_in_options(self) -> TeacherQuestion:
        if self.answer not in self.options:
            raise ValueError(
                f"answer {self.answer!r} is not one of the option letters {', '.join(self.options)}"
            )
        return self


class TeacherReply(BaseModel):
    """The teacher's JSON: ``{"questions": [TeacherQuestion, ...]}`` (1 or 2 questions)."""

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)

    questions: list[TeacherQuestion] = Field(min_length=1, max_length=len(TEACHER_TYPES))


def _pydantic_problems(exc: ValidationError, limit: int = 5) -> list[str]:
    out = []
    for err in exc.errors()[:limit]:
        loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.get("loc", ()))
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        out.append(f"{loc.lstrip('.') or 'the object'}: {msg}")
    return out


# --------------------------------------------------------------------------- regions
_VERTICAL = {"top": "top", "upper": "top", "bottom": "bottom", "lower": "bottom"}
_HORIZONTAL = {"left": "left", "right": "right"}
_CENTER = {"center", "centre", "middle", "central"}
_BEFORE = {"in", "at", "on", "near", "to", "toward", "towards", "of", "from", "around", "along"}
_SKIP = {"the", "its", "a", "an", "image", "s"}
_PLACE = {"side", "corner", "part", "area", "region", "half", "edge", "portion", "end", "third"}
_DEFECT = re.compile(
    r"defect|anomal|damage|flaw|crack|scratch|broken|contamina|hole|stain|dent|missing|"
    r"fault|bent|cut|tear|spot|mark"
)
_NEGATION = {"no", "not", "without", "free", "none", "never", "nothing", "neither", "nor"}
_TOKENS = re.compile(r"[a-z]+|[.!?;\n]")


def _region_at(tokens: list[str], i: int) -> tuple[str | None, int]:
    """The region phrase starting at ``tokens[i]`` (``left top`` names), and its length."""
    t = tokens[i]
    if t in _CENTER:
        return "center", 1
    nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
    if t in _VERTICAL:
        if nxt in _HORIZONTAL:
            return f"{_HORIZONTAL[nxt]} {_VERTICAL[t]}", 2
        return _VERTICAL[t], 1
    if t in _HORIZONTAL:
        if nxt in _VERTICAL:
            return f"{_HORIZONTAL[t]} {_VERTICAL[nxt]}", 2
        return _HORIZONTAL[t], 1
    return None, 0


def region_mentions(text: str) -> list[tuple[str, bool]]:
    """The region phrases of ``text`` used as places, each with whether its sentence
    claims a defect there (a defect word and no negation in the sentence).

    A place is a region phrase (``top left``, ``upper-right``, ``centre``, ... as the
    names of :data:`textmask.regions.REGIONS`) after a preposition (*in the left top*,
    *at the center*) or before a place noun (*the right side*); *the right answer* is
    not one.  Linear time (one tokenising pass).

    >>> region_mentions("The scratch is located in the top-left corner. The cap on the right is fine.")
    [('left top', True), ('right', False)]
    >>> region_mentions("So the right answer is A.")
    []
    """
    sentences: list[list[str]] = [[]]
    for m in _TOKENS.finditer(text.casefold()):
        tok = m.group(0)
        if tok in ".!?;\n":
            sentences.append([])
        else:
            sentences[-1].append(tok)
    out = []
    for toks in sentences:
        claims = any(_DEFECT.match(t) for t in toks) and not any(t in _NEGATION for t in toks)
        i = 0
        while i < len(toks):
            name, width = _region_at(toks, i)
            if name is None:
                i += 1
                continue
            j = i - 1
            while j >= 0 and toks[j] in _SKIP:
                j -= 1
            after = toks[i + width] if i + width < len(toks) else ""
            if (j >= 0 and toks[j] in _BEFORE) or after in _PLACE:
                out.append((name, claims))
            i += width
    return out


def allowed_regions(info: MaskInfo | None) -> set[str]:
    """The region names a reasoning may give for a defect: the region of the mask's
    centroid and its parts (``left`` and ``top`` of ``left top``); for a mask of 2 or
    more separate regions also every region its bounding box touches.

    >>> sorted(allowed_regions(MaskInfo(height=9, width=9, area=0.1, centroid=(0.1, 0.1),
    ...     region="left top", components=1)))
    ['left', 'left top', 'top']
    """
    if info is None or info.region is None:
        return set()
    regions = {info.region}
    if info.components >= 2 and info.bbox is not None:
        top, left, bottom, right = info.bbox
        rows = range(min(2, int(3 * top)), min(2, int(3 * max(top, bottom - 1e-9))) + 1)
        cols = range(min(2, int(3 * left)), min(2, int(3 * max(left, right - 1e-9))) + 1)
        regions |= {REGIONS[3 * r + c] for r in rows for c in cols}
    parts = {p for r in regions for p in r.split() if r != "center"}
    return regions | parts


def region_problem(reasoning: str, info: MaskInfo | None, anomalous: bool) -> str | None:
    """Why ``reasoning`` contradicts the mask, or None.

    A defect image: every place the reasoning names for a defect must be one of
    :func:`allowed_regions`.  A normal image: the reasoning must not place a defect
    anywhere.

    >>> info = MaskInfo(height=9, width=9, area=0.1, centroid=(0.9, 0.9), region="right bottom")
    >>> region_problem("A dent is visible in the left top.", info, True)
    "the reasoning places the defect in the left top, but the mask's region is the right bottom; describe the marked region"
    >>> region_problem("No defect in the center; the object is normal.", None, False) is None
    True
    """
    mentions = [name for name, claims in region_mentions(reasoning) if claims]
    if not anomalous:
        if mentions:
            return (
                f"the reasoning places a defect in the {mentions[0]}, but the image is normal "
                "(no defect anywhere); do not claim an anomaly location"
            )
        return None
    allowed = allowed_regions(info)
    if not allowed:
        return None
    for name in mentions:
        if name not in allowed:
            return (
                f"the reasoning places the defect in the {name}, but the mask's region is the "
                f"{info.region if info else '?'}; describe the marked region"
            )
    return None


# --------------------------------------------------------------------------- check
def check_reply(
    value: Any, asked: Sequence[str], info: MaskInfo | None, anomalous: bool
) -> tuple[TeacherReply | None, list[str]]:
    """``(reply, [])`` for a valid teacher object, else ``(None, problems)``.

    Beyond :class:`TeacherReply`'s own rules: the questions' types are exactly those
    ``asked`` (each once), and no reasoning contradicts the mask (:func:`region_problem`).
    """
    if not isinstance(value, dict):
        return None, [f"the reply must be a JSON object, got {describe_value(value)}"]
    try:
        reply = TeacherReply.model_validate(value)
    except ValidationError as exc:
        return None, _pydantic_problems(exc)
    problems = []
    types = [q.type for q in reply.questions]
    if sorted(types) != sorted(asked):
        problems.append(
            f"write exactly one question of each type {', '.join(asked)}; got "
            f"{', '.join(types) or 'none'}"
        )
    for k, q in enumerate(reply.questions):
        why = region_problem(q.reasoning, info, anomalous)
        if why is not None:
            problems.append(f"questions[{k}].reasoning: {why}")
    return (None, problems) if problems else (reply, [])
