"""Images and masks in, overlays out: paths, PIL images and arrays all accepted.

Pillow is imported when a function needs it, so ``import omniad_core`` stays light.
Errors name the file and the fix; nothing here unpickles anything.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ImageError", "load_image", "load_mask", "overlay", "save_mask"]

_MASK_SUFFIXES = (".png", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg", ".gif", ".webp")


class ImageError(ValueError):
    """An image or mask could not be read or has the wrong form."""


def _pil() -> Any:
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - pillow is a core dependency
        raise ImportError("reading images needs Pillow: pip install 'omniad[core]'") from exc
    return Image


def _open(path: str | os.PathLike[str]) -> Any:
    Image = _pil()
    p = Path(path)
    if not p.is_file():
        raise ImageError(
            f"no image file at {str(p)!r}; check the path (relative to {os.getcwd()!r})"
        )
    try:
        img = Image.open(p)
        img.load()
    except Exception as exc:  # PIL raises many types for corrupt files
        raise ImageError(f"cannot read {str(p)!r} as an image: {exc}") from None
    return img


def load_image(image: Any) -> Any:
    """An RGB ``PIL.Image`` from a path, a PIL image or an ``(H, W[, C])`` array.

    Arrays may be uint8, bool, or float in [0, 1]; one or four channels are converted.

    >>> load_image(np.zeros((4, 6, 3), np.uint8)).size
    (6, 4)
    """
    Image = _pil()
    if isinstance(image, (str, os.PathLike)):
        image = _open(image)
    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    if isinstance(image, np.ndarray):
        arr = image
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[:, :, 0]
        if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
            raise ImageError(
                f"an image array must be (H, W), (H, W, 3) or (H, W, 4), got {arr.shape}"
            )
        if arr.size == 0:
            raise ImageError(f"the image array is empty: shape {arr.shape}")
        if arr.dtype == bool:
            arr = arr.astype(np.uint8) * 255
        elif arr.dtype.kind == "f":
            if not np.isfinite(arr).all():
                raise ImageError("the image array holds NaN or infinite values")
            arr = np.clip(arr * 255.0 if arr.max() <= 1.0 else arr, 0, 255).astype(np.uint8)
        elif arr.dtype != np.uint8:
            if arr.min() < 0 or arr.max() > 255:
                raise ImageError(
                    f"integer image values must be in 0..255, got {arr.min()}..{arr.max()}; "
                    "rescale first"
                )
            arr = arr.astype(np.uint8)
        return Image.fromarray(np.ascontiguousarray(arr)).convert("RGB")
    raise ImageError(
        f"an image must be a path, a PIL image or a numpy array, got {type(image).__name__}"
    )


def load_mask(mask: Any, shape: tuple[int, int] | None = None) -> np.ndarray:
    """A boolean ``(H, W)`` mask from a path, a PIL image or an array (non-zero = anomalous).

    ``None`` and ``""`` mean "no anomaly" and need ``shape``.  With ``shape``, a mask of
    another size is an error (masks are never silently resized).

    >>> load_mask(np.array([[0, 255], [0, 0]], np.uint8)).tolist()
    [[False, True], [False, False]]
    >>> load_mask(None, (2, 3)).sum()
    np.int64(0)
    """
    Image = _pil()
    if mask is None or (isinstance(mask, str) and not mask):
        if shape is None:
            raise ImageError("an absent mask (None or '') means 'no anomaly' and needs a shape")
        return np.zeros(shape, bool)
    if isinstance(mask, (str, os.PathLike)):
        mask = _open(mask)
    if isinstance(mask, Image.Image):
        mask = np.asarray(mask)
    arr = np.asarray(mask)
    if arr.ndim == 3:  # RGB(A) masks: anomalous where any colour channel is set
        arr = arr[..., :3].any(axis=2) if arr.shape[2] >= 3 else arr[..., 0] != 0
    if arr.ndim != 2 or arr.size == 0:
        raise ImageError(f"a mask must be 2-D (H, W), got shape {arr.shape}")
    if arr.dtype.kind not in "biuf":
        raise ImageError(f"a mask must be numeric, got dtype {arr.dtype}")
    out = arr != 0
    if shape is not None and out.shape != tuple(shape):
        raise ImageError(
            f"the mask is {out.shape[0]}x{out.shape[1]} (H x W) but the image is "
            f"{shape[0]}x{shape[1]}; masks must have the image's size"
        )
    return out


def looks_like_mask_path(value: str) -> bool:
    """True for a string that names an image file (by suffix or because it exists)."""
    return value.lower().endswith(_MASK_SUFFIXES) or os.path.isfile(value)


def save_mask(mask: np.ndarray, path: str | os.PathLike[str]) -> Path:
    """Write a boolean mask as an 8-bit PNG (0 / 255)."""
    Image = _pil()
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.asarray(mask) != 0).astype(np.uint8) * 255).save(p)
    return p


def overlay(
    image: Any,
    mask: np.ndarray,
    *,
    color: tuple[int, int, int] = (255, 40, 40),
    alpha: float = 0.45,
    outline: bool = True,
) -> Any:
    """The image with the mask painted over it (``PIL.Image``, RGB).

    >>> img = overlay(np.zeros((8, 8, 3), np.uint8), np.eye(8, dtype=bool))
    >>> img.size, img.getpixel((0, 0))[0] > 0, img.getpixel((1, 0))
    ((8, 8), True, (0, 0, 0))
    """
    base = np.asarray(load_image(image), dtype=np.float32)
    m = load_mask(mask, base.shape[:2])
    out = base.copy()
    col = np.array(color, np.float32)
    out[m] = (1 - alpha) * out[m] + alpha * col
    if outline and m.any():
        edge = m & ~(
            np.pad(m, 1)[2:, 1:-1] & np.pad(m, 1)[:-2, 1:-1]
            & np.pad(m, 1)[1:-1, 2:] & np.pad(m, 1)[1:-1, :-2]
        )  # fmt: skip
        out[edge] = col
    return _pil().fromarray(np.clip(out, 0, 255).astype(np.uint8))
