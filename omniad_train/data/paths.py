"""Paths read from data files: resolved, checked to stay inside their root, never raising.

Dataset files are untrusted: an ``mmad.json`` key such as ``../../secret/private.png``,
an absolute path, or a symlink inside the dataset folder that points elsewhere would
otherwise be opened and its image embedded into the prepared datasets.  Every path a
reader takes from a data file goes through :func:`outside_root`, which resolves it
(``..`` and symlinks, like ``os.path.realpath``) and compares it with the resolved root.

>>> outside_root("/no/such/root/a/b.png", "/no/such/root") is None
True
>>> outside_root("/no/such/root/../../etc/passwd", "/no/such/root")
'/no/etc/passwd'
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "outside_root",
    "path_problem",
    "real_root",
    "safe_exists",
    "safe_is_dir",
    "safe_is_file",
]


def real_root(root: str | os.PathLike[str]) -> str:
    """The resolved absolute path of a root folder (symlinks followed)."""
    return os.path.realpath(os.fspath(root))


def _bad_text(path: str) -> str | None:
    if "\x00" in path:
        return "it holds a NUL character"
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return "it is not valid UTF-8 text"
    return None


def outside_root(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> str | None:
    """None when ``path`` resolves inside ``root``, else where it leads (a resolved path).

    Both are resolved (``..``, symlinks); a path that cannot be resolved counts as
    outside.  ``root`` may be given resolved already (see :func:`real_root`).
    """
    p = os.fspath(path)
    if _bad_text(p) is not None:
        return p
    base = real_root(root)
    try:
        real = os.path.realpath(p)
    except (OSError, ValueError):
        return p
    try:
        inside = os.path.commonpath([base, real]) == base
    except ValueError:  # different drives (Windows)
        inside = False
    return None if inside else real


def path_problem(
    path: str | os.PathLike[str],
    root: str | os.PathLike[str] | None,
    what: str,
    fix: str = "give a path relative to the root, and copy (not symlink) files from "
    "elsewhere into it",
) -> str | None:
    """A sentence naming why ``path`` may not be used, or None when it may.

    ``what`` names the path in the sentence, e.g. ``"the image 'x/y.png'"``; ``fix``
    ends the sentence of a path outside the root.  With ``root`` None only the text of
    the path is checked (no NUL character, valid UTF-8).
    """
    bad = _bad_text(os.fspath(path))
    if bad is not None:
        return f"{what} cannot be used as a path: {bad}; rename the file or fix the path"
    if root is None:
        return None
    real = outside_root(path, root)
    if real is None:
        return None
    return (
        f"{what} leads outside the data root {real_root(root)!r} (to {real!r}); paths in "
        f"data files must stay inside their root: {fix}"
    )


def _safe(test: str, path: str | os.PathLike[str]) -> bool:
    try:
        return bool(getattr(Path(path), test)())
    except (OSError, ValueError):  # too long a name, a NUL character, no permission
        return False


def safe_is_file(path: str | os.PathLike[str]) -> bool:
    """``Path.is_file`` that answers False instead of raising (long names, NUL, permissions)."""
    return _safe("is_file", path)


def safe_is_dir(path: str | os.PathLike[str]) -> bool:
    """``Path.is_dir`` that answers False instead of raising."""
    return _safe("is_dir", path)


def safe_exists(path: str | os.PathLike[str]) -> bool:
    """``Path.exists`` that answers False instead of raising."""
    return _safe("exists", path)
