"""Score-map baselines: the Anomalib-style optimal threshold, F1 at a threshold, PR curves."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from omniad_core.metrics._common import (
    as_bool_mask,
)
from omniad_core.metrics.confusion import Confusion

__all__ = [
    "ThresholdResult",
    "apply_threshold",
    "confusion_at_threshold",
    "f1_at_threshold",
    "optimal_threshold",
    "pr_curve",
]


def _pieces(x: Any) -> list[np.ndarray]:
    """One array, or a list / tuple of arrays (e.g. one score map per image)."""
    if isinstance(x, np.ndarray):
        return [x]
    if isinstance(x, (list, tuple)) and len(x) > 0 and np.ndim(x[0]) >= 1:
        return [np.asarray(e) for e in x]
    return [np.asarray(x)]


def _split_sorted(scores: Any, gt: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Sorted scores of the positive and of the negative samples (fresh arrays)."""
    s_list, g_list = _pieces(scores), _pieces(gt)
    if len(s_list) != len(g_list):
        raise ValueError(
            f"{what}: {len(s_list)} score arrays but {len(g_list)} ground-truth arrays"
        )
    pairs = []
    for i, (s, g) in enumerate(zip(s_list, g_list, strict=True)):
        if s.shape != g.shape:
            raise ValueError(
                f"{what}: scores and ground truth of item {i} have shapes {s.shape} and {g.shape}"
            )
        if s.dtype.kind not in "biuf":
            raise TypeError(f"{what}: scores must be real numbers, got dtype {s.dtype}")
        pairs.append((s, as_bool_mask(g, f"{what} ground truth")))
    n = sum(s.size for s, _ in pairs)
    if n == 0:
        raise ValueError(f"{what}: no scores")
    dtype = np.result_type(*(s.dtype for s, _ in pairs))
    if dtype.kind != "f":
        dtype = np.dtype(np.float64)
    if len(pairs) == 1:
        s, g = pairs[0]
        pos = np.asarray(s[g], dtype=dtype)  # boolean indexing copies: safe to sort
        neg = np.asarray(s[~g], dtype=dtype)
    else:
        n_pos = sum(int(np.count_nonzero(g)) for _, g in pairs)
        pos, neg = np.empty(n_pos, dtype), np.empty(n - n_pos, dtype)
        i = j = 0
        for s, g in pairs:
            k = int(np.count_nonzero(g))
            pos[i : i + k] = s[g]
            neg[j : j + s.size - k] = s[~g]
            i, j = i + k, j + s.size - k
    pos.sort()
    neg.sort()
    for a in (pos, neg):  # sorted: NaN last, -inf first, +inf last
        if a.size and not (np.isfinite(a[0]) and np.isfinite(a[-1])):
            raise ValueError(f"{what}: scores must be finite (no NaN or inf)")
    return pos, neg


def _unique_sorted(a: np.ndarray) -> np.ndarray:
    if a.size == 0:
        return a
    keep = np.empty(a.size, bool)
    keep[0] = True
    np.not_equal(a[1:], a[:-1], out=keep[1:])
    return a[keep]


def _at_least(sorted_a: np.ndarray, t: Any) -> np.ndarray:
    """How many elements of ``sorted_a`` are ``>= t``, for each ``t`` (exact comparison).

    Thresholds of a wider dtype are rounded *up* to ``sorted_a``'s dtype first, which
    keeps every comparison exact and stops NumPy from converting the whole (large)
    sorted array to the wider dtype at each call.
    """
    t = np.asarray(t)
    if t.dtype != sorted_a.dtype:
        with np.errstate(over="ignore"):
            tc = t.astype(sorted_a.dtype)
        up = tc < t  # compared in the wider dtype: exact
        if up.any():
            tc = np.where(up, np.nextafter(tc, np.array(np.inf, tc.dtype)), tc)
        t = tc
    return sorted_a.size - np.searchsorted(sorted_a, t, side="left").astype(np.int64)


