"""Helpers shared by the metrics modules (private): count checks, tables, state."""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "DET_FORMAT",
    "MMAD_FORMAT",
    "STATE_VERSION",
    "as_bool_mask",
    "check_state",
    "count",
    "flag",
    "fmt",
    "four_counts",
    "md_table",
    "mean",
    "name_str",
]


def mean(values: Sequence[float]) -> float:
    """Mean of the non-NaN values; NaN when there are none (no warning)."""
    kept = [v for v in values if not math.isnan(v)]
    return math.fsum(kept) / len(kept) if kept else math.nan


def count(value: Any, name: str) -> int:
    """A non-negative integer count (Python or NumPy integer)."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer count, got a bool")
    try:
        n = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer count, got {value!r}") from None
    if n < 0:
        raise ValueError(f"{name} must be >= 0, got {n}")
    return n


def flag(value: Any, name: str) -> bool:
    """A boolean flag: bool, NumPy bool or the integers 0 / 1."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)) and value in (0, 1):
        return bool(value)
    raise TypeError(f"{name} must be a bool, got {value!r}")


def name_str(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, got {value!r}")
    return value


def fmt(value: float, digits: int) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def md_table(header: Sequence[str], align: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


DET_FORMAT = "omniad.metrics.DetectionMeter"
MMAD_FORMAT = "omniad.metrics.MMADMeter"
STATE_VERSION = 1


def check_state(state: Any, fmt: str) -> list[Any]:
    if not isinstance(state, Mapping):
        raise TypeError(f"state must be a dict, got {type(state).__name__}")
    if state.get("format") != fmt:
        raise ValueError(f"not a {fmt} state: format is {state.get('format')!r}")
    if state.get("version") != STATE_VERSION:
        raise ValueError(f"unsupported {fmt} state version {state.get('version')!r}")
    entries = state.get("entries")
    if not isinstance(entries, list):
        raise ValueError("state['entries'] must be a list")
    return entries


def four_counts(value: Any, name: str) -> list[int]:
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        raise ValueError(f"{name} must be a list [tp, fp, fn, tn], got {value!r}")
    return [count(v, f"{name} count") for v in value]


def as_bool_mask(value: Any, name: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a bool or numeric array, got dtype {arr.dtype}")
    return arr if arr.dtype == np.bool_ else arr != 0
