"""The records the readers yield: one multiple-choice question about one image, or a reject.

A :class:`Record` is source-independent: MMAD's ``mmad.json``, MVTec-style folders and
the generic JSONL all become records, so preparation, training and evaluation code
handle one type.  A :class:`Reject` names a bad input and the fix; readers yield it
instead of raising, so one bad file never stops a run.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from omniad_core.metrics import MMAD_TYPES, normalize_question_type
from omniad_core.prompts import normalize_options

__all__ = ["MaskInfo", "Record", "Reject", "make_record"]

_TAG = re.compile(r"<\s*[/\\]?\s*(seg|think|answer)\s*>", re.IGNORECASE)


class Record(BaseModel):
    """One multiple-choice question about one image.

    Paths are strings as the reader resolved them (absolute when the source was given
    as an absolute path).  ``mask`` is a mask file or a folder of masks to be united
    (MVTec LOCO); it is None for a normal image.

    Examples
    --------
    >>> r = Record(id="x#0", image_id="x", image="a.png", question="Is there any defect?",
    ...            options={"A": "Yes", "B": "No"}, answer="B", type="Anomaly Discrimination")
    >>> r.anomalous, r.reference
    (False, [])
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, description="Unique and stable across runs.")
    image_id: str = Field(min_length=1, description="Identity of the image (splits group by it).")
    image: str = Field(min_length=1, description="Path of the query image.")
    mask: str | None = Field(default=None, description="Mask file or folder; None: normal.")
    anomalous: bool = Field(default=False, description="The image shows a defect.")
    question: str = Field(min_length=1, description="The question text, without options.")
    options: dict[str, str] = Field(description="Option letter -> text, in order.")
    answer: str = Field(description="The correct option letter.")
    type: str = Field(description="One of the 7 MMAD question types.")
    category: str = ""
    dataset: str = ""
    reasoning: str | None = Field(default=None, description="Reasoning text for SFT, if any.")
    reference: list[str] = Field(
        default_factory=list, description="Normal reference images; 1-shot uses the first."
    )
    source: str = Field(default="", description="The reader: mmad, mvtec or jsonl.")


class Reject(BaseModel):
    """A bad input record: where it came from and what to do about it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str = Field(description="The reader or step: mmad, mvtec, jsonl, prepare.")
    record: str = Field(description="The record's path or id.")
    reason: str = Field(description="A sentence naming the problem and the fix.")


class MaskInfo(BaseModel):
    """What the reasoning templates and location questions need to know about a mask.

    Fractions are of the image height / width; ``centroid`` is ``(y, x)`` in [0, 1].
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    height: int
    width: int
    area: float = Field(description="Fraction of anomalous pixels.")
    centroid: tuple[float, float] | None = None
    bbox: tuple[float, float, float, float] | None = Field(
        default=None, description="(top, left, bottom, right) as fractions."
    )
    components: int = Field(default=0, description="Separate regions (8-connected, coarse).")
    region: str | None = Field(default=None, description="3x3 region name of the centroid.")
    shape: str | None = Field(default=None, description="Shape words, e.g. 'a small spot'.")

    @property
    def empty(self) -> bool:
        return self.area == 0.0


def make_record(source: str, where: str, **fields: Any) -> Record | Reject:
    """A :class:`Record` from raw fields, or a :class:`Reject` whose reason says what to fix.

    ``options`` may be a mapping, a list of texts or ``(letter, text)`` pairs; ``type`` a
    raw MMAD name ("Object Structure" counts as Object Analysis); ``answer`` any case.

    >>> make_record("jsonl", "line 3", id="a", image_id="a", image="x.png", question="Q?",
    ...             options=["Yes", "No"], answer="C", type="Anomaly Discrimination").reason
    "answer 'C' is not one of the option letters A, B; set the answer to one of them"
    """
    question = fields.get("question")
    if not isinstance(question, str) or not question.strip():
        return Reject(
            source=source, record=where, reason="the question text is empty; add the question"
        )
    fields["question"] = question.strip()
    opts = fields.get("options")
    if opts is None or (hasattr(opts, "__len__") and len(opts) == 0):
        return Reject(
            source=source,
            record=where,
            reason="the question has no options; a multiple-choice question needs options "
            'such as {"A": "Yes", "B": "No"}',
        )
    try:
        options = normalize_options(opts)
    except ValueError as exc:
        return Reject(source=source, record=where, reason=f"bad options: {exc}")
    fields["options"] = options
    answer = fields.get("answer")
    letter = answer.strip().upper() if isinstance(answer, str) else None
    if letter not in options:
        return Reject(
            source=source,
            record=where,
            reason=f"answer {answer!r} is not one of the option letters {', '.join(options)}; "
            "set the answer to one of them",
        )
    fields["answer"] = letter
    raw_type = fields.get("type")
    try:
        fields["type"] = normalize_question_type(raw_type)
    except (TypeError, ValueError):
        return Reject(
            source=source,
            record=where,
            reason=f"unknown question type {raw_type!r}; use one of the 7 MMAD types "
            f"({', '.join(MMAD_TYPES)}) or MMAD's raw names (Anomaly Detection, "
            "Object Structure, Object Details)",
        )
    reasoning = fields.get("reasoning")
    if isinstance(reasoning, str):
        reasoning = reasoning.strip() or None
        fields["reasoning"] = reasoning
    if reasoning is not None and _TAG.search(reasoning):
        return Reject(
            source=source,
            record=where,
            reason="the reasoning contains <seg>/<think>/<answer> tags, which would break the "
            "response format; give the reasoning as plain text",
        )
    try:
        return Record(source=source, **fields)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err.get("loc", ())) or "record"
        return Reject(
            source=source, record=where, reason=f"invalid field {loc}: {err['msg']}; fix it"
        )
