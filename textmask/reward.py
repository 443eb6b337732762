"""The OmniAD detection accuracy reward, for one completion and for GRPO batches."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from textmask import _kernels as K
from textmask._errors import TextMaskError
from textmask._validate import as_alpha, join_texts
from textmask.grid import Grid, GridLike
from textmask.metrics import GroundTruth, Level

__all__ = ["detection_reward", "detection_rewards"]


def detection_reward(
    text: str,
    target: Any,
    grid: GridLike = 24,
    *,
    alpha: float = 2.0,
    level: Level = "pixel",
    threshold: float | None = None,
    index_base: int | None = None,
) -> float:
    """Detection accuracy reward of one seg text (OmniAD, Eq. for R_det).

    1 when the ground truth and the decoded prediction are both empty, 0 when only
    the ground truth is empty, otherwise ``alpha * F1`` (pixel-exact by default).

    Parameters
    ----------
    text : str
        The ``<seg>`` content of a completion (decoded tolerantly).
    target : array_like (H, W) or GroundTruth
        The ground-truth mask, or a prepared :class:`GroundTruth` (faster when
        several completions share a ground truth).
    grid, level, threshold, index_base
        As for :func:`textmask.score`; ignored where a GroundTruth fixes them,
        except ``index_base``, which applies to the text.
    alpha : float
        Scale of the F1 term (2.0 in the paper).

    Examples
    --------
    >>> empty = np.zeros((24, 24), bool)
    >>> detection_reward("", empty), detection_reward("(1, 1)", empty)
    (1.0, 0.0)
    >>> gt = empty.copy(); gt[1, 1:3] = True
    >>> detection_reward("(1, 1)-(1, 2)", gt), detection_reward("(1, 1)", gt)
    (2.0, 1.3333333333333333)
    """
    gt = GroundTruth.of(target, grid, threshold=threshold, level=level)
    return gt.reward(text, alpha, index_base=index_base)


def detection_rewards(
    texts: Sequence[str],
    targets: Any,
    grid: GridLike = 24,
    *,
    alpha: float = 2.0,
    level: Level = "pixel",
    threshold: float | None = None,
    index_base: int | None = None,
) -> np.ndarray:
    """Detection rewards of a batch of seg texts in one kernel call.

    Parameters
    ----------
    texts : sequence of str
        One seg text per completion.
    targets : GroundTruth, mask, or a sequence of them with one entry per text
        Repeated entries (the same object for the completions of one prompt, as in
        GRPO groups) are prepared once.  All targets must share one grid.
    grid, alpha, level, threshold, index_base
        As for :func:`detection_reward`.

    Returns
    -------
    numpy.ndarray of float64, shape (len(texts),)

    Examples
    --------
    >>> gt = np.zeros((24, 24), bool); gt[1, 1:3] = True
    >>> gt = GroundTruth(gt)
    >>> detection_rewards(["(1, 1)-(1, 2)", "(1, 1)", "", "(0, 0)"], gt).tolist()
    [2.0, 1.3333333333333333, 0.0, 0.0]
    """
    texts = list(texts)
    a = as_alpha(alpha)
    if isinstance(targets, GroundTruth) or (isinstance(targets, np.ndarray) and targets.ndim == 2):
        targets = [targets] * len(texts)
    else:
        targets = list(targets)
    if len(targets) != len(texts):
        raise TextMaskError(
            f"detection_rewards needs one target per text, got {len(texts)} texts and "
            f"{len(targets)} targets"
        )
    if not texts:
        return np.zeros(0, np.float64)
    index: dict[int, int] = {}
    prepared: list[GroundTruth] = []
    tindex = np.empty(len(texts), np.int64)
    for k, t in enumerate(targets):
        slot = index.get(id(t))
        if slot is None:
            try:
                gt = GroundTruth.of(t, grid, threshold=threshold, level=level)
            except TextMaskError as exc:
                raise TextMaskError(f"target {k} of the batch: {exc}") from None
            slot = index[id(t)] = len(prepared)
            prepared.append(gt)
        tindex[k] = slot
    g0 = prepared[0].grid
    for gt in prepared:
        if gt.grid.shape != g0.shape:
            raise TextMaskError(
                f"all targets of one batch must share a grid, got {g0.shape} and "
                f"{gt.grid.shape}; score them in separate calls"
            )
    base = g0.index_base if index_base is None else Grid.of(1, index_base=index_base).index_base
    buf, offsets = join_texts(texts)
    counts = np.stack([gt.counts for gt in prepared])
    areas = np.stack([gt.areas for gt in prepared])
    totals = np.array([gt.total for gt in prepared], np.int64)
    return K.reward_many(buf, offsets, tindex, counts, areas, totals, g0.rows, g0.cols, base, a)[0]
