"""Shared hypothesis strategies and helpers for the textmask property tests."""

from __future__ import annotations

import os
from fractions import Fraction

import numpy as np
from hypothesis import strategies as st
from reference import WS_CHARS, ref_cells_to_runs, ref_counts, ref_runs_to_text

# Multiply every test's max_examples, e.g. TEXTMASK_EXAMPLES_SCALE=10 for a long hunt.
_SCALE = float(os.environ.get("TEXTMASK_EXAMPLES_SCALE", "1"))


def ex(n):
    return max(1, int(n * _SCALE))


# --------------------------------------------------------------------------- masks
DTYPES = ["bool", "uint8", "int32", "int64", "uint16", "int8"]
LAYOUTS = ["C", "F", "view", "negstride"]


def _values(rng, dtype, kind, shape):
    """Anomaly values for a boolean pattern, in the dtype's typical encodings."""
    if dtype == "bool":
        return np.ones(shape, dtype=bool)
    if kind == "one":
        v = np.ones(shape, dtype=np.int64)
    elif kind == "max":
        v = np.full(
            shape, {"uint8": 255, "int8": -1, "uint16": 65535, "int32": 255, "int64": 255}[dtype]
        )
    else:  # class ids, including negative ones for signed dtypes
        lo = -3 if dtype in ("int8", "int32", "int64") else 1
        v = rng.integers(lo, 7, size=shape)
        v[v == 0] = 1
    return v.astype(dtype)


def _layout(a, layout):
    H, W = a.shape
    if layout == "C":
        return np.ascontiguousarray(a)
    if layout == "F":
        return np.asfortranarray(a)
    if layout == "view":
        big = np.zeros((2 * H, 3 * W + 1), dtype=a.dtype)
        big[::2, 1::3] = a
        return big[::2, 1::3]
    # negative strides
    big = np.ascontiguousarray(a[::-1, ::-1])
    return big[::-1, ::-1]


@st.composite
def masks(draw, max_side=80, dtypes=DTYPES, layouts=LAYOUTS):
    H = draw(st.integers(1, max_side))
    W = draw(st.integers(1, max_side))
    dtype = draw(st.sampled_from(dtypes))
    kind = draw(st.sampled_from(["one", "max", "ids"]))
    pattern = draw(st.sampled_from(["empty", "full", "noise", "rects", "pixel", "rects"]))
    seed = draw(st.integers(0, 2**32 - 1))
    layout = draw(st.sampled_from(layouts))
    rng = np.random.default_rng(seed)
    pat = np.zeros((H, W), dtype=bool)
    if pattern == "full":
        pat[:] = True
    elif pattern == "noise":
        p = draw(st.sampled_from([0.001, 0.01, 0.1, 0.5, 0.9]))
        pat = rng.random((H, W)) < p
    elif pattern == "rects":
        for _ in range(int(rng.integers(1, 5))):
            y0, x0 = int(rng.integers(0, H)), int(rng.integers(0, W))
            y1, x1 = int(rng.integers(y0, H)) + 1, int(rng.integers(x0, W)) + 1
            pat[y0:y1, x0:x1] = True
    elif pattern == "pixel":
        pat[int(rng.integers(0, H)), int(rng.integers(0, W))] = True
    a = np.zeros((H, W), dtype=dtype)
    a[pat] = _values(rng, dtype, kind, (H, W))[pat]
    return _layout(a, layout)


# --------------------------------------------------------------------------- grids
rows_cols = st.tuples(st.integers(1, 40), st.integers(1, 40))
small_rows_cols = st.tuples(st.integers(1, 8), st.integers(1, 8))
thresholds = st.one_of(
    st.sampled_from([0.0, 0.25, 0.5, 0.9]),
    st.floats(0.0, 1.0, exclude_max=True, allow_nan=False),
)
index_bases = st.sampled_from([0, 1])
grid_kinds = st.sampled_from(["int", "tuple", "Grid", "Grid+kw"])


def grid_arg(tm, kind, rows, cols, threshold=0.0, index_base=0, takes=("threshold", "index_base")):
    """Return (grid argument, keyword arguments) expressing the same grid.

    ``kind``: "int" (only when square, else tuple), "tuple", "Grid" (threshold and
    index_base carried by the Grid), "Grid+kw" (Grid with other defaults,
    overridden by keywords).
    """
    kw = {}
    if kind == "Grid":
        return tm.Grid(rows, cols, threshold=threshold, index_base=index_base), kw
    if kind == "Grid+kw":
        g = tm.Grid(
            rows, cols, threshold=0.5 if threshold != 0.5 else 0.25, index_base=1 - index_base
        )
    elif kind == "int" and rows == cols:
        g = rows
    else:
        g = (rows, cols)
    if "threshold" in takes:
        kw["threshold"] = threshold
    if "index_base" in takes:
        kw["index_base"] = index_base
    return g, kw


