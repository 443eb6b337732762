"""Property tests of the codec (geometry, patchify, encode/decode, strict decoding,
runs helpers, batch forms, argument validation) against the pure-Python oracle."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from numpy.testing import assert_array_equal
from reference import (
    WS_CHARS,
    ref_cells_to_runs,
    ref_decode_strict,
    ref_decode_tolerant,
    ref_edges,
    ref_encode,
    ref_patchify,
    ref_runs_to_cells,
    ref_runs_to_text,
    ref_unpatchify,
)
from strategies import (
    canonical_text,
    cell_grids,
    ex,
    grammar_texts,
    grid_arg,
    grid_kinds,
    index_bases,
    masks,
    rows_cols,
    small_number_texts,
    small_rows_cols,
    split_tokens,
    thresholds,
    tie_cells,
    ws_runs,
)

import textmask as tm


# --------------------------------------------------------------------------- oracle sanity
@given(st.integers(0, 300), st.integers(1, 50))
def test_ref_edges_partition(n_pixels, n_cells):
    e = ref_edges(n_pixels, n_cells)
    assert len(e) == n_cells + 1 and e[0] == 0 and e[-1] == n_pixels
    assert all(a <= b for a, b in itertools.pairwise(e))


def test_docstring_example():
    mask = np.zeros((512, 512), dtype=np.uint8)
    mask[70:80, 90:140] = 255
    assert tm.encode(mask) == "(3, 4)-(3, 6)" == ref_encode(mask, 24, 24)
    assert int(tm.decode("(3, 4)-(3, 6)").sum()) == 3
    assert tm.decode("(3, 4)-(3, 6)").shape == (24, 24)
    assert tm.decode("(3, 4)-(3, 6)", shape=(512, 512)).shape == (512, 512)
    assert tm.decode("(3, 4)-(3, 6)").dtype == np.bool_


def test_method_md_example_shape():
    text = "(3, 4)-(3, 6), (4, 5), (5, 4)-(5, 7)"
    cells = tm.decode(text)
    assert ref_cells_to_runs(cells) == [(3, 4, 6), (4, 5, 5), (5, 4, 7)]
    assert tm.encode(cells) == text  # a bool cell grid is a mask at cell resolution


def test_empty_mask_is_empty_string():
    assert tm.encode(np.zeros((512, 512), np.uint8)) == ""
    assert not tm.decode("").any()
    assert not tm.decode("", strict=True).any()


# --------------------------------------------------------------------------- geometry
@settings(deadline=None, max_examples=ex(60))
@given(st.integers(1, 80), st.integers(1, 80), rows_cols)
def test_unpatchify_all_true_covers_everything(H, W, rc):
    rows, cols = rc
    out = tm.unpatchify(np.ones((rows, cols), bool), (H, W))
    assert out.shape == (H, W) and out.dtype == np.bool_
    assert out.all()
    assert not tm.unpatchify(np.zeros((rows, cols), bool), (H, W)).any()


@settings(deadline=None, max_examples=ex(25))
@given(st.integers(1, 30), st.integers(1, 30), small_rows_cols)
def test_every_pixel_in_exactly_one_cell(H, W, rc):
    rows, cols = rc
    total = np.zeros((H, W), dtype=np.int64)
    for r in range(rows):
        for c in range(cols):
            one = np.zeros((rows, cols), bool)
            one[r, c] = True
            px = tm.unpatchify(one, (H, W))
            assert_array_equal(px, ref_unpatchify(one, H, W))
            total += px
    assert_array_equal(total, np.ones((H, W), dtype=np.int64))


@settings(deadline=None, max_examples=ex(60))
@given(cell_grids(), st.integers(1, 80), st.integers(1, 80))
def test_unpatchify_matches_ref(cells, H, W):
    assert_array_equal(tm.unpatchify(cells, (H, W)), ref_unpatchify(cells, H, W))


# --------------------------------------------------------------------------- patchify
def _assert_cells_equal_modulo_ties(got, want, mask, rows, cols, threshold):
    got = np.asarray(got)
    assert got.shape == (rows, cols) and got.dtype == np.bool_
    diff = got != want
    if diff.any():
        ties = tie_cells(mask, rows, cols, threshold)
        assert not (diff & ~ties).any(), (np.argwhere(diff & ~ties)[:5], threshold)


@settings(deadline=None, max_examples=ex(120))
@given(masks(), rows_cols, thresholds, grid_kinds)
def test_patchify_matches_ref(mask, rc, threshold, kind):
    rows, cols = rc
    g, kw = grid_arg(tm, kind, rows, cols, threshold, takes=("threshold",))
    got = tm.patchify(mask, g, **kw)
    _assert_cells_equal_modulo_ties(
        got, ref_patchify(mask, rows, cols, threshold), mask, rows, cols, threshold
    )


@settings(deadline=None, max_examples=ex(40))
@given(masks(), rows_cols)
def test_patchify_default_threshold_is_any_pixel(mask, rc):
    rows, cols = rc
    assert_array_equal(tm.patchify(mask, (rows, cols)), ref_patchify(mask, rows, cols, 0.0))
    if rows == cols:
        assert_array_equal(tm.patchify(mask, rows), ref_patchify(mask, rows, cols, 0.0))


@settings(deadline=None, max_examples=ex(20))
@given(masks(max_side=60))
def test_default_grid_is_24(mask):
    assert_array_equal(tm.patchify(mask), ref_patchify(mask, 24, 24))
    assert tm.encode(mask) == ref_encode(mask, 24, 24)


def test_patchify_does_not_modify_input_and_small_masks():
    m = np.zeros((3, 5), np.uint8)
    m[1, 4] = 7
    before = m.copy()
    cells = tm.patchify(m, 24)
    assert_array_equal(m, before)
    assert_array_equal(cells, ref_patchify(m, 24, 24))
    # cells that cover no pixel are never anomalous
    assert tm.patchify(np.ones((3, 5), bool), 24, threshold=0.0).sum() == 15


# --------------------------------------------------------------------------- encode / decode
@settings(deadline=None, max_examples=ex(120))
@given(masks(), rows_cols, thresholds, index_bases, grid_kinds)
def test_encode_matches_ref(mask, rc, threshold, ib, kind):
    rows, cols = rc
    assume(not tie_cells(mask, rows, cols, threshold).any())
    g, kw = grid_arg(tm, kind, rows, cols, threshold, ib)
    text = tm.encode(mask, g, **kw)
    assert isinstance(text, str)
    assert text == ref_encode(mask, rows, cols, threshold, ib)


@settings(deadline=None, max_examples=ex(80))
@given(masks(), rows_cols, index_bases, grid_kinds)
def test_decode_encode_is_patchify(mask, rc, ib, kind):
    rows, cols = rc
    g, kw = grid_arg(tm, kind, rows, cols, 0.0, ib)
    text = tm.encode(mask, g, **kw)
    gd, kwd = grid_arg(tm, kind, rows, cols, 0.0, ib, takes=("index_base",))
    assert_array_equal(tm.decode(text, gd, **kwd), tm.patchify(mask, (rows, cols)))
    assert_array_equal(tm.decode(text, gd, strict=True, **kwd), ref_patchify(mask, rows, cols))


@settings(deadline=None, max_examples=ex(100))
@given(cell_grids(), index_bases, grid_kinds)
def test_encode_decode_canonical_roundtrip(cells, ib, kind):
    rows, cols = cells.shape
    t = canonical_text(cells, ib)
    g, kw = grid_arg(tm, kind, rows, cols, 0.0, ib, takes=("index_base",))
    dec = tm.decode(t, g, **kw)
    assert dec.shape == (rows, cols) and dec.dtype == np.bool_
    assert_array_equal(dec, cells)
    ge, kwe = grid_arg(tm, kind, rows, cols, 0.0, ib)
    assert tm.encode(dec, ge, **kwe) == t


@settings(deadline=None, max_examples=ex(60))
@given(cell_grids(), index_bases, st.integers(1, 80), st.integers(1, 80))
def test_decode_shape_is_ref_unpatchify(cells, ib, H, W):
    rows, cols = cells.shape
    t = canonical_text(cells, ib)
    px = tm.decode(t, (rows, cols), shape=(H, W), index_base=ib)
    assert px.shape == (H, W) and px.dtype == np.bool_
    assert_array_equal(px, ref_unpatchify(cells, H, W))


@settings(deadline=None, max_examples=ex(60))
@given(masks(max_side=50), rows_cols, index_bases)
def test_decode_shape_of_encode(mask, rc, ib):
    rows, cols = rc
    H, W = mask.shape
    t = tm.encode(mask, (rows, cols), index_base=ib)
    px = tm.decode(t, (rows, cols), shape=(H, W), index_base=ib)
    assert_array_equal(px, ref_unpatchify(ref_patchify(mask, rows, cols), H, W))
    # the decoded region covers every anomalous pixel (threshold 0)
    assert not ((mask != 0) & ~px).any()


# --------------------------------------------------------------------------- strict decoding
def _strict(text, rows, cols, ib):
    return tm.decode(text, (rows, cols), strict=True, index_base=ib)


@settings(deadline=None, max_examples=ex(80))
@given(cell_grids(), index_bases, st.data())
def test_strict_agrees_with_tolerant_on_canonical_and_whitespace(cells, ib, data):
    rows, cols = cells.shape
    t = canonical_text(cells, ib)
    assert_array_equal(_strict(t, rows, cols, ib), cells)
    assert_array_equal(tm.decode(t, (rows, cols), index_base=ib), cells)
    toks = split_tokens(t)
    if len(toks) > 1:
        seps = data.draw(st.lists(ws_runs, min_size=len(toks) - 1, max_size=len(toks) - 1))
        t2 = toks[0] + "".join(s + tok for s, tok in zip(seps, toks[1:], strict=True))
        assert_array_equal(ref_decode_strict(t2, rows, cols, ib), cells)
        assert_array_equal(_strict(t2, rows, cols, ib), cells)
        assert_array_equal(tm.decode(t2, (rows, cols), index_base=ib), cells)


_MUT_CHARS = [*"(),-0129 [];a\n\t", "\u2013", "\u00a0"]


@st.composite
def mutated_canonical(draw):
    cells = draw(cell_grids(rc=st.tuples(st.integers(1, 12), st.integers(1, 12))))
    rows, cols = cells.shape
    ib = draw(index_bases)
    text = canonical_text(cells, ib)
    runs = [(r + ib, a + ib, b + ib) for r, a, b in ref_cells_to_runs(cells)]
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["del", "ins", "rep", "num", "runs", "runs", "ws"]))
        n = len(text)
        if op == "del" and n:
            i = draw(st.integers(0, n - 1))
            text = text[:i] + text[i + 1 :]
        elif op == "ins":
            i = draw(st.integers(0, n))
            text = text[:i] + draw(st.sampled_from(_MUT_CHARS)) + text[i:]
        elif op == "rep" and n:
            i = draw(st.integers(0, n - 1))
            text = text[:i] + draw(st.sampled_from(_MUT_CHARS)) + text[i + 1 :]
        elif op == "ws" and n:
            i = draw(st.integers(0, n))
            text = text[:i] + draw(ws_runs) + text[i:]
        elif op == "num":
            toks = split_tokens(text)
            idx = [k for k, tk in enumerate(toks) if tk.isdigit()]
            if idx:
                k = draw(st.sampled_from(idx))
                v = int(toks[k])
                toks[k] = draw(
                    st.sampled_from(
                        [
                            "0" + toks[k],
                            str(v + 1),
                            str(max(v - 1, 0)),
                            str(v + rows),
                            str(v + cols),
                            "-" + toks[k],
                            "99999999999999999999",
                            str(max(rows, cols) - 1 + ib),
                            "0",
                        ]
                    )
                )
                text = "".join(tk + (" " if tk == "," else "") for tk in toks)
        else:  # structural edits of the run list, re-rendered canonically
            if runs:
                k = draw(st.integers(0, len(runs) - 1))
                r, a, b = runs[k]
                edit = draw(
                    st.sampled_from(["dup", "swap", "split", "cross", "rev", "eq", "trail", "lead"])
                )
                if edit == "dup":
                    runs.insert(k, (r, a, b))
                elif edit == "swap" and k + 1 < len(runs):
                    runs[k], runs[k + 1] = runs[k + 1], runs[k]
                elif edit == "split" and b > a:
                    runs[k : k + 1] = [(r, a, a), (r, a + 1, b)]
                text = ", ".join(
                    f"({r}, {a})" if a == b else f"({r}, {a})-({r}, {b})" for r, a, b in runs
                )
                if edit == "cross":
                    text += f", ({r}, {a})-({r + 1}, {a})"
                elif edit == "rev" and b > a:
                    text = text.replace(f"({r}, {a})-({r}, {b})", f"({r}, {b})-({r}, {a})", 1)
                elif edit == "eq":
                    text = (
                        text.replace(f"({r}, {a})", f"({r}, {a})-({r}, {a})", 1) if a == b else text
                    )
                elif edit == "trail":
                    text += ","
                elif edit == "lead":
                    text = ", " + text
    return text, rows, cols, ib


@settings(deadline=None, max_examples=ex(300))
@given(mutated_canonical())
@example(("(0, 0)-(0, 0)", 3, 3, 0))
@example(("(0, 1), (0, 0)", 3, 3, 0))
@example(("(0, 0)-(0, 1), (0, 2)", 3, 3, 0))
@example(("(0, 0), (0, 0)", 3, 3, 0))
@example(("(0,0)", 3, 3, 0))
@example(("(0, 0)-(1, 0)", 3, 3, 0))
@example(("(0, 00)", 3, 3, 0))
@example(("(0, 3)", 3, 3, 0))
@example(("(3, 0)", 3, 3, 0))
@example(("(0, 0)", 3, 3, 1))
@example(("(1, 1)-(1, 3)", 3, 3, 1))
@example(("(0, 0),", 3, 3, 0))
@example(("(0, 0) (0, 2)", 3, 3, 0))
@example(("[0, 0]", 3, 3, 0))
@example(("(0, 0)\u2013(0, 2)", 3, 3, 0))
@example(("(0, -0)", 3, 3, 0))
@example(("(0 , 0)\n-\t(0 ,2)", 3, 3, 0))
@example(("(0, 0)-(0, 1), (0, 3)", 5, 5, 0))
@example(("(0, 2), (1, 0)", 5, 5, 0))
@example(("(1, 0), (0, 4)", 5, 5, 0))
@example(("(0, 0)-(0, 99999999999999999999)", 5, 5, 0))
def test_strict_matches_ref_on_mutations(case):
    text, rows, cols, ib = case
    # whether leading/trailing whitespace is "between tokens" is not specified
    assume(text == text.strip(WS_CHARS))
    try:
        want = ref_decode_strict(text, rows, cols, ib)
    except ValueError:
        want = None
    if want is None:
        with pytest.raises(tm.TextMaskError):
            _strict(text, rows, cols, ib)
    else:
        assert_array_equal(_strict(text, rows, cols, ib), want)
    # tolerant decoding never raises on the same text and matches its own oracle
    got = tm.decode(text, (rows, cols), index_base=ib)
    assert_array_equal(got, ref_decode_tolerant(text, rows, cols, ib)[0])


def test_strict_error_is_value_error_and_names_offset():
    assert issubclass(tm.TextMaskError, ValueError)
    with pytest.raises(ValueError, match=r"\b22\b"):
        tm.decode("(3, 4)-(3, 6), (4, 5) junk", strict=True)
    with pytest.raises(tm.TextMaskError, match=r"\b0\b"):
        tm.decode("none", strict=True)


# --------------------------------------------------------------------------- runs helpers
@settings(deadline=None, max_examples=ex(100))
@given(cell_grids(), index_bases)
def test_runs_helpers(cells, ib):
    rows, cols = cells.shape
    runs = tm.cells_to_runs(cells)
    assert (
        isinstance(runs, np.ndarray)
        and runs.dtype == np.int64
        and runs.ndim == 2
        and runs.shape[1] == 3
    )
    want = ref_cells_to_runs(cells)
    assert [tuple(int(v) for v in row) for row in runs] == want
    assert_array_equal(tm.runs_to_cells(runs, (rows, cols)), cells)
    assert_array_equal(tm.runs_to_cells(runs, (rows, cols)), ref_runs_to_cells(want, rows, cols))
    text = tm.runs_to_text(runs, index_base=ib)
    assert text == ref_runs_to_text(want, ib) == tm.encode(cells, (rows, cols), index_base=ib)
    if ib == 0:
        assert tm.runs_to_text(runs) == text
    back = tm.text_to_runs(text, (rows, cols), index_base=ib)
    assert back.dtype == np.int64 and back.shape == (len(want), 3)
    assert_array_equal(back, np.array(want, dtype=np.int64).reshape(-1, 3))
    assert_array_equal(tm.text_to_runs(text, (rows, cols), strict=True, index_base=ib), back)


@settings(deadline=None, max_examples=ex(60))
@given(rows_cols, st.data())
def test_text_to_runs_is_canonical_runs_of_tolerant_decode(rc, data):

    rows, cols = rc
    text = data.draw(small_number_texts(rows, cols))
    want = ref_cells_to_runs(ref_decode_tolerant(text, rows, cols)[0])
    got = tm.text_to_runs(text, (rows, cols))
    assert [tuple(int(v) for v in row) for row in got] == want


def test_empty_runs_shapes():
    e = tm.cells_to_runs(np.zeros((4, 5), bool))
    assert e.shape == (0, 3) and e.dtype == np.int64
    assert tm.runs_to_text(e) == ""
    assert not tm.runs_to_cells(e, (4, 5)).any()
    assert tm.runs_to_cells(e, (4, 5)).shape == (4, 5)
    assert tm.text_to_runs("", 24).shape == (0, 3)


# --------------------------------------------------------------------------- batch forms
@settings(deadline=None, max_examples=ex(30))
@given(st.lists(masks(max_side=40), min_size=0, max_size=5), rows_cols, index_bases)
def test_encode_batch_list_equals_loop(ms, rc, ib):
    rows, cols = rc
    got = tm.encode_batch(ms, (rows, cols), index_base=ib)
    assert list(got) == [tm.encode(m, (rows, cols), index_base=ib) for m in ms]
    assert list(got) == [ref_encode(m, rows, cols, 0.0, ib) for m in ms]


@settings(deadline=None, max_examples=ex(30))
@given(
    st.integers(0, 5),
    st.integers(1, 40),
    st.integers(1, 40),
    rows_cols,
    st.sampled_from([0.0, 0.25, 0.5, 0.9]),
    st.integers(0, 2**32 - 1),
    st.sampled_from(["uint8", "bool", "int64"]),
)
def test_encode_batch_3d_equals_loop(n, H, W, rc, threshold, seed, dtype):
    rows, cols = rc
    rng = np.random.default_rng(seed)
    stack = (rng.random((n, H, W)) < rng.random()).astype(dtype)
    got = tm.encode_batch(stack, (rows, cols), threshold=threshold)
    assert list(got) == [tm.encode(stack[i], (rows, cols), threshold=threshold) for i in range(n)]
    assert list(got) == [ref_encode(stack[i], rows, cols, threshold) for i in range(n)]
    g = tm.Grid(rows, cols, threshold=threshold, index_base=1)
    assert list(tm.encode_batch(stack, g)) == [
        ref_encode(stack[i], rows, cols, threshold, 1) for i in range(n)
    ]


@settings(deadline=None, max_examples=ex(30))
@given(rows_cols, st.data(), index_bases)
def test_decode_batch_equals_loop(rc, data, ib):

    rows, cols = rc
    texts = data.draw(
        st.lists(st.one_of(small_number_texts(rows, cols), grammar_texts()), max_size=6)
    )
    got = tm.decode_batch(texts, (rows, cols), index_base=ib)
    assert got.shape == (len(texts), rows, cols) and got.dtype == np.bool_
    for i, t in enumerate(texts):
        assert_array_equal(got[i], tm.decode(t, (rows, cols), index_base=ib))
        assert_array_equal(got[i], ref_decode_tolerant(t, rows, cols, ib)[0])
    H, W = data.draw(st.integers(1, 50)), data.draw(st.integers(1, 50))
    px = tm.decode_batch(texts, (rows, cols), shape=(H, W), index_base=ib)
    assert px.shape == (len(texts), H, W)
    for i, t in enumerate(texts):
        assert_array_equal(px[i], ref_unpatchify(ref_decode_tolerant(t, rows, cols, ib)[0], H, W))


@settings(deadline=None, max_examples=ex(30))
@given(st.lists(cell_grids(rc=st.just((7, 9))), max_size=5), index_bases)
def test_decode_batch_strict_equals_loop(cells_list, ib):
    texts = [canonical_text(c, ib) for c in cells_list]
    got = tm.decode_batch(texts, (7, 9), strict=True, index_base=ib)
    assert got.shape == (len(texts), 7, 9)
    for i, c in enumerate(cells_list):
        assert_array_equal(got[i], c)
    if texts:
        with pytest.raises(tm.TextMaskError):
            tm.decode_batch([*texts, "(0, 0) oops"], (7, 9), strict=True, index_base=ib)


# --------------------------------------------------------------------------- invalid arguments
_M = np.zeros((8, 8), np.uint8)


@pytest.mark.parametrize(
    "dtype, word",
    [
        (np.float64, "float64"),
        (np.float32, "float32"),
        (np.float16, "float16"),
        (object, "object"),
        (np.complex128, "complex128"),
    ],
)
def test_bad_dtype(dtype, word):
    m = np.zeros((8, 8), dtype=dtype)
    for fn in (tm.encode, tm.patchify):
        with pytest.raises(tm.TextMaskError, match=word):
            fn(m, 4)
    with pytest.raises(tm.TextMaskError, match=word):
        tm.score("", m, 4)
    with pytest.raises(tm.TextMaskError, match=word):
        tm.GroundTruth(m, 4)
    with pytest.raises(tm.TextMaskError, match=word):
        tm.encode_batch([m], 4)


@pytest.mark.parametrize(
    "shape, pat", [((2, 3, 4), r"\(2, 3, 4\)|\b3\b"), ((5,), r"\(5,\)|\b1\b"), ((), r"\(\)|\b0\b")]
)
def test_bad_ndim(shape, pat):
    m = np.zeros(shape, np.uint8)
    for fn in (tm.encode, tm.patchify):
        with pytest.raises(tm.TextMaskError, match=pat):
            fn(m, 4)
    with pytest.raises(tm.TextMaskError, match=pat):
        tm.score("", m, 4)


@pytest.mark.parametrize("shape", [(0, 5), (5, 0), (0, 0)])
def test_empty_shape_mask(shape):
    m = np.zeros(shape, np.uint8)
    pat = rf"\({shape[0]}, ?{shape[1]}\)|\b0\b"
    for fn in (tm.encode, tm.patchify):
        with pytest.raises(tm.TextMaskError, match=pat):
            fn(m, 4)
    with pytest.raises(tm.TextMaskError, match=pat):
        tm.GroundTruth(m, 4)


@pytest.mark.parametrize("shape", [(0, 5), (5, 0)])
def test_empty_decode_shape(shape):
    with pytest.raises(tm.TextMaskError, match=rf"\({shape[0]}, ?{shape[1]}\)|\b0\b"):
        tm.decode("(0, 0)", 4, shape=shape)


@pytest.mark.parametrize(
    "grid, pat",
    [(0, r"\b0\b"), (-3, r"-3"), ((4, 0), r"\b0\b"), ((0, 4), r"\b0\b"), ((-1, 4), r"-1")],
)
def test_bad_grid(grid, pat):
    with pytest.raises(tm.TextMaskError, match=pat):
        tm.encode(_M, grid)
    with pytest.raises(tm.TextMaskError, match=pat):
        tm.decode("(0, 0)", grid)
    with pytest.raises(tm.TextMaskError, match=pat):
        tm.patchify(_M, grid)


def test_bad_grid_object():
    with pytest.raises(tm.TextMaskError, match=r"\b0\b"):
        tm.encode(_M, tm.Grid(0, 3))


@pytest.mark.parametrize(
    "thr, pat", [(1.0, r"1(\.0)?"), (1.5, r"1\.5"), (-0.1, r"-0\.1"), (float("nan"), r"nan")]
)
def test_bad_threshold(thr, pat):
    with pytest.raises(tm.TextMaskError, match=pat):
        tm.encode(_M, 4, threshold=thr)
    with pytest.raises(tm.TextMaskError, match=pat):
        tm.patchify(_M, 4, threshold=thr)
    with pytest.raises(tm.TextMaskError, match=pat):
        tm.score("", _M, 4, level="cell", threshold=thr)


@pytest.mark.parametrize("ib", [2, -1, 5])
def test_bad_index_base(ib):
    pat = str(ib)
    with pytest.raises(tm.TextMaskError, match=pat):
        tm.encode(_M, 4, index_base=ib)
    with pytest.raises(tm.TextMaskError, match=pat):
        tm.decode("(0, 0)", 4, index_base=ib)
    with pytest.raises(tm.TextMaskError, match=pat):
        tm.decode("(0, 0)", 4, strict=True, index_base=ib)
    with pytest.raises(tm.TextMaskError, match=pat):
        tm.runs_to_text(np.zeros((0, 3), np.int64), index_base=ib)


def test_errors_are_value_errors():
    with pytest.raises(ValueError):
        tm.encode(np.zeros((4, 4), np.float64))


# --------------------------------------------------------------------------- unusual arrays
def _unusual_arrays():
    rng = np.random.default_rng(7)
    base = (rng.random((37, 53)) < 0.05).astype(np.uint8) * 3
    yield "big-endian uint16", base.astype(">u2")
    yield "big-endian int32", base.astype(">i4")
    yield "uint64", base.astype(np.uint64)
    yield "int16", base.astype(np.int16)
    yield "uint32", base.astype(np.uint32)
    ro = base.copy()
    ro.flags.writeable = False
    yield "read-only", ro
    yield "zero-stride rows", np.broadcast_to(base[5], (37, 53))
    yield "zero-stride cols", np.broadcast_to(base[:, 7:8], (37, 53))
    yield "transposed", base.T
    yield "bool view of uint8", (base != 0).view(np.uint8).view(bool)


@pytest.mark.parametrize(
    "name, mask", list(_unusual_arrays()), ids=lambda x: x if isinstance(x, str) else ""
)
def test_unusual_arrays(name, mask):
    for rows, cols in ((24, 24), (5, 7), (40, 3)):
        want = ref_patchify(mask, rows, cols)
        assert_array_equal(tm.patchify(mask, (rows, cols)), want, err_msg=name)
        assert tm.encode(mask, (rows, cols)) == ref_encode(mask, rows, cols), name
        s = tm.score(tm.encode(mask, (rows, cols)), mask, (rows, cols))
        assert (s.fn, s.tp) == (0, int(np.count_nonzero(mask))), name
        G = tm.GroundTruth(mask, (rows, cols))
        assert G.reward(tm.encode(mask, (rows, cols))) == pytest.approx(
            2.0 * (2 * s.tp / (2 * s.tp + s.fp)) if s.tp else 1.0
        )
