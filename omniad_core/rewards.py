"""The three OmniAD rewards as TRL-style reward functions, usable from any RL framework.

A reward is called as ``reward(completions, **columns) -> list[float | None]``:
``completions`` holds strings or conversational message lists
(``[{"role": "assistant", "content": text}]``), and every dataset column arrives as a
keyword list with one entry per completion (TRL repeats a prompt's columns for each
of its generations).  ``None`` excludes a sample from that reward.  Rewards are
instances of small classes, so they pickle (for multiprocessing and Ray) and carry a
``__name__`` that TRL uses for its metric names.

A malformed batch is a caller bug and raises at once, naming the reward, the argument,
the index, what was expected and what came: a completion that is neither a string nor
a message list with an assistant message whose content is text (``TypeError``, or
``ValueError`` when the list has no assistant message), a column that is not a list or
whose length differs from the completions' (``TypeError`` / ``ValueError``), an entry of
a wrong type or value (``TypeError`` / ``ValueError``).  A reward returns ``None`` only
for the samples it documents as skipped: a ``None`` ground-truth mask
(:class:`DetectionReward`) or gold letter (:class:`AnswerReward`).  The checks are a few
``isinstance`` tests per sample, nothing that grows with the texts.

- :class:`FormatReward` (``format_reward``): 1.0 when the strict format holds, else 0.0.
- :class:`DetectionReward` (``detection_reward``): the paper's three cases with
  ``alpha * F1``; the ground truth comes from a mask column holding arrays, mask file
  paths, canonical seg texts, or ``""`` for a normal image.
- :class:`AnswerReward` (``answer_reward``): 1.0 for the gold letter, 0.1 otherwise.

>>> rewards = make_rewards()
>>> [r.__name__ for r in rewards]
['format_reward', 'detection_reward', 'answer_reward']
>>> done = "<seg>(1, 1)</seg><think>A spot.</think><answer>B</answer>"
>>> [r([done], mask=["(1, 1)"], answer=["B"], options=[["No", "Yes"]]) for r in rewards]
[[1.0], [2.0], [1.0]]
"""

from __future__ import annotations

import json
import numbers
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import textmask
from omniad_core.images import load_mask, looks_like_mask_path
from omniad_core.parsing import block_text, parse_response, read_answer

__all__ = [
    "AnswerReward",
    "DetectionReward",
    "FormatReward",
    "completion_text",
    "completion_texts",
    "make_rewards",
]


