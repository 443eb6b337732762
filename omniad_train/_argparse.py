"""The argument parser of every ``omniad-train`` command (no project imports).

:class:`CommandParser` is an :class:`argparse.ArgumentParser` with the toolkit's
conventions; it lives here, below both :mod:`omniad_train.cli` (which re-exports it) and
the command modules (``omniad_train.evaluation.cli`` and the others), so that no command
imports the dispatcher that imports it.

>>> normalize_flags(["--max-records", "5", "--quiet", "--x-y"], {"--max_records", "--quiet"})
['--max_records', '5', '--quiet', '--x-y']
"""

from __future__ import annotations

import argparse
import re
import sys
import textwrap
from collections.abc import Callable, Collection, Sequence
from typing import Any

__all__ = [
    "CommandParser",
    "HelpFormatter",
    "nonneg_int",
    "normalize_flags",
    "open_fraction",
    "plain_help",
    "positive_int",
    "positive_seconds",
    "respell_options",
]

_RST = re.compile(r"``([^`]+)``")


def plain_help(text: str) -> str:
    """Help text without reStructuredText markup: ````x```` becomes ```x```.

    >>> plain_help("the ``omniad demo`` command")
    'the `omniad demo` command'
    """
    return _RST.sub(r"`\1`", text)


def respell_options(tokens: Sequence[str], respell: Callable[[str], str]) -> list[str]:
    """``tokens`` with each option's name (``--name``, also in ``--name=value``) replaced
    by ``respell(name)``; values and everything after a bare ``--`` are left as they are."""
    out: list[str] = []
    tokens = list(tokens)
    for k, token in enumerate(tokens):
        if token == "--":
            return out + tokens[k:]
        if token.startswith("--") and len(token) > 2:
            name, eq, value = token.partition("=")
            token = respell(name) + eq + value
        out.append(token)
    return out


def normalize_flags(tokens: Sequence[str], known: Collection[str]) -> list[str]:
    """``tokens`` with each ``--flag-name`` / ``--flag_name`` spelled as ``known`` has it.

    An option whose spelling is known is kept; otherwise its other spelling is used when
    that one is known (``--max-records`` for a parser of ``--max_records``, and back).
    Values, unknown options and everything after a bare ``--`` are left as they are.
    """

    def respell(name: str) -> str:
        if name in known:
            return name
        for alt in ("--" + name[2:].replace("-", "_"), "--" + name[2:].replace("_", "-")):
            if alt in known:
                return alt
        return name

    return respell_options(tokens, respell)


class HelpFormatter(argparse.HelpFormatter):
    """Wraps the description's paragraphs; keeps the epilog's and indented lines as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        out = []
        for para in text.split("\n\n"):
            if "\n" in para or para.startswith(" "):
                out.append("\n".join(indent + line for line in para.splitlines()))
            else:
                out.append(
                    textwrap.fill(para, width, initial_indent=indent, subsequent_indent=indent)
                )
        return "\n\n".join(out)


class CommandParser(argparse.ArgumentParser):
    """An :class:`argparse.ArgumentParser` with the toolkit's conventions.

    Options are registered once, with underscores (as recipe keys and TRL spell them);
    ``--flag-name`` is accepted for every ``--flag_name`` (:func:`normalize_flags`), and
    help text is printed without reStructuredText markup (:func:`plain_help`).  The
    description is wrapped; an epilog of several lines (examples) is kept as written.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        tokens = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(
            normalize_flags(tokens, self._option_string_actions), namespace
        )

    def format_help(self) -> str:
        return plain_help(super().format_help())

    def format_usage(self) -> str:
        return plain_help(super().format_usage())


# --------------------------------------------------------------------------- value types
def _number(value: str, kind: type[int] | type[float]) -> float:
    try:
        return kind(value)
    except ValueError:
        noun = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"expected {noun}, got {value!r}") from None


def nonneg_int(value: str) -> int:
    """An ``argparse`` type: an integer >= 0.

    >>> nonneg_int("0")
    0
    """
    n = int(_number(value, int))
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {n}")
    return n


def positive_int(value: str) -> int:
    """An ``argparse`` type: an integer >= 1.

    >>> positive_int("8")
    8
    """
    n = int(_number(value, int))
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {n}")
    return n


def open_fraction(value: str) -> float:
    """An ``argparse`` type: a number strictly between 0 and 1.

    >>> open_fraction("0.8")
    0.8
    """
    f = _number(value, float)
    if not 0 < f < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (e.g. 0.8), got {f}")
    return f


def positive_seconds(value: str) -> float:
    """An ``argparse`` type: a number of seconds > 0.

    >>> positive_seconds("300")
    300.0
    """
    f = _number(value, float)
    if not f > 0:
        raise argparse.ArgumentTypeError(f"must be > 0 seconds, got {f}")
    return f
