"""How hard the benchmark measures, how it times a call, and how it prints times and ratios.

Every time is the best of several :mod:`timeit` repeats, each ``number`` calls long with
``number`` chosen so that one repeat takes about :data:`TARGET_SECONDS` (a function slower
than :data:`MIN_SECONDS` runs once per repeat).  :class:`Config` says how many repeats,
processes and masks a run uses, in full and in ``--quick`` mode.
"""

from __future__ import annotations

import timeit
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MIN_SECONDS",
    "QUICK_REFERENCE_SHAPES",
    "QUICK_SHAPES",
    "SHAPES",
    "TARGET_SECONDS",
    "Config",
    "best_time",
    "best_times",
    "div",
    "ratio",
    "us",
]

#: Mask shapes (H, W).  900 x 1200 is not square; 1200 x 900 also has a width that is not
#: a multiple of 8, so encode cannot read the mask as 64-bit words.
SHAPES = ((512, 512), (1024, 1024), (900, 1200), (1200, 900))
QUICK_SHAPES = SHAPES[:3]
#: Shapes on which the slow pure-Python reference is timed in --quick mode.
QUICK_REFERENCE_SHAPES = ((512, 512),)
#: Aim for this many seconds per timeit repeat, and at least MIN_SECONDS.
TARGET_SECONDS = 0.15
MIN_SECONDS = 0.1


@dataclass(frozen=True)
class Config:
    """How hard to measure."""

    quick: bool
    repeat: int  # timeit repeats of fast functions (best is kept)
    slow_repeat: int  # repeats of the pure-Python reference (one call each)
    startup_runs: int  # fresh processes per warm start-up measurement
    cold_runs: int  # fresh package copies + caches per cold measurement
    fidelity_n: int  # masks per defect kind in the fidelity table
    grpo_naive_repeat: int  # repeats of the 256-text naive loop
    shapes: tuple[tuple[int, int], ...]  # mask shapes

    @classmethod
    def make(cls, quick: bool) -> Config:
        """The full run's settings, or the ``--quick`` ones.

        Examples
        --------
        >>> Config.make(True).repeat, Config.make(False).repeat
        (1, 7)
        """
        if quick:  # one calibrated repeat per measurement, fewer shapes and processes
            return cls(True, 1, 1, 1, 1, 10, 1, QUICK_SHAPES)
        return cls(False, 7, 3, 5, 2, 30, 3, SHAPES)


# --------------------------------------------------------------------------- timing
def _calibrate(timer: timeit.Timer) -> tuple[int, float]:
    """``number`` for which one repeat takes ~0.15 s (>= 0.1 s), and that repeat's time."""
    number = 1
    elapsed = timer.timeit(1)
    while elapsed < MIN_SECONDS:
        guess = int(number * TARGET_SECONDS / max(elapsed, 1e-7))
        number = max(number * 2, min(guess, number * 1000))
        elapsed = timer.timeit(number)
    return number, elapsed


def best_times(fns: dict[str, Callable[[], Any]], repeat: int) -> dict[str, float]:
    """Best seconds per call of each function over ``repeat`` timeit repeats.

    ``number`` is chosen per function so that one repeat takes about 0.15 s (a function
    slower than 0.1 s runs once per repeat); the calibrating repeat counts as the
    first.  The remaining repeats go round-robin over the functions, so that a burst
    of load from other processes spreads over all of them instead of spoiling every
    repeat of one.
    """
    timers = {k: timeit.Timer(fn) for k, fn in fns.items()}
    numbers, best = {}, {}
    for k, timer in timers.items():
        numbers[k], elapsed = _calibrate(timer)
        best[k] = elapsed / numbers[k]
    for _ in range(repeat - 1):
        for k, timer in timers.items():
            best[k] = min(best[k], timer.timeit(numbers[k]) / numbers[k])
    return best


def best_time(fn: Callable[[], Any], repeat: int) -> float:
    """Best seconds per call of one function (see :func:`best_times`)."""
    return best_times({"fn": fn}, repeat)["fn"]


# --------------------------------------------------------------------------- ratios
def div(a: float | None, b: float | None) -> float | None:
    """``a / b``, or None when either is unmeasured or ``b`` is 0.

    Examples
    --------
    >>> div(3.0, 2.0), div(None, 2.0), div(1.0, 0.0)
    (1.5, None, None)
    """
    return None if a is None or b is None or b == 0 else a / b


def us(seconds: float | None) -> str:
    """Seconds as a microsecond string with sensible precision.

    Examples
    --------
    >>> us(1.234e-6), us(0.0001234), us(0.01234), us(None)
    ('1.23', '123.4', '12,340', '-')
    """
    if seconds is None:
        return "-"
    v = seconds * 1e6
    if v < 10:
        return f"{v:.2f}"
    if v < 1000:
        return f"{v:.1f}"
    return f"{v:,.0f}"


def ratio(x: float | None) -> str:
    """A ratio as ``"1.23x"`` with sensible precision, ``"-"`` when unmeasured.

    Examples
    --------
    >>> ratio(1.234), ratio(123.4), ratio(12345.0), ratio(None)
    ('1.23x', '123.4x', '12,345x', '-')
    """
    if x is None:
        return "-"
    if x < 10:
        return f"{x:.2f}x"
    if x < 1000:
        return f"{x:.1f}x"
    return f"{x:,.0f}x"
