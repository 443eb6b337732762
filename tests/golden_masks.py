"""Masks of the golden file, described by shapes so the JSON stays small and readable."""

from __future__ import annotations

from typing import Any

import numpy as np

MASKS: dict[str, dict[str, Any]] = {
    "scratch 512": {"shape": [512, 512], "grid": [24, 24], "rects": [[70, 80, 90, 140]]},
    "blobs 1024": {
        "shape": [1024, 1024],
        "grid": [24, 24],
        "rects": [[100, 140, 200, 260], [600, 605, 0, 1024], [1000, 1024, 1010, 1024]],
        "disks": [[512, 512, 40]],
    },
    "non-square 900x1200 on 16x32": {
        "shape": [900, 1200],
        "grid": [16, 32],
        "rects": [[10, 400, 37, 39], [850, 900, 1100, 1200]],
        "disks": [[450, 600, 90]],
    },
    "threshold 0.5": {
        "shape": [512, 512],
        "grid": [24, 24],
        "threshold": 0.5,
        "rects": [[0, 11, 0, 60], [200, 260, 200, 205]],
        "disks": [[400, 300, 50]],
    },
    "one-based": {
        "shape": [64, 64],
        "grid": [8, 8],
        "index_base": 1,
        "rects": [[0, 8, 0, 24], [56, 64, 60, 64]],
    },
    "empty": {"shape": [512, 512], "grid": [24, 24]},
    "full 4x4": {"shape": [37, 41], "grid": [4, 4], "rects": [[0, 37, 0, 41]]},
    "mask smaller than grid": {
        "shape": [10, 7],
        "grid": [24, 24],
        "rects": [[2, 5, 1, 3], [9, 10, 6, 7]],
    },
    "single pixel corners": {
        "shape": [512, 512],
        "grid": [24, 24],
        "rects": [[0, 1, 0, 1], [0, 1, 511, 512], [511, 512, 0, 1], [511, 512, 511, 512]],
    },
}


def build(spec: dict[str, Any]) -> np.ndarray:
    """The uint8 0/255 mask a spec describes (rects are [y0, y1, x0, x1], disks [y, x, r])."""
    h, w = spec["shape"]
    m = np.zeros((h, w), np.uint8)
    for y0, y1, x0, x1 in spec.get("rects", []):
        m[y0:y1, x0:x1] = 255
    yy, xx = np.mgrid[0:h, 0:w]
    for y, x, r in spec.get("disks", []):
        m[(yy - y) ** 2 + (xx - x) ** 2 <= r * r] = 255
    return m
