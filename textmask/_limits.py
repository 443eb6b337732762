"""Size limits of :mod:`textmask` (private; the public names are re-exported by the package).

Every pixel shape that enters the codec is checked against two bounds before a kernel
sees it (see "Size limits" in the package docstring):

- each side is at most :data:`MAX_SIDE` (``2**31 - 1``) pixels, a fixed bound that
  keeps every cell edge, count and area inside the kernels' integer types;
- ``H * W`` (and, for batch functions, the number of output elements) is at most
  :func:`max_pixels`, ``2**31`` unless changed with :func:`set_max_pixels`.
"""

from __future__ import annotations

import numbers

from textmask._errors import TextMaskError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "MAX_SIDE",
    "check_pixels",
    "check_side",
    "max_pixels",
    "set_max_pixels",
]

#: Largest side of any pixel shape: cell edges (``k * H // rows``) then stay below
#: ``2**55`` and per-column pixel counts fit the kernels' 32-bit accumulators.
MAX_SIDE = 2**31 - 1
#: Default of :func:`max_pixels`: a ``bool`` mask of this size takes 2 GiB.
DEFAULT_MAX_PIXELS = 2**31
#: :func:`set_max_pixels` accepts at most this (element counts stay ``int64``).
_CEILING = 2**62

_state = {"max_pixels": DEFAULT_MAX_PIXELS}


def max_pixels() -> int:
    """The largest number of pixels (``H * W``) one call may produce or take as a shape.

    >>> max_pixels() == 2**31
    True
    """
    return _state["max_pixels"]


def set_max_pixels(n: int | None) -> int:
    """Change the :func:`max_pixels` limit of this process; return the previous one.

    ``None`` restores the default (``2**31``).  The limit exists so that a hostile or
    mistyped shape such as ``(100000, 100000)`` is a clear :class:`TextMaskError`
    instead of a 10 GB allocation; raise it only when the memory is there.  It is
    per process: worker processes (multiprocessing, Ray) start with the default.

    >>> old = set_max_pixels(2**20)
    >>> max_pixels(), set_max_pixels(old) == 2**20
    (1048576, True)
    """
    if n is None:
        n = DEFAULT_MAX_PIXELS
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or not 1 <= int(n) <= _CEILING:
        raise TextMaskError(
            f"max_pixels must be an integer in [1, 2**62], got {n!r}; pass None for the "
            f"default {DEFAULT_MAX_PIXELS}"
        )
    old = _state["max_pixels"]
    _state["max_pixels"] = int(n)
    return old


def check_side(name: str, value: int) -> None:
    """Raise when one side of a pixel shape exceeds :data:`MAX_SIDE`."""
    if value > MAX_SIDE:
        raise TextMaskError(
            f"{name} is {value} pixels; textmask supports at most {MAX_SIDE} (2**31 - 1) "
            "pixels per side; check the shape (a mask this size cannot be held in memory)"
        )


def check_pixels(what: str, count: int, *, hint: str = "", unit: str = "pixels") -> None:
    """Raise when an output or shape of ``count`` pixels exceeds :func:`max_pixels`."""
    limit = _state["max_pixels"]
    if count > limit:
        raise TextMaskError(
            f"{what} has {count} {unit}, more than textmask's limit of {limit} "
            f"(textmask.max_pixels()){hint}; if the memory is there ({count} bytes as "
            "bool), raise the limit with textmask.set_max_pixels(n)"
        )
