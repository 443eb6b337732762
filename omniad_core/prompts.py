"""Prompts of the OmniAD method: system prompt, questions with options, chat messages.

Messages follow the Hugging Face chat format with typed content, ready for a
Qwen2.5-VL processor's ``apply_chat_template``::

    [{"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]},
     {"role": "user", "content": [{"type": "image", "image": img},
                                  {"type": "text", "text": "Is there ...?\\nA: Yes\\nB: No"}]}]

In 1-shot mode a normal reference image of the same category comes first, followed by
:data:`REFERENCE_PREFIX`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "DEFECT_QUESTION",
    "REFERENCE_PREFIX",
    "SYSTEM_PROMPT",
    "Question",
    "build_messages",
    "format_question",
    "normalize_options",
    "split_images",
]

#: The paper's system prompt, verbatim (it writes closing tags as ``<\seg>``).
SYSTEM_PROMPT = (
    "You are a special assistant for analysis image. The user asks a question, and you "
    "answer with the option's letter from the given choices directly. Firstly, you should "
    "detect anomalies in patches within <seg>/<\\seg> tags. Then think about the reasoning "
    "process in the mind and then provide the user with the answer. The reasoning process "
    "and answer are enclosed within <think> /<\\think> and <answer> /<\\answer> tags, "
    "respectively, i.e., <seg>segmentation results here</seg><think> reasoning process "
    "here</think><answer> answer letter here</answer>"
)

#: Sentence after the normal reference image in 1-shot prompts.
REFERENCE_PREFIX = "This is an image of a normal object."

#: The standard anomaly-discrimination question.
DEFECT_QUESTION = "Is there any defect in the object?"

_LETTER = re.compile(r"^[A-Z]$")
OptionsLike = Mapping[str, str] | Sequence[str] | Sequence[tuple[str, str]]
Layout = Literal["lines", "inline"]


def normalize_options(options: Any) -> dict[str, str]:
    """Options as an ordered ``{letter: text}`` dict, with clear errors.

    Accepts a mapping, a sequence of ``(letter, text)`` pairs, or a sequence of texts
    (lettered A, B, C, ...).  Options whose text is None are left out (Hugging Face
    ``datasets`` pads dict columns that way).  Letters are single characters A-Z (lower case is
    upper-cased); texts are stripped and must not be empty.

    >>> normalize_options(["Yes", "No"])
    {'A': 'Yes', 'B': 'No'}
    >>> normalize_options({"a": " crack ", "b": "scratch"})
    {'A': 'crack', 'B': 'scratch'}
    >>> normalize_options([("A", "x"), ("A", "y")])
    Traceback (most recent call last):
    ...
    ValueError: duplicate option letter 'A'; each option needs its own letter
    """
    if isinstance(options, str):
        raise ValueError(
            f"options must be a mapping or a list, got the string {options!r}; pass e.g. "
            "{'A': 'Yes', 'B': 'No'} or ['Yes', 'No']"
        )
    if isinstance(options, Mapping):
        # None texts are dropped: Hugging Face datasets pads dict columns with None
        pairs = [(k, v) for k, v in options.items() if v is not None]
    else:
        items = list(options) if isinstance(options, Iterable) else None
        if items is None:
            raise ValueError(f"options must be a mapping or a list, got {type(options).__name__}")
        if all(isinstance(o, str) for o in items):
            if len(items) > 26:
                raise ValueError(f"at most 26 options are supported, got {len(items)}")
            pairs = [(chr(65 + k), o) for k, o in enumerate(items)]
        elif all(isinstance(o, (tuple, list)) and len(o) == 2 for o in items):
            pairs = [(o[0], o[1]) for o in items if o[1] is not None]
        else:
            raise ValueError(
                "options must be texts or (letter, text) pairs, got a mix: "
                f"{[type(o).__name__ for o in items][:5]}"
            )
    if not pairs:
        raise ValueError("options must not be empty; a multiple-choice question needs choices")
    out: dict[str, str] = {}
    for letter, text in pairs:
        if not isinstance(letter, str) or not _LETTER.match(letter.strip().upper()):
            raise ValueError(f"option letters must be single letters A-Z, got {letter!r}")
        key = letter.strip().upper()
        if key in out:
            raise ValueError(f"duplicate option letter {key!r}; each option needs its own letter")
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"option {key} has no text (got {text!r})")
        out[key] = text.strip()
    return out


def format_question(text: str, options: OptionsLike | None = None, layout: Layout = "lines") -> str:
    """The question as the user turn shows it.

    >>> print(format_question("Is there any defect in the object?", ["Yes", "No"]))
    Is there any defect in the object?
    A: Yes
    B: No
    >>> format_question("Which defect?", {"A": "crack", "B": "hole"}, layout="inline")
    'Which defect? A: crack B: hole'
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"the question text must be a non-empty string, got {text!r}")
    if options is None:
        return text.strip()
    opts = normalize_options(options)
    parts = [f"{k}: {v}" for k, v in opts.items()]
    if layout == "lines":
        return "\n".join([text.strip(), *parts])
    if layout == "inline":
        return " ".join([text.strip(), *parts])
    raise ValueError(f"layout must be 'lines' or 'inline', got {layout!r}")


