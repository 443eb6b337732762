"""Write ``textmask_v1.json`` from the pure-Python oracle (run once; the file is pinned).

The golden file pins the v1 text format: if a future change makes ``test_golden.py``
fail, the format changed, which breaks every trained checkpoint.  Do not regenerate it
to make a test pass; bump the format version instead.

    python tests/golden/make_textmask_v1.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from golden_masks import MASKS, build  # noqa: E402
from reference import ref_cells_to_runs, ref_decode_tolerant, ref_encode, ref_runs_to_text  # noqa: E402

DECODE_CASES = [
    ("canonical", "(3, 4)-(3, 6)", 24, 24, 0),
    ("line break in a pair", "<seg>(14,\n12)</seg>", 24, 24, 0),
    (
        "marks, brackets, reversed",
        "[3,6] to [3,4]; (5, 7)\u2013(5, 9)\n(6,1)~(6,2) (7, 0) \u2014 (7, 1)",
        24,
        24,
        0,
    ),
    ("cross-row range", "(22, 20)-(23, 3)", 24, 24, 0),
    ("huge column", "(0, 0)-(0, 99999999999)", 24, 24, 0),
    ("prose only", "no anomaly", 24, 24, 0),
    ("none", "none", 24, 24, 0),
    ("empty", "", 24, 24, 0),
    ("negative numbers", "(-1, 3), (3, -1)-(3, 2)", 24, 24, 0),
    ("unbalanced brackets", "((1, 2) (3, 4 (5, 6]", 24, 24, 0),
    ("whitespace pair", "(1 2)\t(2\n3)", 24, 24, 0),
    ("unicode junk", "\u5f02\u5e38 (1, 1) \u2713 \U0001f600 (2,2)", 24, 24, 0),
    ("duplicates and overlaps", "(4, 2)-(4, 8), (4, 5)-(4, 12), (4, 2)", 24, 24, 0),
    ("one-based", "(1, 1)-(1, 3), (24, 24), (0, 5)", 24, 24, 1),
    ("non-square grid", "(2, 30)-(3, 1), (15, 31)", 16, 32, 0),
    ("merged runs", "(0, 0), (0, 1), (0, 2)", 4, 4, 0),
]


def main() -> None:
    enc = []
    for name, spec in MASKS.items():
        mask = build(spec)
        rows, cols = spec["grid"]
        text = ref_encode(mask, rows, cols, spec.get("threshold", 0.0), spec.get("index_base", 0))
        enc.append({"name": name, **spec, "text": text})
    dec = []
    for name, text, rows, cols, base in DECODE_CASES:
        cells, info = ref_decode_tolerant(text, rows, cols, base)
        dec.append(
            {
                "name": name,
                "text": text,
                "grid": [rows, cols],
                "index_base": base,
                "canonical": ref_runs_to_text(ref_cells_to_runs(cells), base),
                "cells": int(np.count_nonzero(cells)),
                "report": {
                    k: info[k] for k in ("runs", "runs_clipped", "cells_dropped", "chars_skipped")
                },
            }
        )
    out = {"format": "textmask/1", "encode": enc, "decode": dec}
    (HERE / "textmask_v1.json").write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
