"""VisA in its original layout, as image items (see :mod:`omniad_train.data.layouts`).

::

    <root>/split_csv/1cls.csv                 object,split,label,image,mask
    <root>/<object>/Data/Images/Normal/*.JPG  normal images
    <root>/<object>/Data/Images/Anomaly/*.JPG defect images
    <root>/<object>/Data/Masks/Anomaly/*.png  their masks (0 and small non-zero values)

With ``split_csv/1cls.csv`` the CSV says which images are test images (``split`` test),
which are normal (``label`` normal) and where each mask is; ``train`` normal images are
the 1-shot references.  Paths in the CSV are relative to the root and must stay inside
it.  A category folder without the CSV is read from its folders: ``Normal`` images are
normal test images (and references), ``Anomaly`` images are defect images whose mask is
``Data/Masks/Anomaly/<name>.png``.  VisA names no defect types: every defect image has
the defect name ``anomaly``.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from omniad_train.data.layouts import (
    FolderContext,
    ImageItem,
    images_in,
    layout_reject,
    unlistable,
)
from omniad_train.data.masks import IMAGE_SUFFIXES
from omniad_train.data.paths import path_problem, safe_exists, safe_is_file
from omniad_train.data.records import Reject, safe_text

__all__ = ["SPLIT_CSV", "VISA_DEFECT", "has_split_csv", "iter_visa_category", "iter_visa_csv"]

#: Where VisA's one-class split lives, relative to the root.
SPLIT_CSV = "split_csv/1cls.csv"
#: The defect name of every VisA defect image (VisA's CSV names no defect type).
VISA_DEFECT = "anomaly"
_COLUMNS = ("object", "split", "label", "image", "mask")


def has_split_csv(root: Path) -> bool:
    return safe_is_file(root / SPLIT_CSV)


def _csv_rows(path: Path) -> tuple[list[dict[str, str]] | None, str | None]:
    try:
        with path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip().lower() for h in reader.fieldnames or []]
            missing = [c for c in _COLUMNS[:4] if c not in header]
            if missing:
                return None, (
                    f"{SPLIT_CSV} has the columns {header or 'none'}, not {', '.join(_COLUMNS)} "
                    f"(missing {', '.join(missing)}); use VisA's original split file"
                )
            rows = []
            for row in reader:
                rows.append({(k or "").strip().lower(): (v or "").strip() for k, v in row.items()})
            return rows, None
    except (OSError, csv.Error) as exc:
        return None, f"cannot read {SPLIT_CSV} ({exc}); re-download VisA's split_csv folder"


def iter_visa_csv(
    root: Path, ctx: FolderContext, include_train_good: bool
) -> Iterator[ImageItem | Reject]:
    """The images listed in ``split_csv/1cls.csv`` (test split; with
    ``include_train_good`` also the train split's normal images)."""
    rows, problem = _csv_rows(root / SPLIT_CSV)
    if rows is None:
        yield Reject(source="mvtec", record=SPLIT_CSV, reason=problem or "")
        return
    checked: list[tuple[int, dict[str, str], Path | None, str | None]] = []
    pools: dict[str, list[Path]] = {}
    for line, row in enumerate(rows, 2):
        image, why = _csv_path(root, row.get("image", ""), "image", ctx)
        checked.append((line, row, image, why))
        if image is not None and row.get("split") == "train" and row.get("label") == "normal":
            pools.setdefault(row.get("object", ""), []).append(image)
    n_test = 0
    first_line: dict[Path, int] = {}
    for line, row, image, why in checked:
        where = f"{SPLIT_CSV}:{line}"
        split, label, obj = row.get("split", ""), row.get("label", ""), row.get("object", "")
        if split not in ("train", "test") or label not in ("normal", "anomaly") or not obj:
            got = safe_text(f"object={obj!r}, split={split!r}, label={label!r}")
            yield Reject(
                source="mvtec",
                record=where,
                reason=f"the row must name an object, split train or test and label normal or "
                f"anomaly, got {got}; fix the row",
            )
            continue
        if split == "train" and not (include_train_good and label == "normal"):
            continue
        n_test += split == "test"
        if image is None:
            yield Reject(source="mvtec", record=where, reason=why or "")
            continue
        if image in first_line:
            yield Reject(
                source="mvtec",
                record=where,
                reason=f"the image {ctx.rel(image)} is listed twice (first on line "
                f"{first_line[image]}); keep one row per image",
            )
            continue
        first_line[image] = line
        mask, missing = None, ""
        if label == "anomaly":
            mask, missing = _csv_path(root, row.get("mask", ""), "mask", ctx)
            if mask is not None and not safe_exists(mask):
                missing = (
                    f"missing mask for defect image {ctx.rel(image)}: {ctx.rel(mask)} (named in "
                    f"{SPLIT_CSV}) does not exist; add the mask or fix the row"
                )
                mask = None
            if mask is None:  # a problem of the row: named by its line
                yield Reject(source="mvtec", record=where, reason=missing or "")
                continue
        yield ctx.item(
            image,
            category=obj,
            defect=VISA_DEFECT,
            anomalous=label == "anomaly",
            mask=mask,
            missing_mask=missing or "",
            pool=pools.get(obj, []),
            split=split,
            layout="visa",
        )
    if n_test == 0:
        yield layout_reject(ctx, root, f"has a {SPLIT_CSV} without test rows", ("visa",))


def _csv_path(
    root: Path, value: str, field: str, ctx: FolderContext
) -> tuple[Path | None, str | None]:
    """The file a CSV cell names (inside the root) or the reason it cannot be used."""
    if not value:
        what = "mask of an anomaly row" if field == "mask" else "image"
        return None, f"the row names no {what} in {SPLIT_CSV}; fill in the {field} column"
    p = root / value
    problem = path_problem(p, ctx.root_real, f"the {field} {value!r} in {SPLIT_CSV}")
    if problem is not None:
        return None, problem
    if field == "image" and not safe_is_file(p):
        return None, f"image file not found at {str(p)!r} (named in {SPLIT_CSV}); fix the row"
    return p, None


def iter_visa_category(cat: Path, ctx: FolderContext) -> Iterator[ImageItem | Reject]:
    """A VisA category folder without the split file: ``Data/Images/{Normal,Anomaly}``."""
    folders = cat / "Data" / "Images"
    try:
        normal = images_in(folders / "Normal")
        anomaly = images_in(folders / "Anomaly")
        masks = {p.name.lower(): p for p in images_in(cat / "Data" / "Masks" / "Anomaly")}
    except OSError as exc:
        yield unlistable(ctx, folders, exc)
        return
    if not normal and not anomaly:
        yield layout_reject(ctx, folders, "holds no image in Normal/ or Anomaly/", ("visa",))
        return
    gt = ctx.rel(cat / "Data" / "Masks" / "Anomaly")
    for img in normal:
        yield ctx.item(
            img,
            category=cat.name,
            defect="",
            anomalous=False,
            mask=None,
            missing_mask="",
            pool=normal,
            layout="visa",
        )
    for img in anomaly:
        found = next(
            (masks[n] for s in IMAGE_SUFFIXES if (n := img.stem.lower() + s) in masks), None
        )
        yield ctx.item(
            img,
            category=cat.name,
            defect=VISA_DEFECT,
            anomalous=True,
            mask=found,
            missing_mask=f"missing mask for defect image {ctx.rel(img)}: expected "
            f"{gt}/{img.stem}.png (VisA); add the mask or move the image to Data/Images/Normal",
            pool=normal,
            layout="visa",
        )
