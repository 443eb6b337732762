"""Products on a background: bottle cap, screw, pill and a printed circuit board.

Each renderer takes a ``numpy.random.Generator`` and the image side ``n`` and returns a
:class:`~omniad_train.synthetic.scene.Scene` whose ``surface`` is the product.  The
board is made of parts (:class:`Part`) and can be redrawn with a changed part list.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from omniad_train.synthetic.raster import (
    F32,
    blur,
    box_alpha,
    coords,
    erode,
    mix,
    smoothstep,
    stroke,
    value_noise,
)
from omniad_train.synthetic.scene import Scene, pick_colour, rgb

__all__ = ["OBJECTS", "Part", "bottle_cap", "pcb", "pill", "screw"]

CAP_COLOURS = {
    "red": (0.72, 0.10, 0.10),
    "blue": (0.12, 0.28, 0.70),
    "green": (0.12, 0.52, 0.22),
    "silver": (0.58, 0.60, 0.63),
    "gold": (0.82, 0.64, 0.26),
    "white": (0.92, 0.92, 0.90),
}
SCREW_COLOURS = {
    "silver": (0.70, 0.71, 0.73),
    "gold": (0.80, 0.63, 0.30),
    "black": (0.22, 0.22, 0.23),
}
PILL_COLOURS = {
    "white": (0.93, 0.92, 0.89),
    "yellow": (0.93, 0.80, 0.32),
    "pink": (0.92, 0.62, 0.68),
    "orange": (0.92, 0.55, 0.22),
    "light blue": (0.58, 0.74, 0.90),
}
BOARD_COLOURS = {
    "green": (0.08, 0.36, 0.16),
    "blue": (0.07, 0.20, 0.46),
    "black": (0.09, 0.09, 0.10),
    "red": (0.50, 0.07, 0.07),
}


def _background(rng: np.random.Generator, n: int, level: float, tint=(1.0, 1.0, 1.0)):
    """A matte backdrop with soft unevenness."""
    lum = level * (1 + 0.06 * value_noise(rng, n, n, n / 3, octaves=2))
    lum = lum + 0.012 * value_noise(rng, n, n, 1.5)
    return (lum[..., None] * rgb(*tint)).astype(F32)


def _shadow(img: np.ndarray, alpha: np.ndarray, dy: float, dx: float, sigma: float, k: float):
    """Darken ``img`` under a blurred, offset copy of ``alpha``."""
    sy, sx = round(dy), round(dx)
    shifted = np.roll(np.roll(alpha, sy, axis=0), sx, axis=1)
    return img * (1 - k * blur(shifted, sigma))[..., None]


def bottle_cap(rng: np.random.Generator, n: int) -> Scene:
    """A crown-like bottle cap seen from above: domed top, groove ring, knurled skirt."""
    name, col = pick_colour(rng, CAP_COLOURS)
    img = _background(rng, n, rng.uniform(0.14, 0.22))
    cy, cx = (float(v) for v in (0.5 + rng.uniform(-0.04, 0.04, 2)) * n)
    radius = rng.uniform(0.33, 0.40) * n
    yy, xx = coords(n, n)
    dy, dx = yy - cy, xx - cx
    r = np.hypot(dy, dx)
    theta = np.arctan2(dy, dx)
    alpha = np.clip(radius - r + 0.5, 0, 1)
    img = _shadow(img, alpha, radius * 0.05, radius * 0.07, radius * 0.07, 0.7)
    rn = r / radius
    ridges = int(rng.integers(21, 30))
    skirt = smoothstep(0.86, 0.90, rn)
    knurl = 0.72 + 0.22 * np.sin(theta * ridges) ** 2
    dome = 1.05 - 0.30 * rn**2
    light = np.exp(-((dy + 0.35 * radius) ** 2 + (dx + 0.30 * radius) ** 2) / (0.3 * radius) ** 2)
    shade = dome * (1 - skirt) + skirt * knurl * (0.95 - 0.35 * smoothstep(0.9, 1.0, rn))
    groove_r = rng.uniform(0.72, 0.80)
    groove = np.exp(-((((rn - groove_r) * radius) / 1.1) ** 2))
    bevel = np.exp(-((((rn - groove_r + 0.025) * radius) / 1.3) ** 2))
    shade = shade * (1 - 0.45 * groove) + 0.12 * bevel
    grain = 1 + 0.03 * value_noise(rng, n, n, 2.0)
    body = (shade * grain)[..., None] * col + 0.35 * light[..., None]
    img = mix(img, np.clip(body, 0, 1), alpha)
    surface = r < radius * 0.86
    attrs = {"colour": name, "ridges": ridges}
    return Scene(img, surface, radius, attrs)


def screw(rng: np.random.Generator, n: int) -> Scene:
    """A screw lying on a light backdrop: pan head, threaded shaft, pointed tip."""
    name, col = pick_colour(rng, SCREW_COLOURS)
    img = _background(rng, n, rng.uniform(0.74, 0.84), (1.0, 1.0, 0.98))
    heads = ("right", "bottom", "left", "top")  # head side for angle 0, 90, 180, 270 deg
    k = int(rng.integers(4))
    ang = float(np.deg2rad(90 * k + rng.uniform(-20, 20)))
    cy, cx = (float(v) for v in (0.5 + rng.uniform(-0.05, 0.05, 2)) * n)
    length = rng.uniform(0.56, 0.66) * n
    hw = rng.uniform(0.040, 0.050) * n  # shaft half width
    head_len, head_hw = hw * 1.5, hw * 1.9
    tip = hw * 2.2
    pitch = hw * rng.uniform(0.55, 0.75)
    yy, xx = coords(n, n)
    c, s = math.cos(ang), math.sin(ang)
    # u runs from the tip (-L/2) to the head (+L/2); v across the shaft
    u = (xx - cx) * c + (yy - cy) * s
    v = -(xx - cx) * s + (yy - cy) * c
    half = length / 2
    shaft_start = half - head_len
    saw = 2 * np.abs((u / pitch) % 1 - 0.5)  # triangle wave in [0, 1]
    edge = hw * (0.80 + 0.20 * saw)
    taper = np.clip((u + half) / tip, 0, 1)
    width = np.where(u < shaft_start, edge * taper, head_hw)
    corner = np.clip((u - (half - hw * 0.6)) / (hw * 0.6), 0, 1)
    width = np.where(u >= shaft_start, head_hw * np.sqrt(1 - corner**2 * 0.75), width)
    inside = np.clip(width - np.abs(v) + 0.5, 0, 1) * np.clip(half - u + 0.5, 0, 1)
    inside *= np.clip(u + half + 0.5, 0, 1)
    img = _shadow(img, inside, hw * 0.35, hw * 0.35, hw * 0.45, 0.45)
    across = np.clip(np.abs(v) / np.maximum(width, 1e-3), 0, 1)
    cyl = (
        0.55
        + 0.45 * np.sqrt(1 - across**2)
        + 0.35 * np.exp(-(((v + 0.35 * width) / (0.18 * hw)) ** 2))
    )
    thread = 0.78 + 0.22 * np.cos(2 * np.pi * (u / pitch + 0.35 * v / hw))
    shade = np.where(u < shaft_start, cyl * thread, cyl * 1.05)
    shade = shade * (1 - 0.4 * np.exp(-(((u - shaft_start) / 1.2) ** 2)))
    img = mix(img, np.clip(shade[..., None] * col, 0, 1), inside)
    surface = erode(inside > 0.99, 1)
    attrs = {"colour": name, "head": heads[k]}
    return Scene(img.astype(F32), surface, length * 0.5, attrs, axis=float(ang))


def pill(rng: np.random.Generator, n: int) -> Scene:
    """A tablet on a dark backdrop: round or oval, domed, maybe with a score line."""
    name, col = pick_colour(rng, PILL_COLOURS)
    img = _background(rng, n, rng.uniform(0.08, 0.13))
    shape = "round" if rng.random() < 0.45 else "oval"
    ry = rng.uniform(0.27, 0.32) * n
    rx = ry if shape == "round" else ry * rng.uniform(1.45, 1.7)
    ang = rng.uniform(-0.35, 0.35) + (np.pi / 2 if rng.random() < 0.3 else 0.0)
    cy, cx = (float(v) for v in (0.5 + rng.uniform(-0.03, 0.03, 2)) * n)
    yy, xx = coords(n, n)
    c, s = math.cos(ang), math.sin(ang)
    u = (xx - cx) * c + (yy - cy) * s
    v = -(xx - cx) * s + (yy - cy) * c
    rho = np.hypot(u / rx, v / ry)
    alpha = np.clip((1 - rho) * min(rx, ry) + 0.5, 0, 1)
    img = _shadow(img, alpha, ry * 0.06, ry * 0.06, ry * 0.08, 0.6)
    dome = 1.0 - 0.22 * rho**2 - 0.35 * smoothstep(0.88, 1.0, rho)
    light = np.exp(-((yy - cy + 0.4 * ry) ** 2 + (xx - cx + 0.35 * ry) ** 2) / (0.45 * ry) ** 2)
    grain = 1 + 0.035 * value_noise(rng, n, n, 1.4) + 0.03 * value_noise(rng, n, n, n / 8)
    shade = dome * grain
    scored = bool(rng.random() < 0.5)
    if scored:
        groove = np.exp(-((u / 1.3) ** 2)) * (rho < 0.9)
        lip = np.exp(-(((u - 2.2) / 1.2) ** 2)) * (rho < 0.9)
        shade = shade * (1 - 0.35 * groove) + 0.06 * lip
    body = shade[..., None] * col + 0.18 * light[..., None]
    img = mix(img, np.clip(body, 0, 1), alpha)
    surface = rho < 0.9
    attrs = {"colour": name, "shape": shape, "score line": "yes" if scored else "no"}
    axis = float(ang) if shape == "oval" else None
    return Scene(img.astype(F32), surface, min(rx, ry), attrs, axis=axis)


# --------------------------------------------------------------------------- PCB
@dataclass(frozen=True)
class Part:
    """A component on the board: kind, centre, half size, rotation (radians)."""

    kind: str
    cy: float
    cx: float
    half_h: float
    half_w: float
    angle: float = 0.0
    tone: float = 0.0  # small per-part shade variation

    def moved(self, dy: float, dx: float, dangle: float) -> Part:
        return replace(self, cy=self.cy + dy, cx=self.cx + dx, angle=self.angle + dangle)


PART_KINDS = ("chip", "resistor", "capacitor", "electrolytic capacitor", "led")
_PAD = rgb(0.78, 0.76, 0.70)


def _pads(p: Part) -> list[tuple[float, float, float, float]]:
    """Pad boxes ``(dv, du, half_v, half_u)`` in the part's frame (v: height, u: width)."""
    if p.kind == "chip":
        pins = max(3, round(p.half_w / 3.5))
        pitch = 2 * p.half_w / pins
        pin = max(1.5, p.half_h * 0.28)
        out = []
        for side in (-1, 1):
            for k in range(pins):
                du = -p.half_w + pitch * (k + 0.5)
                out.append((side * (p.half_h + pin * 0.7), du, pin, pitch * 0.28))
        return out
    if p.kind == "electrolytic capacitor":
        return [
            (0, -p.half_w * 0.75, p.half_h * 0.25, p.half_w * 0.35),
            (0, p.half_w * 0.75, p.half_h * 0.25, p.half_w * 0.35),
        ]
    return [
        (0, -p.half_w * 0.85, p.half_h * 1.15, p.half_w * 0.3),
        (0, p.half_w * 0.85, p.half_h * 1.15, p.half_w * 0.3),
    ]