def completion_text(completion: Any) -> str:
    """The text of a completion: a string, or the last assistant message's content.

    Lenient (anything unreadable is ``""``); the rewards use the checked form and raise
    on a completion this would read as empty for lack of text.

    >>> completion_text([{"role": "assistant", "content": [{"type": "text", "text": "hi"}]}])
    'hi'
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        completion = [completion]
    if isinstance(completion, (list, tuple)):
        for msg in reversed(completion):
            if isinstance(msg, dict) and msg.get("role", "assistant") == "assistant":
                content = msg.get("content", "")
                if isinstance(content, str):
                    return content
                if isinstance(content, list):
                    return "".join(
                        p.get("text", "")
                        for p in content
                        if isinstance(p, dict) and p.get("type") == "text"
                    )
        return ""
    return ""


_FORMS = "a str or a message list [{'role': 'assistant', 'content': str}]"


def _kind(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60]}{'...' if len(text) > 60 else ''}"


def _message_text(completion: Any, k: int, reward: str) -> str:
    """The checked text of one conversational completion (see :func:`completion_texts`)."""
    if not isinstance(completion, (list, tuple)):
        raise TypeError(f"{reward}: completion {k} must be {_FORMS}, got {_kind(completion)}")
    for msg in reversed(completion):
        if not isinstance(msg, Mapping):
            raise TypeError(
                f"{reward}: completion {k} must be {_FORMS}; it holds a message that is a "
                f"{_kind(msg)}, not a dict"
            )
        if msg.get("role", "assistant") != "assistant":
            continue
        content = msg.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list) and all(isinstance(p, Mapping) for p in content):
            parts = [p.get("text") for p in content if p.get("type") == "text"]
            if all(isinstance(t, str) for t in parts):
                return "".join(parts)
        raise TypeError(
            f"{reward}: completion {k}: the assistant message's content must be a str (or a "
            f"list of {{'type': 'text', 'text': str}} parts), got {_kind(content)}"
        )
    raise ValueError(f"{reward}: completion {k} must be {_FORMS}; it has no assistant message")


def completion_texts(completions: Any, reward: str = "reward") -> list[str]:
    """The texts of a batch of completions, checked (``TypeError`` / ``ValueError``).

    Each completion is a string, or a list of chat messages whose last assistant message
    (a message without ``role`` counts as one) has text content: a ``str``, or a list of
    ``{"type": "text", "text": str}`` parts (other parts, e.g. images, are ignored).

    >>> completion_texts(["B", [{"role": "assistant", "content": "A"}]])
    ['B', 'A']
    >>> completion_texts([None], "format_reward")
    Traceback (most recent call last):
    ...
    TypeError: format_reward: completion 0 must be a str or a message list [{'role': 'assistant', 'content': str}], got NoneType None
    """
    if isinstance(completions, (str, bytes, bytearray, Mapping)) or not isinstance(
        completions, Iterable
    ):
        raise TypeError(
            f"{reward}: completions must be a list with one completion per sample, got "
            f"{_kind(completions)}"
        )
    return [
        c if type(c) is str else (str(c) if isinstance(c, str) else _message_text(c, k, reward))
        for k, c in enumerate(completions)
    ]


_NOT_COLUMNS = {
    "prompts",
    "completions",
    "completion_ids",
    "trainer_state",
    "log_extra",
    "log_metric",
}


def _as_column(value: Any, name: str, n: int, reward: str) -> list[Any]:
    if isinstance(value, (str, bytes, bytearray, Mapping)) or not isinstance(value, Iterable):
        raise TypeError(
            f"{reward}: column {name!r} must be a list with one entry per completion, got "
            f"{_kind(value)}"
        )
    col = list(value)
    if len(col) != n:
        raise ValueError(
            f"{reward}: column {name!r} has {len(col)} entries for {n} completions; every "
            "column needs one entry per completion (TRL repeats a prompt's columns for each "
            "of its generations)"
        )
    return col


def _column(kwargs: dict[str, Any], name: str, n: int, reward: str) -> list[Any]:
    if name not in kwargs:
        have = sorted(k for k in kwargs if k not in _NOT_COLUMNS)
        raise KeyError(
            f"{reward} needs a dataset column {name!r} (one entry per completion); the batch "
            f"has {have}. Add the column, or pass {reward}'s column name to its factory."
        )
    return _as_column(kwargs[name], name, n, reward)


def _optional_column(kwargs: dict[str, Any], name: str, n: int, reward: str) -> list[Any]:
    """A column that may be absent (or None): then every entry is None."""
    value = kwargs.get(name)
    return [None] * n if value is None else _as_column(value, name, n, reward)


def _options_column(kwargs: dict[str, Any], name: str, n: int, reward: str) -> list[Any]:
    """The options column, JSON texts read: each entry None, a mapping or a list."""
    col = _optional_column(kwargs, name, n, reward)
    read: dict[str, Any] = {}  # the completions of one prompt repeat one options text
    out = []
    for k, value in enumerate(col):
        if isinstance(value, str):
            if value not in read:
                read[value] = _options_json(value, name, k, reward)
            value = read[value]
        elif value is not None and not isinstance(value, (Mapping, list, tuple)):
            raise TypeError(
                f"{reward}: {name!r} entry {k} must be the question's options (a dict, a "
                f"list or their JSON text) or None, got {_kind(value)}"
            )
        out.append(value)
    return out


def _options_json(value: str, name: str, k: int, reward: str) -> Any:
    try:
        obj = json.loads(value)
    except ValueError:
        obj = value
    if obj is not None and not isinstance(obj, (dict, list)):
        raise ValueError(
            f"{reward}: {name!r} entry {k} is a text but not the JSON of a dict or list of "
            f"options: {value[:60]!r}; store e.g. json.dumps({{'A': 'Yes', 'B': 'No'}})"
        )
    return obj


def _gold(value: Any, name: str, k: int) -> str | None:
    """A gold option letter, upper-cased; None skips the sample."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(
            f"answer_reward: {name!r} entry {k} must be an option letter A-Z (or None to "
            f"skip the sample), got {_kind(value)}"
        )
    letter = value.strip().upper()
    if len(letter) != 1 or not "A" <= letter <= "Z":
        raise ValueError(
            f"answer_reward: {name!r} entry {k} must be an option letter A-Z (or None to "
            f"skip the sample), got {value[:60]!r}"
        )
    return letter


