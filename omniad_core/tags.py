"""Find the response tags ``<seg>``, ``<think>``, ``<answer>`` in untrusted text, in linear time.

A tag is ``<``, optional whitespace, an optional closer mark (``/`` or the paper's
``\\``), optional whitespace, one of the names ``seg``, ``think``, ``answer`` in any
ASCII case, optional whitespace and ``>``.  Whitespace is any run of characters for
which ``str.isspace`` is true (what ``\\s`` matches in a ``str`` regular expression),
line breaks included.  Only ASCII letters spell a name: ``<thinK>`` with a Kelvin sign
or ``<ſeg>`` with a long s (which a case-insensitive regular expression would accept)
are not tags.  Tags are found left to right without overlap; a ``<`` that does not open
a tag is skipped and the search goes on at the next character.

The scanner visits every character a bounded number of times, whatever the text: the
whitespace after a ``<`` (or after its closer mark, or after a name) is only ever read
from that ``<``, and no two ``<`` share such a run, so ``"<" + " " * n`` costs O(n),
not the O(n**2) of a backtracking regular expression such as
``<\\s*[/\\\\]?\\s*(seg|...)\\s*>`` (whose two ``\\s*`` can split one run in n ways).

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
# a name is recognised by its first character, then compared in full
_BY_FIRST = {c: name for name in TAG_NAMES for c in (name[0], name[0].upper())}


class Tag(NamedTuple):
    """One tag found in a text: ``text[start:end]`` is the whole tag."""

    start: int
    end: int
    name: str
    closing: bool


_new = tuple.__new__  # builds a Tag without NamedTuple's Python-level __new__


def _skip_space(text: str, i: int, n: int) -> int:
    """The first index at or after ``i`` that is not whitespace (``n`` at the end)."""
    while i < n and text[i].isspace():
        i += 1
    return i


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

    Raises
    ------
    TypeError
        If ``text`` is not a ``str``.
    """
    if not isinstance(text, str):
        raise TypeError(f"scan_tags needs a str, got {type(text).__name__}")
    found: list[Tag] = []
    n = len(text)
    find = text.find
    i = find("<")
    while i >= 0:
        j = i + 1
        if j < n and text[j].isspace():
            j = _skip_space(text, j + 1, n)
        closing = j < n and text[j] in "/\\"
        if closing:
            j += 1
            if j < n and text[j].isspace():
                j = _skip_space(text, j + 1, n)
        name = _BY_FIRST.get(text[j : j + 1])
        if name is not None:
            k = j + len(name)
            word = text[j:k]
            if word.isascii() and word.lower() == name:
                if k < n and text[k].isspace():
                    k = _skip_space(text, k + 1, n)
                if k < n and text[k] == ">":
                    found.append(_new(Tag, (i, k + 1, name, closing)))
                    if limit is not None and len(found) >= limit:
                        break
                    i = find("<", k + 1)
                    continue
        i = find("<", i + 1)
    return found


def has_tag(text: str) -> bool:
    """True when ``text`` holds at least one response tag (see :func:`scan_tags`).

    >>> has_tag("<think>"), has_tag("< think"), has_tag("<thinking>")
    (True, False, False)
    """
    return bool(scan_tags(text, limit=1))
