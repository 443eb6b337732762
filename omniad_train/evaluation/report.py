"""Report pieces shared by the runners: configuration, skipped inputs, timing, files.

The precision / recall picture of a detection report is drawn by
:func:`omniad_train.plots.draw_pr_points` (re-exported here with :class:`PRPoint`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from omniad_train.evaluation.runfiles import json_safe, now, package_versions, write_json
from omniad_train.evaluation.runlog import atomic_write_text
from omniad_train.plots import PRPoint, draw_pr_points

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
