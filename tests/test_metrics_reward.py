"""Scores, metrics and the OmniAD detection reward, against the oracle."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from numpy.testing import assert_array_equal
from reference import (
    ref_decode_tolerant,
    ref_detection_reward,
    ref_edges,
    ref_f1,
    ref_iou,
    ref_precision,
    ref_recall,
    ref_scores,
)
from strategies import (
    cell_grids,
    ex,
    grammar_texts,
    grid_arg,
    index_bases,
    masks,
    rows_cols,
    small_number_texts,
    thresholds,
    tie_cells,
)

import textmask as tm

LEVELS = st.sampled_from(["pixel", "cell"])


def _approx(x):
    return pytest.approx(x, rel=1e-12, abs=1e-15)


def _check_scores(s, want):
    assert isinstance(s, tm.Scores)
    for k in ("tp", "fp", "fn", "tn"):
        v = getattr(s, k)
        assert isinstance(v, (int, np.integer)), (k, type(v))
    assert {k: int(getattr(s, k)) for k in want} == want
    tp, fp, fn = want["tp"], want["fp"], want["fn"]
    assert isinstance(s.f1, float) and s.f1 == _approx(ref_f1(tp, fp, fn))
    assert isinstance(s.iou, float) and s.iou == _approx(ref_iou(tp, fp, fn))
    assert isinstance(s.precision, float) and s.precision == _approx(ref_precision(tp, fp))
    assert isinstance(s.recall, float) and s.recall == _approx(ref_recall(tp, fn))


@st.composite
def pred_texts(draw, rows, cols):
    return draw(st.one_of(small_number_texts(rows, cols), grammar_texts(), st.just("")))


# --------------------------------------------------------------------------- scores
@settings(deadline=None, max_examples=ex(120))
@given(masks(max_side=60), rows_cols, LEVELS, thresholds, index_bases, st.data())
def test_score_text_matches_ref(gt, rc, level, threshold, ib, data):
    rows, cols = rc
    if level == "cell":
        assume(not tie_cells(gt, rows, cols, threshold).any())
    text = data.draw(pred_texts(rows, cols))
    pred = ref_decode_tolerant(text, rows, cols, ib)[0]
    want = ref_scores(pred, gt, rows, cols, level, threshold)
    kind = data.draw(st.sampled_from(["tuple", "Grid", "Grid+kw"]))
    g, kw = grid_arg(tm, kind, rows, cols, threshold, ib)
    s = tm.score(text, gt, g, level=level, **kw)
    _check_scores(s, want)
    assert tm.f1(text, gt, g, level=level, **kw) == _approx(
        ref_f1(want["tp"], want["fp"], want["fn"])
    )
    assert tm.iou(text, gt, g, level=level, **kw) == _approx(
        ref_iou(want["tp"], want["fp"], want["fn"])
    )
    assert tm.precision(text, gt, g, level=level, **kw) == _approx(
        ref_precision(want["tp"], want["fp"])
    )
    assert tm.recall(text, gt, g, level=level, **kw) == _approx(ref_recall(want["tp"], want["fn"]))
    total = gt.shape[0] * gt.shape[1] if level == "pixel" else rows * cols
    assert int(s.tp + s.fp + s.fn + s.tn) == total


@settings(deadline=None, max_examples=ex(100))
@given(masks(max_side=60), LEVELS, st.data())
def test_score_cells_matches_ref(gt, level, data):
    pred = data.draw(cell_grids())
    rows, cols = pred.shape
    want = ref_scores(pred, gt, rows, cols, level, 0.0)
    _check_scores(tm.score(pred, gt, (rows, cols), level=level), want)
    # the same cells as text give the same scores
    _check_scores(tm.score(tm.encode(pred, (rows, cols)), gt, (rows, cols), level=level), want)


def test_score_default_level_is_pixel_and_grid_24():
    gt = np.zeros((512, 512), np.uint8)
    gt[70:80, 90:140] = 255
    s = tm.score("(3, 4)-(3, 6)", gt)
    want = ref_scores(ref_decode_tolerant("(3, 4)-(3, 6)", 24, 24)[0], gt, 24, 24)
    _check_scores(s, want)
    # by hand: cells (3, 4..6) are pixel rows 64..84, cols 85..148 -> 21 x 64 pixels
    assert want == {"tp": 500, "fp": 21 * 64 - 500, "fn": 0, "tn": 512 * 512 - 21 * 64}
    assert s.f1 == _approx(1000 / (1000 + 844))
    c = tm.score("(3, 4)-(3, 6)", gt, level="cell")
    assert (c.tp, c.fp, c.fn) == (3, 0, 0) and c.f1 == 1.0


# --------------------------------------------------------------------------- rewards
@settings(deadline=None, max_examples=ex(120))
@given(
    masks(max_side=60),
    rows_cols,
    LEVELS,
    thresholds,
    index_bases,
    st.sampled_from([2.0, 1.0, 0.5, 3.25]),
    st.data(),
)
def test_detection_reward_matches_ref(gt, rc, level, threshold, ib, alpha, data):
    rows, cols = rc
    if level == "cell":
        assume(not tie_cells(gt, rows, cols, threshold).any())
    text = data.draw(pred_texts(rows, cols))
    want = ref_detection_reward(text, gt, rows, cols, alpha, level, threshold, ib)
    got = tm.detection_reward(
        text, gt, (rows, cols), alpha=alpha, level=level, threshold=threshold, index_base=ib
    )
    assert isinstance(got, float)
    assert got == _approx(want)
    g = tm.Grid(rows, cols, threshold=threshold, index_base=ib)
    assert tm.detection_reward(text, gt, g, alpha=alpha, level=level) == _approx(want)
    if alpha == 2.0:
        assert tm.detection_reward(text, gt, g, level=level) == _approx(want)
    # the reward of the scores is the same, masks smaller than the grid included
    assert tm.score(text, gt, g, level=level).reward(alpha) == _approx(want)
    # and so is that of the bare counts (what evaluation runs store) when every cell
    # covers a pixel
    if gt.shape[0] >= rows and gt.shape[1] >= cols:
        s = tm.score(text, gt, g, level=level)
        assert tm.Scores(s.tp, s.fp, s.fn, s.tn).reward(alpha) == _approx(want)


@settings(deadline=None, max_examples=ex(60))
@given(masks(max_side=60), rows_cols, LEVELS, thresholds, st.data())
def test_ground_truth_object(gt, rc, level, threshold, data):
    rows, cols = rc
    if level == "cell":
        assume(not tie_cells(gt, rows, cols, threshold).any())
    texts = data.draw(st.lists(pred_texts(rows, cols), max_size=6))
    G = tm.GroundTruth(gt, (rows, cols), threshold=threshold, level=level)
    want = [ref_detection_reward(t, gt, rows, cols, 2.0, level, threshold) for t in texts]
    for t, w in zip(texts, want, strict=True):
        assert G.reward(t) == _approx(w)
        assert G.reward(t, alpha=1.0) == _approx(
            ref_detection_reward(t, gt, rows, cols, 1.0, level, threshold)
        )
        pred = ref_decode_tolerant(t, rows, cols)[0]
        want_s = ref_scores(pred, gt, rows, cols, level, threshold)
        _check_scores(G.score(t), want_s)
        _check_scores(G.score(pred), want_s)
    r = G.rewards(texts)
    assert isinstance(r, np.ndarray) and r.dtype == np.float64 and r.shape == (len(texts),)
    assert r.tolist() == _approx(want)
    want_half = [ref_detection_reward(t, gt, rows, cols, 0.5, level, threshold) for t in texts]
    assert G.rewards(texts, alpha=0.5).tolist() == _approx(want_half)
    # GroundTruth as a target of score / detection_reward
    for t, w in zip(texts, want, strict=True):
        assert tm.detection_reward(t, G, (rows, cols), level=level, threshold=threshold) == _approx(
            w
        )


@settings(deadline=None, max_examples=ex(40))
@given(st.lists(masks(max_side=40), min_size=1, max_size=3), rows_cols, LEVELS, st.data())
def test_detection_rewards_repeated_targets(gts, rc, level, data):
    rows, cols = rc
    n = data.draw(st.integers(0, 8))
    idx = [data.draw(st.integers(0, len(gts) - 1)) for _ in range(n)]
    texts = [data.draw(pred_texts(rows, cols)) for _ in range(n)]
    want = [
        ref_detection_reward(t, gts[i], rows, cols, 2.0, level)
        for t, i in zip(texts, idx, strict=True)
    ]
    # masks, possibly the same object repeated
    got = tm.detection_rewards(texts, [gts[i] for i in idx], (rows, cols), level=level)
    assert isinstance(got, np.ndarray) and got.dtype == np.float64 and got.shape == (n,)
    assert got.tolist() == _approx(want)
    # GroundTruth objects, the same object repeated (the GRPO use case)
    G = [tm.GroundTruth(g, (rows, cols), level=level) for g in gts]
    got2 = tm.detection_rewards(texts, [G[i] for i in idx], (rows, cols), level=level)
    assert got2.tolist() == _approx(want)
    got3 = tm.detection_rewards(texts, [gts[i] for i in idx], (rows, cols), alpha=1.0, level=level)
    want1 = [
        ref_detection_reward(t, gts[i], rows, cols, 1.0, level)
        for t, i in zip(texts, idx, strict=True)
    ]
    assert got3.tolist() == _approx(want1)


def test_detection_rewards_one_prompt_many_completions():
    gt = np.zeros((512, 512), np.uint8)
    gt[70:80, 90:140] = 255
    texts = [
        "(3, 4)-(3, 6)",
        "",
        "none",
        "(3, 5)",
        "(0, 0)-(23, 23)",
        "(3, 4)-(3, 6), (10, 10)",
    ] * 3
    want = [ref_detection_reward(t, gt, 24, 24) for t in texts]
    assert tm.detection_rewards(texts, [gt] * len(texts)).tolist() == _approx(want)
    G = tm.GroundTruth(gt)
    assert tm.detection_rewards(texts, [G] * len(texts)).tolist() == _approx(want)
    assert G.rewards(texts).tolist() == _approx(want)


# --------------------------------------------------------------------------- docs/method.md cases by hand
def _aligned_gt():
    gt = np.zeros((48, 48), np.uint8)  # 24 x 24 grid, 2 x 2 pixels per cell
    gt[4:8, 6:10] = 255  # cells rows 2..3, cols 3..4
    return gt


@pytest.mark.parametrize("level", ["pixel", "cell"])
def test_reward_hand_cases(level):
    empty = np.zeros((48, 48), np.uint8)
    assert tm.detection_reward("", empty, level=level) == 1.0
    assert tm.detection_reward("none", empty, level=level) == 1.0
    assert tm.detection_reward("(30, 30)", empty, level=level) == 1.0  # nothing in the grid
    assert tm.detection_reward("(0, 0)", empty, level=level) == 0.0
    assert tm.GroundTruth(empty, level=level).reward("(5, 5)-(5, 7)") == 0.0
    gt = _aligned_gt()
    perfect = "(2, 3)-(2, 4), (3, 3)-(3, 4)"
    assert tm.encode(gt) == perfect
    assert tm.detection_reward(perfect, gt, level=level) == 2.0
    assert tm.detection_reward(perfect, gt, alpha=1.0, level=level) == 1.0
    assert tm.detection_reward("", gt, level=level) == 0.0
    assert tm.detection_reward("no anomaly", gt, level=level) == 0.0


@pytest.mark.parametrize("level", ["pixel", "cell"])
def test_half_overlap_by_hand(level):
    gt = np.zeros((48, 48), np.uint8)
    gt[4:6, 6:10] = 1  # cells (2, 3) and (2, 4): 8 pixels
    pred = "(2, 4)-(2, 5)"  # cells (2, 4) and (2, 5): 8 pixels, 4 shared
    s = tm.score(pred, gt, level=level)
    k = 4 if level == "pixel" else 1
    assert (s.tp, s.fp, s.fn) == (k, k, k)
    assert s.f1 == 0.5 and s.precision == 0.5 and s.recall == 0.5
    assert s.iou == _approx(1 / 3)
    assert tm.f1(pred, gt, level=level) == 0.5
    assert tm.iou(pred, gt, level=level) == _approx(1 / 3)
    assert tm.detection_reward(pred, gt, level=level) == 1.0


def test_empty_everything_metric_conventions():
    empty = np.zeros((10, 10), bool)
    s = tm.score("", empty, 5)
    assert (s.tp, s.fp, s.fn, s.tn) == (0, 0, 0, 100)
    assert s.f1 == 1.0 and s.iou == 1.0 and s.precision == 1.0 and s.recall == 1.0
    s = tm.score("(0, 0)", empty, 5)
    assert (s.tp, s.fp, s.fn) == (0, 4, 0)
    assert s.f1 == 0.0 and s.iou == 0.0 and s.precision == 0.0 and s.recall == 1.0
    full = np.ones((10, 10), bool)
    s = tm.score("", full, 5)
    assert s.precision == 1.0 and s.recall == 0.0 and s.f1 == 0.0


def test_cell_level_threshold_hand_case():
    gt = np.zeros((8, 8), np.uint8)  # 4 x 4 grid, 2 x 2 pixels per cell
    gt[0, 0] = 1  # cell (0, 0): 1/4 anomalous
    gt[2:4, 2:4] = 1  # cell (1, 1): 4/4
    gt[4:6, 4] = 1  # cell (2, 2): 2/4
    assert tm.encode(gt, 4, threshold=0.25) == "(1, 1), (2, 2)"
    s = tm.score("(1, 1)", gt, 4, level="cell", threshold=0.25)
    assert (s.tp, s.fp, s.fn) == (1, 0, 1)
    G = tm.GroundTruth(gt, tm.Grid(4, 4, threshold=0.5), level="cell")
    assert G.reward("(1, 1)") == 2.0
    # at pixel level the threshold does not change the target
    s = tm.score("(1, 1)", gt, 4, level="pixel", threshold=0.5)
    assert (s.tp, s.fp, s.fn) == (4, 0, 3)


def test_small_gt_with_cells_covering_no_pixel():
    gt = np.zeros((3, 5), np.uint8)
    gt[1, 2] = 9
    rows = cols = 24
    for t in ("(8, 9)", "(0, 0)-(23, 23)", "(9, 11)"):
        want = ref_detection_reward(t, gt, rows, cols)
        assert tm.detection_reward(t, gt) == _approx(want)
        assert_array_equal(
            [getattr(tm.score(t, gt), k) for k in ("tp", "fp", "fn", "tn")],
            [
                ref_scores(ref_decode_tolerant(t, 24, 24)[0], gt, 24, 24)[k]
                for k in ("tp", "fp", "fn", "tn")
            ],
        )


def test_empty_gt_with_predicted_cell_covering_no_pixel():
    """Brief: gt empty -> 1.0 if *no predicted cell*, else 0.0.  With H < rows some
    cells cover no pixel; a prediction naming such a cell is still a non-empty
    prediction."""
    gt = np.zeros((3, 5), np.uint8)  # 24 x 24 grid: cell (0, 0) covers no pixel
    assert ref_detection_reward("(0, 0)", gt, 24, 24) == 0.0
    assert tm.detection_reward("(0, 0)", gt) == 0.0
    assert tm.GroundTruth(gt).reward("(0, 0)") == 0.0
    assert tm.detection_rewards(["(0, 0)"], [gt]).tolist() == [0.0]
    # the scores of that text carry the cell it names, so their reward agrees (it was
    # 1.0 before Scores knew its cells); counts alone still read as nothing predicted
    s = tm.score("(0, 0)", gt)
    assert (s.tp, s.fp, s.fn, s.tn, s.cells) == (0, 0, 0, 15, 1)
    assert s.reward() == 0.0 and tm.GroundTruth(gt).score("(0, 0)").reward() == 0.0
    assert tm.score(tm.decode("(0, 0)"), gt).reward() == 0.0  # a cell grid, too
    assert tm.Scores(0, 0, 0, 15).reward() == 1.0
    assert tm.score("", gt).reward() == 1.0 and tm.score("", gt).cells == 0


# --------------------------------------------------------------------------- one reward definition
@st.composite
def small_targets(draw):
    """A grid and a ground truth often smaller than it (cells that cover no pixel),
    often empty, and a text that often names such a cell."""
    rows, cols = draw(st.integers(1, 30)), draw(st.integers(1, 30))
    h = draw(st.integers(1, rows + 3))
    w = draw(st.integers(1, cols + 3))
    fill = draw(st.sampled_from([0.0, 0.0, 0.1, 0.5, 1.0]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    gt = (rng.random((h, w)) < fill).astype(draw(st.sampled_from([np.uint8, bool, np.int32])))
    ye, xe = ref_edges(h, rows), ref_edges(w, cols)
    hollow = [
        (r, c) for r in range(rows) for c in range(cols) if ye[r] == ye[r + 1] or xe[c] == xe[c + 1]
    ]
    text = draw(pred_texts(rows, cols))
    if hollow and draw(st.booleans()):
        r, c = draw(st.sampled_from(hollow))
        text = draw(st.sampled_from([f"({r}, {c})", f"{text}, ({r}, {c})", f"({r}, {c}) junk"]))
    return gt, rows, cols, text


@settings(deadline=None, max_examples=ex(200))
@given(
    small_targets(),
    LEVELS,
    thresholds,
    index_bases,
    st.sampled_from([2.0, 1.0, 0.5, 3.25]),
)
def test_scores_reward_and_kernel_agree_with_oracle(case, level, threshold, ib, alpha):
    """Scores.reward and the batch kernel are one definition: on every input, masks
    smaller than the grid included, both give the oracle's reward."""
    gt, rows, cols, text = case
    if level == "cell":
        assume(not tie_cells(gt, rows, cols, threshold).any())
    want = ref_detection_reward(text, gt, rows, cols, alpha, level, threshold, ib)
    grid = tm.Grid(rows, cols, threshold=threshold, index_base=ib)
    G = tm.GroundTruth(gt, grid, level=level)
    s = G.score(text)
    assert s.reward(alpha) == _approx(want)
    assert G.reward(text, alpha) == _approx(want)
    assert tm.detection_rewards([text, text], [G, gt], grid, alpha=alpha, level=level).tolist() == (
        _approx([want, want])
    )
    cells = ref_decode_tolerant(text, rows, cols, ib)[0]
    assert s.cells == int(cells.sum())
    assert G.score(cells).reward(alpha) == _approx(want)  # the cell-grid path, too
    assert tm.Scores(s.tp, s.fp, s.fn, s.tn, s.cells).reward(alpha) == _approx(want)
