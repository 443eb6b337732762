"""Numba kernels of :mod:`textmask` (private).

Kernels trust their arguments: the public layer has already checked dtypes, shapes,
contiguity and ranges.  Masks arrive as C-contiguous ``uint8`` 2-D arrays, cell grids
as C-contiguous ``bool`` arrays, text as the UTF-8 bytes of a ``str`` in a ``uint8``
array, edges as ``int64`` arrays from :func:`textmask._geometry.cell_edges`.  No kernel reads a
module global other than the constants below, which Numba freezes at compile time.
"""

from __future__ import annotations

import functools

import numba
import numpy as np

__all__ = [
    "CAP",
    "E_CLOSE",
    "E_COMMA",
    "E_LEADING_ZERO",
    "E_NOT_MAXIMAL",
    "E_NUMBER",
    "E_OPEN",
    "E_ORDER",
    "E_OUT_OF_GRID",
    "E_RANGE_ORDER",
    "E_RANGE_ROWS",
    "E_SEPARATOR",
    "E_TRAILING",
    "OK",
    "STATS",
    "cells_runs",
    "cells_text",
    "decode_cells",
    "decode_many",
    "decode_pixels",
    "decode_strict",
    "encode_any",
    "jit",
    "patch_any",
    "patch_count",
    "reward_many",
    "reward_of",
    "runs_fill",
    "runs_text",
    "unpatch",
]

#: One decorator for every kernel: compiled once, cached on disk, GIL released.
jit = functools.partial(numba.njit, cache=True, nogil=True)

#: Numbers are saturated at this magnitude while being read.
CAP = 2**31 - 1
#: Cap of the dropped-cell counter.
_DROP_CAP = 2**62
#: Order of the tolerant-decoding statistics.
STATS = ("runs", "runs_clipped", "cells_dropped", "chars_skipped", "first_problem")

# byte values
_LPAR, _RPAR, _LBRK, _RBRK = 40, 41, 91, 93
_COMMA, _SEMI, _MINUS, _TILDE = 44, 59, 45, 126
_ZERO, _NINE = 48, 57

# strict-decoding status codes (messages live in codec.py)
OK = 0
E_OPEN = 1
E_NUMBER = 2
E_LEADING_ZERO = 3
E_COMMA = 4
E_CLOSE = 5
E_SEPARATOR = 6
E_OUT_OF_GRID = 7
E_RANGE_ROWS = 8
E_RANGE_ORDER = 9
E_ORDER = 10
E_NOT_MAXIMAL = 11
E_TRAILING = 12


# --------------------------------------------------------------------------- masks
@jit
def patch_any(mask, redges, cedges):
    """Cells holding at least one non-zero pixel (threshold 0).

    ``mask`` is ``uint8 (H, W)``, or the same bytes viewed as ``uint64 (H, W / 8)``
    when ``W`` is a multiple of 8 (eight pixels OR-ed per instruction).
    """
    rows = redges.size - 1
    cols = cedges.size - 1
    nw = mask.shape[1]
    out = np.zeros((rows, cols), np.bool_)
    acc = np.empty(nw, mask.dtype)
    accb = acc.view(np.uint8)
    for r in range(rows):
        y0 = redges[r]
        y1 = redges[r + 1]
        if y0 == y1:
            continue
        for x in range(nw):
            acc[x] = mask[y0, x]
        for y in range(y0 + 1, y1):
            for x in range(nw):
                acc[x] |= mask[y, x]
        band = acc[0]
        for x in range(1, nw):
            band |= acc[x]
        if band == 0:  # nothing in this band of rows: skip the per-cell reduction
            continue
        for c in range(cols):
            v = np.uint8(0)
            for x in range(cedges[c], cedges[c + 1]):
                v |= accb[x]
            out[r, c] = v != 0
    return out


