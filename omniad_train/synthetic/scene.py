"""The defect-free rendering of one sample, before lighting and sensor noise."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Scene", "pick_colour", "rgb"]


def rgb(r: float, g: float, b: float) -> np.ndarray:
    """An RGB triple as float32 in [0, 1]."""
    return np.array([r, g, b], np.float32)


def pick_colour(rng: np.random.Generator, palette: dict[str, tuple[float, float, float]]):
    """A ``(name, rgb)`` pair drawn uniformly from a named palette."""
    names = sorted(palette)
    name = names[int(rng.integers(len(names)))]
    return name, rgb(*palette[name])


@dataclass
class Scene:
    """A rendered product before any defect.

    ``surface`` marks where surface defects may go (the product, not the background);
    ``scale`` is the product's characteristic size in pixels (defects are sized by it);
    ``axis`` the direction (radians) of an elongated product, for scratches along it;
    ``attrs`` holds ground-truth facts the questions ask about (``colour`` always).
    Objects made of parts also carry ``parts`` and ``redraw(parts)``, which renders the
    same scene with another list of parts (used by missing / misplaced defects).
    """

    image: np.ndarray
    surface: np.ndarray
    scale: float
    attrs: dict[str, Any] = field(default_factory=dict)
    axis: float | None = None
    parts: list[Any] = field(default_factory=list)
    redraw: Callable[[list[Any]], np.ndarray] | None = None
