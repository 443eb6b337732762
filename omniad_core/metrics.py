"""Evaluation metrics: detection F1 / accuracy, MMAD accuracy, thresholds and PR curves.

Everything here is NumPy only (no torch, no scikit-learn) and imports fast.

Detection (:class:`DetectionMeter`)
    Pixel-level and image-level F1 and accuracy of predicted anomaly masks, accumulated
    one image at a time as confusion counts, per ``(dataset, category)``.  Pixels are
    pooled over the images of a category; a dataset's figure is the mean over its
    categories; the overall figure is the mean over datasets.  Pooled-over-everything
    figures are reported alongside.
MMAD (:class:`MMADMeter`)
    Multiple-choice accuracy in the benchmark's 7 question types, per dataset and
    overall, laid out as MMAD's own summary script does (see :class:`MMADMeter` for
    the two small differences).
Score-map baselines (:func:`optimal_threshold`, :func:`pr_curve`)
    The Anomalib-style single threshold that maximises the harmonic mean of pixel F1
    and image F1, exact over every candidate, and a precision-recall curve with the
    conventions of ``sklearn.metrics.precision_recall_curve``.

Conventions
-----------
- Report tables (:class:`DetectionReport`, :class:`MMADReport`) are in **percent**
  (0-100), as in the paper; the low-level functions (:class:`Confusion`,
  :func:`optimal_threshold`, :func:`f1_at_threshold`, :func:`pr_curve`) return
  **fractions** (0-1), as scikit-learn does.
- A ratio with a zero denominator is 1 (100 %): F1 when there is nothing to find and
  nothing was predicted (``tp + fp + fn == 0``) is perfect, as in ``textmask``.
- A mask value is anomalous when it is non-zero (bool, 0/1, 0/255 all work).
- A score-map prediction is positive when ``score >= threshold``.

>>> import numpy as np
>>> meter = DetectionMeter()
>>> gt = np.zeros((4, 4), bool); gt[0, :2] = True
>>> meter.update(gt, gt, dataset="MVTec-AD", category="bottle")
>>> meter.results().overall.pixel_f1
100.0
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

__all__ = [
    "MMAD_TYPES",
    "Confusion",
    "DetectionMeter",
    "DetectionReport",
    "DetectionRow",
    "MMADMeter",
    "MMADReport",
    "MMADRow",
    "ThresholdResult",
    "Unanswerable",
    "apply_threshold",
    "confusion_at_threshold",
    "f1_at_threshold",
    "normalize_question_type",
    "optimal_threshold",
    "pr_curve",
]

Unanswerable = Literal["wrong", "drop"]


# --------------------------------------------------------------------------- helpers
def _ratio(num: int, den: int) -> float:
    """``num / den`` with the package convention ``0 / 0 == 1``."""
    return 1.0 if den == 0 else num / den


def _mean(values: Sequence[float]) -> float:
    """Mean of the non-NaN values; NaN when there are none (no warning)."""
    kept = [v for v in values if not math.isnan(v)]
    return math.fsum(kept) / len(kept) if kept else math.nan


def _count(value: Any, name: str) -> int:
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


def _flag(value: Any, name: str) -> bool:
    """A boolean flag: bool, NumPy bool or the integers 0 / 1."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)) and value in (0, 1):
        return bool(value)
    raise TypeError(f"{name} must be a bool, got {value!r}")


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, got {value!r}")
    return value


def _fmt(value: float, digits: int) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def _md_table(header: Sequence[str], align: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- Confusion
@dataclass(frozen=True)
class Confusion:
    """Binary confusion counts and their ratios (fractions in [0, 1]).

    Ratios with a zero denominator are 1.0.  Counts add with ``+``.

    Examples
    --------
    >>> c = Confusion(tp=2, fp=1, fn=1, tn=6)
    >>> c.f1, c.accuracy, c.precision, c.recall
    (0.6666666666666666, 0.8, 0.6666666666666666, 0.6666666666666666)
    >>> (c + Confusion(tn=10)).total
    20
    >>> Confusion(tn=5).f1          # nothing to find, nothing predicted
    1.0
    """

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def __add__(self, other: Confusion) -> Confusion:
        if not isinstance(other, Confusion):
            return NotImplemented
        return Confusion(
            self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn
        )

    @property
    def total(self) -> int:
        """Number of samples counted."""
        return self.tp + self.fp + self.fn + self.tn

    @property
    def precision(self) -> float:
        """``tp / (tp + fp)``."""
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float:
        """``tp / (tp + fn)``."""
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> float:
        """``2 tp / (2 tp + fp + fn)``; 1.0 when ``tp + fp + fn == 0``."""
        return _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)

    @property
    def accuracy(self) -> float:
        """``(tp + tn) / total``; 1.0 when nothing was counted."""
        return _ratio(self.tp + self.tn, self.total)