class FormatReward:
    """1.0 when a completion keeps the strict OmniAD format, else 0.0.

    Strict format: exactly one seg, think and answer block, in that order, only
    whitespace between them, the seg text canonical (or empty) on ``grid``, the answer
    a single option letter (one of the ``options`` column's letters when that column
    is present, else any A-Z).
    """

    def __init__(self, grid: textmask.grid.GridLike = 24, options_column: str = "options") -> None:
        self.grid = textmask.Grid.of(grid)
        self.options_column = options_column
        self.__name__ = "format_reward"

    def __call__(self, completions: Sequence[Any], **kwargs: Any) -> list[float | None]:
        texts = completion_texts(completions, "format_reward")
        opts = _options_column(kwargs, self.options_column, len(texts), "format_reward")
        return [
            1.0 if parse_response(t, options=o, grid=self.grid).format_ok else 0.0
            for t, o in zip(texts, opts, strict=True)
        ]


class DetectionReward:
    """The OmniAD detection accuracy reward over a batch of completions.

    Per completion: 1 when the ground truth and the decoded ``<seg>`` are both empty,
    0 when only the ground truth is empty, else ``alpha * F1`` (pixel-exact at the
    ground truth's resolution by default).  A completion without a seg block predicts
    nothing.

    Parameters
    ----------
    alpha : float
        F1 scale (2.0 in the paper).
    grid : int, (rows, cols) or textmask.Grid
        The grid of the model's seg text.
    mask_column : str
        Dataset column with the ground truth: a mask array, a PIL image, a mask file
        path, a canonical seg text on ``grid``, ``""`` for a normal image, or ``None``
        to exclude the sample.
    level : {"pixel", "cell"}
        F1 at the mask's pixel resolution or on grid cells.
    cache_size : int
        Ground truths from paths and seg texts are kept for reuse across calls.
    """

    def __init__(
        self,
        alpha: float = 2.0,
        grid: textmask.grid.GridLike = 24,
        mask_column: str = "mask",
        level: textmask.metrics.Level = "pixel",
        cache_size: int = 512,
    ) -> None:
        self.alpha = float(alpha)
        self.grid = textmask.Grid.of(grid)
        self.mask_column = mask_column
        self.level = level
        self.cache_size = int(cache_size)
        self._cache: OrderedDict[str, textmask.GroundTruth] = OrderedDict()
        self.__name__ = "detection_reward"

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_cache": OrderedDict()}  # the cache is rebuilt, not shipped

    def target(self, value: Any) -> textmask.GroundTruth | None:
        """The prepared ground truth for one mask-column entry (None: no ground truth)."""
        if value is None:
            return None
        if isinstance(value, textmask.GroundTruth):
            return value
        if isinstance(value, (numbers.Number, Mapping, bytes, bytearray)):
            raise TypeError(
                "a ground-truth mask is a mask array, a PIL image, a mask file path, a "
                f"canonical seg text, '' (normal image) or None (skip), got {_kind(value)}"
            )
        if isinstance(value, str):
            hit = self._cache.get(value)
            if hit is not None:
                self._cache.move_to_end(value)
                return hit
            gt = self._from_string(value)
            self._cache[value] = gt
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
            return gt
        return textmask.GroundTruth(load_mask(value), self.grid, level=self.level)

    def _entry(self, value: Any, k: int) -> textmask.GroundTruth | None:
        """:meth:`target` of entry ``k``, its errors naming the column and the entry."""
        try:
            return self.target(value)
        except TypeError as exc:
            raise TypeError(f"detection_reward: {self.mask_column!r} entry {k}: {exc}") from exc
        except ValueError as exc:
            raise ValueError(f"detection_reward: {self.mask_column!r} entry {k}: {exc}") from exc

    def _from_string(self, value: str) -> textmask.GroundTruth:
        if looks_like_mask_path(value):
            return textmask.GroundTruth(load_mask(value), self.grid, level=self.level)
        try:
            cells = textmask.decode(value, self.grid, strict=True)
        except textmask.TextMaskError as exc:
            raise ValueError(
                f"the {self.mask_column!r} entry {value[:60]!r} is neither a mask file nor a "
                f"canonical seg text on a {self.grid.rows}x{self.grid.cols} grid ({exc}); "
                "store mask paths, arrays, or textmask.encode(mask) texts"
            ) from None
        return textmask.GroundTruth(cells, self.grid, level=self.level)

    def __call__(self, completions: Sequence[Any], **kwargs: Any) -> list[float | None]:
        all_texts = completion_texts(completions, "detection_reward")
        n = len(all_texts)
        masks = _column(kwargs, self.mask_column, n, "detection_reward")
        seen: dict[int, textmask.GroundTruth | None] = {}
        targets: list[textmask.GroundTruth | None] = []
        for k, m in enumerate(masks):
            key = id(m)
            if key not in seen:
                seen[key] = self._entry(m, k)
            targets.append(seen[key])
        keep = [k for k, t in enumerate(targets) if t is not None]
        out: list[float | None] = [None] * n
        if not keep:
            return out
        texts = [block_text(all_texts[k], "seg") or "" for k in keep]
        values = textmask.detection_rewards(
            texts,
            [targets[k] for k in keep],
            self.grid,
            alpha=self.alpha,
            index_base=self.grid.index_base,
        )
        for k, v in zip(keep, values.tolist(), strict=True):
            out[k] = v
        return out