def _disc(alpha: np.ndarray, cy: float, cx: float, r: float) -> None:
    """Draw an anti-aliased disc into ``alpha`` (max), touching only its window."""
    h, w = alpha.shape
    y0, y1 = max(0, int(cy - r - 2)), min(h, int(cy + r + 3))
    x0, x1 = max(0, int(cx - r - 2)), min(w, int(cx + r + 3))
    if y0 >= y1 or x0 >= x1:
        return
    yy, xx = coords(y1 - y0, x1 - x0)
    a = np.clip(r - np.hypot(yy + y0 - cy, xx + x0 - cx) + 0.5, 0, 1)
    np.maximum(alpha[y0:y1, x0:x1], a, out=alpha[y0:y1, x0:x1])


def _frame(y0: int, y1: int, x0: int, x1: int):
    yy, xx = coords(y1 - y0, x1 - x0)
    return yy + y0, xx + x0


def _window(p: Part, n: int, extra: float):
    r = np.hypot(p.half_h, p.half_w) + extra
    y0, y1 = max(0, int(p.cy - r)), min(n, int(np.ceil(p.cy + r)))
    x0, x1 = max(0, int(p.cx - r)), min(n, int(np.ceil(p.cx + r)))
    return y0, y1, x0, x1


def _local(p: Part, yy: np.ndarray, xx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Part-frame coordinates: ``u`` along the width, ``v`` along the height."""
    c, s = math.cos(p.angle), math.sin(p.angle)
    return (xx - p.cx) * c + (yy - p.cy) * s, -(xx - p.cx) * s + (yy - p.cy) * c


def _box_local(u, v, du, dv, hu, hv, r: float) -> np.ndarray:
    r = min(r, float(np.min(hu)), float(np.min(hv)))
    qu = np.abs(u - du) - (hu - r)
    qv = np.abs(v - dv) - (hv - r)
    sd = np.hypot(np.maximum(qu, 0), np.maximum(qv, 0)) + np.minimum(np.maximum(qu, qv), 0) - r
    return np.clip(0.5 - sd, 0.0, 1.0).astype(F32)


def _pad_alpha(
    p: Part, u: np.ndarray, v: np.ndarray, off: float, grow_v: float, grow_u: float, r: float
) -> np.ndarray:
    """Coverage of the part's pads (scaled), in one pass for the periodic chip pins."""
    pads = _pads(p)
    if p.kind == "chip":
        pins = len(pads) // 2
        pitch = 2 * p.half_w / pins
        k = np.clip(np.floor((u + p.half_w) / pitch), 0, pins - 1)
        dv, _, hv, hu = pads[pins]  # the +v side; the -v side mirrors it
        return _box_local(
            u, np.abs(v), -p.half_w + pitch * (k + 0.5), dv * off, hu * grow_u, hv * grow_v, r
        )
    out = np.zeros(u.shape, F32)
    for dv, du, hv, hu in pads:
        np.maximum(out, _box_local(u, v, du, dv * off, hu * grow_u, hv * grow_v, r), out=out)
    return out


def _draw_pads(img: np.ndarray, p: Part) -> None:
    n = img.shape[0]
    y0, y1, x0, x1 = _window(p, n, 8)
    yy, xx = _frame(y0, y1, x0, x1)
    u, v = _local(p, yy, xx)
    win = img[y0:y1, x0:x1]
    win[:] = mix(win, _PAD * (0.95 + 0.1 * p.tone), _pad_alpha(p, u, v, 1.0, 1.0, 1.0, 0.6))


def _draw_part(img: np.ndarray, p: Part, n: int) -> None:
    y0, y1, x0, x1 = _window(p, n, 10)
    if y0 >= y1 or x0 >= x1:
        return
    yy, xx = _frame(y0, y1, x0, x1)
    win = img[y0:y1, x0:x1]
    ang = p.angle
    body = box_alpha(yy, xx, p.cy, p.cx, p.half_h, p.half_w, ang, 1.0)
    if p.kind == "electrolytic capacitor":
        body = np.clip(min(p.half_h, p.half_w) - np.hypot(yy - p.cy, xx - p.cx) + 0.5, 0, 1)
    off = max(1, round(n / 128))
    sh = np.roll(np.roll(body, off, 0), off, 1)
    win[:] = win * (1 - 0.55 * blur(sh, max(1.0, n / 140)))[..., None]
    c, s = math.cos(ang), math.sin(ang)
    u = (xx - p.cx) * c + (yy - p.cy) * s
    v = -(xx - p.cx) * s + (yy - p.cy) * c
    t = 1 + 0.08 * p.tone
    if p.kind == "chip":
        pins = _pad_alpha(p, u, v, 0.93, 0.8, 0.75, 0.3)  # gull-wing pins
        win[:] = mix(win, rgb(0.66, 0.66, 0.64) * t, pins)
        top = (0.13 - 0.03 * v / p.half_h)[..., None] * rgb(1, 1, 1.05) * t
        win[:] = mix(win, top, body)
        dot = np.clip(2.2 - np.hypot(u + p.half_w * 0.7, v - p.half_h * 0.45) + 0.5, 0, 1)
        win[:] = mix(win, rgb(0.25, 0.25, 0.26), dot)
        for k, vpos in enumerate((-0.15, 0.2)):  # printed marking
            mark = box_alpha(v, u, vpos * p.half_h, 0.0, 0.8, p.half_w * (0.5 - 0.2 * k))
            win[:] = mix(win, rgb(0.55, 0.55, 0.55), mark * 0.8)
    elif p.kind == "electrolytic capacitor":
        rad = min(p.half_h, p.half_w)
        rr = np.hypot(u, v) / rad
        can = (
            (0.62 + 0.25 * (1 - rr**2) - 0.1 * (u + v) / rad)[..., None] * rgb(0.85, 0.86, 0.9) * t
        )
        stripe = smoothstep(0.45, 0.55, u / rad) * 0.9
        can = mix(can, rgb(0.12, 0.12, 0.35), stripe)
        vent = np.maximum(np.exp(-((u / 0.8) ** 2)), np.exp(-((v / 0.8) ** 2))) * (rr < 0.55)
        can = can * (1 - 0.45 * vent)[..., None]
        win[:] = mix(win, can, body)
    else:
        if p.kind == "resistor":
            colour = rgb(0.10, 0.10, 0.10)
        elif p.kind == "capacitor":
            colour = rgb(0.62, 0.48, 0.32)
        else:  # led
            colour = rgb(0.92, 0.92, 0.88)
        shade = (1.0 - 0.25 * (np.abs(v) / p.half_h) ** 2)[..., None]
        win[:] = mix(win, colour * shade * t, body)
        ends = body * smoothstep(p.half_w * 0.62, p.half_w * 0.68, np.abs(u))
        win[:] = mix(win, rgb(0.78, 0.78, 0.76) * shade, ends)
        if p.kind == "led":
            lens = np.clip(p.half_h * 0.6 - np.hypot(u, v) + 0.5, 0, 1)
            win[:] = mix(win, rgb(0.95, 0.2, 0.15) if p.tone > 0 else rgb(0.2, 0.85, 0.3), lens)


def pcb(rng: np.random.Generator, n: int) -> Scene:
    """A close-up of a printed circuit board with chips, resistors, capacitors and LEDs."""
    name, col = pick_colour(rng, BOARD_COLOURS)
    margin = rng.uniform(0.03, 0.06) * n
    img = _background(rng, n, 0.2)
    yy, xx = coords(n, n)
    board = box_alpha(yy, xx, n / 2, n / 2, n / 2 - margin, n / 2 - margin, 0.0, n * 0.02)
    weave = value_noise(rng, n, n, 1.3) * 0.04 + value_noise(rng, n, n, n / 4) * 0.05
    base = (1 + weave)[..., None] * col
    # traces: Manhattan routes with a 45 degree bend, vias at their ends
    layer = np.zeros((n, n), F32)
    via_a = np.zeros((n, n), F32)
    drill_a = np.zeros((n, n), F32)
    via_r, drill_r = max(2.0, n * 0.009), max(0.8, n * 0.004)
    for _ in range(int(rng.integers(10, 16))):
        y0, x0 = rng.uniform(margin + 6, n - margin - 6, 2)
        ln = rng.uniform(0.15, 0.5) * n
        horizontal = rng.random() < 0.5
        dy = ln * rng.uniform(-0.3, 0.3)
        pts = [
            [y0, x0],
            [y0, x0 + ln * 0.5],
            [y0 + dy, x0 + ln * 0.5 + abs(dy)],
            [y0 + dy, x0 + ln],
        ]
        pts = np.array(pts if horizontal else [[q[1], q[0]] for q in pts])
        pts = np.clip(pts, margin + 4, n - margin - 4)
        stroke(n, n, pts, max(0.8, n * 0.005), out=layer)
        for q in (pts[0], pts[-1]):
            _disc(via_a, q[0], q[1], via_r)
            _disc(drill_a, q[0], q[1], drill_r)
    base = mix(base, np.clip(col * 1.45 + 0.05, 0, 1), layer * 0.8)
    base = mix(mix(base, _PAD * 0.9, via_a), col * 0.3, drill_a)
    # parts on a grid of slots
    rows, cols = int(rng.integers(2, 4)), int(rng.integers(3, 5))
    inner = n - 2 * margin
    parts: list[Part] = []
    for r in range(rows):
        for c in range(cols):
            if rng.random() < 0.25:
                continue
            kind = PART_KINDS[int(rng.choice(5, p=[0.3, 0.25, 0.2, 0.15, 0.1]))]
            sy, sx = inner / rows, inner / cols
            cy = margin + sy * (r + 0.5) + rng.uniform(-0.1, 0.1) * sy
            cx = margin + sx * (c + 0.5) + rng.uniform(-0.1, 0.1) * sx
            unit = min(sy, sx)
            if kind == "chip":
                hh, hw_ = unit * rng.uniform(0.2, 0.26), unit * rng.uniform(0.28, 0.36)
            elif kind == "electrolytic capacitor":
                hh = hw_ = unit * rng.uniform(0.2, 0.26)
            else:
                hh, hw_ = unit * rng.uniform(0.09, 0.11), unit * rng.uniform(0.19, 0.24)
            ang = float(rng.choice([0.0, np.pi / 2])) if kind != "electrolytic capacitor" else 0.0
            parts.append(Part(kind, cy, cx, hh, hw_, ang, float(rng.uniform(-1, 1))))
    if not parts:
        parts.append(Part("chip", n / 2, n / 2, n * 0.08, n * 0.11, 0.0, 0.0))
    gap = max(3.0, n * 0.015)
    silk = np.zeros((n, n), F32)
    line = max(1.0, n * 0.004)
    for p in parts:  # silkscreen outline and pads
        ext = gap + (p.half_h * 0.4 if p.kind == "chip" else 0.0)
        y0, y1, x0, x1 = _window(p, n, ext + 3)
        wy, wx = _frame(y0, y1, x0, x1)
        outer = box_alpha(wy, wx, p.cy, p.cx, p.half_h + ext, p.half_w + gap, p.angle, 1.0)
        inner_a = box_alpha(
            wy, wx, p.cy, p.cx, p.half_h + ext - line, p.half_w + gap - line, p.angle, 1.0
        )
        np.maximum(silk[y0:y1, x0:x1], np.clip(outer - inner_a, 0, 1), out=silk[y0:y1, x0:x1])
    base = mix(base, rgb(0.88, 0.88, 0.84), silk * 0.85)
    for p in parts:
        _draw_pads(base, p)
    board_img = mix(img, base, board)

    def redraw(ps: list[Part]) -> np.ndarray:
        out = board_img.copy()
        for p in ps:
            _draw_part(out, p, n)
        return out

    surface = erode(board > 0.99, max(2, round(n * 0.02)))
    attrs = {"colour": name, "components": len(parts)}
    return Scene(redraw(parts), surface, n * 0.35, attrs, parts=parts, redraw=redraw)


OBJECTS = {"bottle_cap": bottle_cap, "screw": screw, "pill": pill, "pcb": pcb}
