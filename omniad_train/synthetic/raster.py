"""Pure-numpy raster helpers: value noise, blur, anti-aliased strokes and shapes.

Images are float32 ``(H, W, 3)`` arrays in [0, 1]; coverage ("alpha") maps are float32
``(H, W)`` in [0, 1].  Pixel ``(r, c)`` has its centre at ``(r + 0.5, c + 0.5)``.
Everything is deterministic given the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "blur",
    "box_alpha",
    "coords",
    "dilate",
    "erode",
    "mix",
    "smoothstep",
    "stroke",
    "value_noise",
]

F32 = np.float32


def coords(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates ``(yy, xx)``, each ``(H, W)`` float32."""
    ys = np.arange(h, dtype=F32) + F32(0.5)
    xs = np.arange(w, dtype=F32) + F32(0.5)
    return np.broadcast_to(ys[:, None], (h, w)), np.broadcast_to(xs[None, :], (h, w))


def smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    """Hermite step from 0 at ``e0`` to 1 at ``e1`` (either order)."""
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).astype(F32)


def _axis_weights(n: int, cell: float, offset: float) -> tuple[np.ndarray, np.ndarray, int]:
    pos = np.arange(n, dtype=np.float64) / max(cell, 1e-3) + offset
    i = np.floor(pos).astype(np.int64)
    f = pos - i
    f = f * f * (3.0 - 2.0 * f)
    return i, f.astype(F32), int(i.max()) + 2


def value_noise(
    rng: np.random.Generator,
    h: int,
    w: int,
    cell_y: float,
    cell_x: float | None = None,
    *,
    octaves: int = 1,
    persistence: float = 0.5,
) -> np.ndarray:
    """Smooth value noise of roughly unit amplitude, ``(H, W)`` float32.

    ``cell_y``/``cell_x`` are the lattice spacings in pixels: a small ``cell_y`` with a
    large ``cell_x`` gives horizontal streaks.  Octaves halve the cells.

    >>> n = value_noise(np.random.default_rng(0), 32, 48, 8.0)
    >>> n.shape, n.dtype, bool(abs(n).max() <= 1.0)
    ((32, 48), dtype('float32'), True)
    """
    cell_x = cell_y if cell_x is None else cell_x
    out = np.zeros((h, w), F32)
    amp, total = 1.0, 0.0
    for k in range(octaves):
        cy, cx = cell_y / 2**k, cell_x / 2**k
        yi, fy, gh = _axis_weights(h, cy, float(rng.uniform(0, 1)))
        xi, fx, gw = _axis_weights(w, cx, float(rng.uniform(0, 1)))
        g = rng.uniform(-1.0, 1.0, size=(gh, gw)).astype(F32)
        rows = g[:, xi] * (1 - fx) + g[:, xi + 1] * fx  # (gh, w)
        out += amp * (rows[yi] * (1 - fy)[:, None] + rows[yi + 1] * fy[:, None])
        total += amp
        amp *= persistence
    return out / F32(total)


def _box1d(a: np.ndarray, r: int, axis: int) -> np.ndarray:
    if r <= 0:
        return a
    b = np.moveaxis(a, axis, 0)
    p = np.concatenate([np.repeat(b[:1], r + 1, 0), b, np.repeat(b[-1:], r, 0)])
    c = np.cumsum(p, axis=0, dtype=F32)
    out = (c[2 * r + 1 :] - c[: -2 * r - 1]) * F32(1.0 / (2 * r + 1))
    return np.moveaxis(out, 0, axis)


def blur(a: np.ndarray, sigma: float) -> np.ndarray:
    """Approximate Gaussian blur (three box passes) over the first two axes."""
    if sigma <= 0.3:
        return a.astype(F32, copy=False)
    r = max(1, round(np.sqrt(12 * sigma * sigma / 3 + 1) / 2 - 0.5))
    out = a.astype(F32)
    for _ in range(3):
        out = _box1d(_box1d(out, r, 0), r, 1)
    return out


