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
    "failures_summary",
    "report_config",
    "run_state",
    "served_summary",
    "skipped_summary",
    "state_text",
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


def failures_summary(lines: Iterable[dict[str, Any]]) -> tuple[dict[str, Any], str]:
    """Requests that failed after their last retry (``status: "failed"``) and a Markdown
    section listing them; empty text when there are none.

    They are neither answers nor unanswerable responses: they are not scored, the run
    is incomplete until a re-run of the same command has retried them.
    """
    failed = [
        {
            "id": d["id"],
            "reason": d.get("reason", ""),
            "dataset": d.get("dataset", ""),
            "category": d.get("category", ""),
        }
        for d in lines
        if d.get("status") == "failed"
    ]
    out = {"count": len(failed), "items": failed}
    if not failed:
        return out, ""
    md = [
        f"## Failed requests ({len(failed)})",
        "",
        "These requests failed after their last retry (the server was down, overloaded or "
        "refused them). They are not scored, and are not counted as unanswerable: re-run "
        "the same command to retry only them.",
        "",
        "| Reason | Count |",
        "|---|--:|",
    ]
    md += [f"| {_show(r)} | {c} |" for r, c in Counter(f["reason"] for f in failed).most_common(10)]
    md += ["", "| Item | Reason |", "|---|---|"]
    md += [f"| `{f['id']}` | {_show(f['reason'])} |" for f in failed[:SKIP_LIST_LIMIT]]
    if len(failed) > SKIP_LIST_LIMIT:
        md.append(f"\n... and {len(failed) - SKIP_LIST_LIMIT} more (all are in report.json).")
    return out, "\n".join(md) + "\n"


def served_summary(lines: Iterable[dict[str, Any]]) -> tuple[dict[str, Any] | None, str]:
    """Token counts of a served model's answers and the responses whose ``<seg>`` the
    server dropped (None and no text for an in-process run)."""
    served = [d for d in lines if d.get("status") == "ok" and isinstance(d.get("served"), dict)]
    if not served:
        return None, ""
    stripped = [d["id"] for d in served if d.get("seg_stripped")]
    split = sum(1 for d in served if d["served"].get("reasoning_content"))
    tokens = [d["served"].get("completion_tokens") for d in served]
    cut = sum(1 for d in served if d["served"].get("finish_reason") == "length")
    out = {
        "answers": len(served),
        "completion_tokens": sum(t for t in tokens if isinstance(t, int)),
        "split_by_server": split,
        "cut_at_max_tokens": cut,
        "seg_stripped": len(stripped),
        "seg_stripped_items": stripped[:SKIP_LIST_LIMIT],
    }
    md = [
        "## Served model",
        "",
        f"{len(served)} answers from the endpoint, {out['completion_tokens']} generated tokens; "
        f"{split} replies split by the server into reasoning_content and content (rebuilt), "
        f"{cut} cut at the token budget.",
    ]
    if stripped:
        problem = next(d.get("seg_problem") for d in served if d.get("seg_stripped"))
        md += [
            "",
            f"**{len(stripped)} responses came back without their `<seg>` block**: their masks "
            f"are lost and pixel figures count them as empty masks. {problem}",
        ]
    return out, "\n".join(md) + "\n"


def run_state(status: dict[str, Any], n_failed: int) -> str:
    """``complete``, ``incomplete_with_failures`` or ``incomplete`` (shards missing)."""
    if not status.get("complete"):
        return "incomplete"
    return "incomplete_with_failures" if n_failed else "complete"


def state_text(status: dict[str, Any], n_failed: int) -> str:
    """What a report's summary line adds for an incomplete run (empty when complete)."""
    parts = []
    if not status.get("complete"):
        parts.append(f"INCOMPLETE (shards {status['missing_shards']} missing)")
    if n_failed:
        parts.append(
            f"INCOMPLETE WITH FAILURES: {n_failed} requests failed after their last retry "
            "(not scored; re-run the same command to retry them)"
        )
    return "".join(f"; {p}" for p in parts)


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
