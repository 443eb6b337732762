"""Textured surfaces that fill the frame: fabric, brushed metal, wood, tile, leather.

Each renderer takes a ``numpy.random.Generator`` and the image side ``n`` and returns a
:class:`~omniad_train.synthetic.scene.Scene`; sizes scale with ``n``.
"""

from __future__ import annotations

import numpy as np

from omniad_train.synthetic.raster import F32, coords, smoothstep, value_noise
from omniad_train.synthetic.scene import Scene, pick_colour, rgb

__all__ = ["TEXTURES", "brushed_metal", "fabric", "leather", "tile", "wood"]

FABRIC_COLOURS = {
    "beige": (0.80, 0.72, 0.58),
    "navy blue": (0.16, 0.22, 0.42),
    "grey": (0.58, 0.58, 0.58),
    "red": (0.66, 0.16, 0.16),
    "green": (0.28, 0.48, 0.30),
}
METAL_COLOURS = {
    "silver": (0.74, 0.75, 0.77),
    "gold": (0.80, 0.66, 0.38),
    "copper": (0.76, 0.48, 0.34),
}
WOOD_COLOURS = {  # early-wood colour; late wood is darker
    "light brown": (0.80, 0.63, 0.44),
    "dark brown": (0.46, 0.31, 0.20),
    "reddish brown": (0.66, 0.38, 0.26),
}
TILE_COLOURS = {
    "white": (0.88, 0.87, 0.84),
    "grey": (0.55, 0.56, 0.57),
    "terracotta": (0.72, 0.40, 0.28),
    "blue": (0.30, 0.45, 0.66),
    "green": (0.38, 0.56, 0.44),
}
LEATHER_COLOURS = {
    "brown": (0.45, 0.28, 0.16),
    "tan": (0.72, 0.52, 0.32),
    "burgundy": (0.44, 0.12, 0.16),
    "black": (0.17, 0.16, 0.16),
}


def _full(n: int) -> np.ndarray:
    return np.ones((n, n), bool)


def fabric(rng: np.random.Generator, n: int) -> Scene:
    """Woven fabric: plain or 2/2 twill weave, with fibre streaks and uneven threads."""
    name, col = pick_colour(rng, FABRIC_COLOURS)
    weave = "plain weave" if rng.random() < 0.5 else "twill weave"
    period = n / rng.uniform(24, 32)
    yy, xx = coords(n, n)
    u = (xx + value_noise(rng, n, n, n / 5) * period * 0.2) / period
    v = (yy + value_noise(rng, n, n, n / 5) * period * 0.2) / period
    i, j = np.floor(u).astype(np.int64), np.floor(v).astype(np.int64)
    fu, fv = (u - i).astype(F32), (v - j).astype(F32)
    warp_top = (i + j) % 2 == 0 if weave == "plain weave" else (i - j) % 4 < 2
    pu = np.sin(np.pi * fu) ** 0.7
    pv = np.sin(np.pi * fv) ** 0.7
    shade = np.where(warp_top, pu * (0.75 + 0.25 * pv), pv * (0.75 + 0.25 * pu))
    ji = rng.normal(0, 0.05, size=int(i.max()) + 4).astype(F32)[i + 2]
    jj = rng.normal(0, 0.05, size=int(j.max()) + 4).astype(F32)[j + 2]
    fib = np.where(
        warp_top,
        value_noise(rng, n, n, period * 1.2, period * 0.12),
        value_noise(rng, n, n, period * 0.12, period * 1.2),
    )
    lum = 0.30 + 0.70 * shade + 0.07 * fib + np.where(warp_top, ji, jj)
    lum = lum * (1 + 0.05 * value_noise(rng, n, n, n / 3, octaves=2))
    weft = col * np.array([0.92, 0.92, 0.95], F32)
    img = lum[..., None] * np.where(warp_top[..., None], col, weft)
    return Scene(img.astype(F32), _full(n), n * 0.5, {"colour": name, "weave": weave})


def brushed_metal(rng: np.random.Generator, n: int) -> Scene:
    """Brushed metal sheet: long streaks along the brushing direction, a soft highlight."""
    name, col = pick_colour(rng, METAL_COLOURS)
    horizontal = rng.random() < 0.5
    streak = value_noise(rng, n, n, 0.8, n / 2.5)
    streak2 = value_noise(rng, n, n, 2.5, n / 8)
    fine = value_noise(rng, n, n, 0.6, 5.0)
    yy, _ = coords(n, n)
    y0 = rng.uniform(0.2, 0.8) * n
    band = 0.78 + 0.30 * np.exp(-(((yy - y0) / (0.35 * n)) ** 2))
    lum = band * (1 + 0.07 * streak + 0.06 * streak2 + 0.05 * fine)
    if not horizontal:
        lum = lum.T
    lum = lum * (1 + 0.04 * value_noise(rng, n, n, n / 2))
    img = np.clip(lum[..., None] * col, 0, 1).astype(F32)
    attrs = {"colour": name, "brushing": "horizontal" if horizontal else "vertical"}
    return Scene(img, _full(n), n * 0.5, attrs)