@jit
def patch_count(mask, redges, cedges):
    """Number of non-zero pixels in every cell, as ``int64 (rows, cols)``."""
    rows = redges.size - 1
    cols = cedges.size - 1
    width = mask.shape[1]
    out = np.zeros((rows, cols), np.int64)
    acc = np.empty(width, np.int32)
    for r in range(rows):
        y0 = redges[r]
        y1 = redges[r + 1]
        if y0 == y1:
            continue
        acc[:] = 0
        for y in range(y0, y1):
            row = mask[y]
            for x in range(width):
                acc[x] += row[x] != 0
        for c in range(cols):
            s = 0
            for x in range(cedges[c], cedges[c + 1]):
                s += acc[x]
            out[r, c] = s
    return out


@jit
def unpatch(cells, redges, cedges):
    """Pixel mask of the cells, at the size the edges describe."""
    rows, cols = cells.shape
    height = redges[rows]
    width = cedges[cols]
    out = np.empty((height, width), np.bool_)
    for r in range(rows):
        y0 = redges[r]
        y1 = redges[r + 1]
        if y0 == y1:
            continue
        first = out[y0]
        for c in range(cols):
            v = cells[r, c]
            for x in range(cedges[c], cedges[c + 1]):
                first[x] = v
        for y in range(y0 + 1, y1):
            dst = out[y]
            for x in range(width):
                dst[x] = first[x]
    return out


# --------------------------------------------------------------------------- runs
@jit
def _count_runs(cells):
    rows, cols = cells.shape
    n = 0
    for r in range(rows):
        prev = False
        for c in range(cols):
            v = cells[r, c]
            if v and not prev:
                n += 1
            prev = v
    return n


@jit
def cells_runs(cells):
    """Maximal row-wise runs as ``int64 (n, 3)``: row, first column, last column."""
    rows, cols = cells.shape
    out = np.empty((_count_runs(cells), 3), np.int64)
    k = 0
    for r in range(rows):
        c = 0
        while c < cols:
            if cells[r, c]:
                s = c
                while c + 1 < cols and cells[r, c + 1]:
                    c += 1
                out[k, 0] = r
                out[k, 1] = s
                out[k, 2] = c
                k += 1
            c += 1
    return out


@jit
def runs_fill(runs, rows, cols):
    """Cell grid of (row, c1, c2) runs that are known to lie inside the grid."""
    out = np.zeros((rows, cols), np.bool_)
    for k in range(runs.shape[0]):
        r = runs[k, 0]
        for c in range(runs[k, 1], runs[k, 2] + 1):
            out[r, c] = True
    return out


@jit
def _ndigits(v):
    n = 1
    while v >= 10:
        v //= 10
        n += 1
    return n


@jit
def _put_int(out, pos, v):
    n = _ndigits(v)
    p = pos + n
    while True:
        p -= 1
        out[p] = _ZERO + v % 10
        v //= 10
        if v == 0:
            break
    return pos + n


@jit
def _put_pair(out, pos, r, c):
    out[pos] = _LPAR
    pos = _put_int(out, pos + 1, r)
    out[pos] = _COMMA
    out[pos + 1] = 32
    pos = _put_int(out, pos + 2, c)
    out[pos] = _RPAR
    return pos + 1


@jit
def runs_text(runs, base, maxval):
    """Canonical text bytes of runs, written with ``index_base`` ``base``."""
    n = runs.shape[0]
    d = _ndigits(maxval + base)
    out = np.empty(n * (11 + 4 * d), np.uint8)
    pos = 0
    for k in range(n):
        if k > 0:
            out[pos] = _COMMA
            out[pos + 1] = 32
            pos += 2
        r = runs[k, 0] + base
        pos = _put_pair(out, pos, r, runs[k, 1] + base)
        if runs[k, 2] != runs[k, 1]:
            out[pos] = _MINUS
            pos = _put_pair(out, pos + 1, r, runs[k, 2] + base)
    return out[:pos]


@jit
def encode_any(mask, redges, cedges, base):
    """``cells_text(patch_any(...))`` in one call: the threshold-0 encode."""
    return cells_text(patch_any(mask, redges, cedges), base)


@jit
def cells_text(cells, base):
    """Canonical text bytes of a cell grid."""
    rows, cols = cells.shape
    return runs_text(cells_runs(cells), base, max(rows, cols) - 1)


# --------------------------------------------------------------------------- parsing
@jit
def _is_ws(b):
    return b == 32 or (b >= 9 and b <= 13)


