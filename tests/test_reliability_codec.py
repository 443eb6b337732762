"""Hostile shapes and sizes: every one is a clear TextMaskError, never a crash (issue 10, item 2).

The cases that crashed the interpreter (SIGSEGV: cell edges of a ``2**62``-pixel shape
overflow int64 and the kernel writes through the wrapped edges) run in a subprocess,
so a crash is a failed test, not a dead pytest.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import textmask as tm
from textmask.grid import MAX_CELLS

ROOT = Path(__file__).resolve().parents[1]


def run_isolated(code: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter with the repository importable."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}",
    }
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=env,
    )


def expect_clear_error(call: str, *needles: str) -> None:
    """``call`` must raise TextMaskError whose message holds every needle, in a subprocess."""
    code = f"""
        import numpy as np
        import textmask as tm
        from omniad_core import parse_response
        try:
            {call}
        except tm.TextMaskError as exc:
            print("TextMaskError:", exc)
        else:
            print("no error")
    """
    proc = run_isolated(code)
    assert proc.returncode == 0, (
        f"{call} killed the interpreter (return code {proc.returncode}): {proc.stderr[-2000:]}"
    )
    out = proc.stdout.strip()
    assert out.startswith("TextMaskError:"), (out, proc.stderr[-2000:])
    assert "\n" not in out  # one message, no traceback
    for needle in needles:
        assert needle in out, (needle, out)


HUGE = 2**62
SIDE = "at most 2147483647 (2**31 - 1) pixels per side"
LIMIT = "textmask.set_max_pixels"


@pytest.mark.parametrize(
    ("call", "needles"),
    [
        ('tm.decode("(0, 0)", shape=(2**62, 2))', (SIDE, "4611686018427387904")),
        ('tm.decode("(0, 0)", 3, shape=(2, 2**62))', (SIDE, "the width")),
        ("tm.unpatchify(np.ones((24, 24), bool), (2**62, 2))", (SIDE,)),
        ('tm.decode_batch(["(0, 0)", ""], shape=(2**62, 2))', (SIDE,)),
        ('tm.area("(0, 0)", 3, shape=(2**62, 2))', (SIDE,)),
        ('parse_response("<seg>(0, 0)</seg>").mask((2**62, 2))', (SIDE,)),
        ('tm.decode("(0, 0)", shape=(2**31, 2**31))', (SIDE,)),
        ('tm.decode("(0, 0)", shape=[np.int64(2**62), 2])', (SIDE,)),
        ('tm.decode("(0, 0)", shape=(np.uint64(2**63), np.int32(2)))', (SIDE,)),
        # the text writer's digit count overflowed: a crash too
        ("tm.runs_to_text([[2**63 - 1, 0, 0]], index_base=1)", ("indices below 16777216",)),
        ("tm.runs_to_text(np.array([[2**63, 0, 0]], np.uint64))", ("not a valid",)),
    ],
)
def test_overflowing_shapes_are_a_clear_error_not_a_crash(call, needles):
    expect_clear_error(call, *needles)


@pytest.mark.parametrize(
    "call",
    [
        'tm.decode("(0, 0)", shape=(100000, 100000))',
        "tm.unpatchify(np.ones((4, 4), bool), (100000, 100000))",
        'tm.area("(0, 0)", shape=(100000, 100000))',
        'tm.decode("(0, 0)", shape=(2**40, 1))',
    ],
)
def test_a_shape_above_the_pixel_limit_is_refused_before_allocating(call):
    """(100000, 100000) would be a 10 GB mask: refused with the limit and the way out."""
    needles = ("more than textmask's limit of 2147483648", LIMIT, "GroundTruth")
    if "2**40" in call:
        needles = (SIDE,)
    expect_clear_error(call, *needles)


def test_the_cli_decode_of_an_overflowing_shape_is_one_error_line(tmp_path):
    out = tmp_path / "m.png"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "omniad_core",
            "decode",
            "(0, 0)",
            "--shape",
            str(HUGE),
            "2",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    # the CLI may refuse the shape itself (its image limit) or relay the codec's error
    assert len(lines) == 1 and "error:" in lines[0] and "pixels" in lines[0], proc.stderr
    assert not out.exists()


def test_hostile_shapes_property_never_crashes():
    """Any (H, W) pair: a result of that shape, or a TextMaskError; run isolated."""
    code = """
        import numpy as np
        from hypothesis import given, settings, strategies as st
        import textmask as tm
        from strategies import ex

        tm.set_max_pixels(1 << 14)  # small outputs, so accepted shapes stay cheap
        sides = st.one_of(
            st.integers(-3, 300),
            st.integers(2**31 - 3, 2**31 + 3),
            st.integers(2**62 - 2, 2**64),
            st.sampled_from([2**32, 2**40, 2**61, 2**63 - 1, 2**63]),
        )
        cells = np.ones((5, 7), bool)

        @settings(max_examples=ex(400), deadline=None, database=None)
        @given(h=sides, w=sides, n=st.integers(0, 3), grid=st.sampled_from([24, (5, 7), 1]))
        def prop(h, w, n, grid):
            limit = tm.max_pixels()
            size = tm.Grid.of(grid).size
            fits = 1 <= h < 2**31 and 1 <= w < 2**31 and h * w <= limit
            calls = {
                "decode": (lambda: tm.decode("(0, 0)-(3, 5)", grid, shape=(h, w)), fits),
                "unpatchify": (lambda: tm.unpatchify(cells, (h, w)), fits),
                "area": (lambda: tm.area("(0, 0)", grid, shape=(h, w)), fits),
                "decode_batch": (
                    lambda: tm.decode_batch(["(1, 1)"] * n, grid, shape=(h, w)),
                    fits and n * h * w <= limit and n * size <= limit,
                ),
            }
            for name, (call, ok) in calls.items():
                try:
                    out = call()
                except tm.TextMaskError as exc:
                    assert not ok and str(exc), (name, h, w, n, exc)
                else:
                    assert ok, (name, h, w, n)
                    if isinstance(out, np.ndarray):
                        assert out.shape[-2:] == (h, w)

        prop()
        print("ok")
    """
    proc = run_isolated(code, timeout=600)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", (
        proc.returncode,
        proc.stdout[-2000:],
        proc.stderr[-3000:],
    )


# --------------------------------------------------------------------------- in process
# (safe now: each of these is refused before any kernel runs)
def test_pixel_limit_is_configurable_and_restorable():
    assert tm.max_pixels() == 2**31
    old = tm.set_max_pixels(100)
    try:
        assert old == 2**31 and tm.max_pixels() == 100
        assert tm.decode("(0, 0)", 2, shape=(10, 10)).shape == (10, 10)
        with pytest.raises(tm.TextMaskError, match="110 pixels, more than textmask's limit of 100"):
            tm.decode("(0, 0)", 2, shape=(11, 10))
        with pytest.raises(tm.TextMaskError, match="output of 2 pixel masks of 10 x 10"):
            tm.decode_batch(["", ""], 2, shape=(10, 10))
        with pytest.raises(tm.TextMaskError, match="output of 5 cell grids of 5 x 5"):
            tm.decode_batch([""] * 5, 5)
        assert tm.decode_batch([""] * 4, 5).shape == (4, 5, 5)
    finally:
        assert tm.set_max_pixels(None) == 100
    assert tm.max_pixels() == 2**31


@pytest.mark.parametrize("bad", [0, -1, 2**62 + 1, 1.5, True, "10", None.__class__])
def test_set_max_pixels_rejects_nonsense(bad):
    with pytest.raises(tm.TextMaskError, match="max_pixels must be an integer"):
        tm.set_max_pixels(bad)
    assert tm.max_pixels() == 2**31


def test_shape_limit_holds_for_numpy_integers_and_lists():
    old = tm.set_max_pixels(64)
    try:
        for shape in ([np.int64(9), 8], (np.uint16(8), np.int32(9)), [65, 1]):
            with pytest.raises(tm.TextMaskError, match="more than textmask's limit of 64"):
                tm.decode("(0, 0)", shape=shape)
        assert tm.decode("(0, 0)", 2, shape=[np.int64(8), np.uint8(8)]).shape == (8, 8)
    finally:
        tm.set_max_pixels(old)


def test_grid_edges_check_the_image_side():
    g = tm.Grid(3, 3)
    assert g.row_edges(10).tolist() == [0, 3, 6, 10]
    for bad in (2**62, 2**31, 0, -5):
        with pytest.raises(tm.TextMaskError, match="height"):
            g.row_edges(bad)
        with pytest.raises(tm.TextMaskError, match="width"):
            g.col_edges(bad)
    with pytest.raises(tm.TextMaskError, match="height"):
        g.row_edges(2.5)
    assert g.col_edges(2**31 - 1)[-1] == 2**31 - 1  # the largest side: exact, no overflow


@pytest.mark.parametrize(
    ("shape", "says"),
    [((2**31, 1), r"2\*\*31 - 1"), ((50000, 50000), "2500000000 pixels, more than")],
)
def test_mask_arrays_beyond_the_limits_are_refused_before_any_copy(shape, says):
    """A broadcast view takes no memory; copying it to bytes (as HEAD did) would take 2.5 GB."""
    view = np.broadcast_to(np.ones((1, 1), bool), shape)
    for call in (
        lambda: tm.GroundTruth(view),
        lambda: tm.encode(view),
        lambda: tm.patchify(view),
        lambda: tm.detection_reward("(0, 0)", view),
        lambda: tm.encode_batch([view]),
    ):
        with pytest.raises(tm.TextMaskError, match=says):
            call()


def test_a_mask_within_the_limit_is_scored_as_before():
    old = tm.set_max_pixels(48 * 48)
    try:
        m = np.zeros((48, 48), bool)
        m[:2, :2] = True
        assert tm.detection_reward("(0, 0)", m) == 2.0
        with pytest.raises(tm.TextMaskError, match="downscale the mask"):
            tm.GroundTruth(np.zeros((48, 49), bool))
    finally:
        tm.set_max_pixels(old)


def test_cell_grids_are_bounded_like_grids():
    wide = np.broadcast_to(np.ones((1, 1), bool), (1, MAX_CELLS + 1))
    with pytest.raises(tm.TextMaskError, match="at most 16777216 cells"):
        tm.unpatchify(wide, (4, 4))
    with pytest.raises(tm.TextMaskError, match="at most 16777216 cells"):
        tm.cells_to_runs(wide)
    with pytest.raises(tm.TextMaskError, match="at most 16777216 cells"):
        tm.Grid(MAX_CELLS, 2)


def test_runs_beyond_any_grid_are_refused():
    assert tm.runs_to_text([[MAX_CELLS - 1, 0, 0]]) == f"({MAX_CELLS - 1}, 0)"
    with pytest.raises(tm.TextMaskError, match="indices below 16777216"):
        tm.runs_to_text([[MAX_CELLS, 0, 0]])


def test_defect_masks_bounds_its_drawing_size():
    with pytest.raises(tm.TextMaskError, match="defect_masks draws at most 16777216"):
        tm.defect_masks(1, (100000, 100000))
    with pytest.raises(tm.TextMaskError, match="H \\* W <= 16777216"):
        tm.defect_masks(1, (8192, 8192))
    with pytest.raises(tm.TextMaskError, match=">= 8"):
        tm.defect_masks(1, (4, 64))
    with pytest.raises(tm.TextMaskError, match="pair of ints"):
        tm.defect_masks(1, (64.0, 64))
    assert len(tm.defect_masks(1, (16, 16), kinds=["spot"])) == 1


def test_decode_batch_of_one_string_is_an_error_not_one_text_per_character():
    with pytest.raises(tm.TextMaskError, match="sequence of texts"):
        tm.decode_batch("(0, 0)")


def test_limits_are_documented_where_users_look():
    doc = tm.__doc__
    assert "Size limits" in doc and "max_pixels()" in doc and "2**31" in doc
    page = (ROOT / "docs" / "textmask.md").read_text()
    assert "## Size limits" in page and "set_max_pixels" in page
