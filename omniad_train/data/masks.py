"""Mask files of defect images: reading (one file or a folder to unite) and the rules
every reader, ``prepare`` and the evaluation runners share (empty masks, paths).

Any non-zero mask value is anomalous (see :func:`omniad_core.images.load_mask`): this
holds for 0/255 masks (MVTec AD), 0/1 masks (VisA) and class-id masks such as MVTec
3D-AD's, whose ``class_ids.json`` maps 0 to ``good`` and 253/254/255 to defect types.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from omniad_core.images import ImageError, load_mask, mask_from_array
from omniad_train.data.paths import path_problem, safe_is_dir, safe_is_file
from omniad_train.data.reasoning import describe_mask
from omniad_train.data.records import MaskInfo

__all__ = [
    "IMAGE_SUFFIXES",
    "default_mask_info",
    "defect_mask_problem",
    "is_image",
    "mask_files_problem",
    "mask_from_array",
    "read_mask",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def is_image(p: Path) -> bool:
    """A file with an image suffix (any case); False instead of raising."""
    return p.suffix.lower() in IMAGE_SUFFIXES and safe_is_file(p)


def _mask_file(p: Path) -> np.ndarray:
    name = repr(str(p))
    if not safe_is_file(p):
        raise ImageError(f"no mask file at {name}; check the path or add the mask")
    return load_mask(p)


def read_mask(source: str | os.PathLike[str]) -> np.ndarray:
    """A boolean mask from a mask file, or the union of a folder of masks (MVTec LOCO).

    The file's raw values are read (8, 16 or 32 bit integers, floats; no conversion to
    8 bits) and the mask is where they are non-zero (floats: positive), by
    :func:`omniad_core.images.load_mask`, the one mask reader of the toolkit (its
    image pixel limit applies).

    Raises :class:`~omniad_core.images.ImageError` for unreadable files, NaN values, an
    empty folder, or masks of different sizes in one folder.
    """
    p = Path(source)
    if not safe_is_dir(p):
        return _mask_file(p)
    files = sorted(f for f in p.iterdir() if is_image(f))
    if not files:
        raise ImageError(
            f"the mask folder {str(p)!r} holds no mask images; put the masks ({', '.join(IMAGE_SUFFIXES)}) in it"
        )
    out: np.ndarray | None = None
    for f in files:
        m = _mask_file(f)
        if out is None:
            out = m.copy()
        elif m.shape != out.shape:
            raise ImageError(
                f"the masks in {str(p)!r} differ in size ({f.name} is {m.shape[0]}x{m.shape[1]}, "
                f"{files[0].name} is {out.shape[0]}x{out.shape[1]}); all must have the image's size"
            )
        else:
            out |= m
    assert out is not None
    return out


#: How to fix an empty mask, per source.
_EMPTY_MASK_FIX = {
    "mvtec": "draw the defect in the mask, or move the image to test/good",
    "mmad": "draw the defect in the mask, or move the image under a 'good' folder",
    "jsonl": 'draw the defect in the mask, or set "anomalous": false and remove "mask"',
}


def defect_mask_problem(mask: str, info: MaskInfo, source: str) -> str | None:
    """The reason to reject a defect image whose mask is empty (all zero), or None.

    The one rule for readers, ``prepare`` and the evaluation runners: a defect image
    needs a non-empty mask (a missing mask is rejected by the readers already).

    >>> defect_mask_problem("m.png", MaskInfo(height=2, width=2, area=0.0), "mvtec")
    'the mask m.png of a defect image is empty (all zero); draw the defect in the mask, or move the image to test/good'
    """
    if not info.empty:
        return None
    fix = _EMPTY_MASK_FIX.get(source, "draw the defect in the mask, or mark the image normal")
    return f"the mask {mask} of a defect image is empty (all zero); {fix}"


def mask_files_problem(
    mask: str | os.PathLike[str], root: str | None, what: str, **fix: str
) -> str | None:
    """Why a mask file or folder may not be used (outside ``root``, also any file in a
    mask folder; see :func:`~omniad_train.data.paths.path_problem`), or None."""
    problem = path_problem(mask, root, what, **fix)
    if problem is None and safe_is_dir(mask):
        for f in sorted(Path(mask).iterdir()):
            if is_image(f):
                problem = path_problem(f, root, f"the file {f.name!r} in {what}", **fix)
                if problem is not None:
                    break
    return problem


def default_mask_info(path: str) -> MaskInfo:
    """The description of the mask file or folder at ``path`` (read now, not cached)."""
    return describe_mask(read_mask(path))
