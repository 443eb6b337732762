"""The "naive path" to the OmniAD detection reward, as a typical research codebase writes it.

Regex-parse the seg text, paint the runs onto a ``rows x cols`` cell grid, upsample the
grid to the ground truth's pixels with ``np.repeat``-style indexing (exact grid
geometry: cell ``r`` covers pixel rows ``floor(r*H/rows)`` to ``floor((r+1)*H/rows)``),
then compute F1 with NumPy sums over the full pixel masks.

The parser follows the tolerant grammar of :mod:`textmask` (pairs in ``()`` or ``[]``,
range marks ``-``, en/em dash, ``~`` and ``to``, runs across rows in row-major scan
order, clipping at the grid border), so that the benchmark can assert that this path
and :func:`textmask.detection_reward` give the same reward on every input before it
times them.  Nothing here is optimised: it is the baseline.
"""

from __future__ import annotations

import re

import numpy as np

__all__ = ["RUN_RE", "naive_decode_pixels", "naive_detection_reward", "paint_cells", "parse_runs"]

_WS = r"[ \t\n\r\x0b\x0c]"  # ASCII whitespace only, as in textmask
_NUM = r"(-?[0-9]+)"
_PAIR = rf"[(\[]{_WS}*{_NUM}(?:{_WS}*,{_WS}*|{_WS}+){_NUM}{_WS}*[)\]]"
_MARK = r"(?:-|\u2013|\u2014|~|to)"
#: One run: a pair, optionally followed by a range mark and a second pair.
RUN_RE = re.compile(rf"{_PAIR}(?:{_WS}*{_MARK}{_WS}*{_PAIR})?")


def parse_runs(text: str, index_base: int = 0) -> list[tuple[int, int, int, int]]:
    """All runs of a seg text as 0-based ``(r1, c1, r2, c2)`` (a single pair repeats)."""
    runs = []
    for m in RUN_RE.finditer(text):
        a, b, c, d = m.groups()
        r1, c1 = int(a) - index_base, int(b) - index_base
        if c is None:
            r2, c2 = r1, c1
        else:
            r2, c2 = int(c) - index_base, int(d) - index_base
        runs.append((r1, c1, r2, c2))
    return runs


def paint_cells(runs: list[tuple[int, int, int, int]], rows: int, cols: int) -> np.ndarray:
    """Boolean ``(rows, cols)`` grid of the runs' in-grid cells (row-major scan order)."""
    grid = np.zeros((rows, cols), dtype=bool)
    for r1, c1, r2, c2 in runs:
        if (r1, c1) > (r2, c2):
            r1, c1, r2, c2 = r2, c2, r1, c1
        if r1 == r2:
            if 0 <= r1 < rows:
                lo, hi = max(c1, 0), min(c2, cols - 1)
                if lo <= hi:
                    grid[r1, lo : hi + 1] = True
            continue
        if 0 <= r1 < rows and c1 < cols:  # first row: from c1 to the right edge
            grid[r1, max(c1, 0) :] = True
        lo, hi = min(max(r1 + 1, 0), rows), min(max(r2, 0), rows)
        if lo < hi:  # full rows in between
            grid[lo:hi, :] = True
        if 0 <= r2 < rows and c2 >= 0:  # last row: from the left edge to c2
            grid[r2, : min(c2, cols - 1) + 1] = True
    return grid


def naive_decode_pixels(
    text: str, shape: tuple[int, int], rows: int = 24, cols: int = 24, index_base: int = 0
) -> np.ndarray:
    """Pixel mask of a seg text at ``shape``: parse, paint, upsample with ``np.repeat``."""
    h, w = shape
    cells = paint_cells(parse_runs(text, index_base), rows, cols)
    row_edges = (np.arange(rows + 1) * h) // rows
    col_edges = (np.arange(cols + 1) * w) // cols
    row_of_pixel = np.repeat(np.arange(rows), np.diff(row_edges))
    col_of_pixel = np.repeat(np.arange(cols), np.diff(col_edges))
    return cells[row_of_pixel][:, col_of_pixel]


def naive_detection_reward(
    text: str,
    gt_mask: np.ndarray,
    rows: int = 24,
    cols: int = 24,
    alpha: float = 2.0,
    index_base: int = 0,
) -> float:
    """OmniAD detection reward: 1 if both empty, 0 if only the ground truth is, else alpha*F1."""
    gt = np.asarray(gt_mask) != 0
    pred = naive_decode_pixels(text, gt.shape, rows, cols, index_base)
    gt_sum = gt.sum()
    pred_sum = pred.sum()
    if gt_sum == 0:
        return 1.0 if pred_sum == 0 else 0.0
    tp = (pred & gt).sum()
    return float(alpha * (2.0 * tp / (pred_sum + gt_sum)))
