"""Which images a run covers (folders, globs, lists) and the reference of each."""

from __future__ import annotations

import glob
import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omniad_core.folder.common import (
    IMAGE_SUFFIXES,
    REFERENCE_STEMS,
    FolderRunError,
)

__all__ = ["ImageItem", "collect_images"]


# --------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class ImageItem:
    """One image of a run: ``id`` is its path relative to the run's root (``/``-separated),
    ``path`` where it was found, ``problem`` why it cannot be an image (known at listing)."""

    id: str
    path: Path
    problem: str | None = None


def _is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def _is_reference_name(name: str) -> bool:
    stem, _, _ = name.partition(".")
    return _is_image_name(name) and stem.lower() in REFERENCE_STEMS and name.count(".") == 1


def _glob_root(pattern: str) -> Path:
    """The folder a glob pattern starts from (its parts before the first wildcard)."""
    parts: list[str] = []
    for part in Path(pattern).parts:
        if glob.has_magic(part):
            break
        parts.append(part)
    return Path(*parts) if parts else Path(".")


def collect_images(
    inputs: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    *,
    exclude: Iterable[str | os.PathLike[str]] = (),
    skip_references: bool = False,
) -> tuple[Path, list[ImageItem]]:
    """The run's root folder and its images, in a stable order.

    Parameters
    ----------
    inputs : path, glob or list of them
        A folder (walked recursively; hidden files and folders are skipped), an image
        file, or a glob pattern (``**`` matches any depth).  A folder or glob yields the
        files whose names end in :data:`IMAGE_SUFFIXES`; a file named explicitly is taken
        whatever its suffix.  A folder named like an image (``x.png/``) is listed with a
        problem, not walked.
    exclude : paths
        Folders not to walk (the results folder, when it lies inside an input folder).
    skip_references : bool
        Leave out the per-folder references (``good.*`` / ``reference.*``).

    Returns
    -------
    root : Path
        The deepest folder holding every input (ids are relative to it).
    items : list of ImageItem

    Raises
    ------
    FolderRunError
        An input that does not exist, a glob that matches nothing, no images at all.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    excluded = {os.path.abspath(p) for p in exclude}
    found: list[tuple[Path, str | None]] = []
    roots: list[str] = []
    for raw in inputs:
        text = os.fspath(raw)
        p = Path(text).expanduser()
        if p.is_dir():
            roots.append(os.path.abspath(p))
            found += _walk(p, excluded, skip_references)
        elif p.is_file():
            roots.append(os.path.abspath(p.parent))
            found.append((p, None))
        elif glob.has_magic(text):
            matches = sorted(glob.glob(os.path.expanduser(text), recursive=True))
            if not matches:
                raise FolderRunError(f"no file matches {text!r}; check the pattern")
            roots.append(os.path.abspath(_glob_root(os.path.expanduser(text))))
            for m in matches:
                mp = Path(m)
                if os.path.abspath(mp.parent) in excluded or not _is_image_name(mp.name):
                    continue
                if skip_references and _is_reference_name(mp.name):
                    continue
                if mp.is_dir():
                    found.append((mp, "is a folder, not an image file"))
                else:
                    found.append((mp, None))
        else:
            raise FolderRunError(
                f"no such file or folder: {text!r} (give a folder, an image or a glob "
                "pattern such as 'images/**/*.png')"
            )
    if not found:
        raise FolderRunError(
            f"no images in {', '.join(repr(os.fspath(i)) for i in inputs)}: looked for "
            f"files ending in {', '.join(IMAGE_SUFFIXES)}"
        )
    root = Path(os.path.commonpath(roots))
    items: list[ImageItem] = []
    seen: set[str] = set()
    for path, problem in found:
        rel = Path(os.path.relpath(os.path.abspath(path), root)).as_posix()
        if rel not in seen:
            seen.add(rel)
            items.append(ImageItem(rel, path, problem))
    return root, items


def _walk(top: Path, excluded: set[str], skip_references: bool) -> list[tuple[Path, str | None]]:
    out: list[tuple[Path, str | None]] = []
    for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
        keep = []
        for d in sorted(dirnames):
            full = os.path.join(dirpath, d)
            if d.startswith(".") or os.path.abspath(full) in excluded:
                continue
            if _is_image_name(d):
                out.append((Path(full), "is a folder, not an image file (not walked)"))
                continue
            keep.append(d)
        dirnames[:] = keep
        for f in sorted(filenames):
            if f.startswith(".") or not _is_image_name(f):
                continue
            if skip_references and _is_reference_name(f):
                continue
            out.append((Path(dirpath) / f, None))
    return sorted(out, key=lambda t: Path(os.path.relpath(t[0], top)).parts)


# ----------------------------------------------------------------------- references
def _folder_references(root: Path, items: Sequence[ImageItem]) -> dict[str, Path]:
    """``{absolute folder: its reference}`` for every folder on the way from the images
    to ``root`` holding a ``good.*`` or ``reference.*`` image (``good`` wins, then name)."""
    folders: set[str] = set()
    top = os.path.abspath(root)
    for it in items:
        d = os.path.abspath(it.path.parent)
        while True:
            folders.add(d)
            if d == top or os.path.dirname(d) == d or not d.startswith(top):
                break
            d = os.path.dirname(d)
    refs: dict[str, Path] = {}
    for d in folders:
        try:
            names = [n for n in os.listdir(d) if _is_reference_name(n)]
        except OSError:
            continue
        names = [n for n in names if os.path.isfile(os.path.join(d, n))]
        if names:
            best = min(names, key=lambda n: (REFERENCE_STEMS.index(n.split(".")[0].lower()), n))
            refs[d] = Path(d) / best
    return refs


def _nearest(folder: str, table: Mapping[str, Path], top: str | None) -> Path | None:
    d = folder
    while True:
        if d in table:
            return table[d]
        if (top is not None and d == top) or os.path.dirname(d) == d:
            return None
        d = os.path.dirname(d)


@dataclass
class _References:
    """How each image finds its normal reference (see :func:`inspect_folder`)."""

    describe: Any  # JSON-safe, for the fingerprint
    single: Any = None  # one loaded image for all
    single_path: str | None = None
    table: dict[str, Path] = field(default_factory=dict)
    top: str | None = None
    cache: dict[str, Any] = field(default_factory=dict)

    def path_for(self, item: ImageItem) -> str | None:
        if self.single is not None:
            return self.single_path
        if not self.table:
            return None
        ref = _nearest(os.path.abspath(item.path.parent), self.table, self.top)
        return None if ref is None else str(ref)


def _references(
    reference: Any, root: Path, items: Sequence[ImageItem], max_pixels: Any
) -> _References:
    from omniad_core.images import ImageError, load_image

    if reference is None:
        return _References(describe=None)
    if isinstance(reference, str) and reference == "per-folder":
        return _References(
            describe="per-folder", table=_folder_references(root, items), top=os.path.abspath(root)
        )
    if isinstance(reference, Mapping):
        table: dict[str, Path] = {}
        for folder, ref in reference.items():
            f = Path(folder).expanduser()
            if not f.is_absolute() and not f.is_dir():  # else relative to the run's root
                f = root / f
            if not f.is_dir():
                raise FolderRunError(
                    f"reference mapping: no such folder {os.fspath(folder)!r} (relative folders are read from the current directory, then from the inputs' root)"
                )
            if not Path(ref).is_file():
                raise FolderRunError(
                    f"reference mapping: the reference of {os.fspath(folder)!r} is not a file: "
                    f"{os.fspath(ref)!r}"
                )
            table[os.path.abspath(f)] = Path(ref)
        describe = {os.path.relpath(k, root): os.path.abspath(v) for k, v in sorted(table.items())}
        return _References(describe=describe, table=table, top=None)
    try:
        img = load_image(reference, max_pixels=max_pixels)
    except ImageError as exc:
        raise FolderRunError(f"the reference image cannot be used: {exc}") from None
    path = (
        os.path.abspath(os.fspath(reference)) if isinstance(reference, (str, os.PathLike)) else None
    )
    digest = hashlib.sha256(img.tobytes()).hexdigest()[:16]
    return _References(describe={"one": path, "sha256": digest}, single=img, single_path=path)
