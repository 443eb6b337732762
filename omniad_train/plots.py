"""Charts drawn with Pillow only: line charts and precision / recall points.

One :class:`Chart` draws what both kinds share: a white canvas, a framed plot area with
grid lines, ticks at round values (:func:`nice_ticks`) and their labels, axis labels
(the y label turned upright), a title and a legend to the right of the plot area.

- :func:`draw_line_chart`: named ``[(x, y), ...]`` series, e.g. the demo's GRPO reward
  curves (``omniad_train.demo.plot_curves``).
- :func:`draw_pr_points`: precision against recall for single operating points, e.g.
  the detection report's ``pr_<dataset>.png``.  OmniAD writes a mask, not a score map,
  so each category has one point per level, not a curve: every category's pixel-level
  point (circle) and image-level point (square), the dataset's pooled points (larger,
  outlined) and dashed iso-F1 curves (F1 = 0.2, 0.4, 0.6, 0.8) for reference.

Pillow is imported when a chart is drawn, not when this module is imported.

>>> nice_ticks(0.0, 1.0)
[0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
>>> nice_ticks(-0.3, 2.1)
[-0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
>>> nice_ticks(1, 2, integer=True)
[1.0, 2.0]
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "COLORS",
    "Chart",
    "LegendEntry",
    "PRPoint",
    "draw_line_chart",
    "draw_pr_points",
    "nice_ticks",
    "tick_label",
]

RGB = tuple[int, int, int]

#: Series colours, in order (a colour-blind friendly palette).
COLORS: tuple[RGB, ...] = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
)
_GRID: RGB = (232, 232, 232)
_MUTED: RGB = (90, 90, 90)
_STEPS = (1.0, 2.0, 2.5, 5.0, 10.0)


def nice_ticks(lo: float, hi: float, n: int = 5, *, integer: bool = False) -> list[float]:
    """About ``n`` intervals of a round step (1, 2, 2.5 or 5 times a power of 10) from
    a multiple of the step at or below ``lo`` to one at or above ``hi``.

    ``integer`` keeps the step at 1 or more (for step counts).  An empty range is
    widened around its value.
    """
    lo, hi = float(lo), float(hi)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"tick range must be finite, got {lo}..{hi}")
    if hi < lo:
        lo, hi = hi, lo
    scale = max(abs(lo), abs(hi))
    if hi - lo <= max(1e-9 * scale, 1e-300):  # empty, or below float precision here
        pad = 0.5 if scale < 1e-290 else scale * 0.1  # subnormal ranges count as zero
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / max(1, n)
    mag = 10.0 ** math.floor(math.log10(raw))
    step = next(m * mag for m in _STEPS if m * mag >= raw * (1 - 1e-9))
    if integer:
        step = max(1.0, round(step))
    start = math.floor(lo / step + 1e-9) * step
    count = max(1, math.ceil((hi - start) / step - 1e-9))
    return [float(f"{start + k * step:.12g}") + 0.0 for k in range(count + 1)]


def tick_label(value: float, step: float) -> str:
    """``value`` with as many decimals as the tick step needs.

    >>> tick_label(0.25, 0.25), tick_label(10.0, 5.0), tick_label(0.4, 0.2)
    ('0.25', '10', '0.4')
    """
    decimals = 0
    while decimals < 6 and abs(round(step, decimals) - step) > abs(step) * 1e-9:
        decimals += 1
    return f"{value:.{decimals}f}"


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # pragma: no cover - Pillow < 10.1
        return ImageFont.load_default()


@dataclass(frozen=True)
class LegendEntry:
    """One legend row: a line swatch, a marker (``"circle"`` / ``"square"``) or a note."""

    label: str
    kind: Literal["line", "circle", "square", "note"] = "line"
    color: RGB = COLORS[0]
    radius: int = 4
    outlined: bool = False


class Chart:
    """A canvas with framed axes, ticks, labels, a title and a legend, in data units.

    Parameters
    ----------
    size : (width, height)
        Pixels.
    xlim, ylim : (low, high)
        Data ranges; each axis is widened to its outer ticks unless ``xticks`` /
        ``yticks`` are given.
    title, xlabel, ylabel : str
    legend_width : int
        Pixels to the right of the plot area for the legend.
    integer_x : bool
        Ticks of the x axis at whole numbers only.
    pad : int
        Pixels between the frame and the outer ticks, so that marks on the range's edge
        (a point at recall 1.0) are drawn whole inside the frame.
    """

    def __init__(
        self,
        size: tuple[int, int],
        *,
        xlim: tuple[float, float],
        ylim: tuple[float, float],
        title: str = "",
        xlabel: str = "",
        ylabel: str = "",
        legend_width: int = 150,
        xticks: Sequence[float] | None = None,
        yticks: Sequence[float] | None = None,
        integer_x: bool = False,
        pad: int = 0,
    ) -> None:
        from PIL import Image, ImageDraw

        self.size = size
        self.image = Image.new("RGB", size, "white")
        self.draw = ImageDraw.Draw(self.image)
        self.small, self.normal, self.big = _font(11), _font(14), _font(16)
        w, h = size
        self.left, self.right = 64 if ylabel else 48, w - legend_width - 12
        self.top, self.bottom = 40 if title else 16, h - (48 if xlabel else 30)
        self.xticks = list(xticks) if xticks is not None else nice_ticks(*xlim, integer=integer_x)
        self.yticks = list(yticks) if yticks is not None else nice_ticks(*ylim)
        self.x0, self.x1 = self.xticks[0], self.xticks[-1]
        self.y0, self.y1 = self.yticks[0], self.yticks[-1]
        self.pad = max(0, int(pad))
        self._frame(title, xlabel, ylabel)
        self._legend_y = self.top + 10

    # ------------------------------------------------------------------ coordinates
    def xy(self, x: float, y: float) -> tuple[float, float]:
        """Pixel position of the data point ``(x, y)`` (the outer ticks ``pad`` pixels
        inside the frame)."""
        fx = (x - self.x0) / ((self.x1 - self.x0) or 1.0)
        fy = (y - self.y0) / ((self.y1 - self.y0) or 1.0)
        pad = self.pad
        return (
            self.left + pad + fx * (self.right - self.left - 2 * pad),
            self.bottom - pad - fy * (self.bottom - self.top - 2 * pad),
        )

    # ------------------------------------------------------------------ frame
    def _frame(self, title: str, xlabel: str, ylabel: str) -> None:
        d = self.draw
        xstep = (self.xticks[1] - self.xticks[0]) if len(self.xticks) > 1 else 1.0
        ystep = (self.yticks[1] - self.yticks[0]) if len(self.yticks) > 1 else 1.0
        for v in self.xticks:
            x, _ = self.xy(v, self.y0)
            d.line([(x, self.top), (x, self.bottom)], fill=_GRID)
            d.line([(x, self.bottom), (x, self.bottom + 5)], fill="black")
            label = tick_label(v, xstep)
            d.text((x, self.bottom + 8), label, fill="black", font=self.small, anchor="mt")
        for v in self.yticks:
            _, y = self.xy(self.x0, v)
            d.line([(self.left, y), (self.right, y)], fill=_GRID)
            d.line([(self.left - 5, y), (self.left, y)], fill="black")
            label = tick_label(v, ystep)
            d.text((self.left - 8, y), label, fill="black", font=self.small, anchor="rm")
        d.rectangle([self.left, self.top, self.right, self.bottom], outline="black")
        mid_x = (self.left + self.right) / 2
        if title:
            d.text((mid_x, 20), title, fill="black", font=self.big, anchor="mm")
        if xlabel:
            d.text((mid_x, self.size[1] - 14), xlabel, fill="black", font=self.normal, anchor="mm")
        if ylabel:
            self._upright(ylabel)

    def _upright(self, text: str) -> None:
        from PIL import Image, ImageDraw

        width = int(self.draw.textlength(text, font=self.normal)) + 8
        label = Image.new("RGBA", (width, 20), (255, 255, 255, 0))
        ImageDraw.Draw(label).text(
            (width / 2, 10), text, fill="black", font=self.normal, anchor="mm"
        )
        label = label.rotate(90, expand=True)
        mid_y = (self.top + self.bottom) / 2
        self.image.paste(label, (4, int(mid_y - label.size[1] / 2)), label)

    # ------------------------------------------------------------------ marks
    def line(
        self,
        points: Sequence[tuple[float, float]],
        color: RGB | str,
        *,
        width: int = 2,
        dash: float | None = None,
    ) -> None:
        """A polyline through data points; ``dash`` draws dashes of about that many pixels."""
        pts = [self.xy(x, y) for x, y in points]
        if len(pts) < 2:
            return
        if dash is None:
            self.draw.line(pts, fill=color, width=width)
            return
        travelled, on, piece = 0.0, True, [pts[0]]
        for a, b in itertools.pairwise(pts):
            travelled += math.dist(a, b)
            piece.append(b)
            if travelled >= dash:
                if on:
                    self.draw.line(piece, fill=color, width=width)
                travelled, on, piece = 0.0, not on, [b]
        if on and len(piece) > 1:
            self.draw.line(piece, fill=color, width=width)

    def marker(
        self,
        x: float,
        y: float,
        color: RGB,
        *,
        shape: Literal["circle", "square"] = "circle",
        radius: int = 4,
        outlined: bool = False,
    ) -> None:
        """A filled circle or square at a data point (``outlined``: a black border)."""
        self._marker(*self.xy(x, y), color, shape, radius, outlined)

    def _marker(
        self, px: float, py: float, color: RGB, shape: str, radius: int, outlined: bool
    ) -> None:
        box = [px - radius, py - radius, px + radius, py + radius]
        outline = "black" if outlined else color
        draw = self.draw.rectangle if shape == "square" else self.draw.ellipse
        draw(box, fill=color, outline=outline, width=2 if outlined else 1)

    def label(
        self,
        x: float,
        y: float,
        text: str,
        color: RGB | str = "black",
        *,
        offset: tuple[float, float] = (0, 0),
        anchor: str = "ls",
    ) -> None:
        """Small text at a data point, shifted by ``offset`` pixels."""
        px, py = self.xy(x, y)
        pos = (px + offset[0], py + offset[1])
        self.draw.text(pos, text, fill=color, font=self.small, anchor=anchor)

    def legend(self, entries: Sequence[LegendEntry]) -> None:
        """Rows of swatches and labels to the right of the plot area, from the top."""
        x = self.right + 14
        for e in entries:
            y = self._legend_y
            if e.kind == "note":
                self.draw.text((x, y), e.label, fill=_MUTED, font=self.small, anchor="lm")
                self._legend_y += 14
                continue
            if e.kind == "line":
                self.draw.line([(x, y), (x + 20, y)], fill=e.color, width=3)
            else:
                self._marker(x + 8, y, e.color, e.kind, e.radius, e.outlined)
            self.draw.text((x + 26, y), e.label, fill="black", font=self.small, anchor="lm")
            self._legend_y += 20

    def note(self, text: str) -> None:
        """A grey line of text in the middle of the plot area (e.g. "no data")."""
        mid = ((self.left + self.right) / 2, (self.top + self.bottom) / 2)
        self.draw.text(mid, text, fill=_MUTED, font=self.normal, anchor="mm")

    def save(self, path: str | Path) -> Path:
        """Write the PNG (creating its folder)."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        self.image.save(p)
        return p


