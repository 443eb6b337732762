"""Parse a model response ``<seg>..</seg><think>..</think><answer>..</answer>``.

Model output is untrusted: :func:`parse_response` never raises on any string and
takes time linear in its length (tags are found by :mod:`omniad_core.tags`).  It
accepts ``</tag>`` and the paper's ``<\\tag>`` closers, tags in any (ASCII) case and
with inner spaces, whitespace and line breaks anywhere, missing, repeated and unclosed
blocks (generation stopped at the token limit), and answers written as ``B``, ``B.``,
``(B)``, ``B: Yes.``, ``The answer is B`` or as the option's text.  Everything it had
to tolerate is listed in ``problems``; ``format_ok`` says whether the strict format of
the format reward held.

Strict format: after stripping surrounding whitespace the response is exactly one
``<seg>`` block, one ``<think>`` block and one ``<answer>`` block in that order, with
only whitespace between them; the seg text is canonical textmask text (any
whitespace between tokens) or empty; the answer is a single option letter, optionally
surrounded by whitespace.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

import textmask
from omniad_core.prompts import normalize_options
from omniad_core.tags import TAG_NAMES, Tag, scan_tags

__all__ = ["ParsedResponse", "block_text", "extract_answer", "parse_response", "read_answer"]

_TAGS = TAG_NAMES
# Linear on any text: applied to text whose whitespace runs are collapsed to single spaces,
# a match attempt can only backtrack over the [ :=] run right after one keyword, and
# distinct keywords have distinct runs.
_SAYS_LETTER = re.compile(
    r"\b(?:answer|option|choice)(?: is)?[ :=]*[(\[]?([A-Z])\b(?![a-z])", re.IGNORECASE
)
_DECOR = "*_`\"' "  # markdown emphasis and quotes around an answer
_AFTER_LETTER = ").:,;-]"
_NORM = re.compile(r"[^0-9a-z]+")  # one character class, no backtracking


class ParsedResponse(BaseModel):
    """What a response says and how well it kept the format.

    Attributes
    ----------
    raw : str
        The response as given.
    seg, think, answer_text : str or None
        Contents of the first block of each kind (None when the block is absent).
    answer : str or None
        The option letter the response chose, if one could be read.
    runs : list of (row, c1, c2)
        Canonical 0-based runs decoded tolerantly from ``seg``.
    grid : (rows, cols)
        The grid ``runs`` refer to.
    index_base : int
        The grid's index base, used by :attr:`seg_canonical`.
    format_ok : bool
        The strict format held (see the module docstring).
    truncated : bool
        A block was opened and never closed (generation likely hit its limit).
    problems : list of str
        Everything that was tolerated, in plain words.
    """

    model_config = ConfigDict(frozen=True)

    raw: str
    seg: str | None = None
    think: str | None = None
    answer_text: str | None = None
    answer: str | None = None
    runs: list[tuple[int, int, int]] = []
    grid: tuple[int, int] = (24, 24)
    index_base: int = 0
    format_ok: bool = False
    truncated: bool = False
    problems: list[str] = []

    @property
    def cells(self) -> np.ndarray:
        """The decoded seg as a ``(rows, cols)`` boolean cell grid."""
        return textmask.runs_to_cells(np.array(self.runs, np.int64).reshape(-1, 3), self.grid)

    @property
    def is_anomalous(self) -> bool:
        """True when the seg marks at least one cell."""
        return bool(self.runs)

    @property
    def seg_canonical(self) -> str:
        """The decoded seg written canonically (in the grid's index base)."""
        runs = np.array(self.runs, np.int64).reshape(-1, 3)
        return textmask.runs_to_text(runs, index_base=self.index_base)

    def mask(self, shape: tuple[int, int]) -> np.ndarray:
        """The decoded seg as a boolean pixel mask of ``shape`` (H, W)."""
        return textmask.unpatchify(self.cells, shape)


def _norm(s: str) -> str:
    return _NORM.sub(" ", s.lower()).strip()


def extract_answer(text: str | None, options: Any = None) -> str | None:
    """Read an option letter from answer text; None when none can be read.

    With ``options`` (anything :func:`~omniad_core.prompts.normalize_options` takes),
    the letter must be one of them and an option's text is recognised too.

    >>> opts = {"A": "Yes", "B": "No"}
    >>> [extract_answer(t, opts) for t in ["B", " b. ", "(B)", "B: No.", "no", "The answer is A"]]
    ['B', 'B', 'B', 'B', 'B', 'A']
    >>> extract_answer("C", opts) is None, extract_answer("I am not sure", opts) is None
    (True, True)
    """
    if not isinstance(text, str):
        return None
    opts = None
    if options is not None:
        try:
            opts = normalize_options(options)
        except (ValueError, TypeError):
            opts = None
    s = " ".join(text.split()).strip(_DECOR)  # one linear pass; bounds regex work
    if not s:
        return None
    valid = set(opts) if opts else {chr(c) for c in range(65, 91)}
    if len(s) == 1 and s.upper() in valid:
        return s.upper()
    if opts:  # the option's own text wins: "A hole in the surface" may be option B
        ns = _norm(s)
        exact = [k for k, v in opts.items() if _norm(v) == ns]
        if len(exact) == 1:
            return exact[0]
    lead = _lead_letter(s, valid, opts)
    if lead is not None:
        return lead
    if opts:
        ns = _norm(s)
        starts = [k for k, v in opts.items() if _norm(v) and ns.startswith(_norm(v) + " ")]
        if len(starts) == 1:
            return starts[0]
    said = {x.upper() for x in _SAYS_LETTER.findall(s)} & valid
    if len(said) == 1:
        return said.pop()
    return None


def _lead_letter(s: str, valid: set[str], opts: dict[str, str] | None) -> str | None:
    """A letter opening the answer: ``B``, ``(B)``, ``B.``, ``B: Yes``, ``A crack`` (A = crack).

    "a crack" or "I think B" are prose: a letter followed by a space and a lower-case
    word only counts when the rest is that letter's option text.
    """
    t = s.lstrip("([ ")
    if not t or not ("A" <= t[0].upper() <= "Z"):
        return None
    letter, rest = t[0].upper(), t[1:]
    if letter not in valid:
        return None
    if not rest.strip(_DECOR + _AFTER_LETTER) or rest[0] in _AFTER_LETTER:
        return letter
    if opts and _norm(rest) and _norm(rest) == _norm(opts.get(letter, "")):
        return letter
    if t[0].isupper() and rest[0] == " " and not (len(rest) > 1 and rest[1].islower()):
        return letter
    return None


def _blocks(text: str) -> tuple[dict[str, list[tuple[int, int, bool]]], list[Tag]]:
    """Content spans of every block: {tag: [(start, end, closed)]}, and the tag events.

    Linear in the text: the tags come from :func:`~omniad_core.tags.scan_tags` and every
    tag event is visited a bounded number of times.
    """
    events = scan_tags(text)
    spans: dict[str, list[tuple[int, int, bool]]] = {t: [] for t in _TAGS}
    k = 0
    while k < len(events):
        _, end, tag, closing = events[k]
        if closing:
            k += 1
            continue
        # the block ends at its closer, else at the next opening tag, else at the end
        j = k + 1
        while j < len(events) and not (events[j][2] == tag and events[j][3]) and events[j][3]:
            j += 1
        if j < len(events) and events[j][2] == tag and events[j][3]:
            spans[tag].append((end, events[j][0], True))
            k = j + 1
        else:
            stop = events[j][0] if j < len(events) else len(text)
            spans[tag].append((end, stop, False))
            k = j
    return spans, events


def _first(found: list[tuple[int, int, bool]]) -> tuple[int, int, bool]:
    """The block a response means: its first complete one, else its first one."""
    return next((f for f in found if f[2]), found[0])


def block_text(text: str, tag: str) -> str | None:
    r"""Content of the block ``tag`` (first complete, else first), or None without one.

    >>> block_text("<seg>(1, 1)<\\seg><think>x", "seg"), block_text("hi", "answer")
    ('(1, 1)', None)
    """
    found = _blocks(text)[0][tag]
    if not found:
        return None
    start, end, _ = _first(found)
    return text[start:end]


def read_answer(text: str, options: Any = None) -> str | None:
    """The option letter of a response, read exactly as :func:`parse_response` reads it.

    Cheaper than a full parse: the seg text is not decoded.

    >>> read_answer("<seg></seg><think>.</think><answer>(B)</answer>"), read_answer("B")
    ('B', 'B')
    """
    spans, events = _blocks(text)
    if not events:  # no tags at all: a plain answer such as "B" from an untrained model
        return extract_answer(text, options)
    found = spans["answer"]
    if not found:
        return None
    start, end, _ = _first(found)
    return extract_answer(text[start:end], options)


def _strict_shape(text: str, events: list[Tag]) -> bool:
    """Exactly seg, think, answer, each opened and closed once, whitespace between."""
    want = [
        ("seg", False),
        ("seg", True),
        ("think", False),
        ("think", True),
        ("answer", False),
        ("answer", True),
    ]
    if [(e[2], e[3]) for e in events] != want:
        return False
    if text[: events[0][0]].strip() or text[events[-1][1] :].strip():
        return False
    return not (
        text[events[1][1] : events[2][0]].strip() or text[events[3][1] : events[4][0]].strip()
    )


def parse_response(
    text: Any, *, options: Any = None, grid: textmask.grid.GridLike = 24
) -> ParsedResponse:
    """Parse one response; never raises.

    Parameters
    ----------
    text : str
        The model's response (anything else gives an empty result with a problem).
    options : mapping or list, optional
        The question's options, to validate the letter and recognise option texts.
    grid : int, (rows, cols) or textmask.Grid
        The grid the seg text refers to.

    Examples
    --------
    >>> r = parse_response("<seg>(3, 4)-(3, 6)</seg><think>A scratch.</think><answer>B</answer>",
    ...                    options=["No", "Yes"])
    >>> r.answer, r.runs, r.format_ok
    ('B', [(3, 4, 6)], True)
    >>> r = parse_response("<seg>\\n(14,\\n12)<\\\\seg>\\n<think>hmm</think> <answer>B: Yes.</answer>")
    >>> r.answer, r.runs, r.format_ok, r.problems
    ('B', [(14, 12, 12)], False, ['the answer is not a single letter'])
    >>> r = parse_response("<seg>(1, 1)</seg><think>the defect is")
    >>> r.truncated, r.answer, r.problems
    (True, None, ['unclosed <think> block (truncated output?)', 'no <answer> block'])
    """
    if not isinstance(text, str):
        return ParsedResponse(
            raw=str(text), problems=[f"response is a {type(text).__name__}, not text"]
        )
    try:
        g = textmask.Grid.of(grid)
    except textmask.TextMaskError as exc:
        return ParsedResponse(raw=text, problems=[f"invalid grid: {exc}"])
    problems: list[str] = []
    spans, events = _blocks(text)
    content: dict[str, str | None] = {}
    truncated = False
    for tag in _TAGS:
        found = spans[tag]
        if not found:
            content[tag] = None
            problems.append(f"no <{tag}> block")
            continue
        start, end, closed = _first(found)
        content[tag] = text[start:end]
        if not closed:
            truncated = True
            problems.append(f"unclosed <{tag}> block (truncated output?)")
        if len(found) > 1:
            problems.append(f"{len(found)} <{tag}> blocks; the first complete one is used")
    seg = content["seg"]
    answer_text = content["answer"]
    # no tags at all: read a plain answer such as "B" from an untrained model
    answer = extract_answer(answer_text if events else text, options)
    runs: list[tuple[int, int, int]] = []
    seg_strict = True
    if seg is not None:
        cells, rep = textmask.decode(seg, g, report=True)
        runs = [tuple(int(v) for v in r) for r in textmask.cells_to_runs(cells)]
        if not rep.clean:
            problems.append(
                f"seg text: {rep.chars_skipped} characters skipped, {rep.cells_dropped} "
                "cells outside the grid dropped"
            )
        seg_strict = textmask.is_canonical(seg, g)
        if not seg_strict and rep.clean:
            problems.append("seg text is not canonical")
    if answer_text is not None and answer is None:
        problems.append("no option letter in the answer")
    bare = None if answer_text is None else answer_text.strip()
    letter_only = bare is not None and len(bare) == 1 and "A" <= bare <= "Z" and answer == bare
    if answer_text is not None and answer is not None and not letter_only:
        problems.append("the answer is not a single letter")
    shape_ok = _strict_shape(text, events)
    if not shape_ok and all(content[t] is not None for t in _TAGS) and not truncated:
        problems.append(
            "the blocks are not exactly <seg>, <think>, <answer> in this order with only "
            "whitespace between and around them"
        )
    format_ok = shape_ok and seg_strict and letter_only and not truncated
    return ParsedResponse(
        raw=text,
        seg=seg,
        think=content["think"],
        answer_text=answer_text,
        answer=answer,
        runs=runs,
        grid=g.shape,
        index_base=g.index_base,
        format_ok=format_ok,
        truncated=truncated,
        problems=problems,
    )