class Question(BaseModel):
    """A multiple-choice question about an industrial image.

    Examples
    --------
    >>> q = Question(text="Is there any defect in the object?", options=["Yes", "No"],
    ...              answer="a", type="Anomaly Discrimination")
    >>> q.answer, q.options
    ('A', {'A': 'Yes', 'B': 'No'})
    >>> try:
    ...     Question(text="Which?", options=["x", "y"], answer="C")
    ... except ValueError as e:
    ...     print(e.errors()[0]["msg"])
    Value error, answer 'C' is not one of the option letters ['A', 'B']
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str = Field(min_length=1, description="The question, without options.")
    options: dict[str, str] = Field(description="Option letter -> option text, in order.")
    answer: str | None = Field(default=None, description="The correct letter, if known.")
    type: str | None = Field(default=None, description="Question type (MMAD's names).")
    category: str | None = None
    dataset: str | None = None
    image_path: str | None = None
    mask_path: str | None = None
    reference_paths: list[str] = Field(default_factory=list)

    @field_validator("text")
    @classmethod
    def _text(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("the question text is blank")
        return v.strip()

    @field_validator("options", mode="before")
    @classmethod
    def _options(cls, v: Any) -> dict[str, str]:
        return normalize_options(v)

    @field_validator("answer", mode="before")
    @classmethod
    def _answer(cls, v: Any) -> Any:
        return v.strip().upper() if isinstance(v, str) else v

    @model_validator(mode="after")
    def _answer_in_options(self) -> Question:
        if self.answer is not None and self.answer not in self.options:
            raise ValueError(
                f"answer {self.answer!r} is not one of the option letters {list(self.options)}"
            )
        return self

    def prompt(self, layout: Layout = "lines") -> str:
        """The user-turn text: question and options."""
        return format_question(self.text, self.options, layout)


def build_messages(
    question: Question | str,
    image: Any = None,
    *,
    options: OptionsLike | None = None,
    reference: Any = None,
    system_prompt: str | None = SYSTEM_PROMPT,
    layout: Layout = "lines",
) -> list[dict[str, Any]]:
    """Chat messages for one question, 0-shot or 1-shot.

    Parameters
    ----------
    question : Question or str
        The question; with a plain string, pass ``options`` too.
    image : PIL image, path, array or None
        The query image, placed in the image entry (``None`` leaves a bare
        ``{"type": "image"}`` placeholder, the form TRL datasets use with a separate
        ``images`` column).
    reference : image, or None
        A normal image of the same category for 1-shot prompts; it comes first, then
        :data:`REFERENCE_PREFIX`.  ``False``-y means 0-shot.
    system_prompt : str or None
        Defaults to the paper's prompt; ``None`` omits the system turn.
    layout : {"lines", "inline"}
        How options are shown.

    Examples
    --------
    >>> msgs = build_messages("Is there any defect in the object?", options=["Yes", "No"],
    ...                       reference="ref.png", image="query.png")
    >>> [m["role"] for m in msgs]
    ['system', 'user']
    >>> [c["type"] for c in msgs[1]["content"]]
    ['image', 'text', 'image', 'text']
    >>> msgs[1]["content"][1]["text"]
    'This is an image of a normal object.'
    """
    if isinstance(question, Question):
        text = (
            question.prompt(layout)
            if options is None
            else format_question(question.text, options, layout)
        )
    else:
        text = format_question(question, options, layout)
    content: list[dict[str, Any]] = []
    if reference is not None and reference is not False:
        content.append(_image_entry(reference))
        content.append({"type": "text", "text": REFERENCE_PREFIX})
    content.append(_image_entry(image))
    content.append({"type": "text", "text": text})
    messages: list[dict[str, Any]] = []
    if system_prompt:
        messages.append({"role": "system", "content": [{"type": "text", "text": system_prompt}]})
    messages.append({"role": "user", "content": content})
    return messages


def _image_entry(image: Any) -> dict[str, Any]:
    return {"type": "image"} if image is None else {"type": "image", "image": image}


def split_images(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[Any]]:
    """Move images out of messages: placeholders in the messages, images in a list.

    This is the layout TRL trainers expect (a ``prompt`` column and an ``images``
    column).

    >>> msgs, imgs = split_images(build_messages("Q?", "a.png", options=["x", "y"]))
    >>> imgs, msgs[1]["content"][0]
    (['a.png'], {'type': 'image'})
    """
    images: list[Any] = []
    out = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):
            new = []
            for c in content:
                if isinstance(c, dict) and c.get("type") == "image" and "image" in c:
                    images.append(c["image"])
                    new.append({"type": "image"})
                else:
                    new.append(c)
            out.append({**m, "content": new})
        else:
            out.append(m)
    return out, images
