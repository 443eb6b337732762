"""File helpers shared by the layers (private): the mode a new file should get, and
writing a file whole or not at all."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

__all__ = ["atomic_write", "atomic_write_text", "default_file_mode"]


def default_file_mode() -> int:
    """The mode ``open(path, "w")`` gives a new file: ``0o666`` less the process umask.

    Atomic writers create their temporary file with ``tempfile.mkstemp`` (mode 0600) and
    set this mode on it, so results and reports are as readable as any file the user
    writes.  Read from ``/proc/self/status`` where it is there (no change of the umask,
    so safe with threads); elsewhere the umask is set and restored at once.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(
    path: str | os.PathLike[str], write: Callable[[IO[bytes]], object], *, sync: bool = True
) -> Path:
    """Write ``path`` with ``write(file)`` into a temporary file beside it, then
    ``os.replace``: readers see the old file or the new one, never half of one.

    The file gets the mode a plain ``open`` would give it (:func:`default_file_mode`),
    not the ``0600`` of :func:`tempfile.mkstemp`; ``sync`` flushes it to disk before the
    rename (results a resumed run reads back), which pictures can do without.  A failed
    write leaves no temporary file.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, default_file_mode())
        with os.fdopen(fd, "wb") as f:
            write(f)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return p


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """:func:`atomic_write` of ``text`` in UTF-8, newlines as given."""
    data = text.encode("utf-8")
    return atomic_write(path, lambda f: f.write(data))
