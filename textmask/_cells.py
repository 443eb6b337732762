"""Cell labelling of checked masks (private): the code behind ``patchify``, ``encode``
and cell-level ground truths."""

from __future__ import annotations

import numpy as np

from textmask import _kernels as K
from textmask._validate import edges
from textmask.grid import Grid

__all__ = ["label_cells", "mask_words"]


def label_cells(arr: np.ndarray, transposed: bool, grid: Grid) -> np.ndarray:
    """Anomalous cells of a mask checked by :func:`textmask._validate.as_mask`.

    ``arr`` is the C-contiguous ``uint8`` array ``as_mask`` returned and ``transposed``
    its flag; the result is ``bool (rows, cols)`` in the mask's own orientation.  A cell
    is anomalous when its fraction of non-zero pixels exceeds ``grid.threshold``; a cell
    that covers no pixel never is.
    """
    rows, cols = (grid.cols, grid.rows) if transposed else (grid.rows, grid.cols)
    re_, ce = edges(rows, cols, arr.shape[0], arr.shape[1])
    if grid.threshold == 0.0:
        cells = K.patch_any(mask_words(arr), re_, ce)
    else:
        counts = K.patch_count(arr, re_, ce)
        areas = np.outer(np.diff(re_), np.diff(ce))
        with np.errstate(divide="ignore", invalid="ignore"):
            cells = (areas > 0) & (counts / areas > grid.threshold)
    return np.ascontiguousarray(cells.T) if transposed else cells


def mask_words(arr: np.ndarray) -> np.ndarray:
    """View a C-contiguous ``uint8`` mask as ``uint64`` words when its width allows.

    :func:`textmask._kernels.patch_any` then ORs eight pixels per instruction.
    """
    return arr.view(np.uint64) if arr.shape[1] % 8 == 0 else arr
