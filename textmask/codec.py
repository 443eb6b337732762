"""Encode masks as text and decode text to masks (see the package docstring)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, overload

import numpy as np

from textmask import _kernels as K
from textmask._cells import label_cells, mask_words
from textmask._errors import TextMaskError
from textmask._validate import (
    as_batch_output,
    as_cells,
    as_mask,
    as_runs,
    as_shape,
    as_text_bytes,
    char_offset,
    edges,
    join_texts,
)
from textmask.grid import Grid, GridLike

__all__ = [
    "DecodeReport",
    "cells_to_runs",
    "decode",
    "decode_batch",
    "encode",
    "encode_batch",
    "is_canonical",
    "patchify",
    "runs_to_cells",
    "runs_to_text",
    "text_to_runs",
    "unpatchify",
]

_STRICT_MESSAGES = {
    K.E_OPEN: "expected '(' opening a pair",
    K.E_NUMBER: "expected a number",
    K.E_LEADING_ZERO: "a number has a leading zero (canonical numbers have none)",
    K.E_COMMA: "expected ',' between the row and the column of a pair",
    K.E_CLOSE: "expected ')' closing a pair",
    K.E_SEPARATOR: "expected ', ' before the next run, or the end of the text",
    K.E_OUT_OF_GRID: "a pair lies outside the grid",
    K.E_RANGE_ROWS: "a range ends in another row (canonical runs stay in one row)",
    K.E_RANGE_ORDER: "a range must end in a column greater than where it starts",
    K.E_ORDER: "runs must come in row-major order without overlap",
    K.E_NOT_MAXIMAL: "this run touches the previous one; canonical runs are maximal",
    K.E_TRAILING: "a trailing ',' ends the text",
}


@dataclass(frozen=True)
class DecodeReport:
    """What tolerant decoding read, dropped and skipped.

    Attributes
    ----------
    runs : int
        Pairs and ranges read.
    runs_clipped : int
        Runs with at least one cell outside the grid (their in-grid part is kept).
    cells_dropped : int
        Cells outside the grid referenced by runs (saturates at ``2**62``).
    chars_skipped : int
        Characters that are neither part of a run, nor whitespace, ``,`` or ``;``.
    first_problem : int or None
        Character offset of the first skipped character or clipped run.
    """

    runs: int
    runs_clipped: int
    cells_dropped: int
    chars_skipped: int
    first_problem: int | None

    @property
    def clean(self) -> bool:
        """True when nothing was skipped or dropped."""
        return self.first_problem is None

    @classmethod
    def _from_stats(cls, stats: np.ndarray, text: Any) -> DecodeReport:
        first = int(stats[4])
        return cls(
            int(stats[0]),
            int(stats[1]),
            int(stats[2]),
            int(stats[3]),
            None if first < 0 else char_offset(text, first),
        )


# --------------------------------------------------------------------------- cells
def patchify(mask: Any, grid: GridLike = 24, *, threshold: float | None = None) -> np.ndarray:
    """Label the cells of a grid laid over a pixel mask.

    Parameters
    ----------
    mask : array_like, shape (H, W)
        Bool or integer mask; non-zero is anomalous.  Any memory layout.
    grid : int, (rows, cols) or Grid
        The grid (default 24 x 24).
    threshold : float, optional
        A cell is anomalous when its anomalous fraction exceeds this (default: the
        grid's, 0.0 for an int grid).

    Returns
    -------
    numpy.ndarray of bool, shape (rows, cols)

    Examples
    --------
    >>> m = np.zeros((4, 6), dtype=bool); m[0, 0] = m[3, 4:] = True
    >>> patchify(m, (2, 3)).astype(int)
    array([[1, 0, 0],
           [0, 0, 1]])
    >>> patchify(m, (2, 3), threshold=0.5).astype(int)
    array([[0, 0, 0],
           [0, 0, 0]])
    """
    g = Grid.of(grid, threshold=threshold)
    arr, transposed = as_mask(mask)
    return label_cells(arr, transposed, g)


def unpatchify(cells: Any, shape: Sequence[int]) -> np.ndarray:
    """Paint cells back onto a pixel mask of ``shape`` with the grid geometry.

    >>> unpatchify(np.array([[True, False]]), (2, 5)).astype(int)
    array([[1, 1, 0, 0, 0],
           [1, 1, 0, 0, 0]])
    """
    c = as_cells(cells)
    h, w = as_shape(shape)
    re_, ce = edges(c.shape[0], c.shape[1], h, w)
    return K.unpatch(c, re_, ce)


# --------------------------------------------------------------------------- runs
def cells_to_runs(cells: Any) -> np.ndarray:
    """Maximal row-wise runs of a cell grid as ``int64 (n, 3)``: row, c1, c2 (0-based).

    >>> cells_to_runs([[0, 1, 1], [1, 0, 1]]).tolist()
    [[0, 1, 2], [1, 0, 0], [1, 2, 2]]
    """
    return K.cells_runs(as_cells(cells))


def runs_to_cells(runs: Any, grid: GridLike = 24) -> np.ndarray:
    """Cell grid holding 0-based ``(row, c1, c2)`` runs (overlaps are united).

    >>> runs_to_cells([[0, 1, 2]], (1, 4)).astype(int)
    array([[0, 1, 1, 0]])
    """
    g = Grid.of(grid)
    return K.runs_fill(as_runs(runs, g), g.rows, g.cols)


def runs_to_text(runs: Any, *, index_base: int = 0) -> str:
    """Write 0-based ``(row, c1, c2)`` runs as text, in the given order.

    Canonical runs (from :func:`cells_to_runs`) give canonical text.

    >>> runs_to_text([[3, 4, 6], [4, 5, 5]])
    '(3, 4)-(3, 6), (4, 5)'
    >>> runs_to_text([[0, 0, 0]], index_base=1)
    '(1, 1)'
    """
    base = Grid.of(1, index_base=index_base).index_base
    arr = as_runs(runs)
    if arr.shape[0] == 0:
        return ""
    return K.runs_text(arr, base, int(arr.max())).tobytes().decode("ascii")


def text_to_runs(
    text: str, grid: GridLike = 24, *, strict: bool = False, index_base: int | None = None
) -> np.ndarray:
    """Canonical 0-based runs of a text (decoded tolerantly unless ``strict``).

    >>> text_to_runs("(3, 6)-(3, 4); [3, 5] and (4,5)").tolist()
    [[3, 4, 6], [4, 5, 5]]
    """
    return K.cells_runs(decode(text, grid, strict=strict, index_base=index_base))


# --------------------------------------------------------------------------- text
def encode(
    mask: Any,
    grid: GridLike = 24,
    *,
    threshold: float | None = None,
    index_base: int | None = None,
) -> str:
    """Encode a pixel mask as canonical text.

    Parameters
    ----------
    mask : array_like, shape (H, W)
        Bool or integer mask (non-zero = anomalous), any layout and size.
    grid : int, (rows, cols) or Grid
        The grid (default 24 x 24).
    threshold, index_base : optional
        Override the grid's labelling threshold (default 0.0) and index base (0).

    Returns
    -------
    str
        The canonical text; ``''`` when no cell is anomalous.

    Raises
    ------
    TextMaskError
        If the mask is not 2-D, is empty, or has a non-integer dtype.

    Examples
    --------
    >>> m = np.zeros((48, 48), dtype=np.uint8)
    >>> m[6:8, 8:14] = 1; m[9, 10] = 1
    >>> encode(m)
    '(3, 4)-(3, 6), (4, 5)'
    >>> encode(m, (12, 12), index_base=1)
    '(2, 3)-(2, 4), (3, 3)'
    >>> encode(np.zeros((5, 5), bool))
    ''
    """
    g = Grid.of(grid, threshold=threshold, index_base=index_base)
    arr, transposed = as_mask(mask)
    if transposed or g.threshold != 0.0:
        cells = label_cells(arr, transposed, g)
    else:
        re_, ce = edges(g.rows, g.cols, arr.shape[0], arr.shape[1])
        return K.encode_any(mask_words(arr), re_, ce, g.index_base).tobytes().decode("ascii")
    return K.cells_text(cells, g.index_base).tobytes().decode("ascii")


@overload
def decode(
    text: str,
    grid: GridLike = ...,
    *,
    shape: Sequence[int] | None = ...,
    strict: bool = ...,
    index_base: int | None = ...,
    report: Literal[False] = ...,
) -> np.ndarray: ...
@overload
def decode(
    text: str,
    grid: GridLike = ...,
    *,
    shape: Sequence[int] | None = ...,
    strict: bool = ...,
    index_base: int | None = ...,
    report: Literal[True],
) -> tuple[np.ndarray, DecodeReport]: ...
def decode(
    text: str,
    grid: GridLike = 24,
    *,
    shape: Sequence[int] | None = None,
    strict: bool = False,
    index_base: int | None = None,
    report: bool = False,
) -> np.ndarray | tuple[np.ndarray, DecodeReport]:
    """Decode a seg text to a cell grid or a pixel mask.

    Parameters
    ----------
    text : str
        The content of a ``<seg>`` block.  Any string decodes tolerantly.
    grid : int, (rows, cols) or Grid
        The grid the text was written for (default 24 x 24).
    shape : (H, W), optional
        Return a pixel mask of this size instead of the cell grid.
    strict : bool
        Accept only canonical text (any whitespace between tokens) and raise
        :class:`TextMaskError` otherwise.
    index_base : int, optional
        Override the grid's index base (default 0).
    report : bool
        Also return a :class:`DecodeReport` (tolerant mode; in strict mode the
        report is clean or an error was raised).

    Returns
    -------
    numpy.ndarray of bool
        ``(rows, cols)`` cells, or ``(H, W)`` pixels when ``shape`` is given; with
        ``report=True``, a pair ``(array, DecodeReport)``.

    Examples
    --------
    >>> decode("(0, 1)-(0, 2)", (2, 3)).astype(int)
    array([[0, 1, 1],
           [0, 0, 0]])
    >>> cells, rep = decode("[0,2] ~ [0, 1]\\n(9, 9) none", (2, 3), report=True)
    >>> cells.astype(int)
    array([[0, 1, 1],
           [0, 0, 0]])
    >>> rep
    DecodeReport(runs=2, runs_clipped=1, cells_dropped=1, chars_skipped=4, first_problem=15)
    >>> decode("(0, 1)-(0, 2)", (2, 3), shape=(2, 6)).astype(int)
    array([[0, 0, 1, 1, 1, 1],
           [0, 0, 0, 0, 0, 0]])
    >>> decode("(0, 1), (0, 2)", (2, 3), strict=True)
    Traceback (most recent call last):
    ...
    textmask._errors.TextMaskError: strict decoding failed at character 8: this run touches the previous one; canonical runs are maximal (near '(0, 2)'); the canonical text of what was read is '(0, 1)-(0, 2)'
    """
    g = Grid.of(grid, index_base=index_base)
    pixel_shape = None if shape is None else as_shape(shape)
    buf = as_text_bytes(text)
    if strict:
        cells = _decode_strict(buf, text, g)
        rep = DecodeReport(0, 0, 0, 0, None)
        if report:
            rep = DecodeReport(int(K.cells_runs(cells).shape[0]), 0, 0, 0, None)
    elif pixel_shape is not None:  # one fused kernel call: the RL hot path
        re_, ce = edges(g.rows, g.cols, *pixel_shape)
        out, stats = K.decode_pixels(buf, re_, ce, g.index_base)
        return (out, DecodeReport._from_stats(stats, text)) if report else out
    else:
        cells, stats = K.decode_cells(buf, g.rows, g.cols, g.index_base)
        rep = DecodeReport._from_stats(stats, text) if report else None
    out = cells
    if pixel_shape is not None:
        re_, ce = edges(g.rows, g.cols, *pixel_shape)
        out = K.unpatch(cells, re_, ce)
    return (out, rep) if report else out


def is_canonical(text: str, grid: GridLike = 24, *, index_base: int | None = None) -> bool:
    """True when ``decode(text, grid, strict=True)`` would succeed (one strict scan, no error).

    >>> is_canonical("(0, 1)-(0, 2)", 3), is_canonical("(0, 1), (0, 2)", 3), is_canonical("")
    (True, False, True)
    """
    g = Grid.of(grid, index_base=index_base)
    return K.decode_strict(as_text_bytes(text), g.rows, g.cols, g.index_base)[1] == K.OK


def _decode_strict(buf: np.ndarray, text: Any, g: Grid) -> np.ndarray:
    cells, status, off = K.decode_strict(buf, g.rows, g.cols, g.index_base)
    if status == K.OK:
        return cells
    s = text if isinstance(text, str) else bytes(text).decode("utf-8", "replace")
    pos = char_offset(s, int(off))
    near = s[pos : pos + 16]
    msg = _STRICT_MESSAGES[int(status)]
    if status == K.E_OUT_OF_GRID:
        msg += f" of {g.rows} x {g.cols} cells with index base {g.index_base}"
    tolerant, _ = K.decode_cells(buf, g.rows, g.cols, g.index_base)
    hint = K.cells_text(tolerant, g.index_base).tobytes().decode("ascii")
    raise TextMaskError(
        f"strict decoding failed at character {pos}: {msg} (near {near!r}); the "
        f"canonical text of what was read is {hint!r}"
    )


# --------------------------------------------------------------------------- batches
def encode_batch(
    masks: Iterable[Any] | np.ndarray,
    grid: GridLike = 24,
    *,
    threshold: float | None = None,
    index_base: int | None = None,
) -> list[str]:
    """Encode many masks (a sequence of 2-D masks or an ``(N, H, W)`` array).

    >>> encode_batch(np.eye(2, dtype=bool)[None].repeat(2, axis=0), 2)
    ['(0, 0), (1, 1)', '(0, 0), (1, 1)']
    """
    g = Grid.of(grid, threshold=threshold, index_base=index_base)
    if isinstance(masks, np.ndarray) and masks.ndim != 3:
        raise TextMaskError(
            f"a mask batch must be (N, H, W) or a list of (H, W) masks, got shape {masks.shape}"
        )
    out = []
    for k, m in enumerate(masks):
        try:
            out.append(encode(m, g))
        except TextMaskError as exc:
            raise TextMaskError(f"mask {k} of the batch: {exc}") from None
    return out


def decode_batch(
    texts: Sequence[str],
    grid: GridLike = 24,
    *,
    shape: Sequence[int] | None = None,
    strict: bool = False,
    index_base: int | None = None,
) -> np.ndarray:
    """Decode many texts at once into an ``(N, rows, cols)`` or ``(N, H, W)`` array.

    >>> decode_batch(["(0, 0)", "", "(1, 0)-(1, 1)"], 2).astype(int).tolist()
    [[[1, 0], [0, 0]], [[0, 0], [0, 0]], [[0, 0], [1, 1]]]
    """
    g = Grid.of(grid, index_base=index_base)
    pixel_shape = None if shape is None else as_shape(shape)
    if isinstance(texts, (str, bytes, bytearray)):
        raise TextMaskError(
            f"decode_batch takes a sequence of texts, got one {type(texts).__name__}; use "
            "decode for a single text, or pass [text]"
        )
    texts = list(texts)
    as_batch_output(len(texts), g.shape, "cell grids")
    if pixel_shape is not None:
        as_batch_output(len(texts), pixel_shape, "pixel masks")
    if strict:
        cells = np.zeros((len(texts), g.rows, g.cols), np.bool_)
        for k, t in enumerate(texts):
            try:
                cells[k] = _decode_strict(as_text_bytes(t), t, g)
            except TextMaskError as exc:
                raise TextMaskError(f"text {k} of the batch: {exc}") from None
    else:
        buf, offsets = join_texts(texts)
        cells, _ = K.decode_many(buf, offsets, g.rows, g.cols, g.index_base)
    if pixel_shape is None:
        return cells
    re_, ce = edges(g.rows, g.cols, *pixel_shape)
    out = np.empty((len(texts), *pixel_shape), np.bool_)
    for k in range(len(texts)):
        out[k] = K.unpatch(cells[k], re_, ce)
    return out
