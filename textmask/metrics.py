"""Scores of a predicted cell set against a ground-truth mask, exact at pixel level."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from textmask import _kernels as K
from textmask._cells import label_cells
from textmask._errors import TextMaskError
from textmask._validate import as_alpha, as_cells, as_mask, as_shape, edges, join_texts
from textmask.codec import decode
from textmask.grid import Grid, GridLike

__all__ = ["GroundTruth", "Level", "Scores", "area", "f1", "iou", "precision", "recall", "score"]

Level = Literal["pixel", "cell"]

#: The reward kernel's own Python function (the kernel itself when Numba's JIT is off):
#: the same definition, without compiled-call overhead and on integers of any size.
_reward_of = getattr(K.reward_of, "py_func", K.reward_of)


@dataclass(frozen=True)
class Scores:
    """Confusion counts of a prediction against a ground truth, and the usual ratios.

    The one confusion-count type of the toolkit (``omniad_core.metrics.Confusion`` is
    this class).  Counts are pixels (level ``"pixel"``), cells (level ``"cell"``) or
    images (an image-level detection meter).  Ratios are fractions in [0, 1]; a ratio
    with a zero denominator is 1.0: nothing to find and nothing predicted is perfect.
    Counts add with ``+``.

    Parameters
    ----------
    tp, fp, fn, tn : int
        True positives, false positives, false negatives, true negatives (default 0).
    cells : int or None
        The number of grid cells the prediction names, when the counts come from a cell
        prediction (:func:`score`, :meth:`GroundTruth.score`), else None.  Only
        :meth:`reward` reads it: on a mask smaller than the grid a prediction can name
        cells that cover no pixel, which its pixel counts cannot show.  Shown by
        ``repr`` when known; compared by ``==``.

    Examples
    --------
    >>> c = Scores(tp=2, fp=1, fn=1, tn=6)
    >>> c.f1, c.accuracy, c.precision, c.recall, c.iou
    (0.6666666666666666, 0.8, 0.6666666666666666, 0.6666666666666666, 0.5)
    >>> (c + Scores(tn=10)).total
    20
    >>> Scores(tn=5).f1          # nothing to find, nothing predicted
    1.0
    """

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0
    cells: int | None = None

    def __repr__(self) -> str:
        extra = "" if self.cells is None else f", cells={self.cells}"
        return f"Scores(tp={self.tp}, fp={self.fp}, fn={self.fn}, tn={self.tn}{extra})"

    def __add__(self, other: Scores) -> Scores:
        if not isinstance(other, Scores):
            return NotImplemented
        cells = None if self.cells is None or other.cells is None else self.cells + other.cells
        return Scores(
            self.tp + other.tp,
            self.fp + other.fp,
            self.fn + other.fn,
            self.tn + other.tn,
            cells,
        )

    @property
    def total(self) -> int:
        """Number of units counted: ``tp + fp + fn + tn``."""
        return self.tp + self.fp + self.fn + self.tn

    @property
    def precision(self) -> float:
        """``tp / (tp + fp)``; 1.0 when nothing was predicted."""
        d = self.tp + self.fp
        return 1.0 if d == 0 else self.tp / d

    @property
    def recall(self) -> float:
        """``tp / (tp + fn)``; 1.0 when there is nothing to find."""
        d = self.tp + self.fn
        return 1.0 if d == 0 else self.tp / d

    @property
    def f1(self) -> float:
        """``2 tp / (2 tp + fp + fn)``; 1.0 when ``tp + fp + fn == 0``."""
        d = 2 * self.tp + self.fp + self.fn
        return 1.0 if d == 0 else 2 * self.tp / d

    @property
    def iou(self) -> float:
        """``tp / (tp + fp + fn)``; 1.0 when ``tp + fp + fn == 0``."""
        d = self.tp + self.fp + self.fn
        return 1.0 if d == 0 else self.tp / d

    @property
    def accuracy(self) -> float:
        """``(tp + tn) / total``; 1.0 when nothing was counted."""
        d = self.total
        return 1.0 if d == 0 else (self.tp + self.tn) / d

    def reward(self, alpha: float = 2.0) -> float:
        """The detection reward these counts earn, as :func:`detection_reward` gives it.

        1 when the ground truth is empty and the prediction names no cell, 0 when the
        ground truth is empty and it names one, else ``alpha * F1``.  The prediction
        names a cell when ``cells > 0``; when ``cells`` is None (counts built by hand or
        pooled) when ``tp + fp > 0``, which is the same thing whenever every grid cell
        covers a pixel.  One definition with the batch kernel
        (:func:`textmask._kernels.reward_of`), so Scores from :func:`score` always
        give the reward :func:`detection_reward` gives for the same text.

        >>> Scores(0, 0, 0, 9).reward(), Scores(0, 3, 0, 6).reward(), Scores(2, 1, 1, 5).reward()
        (1.0, 0.0, 1.3333333333333333)
        >>> Scores(0, 0, 0, 4, cells=1).reward()   # named a cell that covers no pixel
        0.0
        """
        named = self.tp + self.fp > 0 if self.cells is None else self.cells > 0
        a = as_alpha(alpha)
        return float(_reward_of(self.tp, self.tp + self.fp, self.tp + self.fn, named, a))


class GroundTruth:
    """A ground-truth mask prepared for fast, exact scoring of many predictions.

    Holds, per grid cell, the number of anomalous ground-truth pixels and the number
    of pixels the cell covers.  Scoring a prediction then needs only its cells: the
    pixel-level confusion counts are exact without building any pixel mask.  Build one
    per prompt and score all of its completions with it.

    Parameters
    ----------
    mask : array_like, shape (H, W)
        The ground truth at its own resolution; non-zero is anomalous.
    grid : int, (rows, cols) or Grid
        The grid predictions are written on.
    threshold : float, optional
        Cell labelling threshold, used at cell level (default: the grid's).
    level : {"pixel", "cell"}
        Score pixels of the ground truth (default) or its patchified cells.

    Examples
    --------
    >>> m = np.zeros((48, 48), bool); m[0:2, 0:2] = True   # cell (0, 0), 4 pixels
    >>> gt = GroundTruth(m)
    >>> gt.score("(0, 0)")
    Scores(tp=4, fp=0, fn=0, tn=2300, cells=1)
    >>> gt.reward("(0, 0)-(0, 1)")     # 2 * F1 with 4 false positive pixels
    1.3333333333333333
    >>> gt.rewards(["(0, 0)", "", "junk"]).tolist()
    [2.0, 0.0, 0.0]
    """

    __slots__ = ("areas", "counts", "grid", "level", "shape", "total", "universe")

    def __init__(
        self,
        mask: Any,
        grid: GridLike = 24,
        *,
        threshold: float | None = None,
        level: Level = "pixel",
    ) -> None:
        g = Grid.of(grid, threshold=threshold)
        arr, transposed = as_mask(mask, "ground-truth mask")
        h, w = arr.shape[::-1] if transposed else arr.shape
        if level == "pixel":
            rows, cols = (g.cols, g.rows) if transposed else (g.rows, g.cols)
            re_, ce = edges(rows, cols, arr.shape[0], arr.shape[1])
            counts = K.patch_count(arr, re_, ce)
            if transposed:
                counts = counts.T
            re_, ce = edges(g.rows, g.cols, h, w)
            areas = np.outer(np.diff(re_), np.diff(ce))
            universe = h * w
        elif level == "cell":
            counts = label_cells(arr, transposed, g).astype(np.int64)
            areas = np.ones((g.rows, g.cols), np.int64)
            universe = g.size
        else:
            raise TextMaskError(f"level must be 'pixel' or 'cell', got {level!r}")
        self.grid = g
        self.level = level
        self.shape = (h, w)
        self.counts = np.ascontiguousarray(counts, dtype=np.int64).reshape(-1)
        self.areas = np.ascontiguousarray(areas, dtype=np.int64).reshape(-1)
        self.total = int(self.counts.sum())
        self.universe = int(universe)

    def __repr__(self) -> str:
        return (
            f"GroundTruth(shape={self.shape}, grid={self.grid}, level={self.level!r}, "
            f"anomalous={self.total})"
        )

    @property
    def empty(self) -> bool:
        """True when the ground truth has nothing anomalous (at its level)."""
        return self.total == 0

    @classmethod
    def of(
        cls,
        target: Any,
        grid: GridLike = 24,
        *,
        threshold: float | None = None,
        level: Level = "pixel",
    ) -> GroundTruth:
        """``target`` itself when it is a GroundTruth, else ``GroundTruth(target, ...)``.

        >>> gt = GroundTruth(np.zeros((4, 4), bool), 2)
        >>> GroundTruth.of(gt) is gt, GroundTruth.of(np.zeros((4, 4), bool), 2).grid.shape
        (True, (2, 2))
        """
        if isinstance(target, GroundTruth):
            return target
        return cls(target, grid, threshold=threshold, level=level)

    def _scores(self, tp: int, pa: int, cells: int) -> Scores:
        fp = pa - tp
        fn = self.total - tp
        return Scores(tp, fp, fn, self.universe - tp - fp - fn, cells)

    def score(self, pred: Any, *, index_base: int | None = None) -> Scores:
        """Confusion counts of a prediction: a seg text (tolerant) or a cell grid."""
        if isinstance(pred, (str, bytes, bytearray)):
            tp, pa, cells = self._run([pred], 1.0, index_base)[1][0].tolist()
            return self._scores(tp, pa, cells)
        cells = as_cells(pred, self.grid, "predicted cells").reshape(-1)
        return self._scores(
            int(self.counts[cells].sum()), int(self.areas[cells].sum()), int(cells.sum())
        )

    def reward(self, text: str, alpha: float = 2.0, *, index_base: int | None = None) -> float:
        """The OmniAD detection accuracy reward of one seg text (see the package doc)."""
        return float(self._run([text], alpha, index_base)[0][0])

    def rewards(
        self, texts: Sequence[str], alpha: float = 2.0, *, index_base: int | None = None
    ) -> np.ndarray:
        """Detection rewards of many seg texts against this ground truth."""
        return self._run(list(texts), alpha, index_base)[0]

    def _run(
        self, texts: list[Any], alpha: float, index_base: int | None
    ) -> tuple[np.ndarray, np.ndarray]:
        base = (
            self.grid.index_base
            if index_base is None
            else Grid.of(1, index_base=index_base).index_base
        )
        buf, offsets = join_texts(texts)
        tindex = np.zeros(len(texts), np.int64)
        return K.reward_many(
            buf,
            offsets,
            tindex,
            self.counts[None],
            self.areas[None],
            np.array([self.total], np.int64),
            self.grid.rows,
            self.grid.cols,
            base,
            as_alpha(alpha),
        )


def score(
    pred: Any,
    target: Any,
    grid: GridLike = 24,
    *,
    level: Level = "pixel",
    threshold: float | None = None,
    index_base: int | None = None,
) -> Scores:
    """Confusion counts of a prediction against a ground truth.

    Parameters
    ----------
    pred : str or array_like of bool, shape (rows, cols)
        A seg text (decoded tolerantly) or a cell grid.
    target : array_like, shape (H, W), or GroundTruth
        The ground-truth mask at its own resolution.
    grid : int, (rows, cols) or Grid
        The grid of the prediction (ignored when ``target`` is a GroundTruth).
    level : {"pixel", "cell"}
        ``"pixel"``: the predicted region is the union of its cells' pixels at the
        ground truth's resolution (exact).  ``"cell"``: compare with the
        ground truth's patchified cells.
    threshold, index_base : optional
        Override the grid's values.

    Examples
    --------
    >>> gt = np.zeros((4, 4), bool); gt[0, 0] = True
    >>> score("(0, 0)", gt, 2)            # the cell covers 4 pixels, 1 anomalous
    Scores(tp=1, fp=3, fn=0, tn=12, cells=1)
    >>> score("(0, 0)", gt, 2, level="cell")
    Scores(tp=1, fp=0, fn=0, tn=3, cells=1)
    """
    gt = GroundTruth.of(target, grid, threshold=threshold, level=level)
    return gt.score(pred, index_base=index_base)


def f1(pred: Any, target: Any, grid: GridLike = 24, **kwargs: Any) -> float:
    """F1 of a prediction against a ground truth (arguments as :func:`score`).

    >>> gt = np.zeros((4, 4), bool); gt[0, 0] = True
    >>> f1("(0, 0)", gt, 2)
    0.4
    """
    return score(pred, target, grid, **kwargs).f1


def iou(pred: Any, target: Any, grid: GridLike = 24, **kwargs: Any) -> float:
    """Intersection over union (arguments as :func:`score`).

    >>> gt = np.zeros((4, 4), bool); gt[0, 0] = True
    >>> iou("(0, 0)", gt, 2)
    0.25
    """
    return score(pred, target, grid, **kwargs).iou


def precision(pred: Any, target: Any, grid: GridLike = 24, **kwargs: Any) -> float:
    """Precision (arguments as :func:`score`)."""
    return score(pred, target, grid, **kwargs).precision


def recall(pred: Any, target: Any, grid: GridLike = 24, **kwargs: Any) -> float:
    """Recall (arguments as :func:`score`)."""
    return score(pred, target, grid, **kwargs).recall


def area(
    pred: Any,
    grid: GridLike = 24,
    *,
    shape: Sequence[int] | None = None,
    index_base: int | None = None,
) -> int:
    """Number of cells of a seg text or cell grid, or of pixels at ``shape``.

    >>> area("(0, 0)-(0, 2)")
    3
    >>> area("(0, 0)", 3, shape=(10, 10))
    9
    """
    g = Grid.of(grid, index_base=index_base)
    if isinstance(pred, (str, bytes, bytearray)):
        cells = decode(pred, g)
    else:
        cells = as_cells(pred, g, "predicted cells")
    if shape is None:
        return int(cells.sum())
    re_, ce = edges(g.rows, g.cols, *as_shape(shape))
    return int(np.outer(np.diff(re_), np.diff(ce))[cells].sum())
