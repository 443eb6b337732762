"""Region names of a mask: which ninth of the image holds its centroid (docs/format.md)."""

from __future__ import annotations

from typing import Any

import numpy as np

from textmask._errors import TextMaskError

__all__ = ["REGIONS", "region", "region_of"]

#: The 9 region names, row-major over a 3 x 3 split of the image.
REGIONS: tuple[str, ...] = (
    "left top",
    "top",
    "right top",
    "left",
    "center",
    "right",
    "left bottom",
    "bottom",
    "right bottom",
)


def region_of(centroid: tuple[float, float]) -> str:
    """The region name of a ``(y, x)`` centroid given as fractions of the image in [0, 1].

    >>> region_of((0.1, 0.1)), region_of((0.5, 0.5)), region_of((0.9, 0.5))
    ('left top', 'center', 'bottom')
    """
    y, x = centroid
    row = min(2, max(0, int(3 * y)))
    col = min(2, max(0, int(3 * x)))
    return REGIONS[3 * row + col]


def region(mask: Any) -> str | None:
    """The region of a mask's centroid (pixel centres), or None for an empty mask.

    Works on a pixel mask or a cell grid alike (the split is by thirds of its shape).

    >>> m = np.zeros((90, 90), bool); m[5:8, 5:80] = True
    >>> region(m)
    'top'
    >>> region(np.zeros((4, 4), bool)) is None
    True
    """
    m = np.asarray(mask)
    if m.ndim != 2 or m.size == 0:
        raise TextMaskError(f"region needs a non-empty 2-D mask, got shape {m.shape}")
    ys, xs = np.nonzero(m)
    if ys.size == 0:
        return None
    h, w = m.shape
    return region_of((float((ys.mean() + 0.5) / h), float((xs.mean() + 0.5) / w)))