def _finite(*values: float) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)


def draw_line_chart(
    series: Mapping[str, Sequence[tuple[float, float]]],
    path: str | Path,
    *,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    size: tuple[int, int] = (640, 360),
    integer_x: bool = False,
) -> Path:
    """A line chart of named ``[(x, y), ...]`` series (points marked, legend at the right).

    The y axis starts at 0 or below; points with a non-finite coordinate are left out.
    A chart without points says "no data".
    """
    clean = {
        name: sorted((float(x), float(y)) for x, y in pts if _finite(x, y))
        for name, pts in series.items()
    }
    pts = [p for s in clean.values() for p in s]
    xs, ys = [p[0] for p in pts] or [0.0, 1.0], [p[1] for p in pts] or [0.0, 1.0]
    y0 = min(0.0, *ys)
    chart = Chart(
        size,
        xlim=(min(xs), max(xs)),
        ylim=(y0, max(ys) if max(ys) > y0 else y0 + 1.0),
        title=title,
        xlabel=xlabel,
        ylabel=ylabel,
        integer_x=integer_x,
    )
    if not pts:
        chart.note("no data")
    entries = []
    for k, (name, s) in enumerate(clean.items()):
        color = COLORS[k % len(COLORS)]
        chart.line(s, color)
        for x, y in s:
            chart.marker(x, y, color, radius=2)
        entries.append(LegendEntry(name, "line", color))
    chart.legend(entries)
    return chart.save(path)


