"""Command-line pieces shared by ``omniad inspect``, folder inspection and ``omniad ui``
(private): flag spellings, a positive-integer type, the served-model options and the
line printed for an error no handler expected."""

from __future__ import annotations

import argparse
import os
import sys

from omniad_core.packages import install_hint

__all__ = [
    "BROKEN_PIPE_EXIT",
    "add_endpoint_args",
    "add_max_new_tokens",
    "flag",
    "one_line",
    "positive_int",
    "reader_gone",
    "unexpected_error_line",
]

#: The exit status of a program whose reader went away (128 + SIGPIPE, as the shell's).
BROKEN_PIPE_EXIT = 141


def reader_gone() -> int:
    """What a command does when its output's reader went away (``omniad --help | head``):
    point stdout at the null device, so the interpreter's last flush cannot fail again,
    and return :data:`BROKEN_PIPE_EXIT`; no traceback, as with any Unix tool."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return BROKEN_PIPE_EXIT


def unexpected_error_line(prog: str, exc: Exception) -> str:
    """The one line a command prints for an exception no handler expected.

    A missing package of an extra names the install; anything else is ``unexpected``
    with the way to see the traceback.  Re-raises when ``OMNIAD_TRACEBACK`` is set.

    >>> from omniad_core.packages import MissingPackageError
    >>> unexpected_error_line("omniad x", MissingPackageError("needs Y; pip install y"))
    'omniad x: error: needs Y; pip install y'
    >>> unexpected_error_line("omniad x", KeyError("k"))
    "omniad x: error: unexpected KeyError: 'k' (run again with OMNIAD_TRACEBACK=1 to see where)"
    """
    if os.environ.get("OMNIAD_TRACEBACK", "").strip() not in ("", "0"):
        raise exc
    hint = install_hint(exc) if isinstance(exc, ImportError) else None
    if hint is not None:
        return f"{prog}: error: {one_line(hint)}"
    return (
        f"{prog}: error: unexpected {type(exc).__name__}: {one_line(str(exc))} "
        "(run again with OMNIAD_TRACEBACK=1 to see where)"
    )


def one_line(text: str) -> str:
    """``text`` on one line (library messages may hold newlines), at most 2000 chars."""
    flat = " ".join(text.split())
    return flat if len(flat) <= 2000 else flat[:1997] + "..."


def flag(name: str) -> list[str]:
    """``--flag-name`` and its ``--flag_name`` spelling (one entry for a one-word flag)."""
    dashed = f"--{name}"
    under = dashed[:2] + dashed[2:].replace("-", "_")
    return [dashed] if under == dashed else [dashed, under]


def positive_int(text: str) -> int:
    """An argparse ``type=`` for a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_max_new_tokens(parser: argparse.ArgumentParser, per: str = "") -> None:
    """``--max-new-tokens N`` (default 1024: a large 24x24 mask alone is 300-600 tokens);
    ``per`` ends its help (" per image")."""
    parser.add_argument(
        *flag("max-new-tokens"),
        dest="max_new_tokens",
        type=positive_int,
        default=1024,
        metavar="N",
        help=f"generation budget{per} (default 1024: a large 24x24 mask alone is 300-600 tokens)",
    )


def add_endpoint_args(parser: argparse.ArgumentParser) -> None:
    """The options that point a command at a model behind an OpenAI-compatible server."""
    ep = parser.add_argument_group("served model (an OpenAI-compatible server; docs/serving.md)")
    ep.add_argument(
        "--endpoint",
        metavar="URL",
        help="the server's API root, e.g. http://127.0.0.1:8000/v1 (instead of --model)",
    )
    ep.add_argument(
        *flag("served-model"),
        dest="served_model",
        metavar="NAME",
        help="the model name the server lists at GET /v1/models",
    )
    ep.add_argument(
        *flag("api-key-env"),
        dest="api_key_env",
        metavar="VAR",
        help="environment variable holding the API key (the key is never a command-line value)",
    )
    ep.add_argument(
        "--concurrency",
        type=positive_int,
        default=8,
        metavar="N",
        help="requests in flight at once (default 8)",
    )
    ep.add_argument(
        "--spec",
        metavar="PATH",
        help="the served checkpoint's folder or omniad.json (grid, image size, system prompt)",
    )
