"""Compile (or load from Numba's on-disk cache) every kernel ahead of first use."""

from __future__ import annotations

import time

import numpy as np

__all__ = ["warmup"]


def warmup() -> float:
    """Run every kernel once on tiny inputs; return the seconds it took.

    The first call in a fresh environment compiles the kernels and writes them to
    Numba's cache (next to the package, or under ``NUMBA_CACHE_DIR`` when that is
    set or the package directory is read-only); later processes load them in well
    under a second.  ``python -m textmask warmup`` does the same from a shell.

    >>> warmup() >= 0.0
    True
    """
    from textmask import (
        GroundTruth,
        decode,
        decode_batch,
        detection_rewards,
        encode,
        runs_to_cells,
        text_to_runs,
    )

    t0 = time.perf_counter()
    m = np.zeros((6, 6), np.uint8)
    m[1, 1:4] = 255
    for thr in (0.0, 0.5):
        encode(m, 3, threshold=thr)
        encode(np.asfortranarray(m), 3, threshold=thr)
    encode(np.zeros((6, 8), np.uint8), 3)  # width a multiple of 8: the uint64 word path
    text = encode(m, 3)
    decode(text, 3)
    decode(text, 3, shape=(6, 6))
    decode(text, 3, strict=True)
    decode_batch([text, ""], 3)
    runs_to_cells(text_to_runs(text, 3), 3)
    gt = GroundTruth(m, 3)
    gt.score(np.ones((3, 3), bool))
    detection_rewards([text, ""], [gt, gt], 3)
    GroundTruth(m, 3, level="cell").reward(text)
    return time.perf_counter() - t0
