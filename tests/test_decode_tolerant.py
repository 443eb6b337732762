"""Tolerant decoding of untrusted model text, against the regex oracle."""

from __future__ import annotations

import random

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st
from numpy.testing import assert_array_equal
from reference import SAT, ref_cells_to_runs, ref_decode_tolerant, ref_unpatchify
from strategies import ex, grammar_texts, index_bases, rows_cols, small_number_texts

import textmask as tm


def _check_report(rep, info):
    assert isinstance(rep, tm.DecodeReport)
    got = {k: getattr(rep, k) for k in ("runs", "runs_clipped", "cells_dropped", "chars_skipped")}
    for k, v in got.items():
        assert isinstance(v, (int, np.integer)), (k, type(v))
    want = {k: info[k] for k in got}
    assert {k: int(v) for k, v in got.items()} == want
    # first_problem: offset of the first skipped character or clipped run
    fp = rep.first_problem
    if info["first_problem"] is None:
        assert fp is None
    else:
        assert fp is not None and isinstance(fp, (int, np.integer))
        fs, cs = info["first_skipped"], info["first_clipped_span"]
        if cs is None or (fs is not None and fs < cs[0]):
            assert fp == fs
        else:
            assert cs[0] <= fp < cs[1], (fp, cs)


def _check(text, rows, cols, ib=0):
    want, info = ref_decode_tolerant(text, rows, cols, ib)
    got, rep = tm.decode(text, (rows, cols), index_base=ib, report=True)
    assert got.shape == (rows, cols) and got.dtype == np.bool_
    assert_array_equal(got, want)
    _check_report(rep, info)
    assert_array_equal(tm.decode(text, (rows, cols), index_base=ib), want)
    return want, info


# --------------------------------------------------------------------------- never raises
@settings(deadline=None, max_examples=ex(200))
@given(st.text(), rows_cols, index_bases)
@example("(0, 0)", (1, 1), 0)
@example("", (24, 24), 0)
def test_arbitrary_text_matches_ref(text, rc, ib):
    _check(text, *rc, ib)


@settings(deadline=None, max_examples=ex(100))
@given(st.binary(max_size=200), rows_cols)
def test_arbitrary_bytes_decoded_with_replace(data, rc):
    _check(data.decode("utf-8", errors="replace"), *rc)


@settings(deadline=None, max_examples=ex(150))
@given(
    st.text(alphabet=st.sampled_from(list("()[],-~ to0123456789\n\t;\u2013\u2014x")), max_size=60),
    rows_cols,
    index_bases,
)
def test_dense_alphabet_text_matches_ref(text, rc, ib):
    _check(text, *rc, ib)


@settings(deadline=None, max_examples=ex(60))
@given(
    st.text(
        alphabet=st.one_of(
            st.sampled_from(list("(), 0123456789-")),
            st.characters(exclude_categories=()),  # includes lone surrogates
        ),
        max_size=40,
    ),
    rows_cols,
)
@example("(1, 2)\ud800", (24, 24))
@example("(1,\ud8002)", (24, 24))
@example("\x00(1, 2)\x00(3,\x004)", (24, 24))
def test_any_python_str_including_surrogates(text, rc):
    _check(text, *rc)


# --------------------------------------------------------------------------- grammar texts
@settings(deadline=None, max_examples=ex(300))
@given(grammar_texts(), rows_cols, index_bases)
@example("(14,\n12)", (24, 24), 0)
@example("((1, 2)", (24, 24), 0)
@example("(1, (2, 3))", (24, 24), 0)
@example("(1, 2)-(1, 3)-(1, 4)", (24, 24), 0)
@example("(0, 0)--(0, 1)", (24, 24), 0)
@example("(5, 23)to(3, 20)", (24, 24), 0)
@example("(1,2)tomato(1,3)", (24, 24), 0)
@example("[3 4] \u2014 [3\n1]", (24, 24), 0)
@example("(-1, 5)-(2, -3)", (4, 4), 0)
@example("(0, 9)-(2, 9)", (4, 4), 0)
@example("(0, -9)-(2, -9)", (4, 4), 0)
@example("(-99999999999, 0)-(99999999999, 0)", (4, 4), 0)
@example("(2147483648, 0)-(-2147483648, 3)", (4, 4), 1)
@example("(0, 0)", (4, 4), 1)
@example("(1 -1)", (4, 4), 0)
@example("(\u0661, 2)", (4, 4), 0)
@example("\uff081, 2\uff09", (4, 4), 0)
def test_grammar_text_matches_ref(text, rc, ib):
    _check(text, *rc, ib)


@settings(deadline=None, max_examples=ex(200))
@given(rows_cols, index_bases, st.data())
def test_near_grid_text_matches_ref(rc, ib, data):
    rows, cols = rc
    text = data.draw(small_number_texts(rows, cols))
    _check(text, rows, cols, ib)


@settings(deadline=None, max_examples=ex(60))
@given(grammar_texts(), rows_cols, st.integers(1, 60), st.integers(1, 60))
def test_decode_shape_tolerant(text, rc, H, W):
    rows, cols = rc
    want = ref_unpatchify(ref_decode_tolerant(text, rows, cols)[0], H, W)
    got = tm.decode(text, (rows, cols), shape=(H, W))
    assert got.shape == (H, W)
    assert_array_equal(got, want)
    got2, rep = tm.decode(text, (rows, cols), shape=(H, W), report=True)
    assert_array_equal(got2, want)
    _check_report(rep, ref_decode_tolerant(text, rows, cols)[1])


