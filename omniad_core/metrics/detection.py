"""Pixel- and image-level detection F1 / accuracy per category, dataset and overall."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from omniad_core.metrics._common import (
    DET_FORMAT,
    STATE_VERSION,
    as_bool_mask,
    check_state,
    count,
    flag,
    fmt,
    four_counts,
    md_table,
    mean,
    name_str,
)
from omniad_core.metrics.confusion import Confusion

__all__ = ["DetectionMeter", "DetectionReport", "DetectionRow"]


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
            mean([r.pixel_f1 for r in means]),
            mean([r.pixel_acc for r in means]),
            mean([r.image_f1 for r in means]),
            mean([r.image_acc for r in means]),
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
            body.append([first, second, str(r.n_images), *(fmt(v, digits) for v in vals)])
        return md_table(header, align, body)


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
    >>> row.pixel, row.image      # Confusion is textmask.Scores
    (Scores(tp=1, fp=1, fn=1, tn=19), Scores(tp=1, fp=0, fn=0, tn=1))
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
        key = (name_str(dataset, "dataset"), name_str(category, "category"))
        g = (tp + fn > 0) if image_gt is None else flag(image_gt, "image_gt")
        p = (tp + fp > 0) if image_pred is None else flag(image_pred, "image_pred")
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
        p = as_bool_mask(pred_mask, "pred_mask")
        g = as_bool_mask(gt_mask, "gt_mask")
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
        counts = [count(v, n) for v, n in ((tp, "tp"), (fp, "fp"), (fn, "fn"), (tn, "tn"))]
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

        That is a :class:`Confusion` (``textmask.Scores``, e.g. from ``textmask.score``
        or ``textmask.GroundTruth.score`` at pixel level).
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
        return {"format": DET_FORMAT, "version": STATE_VERSION, "entries": entries}

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> DetectionMeter:
        """Rebuild a meter from :meth:`state_dict` output (validated)."""
        meter = cls()
        for e in check_state(state, DET_FORMAT):
            if not isinstance(e, Mapping):
                raise ValueError(f"state entry must be a dict, got {e!r}")
            key = (name_str(e.get("dataset"), "dataset"), name_str(e.get("category"), "category"))
            if key in meter._counts:
                raise ValueError(f"duplicate state entry for {key}")
            meter._counts[key] = four_counts(e.get("pixel"), "pixel") + four_counts(
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
                px, img = Confusion(*c[:4]), Confusion(*c[4:])
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