@jit
def _skip_ws(buf, i, end):
    while i < end and _is_ws(buf[i]):
        i += 1
    return i


@jit
def _is_digit(b):
    return b >= _ZERO and b <= _NINE


@jit
def _read_num(buf, i, end):
    """Optional '-' and digits at ``i``: (ok, value saturated at CAP, next index)."""
    neg = False
    if i < end and buf[i] == _MINUS:
        neg = True
        i += 1
    if i >= end or not _is_digit(buf[i]):
        return False, 0, i
    v = 0
    while i < end and _is_digit(buf[i]):
        v = v * 10 + (int(buf[i]) - _ZERO)
        if v > CAP:
            v = CAP
        i += 1
    return True, -v if neg else v, i


@jit
def _read_pair(buf, i, end):
    """A tolerant pair opening at ``buf[i]``: (ok, row, col, index after it)."""
    j = _skip_ws(buf, i + 1, end)
    ok, a, j = _read_num(buf, j, end)
    if not ok:
        return False, 0, 0, j
    k = _skip_ws(buf, j, end)
    if k < end and buf[k] == _COMMA:
        k = _skip_ws(buf, k + 1, end)
    elif k == j:
        return False, 0, 0, k
    ok, b, k = _read_num(buf, k, end)
    if not ok:
        return False, 0, 0, k
    k = _skip_ws(buf, k, end)
    if k < end and (buf[k] == _RPAR or buf[k] == _RBRK):
        return True, a, b, k + 1
    return False, 0, 0, k


@jit
def _range_mark(buf, i, end):
    """Length in bytes of a range mark at ``i`` (0 if none)."""
    if i >= end:
        return 0
    b = buf[i]
    if b == _MINUS or b == _TILDE:
        return 1
    if b == 116 and i + 1 < end and buf[i + 1] == 111:  # "to"
        return 2
    if (
        b == 0xE2
        and i + 2 < end
        and buf[i + 1] == 0x80
        and (buf[i + 2] == 0x93 or buf[i + 2] == 0x94)
    ):
        return 3  # en dash, em dash
    return 0


@jit
def _add_run(r1, c1, r2, c2, rows, cols, diff):
    """Mark the in-grid part of a run in ``diff``; return the number of dropped cells."""
    if r1 > r2 or (r1 == r2 and c1 > c2):
        r1, c1, r2, c2 = r2, c2, r1, c1
    if r1 == r2:
        total = c2 - c1 + 1
        kept = 0
        if r1 >= 0 and r1 < rows:
            lo = max(c1, 0)
            hi = min(c2, cols - 1)
            if lo <= hi:
                kept = hi - lo + 1
                diff[r1 * cols + lo] += 1
                diff[r1 * cols + hi + 1] -= 1
        return total - kept
    total = (max(c1, cols - 1) - c1 + 1) + (r2 - r1 - 1) * cols + (c2 - min(0, c2) + 1)
    if r1 >= 0 and r1 < rows and c1 <= cols - 1:
        p1 = r1 * cols + max(c1, 0)
    else:
        p1 = max(r1 + 1, 0) * cols
    if r2 >= 0 and r2 < rows and c2 >= 0:
        p2 = r2 * cols + min(c2, cols - 1)
    else:
        p2 = min(r2, rows) * cols - 1
    kept = 0
    if p1 <= p2:
        kept = p2 - p1 + 1
        diff[p1] += 1
        diff[p2 + 1] -= 1
    return total - kept


@jit
def _is_skippable(b):
    """Bytes that never count as skipped text: whitespace, separators, continuations."""
    return _is_ws(b) or b == _COMMA or b == _SEMI or (b >= 0x80 and b < 0xC0)


