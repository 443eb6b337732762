"""Find the response tags ``<seg>``, ``<think>``, ``<answer>`` in untrusted text, in linear time.

A tag is ``<``, optional whitespace, an optional closer mark (``/`` or the paper's
``\\``), optional whitespace, one of the names ``seg``, ``think``, ``answer`` in any
case, optional whitespace and ``>``.  Whitespace is any run of characters for which
``str.isspace`` is true, line breaks included.

The scanner visits every character a bounded number of times, whatever the text: the
whitespace after a ``<`` is only ever read from that ``<`` (or from one before a
single closer mark), so ``"<" + " " * n`` costs O(n), not the O(n**2) of a
backtracking regular expression such as ``<\\s*[/\\\\]?\\s*(seg|...)\\s*>``.

>>> [(t.start, t.end, t.name, t.closing) for t in scan_tags("<seg>(1, 2)< \\\\SEG ><think>")]
[(0, 5, 'seg', False), (11, 19, 'seg', True), (19, 26, 'think', False)]
>>> has_tag("plain reasoning < with > brackets"), has_tag("x </ answer>")
(False, True)
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["TAG_NAMES", "Tag", "has_tag", "scan_tags"]

#: The tag names of a response, in the order the format requires them.
TAG_NAMES = ("seg", "think", "answer")
_LONGEST = max(len(n) for n in TAG_NAMES)


class Tag(NamedTuple):
    """One tag found in a text: ``text[start:end]`` is the whole tag."""

    start: int
    end: int
    name: str
    closing: bool


def _skip_space(text: str, i: int, n: int) -> int:
    while i < n and text[i].isspace():
        i += 1
    return i


def _match_at(text: str, i: int, n: int) -> Tag | None:
    """The tag opening at ``text[i] == '<'``, or None."""
    j = _skip_space(text, i + 1, n)
    closing = j < n and text[j] in "/\\"
    if closing:
        j = _skip_space(text, j + 1, n)
    word = text[j : j + _LONGEST].lower()
    for name in TAG_NAMES:
        if word.startswith(name):
            k = _skip_space(text, j + len(name), n)
            if k < n and text[k] == ">":
                return Tag(i, k + 1, name, closing)
            return None
    return None


def scan_tags(text: str, limit: int | None = None) -> list[Tag]:
    """Every tag in ``text``, left to right, non-overlapping; at most ``limit`` of them.

    Parameters
    ----------
    text : str
        Untrusted text (a model response, a dataset's reasoning field).
    limit : int, optional
        Stop after this many tags (``has_tag`` uses 1).

    Returns
    -------
    list of Tag
        ``(start, end, name, closing)`` with ``name`` lower-cased.
    """
    if not isinstance(text, str):
        raise TypeError(f"scan_tags needs a str, got {type(text).__name__}")
    found: list[Tag] = []
    n = len(text)
    i = text.find("<")
    while i >= 0:
        tag = _match_at(text, i, n)
        if tag is not None:
            found.append(tag)
            if limit is not None and len(found) >= limit:
                break
            i = text.find("<", tag.end)
        else:
            i = text.find("<", i + 1)
    return found


def has_tag(text: str) -> bool:
    """True when ``text`` holds at least one response tag (see :func:`scan_tags`)."""
    return bool(scan_tags(text, limit=1))
