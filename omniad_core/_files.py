"""File helpers shared by the layers (private): the mode a new file should get."""

from __future__ import annotations

import os

__all__ = ["default_file_mode"]


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
