"""What both runners (``run_mmad``, ``run_detection``) check and record around
:func:`~omniad_train.evaluation.execution.execute`: that something can be evaluated
before a model loads, that something was evaluated after, and the shared part of the
run's config."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from omniad_train.evaluation.execution import EvalResult, Item, parse_categories
from omniad_train.evaluation.model import RunModel

__all__ = ["check_evaluable", "check_evaluated", "subset_config"]


def check_evaluable(items: Sequence[Item], what: str) -> None:
    """Raise ValueError when no item can be evaluated, naming the readers' rejects.

    A run over folders the reader cannot use must not end as "0 images evaluated, 0
    skipped" with exit status 0: it fails before any model is loaded.
    """
    if any(i.record is not None for i in items):
        return
    if not items:
        raise ValueError(f"{what}: nothing to evaluate (no input matches the selection)")
    reasons = [f"{i.extra.get('image') or i.id}: {i.skip[1]}" for i in items if i.skip][:3]
    more = f" (and {len(items) - len(reasons)} more)" if len(items) > len(reasons) else ""
    raise ValueError(
        f"{what}: nothing can be evaluated, all {len(items)} inputs were rejected: "
        + " | ".join(reasons)
        + more
    )


def subset_config(
    chosen: RunModel,
    batch_size: int,
    limit: int | None,
    limit_per_category: int | None,
    categories: str | Sequence[str] | None,
) -> dict[str, Any]:
    """The part of a runner's ``run.json`` config that every runner has: the batch, the
    subset asked for and, for a served model, the requests in flight (which may change
    between calls, unlike the fingerprint)."""
    cats = parse_categories(categories)
    return {
        "batch_size": batch_size,
        **({"concurrency": chosen.concurrency} if chosen.concurrency else {}),
        "limit": limit,
        "limit_per_category": limit_per_category,
        "categories": sorted(cats) if cats else None,
    }


def check_evaluated(result: EvalResult, key: str, what: str) -> EvalResult:
    """Raise ValueError when a finished run evaluated nothing (every item was skipped;
    failed requests are not that: a re-run retries them)."""
    report = result.report or {}
    c = report.get("counts", {})
    failed = (report.get("failures") or {}).get("count", 0)
    if result.complete and c.get("lines") and not c.get(key) and not failed:
        raise ValueError(
            f"{what}: no item could be evaluated, all {c['lines']} were skipped; see the "
            f"skipped inputs in {result.report_md}"
        )
    return result
