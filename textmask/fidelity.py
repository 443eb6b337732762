"""How much of a mask survives the codec: choose a grid with numbers in hand."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from textmask._errors import TextMaskError
from textmask._validate import as_shape
from textmask.codec import patchify
from textmask.grid import Grid
from textmask.metrics import GroundTruth

__all__ = ["DEFECT_KINDS", "MAX_DEFECT_PIXELS", "codec_fidelity", "defect_masks"]

#: Defect shapes :func:`defect_masks` draws.
DEFECT_KINDS = ("scratch", "spot", "stain")


def _stamp(mask: np.ndarray, ys: np.ndarray, xs: np.ndarray, radius: float) -> None:
    """Set every pixel within ``radius`` of any of the points (clipped to the mask)."""
    h, w = mask.shape
    r = int(np.ceil(radius))
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    keep = dy**2 + dx**2 <= radius**2 + 1e-9
    dy, dx = dy[keep], dx[keep]
    yy = (np.rint(ys)[:, None] + dy[None]).astype(np.int64).ravel()
    xx = (np.rint(xs)[:, None] + dx[None]).astype(np.int64).ravel()
    ok = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
    mask[yy[ok], xx[ok]] = True


def _scratch(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    m = np.zeros((h, w), bool)
    s = min(h, w)
    length = rng.uniform(0.12, 0.6) * s
    angle = rng.uniform(0, np.pi)
    cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
    d = np.array([np.sin(angle), np.cos(angle)]) * length / 2
    bend = rng.normal(0, 0.08) * length * np.array([np.cos(angle), -np.sin(angle)])
    t = np.linspace(0, 1, int(length * 2) + 2)
    p0, p2 = np.array([cy, cx]) - d, np.array([cy, cx]) + d
    p1 = (p0 + p2) / 2 + bend
    pts = ((1 - t) ** 2)[:, None] * p0 + (2 * (1 - t) * t)[:, None] * p1 + (t**2)[:, None] * p2
    _stamp(m, pts[:, 0], pts[:, 1], rng.uniform(0.5, 2.0) * s / 512)
    return m


def _spot(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    m = np.zeros((h, w), bool)
    s = min(h, w)
    y, x = rng.uniform(0.1, 0.9) * h, rng.uniform(0.1, 0.9) * w
    _stamp(m, np.array([y]), np.array([x]), rng.uniform(1.5, 9.0) * s / 512)
    return m


def _stain(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    s = min(h, w)
    yy, xx = np.mgrid[0:h, 0:w]
    m = np.zeros((h, w), bool)
    cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
    for _ in range(int(rng.integers(2, 6))):
        oy, ox = rng.normal(0, 0.06 * s, 2)
        ry, rx = rng.uniform(0.05, 0.18, 2) * s
        th = rng.uniform(0, np.pi)
        y, x = yy - (cy + oy), xx - (cx + ox)
        u = (y * np.cos(th) + x * np.sin(th)) / ry
        v = (-y * np.sin(th) + x * np.cos(th)) / rx
        m |= u**2 + v**2 <= 1.0
    return m


_MAKERS = {"scratch": _scratch, "spot": _spot, "stain": _stain}

#: Largest ``H * W`` :func:`defect_masks` draws (its float maps take ~50 bytes a pixel).
MAX_DEFECT_PIXELS = 2**24


def _defect_shape(shape: Any) -> tuple[int, int]:
    h, w = as_shape(shape, hint=f"; defect_masks draws at most {MAX_DEFECT_PIXELS} pixels")
    if min(h, w) < 8 or h * w > MAX_DEFECT_PIXELS:
        raise TextMaskError(
            f"shape must be (H, W) with both sides >= 8 and H * W <= {MAX_DEFECT_PIXELS} "
            f"(e.g. 4096 x 4096), got {(h, w)}; synthetic defects are drawn at image size"
        )
    return h, w


def defect_masks(
    n: int = 20,
    shape: Sequence[int] = (512, 512),
    *,
    kinds: Iterable[str] = DEFECT_KINDS,
    seed: int = 0,
) -> list[tuple[str, np.ndarray]]:
    """Masks shaped like industrial defects, ``n`` of each kind, deterministic by seed.

    Kinds: ``"scratch"`` (thin curved lines, 1-4 px wide at 512 px), ``"spot"``
    (discs of 3-18 px), ``"stain"`` (unions of large ellipses, 5-35 % of the side).
    Both sides must be at least 8 and ``H * W`` at most :data:`MAX_DEFECT_PIXELS`
    (``2**24``, e.g. 4096 x 4096): stains are drawn with float maps of the whole image.

    >>> masks = defect_masks(2, (64, 64), seed=1)
    >>> [k for k, _ in masks]
    ['scratch', 'scratch', 'spot', 'spot', 'stain', 'stain']
    >>> all(m.any() and m.shape == (64, 64) for _, m in masks)
    True
    """
    kinds = list(kinds)
    unknown = [k for k in kinds if k not in _MAKERS]
    if unknown:
        raise TextMaskError(f"unknown defect kinds {unknown}; choose from {list(_MAKERS)}")
    h, w = _defect_shape(shape)
    rng = np.random.default_rng(seed)
    out = []
    for kind in kinds:
        for _ in range(n):
            m = _MAKERS[kind](rng, h, w)
            while not m.any():  # a spot near a border can round away; draw again
                m = _MAKERS[kind](rng, h, w)
            out.append((kind, m))
    return out


def codec_fidelity(
    masks: Iterable[Any] | None = None,
    grids: Iterable[int] = (8, 16, 24, 32, 48),
    thresholds: Iterable[float] = (0.0, 0.25, 0.5),
) -> list[dict[str, Any]]:
    """Best pixel F1 a perfect model can reach through the codec.

    For every grid and threshold, each ground-truth mask goes through
    ``encode -> decode to pixels`` and is compared with itself (exact pixel F1).

    Parameters
    ----------
    masks : iterable of arrays or of ``(kind, array)`` pairs, optional
        Ground truths (default: :func:`defect_masks` with its defaults).
    grids : iterable of int
        Square grid sizes to try.
    thresholds : iterable of float
        Cell labelling thresholds to try.

    Returns
    -------
    list of dict
        One row per grid, threshold and kind (plus kind ``"all"``) with keys
        ``grid, threshold, kind, n, mean_f1, min_f1, lost`` (``lost``: fraction of
        masks whose encoding is empty).

    Examples
    --------
    >>> rows = codec_fidelity(defect_masks(3, (96, 96)), grids=[8], thresholds=[0.0])
    >>> [(r["kind"], r["n"]) for r in rows]
    [('scratch', 3), ('spot', 3), ('stain', 3), ('all', 9)]
    >>> all(r["lost"] == 0.0 for r in rows)      # threshold 0 never loses a defect
    True
    """
    items = defect_masks() if masks is None else list(masks)
    pairs = [(it if isinstance(it, tuple) else ("mask", it)) for it in items]
    if not pairs:
        raise TextMaskError("codec_fidelity needs at least one mask")
    kinds = list(dict.fromkeys(k for k, _ in pairs))
    rows = []
    for g in grids:
        for thr in thresholds:
            grid = Grid(int(g), int(g), float(thr))
            f1s: dict[str, list[float]] = {k: [] for k in kinds}
            lost: dict[str, list[bool]] = {k: [] for k in kinds}
            for kind, m in pairs:
                cells = patchify(m, grid)
                f1s[kind].append(GroundTruth(m, grid).score(cells).f1)
                lost[kind].append(not cells.any())
            f1s["all"] = [v for k in kinds for v in f1s[k]]
            lost["all"] = [v for k in kinds for v in lost[k]]
            for kind in [*kinds, "all"]:
                rows.append(
                    {
                        "grid": int(g),
                        "threshold": float(thr),
                        "kind": kind,
                        "n": len(f1s[kind]),
                        "mean_f1": float(np.mean(f1s[kind])),
                        "min_f1": float(np.min(f1s[kind])),
                        "lost": float(np.mean(lost[kind])),
                    }
                )
    return rows