class AnswerReward:
    """``correct`` (1.0) for the gold option letter, ``wrong`` (0.1) otherwise.

    ``invalid`` (default: ``wrong``) is given when no option letter can be read.
    Gold letters come from ``answer_column``; ``None`` there excludes the sample.
    """

    def __init__(
        self,
        correct: float = 1.0,
        wrong: float = 0.1,
        invalid: float | None = None,
        answer_column: str = "answer",
        options_column: str = "options",
    ) -> None:
        self.correct = float(correct)
        self.wrong = float(wrong)
        self.invalid = self.wrong if invalid is None else float(invalid)
        self.answer_column = answer_column
        self.options_column = options_column
        self.__name__ = "answer_reward"

    def __call__(self, completions: Sequence[Any], **kwargs: Any) -> list[float | None]:
        texts = completion_texts(completions, "answer_reward")
        n = len(texts)
        gold = _column(kwargs, self.answer_column, n, "answer_reward")
        opts = _options_column(kwargs, self.options_column, n, "answer_reward")
        out: list[float | None] = []
        for k, (t, g, o) in enumerate(zip(texts, gold, opts, strict=True)):
            letter_gold = _gold(g, self.answer_column, k)
            if letter_gold is None:
                out.append(None)
                continue
            letter = read_answer(t, o)
            if letter is None:
                out.append(self.invalid)
            else:
                out.append(self.correct if letter == letter_gold else self.wrong)
        return out


def make_rewards(
    *,
    alpha: float = 2.0,
    grid: textmask.grid.GridLike = 24,
    correct: float = 1.0,
    wrong: float = 0.1,
    mask_column: str = "mask",
    answer_column: str = "answer",
    options_column: str = "options",
    level: textmask.metrics.Level = "pixel",
) -> list[Any]:
    """The three rewards of the paper, configured alike: ``[format, detection, answer]``."""
    return [
        FormatReward(grid, options_column),
        DetectionReward(alpha, grid, mask_column, level),
        AnswerReward(correct, wrong, answer_column=answer_column, options_column=options_column),
    ]
