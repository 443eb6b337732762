"""The v1 text format, pinned: encodings and decodings written by the oracle once."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from golden_masks import MASKS, build

import textmask as tm

GOLDEN = json.loads((Path(__file__).parent / "golden" / "textmask_v1.json").read_text())


def test_golden_file_covers_every_mask_and_is_v1():
    assert GOLDEN["format"] == "textmask/1" == tm.Grid().to_dict()["format"]
    assert {e["name"] for e in GOLDEN["encode"]} == set(MASKS)


@pytest.mark.parametrize("case", GOLDEN["encode"], ids=lambda c: c["name"])
def test_encode_matches_golden(case):
    mask = build(case)
    grid = tm.Grid(*case["grid"], case.get("threshold", 0.0), case.get("index_base", 0))
    assert tm.encode(mask, grid) == case["text"]
    # the same mask in other layouts and dtypes encodes identically
    assert tm.encode(np.asfortranarray(mask), grid) == case["text"]
    assert tm.encode(mask.astype(bool), grid) == case["text"]
    assert tm.encode((mask // 255).astype(np.int64), grid) == case["text"]
    # and the golden text decodes strictly to the patchified mask
    cells = tm.decode(case["text"], grid, strict=True)
    np.testing.assert_array_equal(cells, tm.patchify(mask, grid))


@pytest.mark.parametrize("case", GOLDEN["decode"], ids=lambda c: c["name"])
def test_tolerant_decode_matches_golden(case):
    grid = tm.Grid(*case["grid"], index_base=case["index_base"])
    cells, rep = tm.decode(case["text"], grid, report=True)
    assert tm.encode(cells, (grid.rows, grid.cols), index_base=grid.index_base) == case["canonical"]
    assert int(cells.sum()) == case["cells"]
    got = {k: getattr(rep, k) for k in case["report"]}
    assert got == case["report"]
