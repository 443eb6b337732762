"""Slow, obviously-correct pure-Python reference (oracle) for ``textmask``.

Written from the format spec only (``textmask/__init__.py`` docstring,
``docs/format.md``, ``docs/method.md`` and the test brief), without looking at the fast
implementation.  No numba; plain loops over Python ints and ``re`` for parsing.
Everything is 0-based internally.
"""

from __future__ import annotations

import re

import numpy as np

SAT = 2**31 - 1  # numbers are saturated to [-SAT, SAT] while being read
DROPPED_CAP = 2**62  # cap on the total of cells_dropped

# ASCII whitespace only (not ``\s``, which also matches unicode spaces).
WS_CHARS = " \t\n\r\x0b\x0c"
_WS = r"[ \t\n\r\x0b\x0c]"
_NUM = r"(-?[0-9]+)"
_PAIR = rf"[\(\[]{_WS}*{_NUM}(?:{_WS}*,{_WS}*|{_WS}+){_NUM}{_WS}*[\)\]]"
_MARK = r"(?:-|\u2013|\u2014|~|to)"
RUN_RE = re.compile(_PAIR + r"(?:" + _WS + "*" + _MARK + _WS + "*" + _PAIR + r")?")

# Characters outside matches that are not counted as skipped.
NOT_SKIPPED = set(WS_CHARS) | {",", ";"}


