"""Report pieces shared by the runners: configuration, skipped inputs, files, PR picture.

The precision / recall picture (:func:`draw_pr_points`) is drawn with Pillow only.
OmniAD writes a mask, not a score map, so each category has a single operating point
per level, not a curve: the picture shows, for one dataset, every category's pixel-level
point (circle) and image-level point (square), the dataset's pooled points (larger,
outlined) and dashed iso-F1 curves (F1 = 0.2, 0.4, 0.6, 0.8) for reference.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from omniad_train.evaluation.common import json_safe, now, package_versions, write_json
from omniad_train.evaluation.runlog import atomic_write_text

__all__ = [
    "SKIP_LIST_LIMIT",
    "PRPoint",
    "config_markdown",
    "draw_pr_points",
    "report_config",
    "skipped_summary",
    "timing",
    "write_report",
]

#: Skipped inputs listed one by one in report.md (report.json lists all).
SKIP_LIST_LIMIT = 100


def report_config(run: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    """The configuration block of a report: run settings, versions, dates, coverage."""
    return {
        **run.get("fingerprint", {}),
        **run.get("config", {}),
        "num_shards": run.get("num_shards"),
        "versions": package_versions(),
        "run_created": run.get("created"),
        "report_date": now(),
        "complete": status["complete"],
        "missing_shards": status["missing_shards"],
        "n_items": status["n_items"],
        "n_lines": status["n_lines"],
    }


def _show(value: Any) -> str:
    if isinstance(value, dict):
        if value.get("format", "").startswith("textmask"):
            return f"{value['rows']}x{value['cols']} (index base {value.get('index_base', 0)})"
        return ", ".join(f"{k}={_show(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(_show(v) for v in value) if value else "-"
    if value is None:
        return "-"
    return str(value).replace("|", "\\|").replace("\n", " ")


def config_markdown(config: dict[str, Any]) -> str:
    """The configuration as a two-column Markdown table."""
    out = ["| Setting | Value |", "|---|---|"]
    out += [f"| {k} | {_show(v)} |" for k, v in config.items()]
    return "\n".join(out) + "\n"


def skipped_summary(lines: Iterable[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    """The skipped items (id, kind, reason, ...) and a Markdown section listing them."""
    skipped = [
        {
            "id": d["id"],
            "kind": d.get("skip_kind", "unknown"),
            "reason": d.get("reason", ""),
            "dataset": d.get("dataset", ""),
            "category": d.get("category", ""),
        }
        for d in lines
        if d.get("status") == "skipped"
    ]
    md = [f"## Skipped inputs ({len(skipped)})", ""]
    if not skipped:
        md.append("None: every selected input was evaluated.")
        return skipped, "\n".join(md) + "\n"
    md += [
        "Skipped inputs are not scored (they are not counted as wrong answers).",
        "",
        "| Kind | Count |",
        "|---|--:|",
    ]
    md += [f"| {k} | {c} |" for k, c in sorted(Counter(s["kind"] for s in skipped).items())]
    md += ["", "| Item | Kind | Reason |", "|---|---|---|"]
    for s in skipped[:SKIP_LIST_LIMIT]:
        md.append(f"| `{s['id']}` | {s['kind']} | {_show(s['reason'])} |")
    if len(skipped) > SKIP_LIST_LIMIT:
        md.append(f"\n... and {len(skipped) - SKIP_LIST_LIMIT} more (all are in report.json).")
    return skipped, "\n".join(md) + "\n"


def timing(lines: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Generation time of the answered items (``seconds`` is a batch's time / its size)."""
    secs = [float(d["seconds"]) for d in lines if d.get("status") == "ok" and "seconds" in d]
    total = math.fsum(secs)
    return {
        "generation_seconds": round(total, 3),
        "seconds_per_item": round(total / len(secs), 4) if secs else None,
        "items_per_second": round(len(secs) / total, 3) if total > 0 else None,
    }


def write_report(out_dir: Path, report: dict[str, Any], markdown: str) -> None:
    """Write ``report.json`` and ``report.md`` atomically."""
    write_json(out_dir / "report.json", json_safe(report))
    atomic_write_text(out_dir / "report.md", markdown)


# --------------------------------------------------------------------------- picture
class PRPoint:
    """One operating point: a label, precision and recall (fractions), a kind."""

    __slots__ = ("kind", "label", "precision", "recall")

    def __init__(self, label: str, precision: float, recall: float, kind: str) -> None:
        self.label = label
        self.precision = precision
        self.recall = recall
        self.kind = kind  # "pixel", "image", "pixel-pooled", "image-pooled"

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "kind": self.kind,
            "precision": self.precision,
            "recall": self.recall,
        }


_COLORS = {"pixel": (31, 119, 180), "image": (255, 127, 14)}


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # pragma: no cover - Pillow < 10.1
        return ImageFont.load_default()