# --------------------------------------------------------------------------- cells
@st.composite
def cell_grids(draw, rc=rows_cols):
    rows, cols = draw(rc)
    density = draw(st.sampled_from([0.0, 0.05, 0.2, 0.5, 0.8, 1.0]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    return rng.random((rows, cols)) < density


def canonical_text(cells, index_base=0):
    return ref_runs_to_text(ref_cells_to_runs(cells), index_base)


# --------------------------------------------------------------------------- tie-ambiguity
def tie_cells(mask, rows, cols, threshold):
    """Cells whose label depends on how ``count / npix > threshold`` is evaluated
    (float division vs float multiplication vs exact rationals)."""
    counts, areas = ref_counts(mask, rows, cols)
    t = Fraction(threshold)
    out = np.zeros((rows, cols), dtype=bool)
    for r in range(rows):
        for c in range(cols):
            n, a = int(counts[r, c]), int(areas[r, c])
            if a == 0:
                continue
            views = {n / a > threshold, n > threshold * a, Fraction(n, a) > t}
            out[r, c] = len(views) > 1
    return out


# --------------------------------------------------------------------------- whitespace
ws_runs = st.text(alphabet=st.sampled_from(list(WS_CHARS)), min_size=0, max_size=3)


def split_tokens(text):
    """Split canonical text into tokens: ( ) , - and numbers (spaces dropped)."""
    toks = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == " ":
            i += 1
        elif ch.isdigit():
            j = i
            while j < len(text) and text[j].isdigit():
                j += 1
            toks.append(text[i:j])
            i = j
        else:
            toks.append(ch)
            i += 1
    return toks


# --------------------------------------------------------------------------- tolerant grammar
numbers = st.one_of(
    st.integers(-3, 45).map(str),
    st.integers(-(10**15), 10**15).map(str),
    st.sampled_from(
        [
            "007",
            "-0",
            "00",
            "2147483646",
            "2147483647",
            "2147483648",
            "-2147483648",
            "99999999999",
            "4294967296",
            "000000000000000000000003",
        ]
    ),
)
open_br = st.sampled_from(["(", "[", "(", "( ", "[\n", "(\t"])
close_br = st.sampled_from([")", "]", ")", " )", "\n)", "\r\n]"])
pair_sep = st.sampled_from([", ", ",", " ", "\n", " ,\t", ",\n  ", "  ", "\x0b", "\x0c,"])
range_marks = st.sampled_from(
    [
        "-",
        "\u2013",
        "\u2014",
        "~",
        "to",
        " - ",
        " to ",
        "\n-\n",
        "\t\u2013 ",
        "--",
        "\u2212",
        " ~",
        "- ",
        "-to",
        "TO",
        " t o ",
    ]
)
run_seps = st.sampled_from([", ", ",", ";", "\n", "", " ", " and ", ";\n", ", ,", "\r\n"])
junk = st.sampled_from(
    [
        "none",
        "no anomaly",
        "<seg>",
        "</seg>",
        "<\\seg>",
        "(",
        ")",
        "[",
        "]",
        "-",
        "(1,",
        "2)",
        "row 3",
        "to",
        "\u00e9",
        "\uff0c",
        "\uff081, 2\uff09",
        "(1; 2)",
        "((",
        "(1, 2, 3)",
        "(, )",
        "()",
        "(1 - 2)",
        "(-, 3)",
        "\u00a0",
        "\u2003",
        "(\u0661, 2)",
        "((1, 2)",
        "(1, 2",
        "1, 2)",
        "( 3 , 4 ]",
        "[5 6)",
        "x",
    ]
)


@st.composite
def pairs(draw):
    return draw(open_br) + draw(numbers) + draw(pair_sep) + draw(numbers) + draw(close_br)


@st.composite
def grammar_texts(draw):
    parts = []
    for _ in range(draw(st.integers(0, 8))):
        what = draw(st.sampled_from(["pair", "range", "range", "junk", "sep"]))
        if what == "pair":
            parts.append(draw(pairs()))
        elif what == "range":
            parts.append(draw(pairs()) + draw(range_marks) + draw(pairs()))
        elif what == "junk":
            parts.append(draw(junk))
        else:
            parts.append(draw(run_seps))
        if draw(st.booleans()):
            parts.append(draw(run_seps))
    return "".join(parts)


@st.composite
def small_number_texts(draw, rows, cols):
    """Runs with numbers near the grid, so that most cells are in the grid."""
    num = st.integers(-2, max(rows, cols) + 2).map(str)
    parts = []
    for _ in range(draw(st.integers(0, 6))):
        p1 = draw(open_br) + draw(num) + draw(pair_sep) + draw(num) + draw(close_br)
        if draw(st.booleans()):
            p2 = draw(open_br) + draw(num) + draw(pair_sep) + draw(num) + draw(close_br)
            p1 = p1 + draw(range_marks) + p2
        parts.append(p1)
        parts.append(draw(st.one_of(run_seps, junk)))
    return "".join(parts)