def _confusion(c: Sequence[int]) -> Confusion:
    return Confusion(int(c[0]), int(c[1]), int(c[2]), int(c[3]))


# --------------------------------------------------------------------------- detection
@dataclass(frozen=True)
class DetectionRow:
    """One row of a detection report.  All metric fields are percentages.

    Attributes
    ----------
    scope : {"category", "dataset", "overall"}
        What the row summarises.
    dataset, category : str or None
        ``category`` is None for dataset and overall rows; ``dataset`` is None for the
        overall row.
    n_images, n_categories : int
        Images and (dataset, category) groups the row covers.
    pixel_f1, pixel_acc, image_f1, image_acc : float
        The headline figures, as the paper reports them: pooled over the category's
        pixels / images for a category row, the mean over its categories for a dataset
        row, the mean over datasets (of those means) for the overall row.
    pooled_pixel_f1, pooled_pixel_acc, pooled_image_f1, pooled_image_acc : float
        The same metrics from the counts pooled over everything the row covers.  For a
        category row they equal the headline figures.
    pixel, image : Confusion
        The pooled pixel and image confusion counts.
    """

    scope: Literal["category", "dataset", "overall"]
    dataset: str | None
    category: str | None
    n_images: int
    n_categories: int
    pixel_f1: float
    pixel_acc: float
    image_f1: float
    image_acc: float
    pooled_pixel_f1: float
    pooled_pixel_acc: float
    pooled_image_f1: float
    pooled_image_acc: float
    pixel: Confusion
    image: Confusion

    def to_dict(self) -> dict[str, Any]:
        """A flat, JSON-friendly dict (confusion counts as ``pixel_tp`` ... ``image_tn``)."""
        d: dict[str, Any] = {
            k: getattr(self, k) for k in self.__dataclass_fields__ if k not in ("pixel", "image")
        }
        for level in ("pixel", "image"):
            c = getattr(self, level)
            for k in ("tp", "fp", "fn", "tn"):
                d[f"{level}_{k}"] = getattr(c, k)
        return d


def _detection_row(
    scope: Literal["category", "dataset", "overall"],
    dataset: str | None,
    category: str | None,
    pixel: Confusion,
    image: Confusion,
    n_categories: int,
    means: Sequence[DetectionRow] | None,
) -> DetectionRow:
    pooled = (
        100.0 * pixel.f1,
        100.0 * pixel.accuracy,
        100.0 * image.f1,
        100.0 * image.accuracy,
    )
    if means is None:
        head = pooled
    else:
        head = (
            _mean([r.pixel_f1 for r in means]),
            _mean([r.pixel_acc for r in means]),
            _mean([r.image_f1 for r in means]),
            _mean([r.image_acc for r in means]),
        )
    return DetectionRow(
        scope, dataset, category, image.total, n_categories, *head, *pooled, pixel, image
    )


@dataclass(frozen=True)
class DetectionReport:
    """The table :meth:`DetectionMeter.results` returns.

    ``rows`` lists, for each dataset in sorted order, its categories (sorted) and then
    the dataset row; the overall row comes last.  Iterating a report iterates its rows.
    """

    rows: tuple[DetectionRow, ...]

    def __iter__(self) -> Iterator[DetectionRow]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def overall(self) -> DetectionRow:
        """The overall row (mean over datasets; pooled figures over everything)."""
        return self.rows[-1]

    def datasets(self) -> list[DetectionRow]:
        """The dataset rows, in sorted order."""
        return [r for r in self.rows if r.scope == "dataset"]

    def dataset(self, name: str) -> DetectionRow:
        """The row of dataset ``name`` (KeyError if absent)."""
        for r in self.rows:
            if r.scope == "dataset" and r.dataset == name:
                return r
        raise KeyError(f"no dataset {name!r} in the report")

    def category(self, dataset: str, category: str) -> DetectionRow:
        """The row of ``category`` of ``dataset`` (KeyError if absent)."""
        for r in self.rows:
            if r.scope == "category" and r.dataset == dataset and r.category == category:
                return r
        raise KeyError(f"no category {category!r} of dataset {dataset!r} in the report")

    def to_dicts(self) -> list[dict[str, Any]]:
        """All rows as flat dicts (see :meth:`DetectionRow.to_dict`)."""
        return [r.to_dict() for r in self.rows]

    def to_markdown(self, *, categories: bool = True, pooled: bool = False, digits: int = 1) -> str:
        """The report as a Markdown table, figures in percent.

        Parameters
        ----------
        categories : bool
            Include the per-category rows (default) or only datasets and the average.
        pooled : bool
            Show the pooled figures on dataset and overall rows instead of the means.
        digits : int
            Decimals shown.
        """
        header = ["Dataset", "Category", "Images", "Pixel F1", "Pixel Acc", "Image F1", "Image Acc"]
        align = ["---", "---", "--:", "--:", "--:", "--:", "--:"]
        body = []
        for r in self.rows:
            if r.scope == "category" and not categories:
                continue
            use_pooled = pooled and r.scope != "category"
            vals = (
                (r.pooled_pixel_f1, r.pooled_pixel_acc, r.pooled_image_f1, r.pooled_image_acc)
                if use_pooled
                else (r.pixel_f1, r.pixel_acc, r.image_f1, r.image_acc)
            )
            label = "**pooled**" if use_pooled else "**mean**"
            if r.scope == "category":
                first, second = r.dataset or "", r.category or ""
            elif r.scope == "dataset":
                first, second = r.dataset or "", label
            else:
                first, second = "**Pooled**" if use_pooled else "**Average**", ""
            body.append([first, second, str(r.n_images), *(_fmt(v, digits) for v in vals)])
        return _md_table(header, align, body)


