"""How :meth:`omniad_core.Inspector.analyze_batch` spreads its arguments over the images.

One question, option set or reference image is shared by every image; a sequence gives
one per image, and its length must be the number of images:

* questions: a ``str`` or :class:`~omniad_core.prompts.Question` is shared; a list holds
  one question (or None, the default question) per image;
* options: ONE option set, shared, is a mapping (``{"A": "Yes", "B": "No"}``) or a
  list/tuple of ``str`` (``["Yes", "No"]``, never one string per image); a list/tuple
  whose entries are all option sets (or None) is one set per image; a list that mixes
  strings and option sets, a bare string and an empty list are errors that say so;
* references: a path, a PIL image or an array is shared (one normal image of the
  category); a list/tuple holds one (or None) per image.

>>> options_per_image(["Yes", "No"], 3)
[['Yes', 'No'], ['Yes', 'No'], ['Yes', 'No']]
>>> options_per_image([["Yes", "No"], None], 2)
[['Yes', 'No'], None]
>>> questions_per_image("Is the cap scratched?", 2)
['Is the cap scratched?', 'Is the cap scratched?']
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from omniad_core.prompts import Question

__all__ = ["options_per_image", "per_image", "questions_per_image", "references_per_image"]


def questions_per_image(questions: Any, n: int) -> list[Any]:
    """One question per image: a single ``str`` / ``Question`` shared, else a list of ``n``."""
    return per_image(questions, n, "questions", allow_scalar=True)


def _is_option_set(value: Any) -> bool:
    """A mapping, or a list/tuple of str: one question's options."""
    if isinstance(value, Mapping):
        return True
    return isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)


def options_per_image(options: Any, n: int) -> list[Any]:
    """One option set (or None) per image, by the rule of the module docstring."""
    if options is None:
        return [None] * n
    if isinstance(options, str):
        raise ValueError(
            f"options must be an option set (a list of str like ['Yes', 'No'], or a dict "
            f"{{'A': 'Yes', ...}}) or one option set per image, got the string {options!r:.80}"
        )
    if isinstance(options, Mapping) or (
        isinstance(options, (list, tuple)) and options and _is_option_set(options)
    ):
        return [options] * n  # one option set, shared
    items = list(options)
    if not items:
        raise ValueError("options is empty: give an option set like ['Yes', 'No'], or None")
    bad = [k for k, v in enumerate(items) if v is not None and not _is_option_set(v)]
    if bad:
        k = bad[0]
        raise ValueError(
            f"options mixes kinds: entry {k} is {items[k]!r:.60}; give ONE option set (a list "
            "of str, shared by every image) or one option set (a list of str or a dict, or "
            "None) per image"
        )
    if len(items) != n:
        raise ValueError(
            f"options holds {len(items)} option sets for {n} images: give one option set per "
            "image, or a single option set (a list of str or a dict) to share it"
        )
    return items


def references_per_image(references: Any, n: int) -> list[Any]:
    """A single reference image is shared; a list/tuple gives one per image."""
    if references is None:
        return [None] * n
    if isinstance(references, (str, os.PathLike, np.ndarray)) or hasattr(references, "getpixel"):
        return [references] * n  # one image (a path, an array, a PIL image)
    return per_image(references, n, "references")


def per_image(value: Any, n: int, name: str, allow_scalar: bool = False) -> list[Any]:
    """``value`` as ``n`` entries: None for all, a scalar shared (``allow_scalar``), a list of ``n``."""
    if value is None:
        return [None] * n
    if allow_scalar and isinstance(value, (str, Question)):
        return [value] * n
    items = list(value)
    if len(items) != n:
        raise ValueError(f"{name} must have one entry per image: {len(items)} for {n} images")
    return items
