"""Input checks of :mod:`textmask` (private): everything a kernel must not see."""

from __future__ import annotations

import functools
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from textmask._errors import TextMaskError
from textmask._geometry import cell_edges
from textmask._limits import MAX_SIDE, check_pixels, check_side, max_pixels
from textmask.grid import MAX_CELLS, Grid

__all__ = [
    "as_alpha",
    "as_batch_output",
    "as_cells",
    "as_mask",
    "as_runs",
    "as_shape",
    "as_text_bytes",
    "char_offset",
    "edges",
    "join_texts",
]


def _describe(arr: np.ndarray) -> str:
    return f"shape {arr.shape} and dtype {arr.dtype}"


def as_mask(mask: Any, name: str = "mask") -> tuple[np.ndarray, bool]:
    """Check a 2-D mask and view it as C-contiguous ``uint8``.

    Returns ``(array, transposed)``; a Fortran-ordered mask comes back transposed
    (no copy) with ``transposed=True``.  Non-zero means anomalous, so wider integer
    dtypes are compared with 0 (one pass); bool and 1-byte integers are viewed.
    """
    if isinstance(mask, (str, bytes)):
        raise TextMaskError(
            f"{name} must be a 2-D array, got a {type(mask).__name__}; to read a seg "
            "text use textmask.decode"
        )
    try:
        arr = np.asarray(mask)
    except (ValueError, TypeError) as exc:  # ragged nested lists and the like
        raise TextMaskError(f"{name} could not be read as an array: {exc}") from None
    if arr.ndim != 2:
        hint = (
            "; for a stack of masks use encode_batch" if arr.ndim == 3 else "; pass one (H, W) mask"
        )
        raise TextMaskError(f"{name} must be 2-D (H, W), got {_describe(arr)}{hint}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise TextMaskError(f"{name} must have at least one pixel, got {_describe(arr)}")
    if arr.shape[0] * arr.shape[1] > max_pixels() or max(arr.shape) > MAX_SIDE:
        # checked before any copy or comparison below allocates H * W bytes
        as_shape(arr.shape, f"the {name} of shape", hint="; downscale the mask")
    kind = arr.dtype.kind
    if kind == "b" or (kind in "iu" and arr.dtype.itemsize == 1):
        u8 = arr.view(np.uint8)
    elif kind in "iu":
        u8 = (arr != 0).view(np.uint8)
    else:
        raise TextMaskError(
            f"{name} must have a bool or integer dtype (non-zero = anomalous), got "
            f"{_describe(arr)}; threshold a score map first, e.g. (scores > 0.5)"
        )
    if u8.flags.c_contiguous:
        return u8, False
    if u8.flags.f_contiguous:
        return u8.T, True
    return np.ascontiguousarray(u8), False


def as_cells(cells: Any, grid: Grid | None = None, name: str = "cells") -> np.ndarray:
    """Check a cell grid (bool or 0/1 integers) and return it as C-contiguous bool."""
    try:
        arr = np.asarray(cells)
    except (ValueError, TypeError) as exc:
        raise TextMaskError(f"{name} could not be read as an array: {exc}") from None
    if arr.ndim != 2:
        raise TextMaskError(f"{name} must be a 2-D (rows, cols) grid, got {_describe(arr)}")
    if grid is not None and arr.shape != grid.shape:
        raise TextMaskError(
            f"{name} must have the grid's shape {grid.shape}, got {arr.shape}; pass "
            f"grid={arr.shape} if that is the grid you mean"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise TextMaskError(f"{name} must have at least one cell, got {_describe(arr)}")
    if arr.shape[0] * arr.shape[1] > MAX_CELLS:
        raise TextMaskError(
            f"{name} has {arr.shape[0]} x {arr.shape[1]} cells; a grid has at most "
            f"{MAX_CELLS} cells (textmask.grid.MAX_CELLS)"
        )
    if arr.dtype.kind == "b":
        return np.ascontiguousarray(arr)
    if arr.dtype.kind in "iu":
        return np.ascontiguousarray(arr != 0)
    raise TextMaskError(f"{name} must be a bool or integer array, got {_describe(arr)}")


def as_runs(runs: Any, grid: Grid | None = None) -> np.ndarray:
    """Check an ``(n, 3)`` array of 0-based ``(row, c1, c2)`` runs."""
    try:
        arr = np.asarray(runs)
    except (ValueError, TypeError) as exc:
        raise TextMaskError(f"runs could not be read as an array: {exc}") from None
    if arr.size == 0:
        return np.zeros((0, 3), np.int64)
    if arr.ndim != 2 or arr.shape[1] != 3 or arr.dtype.kind not in "iu":
        raise TextMaskError(
            f"runs must be an integer array of shape (n, 3) holding (row, first "
            f"column, last column), got {_describe(arr)}"
        )
    arr = np.ascontiguousarray(arr, dtype=np.int64)
    # indices of any grid are below MAX_CELLS; larger ones would overflow the text writer
    bad = (arr < 0).any(axis=1) | (arr[:, 2] < arr[:, 1]) | (arr >= MAX_CELLS).any(axis=1)
    if grid is not None:
        bad |= (arr[:, 0] >= grid.rows) | (arr[:, 2] >= grid.cols)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        where = "" if grid is None else f" inside a {grid.rows} x {grid.cols} grid"
        raise TextMaskError(
            f"run {k} = {arr[k].tolist()} is not a valid 0-based (row, c1, c2) run"
            f"{where}; runs need 0 <= c1 <= c2 and indices below {MAX_CELLS}, the most "
            "cells a grid may have"
        )
    return arr


_SHAPE_HINT = (
    "; decode to cells (no shape) and score with textmask.GroundTruth, which never builds "
    "the pixel mask"
)


def as_shape(shape: Any, name: str = "shape", hint: str = _SHAPE_HINT) -> tuple[int, int]:
    """Check a target pixel shape ``(H, W)``: sides in ``[1, MAX_SIDE]``, ``H * W`` at most
    :func:`~textmask.max_pixels`."""
    if (  # fast path for the common case
        type(shape) is tuple
        and len(shape) == 2
        and type(shape[0]) is int
        and type(shape[1]) is int
        and 1 <= shape[0] <= MAX_SIDE
        and 1 <= shape[1] <= MAX_SIDE
        and shape[0] * shape[1] <= max_pixels()
    ):
        return shape
    if (
        not isinstance(shape, Sequence)
        or isinstance(shape, (str, bytes))
        or len(shape) != 2
        or not all(
            isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_)) for v in shape
        )
    ):
        raise TextMaskError(f"{name} must be a pair of ints (H, W), got {shape!r}")
    h, w = int(shape[0]), int(shape[1])
    if h < 1 or w < 1:
        raise TextMaskError(f"{name} must be at least (1, 1), got {(h, w)}")
    check_side(f"{name} {(h, w)}: the height", h)
    check_side(f"{name} {(h, w)}: the width", w)
    check_pixels(f"{name} {(h, w)}", h * w, hint=hint)
    return h, w


