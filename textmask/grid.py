"""The :class:`Grid` value object: one checkpoint's text-as-mask convention."""

from __future__ import annotations

import functools
import numbers
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from textmask._errors import TextMaskError
from textmask._geometry import cell_edges
from textmask._limits import MAX_SIDE

__all__ = ["MAX_CELLS", "Grid", "GridLike"]

#: Largest number of cells a grid may have (bounds the memory of any decode).
MAX_CELLS = 1 << 24


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TextMaskError(
            f"{name} must be an integer >= {low}, got {value!r} of type "
            f"{type(value).__name__}; pass e.g. {name}=24"
        )
    value = int(value)
    if value < low:
        raise TextMaskError(f"{name} must be an integer >= {low}, got {value}")
    return value


def _check_side(name: str, value: Any) -> int:
    value = _check_int(name, value, 1)
    if value > MAX_SIDE:
        raise TextMaskError(
            f"{name} must be at most {MAX_SIDE} (2**31 - 1) pixels, got {value}; check the "
            "image size"
        )
    return value


@dataclass(frozen=True)
class Grid:
    """A text-as-mask convention: grid size, labelling threshold and index base.

    Pass one object around so that encoding, decoding and rewards agree with the
    convention a checkpoint was trained with.

    Parameters
    ----------
    rows, cols : int
        Grid size in cells (default 24 x 24, as in the OmniAD paper).
    threshold : float
        A cell is anomalous when its fraction of anomalous pixels is greater than
        this, in ``[0, 1)``.  0 (default) marks a cell with any anomalous pixel.
    index_base : int
        0 (default) or 1: the number written for the first row and column.

    Examples
    --------
    >>> Grid()
    Grid(rows=24, cols=24, threshold=0.0, index_base=0)
    >>> Grid.of((16, 32)).shape
    (16, 32)
    >>> Grid.of(Grid(8, 8), index_base=1)
    Grid(rows=8, cols=8, threshold=0.0, index_base=1)
    >>> Grid.from_dict(Grid(12, 12, 0.25).to_dict())
    Grid(rows=12, cols=12, threshold=0.25, index_base=0)
    """

    rows: int = 24
    cols: int = 24
    threshold: float = 0.0
    index_base: int = 0

    def __post_init__(self) -> None:
        rows = _check_int("grid rows", self.rows, 1)
        cols = _check_int("grid cols", self.cols, 1)
        if rows * cols > MAX_CELLS:
            raise TextMaskError(
                f"a grid may have at most {MAX_CELLS} cells, got {rows} x {cols}; "
                "use a coarser grid"
            )
        thr = self.threshold
        if isinstance(thr, (bool, np.bool_)) or not isinstance(thr, numbers.Real):
            raise TextMaskError(
                f"threshold must be a number in [0, 1), got {thr!r}; pass e.g. threshold=0.0"
            )
        thr = float(thr)
        if not 0.0 <= thr < 1.0:
            raise TextMaskError(
                f"threshold must be in [0, 1), got {thr}; 0 marks a cell with any "
                "anomalous pixel, 0.5 one that is more than half anomalous"
            )
        base = self.index_base
        if isinstance(base, (bool, np.bool_)) or base not in (0, 1):
            raise TextMaskError(f"index_base must be 0 or 1, got {base!r}")
        object.__setattr__(self, "rows", rows)
        object.__setattr__(self, "cols", cols)
        object.__setattr__(self, "threshold", thr)
        object.__setattr__(self, "index_base", int(base))

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, cols)``."""
        return (self.rows, self.cols)

    @property
    def size(self) -> int:
        """Number of cells."""
        return self.rows * self.cols

    @classmethod
    def of(
        cls,
        grid: GridLike = 24,
        *,
        threshold: float | None = None,
        index_base: int | None = None,
    ) -> Grid:
        """Make a Grid from an int, a ``(rows, cols)`` pair, a Grid or its dict form.

        ``threshold`` and ``index_base`` override the grid's own values when not None.
        """
        if _plain(grid) and type(threshold) in _OPT_FLOAT and type(index_base) in _OPT_INT:
            return _grid_of(grid, threshold, index_base)  # the hot path in RL loops
        return cls._of(grid, threshold, index_base)

    @classmethod
    def _of(cls, grid: Any, threshold: float | None, index_base: int | None) -> Grid:
        if isinstance(grid, Grid):
            g = grid
        elif isinstance(grid, dict):  # e.g. from a YAML or JSON config
            g = cls.from_dict(grid)
        elif isinstance(grid, (tuple, list)) and len(grid) == 2:
            g = cls(grid[0], grid[1])
        elif isinstance(grid, numbers.Integral) and not isinstance(grid, (bool, np.bool_)):
            g = cls(int(grid), int(grid))
        else:
            raise TextMaskError(
                f"grid must be an int, a (rows, cols) pair, a textmask.Grid or its dict form, "
                f"got {grid!r}"
            )
        if threshold is None and index_base is None:
            return g
        return cls(
            g.rows,
            g.cols,
            g.threshold if threshold is None else threshold,
            g.index_base if index_base is None else index_base,
        )

    @classmethod
    def parse(
        cls, text: str, *, threshold: float | None = None, index_base: int | None = None
    ) -> Grid:
        """A grid from its command-line form: ``"24"`` (square) or ``"16x32"`` (rows x cols).

        This is the one grid syntax of every command line of the toolkit.  Spaces around
        the numbers and an upper-case ``X`` are accepted; anything else is a
        :class:`TextMaskError` saying what was expected.

        >>> Grid.parse("24").shape, Grid.parse("16x32").shape, Grid.parse(" 8 X 8 ").shape
        ((24, 24), (16, 32), (8, 8))
        >>> Grid.parse("16,32")
        Traceback (most recent call last):
        ...
        textmask._errors.TextMaskError: a grid is N or ROWSxCOLS, e.g. 24 or 16x32, got '16,32'
        """
        if not isinstance(text, str):
            raise TextMaskError(f"Grid.parse takes a str such as '24' or '16x32', got {text!r}")
        parts = text.lower().split("x")
        if len(parts) in (1, 2) and all(_small_number(p) for p in parts):
            nums = [int(p) for p in parts]
            rows, cols = (nums[0], nums[0]) if len(nums) == 1 else (nums[0], nums[1])
            return cls.of((rows, cols), threshold=threshold, index_base=index_base)
        raise TextMaskError(f"a grid is N or ROWSxCOLS, e.g. 24 or 16x32, got {text[:40]!r}")

    def row_edges(self, height: int) -> np.ndarray:
        """Pixel-row boundaries of the cell rows for an image ``height`` pixels tall.

        >>> Grid(3, 3).row_edges(10).tolist()
        [0, 3, 6, 10]
        """
        return cell_edges(_check_side("height", height), self.rows)

    def col_edges(self, width: int) -> np.ndarray:
        """Pixel-column boundaries of the cell columns for an image ``width`` wide."""
        return cell_edges(_check_side("width", width), self.cols)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description, stored next to checkpoints."""
        return {"format": "textmask/1", **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Grid:
        """Inverse of :meth:`to_dict`; rejects unknown format versions and keys."""
        data = dict(data)
        fmt = data.pop("format", "textmask/1")
        if fmt != "textmask/1":
            raise TextMaskError(
                f"unsupported textmask format {fmt!r}; this version reads 'textmask/1'"
            )
        unknown = set(data) - {"rows", "cols", "threshold", "index_base"}
        if unknown:
            raise TextMaskError(
                f"unknown keys in a textmask spec: {sorted(unknown)}; expected rows, "
                "cols, threshold, index_base"
            )
        return cls(**data)


GridLike = int | tuple[int, int] | Grid


_OPT_FLOAT = (type(None), float)
_OPT_INT = (type(None), int)


def _small_number(text: str) -> bool:
    """ASCII digits, at most 9 of them (larger grids are refused by the size check)."""
    t = text.strip()
    return 0 < len(t) <= 9 and t.isascii() and t.isdigit()


def _plain(grid: Any) -> bool:
    """True for exact ints, (int, int) tuples and Grids: safe cache keys (no bools)."""
    t = type(grid)
    return (
        t is int
        or t is Grid
        or (t is tuple and len(grid) == 2 and type(grid[0]) is int and type(grid[1]) is int)
    )


@functools.lru_cache(maxsize=1024)
def _grid_of(grid: Any, threshold: float | None, index_base: int | None) -> Grid:
    return Grid._of(grid, threshold, index_base)
