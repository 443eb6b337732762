"""Grid.parse: the one grid syntax of every command line ("24" or "16x32")."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import textmask
from textmask import Grid, TextMaskError


@given(st.integers(1, 4096), st.integers(1, 4096), st.sampled_from(["x", "X", " x ", "x "]))
def test_rows_x_cols_round_trips(rows, cols, sep):
    if rows * cols > textmask.grid.MAX_CELLS:
        with pytest.raises(TextMaskError, match="at most"):
            Grid.parse(f"{rows}{sep}{cols}")
        return
    assert Grid.parse(f"{rows}{sep}{cols}").shape == (rows, cols)
    assert Grid.parse(f" {rows} ").shape == (rows, rows)


@given(st.text(max_size=30))
def test_any_text_is_a_grid_or_a_textmask_error(text):
    try:
        g = Grid.parse(text)
    except TextMaskError as exc:
        assert "grid" in str(exc)
    else:
        want = [int(p) for p in text.lower().split("x")]
        assert list(g.shape) == (want * 2 if len(want) == 1 else want)


def test_threshold_and_index_base_are_passed_on():
    g = Grid.parse("8x4", threshold=0.5, index_base=1)
    assert (g.rows, g.cols, g.threshold, g.index_base) == (8, 4, 0.5, 1)


@pytest.mark.parametrize(
    "text", ["16,32", "16 32", "-3", "0", "3x", "x3", "3x4x5", "1e3", "9" * 5000]
)
def test_other_forms_are_refused_with_the_expected_syntax(text):
    with pytest.raises(TextMaskError, match=r"grid|at least|>= 1"):
        Grid.parse(text)


def test_non_text_is_refused():
    with pytest.raises(TextMaskError, match="takes a str"):
        Grid.parse(24)  # type: ignore[arg-type]