@jit
def _scan(buf, start, end, rows, cols, base, diff, stats):
    """Tolerant scan of ``buf[start:end]`` into the difference array ``diff``.

    ``stats`` receives the values named in ``STATS``; ``first_problem`` is a byte
    offset relative to ``start``, or -1.
    """
    n_runs = 0
    n_clipped = 0
    dropped = 0
    skipped = 0
    first = -1
    i = start
    while i < end:
        b = buf[i]
        if b == _LPAR or b == _LBRK:
            ok, r1, c1, j = _read_pair(buf, i, end)
            if ok:
                r2 = r1
                c2 = c1
                k = _skip_ws(buf, j, end)
                m = _range_mark(buf, k, end)
                if m > 0:
                    k = _skip_ws(buf, k + m, end)
                    if k < end and (buf[k] == _LPAR or buf[k] == _LBRK):
                        ok2, rr, cc, k2 = _read_pair(buf, k, end)
                        if ok2:
                            r2 = rr
                            c2 = cc
                            j = k2
                d = _add_run(r1 - base, c1 - base, r2 - base, c2 - base, rows, cols, diff)
                n_runs += 1
                if d > 0:
                    n_clipped += 1
                    dropped = min(dropped + d, _DROP_CAP)
                    if first < 0:
                        first = i - start
                i = j
                continue
        if not _is_skippable(b):
            skipped += 1
            if first < 0:
                first = i - start
        i += 1
    stats[0] = n_runs
    stats[1] = n_clipped
    stats[2] = dropped
    stats[3] = skipped
    stats[4] = first


@jit
def _diff_to_cells(diff, out):
    acc = 0
    for p in range(out.size):
        acc += diff[p]
        out[p] = acc > 0


@jit
def decode_cells(buf, rows, cols, base):
    """Tolerant decode of one text: (bool cells (rows, cols), int64 stats)."""
    diff = np.zeros(rows * cols + 1, np.int64)
    stats = np.empty(5, np.int64)
    _scan(buf, 0, buf.size, rows, cols, base, diff, stats)
    out = np.empty(rows * cols, np.bool_)
    _diff_to_cells(diff, out)
    return out.reshape((rows, cols)), stats


@jit
def decode_pixels(buf, redges, cedges, base):
    """Tolerant decode of one text straight to a pixel mask."""
    cells, stats = decode_cells(buf, redges.size - 1, cedges.size - 1, base)
    return unpatch(cells, redges, cedges), stats


@jit
def decode_many(buf, offsets, rows, cols, base):
    """Tolerant decode of texts ``buf[offsets[n]:offsets[n+1]]``: cells and stats."""
    n = offsets.size - 1
    out = np.empty((n, rows * cols), np.bool_)
    stats = np.empty((n, 5), np.int64)
    diff = np.empty(rows * cols + 1, np.int64)
    for t in range(n):
        diff[:] = 0
        _scan(buf, offsets[t], offsets[t + 1], rows, cols, base, diff, stats[t])
        _diff_to_cells(diff, out[t])
    return out.reshape((n, rows, cols)), stats


@jit
def reward_of(tp, pa, total, named, alpha):
    """The OmniAD detection reward from counts: the one definition of it.

    ``tp`` true-positive units (pixels or cells), ``pa`` predicted units
    (``tp + fp``), ``total`` ground-truth units (``tp + fn``), ``named`` whether the
    prediction names at least one grid cell.  1 when the ground truth is empty and
    nothing is named, 0 when it is empty and a cell is named (even a cell that covers
    no pixel of a mask smaller than the grid), else ``alpha * F1``.  The batch kernel
    inlines it; :meth:`textmask.Scores.reward` runs the same function uncompiled
    (``reward_of.py_func``), on Python integers of any size.

    >>> reward_of(0, 0, 0, False, 2.0), reward_of(0, 0, 0, True, 2.0), reward_of(1, 2, 2, True, 2.0)
    (1.0, 0.0, 1.0)
    """
    if total == 0:
        return 0.0 if named else 1.0
    return alpha * ((2.0 * tp) / (pa + total))