def dilate(m: np.ndarray, steps: int = 1) -> np.ndarray:
    """Binary dilation with a 3x3 square, ``steps`` times."""
    out = m.astype(bool)
    for _ in range(steps):
        p = np.pad(out, 1)
        out = (
            p[:-2, :-2]
            | p[:-2, 1:-1]
            | p[:-2, 2:]
            | p[1:-1, :-2]
            | p[1:-1, 1:-1]
            | p[1:-1, 2:]
            | p[2:, :-2]
            | p[2:, 1:-1]
            | p[2:, 2:]
        )
    return out


def erode(m: np.ndarray, steps: int = 1) -> np.ndarray:
    """Binary erosion with a 3x3 square (outside the image counts as set)."""
    return ~dilate(~m.astype(bool), steps)


def mix(img: np.ndarray, colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``img`` blended towards ``colour`` (an RGB triple or an image) by ``alpha``."""
    a = alpha[..., None]
    return (img * (1 - a) + np.asarray(colour, F32) * a).astype(F32)


def stroke(
    h: int,
    w: int,
    pts: np.ndarray,
    half_widths: np.ndarray | float,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Anti-aliased coverage of a polyline with per-vertex half widths.

    ``pts`` is ``(N, 2)`` as ``(y, x)`` in pixels; widths are interpolated along each
    segment.  Work is limited to each segment's bounding box.  With ``out`` the
    coverage is max-ed into that ``(H, W)`` array, which is returned.

    >>> a = stroke(20, 20, np.array([[10.0, 2.0], [10.0, 18.0]]), 1.0)
    >>> float(a[9:11, 5].sum()) == 2.0, float(a[2, 5])
    (True, 0.0)
    """
    pts = np.asarray(pts, np.float64)
    hw = np.broadcast_to(np.asarray(half_widths, np.float64), (len(pts),))
    alpha = np.zeros((h, w), F32) if out is None else out
    for k in range(len(pts) - 1):
        a, b = pts[k], pts[k + 1]
        ha, hb = hw[k], hw[k + 1]
        pad = max(ha, hb) + 2
        y0 = max(0, int(np.floor(min(a[0], b[0]) - pad)))
        y1 = min(h, int(np.ceil(max(a[0], b[0]) + pad)))
        x0 = max(0, int(np.floor(min(a[1], b[1]) - pad)))
        x1 = min(w, int(np.ceil(max(a[1], b[1]) + pad)))
        if y0 >= y1 or x0 >= x1:
            continue
        yy = np.arange(y0, y1, dtype=np.float64)[:, None] + 0.5
        xx = np.arange(x0, x1, dtype=np.float64)[None, :] + 0.5
        d = b - a
        ll = float(d @ d)
        if ll < 1e-12:
            t = np.zeros((y1 - y0, x1 - x0))
        else:
            t = np.clip(((yy - a[0]) * d[0] + (xx - a[1]) * d[1]) / ll, 0.0, 1.0)
        dist = np.hypot(yy - (a[0] + t * d[0]), xx - (a[1] + t * d[1])) - (ha + t * (hb - ha))
        win = alpha[y0:y1, x0:x1]
        np.maximum(win, np.clip(0.5 - dist, 0.0, 1.0).astype(F32), out=win)
    return alpha


def box_alpha(
    yy: np.ndarray,
    xx: np.ndarray,
    cy: float,
    cx: float,
    half_h: float,
    half_w: float,
    angle: float = 0.0,
    radius: float = 0.0,
) -> np.ndarray:
    """Anti-aliased coverage of a rotated rounded rectangle (``angle`` in radians)."""
    c, s = math.cos(angle), math.sin(angle)
    dy, dx = yy - cy, xx - cx
    v = -dx * s + dy * c  # along the box's height
    u = dx * c + dy * s  # along the box's width
    r = min(radius, half_h, half_w)
    qu = np.abs(u) - (half_w - r)
    qv = np.abs(v) - (half_h - r)
    outside = np.hypot(np.maximum(qu, 0), np.maximum(qv, 0))
    inside = np.minimum(np.maximum(qu, qv), 0)
    sd = outside + inside - r
    return np.clip(0.5 - sd, 0.0, 1.0).astype(F32)