def _dashed(d: Any, pts: Sequence[tuple[float, float]], fill: Any, dash: float = 6.0) -> None:
    """A polyline drawn as dashes of about ``dash`` pixels."""
    travelled, on, piece = 0.0, True, [pts[0]]
    for a, b in itertools.pairwise(pts):
        travelled += math.dist(a, b)
        piece.append(b)
        if travelled >= dash:
            if on and len(piece) > 1:
                d.line(piece, fill=fill, width=1)
            travelled, on, piece = 0.0, not on, [b]
    if on and len(piece) > 1:
        d.line(piece, fill=fill, width=1)


def draw_pr_points(
    points: Sequence[PRPoint], path: Path, *, title: str, size: tuple[int, int] = (720, 640)
) -> Path:
    """Draw precision (y) against recall (x) for the given operating points as a PNG."""
    from PIL import Image, ImageDraw

    w, h = size
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    small, normal, big = _font(11), _font(14), _font(16)
    left, right, top, bottom = 70, w - 170, 50, h - 60
    pw, ph = right - left, bottom - top

    def xy(recall: float, precision: float) -> tuple[float, float]:
        return left + recall * pw, bottom - precision * ph

    # grid, ticks and tick labels
    for k in range(6):
        v = k / 5
        x, y = xy(v, v)
        d.line([(x, top), (x, bottom)], fill=(232, 232, 232))
        d.line([(left, y), (right, y)], fill=(232, 232, 232))
        d.line([(x, bottom), (x, bottom + 5)], fill="black")
        d.line([(left - 5, y), (left, y)], fill="black")
        d.text((x, bottom + 8), f"{v:.1f}", fill="black", font=small, anchor="mt")
        d.text((left - 8, y), f"{v:.1f}", fill="black", font=small, anchor="rm")
    # iso-F1 curves: precision = f r / (2 r - f), from precision 1 (r = f / (2 - f)) to r = 1
    for f in (0.2, 0.4, 0.6, 0.8):
        r0 = f / (2 - f)
        rs = [r0 + (1 - r0) * (k / 300) ** 2 for k in range(301)]
        _dashed(d, [xy(r, f * r / (2 * r - f)) for r in rs], (170, 170, 170))
        lx, ly = xy(1.0, f / (2 - f))
        d.text((lx + 4, ly), f"F1={f:.1f}", fill=(140, 140, 140), font=small, anchor="lm")
    d.rectangle([left, top, right, bottom], outline="black")
    d.text((left + pw / 2, h - 22), "Recall", fill="black", font=normal, anchor="mm")
    label = Image.new("RGBA", (120, 24), (255, 255, 255, 0))
    ImageDraw.Draw(label).text((60, 12), "Precision", fill="black", font=normal, anchor="mm")
    label = label.rotate(90, expand=True)
    img.paste(label, (8, int(top + ph / 2 - label.size[1] / 2)), label)
    d.text((left + pw / 2, 22), title, fill="black", font=big, anchor="mm")
    # points
    for pt in points:
        if any(math.isnan(v) for v in (pt.precision, pt.recall)):
            continue
        x, y = xy(pt.recall, pt.precision)
        base = pt.kind.split("-")[0]
        color = _COLORS.get(base, (90, 90, 90))
        pooled = pt.kind.endswith("pooled")
        r = 7 if pooled else 4
        box = [x - r, y - r, x + r, y + r]
        outline = "black" if pooled else color
        if base == "image":
            d.rectangle(box, fill=color, outline=outline, width=2 if pooled else 1)
        else:
            d.ellipse(box, fill=color, outline=outline, width=2 if pooled else 1)
        if not pooled and pt.label:
            d.text((x + 6, y - 6), pt.label, fill=color, font=small, anchor="ls")
    # legend
    lx, ly = right + 15, top + 10
    entries = [
        ("pixel", False, "pixel, per category"),
        ("image", False, "image, per category"),
        ("pixel", True, "pixel, pooled"),
        ("image", True, "image, pooled"),
    ]
    for base, pooled, text in entries:
        r = 7 if pooled else 4
        box = [lx, ly - r, lx + 2 * r, ly + r]
        color = _COLORS[base]
        outline = "black" if pooled else color
        if base == "image":
            d.rectangle(box, fill=color, outline=outline, width=2 if pooled else 1)
        else:
            d.ellipse(box, fill=color, outline=outline, width=2 if pooled else 1)
        d.text((lx + 20, ly), text, fill="black", font=small, anchor="lm")
        ly += 24
    d.text((lx, ly + 6), "one operating point", fill=(90, 90, 90), font=small, anchor="lm")
    d.text((lx, ly + 20), "each (no threshold)", fill=(90, 90, 90), font=small, anchor="lm")
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path
