"""``iter_mvtec``: records from image folders (MVTec-style, MVTec 3D-AD, VisA original).

The folders are listed by :func:`~omniad_train.data.layouts.iter_images`; the questions
are written by :class:`~omniad_train.data.templates.TemplateWriter` and by any further
:class:`~omniad_train.data.templates.QuestionWriter` (e.g. a teacher model).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from omniad_train.data.layouts import ImageItem, iter_images
from omniad_train.data.records import MaskInfo, Record, Reject, make_record
from omniad_train.data.templates import (
    DatasetFacts,
    QuestionWriter,
    TemplateWriter,
    parse_question_types,
)

__all__ = ["iter_mvtec", "resolve_types"]

#: What the reader wrote before all template types existed (its default, kept).
_LEGACY = ("Anomaly Discrimination", "Defect Localization")


def resolve_types(
    question_types: str | Sequence[str] | None, location_questions: bool, default: Sequence[str]
) -> tuple[str, ...]:
    """The template types to write: ``question_types`` (None: ``default``), without
    Defect Localization when ``location_questions`` is False.

    >>> resolve_types(None, False, ("Anomaly Discrimination", "Defect Localization"))
    ('Anomaly Discrimination',)
    """
    types = parse_question_types(default if question_types is None else question_types)
    if not location_questions:
        types = tuple(t for t in types if t != "Defect Localization")
    return types


def iter_mvtec(
    root: str | os.PathLike[str],
    *,
    dataset: str | None = None,
    location_questions: bool = True,
    seed: int = 0,
    include_train_good: bool = False,
    mask_info: Callable[[str], MaskInfo] | None = None,
    question_types: str | Sequence[str] | None = None,
    layout: str = "auto",
    writers: Sequence[QuestionWriter] = (),
    notes: list[dict[str, Any]] | None = None,
    select: Callable[[list[Any]], list[Any]] | None = None,
) -> Iterator[Record | Reject]:
    """Records from a folder dataset (MVTec AD / VisA / LOCO / GoodsAD in MVTec layout,
    MVTec 3D-AD, VisA's original layout; see :data:`~omniad_train.data.layouts.LAYOUTS`).

    ``root`` holds category folders or is one.  Every test image gets the template
    questions of ``question_types`` (default: Anomaly Discrimination, plus Defect
    Localization for defect images unless ``location_questions`` is False; see
    :mod:`omniad_train.data.templates` for all five types), then those of ``writers``.
    ``reference`` is one normal training image of the category, chosen by ``seed``.

    Every defect image needs a mask that is readable and not empty: an image without
    one is a :class:`Reject` (one per image, whatever the question types; see
    :func:`~omniad_train.data.masks.defect_mask_problem`), so ``prepare`` and the
    detection evaluation list the same images.  A folder holding no image the reader
    recognises is a reject naming it and the layouts expected.  Images, masks and
    references must resolve (symlinks followed) inside ``root``.

    ``mask_info(path)`` describes a mask (default: read it); ``prepare`` passes a cached
    version.  ``dataset`` defaults to the name of the folder holding the categories.
    Questions a type cannot have (Defect Classification in a category with one defect
    type, Object Classification in a dataset of one category) are appended to ``notes``
    with the reason, when a list is given.

    ``select`` chooses images before ``writers`` are asked about any (e.g. ``prepare``'s
    ``max_per_category``: :func:`~omniad_train.data.selection.per_category`), so a
    teacher model is never asked about an image that is then left out.  Without writers
    it gets the template records of every image (an image no template question is
    about cannot be chosen, as before); with writers it gets the images themselves,
    since a writer may write about any of them.  It returns the items to keep; a
    left-out image's template rejects are kept.
    """
    types = resolve_types(question_types, location_questions, _LEGACY)
    items = list(
        iter_images(
            root,
            dataset=dataset,
            layout=layout,
            seed=seed,
            include_train_good=include_train_good,
            mask_info=mask_info,
        )
    )
    named = next((it.dataset for it in items if isinstance(it, ImageItem)), dataset or "")
    facts = DatasetFacts.of(named, items)
    chain: list[QuestionWriter] = [TemplateWriter(types, seed=seed), *writers]
    if notes is not None:
        for w in chain:
            notes.extend(w.notes(facts))
    images = [it for it in items if isinstance(it, ImageItem)]
    own = {it.image_id: list(chain[0].write(it, facts)) for it in images}  # templates: cheap
    asked = set(own)
    if select is not None:
        pool = images if writers else [r for it in images for r in own[it.image_id]]
        asked = {r.image_id for r in select(pool) if not isinstance(r, Reject)}
    for w in writers:  # a teacher asks its endpoint about every image at once, concurrently
        if hasattr(w, "prefetch"):
            w.prefetch([it for it in images if it.image_id in asked], facts)
    for it in items:
        if isinstance(it, Reject):
            yield it
        elif it.image_id not in asked:
            yield from (r for r in own[it.image_id] if isinstance(r, Reject))
        else:
            yield from own[it.image_id]
            for w in chain[1:]:
                for r in w.write(it, facts):
                    yield _checked(r)


def _checked(r: Record | Reject) -> Record | Reject:
    """A record of another writer, checked as every reader's records are (options,
    answer letter, type, no response tags in the reasoning, UTF-8)."""
    if isinstance(r, Reject):
        return r
    fields = r.model_dump()
    return make_record(fields.pop("source") or "mvtec", r.id, **fields)
