"""Template questions about folder images: every MMAD type the folder structure answers.

From an image, its mask, its category name and its defect-folder name alone, the
:class:`TemplateWriter` writes, correct by construction:

===========================  ==============================================  ===========
type                         answer from                                      images
===========================  ==============================================  ===========
Anomaly Discrimination       the folder (``good`` or a defect folder)         all
Defect Classification        the defect-folder name                           defect
Defect Localization          the 3 x 3 region of the mask's centroid          defect
Defect Description           size and form of the mask, and the defect name   defect
Object Classification        the category-folder name                         all
===========================  ==============================================  ===========

Distractors come from the same dataset (other defect types of the category, then of
other categories; other categories; other regions; other size and form words), options
never hold a text twice, and the gold letter is placed by a seeded shuffle.  Defect
Classification needs a category with 2 or more defect types and Object Classification a
dataset with 2 or more categories; otherwise the type is skipped and the reason noted
(:meth:`TemplateWriter.notes`, stored in ``manifest.json``).  Defect Analysis and
Object Analysis need knowledge the folders do not hold (a teacher model writes them).

Question writers share one interface, :class:`QuestionWriter`: a teacher writer can
add its records (``question_source="teacher"``, with a reasoning) next to these.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from omniad_core.metrics import MMAD_TYPES, normalize_question_type
from omniad_core.prompts import DEFECT_QUESTION
from omniad_train.data.layouts import ImageItem
from omniad_train.data.reasoning import (
    FORMS,
    LOCATION_QUESTION,
    SIZES,
    choice_options,
    form_word,
    location_question,
    shuffled,
    size_word,
)
from omniad_train.data.records import MaskInfo, Record, Reject, make_record

__all__ = [
    "CLASSIFICATION_QUESTION",
    "DESCRIPTION_QUESTION",
    "OBJECT_QUESTION",
    "TEMPLATE_TYPES",
    "DatasetFacts",
    "QuestionWriter",
    "TemplateWriter",
    "defect_description",
    "display_name",
    "parse_question_types",
]

CLASSIFICATION_QUESTION = "There is a defect in the object. What is the type of the defect?"
DESCRIPTION_QUESTION = "There is a defect in the object. What does the defect look like?"
OBJECT_QUESTION = "What kind of product is shown in the image?"

#: The MMAD types the template path writes, in MMAD's order.
TEMPLATE_TYPES = (
    "Anomaly Discrimination",
    "Defect Classification",
    "Defect Localization",
    "Defect Description",
    "Object Classification",
)
#: The id suffix of each template type (``#defect`` and ``#location`` as before).
SUFFIXES = {
    "Anomaly Discrimination": "defect",
    "Defect Classification": "classification",
    "Defect Localization": "location",
    "Defect Description": "description",
    "Object Classification": "object",
}
#: Defect-folder names that name no defect type (the description then says "defect").
_GENERIC = {"anomaly", "anomalies", "defect", "defects", "defective", "bad", "ng", "abnormal"}


def parse_question_types(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """The template types asked for, in MMAD's order (None: all of :data:`TEMPLATE_TYPES`).

    Accepts a comma-separated text or a list; MMAD's raw names count.

    >>> parse_question_types("defect localization, Anomaly Detection")
    ('Anomaly Discrimination', 'Defect Localization')

    Raises
    ------
    ValueError
        For an unknown name, a type the templates cannot write, or an empty selection.
    """
    if value is None:
        return TEMPLATE_TYPES
    names = value.split(",") if isinstance(value, str) else list(value)
    chosen = set()
    for name in names:
        if not isinstance(name, str) or not name.strip():
            continue
        try:
            t = normalize_question_type(name.strip())
        except (TypeError, ValueError):
            raise ValueError(
                f"unknown question type {name.strip()!r}; choose from {', '.join(TEMPLATE_TYPES)}"
            ) from None
        if t not in TEMPLATE_TYPES:
            raise ValueError(
                f"{t} questions need knowledge the folders do not hold (a teacher model writes "
                f"them); the template path writes {', '.join(TEMPLATE_TYPES)}"
            )
        chosen.add(t)
    if not chosen:
        raise ValueError(f"no question type given; choose from {', '.join(TEMPLATE_TYPES)}")
    return tuple(t for t in MMAD_TYPES if t in chosen)


def display_name(folder: str) -> str:
    """A folder name as option text: ``metal_nut`` -> ``metal nut``.

    >>> display_name("broken_large"), display_name("pcb-1")
    ('broken large', 'pcb 1')
    """
    return " ".join(folder.replace("_", " ").replace("-", " ").split()) or folder


def _noun(defect: str) -> str:
    name = display_name(defect)
    return "defect" if name.casefold() in _GENERIC or not name else f"{name} defect"


def defect_description(size: str, form: str, defect: str) -> str:
    """The option text of a Defect Description: size and form words and the defect name.

    >>> defect_description("tiny", "elongated", "scratch")
    'a tiny, elongated scratch defect'
    >>> defect_description("large", "compact", "anomaly")
    'a large, compact defect'
    """
    return f"a {size}, {form} {_noun(defect)}"


@dataclass(frozen=True)
class DatasetFacts:
    """What one folder dataset holds: its categories and their defect-folder names."""

    dataset: str
    defects: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def of(cls, dataset: str, items: Iterable[ImageItem | Reject]) -> DatasetFacts:
        found: dict[str, set[str]] = {}
        for it in items:
            if isinstance(it, ImageItem):
                kinds = found.setdefault(it.category, set())
                if it.anomalous and it.defect:
                    kinds.add(it.defect)
        return cls(dataset, {c: tuple(sorted(d)) for c, d in sorted(found.items())})

    @property
    def categories(self) -> tuple[str, ...]:
        return tuple(self.defects)


class QuestionWriter(Protocol):
    """Writes records about the images of a folder dataset.

    ``name`` and ``version`` identify the writer in ``manifest.json`` and in the work
    folder's keys (a new version redoes its rows).  ``write`` returns the records (and
    rejects, e.g. of an invalid teacher answer) of one image; ``notes`` says which
    questions were not written and why (one dict per dataset, category and type).
    """

    name: str
    version: str

    def write(self, item: ImageItem, facts: DatasetFacts) -> Iterable[Record | Reject]: ...

    def notes(self, facts: DatasetFacts) -> list[dict[str, Any]]: ...


class TemplateWriter:
    """The template questions of :data:`TEMPLATE_TYPES` (see the module docstring).

    Parameters
    ----------
    types : sequence of str
        The types to write (see :func:`parse_question_types`).
    seed : int
        Seeds the distractors and the option order (with the image id).
    """

    name = "template"
    version = "1"

    def __init__(self, types: Sequence[str] = TEMPLATE_TYPES, *, seed: int = 0) -> None:
        self.types = parse_question_types(types)
        self.seed = seed

    def notes(self, facts: DatasetFacts) -> list[dict[str, Any]]:
        out = []
        if "Object Classification" in self.types and len(facts.categories) == 1:
            out.append(
                _note(
                    facts,
                    "",
                    "Object Classification",
                    "the dataset has 1 category; it needs 2 or more to draw distractors from "
                    "(give a folder that holds several categories)",
                )
            )
        if "Defect Classification" in self.types:
            for cat, defects in facts.defects.items():
                if len(defects) < 2:
                    named = f" ({defects[0]})" if defects else ""
                    out.append(
                        _note(
                            facts,
                            cat,
                            "Defect Classification",
                            f"the category has {len(defects)} defect type{named}; it needs 2 or "
                            "more defect folders",
                        )
                    )
        return out

    def write(self, item: ImageItem, facts: DatasetFacts) -> list[Record | Reject]:
        out: list[Record | Reject] = []
        for t in self.types:
            q = self._question(t, item, facts)
            if q is None:
                continue
            question, options, answer = q
            suffix = SUFFIXES[t]
            out.append(
                make_record(
                    "mvtec",
                    item.rel if suffix == "defect" else f"{item.rel}#{suffix}",
                    id=f"{item.image_id}#{suffix}",
                    image_id=item.image_id,
                    image=item.image,
                    mask=item.mask,
                    anomalous=item.anomalous,
                    question=question,
                    options=options,
                    answer=answer,
                    type=t,
                    category=item.category,
                    dataset=item.dataset,
                    defect=item.defect,
                    reference=item.reference,
                    question_source="template",
                )
            )
        return out

    def _question(
        self, t: str, item: ImageItem, facts: DatasetFacts
    ) -> tuple[str, dict[str, str], str] | None:
        key = item.image_id
        if t == "Anomaly Discrimination":
            return DEFECT_QUESTION, {"A": "Yes", "B": "No"}, "A" if item.anomalous else "B"
        if t == "Object Classification":
            if len(facts.categories) < 2:
                return None
            others = [display_name(c) for c in facts.categories if c != item.category]
            opts, gold = choice_options(
                display_name(item.category),
                shuffled(others, seed=self.seed, key=key, tag="object-pool"),
                seed=self.seed,
                key=key,
                tag="object",
            )
            return OBJECT_QUESTION, opts, gold
        info = item.info
        if not item.anomalous or info is None or info.empty or info.region is None:
            return None
        if t == "Defect Localization":
            opts, gold = location_question(info.region, seed=self.seed, key=key)
            return LOCATION_QUESTION, opts, gold
        own, other = self._other_defects(item, facts)
        if t == "Defect Classification":
            if len(facts.defects.get(item.category, ())) < 2:
                return None
            opts, gold = choice_options(
                display_name(item.defect), own + other, seed=self.seed, key=key, tag="class"
            )
            return CLASSIFICATION_QUESTION, opts, gold
        if t == "Defect Description":
            opts, gold = choice_options(
                *self._descriptions(info, item.defect, own + other, key),
                seed=self.seed,
                key=key,
                tag="description",
            )
            return DESCRIPTION_QUESTION, opts, gold
        raise ValueError(f"the template path cannot write {t} questions")

    def _other_defects(self, item: ImageItem, facts: DatasetFacts) -> tuple[list[str], list[str]]:
        """Other defect names (as shown): of the category, then of the other categories."""
        mine = display_name(item.defect).casefold()
        own = [display_name(d) for d in facts.defects.get(item.category, ()) if d != item.defect]
        rest = [
            display_name(d) for c, ds in facts.defects.items() if c != item.category for d in ds
        ]
        s, k = self.seed, item.image_id
        own = [d for d in shuffled(own, seed=s, key=k, tag="defects-own") if d.casefold() != mine]
        rest = [
            d for d in shuffled(rest, seed=s, key=k, tag="defects-other") if d.casefold() != mine
        ]
        return own, rest

    def _descriptions(
        self, info: MaskInfo, defect: str, others: list[str], key: str
    ) -> tuple[str, list[str]]:
        """The true description and distractors: one with another size, one with another
        form, one with another defect name (when the dataset has one), then the rest."""
        size, form = size_word(info.area), form_word(info)
        answer = defect_description(size, form, defect)
        others = [o for o in others if o.casefold() not in _GENERIC]  # "defect" is always true
        s = self.seed
        sizes = shuffled([x for x in SIZES if x != size], seed=s, key=key, tag="desc-size")
        forms = shuffled([x for x in FORMS if x != form], seed=s, key=key, tag="desc-form")
        first = [
            defect_description(sizes[0], form, defect),
            defect_description(size, forms[0], defect),
        ]
        if others:
            first.append(defect_description(size, form, others[0]))
        rest = [defect_description(a, b, defect) for a in sizes for b in forms]
        return answer, first + shuffled(rest, seed=s, key=key, tag="desc-rest")


def _note(facts: DatasetFacts, category: str, type_: str, reason: str) -> dict[str, Any]:
    return {"dataset": facts.dataset, "category": category, "type": type_, "reason": reason}