def as_batch_output(n: int, shape: tuple[int, int], kind: str) -> None:
    """Check that ``n`` outputs of ``shape`` stay within :func:`~textmask.max_pixels`."""
    if n * shape[0] * shape[1] > max_pixels():
        check_pixels(
            f"the output of {n} {kind} of {shape[0]} x {shape[1]}",
            n * shape[0] * shape[1],
            hint="; decode the batch in smaller chunks",
            unit="elements",
        )


def as_text_bytes(text: Any) -> np.ndarray:
    """UTF-8 bytes of a seg text as a ``uint8`` array (lone surrogates pass through)."""
    if isinstance(text, str):
        data = text.encode("utf-8", "surrogatepass")
    elif isinstance(text, (bytes, bytearray)):
        data = bytes(text)
    else:
        raise TextMaskError(
            f"text must be a str, got {type(text).__name__}; pass the content of the "
            "<seg> block (use '' for no anomaly)"
        )
    return np.frombuffer(data, dtype=np.uint8)


def join_texts(texts: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Check seg texts and concatenate them into one ``uint8`` buffer plus ``int64``
    offsets: text ``k`` is ``buf[offsets[k]:offsets[k + 1]]`` (the batch kernels' input).
    """
    parts = []
    for k, t in enumerate(texts):
        try:
            parts.append(
                as_text_bytes(t).tobytes()
                if not isinstance(t, str)
                else t.encode("utf-8", "surrogatepass")
            )
        except TextMaskError as exc:
            raise TextMaskError(f"text {k} of the batch: {exc}") from None
    offsets = np.zeros(len(parts) + 1, np.int64)
    np.add.accumulate(np.fromiter(map(len, parts), np.int64, len(parts)), out=offsets[1:])
    return np.frombuffer(b"".join(parts), dtype=np.uint8), offsets


def as_alpha(alpha: Any) -> float:
    """Check the scale of the reward's F1 term: a finite number."""
    try:
        a = float(alpha)
    except (TypeError, ValueError):
        raise TextMaskError(f"alpha must be a number, got {alpha!r}") from None
    if not np.isfinite(a):
        raise TextMaskError(f"alpha must be finite, got {alpha!r}")
    return a


def char_offset(text: Any, byte_offset: int) -> int:
    """Character offset of a byte offset into the UTF-8 form of ``text``."""
    if not isinstance(text, str) or text.isascii():
        return byte_offset
    return len(text.encode("utf-8", "surrogatepass")[:byte_offset].decode("utf-8", "surrogatepass"))


@functools.lru_cache(maxsize=256)
def _cached_edges(n_pixels: int, n_cells: int) -> np.ndarray:
    return cell_edges(n_pixels, n_cells)  # internal only: never handed to users


def edges(rows: int, cols: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column edges of a ``rows x cols`` grid over a ``height x width`` image."""
    return _cached_edges(height, rows), _cached_edges(width, cols)