# --------------------------------------------------------------------------- hand cases
def test_hand_cases():
    g = 24
    c, info = _check("(3, 4)-(3, 6)", g, g)
    assert ref_cells_to_runs(c) == [(3, 4, 6)] and info["runs"] == 1 and info["chars_skipped"] == 0
    # reversed same-row range
    c, _ = _check("(3, 6)-(3, 4)", g, g)
    assert ref_cells_to_runs(c) == [(3, 4, 6)]
    # cross-row in scan order, both ways round
    for t in (
        "(2, 22)-(4, 1)",
        "(4, 1)-(2, 22)",
        "[2 22] to [4, 1]",
        "(2, 22)\u2013(4,1)",
        "(2,22)~(4,1)",
    ):
        c, _ = _check(t, g, g)
        assert ref_cells_to_runs(c) == [(2, 22, 23), (3, 0, 23), (4, 0, 1)], t
    # line break inside a pair, as real model outputs do
    c, _ = _check("<seg>(14,\n12)</seg>", g, g)
    assert ref_cells_to_runs(c) == [(14, 12, 12)]
    # prose yields nothing, and counts as skipped characters
    for t in ("none", "no anomaly", "No anomalies detected."):
        c, info = _check(t, g, g)
        assert not c.any() and info["runs"] == 0
        assert info["chars_skipped"] == len(t) - t.count(" ")
    # out of grid parts are dropped and reported
    c, info = _check("(23, 22)-(23, 30)", g, g)
    assert ref_cells_to_runs(c) == [(23, 22, 23)]
    assert info["runs_clipped"] == 1 and info["cells_dropped"] == 7
    c, info = _check("(-1, 3), (24, 0), (0, 24)", g, g)
    assert not c.any() and info["runs_clipped"] == 3 and info["cells_dropped"] == 3
    # duplicates and overlaps are united
    c, info = _check("(1, 1)-(1, 5); (1, 3)-(1, 8)\n(1, 1)", g, g)
    assert ref_cells_to_runs(c) == [(1, 1, 8)] and info["runs"] == 3
    # index base 1
    c, info = _check("(1, 1)-(1, 3), (0, 5)", g, g, 1)
    assert ref_cells_to_runs(c) == [(0, 0, 2)] and info["runs_clipped"] == 1


def test_paper_tags_and_think_text():
    text = (
        "<seg>(3, 4)-(3, 6), (4, 5), (5, 4)-(5, 7)<\\seg><think> According to the segmentation "
        "result, there is an anomaly in the object, which is located in the center.</think>"
        "<answer>B</answer>"
    )
    c, _ = _check(text, 24, 24)
    assert ref_cells_to_runs(c) == [(3, 4, 6), (4, 5, 5), (5, 4, 7)]


# --------------------------------------------------------------------------- bounded cost
def test_huge_column_is_cheap_and_counted():
    text = "(0, 0)-(0, 99999999999)"
    c, info = _check(text, 24, 24)
    assert c[0].all() and not c[1:].any()
    # 99999999999 saturates to 2**31 - 1: columns 0..2**31-1 of which 24 are kept
    assert info["cells_dropped"] == SAT - 23 == 2**31 - 1 - 23
    assert info["runs_clipped"] == 1
    _, rep = tm.decode(text, report=True)
    assert rep.cells_dropped == SAT - 23
    assert rep.first_problem == 0


def test_huge_cross_row_range_counts():
    text = "(-99999999999, 5)-(99999999999, 2)"
    c, info = _check(text, 24, 24)
    assert c.all()
    # row -SAT: columns 5..23 (19), rows strictly between: 2*SAT - 1 rows of 24, row SAT: 0..2 (3)
    total = 19 + (2 * SAT - 1) * 24 + 3
    assert info["cells_dropped"] == total - 24 * 24


def test_megabyte_of_junk():
    rng = np.random.default_rng(1234)
    raw = rng.integers(0, 256, size=1 << 20, dtype=np.uint8).tobytes()
    text = raw.decode("latin-1")
    _check(text, 24, 24)
    text2 = "".join(rng.choice(list("()[],-~0123456789 \n;to"), size=1 << 20))
    _check(text2, 24, 24)


def test_megabyte_of_random_runs_matches_ref():
    rnd = random.Random(99)
    opens, closes = ["(", "[", "( "], [")", "]", " )"]
    seps = [", ", ",", " ", "\n", " , "]
    marks = ["-", "\u2013", "\u2014", "~", "to", " - ", "", "", "--"]
    between = [", ", ";", "\n", "", " x ", "((", ")"]
    parts = []
    size = 0
    while size < 1 << 20:
        n = [rnd.randint(-3, 9) for _ in range(4)]
        p = f"{rnd.choice(opens)}{n[0]}{rnd.choice(seps)}{n[1]}{rnd.choice(closes)}"
        mark = rnd.choice(marks)
        if mark:
            p += f"{mark}{rnd.choice(opens)}{n[2]}{rnd.choice(seps)}{n[3]}{rnd.choice(closes)}"
        p += rnd.choice(between)
        parts.append(p)
        size += len(p)
    text = "".join(parts)
    for ib in (0, 1):
        _check(text, 5, 7, ib)


def test_megabyte_of_repeated_runs():
    unit = "(0,0)-(23,23), "
    n = (1 << 20) // len(unit)
    text = unit * n
    got, rep = tm.decode(text, report=True)
    assert got.all()
    assert rep.runs == n and rep.runs_clipped == 0 and rep.cells_dropped == 0
    assert rep.chars_skipped == 0 and rep.first_problem is None
    batch = tm.decode_batch([text, text[:1000]])
    assert batch.shape == (2, 24, 24) and batch.all()


def test_megabyte_of_digits():
    text = "(" + "9" * (1 << 20) + ", 1)"
    c, info = _check(text, 24, 24)
    assert not c.any() and info["cells_dropped"] == 1