@jit
def reward_many(buf, offsets, tindex, counts, areas, totals, rows, cols, base, alpha):
    """Detection scores of many texts against per-target cell tables.

    Returns ``(reward float64 (n,), found int64 (n, 3))``; row ``k`` of ``found``
    holds text ``k``'s true-positive units, predicted units and predicted cells.
    ``counts[t]`` holds target ``t``'s anomalous units (pixels or cells) per cell,
    ``areas[t]`` the units each cell covers, ``totals[t]`` the target's total; the
    reward is :func:`reward_of` of those counts.
    """
    n = offsets.size - 1
    size = rows * cols
    reward = np.empty(n, np.float64)
    found = np.empty((n, 3), np.int64)
    diff = np.empty(size + 1, np.int64)
    stats = np.empty(5, np.int64)
    for k in range(n):
        diff[:] = 0
        _scan(buf, offsets[k], offsets[k + 1], rows, cols, base, diff, stats)
        t = tindex[k]
        acc = 0
        tp = 0
        pa = 0
        npred = 0
        for p in range(size):
            acc += diff[p]
            if acc > 0:
                tp += counts[t, p]
                pa += areas[t, p]
                npred += 1
        reward[k] = reward_of(tp, pa, totals[t], npred > 0, alpha)
        found[k, 0] = tp
        found[k, 1] = pa
        found[k, 2] = npred
    return reward, found


# --------------------------------------------------------------------------- strict
@jit
def _strict_num(buf, i, end):
    """(status, value saturated at CAP, next index) for a canonical number at ``i``."""
    if i >= end or not _is_digit(buf[i]):
        return E_NUMBER, 0, i
    if buf[i] == _ZERO and i + 1 < end and _is_digit(buf[i + 1]):
        return E_LEADING_ZERO, 0, i
    v = 0
    while i < end and _is_digit(buf[i]):
        v = v * 10 + (int(buf[i]) - _ZERO)
        if v > CAP:
            v = CAP
        i += 1
    return OK, v, i


@jit
def _strict_pair(buf, i, end):
    """(status, row, col, index after, error offset) for ``( N , N )`` at ``i``."""
    if i >= end or buf[i] != _LPAR:
        return E_OPEN, 0, 0, i, i
    j = _skip_ws(buf, i + 1, end)
    st, a, j = _strict_num(buf, j, end)
    if st != OK:
        return st, 0, 0, j, j
    j = _skip_ws(buf, j, end)
    if j >= end or buf[j] != _COMMA:
        return E_COMMA, 0, 0, j, j
    j = _skip_ws(buf, j + 1, end)
    st, b, j = _strict_num(buf, j, end)
    if st != OK:
        return st, 0, 0, j, j
    j = _skip_ws(buf, j, end)
    if j >= end or buf[j] != _RPAR:
        return E_CLOSE, 0, 0, j, j
    return OK, a, b, j + 1, 0


@jit
def decode_strict(buf, rows, cols, base):
    """Strict decode: (cells, status, byte offset of the first problem)."""
    out = np.zeros((rows, cols), np.bool_)
    end = buf.size
    i = _skip_ws(buf, 0, end)
    if i == end:
        return out, OK, 0
    prev_r = -1
    prev_c = -2
    while True:
        start = i
        st, r, c1, j, off = _strict_pair(buf, i, end)
        if st != OK:
            return out, st, off
        r -= base
        c1 -= base
        if r < 0 or r >= rows or c1 < 0 or c1 >= cols:
            return out, E_OUT_OF_GRID, start
        c2 = c1
        k = _skip_ws(buf, j, end)
        if k < end and buf[k] == _MINUS:
            k = _skip_ws(buf, k + 1, end)
            st, r2, c2, j, off = _strict_pair(buf, k, end)
            if st != OK:
                return out, st, off
            r2 -= base
            c2 -= base
            if r2 < 0 or r2 >= rows or c2 < 0 or c2 >= cols:
                return out, E_OUT_OF_GRID, k
            if r2 != r:
                return out, E_RANGE_ROWS, k
            if c2 <= c1:
                return out, E_RANGE_ORDER, k
        if r == prev_r and c1 == prev_c + 1:
            return out, E_NOT_MAXIMAL, start
        if r < prev_r or (r == prev_r and c1 <= prev_c):
            return out, E_ORDER, start
        for c in range(c1, c2 + 1):
            out[r, c] = True
        prev_r = r
        prev_c = c2
        k = _skip_ws(buf, j, end)
        if k == end:
            return out, OK, 0
        if buf[k] != _COMMA:
            return out, E_SEPARATOR, k
        i = _skip_ws(buf, k + 1, end)
        if i == end:
            return out, E_TRAILING, k
