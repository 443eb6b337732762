"""The three OmniAD rewards as TRL-style reward functions, usable from any RL framework.

A reward is called as ``reward(completions, **columns) -> list[float | None]``:
``completions`` holds strings or conversational message lists
(``[{"role": "assistant", "content": text}]``), and every dataset column arrives as a
keyword list with one entry per completion (TRL repeats a prompt's columns for each
of its generations).  ``None`` excludes a sample from that reward.  Rewards are
instances of small classes, so they pickle (for multiprocessing and Ray) and carry a
``__name__`` that TRL uses for its metric names.

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
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import textmask
from omniad_core.images import load_mask, looks_like_mask_path
from omniad_core.parsing import block_text, parse_response, read_answer

__all__ = [
    "AnswerReward",
    "DetectionReward",
    "FormatReward",
    "completion_text",
    "make_rewards",
]


def completion_text(completion: Any) -> str:
    """The text of a completion: a string, or the last assistant message's content.

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


def _column(kwargs: dict[str, Any], name: str, n: int, reward: str) -> list[Any]:
    if name not in kwargs:
        have = sorted(k for k in kwargs if k not in {"prompts", "completion_ids", "trainer_state"})
        raise KeyError(
            f"{reward} needs a dataset column {name!r} (one entry per completion); the batch "
            f"has {have}. Add the column, or pass {reward}'s column name to its factory."
        )
    col = list(kwargs[name])
    if len(col) != n:
        raise ValueError(f"column {name!r} has {len(col)} entries for {n} completions")
    return col


def _options(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


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
        n = len(completions)
        opts = list(kwargs.get(self.options_column) or [None] * n)
        return [
            1.0
            if parse_response(completion_text(c), options=_options(o), grid=self.grid).format_ok
            else 0.0
            for c, o in zip(completions, opts, strict=True)
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
        n = len(completions)
        masks = _column(kwargs, self.mask_column, n, "detection_reward")
        seen: dict[int, textmask.GroundTruth | None] = {}
        targets: list[textmask.GroundTruth | None] = []
        for m in masks:
            key = id(m)
            if key not in seen:
                seen[key] = self.target(m)
            targets.append(seen[key])
        keep = [k for k, t in enumerate(targets) if t is not None]
        out: list[float | None] = [None] * n
        if not keep:
            return out
        texts = [block_text(completion_text(completions[k]), "seg") or "" for k in keep]
        values = textmask.detection_rewards(
            texts, [targets[k] for k in keep], self.grid, alpha=self.alpha,
            index_base=self.grid.index_base,
        )  # fmt: skip
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
        n = len(completions)
        gold = _column(kwargs, self.answer_column, n, "answer_reward")
        opts = list(kwargs.get(self.options_column) or [None] * n)
        out: list[float | None] = []
        for c, g, o in zip(completions, gold, opts, strict=True):
            if g is None:
                out.append(None)
                continue
            letter = read_answer(completion_text(c), _options(o))
            if letter is None:
                out.append(self.invalid)
            else:
                out.append(self.correct if letter == str(g).strip().upper() else self.wrong)
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
