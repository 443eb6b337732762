"""Defects: scratch, crack, hole, stain, contamination, missing and misplaced parts.

A defect function takes a :class:`~omniad_train.synthetic.scene.Scene` and a
``numpy.random.Generator`` and returns a :class:`Defect`: the changed image, the
*support* (the pixels it is allowed to change, which becomes the mask), a description
of its appearance (one of :data:`DESCRIPTIONS`) and changed scene facts.  The caller
keeps the clean image outside the support, so the mask covers every changed pixel.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from omniad_train.synthetic.raster import (
    F32,
    coords,
    dilate,
    erode,
    mix,
    smoothstep,
    stroke,
    value_noise,
)
from omniad_train.synthetic.scene import Scene, rgb

__all__ = ["DEFECTS", "DESCRIPTIONS", "Defect", "confusable"]


@dataclass
class Defect:
    image: np.ndarray
    support: np.ndarray
    description: str
    attrs: dict[str, Any] = field(default_factory=dict)


#: Every appearance text a defect can have, by defect type.
DESCRIPTIONS: dict[str, tuple[str, ...]] = {
    "scratch": ("a thin dark line", "a thin bright line"),
    "crack": ("a jagged line with branches",),
    "hole": ("a dark round hole with a rim",),
    "stain": ("a brownish discoloured patch", "a dark smudge", "a faded pale patch"),
    "contamination": (
        "a cluster of small dark particles",
        "a cluster of small light particles",
        "a thin dark hair-like strand",
        "a thin light hair-like strand",
    ),
    "missing": ("an empty spot with bare solder pads",),
    "misplaced": ("a component shifted and rotated out of place",),
}

# descriptions that could both fairly describe one defect: never a distractor of each other
_CONFUSABLE = (
    {"a thin dark line", "a thin dark hair-like strand", "a jagged line with branches"},
    {"a thin bright line", "a thin light hair-like strand"},
)


def confusable(a: str, b: str) -> bool:
    """True when descriptions ``a`` and ``b`` could both describe one defect."""
    return a == b or any(a in g and b in g for g in _CONFUSABLE)


def _unit(scene: Scene) -> float:
    """Pixels per 'reference pixel' of a 256 px image (line widths scale with it)."""
    return scene.image.shape[0] / 256


def _centre(scene: Scene, rng: np.random.Generator, margin: int) -> tuple[float, float]:
    """A random point of the surface, ``margin`` px inside it and away from the frame."""
    inner = erode(scene.surface, margin) if margin > 0 else scene.surface.copy()
    h, w = inner.shape
    band = max(margin, round(0.08 * min(h, w)))
    inner[:band], inner[h - band :], inner[:, :band], inner[:, w - band :] = (
        False,
        False,
        False,
        False,
    )
    if not inner.any():
        inner = scene.surface
    idx = np.flatnonzero(inner)
    k = int(idx[int(rng.integers(len(idx)))])
    w = scene.surface.shape[1]
    return k // w + float(rng.uniform(0, 1)), k % w + float(rng.uniform(0, 1))


def _lum(img: np.ndarray, y: float, x: float, r: int = 6) -> float:
    h, w = img.shape[:2]
    win = img[
        max(0, int(y) - r) : min(h, int(y) + r + 1), max(0, int(x) - r) : min(w, int(x) + r + 1)
    ]
    return float((win @ np.array([0.299, 0.587, 0.114], F32)).mean())


def _bezier(p0, p1, p2, k: int = 32) -> np.ndarray:
    t = np.linspace(0, 1, k)[:, None]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2


def scratch(scene: Scene, rng: np.random.Generator) -> Defect:
    """A thin, slightly curved line, darker or brighter than the surface."""
    img, u = scene.image, _unit(scene)
    cy, cx = _centre(scene, rng, 2)
    length = scene.scale * rng.uniform(0.5, 1.0)
    ang = rng.uniform(0, np.pi) if scene.axis is None else scene.axis + rng.uniform(-0.2, 0.2)
    d = np.array([np.sin(ang), np.cos(ang)])
    nrm = np.array([d[1], -d[0]])
    c = np.array([cy, cx])
    pts = _bezier(c - d * length / 2, c + nrm * length * rng.uniform(-0.2, 0.2), c + d * length / 2)
    t = np.linspace(0, 1, len(pts))
    hw = u * rng.uniform(0.6, 1.1) * (0.35 + 0.65 * np.sin(np.pi * t) ** 0.5)
    alpha = stroke(*img.shape[:2], pts, hw) * rng.uniform(0.8, 1.0)
    lum = _lum(img, cy, cx)
    bright = lum < 0.4 or (lum < 0.75 and rng.random() < 0.5)
    target = img + (1 - img) * 0.75 if bright else img * 0.3
    desc = "a thin bright line" if bright else "a thin dark line"
    return Defect(mix(img, target, alpha), (alpha > 0.2) & scene.surface, desc)


def _walk(rng, start, heading, steps, step, jitter) -> np.ndarray:
    """A jagged path: each step turns at random but is pulled back to ``heading``."""
    pts = [np.asarray(start, float)]
    drift = 0.0
    for _ in range(steps):
        drift = 0.6 * drift + rng.normal(0, jitter)
        a = heading + drift + rng.normal(0, jitter * 0.8)
        pts.append(pts[-1] + step * np.array([np.sin(a), np.cos(a)]))
    return np.array(pts)


def crack(scene: Scene, rng: np.random.Generator) -> Defect:
    """A jagged, branching line (dark on light surfaces, light on dark ones)."""
    img, u = scene.image, _unit(scene)
    h, w = img.shape[:2]
    cy, cx = _centre(scene, rng, 3)
    length = scene.scale * rng.uniform(0.7, 1.3)
    step = max(2.0, 5.0 * u)
    steps = max(6, int(length / step))
    heading = rng.uniform(0, 2 * np.pi) if scene.axis is None else scene.axis + np.pi / 2
    start = np.array([cy, cx]) - np.array([np.sin(heading), np.cos(heading)]) * length / 2
    main = _walk(rng, start, heading, steps, step, 0.35)
    t = np.linspace(0, 1, len(main))
    alpha = stroke(h, w, main, u * (1.9 - 1.2 * t) + 0.3)
    for _ in range(int(rng.integers(1, 4))):
        k = int(rng.integers(len(main) // 4, max(len(main) // 4 + 1, 3 * len(main) // 4)))
        side = heading + rng.choice([-1, 1]) * rng.uniform(0.5, 1.1)
        br = _walk(rng, main[k], side, max(3, int(steps * rng.uniform(0.2, 0.45))), step, 0.4)
        tb = np.linspace(0, 1, len(br))
        alpha = np.maximum(alpha, stroke(h, w, br, u * (1.0 - 0.7 * tb) + 0.25))
    halo = np.clip(dilate(alpha > 0.5, max(1, round(u))).astype(F32) - alpha, 0, 1) * 0.35
    a = np.maximum(alpha * 0.95, halo)
    dark = _lum(img, cy, cx) >= 0.25
    target = img * 0.12 if dark else img + (0.85 - img) * 0.8
    return Defect(mix(img, target, a), (a > 0.15) & scene.surface, DESCRIPTIONS["crack"][0])


def _radius_profile(rng, theta: np.ndarray, rough: float) -> np.ndarray:
    out = np.ones_like(theta)
    for f in (2, 3, 5, 9, 15):
        out += rough / f**0.6 * rng.uniform(-1, 1) * np.cos(f * theta + rng.uniform(0, 2 * np.pi))
    return out


def hole(scene: Scene, rng: np.random.Generator) -> Defect:
    """A dark, roughly round hole with a torn or raised rim."""
    img = scene.image
    h, w = img.shape[:2]
    r0 = scene.scale * rng.uniform(0.06, 0.16)
    cy, cx = _centre(scene, rng, int(r0 * 1.4))
    yy, xx = coords(h, w)
    dy, dx = yy - cy, xx - cx
    theta = np.arctan2(dy, dx)
    rad = r0 * _radius_profile(rng, theta, rng.uniform(0.12, 0.3))
    rho = np.hypot(dy, dx) / rad
    inside = np.clip((1 - rho) * rad + 0.5, 0, 1)
    depth = 0.03 + 0.10 * smoothstep(-0.8, 0.8, (dy + dx) / (r0 * 1.4))  # far wall catches light
    interior = np.stack([depth, depth * 0.95, depth * 0.9], -1)
    rim = np.exp(-((((rho - 1.0) * rad - 1.5 * _unit(scene)) / (0.22 * r0 + 1)) ** 2)) * (
        rho > 0.95
    )
    emboss = 1 - rim * (0.5 + 0.2 * np.cos(theta + np.pi / 4))
    new = mix(img * emboss[..., None], interior.astype(F32), inside)
    support = ((inside > 0.15) | (rim > 0.25)) & scene.surface
    return Defect(new, support, DESCRIPTIONS["hole"][0])


def stain(scene: Scene, rng: np.random.Generator) -> Defect:
    """A soft blob with a tide line: brownish, dark (oil) or pale (bleached)."""
    img = scene.image
    h, w = img.shape[:2]
    r0 = scene.scale * rng.uniform(0.14, 0.3)
    cy, cx = _centre(scene, rng, int(r0 * 0.5))
    yy, xx = coords(h, w)
    dist = np.hypot((yy - cy) / rng.uniform(0.7, 1.0), (xx - cx) / rng.uniform(0.7, 1.0))
    f = 1 - dist / r0 + 0.35 * value_noise(rng, h, w, r0 * 0.6, octaves=2)
    body = smoothstep(0.0, 0.45, f)
    tide = np.exp(-(((f - 0.04) / 0.05) ** 2)) * (f > -0.02)
    lum = _lum(img, cy, cx, 10)
    if lum < 0.4:
        kind, target = 2, img + (0.88 - img) * 0.55
    else:
        kind = int(rng.integers(2))
        target = img * rgb(0.78, 0.58, 0.36) if kind == 0 else img * 0.45
    alpha = np.clip(rng.uniform(0.55, 0.85) * body + 0.3 * tide, 0, 1)
    support = (alpha > 0.12) & scene.surface
    return Defect(mix(img, target, alpha), support, DESCRIPTIONS["stain"][kind])


def contamination(scene: Scene, rng: np.random.Generator) -> Defect:
    """Foreign matter: a cluster of particles or a hair, contrasting with the surface."""
    img, u = scene.image, _unit(scene)
    h, w = img.shape[:2]
    cy, cx = _centre(scene, rng, 2)
    light = _lum(img, cy, cx, 10) < 0.4
    colour = rgb(0.86, 0.85, 0.80) if light else rgb(0.10, 0.08, 0.06) * rng.uniform(0.6, 1.4)
    tone = "light" if light else "dark"
    if rng.random() < 0.5:
        spread = scene.scale * rng.uniform(0.08, 0.16)
        alpha = np.zeros((h, w), F32)
        for _ in range(int(rng.integers(4, 11))):
            py, px = cy + rng.normal(0, spread / 2), cx + rng.normal(0, spread / 2)
            ry, rx = (float(v) for v in u * rng.uniform(1.0, 3.0, 2) + 0.4)
            a = rng.uniform(0, np.pi)
            c, s = math.cos(a), math.sin(a)
            r = max(rx, ry) + 2
            y0, y1 = max(0, int(py - r)), min(h, int(py + r) + 2)
            x0, x1 = max(0, int(px - r)), min(w, int(px + r) + 2)
            if y0 >= y1 or x0 >= x1:
                continue
            yy, xx = coords(y1 - y0, x1 - x0)
            dy, dx = yy + (y0 - py), xx + (x0 - px)
            q = np.hypot((dx * c + dy * s) / rx, (-dx * s + dy * c) / ry)
            win = alpha[y0:y1, x0:x1]
            np.maximum(win, np.clip((1 - q) * min(rx, ry) + 0.5, 0, 1), out=win)
        desc = f"a cluster of small {tone} particles"
    else:
        length = scene.scale * rng.uniform(0.6, 1.1)
        k = 64
        ang = rng.uniform(0, 2 * np.pi) + np.cumsum(
            0.06 * np.sin(np.linspace(0, rng.uniform(3, 9), k) + rng.uniform(0, 6))
            + rng.normal(0, 0.05, k)
        )
        steps = np.stack([np.sin(ang), np.cos(ang)], -1) * (length / k)
        pts = np.array([cy, cx]) + np.cumsum(steps, 0) - steps.sum(0) / 2
        alpha = stroke(h, w, pts, 0.55 * u + 0.1)
        desc = f"a thin {tone} hair-like strand"
    alpha = alpha * rng.uniform(0.85, 1.0)
    return Defect(mix(img, colour, alpha), (alpha > 0.2) & scene.surface, desc)


def _diff_support(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    changed = np.abs(a - b).max(-1) > 0.02
    return erode(dilate(changed, 1), 1) | changed


def missing(scene: Scene, rng: np.random.Generator) -> Defect:
    """One part of the object is absent; its bare pads show."""
    if scene.redraw is None or not scene.parts:
        raise ValueError("a 'missing' defect needs an object made of parts")
    k = int(rng.integers(len(scene.parts)))
    parts = scene.parts[:k] + scene.parts[k + 1 :]
    new = scene.redraw(parts)
    attrs = {"components": len(parts)}
    return Defect(new, _diff_support(new, scene.image), DESCRIPTIONS["missing"][0], attrs)


def misplaced(scene: Scene, rng: np.random.Generator) -> Defect:
    """One part is shifted and rotated away from its place (drawn on top of the others)."""
    if scene.redraw is None or not scene.parts:
        raise ValueError("a 'misplaced' defect needs an object made of parts")
    n = scene.image.shape[0]
    k = int(rng.integers(len(scene.parts)))
    p = scene.parts[k]
    size = max(p.half_h, p.half_w)
    shift = size * rng.uniform(0.8, 1.3)
    a = rng.uniform(0, 2 * np.pi)
    turn = rng.choice([-1, 1]) * rng.uniform(0.3, 0.7)
    ys, xs = np.nonzero(scene.surface)
    dy = float(np.clip(p.cy + shift * np.sin(a), ys.min() + size, ys.max() - size)) - p.cy
    dx = float(np.clip(p.cx + shift * np.cos(a), xs.min() + size, xs.max() - size)) - p.cx
    moved = p.moved(dy, dx, float(turn))
    new = scene.redraw([*scene.parts[:k], *scene.parts[k + 1 :], moved])
    assert new.shape[0] == n
    return Defect(new, _diff_support(new, scene.image), DESCRIPTIONS["misplaced"][0])


DEFECTS: dict[str, Callable[[Scene, np.random.Generator], Defect]] = {
    "scratch": scratch,
    "crack": crack,
    "hole": hole,
    "stain": stain,
    "contamination": contamination,
    "missing": missing,
    "misplaced": misplaced,
}
