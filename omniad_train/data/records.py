"""The records the readers yield: one multiple-choice question about one image, or a reject.

A :class:`Record` is source-independent: MMAD's ``mmad.json``, MVTec-style folders and
the generic JSONL all become records, so preparation, training and evaluation code
handle one type.  A :class:`Reject` names a bad input and the fix; readers yield it
instead of raising, so one bad file never stops a run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from omniad_core.metrics import MMAD_TYPES, normalize_question_type
from omniad_core.prompts import normalize_options
from omniad_core.tags import has_tag

__all__ = [
    "FIELD_KINDS",
    "QUESTION_SOURCES",
    "MaskInfo",
    "Record",
    "Reject",
    "describe_value",
    "field_problem",
    "make_record",
    "safe_text",
    "wrong_type",
]


def safe_text(text: str) -> str:
    """``text`` made writable as UTF-8: lone surrogates (from undecodable file names or
    JSON ``\\udcxx`` escapes) become backslash escapes.

    >>> safe_text("ok"), safe_text("bad\\udcff")
    ('ok', 'bad\\\\udcff')
    """
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def describe_value(value: Any) -> str:
    """What a JSON value is, for error messages: ``the number 5``, ``a list``, ...

    >>> describe_value(5), describe_value(None), describe_value([1]), describe_value("x")
    ('the number 5', 'null', 'a list', "the text 'x'")
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        shown = value if len(value) <= 60 else value[:57] + "..."
        return f"the text {safe_text(shown)!r}"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


def wrong_type(field: str, expected: str, value: Any) -> str:
    """The reason of a field of the wrong type: what was expected, what came, the fix.

    >>> wrong_type('"reasoning"', "a text or null", 5)
    '"reasoning" must be a text or null, got the number 5; fix that field'
    """
    return f"{field} must be {expected}, got {describe_value(value)}; fix that field"


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _texts(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


#: The kinds of value a field of a data file may hold: name -> (what it is, test).
FIELD_KINDS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "text": ("a text", lambda v: isinstance(v, str)),
    "bool": ("true or false", lambda v: isinstance(v, bool)),
    "list": ("a list", lambda v: isinstance(v, list)),
    "texts": ("a list of texts (paths)", _texts),
    "path or paths": ("a path or a list of paths", lambda v: isinstance(v, str) or _texts(v)),
    "options": (
        'an object such as {"A": "Yes", "B": "No"} or a list of texts',
        lambda v: isinstance(v, (dict, list)),
    ),
    "id": ("a text or an integer", lambda v: isinstance(v, str) or _is_int(v)),
}


def field_problem(obj: Mapping[str, Any], spec: Mapping[str, str]) -> str | None:
    """The reason for the first field of ``obj`` of the wrong kind, or None.

    ``spec`` maps field names to kinds of :data:`FIELD_KINDS`; absent fields and
    ``null`` pass (whether a field is required is checked elsewhere).

    >>> field_problem({"reasoning": 5}, {"reasoning": "text"})
    '"reasoning" must be a text, got the number 5; fix that field'
    >>> field_problem({"reasoning": None, "id": 3}, {"reasoning": "text", "id": "id"}) is None
    True
    """
    for name, kind in spec.items():
        value = obj.get(name)
        if value is None:
            continue
        expected, ok = FIELD_KINDS[kind]
        if not ok(value):
            return wrong_type(f'"{name}"', expected, value)
    return None


def _unencodable(value: Any, where: str) -> str | None:
    """The name of the first string in ``value`` that is not valid UTF-8 text, or None."""
    if isinstance(value, str):
        return None if safe_text(value) is value else where
    if isinstance(value, dict):
        for k, v in value.items():
            bad = _unencodable(k, where) or _unencodable(v, f"{where}.{k}")
            if bad:
                return bad
    elif isinstance(value, (list, tuple)):
        for k, v in enumerate(value):
            bad = _unencodable(v, f"{where}[{k}]")
            if bad:
                return bad
    return None


#: Who may have written a record's question (:attr:`Record.question_source`).
QUESTION_SOURCES = ("dataset", "template", "teacher")


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
    defect: str = Field(default="", description="The defect-type name (folder), if known.")
    question_source: Literal["dataset", "template", "teacher"] = Field(
        default="dataset",
        description="Who wrote the question: dataset (the source file), template or teacher.",
    )


class Reject(BaseModel):
    """A bad input record: where it came from and what to do about it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str = Field(description="The reader or step: mmad, mvtec, jsonl, prepare.")
    record: str = Field(description="The record's path or id.")
    reason: str = Field(description="A sentence naming the problem and the fix.")

    @field_validator("source", "record", "reason", mode="after")
    @classmethod
    def _writable(cls, value: str) -> str:
        return safe_text(value)  # a reject must always be writable to rejects.jsonl


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
    if question is not None and not isinstance(question, str):
        return Reject(
            source=source, record=where, reason=wrong_type("the question", "a text", question)
        )
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
    except (TypeError, ValueError) as exc:
        return Reject(source=source, record=where, reason=f"bad options: {exc}")
    fields["options"] = options
    answer = fields.get("answer")
    if answer is not None and not isinstance(answer, str):
        return Reject(
            source=source,
            record=where,
            reason=wrong_type("the answer", f"an option letter ({', '.join(options)})", answer),
        )
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
    if raw_type is not None and not isinstance(raw_type, str):
        return Reject(
            source=source,
            record=where,
            reason=wrong_type("the question type", "one of the 7 MMAD type names", raw_type),
        )
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
    if reasoning is not None and not isinstance(reasoning, str):
        return Reject(
            source=source,
            record=where,
            reason=wrong_type("the reasoning", "a text or absent", reasoning),
        )
    if isinstance(reasoning, str):
        reasoning = reasoning.strip() or None
        fields["reasoning"] = reasoning
    if reasoning is not None and has_tag(reasoning):
        return Reject(
            source=source,
            record=where,
            reason="the reasoning contains <seg>/<think>/<answer> tags, which would break the "
            "response format; give the reasoning as plain text",
        )
    for name, value in fields.items():
        bad = _unencodable(value, name)
        if bad is not None:
            return Reject(
                source=source,
                record=where,
                reason=f"the field {bad} is not valid UTF-8 text (it holds an undecodable "
                "character, e.g. from a file name in another encoding); rename the file or "
                "fix the text",
            )
    try:
        return Record(source=source, **fields)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err.get("loc", ())) or "record"
        return Reject(
            source=source, record=where, reason=f"invalid field {loc}: {err['msg']}; fix it"
        )