class PRPoint:
    """One operating point: a label, precision and recall (fractions), a kind.

    ``kind`` is ``"pixel"``, ``"image"``, ``"pixel-pooled"`` or ``"image-pooled"``.
    """

    __slots__ = ("kind", "label", "precision", "recall")

    def __init__(self, label: str, precision: float, recall: float, kind: str) -> None:
        self.label = label
        self.precision = precision
        self.recall = recall
        self.kind = kind

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "kind": self.kind,
            "precision": self.precision,
            "recall": self.recall,
        }


_PR_COLORS: dict[str, RGB] = {"pixel": COLORS[0], "image": COLORS[1]}
_UNIT = [k / 5 for k in range(6)]
#: Pixels between the PR chart's frame and recall / precision 0 and 1: the largest marker
#: (radius 7, a 2-pixel outline) on the edge stays whole inside the frame.
_PR_PAD = 11


def draw_pr_points(
    points: Sequence[PRPoint], path: Path, *, title: str, size: tuple[int, int] = (720, 640)
) -> Path:
    """Draw precision (y) against recall (x) for the given operating points as a PNG.

    The axes are padded (:data:`_PR_PAD` pixels): a point at recall or precision 0 or 1
    is drawn whole inside the frame, not cut by it.
    """
    chart = Chart(
        size,
        xlim=(0.0, 1.0),
        ylim=(0.0, 1.0),
        xticks=_UNIT,
        yticks=_UNIT,
        title=title,
        xlabel="Recall",
        ylabel="Precision",
        legend_width=160,
        pad=_PR_PAD,
    )
    # the F1 labels sit right of the frame, level with where each curve meets recall 1
    label_dx = chart.right - chart.xy(1.0, 0.0)[0] + 4
    # iso-F1 curves: precision = f r / (2 r - f), from precision 1 (r = f / (2 - f)) to r = 1
    for f in (0.2, 0.4, 0.6, 0.8):
        r0 = f / (2 - f)
        rs = [r0 + (1 - r0) * (k / 300) ** 2 for k in range(301)]
        chart.line([(r, f * r / (2 * r - f)) for r in rs], (170, 170, 170), width=1, dash=6.0)
        chart.label(
            1.0, f / (2 - f), f"F1={f:.1f}", (140, 140, 140), offset=(label_dx, 0), anchor="lm"
        )
    for pt in points:
        if not _finite(pt.precision, pt.recall):
            continue
        base = pt.kind.split("-")[0]
        color = _PR_COLORS.get(base, _MUTED)
        pooled = pt.kind.endswith("pooled")
        shape: Literal["circle", "square"] = "square" if base == "image" else "circle"
        chart.marker(
            pt.recall, pt.precision, color, shape=shape, radius=7 if pooled else 4, outlined=pooled
        )
        if not pooled and pt.label:
            chart.label(pt.recall, pt.precision, pt.label, color, offset=(6, -6))
    chart.legend(
        [
            LegendEntry("pixel, per category", "circle", _PR_COLORS["pixel"]),
            LegendEntry("image, per category", "square", _PR_COLORS["image"]),
            LegendEntry("pixel, pooled", "circle", _PR_COLORS["pixel"], 7, True),
            LegendEntry("image, pooled", "square", _PR_COLORS["image"], 7, True),
            LegendEntry("one operating point", "note"),
            LegendEntry("each (no threshold)", "note"),
        ]
    )
    return chart.save(path)