_DET_FORMAT = "omniad.metrics.DetectionMeter"
_MMAD_FORMAT = "omniad.metrics.MMADMeter"
_STATE_VERSION = 1


def _check_state(state: Any, fmt: str) -> list[Any]:
    if not isinstance(state, Mapping):
        raise TypeError(f"state must be a dict, got {type(state).__name__}")
    if state.get("format") != fmt:
        raise ValueError(f"not a {fmt} state: format is {state.get('format')!r}")
    if state.get("version") != _STATE_VERSION:
        raise ValueError(f"unsupported {fmt} state version {state.get('version')!r}")
    entries = state.get("entries")
    if not isinstance(entries, list):
        raise ValueError("state['entries'] must be a list")
    return entries


def _four_counts(value: Any, name: str) -> list[int]:
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        raise ValueError(f"{name} must be a list [tp, fp, fn, tn], got {value!r}")
    return [_count(v, f"{name} count") for v in value]


def _as_mask(value: Any, name: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a bool or numeric array, got dtype {arr.dtype}")
    return arr if arr.dtype == np.bool_ else arr != 0


class DetectionMeter:
    """Streaming pixel- and image-level F1 / accuracy of predicted masks.

    Call :meth:`update` once per image (or :meth:`update_counts` /
    :meth:`update_scores` with confusion counts already computed, e.g. by
    ``textmask.GroundTruth(gt).score(seg_text)``).  Only eight integers per
    ``(dataset, category)`` are kept, whatever the image sizes.

    What is pooled and what is averaged (see :meth:`results`):

    - **category**: pixel counts are summed over all pixels of all its images, image
      counts over its images; F1 and accuracy come from those sums.
    - **dataset**: the mean of its categories' figures (the paper lists categories and
      their mean).
    - **overall**: the mean of the dataset figures (the paper's "average" column).

    Every row also carries pooled figures (counts summed over everything the row
    covers), so both views are available.  Image-level ground truth is "the mask has an
    anomalous pixel"; image-level prediction defaults to "the predicted mask has one".

    Meters are mergeable (:meth:`merge`) and serialisable to a plain, JSON-friendly
    dict (:meth:`state_dict` / :meth:`from_state_dict`), so shards and resumed runs
    combine exactly.

    Examples
    --------
    >>> import numpy as np
    >>> meter = DetectionMeter()
    >>> gt = np.zeros((4, 4), bool); gt[0, :2] = True          # 2 anomalous pixels
    >>> pred = np.zeros((4, 4), bool); pred[0, 1:3] = True      # 1 hit, 1 false alarm
    >>> meter.update(pred, gt, dataset="MVTec-AD", category="bottle")
    >>> meter.update(np.zeros((2, 3)), np.zeros((2, 3)), dataset="MVTec-AD", category="bottle")
    >>> row = meter.results().category("MVTec-AD", "bottle")
    >>> row.pixel, row.image
    (Confusion(tp=1, fp=1, fn=1, tn=19), Confusion(tp=1, fp=0, fn=0, tn=1))
    >>> round(row.pixel_f1, 2), round(row.pixel_acc, 2), row.image_f1, row.image_acc
    (50.0, 90.91, 100.0, 100.0)
    >>> meter.update_counts(0, 5, 0, 11, dataset="MVTec-AD", category="cable")
    >>> ds = meter.results().dataset("MVTec-AD")
    >>> ds.image_f1, ds.image_acc, ds.pooled_image_acc     # mean of 100 and 0; pooled 2/3
    (50.0, 50.0, 66.66666666666666)
    >>> print(meter.to_markdown(categories=False))
    | Dataset | Category | Images | Pixel F1 | Pixel Acc | Image F1 | Image Acc |
    |---|---|--:|--:|--:|--:|--:|
    | MVTec-AD | **mean** | 3 | 25.0 | 79.8 | 50.0 | 50.0 |
    | **Average** |  | 3 | 25.0 | 79.8 | 50.0 | 50.0 |
    <BLANKLINE>
    """

    __slots__ = ("_counts",)
    __hash__ = None  # type: ignore[assignment]  # mutable

    def __init__(self) -> None:
        # (dataset, category) -> [pixel tp, fp, fn, tn, image tp, fp, fn, tn]
        self._counts: dict[tuple[str, str], list[int]] = {}

    def __repr__(self) -> str:
        return f"DetectionMeter(groups={len(self._counts)}, images={self.n_images})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DetectionMeter):
            return NotImplemented
        return self._counts == other._counts

    @property
    def n_images(self) -> int:
        """Number of images seen."""
        return sum(sum(c[4:]) for c in self._counts.values())

    @property
    def groups(self) -> list[tuple[str, str]]:
        """The ``(dataset, category)`` pairs seen, sorted."""
        return sorted(self._counts)

    def _add(
        self,
        dataset: Any,
        category: Any,
        tp: int,
        fp: int,
        fn: int,
        tn: int,
        image_gt: Any,
        image_pred: Any,
    ) -> None:
        key = (_name(dataset, "dataset"), _name(category, "category"))
        g = (tp + fn > 0) if image_gt is None else _flag(image_gt, "image_gt")
        p = (tp + fp > 0) if image_pred is None else _flag(image_pred, "image_pred")
        if not g and tp + fn > 0:
            raise ValueError("image_gt is False but the ground truth has anomalous pixels")
        c = self._counts.setdefault(key, [0] * 8)
        c[0] += tp
        c[1] += fp
        c[2] += fn
        c[3] += tn
        c[4 + (0 if g and p else 1 if p else 2 if g else 3)] += 1

    def update(
        self,
        pred_mask: Any,
        gt_mask: Any,
        *,
        category: str,
        dataset: str,
        image_pred: bool | None = None,
        image_gt: bool | None = None,
    ) -> None:
        """Add one image.

        Parameters
        ----------
        pred_mask, gt_mask : array_like of bool or numbers, shape (H, W)
            Predicted and ground-truth masks at the image's own size (non-zero is
            anomalous); the ground truth of a normal image is all zero.
        category, dataset : str
            The group the image belongs to.
        image_pred : bool, optional
            The image-level decision; default ``pred_mask.any()``.
        image_gt : bool, optional
            The image-level label; default ``gt_mask.any()``.  It may be True for an
            empty mask (an anomalous image without a pixel annotation) but not False
            for a non-empty one.
        """
        p = _as_mask(pred_mask, "pred_mask")
        g = _as_mask(gt_mask, "gt_mask")
        if p.shape != g.shape:
            raise ValueError(f"pred_mask has shape {p.shape} but gt_mask has shape {g.shape}")
        tp = int(np.count_nonzero(p & g))
        npred = int(np.count_nonzero(p))
        ngt = int(np.count_nonzero(g))
        fp, fn = npred - tp, ngt - tp
        self._add(dataset, category, tp, fp, fn, p.size - tp - fp - fn, image_gt, image_pred)

    def update_counts(
        self,
        tp: int,
        fp: int,
        fn: int,
        tn: int,
        image_gt: bool | None = None,
        image_pred: bool | None = None,
        *,
        category: str,
        dataset: str,
    ) -> None:
        """Add one image given its pixel confusion counts.

        ``image_gt`` defaults to ``tp + fn > 0`` and ``image_pred`` to ``tp + fp > 0``,
        so ``update_counts(*counts)`` equals :meth:`update` on the masks.
        """
        counts = [_count(v, n) for v, n in ((tp, "tp"), (fp, "fp"), (fn, "fn"), (tn, "tn"))]
        self._add(dataset, category, *counts, image_gt, image_pred)

    def update_scores(
        self,
        scores: Any,
        *,
        category: str,
        dataset: str,
        image_pred: bool | None = None,
        image_gt: bool | None = None,
    ) -> None:
        """Add one image from any object with ``tp, fp, fn, tn`` attributes.

        That is a ``textmask.Scores`` (from ``textmask.score`` or
        ``textmask.GroundTruth.score``, pixel level) or a :class:`Confusion`.
        """
        self.update_counts(
            scores.tp,
            scores.fp,
            scores.fn,
            scores.tn,
            image_gt,
            image_pred,
            category=category,
            dataset=dataset,
        )

    def merge(self, other: DetectionMeter) -> DetectionMeter:
        """Add the counts of ``other`` into this meter and return this meter."""
        if not isinstance(other, DetectionMeter):
            raise TypeError(f"can only merge a DetectionMeter, got {type(other).__name__}")
        for key, c in other._counts.items():
            mine = self._counts.setdefault(key, [0] * 8)
            for i, v in enumerate(c):
                mine[i] += v
        return self

    def state_dict(self) -> dict[str, Any]:
        """A plain dict of the counts (JSON-serialisable); see :meth:`from_state_dict`.

        >>> m = DetectionMeter(); m.update_counts(1, 0, 0, 3, category="c", dataset="d")
        >>> m.state_dict()["entries"]
        [{'dataset': 'd', 'category': 'c', 'pixel': [1, 0, 0, 3], 'image': [1, 0, 0, 0]}]
        >>> DetectionMeter.from_state_dict(m.state_dict()) == m
        True
        """
        entries = [
            {"dataset": d, "category": c, "pixel": list(v[:4]), "image": list(v[4:])}
            for (d, c), v in sorted(self._counts.items())
        ]
        return {"format": _DET_FORMAT, "version": _STATE_VERSION, "entries": entries}

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> DetectionMeter:
        """Rebuild a meter from :meth:`state_dict` output (validated)."""
        meter = cls()
        for e in _check_state(state, _DET_FORMAT):
            if not isinstance(e, Mapping):
                raise ValueError(f"state entry must be a dict, got {e!r}")
            key = (_name(e.get("dataset"), "dataset"), _name(e.get("category"), "category"))
            if key in meter._counts:
                raise ValueError(f"duplicate state entry for {key}")
            meter._counts[key] = _four_counts(e.get("pixel"), "pixel") + _four_counts(
                e.get("image"), "image"
            )
        return meter

    def results(self) -> DetectionReport:
        """Per category, per dataset and overall figures (percent); see the class doc.

        An empty meter gives a single overall row with NaN figures.
        """
        rows: list[DetectionRow] = []
        ds_rows: list[DetectionRow] = []
        total_px, total_img = Confusion(), Confusion()
        for ds in sorted({d for d, _ in self._counts}):
            cat_rows = []
            ds_px, ds_img = Confusion(), Confusion()
            for d, cat in sorted(self._counts):
                if d != ds:
                    continue
                c = self._counts[(d, cat)]
                px, img = _confusion(c[:4]), _confusion(c[4:])
                cat_rows.append(_detection_row("category", ds, cat, px, img, 1, None))
                ds_px, ds_img = ds_px + px, ds_img + img
            ds_row = _detection_row("dataset", ds, None, ds_px, ds_img, len(cat_rows), cat_rows)
            rows += [*cat_rows, ds_row]
            ds_rows.append(ds_row)
            total_px, total_img = total_px + ds_px, total_img + ds_img
        overall = _detection_row(
            "overall", None, None, total_px, total_img, len(self._counts), ds_rows
        )
        if not ds_rows:
            nan = math.nan
            overall = DetectionRow(
                "overall", None, None, 0, 0, *([nan] * 8), Confusion(), Confusion()
            )
        return DetectionReport((*rows, overall))

    def to_markdown(self, *, categories: bool = True, pooled: bool = False, digits: int = 1) -> str:
        """:meth:`results` as Markdown (see :meth:`DetectionReport.to_markdown`)."""
        return self.results().to_markdown(categories=categories, pooled=pooled, digits=digits)


# --------------------------------------------------------------------------- MMAD
MMAD_TYPES: tuple[str, ...] = (
    "Anomaly Discrimination",
    "Defect Classification",
    "Defect Localization",
    "Defect Description",
    "Defect Analysis",
    "Object Classification",
    "Object Analysis",
)
"""The 7 MMAD question types, in the paper's column order."""

_TYPE_ALIASES = {
    "anomalydetection": "Anomaly Discrimination",  # MMAD's raw name
    "objectstructure": "Object Analysis",
    "objectdetails": "Object Analysis",
}


def _type_key(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", name).lower()


_TYPE_LOOKUP = {_type_key(t): t for t in MMAD_TYPES} | _TYPE_ALIASES


def normalize_question_type(name: str) -> str:
    """The canonical MMAD question type of a raw type name.

    Case, spaces, ``_`` and ``-`` are ignored.  MMAD's raw names "Anomaly Detection",
    "Object Structure" and "Object Details" map to "Anomaly Discrimination" and (both)
    "Object Analysis".

    Raises
    ------
    ValueError
        For an unknown name; the message lists the 7 valid names.

    Examples
    --------
    >>> normalize_question_type("object_details")
    'Object Analysis'
    >>> normalize_question_type("  Anomaly   Detection ")
    'Anomaly Discrimination'
    >>> normalize_question_type("Defect Colour")
    Traceback (most recent call last):
    ...
    ValueError: unknown MMAD question type 'Defect Colour'; valid types: Anomaly Discrimination, Defect Classification, Defect Localization, Defect Description, Defect Analysis, Object Classification, Object Analysis (also accepted: Anomaly Detection, Object Structure, Object Details; case, spaces, '_' and '-' are ignored)
    """
    if not isinstance(name, str):
        raise TypeError(f"question type must be a str, got {name!r}")
    found = _TYPE_LOOKUP.get(_type_key(name))
    if found is None:
        raise ValueError(
            f"unknown MMAD question type {name!r}; valid types: {', '.join(MMAD_TYPES)} "
            "(also accepted: Anomaly Detection, Object Structure, Object Details; "
            "case, spaces, '_' and '-' are ignored)"
        )
    return found


@dataclass(frozen=True)
class MMADRow:
    """One row of an MMAD report.  Accuracies are percentages; NaN means no questions.

    Attributes
    ----------
    scope : {"dataset", "overall", "pooled"}
        A dataset, the mean over datasets, or all datasets pooled as one.
    dataset : str or None
        None for the overall and pooled rows.
    accuracy : dict
        Accuracy per question type, keyed and ordered as :data:`MMAD_TYPES`.  Anomaly
        Discrimination is the mean of ``normal_acc`` and ``abnormal_acc``.
    average : float
        Mean of the 7 type accuracies (NaN types skipped).
    normal_acc, abnormal_acc : float
        Anomaly Discrimination accuracy on normal and on abnormal images.
    n_questions, n_unanswerable : int
        Questions recorded (unanswerable included, whatever the variant) and how many
        of them were unanswerable.
    n_by_type : dict
        Questions recorded per type.
    """

    scope: Literal["dataset", "overall", "pooled"]
    dataset: str | None
    accuracy: dict[str, float]
    average: float
    normal_acc: float
    abnormal_acc: float
    n_questions: int
    n_unanswerable: int
    n_by_type: dict[str, int]

    def __getitem__(self, question_type: str) -> float:
        """Accuracy of a question type (any spelling :func:`normalize_question_type` reads)."""
        return self.accuracy[normalize_question_type(question_type)]

    def to_dict(self) -> dict[str, Any]:
        """A flat, JSON-friendly dict: one key per type, then the other fields."""
        d: dict[str, Any] = {"scope": self.scope, "dataset": self.dataset}
        d.update(self.accuracy)
        d.update(
            average=self.average,
            normal_acc=self.normal_acc,
            abnormal_acc=self.abnormal_acc,
            n_questions=self.n_questions,
            n_unanswerable=self.n_unanswerable,
        )
        return d


@dataclass(frozen=True)
class MMADReport:
    """The table :meth:`MMADMeter.results` returns: datasets (sorted), then overall.

    ``pooled`` is an extra row treating all datasets as one; ``unanswerable`` records
    the variant the figures were computed with.
    """

    rows: tuple[MMADRow, ...]
    pooled: MMADRow
    unanswerable: Unanswerable

    def __iter__(self) -> Iterator[MMADRow]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def overall(self) -> MMADRow:
        """The overall row: per type, the mean over datasets (MMAD's "Average" row)."""
        return self.rows[-1]

    def dataset(self, name: str) -> MMADRow:
        """The row of dataset ``name`` (KeyError if absent)."""
        for r in self.rows:
            if r.scope == "dataset" and r.dataset == name:
                return r
        raise KeyError(f"no dataset {name!r} in the report")

    def to_dicts(self) -> list[dict[str, Any]]:
        """All rows (datasets, overall) as flat dicts."""
        return [r.to_dict() for r in self.rows]

    def to_markdown(self, *, digits: int = 1) -> str:
        """The paper's Table 2 layout: rows = datasets + average, columns = types + average."""
        header = ["Dataset", *MMAD_TYPES, "Average"]
        align = ["---"] + ["--:"] * (len(MMAD_TYPES) + 1)
        body = [
            [
                r.dataset if r.scope == "dataset" and r.dataset is not None else "**Average**",
                *(_fmt(r.accuracy[t], digits) for t in MMAD_TYPES),
                _fmt(r.average, digits),
            ]
            for r in self.rows
        ]
        return _md_table(header, align, body)


class MMADMeter:
    """Streaming MMAD multiple-choice accuracy, per dataset and overall.

    Call :meth:`update` once per answered question.  :meth:`results` follows MMAD's
    summary script: per dataset, the accuracy of each of the 7 types (Anomaly
    Discrimination = mean of the accuracy on normal images and on abnormal images) and
    their average; the overall row is, per type, the mean over datasets, and its
    average is the mean of those 7.

    Two variants for unanswerable responses (``correct=None``, e.g. no option letter
    could be read): ``"wrong"`` (default) counts them as wrong answers; ``"drop"``
    leaves them out, as MMAD's own script does.

    Differences from MMAD's script (``helper/summary.py``): a type (or one side of
    Anomaly Discrimination) without questions has accuracy NaN and is skipped by the
    means, where the script counts it as 0; and the script's overall average is the
    mean of the per-dataset averages, which equals the mean of the overall row's 7
    types whenever no accuracy is NaN.  Unanswerable handling defaults to "wrong",
    the script's behaviour is ``unanswerable="drop"``.

    Examples
    --------
    >>> m = MMADMeter()
    >>> for ok in (True, True, True, False):
    ...     m.update("Defect Classification", ok, dataset="VisA", category="pcb1",
    ...              is_normal=False)
    >>> m.update("Anomaly Detection", True, dataset="VisA", category="pcb1", is_normal=True)
    >>> m.update("anomaly discrimination", None, dataset="VisA", category="pcb1",
    ...          is_normal=False)
    >>> r = m.results().dataset("VisA")
    >>> r["Defect Classification"], r.normal_acc, r.abnormal_acc, r["Anomaly Discrimination"]
    (75.0, 100.0, 0.0, 50.0)
    >>> r.average                                   # the mean of the 2 types present
    62.5
    >>> m.results(unanswerable="drop").dataset("VisA")["Anomaly Discrimination"]
    100.0
    """

    __slots__ = ("_counts",)
    __hash__ = None  # type: ignore[assignment]  # mutable

    def __init__(self) -> None:
        # (dataset, category, type, is_normal) -> [correct, wrong, unanswerable]
        self._counts: dict[tuple[str, str, str, bool], list[int]] = {}

    def __repr__(self) -> str:
        return f"MMADMeter(questions={self.n_questions}, unanswerable={self.n_unanswerable})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MMADMeter):
            return NotImplemented
        return self._counts == other._counts

    @property
    def n_questions(self) -> int:
        """Questions recorded, unanswerable included."""
        return sum(sum(c) for c in self._counts.values())

    @property
    def n_unanswerable(self) -> int:
        """Questions recorded as unanswerable."""
        return sum(c[2] for c in self._counts.values())

    def update(
        self,
        question_type: str,
        correct: bool | None,
        *,
        dataset: str,
        category: str,
        is_normal: bool,
    ) -> None:
        """Record one question.

        Parameters
        ----------
        question_type : str
            Raw or canonical type name (see :func:`normalize_question_type`).
        correct : bool or None
            Whether the answer was right; None when the response was unanswerable.
        dataset, category : str
            Where the image comes from (MMAD: the first two path components).
        is_normal : bool
            Whether the image is normal (MMAD: ``good`` in its path).
        """
        t = normalize_question_type(question_type)
        slot = 2 if correct is None else 0 if _flag(correct, "correct") else 1
        key = (_name(dataset, "dataset"), _name(category, "category"), t)
        c = self._counts.setdefault((*key, _flag(is_normal, "is_normal")), [0, 0, 0])
        c[slot] += 1

    def merge(self, other: MMADMeter) -> MMADMeter:
        """Add the counts of ``other`` into this meter and return this meter."""
        if not isinstance(other, MMADMeter):
            raise TypeError(f"can only merge an MMADMeter, got {type(other).__name__}")
        for key, c in other._counts.items():
            mine = self._counts.setdefault(key, [0, 0, 0])
            for i, v in enumerate(c):
                mine[i] += v
        return self

    def state_dict(self) -> dict[str, Any]:
        """A plain dict of the counts (JSON-serialisable); see :meth:`from_state_dict`."""
        entries = [
            {
                "dataset": d,
                "category": c,
                "type": t,
                "normal": n,
                "correct": v[0],
                "wrong": v[1],
                "unanswerable": v[2],
            }
            for (d, c, t, n), v in sorted(self._counts.items())
        ]
        return {"format": _MMAD_FORMAT, "version": _STATE_VERSION, "entries": entries}

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> MMADMeter:
        """Rebuild a meter from :meth:`state_dict` output (validated)."""
        meter = cls()
        for e in _check_state(state, _MMAD_FORMAT):
            if not isinstance(e, Mapping):
                raise ValueError(f"state entry must be a dict, got {e!r}")
            key = (
                _name(e.get("dataset"), "dataset"),
                _name(e.get("category"), "category"),
                normalize_question_type(e.get("type")),  # type: ignore[arg-type]
                _flag(e.get("normal"), "normal"),
            )
            if key in meter._counts:
                raise ValueError(f"duplicate state entry for {key}")
            meter._counts[key] = [_count(e.get(k), k) for k in ("correct", "wrong", "unanswerable")]
        return meter

    def _row(
        self,
        scope: Literal["dataset", "pooled"],
        dataset: str | None,
        unanswerable: Unanswerable,
    ) -> MMADRow:
        sums: dict[tuple[str, bool], list[int]] = {}
        for (d, _, t, n), v in self._counts.items():
            if dataset is None or d == dataset:
                s = sums.setdefault((t, n), [0, 0, 0])
                for i in range(3):
                    s[i] += v[i]

        def acc(parts: list[list[int]]) -> tuple[float, int]:
            c = sum(p[0] for p in parts)
            w = sum(p[1] for p in parts)
            u = sum(p[2] for p in parts)
            den = c + w + (u if unanswerable == "wrong" else 0)
            return (100.0 * c / den if den else math.nan), c + w + u

        accuracy: dict[str, float] = {}
        n_by_type: dict[str, int] = {}
        normal_acc = abnormal_acc = math.nan
        for t in MMAD_TYPES:
            parts = {n: s for (tt, n), s in sums.items() if tt == t}
            if t == MMAD_TYPES[0]:
                normal_acc, n_norm = acc([parts[True]] if True in parts else [])
                abnormal_acc, n_abn = acc([parts[False]] if False in parts else [])
                accuracy[t] = _mean([normal_acc, abnormal_acc])
                n_by_type[t] = n_norm + n_abn
            else:
                accuracy[t], n_by_type[t] = acc(list(parts.values()))
        return MMADRow(
            scope,
            dataset,
            accuracy,
            _mean(list(accuracy.values())),
            normal_acc,
            abnormal_acc,
            sum(sum(s) for s in sums.values()),
            sum(s[2] for s in sums.values()),
            n_by_type,
        )

    def results(self, *, unanswerable: Unanswerable = "wrong") -> MMADReport:
        """Accuracy per dataset (sorted) and overall, in percent.

        Parameters
        ----------
        unanswerable : {"wrong", "drop"}
            Count unanswerable responses as wrong (default) or leave them out (MMAD's
            script).
        """
        if unanswerable not in ("wrong", "drop"):
            raise ValueError(f"unanswerable must be 'wrong' or 'drop', got {unanswerable!r}")
        ds_rows = [
            self._row("dataset", d, unanswerable) for d in sorted({k[0] for k in self._counts})
        ]
        accuracy = {t: _mean([r.accuracy[t] for r in ds_rows]) for t in MMAD_TYPES}
        overall = MMADRow(
            "overall",
            None,
            accuracy,
            _mean(list(accuracy.values())),
            _mean([r.normal_acc for r in ds_rows]),
            _mean([r.abnormal_acc for r in ds_rows]),
            sum(r.n_questions for r in ds_rows),
            sum(r.n_unanswerable for r in ds_rows),
            {t: sum(r.n_by_type[t] for r in ds_rows) for t in MMAD_TYPES},
        )
        return MMADReport(
            (*ds_rows, overall), self._row("pooled", None, unanswerable), unanswerable
        )

    def to_markdown(self, *, unanswerable: Unanswerable = "wrong", digits: int = 1) -> str:
        """:meth:`results` as Markdown in the paper's Table 2 layout."""
        return self.results(unanswerable=unanswerable).to_markdown(digits=digits)


# --------------------------------------------------------------------------- thresholds
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
        pairs.append((s, _as_mask(g, f"{what} ground truth")))
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
    Confusion(tp=1, fp=1, fn=0, tn=1)
    """
    s_list, g_list = _pieces(scores), _pieces(gt)
    if len(s_list) != len(g_list):
        raise ValueError(f"{len(s_list)} score arrays but {len(g_list)} ground-truth arrays")
    tp = fp = fn = n = 0
    for s, g in zip(s_list, g_list, strict=True):
        if s.shape != g.shape:
            raise ValueError(f"scores shape {s.shape} != ground truth shape {g.shape}")
        p, gb = apply_threshold(s, threshold), _as_mask(g, "ground truth")
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

    This is the Anomalib-style protocol METHOD.md prescribes for score-map baselines:
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
