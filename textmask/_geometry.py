"""Grid geometry shared by :mod:`textmask.grid` and the input checks (private)."""

from __future__ import annotations

import numpy as np

__all__ = ["cell_edges"]


def cell_edges(n_pixels: int, n_cells: int) -> np.ndarray:
    """``floor(k * n_pixels / n_cells)`` for k = 0..n_cells, exactly (integer maths).

    The pixel boundaries of ``n_cells`` cells over ``n_pixels`` pixels, as ``int64``;
    the caller has checked both numbers (see :mod:`textmask._limits`).

    >>> cell_edges(10, 3).tolist()
    [0, 3, 6, 10]
    >>> cell_edges(2, 4).tolist()          # fewer pixels than cells: empty cells
    [0, 0, 1, 1, 2]
    """
    return (np.arange(n_cells + 1, dtype=np.int64) * n_pixels) // n_cells
