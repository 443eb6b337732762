"""A caller's settings over a checkpoint's own (``omniad.json``): the grid flags.

The checkpoint's convention is authoritative: a flag that contradicts it is applied (the
user asked for it) with a one-line warning saying what the checkpoint says, what was
given and what follows.  ``omniad inspect`` uses :func:`resolve_grid`.
"""

from __future__ import annotations

from typing import Any

import textmask
from omniad_core.checkpoint import DEFAULT_GRID, SPEC_FILE

__all__ = ["resolve_grid"]


def _describe_grid(g: Any) -> str:
    return f"{g.rows}x{g.cols}, threshold {g.threshold:g}, index base {g.index_base}"


def resolve_grid(
    spec: dict[str, Any] | None,
    grid: Any = None,
    threshold: float | None = None,
    index_base: int | None = None,
) -> tuple[Any, str | None, str]:
    """``(grid or None, warning or None, source)`` of ``omniad inspect``'s grid flags.

    The checkpoint's ``omniad.json`` (``spec``) is authoritative: without flags the grid
    is None (the Inspector takes the checkpoint's).  ``--grid`` replaces its size,
    ``--threshold`` and ``--index-base`` only those fields of the checkpoint's grid (of
    the 24 x 24 default when it has none).  A result that differs from a grid the
    checkpoint states comes with a one-line warning saying what it says and what was
    given.  A grid the flags cannot make is a ``ValueError``.

    >>> g, warn, src = resolve_grid({"textmask": {"rows": 8, "cols": 8}}, index_base=1)
    >>> (g.shape, g.index_base), src
    (((8, 8), 1), 'given: --index-base; rest from omniad.json')
    >>> warn.split(";")[0]
    "the checkpoint's omniad.json says grid 8x8, threshold 0, index base 0"
    >>> resolve_grid({"textmask": {"rows": 8, "cols": 8}}, grid=8)[1] is None
    True
    """

    given = [
        flag
        for flag, value in (
            ("--grid", grid),
            ("--threshold", threshold),
            ("--index-base", index_base),
        )
        if value is not None
    ]
    stated = (spec or {}).get("textmask")
    if not given:
        return None, None, SPEC_FILE if stated else "default"
    base = textmask.Grid.from_dict(stated) if stated else textmask.Grid.of(DEFAULT_GRID)
    try:
        out = textmask.Grid.of(
            base if grid is None else grid,
            threshold=base.threshold if threshold is None else threshold,
            index_base=base.index_base if index_base is None else index_base,
        )
    except textmask.TextMaskError as exc:
        raise ValueError(str(exc)) from None
    rest = SPEC_FILE if stated else "the default"
    source = "given" if len(given) == 3 else f"given: {', '.join(given)}; rest from {rest}"
    if not stated or out == base:
        return out, None, source
    wrong = []
    if out.shape != base.shape:
        wrong.append(f"--grid {out.rows}x{out.cols}")
    if out.index_base != base.index_base:
        wrong.append(f"--index-base {out.index_base}")
    if wrong:
        consequence = (
            "the model writes its seg on its own grid, so the masks read with the given one "
            "will be wrong; drop the flag to use the checkpoint's"
        )
    else:
        wrong.append(f"--threshold {out.threshold:g}")
        consequence = (
            "the threshold does not change how a seg is read, but the output then records "
            "a convention the checkpoint was not trained with"
        )
    warning = (
        f"the checkpoint's {SPEC_FILE} says grid {_describe_grid(base)}; given "
        f"{', '.join(wrong)}: {consequence}"
    )
    return out, warning, source