# --------------------------------------------------------------------------- geometry
def ref_edges(n_pixels, n_cells):
    return [(k * n_pixels) // n_cells for k in range(n_cells + 1)]


def _nonzero_rows(mask):
    """The mask as a list of lists of Python bools (value != 0)."""
    mask = np.asarray(mask)
    return [[v != 0 for v in row] for row in mask.tolist()]


def ref_counts(mask, rows, cols):
    """Per-cell anomalous-pixel counts and per-cell pixel areas (Python loops)."""
    nz = _nonzero_rows(mask)
    H = len(nz)
    W = len(nz[0]) if H else 0
    ye = ref_edges(H, rows)
    xe = ref_edges(W, cols)
    counts = np.zeros((rows, cols), dtype=np.int64)
    areas = np.zeros((rows, cols), dtype=np.int64)
    for r in range(rows):
        for c in range(cols):
            n = 0
            for y in range(ye[r], ye[r + 1]):
                line = nz[y]
                for x in range(xe[c], xe[c + 1]):
                    if line[x]:
                        n += 1
            counts[r, c] = n
            areas[r, c] = (ye[r + 1] - ye[r]) * (xe[c + 1] - xe[c])
    return counts, areas


def ref_patchify(mask, rows, cols, threshold=0.0):
    counts, areas = ref_counts(mask, rows, cols)
    out = np.zeros((rows, cols), dtype=bool)
    for r in range(rows):
        for c in range(cols):
            npix = int(areas[r, c])
            if npix >= 1 and int(counts[r, c]) / npix > threshold:
                out[r, c] = True
    return out


def ref_unpatchify(cells, H, W):
    cells = np.asarray(cells, dtype=bool)
    rows, cols = cells.shape
    ye = ref_edges(H, rows)
    xe = ref_edges(W, cols)
    out = np.zeros((H, W), dtype=bool)
    for r in range(rows):
        for c in range(cols):
            if cells[r, c]:
                for y in range(ye[r], ye[r + 1]):
                    for x in range(xe[c], xe[c + 1]):
                        out[y, x] = True
    return out


# --------------------------------------------------------------------------- runs / text
def ref_cells_to_runs(cells):
    cells = np.asarray(cells, dtype=bool)
    rows, cols = cells.shape
    runs = []
    for r in range(rows):
        c = 0
        while c < cols:
            if cells[r, c]:
                start = c
                while c + 1 < cols and cells[r, c + 1]:
                    c += 1
                runs.append((r, start, c))
            c += 1
    return runs


def ref_runs_to_cells(runs, rows, cols):
    out = np.zeros((rows, cols), dtype=bool)
    for r, c1, c2 in runs:
        for c in range(c1, c2 + 1):
            out[r, c] = True
    return out


def ref_runs_to_text(runs, index_base=0):
    parts = []
    for r, c1, c2 in runs:
        r, c1, c2 = int(r) + index_base, int(c1) + index_base, int(c2) + index_base
        if c1 == c2:
            parts.append(f"({r}, {c1})")
        else:
            parts.append(f"({r}, {c1})-({r}, {c2})")
    return ", ".join(parts)


def ref_encode(mask, rows, cols, threshold=0.0, index_base=0):
    return ref_runs_to_text(
        ref_cells_to_runs(ref_patchify(mask, rows, cols, threshold)), index_base
    )


# --------------------------------------------------------------------------- tolerant decoding
def _saturated(s):
    """Value of a ``-?[0-9]+`` string saturated to [-SAT, SAT] (no huge int())."""
    neg = s.startswith("-")
    digits = s[1:] if neg else s
    digits = digits.lstrip("0") or "0"
    v = SAT if len(digits) > 10 else min(int(digits), SAT)
    return -v if neg else v


def _count_in(lo, hi, a, b):
    """Number of integers in [lo, hi] ∩ [a, b]."""
    lo2, hi2 = max(lo, a), min(hi, b)
    return hi2 - lo2 + 1 if hi2 >= lo2 else 0


def _apply_run(kept, rows, cols, r1, c1, r2, c2):
    """Mark the in-grid cells of one run in ``kept``; return the number dropped."""
    if (r1, c1) > (r2, c2):
        r1, c1, r2, c2 = r2, c2, r1, c1
    # segments: (row_lo, row_hi, col_lo, col_hi) of virtual cells
    if r1 == r2:
        segs = [(r1, r1, c1, c2)]
    else:
        segs = [(r1, r1, c1, max(c1, cols - 1))]
        if r2 - r1 >= 2:
            segs.append((r1 + 1, r2 - 1, 0, cols - 1))
        segs.append((r2, r2, min(0, c2), c2))
    total = 0
    inside = 0
    for rlo, rhi, clo, chi in segs:
        nrows = rhi - rlo + 1
        ncols = chi - clo + 1
        total += nrows * ncols
        in_rows = _count_in(rlo, rhi, 0, rows - 1)
        in_cols = _count_in(clo, chi, 0, cols - 1)
        inside += in_rows * in_cols
        if in_rows and in_cols:
            for r in range(max(rlo, 0), min(rhi, rows - 1) + 1):
                row = kept[r]
                for c in range(max(clo, 0), min(chi, cols - 1) + 1):
                    row[c] = True
    return total - inside


def ref_decode_tolerant(text, rows, cols, index_base=0):
    kept = [[False] * cols for _ in range(rows)]
    n_runs = 0
    n_clipped = 0
    dropped = 0
    first_clipped = None
    gaps = []  # (start, end) of the text between matches
    prev_end = 0
    for m in RUN_RE.finditer(text):
        n_runs += 1
        gaps.append((prev_end, m.start()))
        prev_end = m.end()
        a, b, c, d = m.groups()
        r1 = _saturated(a) - index_base
        c1 = _saturated(b) - index_base
        if c is None:
            r2, c2 = r1, c1
        else:
            r2 = _saturated(c) - index_base
            c2 = _saturated(d) - index_base
        k = _apply_run(kept, rows, cols, r1, c1, r2, c2)
        if k:
            n_clipped += 1
            dropped += k
            if first_clipped is None:
                first_clipped = (m.start(), m.end())
    gaps.append((prev_end, len(text)))
    skipped = 0
    first_skipped = None
    for g0, g1 in gaps:
        for i in range(g0, g1):
            if text[i] not in NOT_SKIPPED:
                skipped += 1
                if first_skipped is None:
                    first_skipped = i
    candidates = [
        x for x in (first_skipped, first_clipped[0] if first_clipped else None) if x is not None
    ]
    info = {
        "runs": n_runs,
        "runs_clipped": n_clipped,
        "cells_dropped": min(dropped, DROPPED_CAP),
        "chars_skipped": skipped,
        # extra, not part of the brief's info dict: used for loose checks only
        "first_problem": min(candidates) if candidates else None,
        "first_skipped": first_skipped,
        "first_clipped_span": first_clipped,
    }
    return np.array(kept, dtype=bool).reshape(rows, cols), info


# --------------------------------------------------------------------------- strict decoding
class _Tok:
    __slots__ = ("kind", "pos", "text")

    def __init__(self, kind, text, pos):
        self.kind, self.text, self.pos = kind, text, pos

    def __repr__(self):
        return f"_Tok({self.kind!r}, {self.text!r}, {self.pos})"


def _tokenize(text):
    """Tokens ( ) , - NUM; ASCII whitespace separates tokens; anything else errors."""
    toks = []
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch in WS_CHARS:
            i += 1
        elif ch in "(),-":
            toks.append(_Tok(ch, ch, i))
            i += 1
        elif "0" <= ch <= "9":
            j = i
            while j < n and "0" <= text[j] <= "9":
                j += 1
            toks.append(_Tok("N", text[i:j], i))
            i = j
        else:
            raise ValueError(f"unexpected character {ch!r} at offset {i}")
    return toks


class _Parser:
    def __init__(self, toks, text_len):
        self.toks = toks
        self.i = 0
        self.end = text_len

    def peek(self):
        return self.toks[self.i] if self.i < len(self.toks) else None

    def expect(self, kind):
        t = self.peek()
        if t is None or t.kind != kind:
            where = t.pos if t is not None else self.end
            raise ValueError(f"expected {kind!r} at offset {where}")
        self.i += 1
        return t

    def number(self):
        t = self.expect("N")
        if len(t.text) > 1 and t.text[0] == "0":
            raise ValueError(f"leading zero at offset {t.pos}")
        return int(t.text), t.pos

    def pair(self):
        start = self.expect("(").pos
        r, _ = self.number()
        self.expect(",")
        c, _ = self.number()
        self.expect(")")
        return r, c, start

    def run(self):
        r1, c1, pos = self.pair()
        t = self.peek()
        if t is not None and t.kind == "-":
            self.i += 1
            r2, c2, _ = self.pair()
            return (r1, c1, r2, c2, pos, True)
        return (r1, c1, r1, c1, pos, False)

    def text(self):
        runs = []
        if self.peek() is None:
            return runs
        runs.append(self.run())
        while self.peek() is not None:
            self.expect(",")
            runs.append(self.run())
        return runs


def ref_decode_strict(text, rows, cols, index_base=0):
    toks = _tokenize(text)
    runs = _Parser(toks, len(text)).text()
    cells = np.zeros((rows, cols), dtype=bool)
    prev = None  # (row, c2) of the previous run, 0-based
    for r1, c1, r2, c2, pos, is_range in runs:
        r1, c1, r2, c2 = r1 - index_base, c1 - index_base, r2 - index_base, c2 - index_base
        if r1 != r2:
            raise ValueError(f"range across rows at offset {pos}")
        # a written range must have c1 < c2; a single pair is parsed as (r, c, r, c)
        if is_range and not c1 < c2:
            raise ValueError(f"range with first column >= second at offset {pos}")
        if not (0 <= r1 < rows and 0 <= c1 < cols and 0 <= c2 < cols):
            raise ValueError(f"run outside the grid at offset {pos}")
        if prev is not None:
            pr, pc2 = prev
            if r1 < pr or (r1 == pr and c1 < pc2 + 2):
                raise ValueError(f"run out of order or not maximal at offset {pos}")
        for c in range(c1, c2 + 1):
            cells[r1, c] = True
        prev = (r1, c2)
    return cells


# --------------------------------------------------------------------------- metrics
def ref_scores(pred_cells, gt_mask, rows, cols, level="pixel", threshold=0.0):
    pred_cells = np.asarray(pred_cells, dtype=bool)
    gt_nz = _nonzero_rows(gt_mask)
    H = len(gt_nz)
    W = len(gt_nz[0])
    if level == "pixel":
        pm = ref_unpatchify(pred_cells, H, W).tolist()
        g = gt_nz
        ny, nx = H, W
    elif level == "cell":
        pm = pred_cells.tolist()
        g = ref_patchify(gt_mask, rows, cols, threshold).tolist()
        ny, nx = rows, cols
    else:
        raise ValueError(level)
    tp = fp = fn = tn = 0
    for y in range(ny):
        for x in range(nx):
            p, t = bool(pm[y][x]), bool(g[y][x])
            if p and t:
                tp += 1
            elif p:
                fp += 1
            elif t:
                fn += 1
            else:
                tn += 1
    return {"tp": tp, "fp": fp, "fn": fn, "tn": tn}


def ref_f1(tp, fp, fn):
    return 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)


def ref_iou(tp, fp, fn):
    return 1.0 if tp + fp + fn == 0 else tp / (tp + fp + fn)


def ref_precision(tp, fp):
    return 1.0 if tp + fp == 0 else tp / (tp + fp)


def ref_recall(tp, fn):
    return 1.0 if tp + fn == 0 else tp / (tp + fn)


def ref_detection_reward(
    text, gt_mask, rows, cols, alpha=2.0, level="pixel", threshold=0.0, index_base=0
):
    pred, _ = ref_decode_tolerant(text, rows, cols, index_base)
    if level == "pixel":
        gt_empty = not any(v for row in _nonzero_rows(gt_mask) for v in row)
    else:
        gt_empty = not ref_patchify(gt_mask, rows, cols, threshold).any()
    if gt_empty:
        return 1.0 if not pred.any() else 0.0
    s = ref_scores(pred, gt_mask, rows, cols, level, threshold)
    return alpha * ref_f1(s["tp"], s["fp"], s["fn"])