def _sorted_union(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """The distinct values of several sorted arrays, sorted."""
    merged = np.concatenate([_unique_sorted(a) for a in arrays])
    merged.sort()
    return _unique_sorted(merged)


def apply_threshold(scores: Any, threshold: float) -> np.ndarray:
    """The prediction ``scores >= threshold``, compared exactly in float64.

    NumPy compares a float32 array with a *Python* float in float32, which can round
    the threshold; this helper (and a ``numpy.float64`` threshold such as
    :attr:`ThresholdResult.threshold`) avoids that.

    >>> apply_threshold(np.array([0.2, 0.5, 0.7], np.float32), 0.5).tolist()
    [False, True, True]
    """
    return np.asarray(scores) >= np.asarray(threshold, dtype=np.float64)


def confusion_at_threshold(scores: Any, gt: Any, threshold: float) -> Confusion:
    """Confusion counts of ``scores >= threshold`` against ``gt``, pooled over all items.

    ``scores`` and ``gt`` are one array or matching lists of arrays (e.g. score maps
    and masks per image); non-zero ground truth is positive.

    >>> confusion_at_threshold([np.array([0.1, 0.9]), np.array([0.6])],
    ...                        [np.array([0, 1]), np.array([0])], 0.6)
    Scores(tp=1, fp=1, fn=0, tn=1)
    """
    s_list, g_list = _pieces(scores), _pieces(gt)
    if len(s_list) != len(g_list):
        raise ValueError(f"{len(s_list)} score arrays but {len(g_list)} ground-truth arrays")
    tp = fp = fn = n = 0
    for s, g in zip(s_list, g_list, strict=True):
        if s.shape != g.shape:
            raise ValueError(f"scores shape {s.shape} != ground truth shape {g.shape}")
        p, gb = apply_threshold(s, threshold), as_bool_mask(g, "ground truth")
        t = int(np.count_nonzero(p & gb))
        tp += t
        fp += int(np.count_nonzero(p)) - t
        fn += int(np.count_nonzero(gb)) - t
        n += s.size
    return Confusion(tp, fp, fn, n - tp - fp - fn)


def f1_at_threshold(scores: Any, gt: Any, threshold: float) -> float:
    """F1 (fraction) of ``scores >= threshold`` against ``gt``; 1.0 when no positives at all.

    >>> f1_at_threshold(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]), 0.35)
    0.8
    """
    return confusion_at_threshold(scores, gt, threshold).f1


@dataclass(frozen=True)
class ThresholdResult:
    """The outcome of :func:`optimal_threshold` (F1 values are fractions).

    Attributes
    ----------
    threshold : numpy.float64
        Predict anomalous when ``score >= threshold``; ``inf`` means "predict nothing".
        A NumPy float64 (a ``float`` subclass), so ``scores >= threshold`` is exact
        for float32 scores too.
    harmonic_mean : float
        The maximised objective: the harmonic mean of ``pixel_f1`` and ``image_f1``
        (0 when both are 0), or the F1 of the single level given.
    pixel_f1, image_f1 : float or None
        F1 at the threshold (None for a level not given).
    pixel, image : Confusion or None
        Confusion counts at the threshold.
    """

    threshold: np.float64
    harmonic_mean: float
    pixel_f1: float | None
    image_f1: float | None
    pixel: Confusion | None
    image: Confusion | None


def _f1_fraction(pos: np.ndarray, neg: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """F1 at each threshold as an exact integer fraction ``num / den`` (0/0 -> 1/1)."""
    tp = _at_least(pos, t)
    fp = _at_least(neg, t)
    num = 2 * tp
    den = num + fp + (pos.size - tp)
    empty = den == 0
    num[empty] = 1
    den[empty] = 1
    return num, den


def optimal_threshold(
    pixel_scores: Any = None,
    pixel_gt: Any = None,
    image_scores: Any = None,
    image_gt: Any = None,
    *,
    chunk_size: int = 1 << 20,
) -> ThresholdResult:
    """The one threshold maximising the harmonic mean of pixel F1 and image F1.

    This is the Anomalib-style protocol docs/method.md prescribes for score-map baselines:
    one threshold per dataset, applied to both the pixel scores and the image scores
    (prediction: ``score >= threshold``), chosen to maximise
    ``2 * F1_pixel * F1_image / (F1_pixel + F1_image)``.

    The search is exact over every candidate: each distinct value among all pixel
    and image scores, plus ``inf`` (predict nothing, the only way to be right on an
    all-normal set).  Counts at every candidate come from sorting the positive and
    negative scores once and binary search (O(n log n)); F1 values are compared as
    exact integer fractions, and ties go to the **smallest** threshold.  F1 with no
    positive in the ground truth and none predicted is 1.

    Parameters
    ----------
    pixel_scores, pixel_gt : array or list of arrays, optional
        Score maps and ground-truth masks (non-zero = anomalous), one array or one per
        image with matching shapes.  Pixels are pooled.
    image_scores, image_gt : array_like, optional
        One score and one label per image.
    chunk_size : int
        Candidates evaluated per vectorised block (bounds the working memory).

    Give both levels, or only one of them (the objective is then that level's F1).
    Input arrays are not modified; the positive and negative scores are copied once
    (in the common floating dtype of the inputs, so float32 maps stay float32).

    Returns
    -------
    ThresholdResult

    Examples
    --------
    >>> maps = [np.array([[0.1, 0.9], [0.2, 0.3]]), np.array([[0.1, 0.2], [0.3, 0.1]])]
    >>> masks = [np.array([[0, 1], [0, 0]]), np.zeros((2, 2))]
    >>> r = optimal_threshold(maps, masks, [0.9, 0.3], [True, False])
    >>> float(r.threshold), r.pixel_f1, r.image_f1, r.harmonic_mean
    (0.9, 1.0, 1.0, 1.0)
    >>> float(optimal_threshold(image_scores=[0.2, 0.4], image_gt=[0, 0]).threshold)
    inf
    """
    if operator.index(chunk_size) < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    levels: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, s, g in (("pixel", pixel_scores, pixel_gt), ("image", image_scores, image_gt)):
        if (s is None) != (g is None):
            raise ValueError(f"give both {name}_scores and {name}_gt, or neither")
        if s is not None:
            levels[name] = _split_sorted(s, g, f"{name} level")
    if not levels:
        raise ValueError("give pixel scores and / or image scores with their ground truth")

    arrays = [a for pair in levels.values() for a in pair]
    cands = _sorted_union([*arrays, np.array([np.inf], np.result_type(*arrays))])

    best: tuple[int, int] | None = None  # exact fraction of the best objective
    best_i = 0
    for start in range(0, cands.size, chunk_size):
        t = cands[start : start + chunk_size]
        fr = [_f1_fraction(pos, neg, t) for pos, neg in levels.values()]
        if len(fr) == 1:
            num, den = fr[0]
        else:
            (na, da), (nb, db) = fr
            num, den = 2 * na * nb, na * db + nb * da
            den[den == 0] = 1  # both F1 are 0: objective 0
        h = num / den
        hmax = h.max()
        # float ratios shortlist the best candidates; exact integer comparison decides
        near = np.flatnonzero(h == 0)[:1] if hmax == 0 else np.flatnonzero(h >= hmax * (1 - 1e-12))
        for i in near:
            cand = (int(num[i]), int(den[i]))
            if best is None or cand[0] * best[1] > best[0] * cand[1]:
                best, best_i = cand, start + int(i)

    assert best is not None
    threshold = np.float64(cands[best_i])
    confs: dict[str, Confusion] = {}
    for name, (pos, neg) in levels.items():
        tp, fp = int(_at_least(pos, threshold)), int(_at_least(neg, threshold))
        confs[name] = Confusion(tp, fp, pos.size - tp, neg.size - fp)
    px, im = confs.get("pixel"), confs.get("image")
    return ThresholdResult(
        threshold,
        best[0] / best[1],
        None if px is None else px.f1,
        None if im is None else im.f1,
        px,
        im,
    )


def pr_curve(
    scores: Any, labels: Any, *, drop_intermediate: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision-recall pairs at every distinct score, as ``sklearn.metrics.precision_recall_curve``.

    ``thresholds`` are the distinct scores in increasing order; ``precision[i]`` and
    ``recall[i]`` are those of ``score >= thresholds[i]``; a last point
    ``(precision=1, recall=0)`` without threshold closes the curve.  With no positive
    label, recall is 1 at every threshold (scikit-learn also warns).

    Parameters
    ----------
    scores, labels : array or list of arrays
        One array or matching lists (e.g. score maps and masks per image: pixels are
        pooled); non-zero labels are positive.
    drop_intermediate : bool
        Drop thresholds whose point lies on a vertical segment between two others, as
        scikit-learn does.

    Returns
    -------
    precision, recall : ndarray of float64, shape (n_thresholds + 1,)
    thresholds : ndarray, shape (n_thresholds,)

    Examples
    --------
    >>> p, r, t = pr_curve(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]))
    >>> p.round(3).tolist(), r.tolist(), t.tolist()
    ([0.5, 0.667, 0.5, 1.0, 1.0], [1.0, 1.0, 0.5, 0.5, 0.0], [0.1, 0.35, 0.4, 0.8])
    """
    pos, neg = _split_sorted(scores, labels, "pr_curve")
    thresholds = _sorted_union([pos, neg])
    tp = _at_least(pos, thresholds)
    fp = _at_least(neg, thresholds)
    if drop_intermediate and thresholds.size > 2:
        d = np.diff(tp) != 0
        keep = np.concatenate([[True], d[:-1] | d[1:], [True]])
        tp, fp, thresholds = tp[keep], fp[keep], thresholds[keep]
    precision = tp / (tp + fp)  # every threshold is a score: tp + fp >= 1
    recall = tp / pos.size if pos.size else np.ones(tp.size)
    return (
        np.concatenate([precision, [1.0]]),
        np.concatenate([recall, [0.0]]),
        thresholds,
    )