def wood(rng: np.random.Generator, n: int) -> Scene:
    """Planed wood: wavy growth rings along the grain, fine pores, uneven tone."""
    name, early = pick_colour(rng, WOOD_COLOURS)
    late = early * np.array([0.62, 0.56, 0.52], F32)
    vertical = rng.random() < 0.5
    yy, xx = coords(n, n)
    along, across = (yy, xx) if vertical else (xx, yy)
    nv = value_noise(rng, n, n, n / 2.2, n / 7, octaves=2)
    warp = (nv if vertical else nv.T) * n * 0.07
    bend = rng.uniform(-1, 1) * ((along - n / 2) / n) ** 2 * n * 0.25
    period = n / rng.uniform(9, 16)
    phase = (across + warp + bend) / period
    f = phase - np.floor(phase)
    ring = smoothstep(0.45, 0.8, f) * (1 - smoothstep(0.88, 1.0, f))
    pn = value_noise(rng, n, n, n / 6, 0.9)
    pores = pn if vertical else pn.T
    t = np.clip(0.75 * ring + 0.18 * pores + 0.1, 0, 1)
    tone = 1 + 0.07 * value_noise(rng, n, n, n / 3, octaves=2)
    img = (early * (1 - t[..., None]) + late * t[..., None]) * tone[..., None]
    attrs = {"colour": name, "grain": "vertical" if vertical else "horizontal"}
    return Scene(np.clip(img, 0, 1).astype(F32), _full(n), n * 0.5, attrs)


def tile(rng: np.random.Generator, n: int) -> Scene:
    """Glazed ceramic tiles with grout lines, bevelled edges and fine speckle."""
    name, col = pick_colour(rng, TILE_COLOURS)
    k = int(rng.integers(2, 4))
    size = n / (k - 0.4)
    off_y, off_x = (float(v) for v in rng.uniform(0.2, 0.8, 2) * size)
    yy, xx = coords(n, n)
    ty, tx = (yy + off_y) / size, (xx + off_x) / size
    iy, ix = np.floor(ty).astype(np.int64), np.floor(tx).astype(np.int64)
    dy = np.minimum(ty - iy, 1 - (ty - iy)) * size  # distance to the nearest grout line
    dx = np.minimum(tx - ix, 1 - (tx - ix)) * size
    d = np.minimum(dy, dx)
    grout_w = max(1.5, n * 0.012)
    tile_a = smoothstep(grout_w - 0.5, grout_w + 0.5, d)
    bevel = 0.86 + 0.14 * smoothstep(grout_w, grout_w + max(1.5, n * 0.008), d)
    jit = rng.normal(0, 0.035, size=(k + 3, k + 3)).astype(F32)[iy + 1, ix + 1]
    speck = value_noise(rng, n, n, 1.6)
    chips = smoothstep(0.55, 0.7, speck) * 0.10
    glaze = 1 + 0.04 * value_noise(rng, n, n, n / 4, octaves=2)
    lum = (1 + jit - chips) * bevel * glaze
    grout = rgb(0.70, 0.69, 0.66) * (1 + 0.08 * value_noise(rng, n, n, 2.0))[..., None]
    img = lum[..., None] * col * tile_a[..., None] + grout * (1 - tile_a[..., None])
    return Scene(np.clip(img, 0, 1).astype(F32), _full(n), n * 0.5, {"colour": name})


def _voronoi(rng: np.random.Generator, n: int, cell: float) -> tuple[np.ndarray, np.ndarray]:
    """Distances to the nearest and second-nearest jittered-grid points (F1, F2).

    One point per ``c x c`` block (``c`` = ``cell`` rounded); each pixel looks at the 3x3
    blocks around its own, computed block-wise by broadcasting (no gathers).
    """
    c = max(3, round(cell))
    b = -(-n // c)  # blocks per side
    jit = rng.uniform(0.1, 0.9, (2, b + 2, b + 2)).astype(F32)
    local = np.arange(c, dtype=F32) + F32(0.5)
    ly, lx = local[None, :, None, None], local[None, None, None, :]
    f1 = np.full((b, c, b, c), np.inf, F32)
    f2 = np.full((b, c, b, c), np.inf, F32)
    for oy in (-1, 0, 1):
        for ox in (-1, 0, 1):
            jy = jit[0, 1 + oy : 1 + oy + b, 1 + ox : 1 + ox + b]
            jx = jit[1, 1 + oy : 1 + oy + b, 1 + ox : 1 + ox + b]
            dy = ly - ((oy + jy) * c)[:, None, :, None]
            dx = lx - ((ox + jx) * c)[:, None, :, None]
            d2 = dy * dy + dx * dx
            np.minimum(f2, np.maximum(f1, d2), out=f2)
            np.minimum(f1, d2, out=f1)
    f1 = np.sqrt(f1.reshape(b * c, b * c)[:n, :n])
    f2 = np.sqrt(f2.reshape(b * c, b * c)[:n, :n])
    return f1, f2


def leather(rng: np.random.Generator, n: int) -> Scene:
    """Grained leather: a network of fine creases around slightly domed cells."""
    name, col = pick_colour(rng, LEATHER_COLOURS)
    cell = n / rng.uniform(22, 30)
    f1, f2 = _voronoi(rng, n, cell)
    depth = 0.30 + 0.22 * value_noise(rng, n, n, cell * 1.5)
    crease = 1 - smoothstep(0.0, max(1.0, cell * 0.12), f2 - f1)
    dome = 1 - 0.22 * (f1 / cell) ** 2
    fine = value_noise(rng, n, n, 1.1)
    mottle = value_noise(rng, n, n, n / 5, octaves=2)
    lum = dome * (1 - depth * crease) * (1 + 0.06 * fine + 0.08 * mottle) * 1.05
    img = np.clip(lum[..., None] * col, 0, 1).astype(F32)
    return Scene(img, _full(n), n * 0.5, {"colour": name})


TEXTURES = {
    "fabric": fabric,
    "metal": brushed_metal,
    "wood": wood,
    "tile": tile,
    "leather": leather,
}
