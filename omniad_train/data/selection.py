"""Choosing a few images per category: the paper's SFT mix takes one example per category.

Records of one image stay together (all its questions are kept or none).  Within a
category the images are taken round-robin over the defect types (sorted by name, normal
images last), each type's images in a seeded order, so ``limit=1`` keeps one defect
image of each category, and ``limit = number of defect types + 1`` one image of each
type plus one normal image.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from omniad_train.data.cache import digest
from omniad_train.data.records import Record, Reject  # noqa: F401 (Record: the doctest)

__all__ = ["per_category"]


def per_category(items: Sequence[Any], limit: int | None, seed: int) -> tuple[list[Any], int]:
    """``items`` with at most ``limit`` images per ``(dataset, category)``, and the number
    of images left out; rejects are all kept, the order is unchanged.

    An item is a :class:`Record` (a question; the records of one image go together) or
    anything else with ``image_id``, ``dataset``, ``category``, ``anomalous`` and
    ``defect`` (an image before any question, :class:`~omniad_train.data.layouts.ImageItem`):
    the same images are chosen either way.

    >>> recs = [Record(id=f"{i}#0", image_id=str(i), image="x.png", question="Q?",
    ...         options={"A": "Yes", "B": "No"}, answer="A", type="Anomaly Discrimination",
    ...         category="c", anomalous=i > 0, defect="d" if i > 0 else "") for i in range(3)]
    >>> kept, left_out = per_category(recs, 1, seed=0)
    >>> [r.anomalous for r in kept], left_out
    ([True], 2)
    """
    if limit is None:
        return list(items), 0
    # (dataset, category) -> defect type -> image ids
    groups: dict[tuple[str, str], dict[tuple[int, str], list[str]]] = {}
    seen: set[str] = set()
    for it in items:
        if not isinstance(it, Reject) and it.image_id not in seen:
            seen.add(it.image_id)
            kind = (0, it.defect) if it.anomalous else (1, "")
            groups.setdefault((it.dataset, it.category), {}).setdefault(kind, []).append(
                it.image_id
            )
    keep: set[str] = set()
    for kinds in groups.values():
        queues = [
            sorted(ids, key=lambda i: (digest("per_category", seed, i), i))
            for _, ids in sorted(kinds.items())
        ]
        chosen: list[str] = []
        while len(chosen) < limit and any(queues):
            for q in queues:
                if q and len(chosen) < limit:
                    chosen.append(q.pop(0))
        keep.update(chosen)
    kept = [it for it in items if isinstance(it, Reject) or it.image_id in keep]
    return kept, len(seen) - len(keep)
