"""Image folders in the layouts of real anomaly-detection datasets, as image items.

A folder reader lists *images* (an :class:`ImageItem`: the image, its mask, category
and defect-folder name, a normal reference) or :class:`~omniad_train.data.records.Reject`
objects; question writers (:mod:`omniad_train.data.templates`) turn items into records.
Layouts (see :data:`LAYOUTS`), detected per category folder:

- ``mvtec``: ``<category>/test/<defect>/*.png`` with masks in
  ``<category>/ground_truth/<defect>/`` (MVTec AD, VisA in MVTec layout, MVTec LOCO,
  GoodsAD, ...), normal references in ``train/good/``;
- ``mvtec3d``: MVTec 3D-AD, RGB only: ``<category>/test/<defect>/rgb/*.png`` with masks
  in ``test/<defect>/gt/`` (class ids 253/254/255, 0 = good) and ``train/good/rgb/``;
- ``visa``: VisA's original layout (:mod:`omniad_train.data.visa`).

No folder is dropped silently: a folder that holds no image the reader recognises is a
reject naming it and the layouts expected.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from omniad_core.images import ImageError
from omniad_train.data.masks import (
    IMAGE_SUFFIXES,
    default_mask_info,
    defect_mask_problem,
    is_image,
    mask_files_problem,
)
from omniad_train.data.paths import path_problem, real_root, safe_is_dir
from omniad_train.data.reasoning import rng_for
from omniad_train.data.records import MaskInfo, Reject

__all__ = [
    "LAYOUTS",
    "FolderContext",
    "ImageItem",
    "expected_layouts",
    "find_mvtec_mask",
    "iter_images",
    "layout_reject",
]

#: The folder layouts the readers know: name -> what the folders look like.
LAYOUTS = {
    "mvtec": "<category>/test/<defect>/*.png with masks in <category>/ground_truth/<defect>/ "
    "(MVTec AD, VisA in MVTec layout, MVTec LOCO, GoodsAD)",
    "mvtec3d": "<category>/test/<defect>/rgb/*.png with masks in <category>/test/<defect>/gt/ "
    "(MVTec 3D-AD, RGB only)",
    "visa": "split_csv/1cls.csv with <object>/Data/Images/{Normal,Anomaly}/ and "
    "<object>/Data/Masks/Anomaly/ (VisA's original layout)",
}
LayoutName = str
MaskInfoFn = Callable[[str], MaskInfo]


def expected_layouts(names: tuple[str, ...] | None = None) -> str:
    """The layouts a reader expected, for reject reasons.

    >>> expected_layouts(("mvtec3d",))
    '<category>/test/<defect>/rgb/*.png with masks in <category>/test/<defect>/gt/ (MVTec 3D-AD, RGB only)'
    """
    return "; or ".join(LAYOUTS[n] for n in (names or tuple(LAYOUTS)))


@dataclass(frozen=True)
class ImageItem:
    """One image of a folder dataset, before any question is written about it.

    ``rel`` is the path relative to the folder holding the categories (used in rejects);
    ``defect`` is the defect-folder name (``""`` for normal images); ``info`` describes
    the mask of a defect image (None for normal ones).
    """

    image_id: str
    image: str
    rel: str
    anomalous: bool
    category: str
    dataset: str
    defect: str = ""
    mask: str | None = None
    info: MaskInfo | None = None
    reference: list[str] = field(default_factory=list)
    split: str = "test"
    layout: str = "mvtec"


@dataclass(frozen=True)
class FolderContext:
    """What the folders of one root share."""

    top: Path
    root_real: str
    name: str
    seed: int
    describe: MaskInfoFn

    def rel(self, p: Path) -> str:
        return p.relative_to(self.top).as_posix() if p.is_relative_to(self.top) else str(p)

    def item(
        self,
        img: Path,
        *,
        category: str,
        defect: str,
        anomalous: bool,
        mask: Path | None,
        missing_mask: str,
        pool: list[Path],
        split: str = "test",
        layout: str = "mvtec",
    ) -> ImageItem | Reject:
        """The item of image ``img`` (checked inside the root, its mask read) or a reject.

        ``missing_mask`` is the reason used when a defect image has no ``mask``.
        """
        rel = self.rel(img)
        problem = path_problem(img, self.root_real, f"the image {rel!r}")
        if problem is not None:
            return Reject(source="mvtec", record=rel, reason=problem)
        image_id = f"mvtec:{self.name}/{rel}"
        others = [p for p in pool if p != img]
        reference = (
            [str(rng_for(self.seed, image_id, "reference").choice(others))] if others else []
        )
        info = None
        if anomalous:
            if mask is None:
                return Reject(source="mvtec", record=rel, reason=missing_mask)
            info, problem = self._mask_info(rel, mask)
            if problem is not None:
                return Reject(source="mvtec", record=rel, reason=problem)
        return ImageItem(
            image_id=image_id,
            image=str(img),
            rel=rel,
            anomalous=anomalous,
            category=category,
            dataset=self.name,
            defect=defect if anomalous else "",
            mask=str(mask) if anomalous and mask is not None else None,
            info=info,
            reference=reference,
            split=split,
            layout=layout,
        )

    def _mask_info(self, rel: str, mask: Path) -> tuple[MaskInfo | None, str | None]:
        problem = mask_files_problem(mask, self.root_real, f"the mask {self.rel(mask)!r}")
        if problem is not None:
            return None, problem
        try:
            info = self.describe(str(mask))
        except (ImageError, OSError, ValueError) as exc:
            return None, (
                f"cannot read the mask of defect image {rel}: {exc}; fix the mask file (an 8- or "
                "16-bit grayscale PNG of the image's size) or move the image to the normal images"
            )
        return info, defect_mask_problem(str(mask), info, "mvtec")


def layout_reject(ctx: FolderContext, folder: Path, why: str, names: tuple[str, ...]) -> Reject:
    """The reject of a folder that holds no image the reader recognises."""
    rel = ctx.rel(folder)
    if rel == ".":  # the root itself
        rel = str(folder)
    return Reject(
        source="mvtec",
        record=rel,
        reason=f"the folder {rel} {why}, so none of it is read; expected {expected_layouts(names)}; "
        "arrange the images that way or leave the folder out",
    )


def unlistable(ctx: FolderContext, folder: Path, exc: OSError) -> Reject:
    rel = ctx.rel(folder)
    return Reject(
        source="mvtec",
        record=rel,
        reason=f"cannot list the folder {rel} ({exc.strerror or exc}); its images are left "
        "out: make it readable",
    )


def images_in(folder: Path) -> list[Path]:
    """The image files of ``folder``, sorted ([] when it is not a folder; OSError when
    it cannot be listed)."""
    return sorted(p for p in listdir(folder) if is_image(p))


def listdir(folder: Path) -> list[Path]:
    return list(folder.iterdir()) if safe_is_dir(folder) else []


def find_mvtec_mask(gt_dir: Path, stem: str, names: dict[str, Path] | None = None) -> Path | None:
    """The mask of image ``stem`` in ``ground_truth/<defect>``: ``<stem>_mask.png`` (MVTec AD),
    ``<stem>.png`` (VisA, any image suffix) or a folder ``<stem>/`` of masks (MVTec LOCO)."""
    if names is None:
        names = {p.name.lower(): p for p in gt_dir.iterdir()} if gt_dir.is_dir() else {}
    low = stem.lower()
    for base in (f"{low}_mask", low):
        for suffix in IMAGE_SUFFIXES:
            hit = names.get(base + suffix)
            if hit is not None and hit.is_file():
                return hit
    hit = names.get(low)
    return hit if hit is not None and hit.is_dir() else None


# --------------------------------------------------------------------------- roots
def _kind_of(folder: Path) -> str | None:
    if safe_is_dir(folder / "test"):
        return "mvtec"  # mvtec or mvtec3d: told apart per defect folder
    if safe_is_dir(folder / "Data" / "Images"):
        return "visa"
    return None


def iter_images(
    root: str | os.PathLike[str],
    *,
    dataset: str | None = None,
    layout: str = "auto",
    seed: int = 0,
    include_train_good: bool = False,
    mask_info: MaskInfoFn | None = None,
) -> Iterator[ImageItem | Reject]:
    """The images of a dataset folder in any known layout (see :data:`LAYOUTS`).

    ``root`` holds category folders or is one; a VisA root holds ``split_csv/1cls.csv``.
    ``layout`` is ``"auto"`` (detected per category folder), ``"mvtec"``, ``"mvtec3d"``
    or ``"visa"``.  Sub-folders of ``root`` that are no category folder, defect folders
    without images and a root without any category are rejects naming the folder and the
    layouts expected.  ``dataset`` defaults to the name of the folder holding the
    categories.

    Raises
    ------
    FileNotFoundError
        When ``root`` is not a folder.
    ValueError
        For an unknown ``layout`` or a root that cannot be listed.
    """
    from omniad_train.data import visa

    if layout not in ("auto", *LAYOUTS):
        raise ValueError(f"layout must be 'auto' or one of {', '.join(LAYOUTS)}, got {layout!r}")
    base = Path(root)
    if not base.is_dir():
        raise FileNotFoundError(f"no dataset folder at {str(base)!r}")
    describe = mask_info or default_mask_info
    wanted = tuple(LAYOUTS) if layout == "auto" else (layout,)
    single = _kind_of(base)
    top = base.parent if single else base
    ctx = FolderContext(top, real_root(base), dataset or top.name, seed, describe)
    if "visa" in wanted and visa.has_split_csv(base):
        yield from visa.iter_visa_csv(base, ctx, include_train_good)
        return
    if single is not None:
        categories = [(base, single)]
    else:
        try:
            subs = sorted(d for d in base.iterdir() if not d.name.startswith("."))
        except OSError as exc:
            raise ValueError(
                f"cannot list the dataset folder {str(base)!r} ({exc.strerror or exc}); make it readable"
            ) from None
        categories = []
        for d in subs:
            if not safe_is_dir(d):
                continue
            kind = _kind_of(d)
            if kind is None:
                yield layout_reject(
                    ctx, d, "is no category folder (no test/ and no Data/Images/)", wanted
                )
            else:
                categories.append((d, kind))
        if not categories:
            yield layout_reject(ctx, base, "holds no category folder", wanted)
            return
    for cat, kind in categories:
        if kind == "visa" and "visa" in wanted:
            yield from visa.iter_visa_category(cat, ctx)
        elif kind == "mvtec" and set(wanted) & {"mvtec", "mvtec3d"}:
            yield from _category(cat, ctx, wanted, include_train_good)
        else:
            yield layout_reject(ctx, cat, f"is in the {kind} layout, not the one asked for", wanted)


# --------------------------------------------------------------------------- MVTec, 3D-AD
def _category(
    cat: Path, ctx: FolderContext, wanted: tuple[str, ...], include_train_good: bool
) -> Iterator[ImageItem | Reject]:
    good = cat / "train" / "good"
    try:
        train_good = images_in(good) or images_in(good / "rgb")
        train_good = [
            p for p in train_good if path_problem(p, ctx.root_real, "a reference") is None
        ]
    except OSError as exc:  # no references then
        train_good = []
        if not include_train_good:
            yield unlistable(ctx, good, exc)
    try:
        folders = [d for d in sorted(listdir(cat / "test")) if safe_is_dir(d)]
    except OSError as exc:
        yield unlistable(ctx, cat / "test", exc)
        folders = []
    if not folders:
        yield layout_reject(ctx, cat / "test", "holds no defect or good folder", wanted)
    for folder in folders:
        yield from _test_folder(folder, cat, train_good, ctx, wanted)
    if include_train_good:
        try:
            pics = images_in(good)
            rgb = not pics and bool(images_in(good / "rgb"))
            pics = pics or images_in(good / "rgb")
        except OSError as exc:
            yield unlistable(ctx, good, exc)
            return
        for img in pics:
            yield ctx.item(
                img,
                category=cat.name,
                defect="",
                anomalous=False,
                mask=None,
                missing_mask="",
                pool=train_good,
                split="train",
                layout="mvtec3d" if rgb else "mvtec",
            )


def _test_folder(
    folder: Path, cat: Path, train_good: list[Path], ctx: FolderContext, wanted: tuple[str, ...]
) -> Iterator[ImageItem | Reject]:
    defect = folder.name
    anomalous = defect != "good"
    try:
        images = images_in(folder) if "mvtec" in wanted else []
        rgb = [] if images or "mvtec3d" not in wanted else images_in(folder / "rgb")
    except OSError as exc:
        yield unlistable(ctx, folder, exc)
        return
    if not images and not rgb:
        yield layout_reject(ctx, folder, "holds no image the reader recognises", wanted)
        return
    if rgb:  # MVTec 3D-AD: test/<defect>/rgb/<name>.png, masks test/<defect>/gt/<name>.png
        gt_dir, layout = folder / "gt", "mvtec3d"
    else:
        gt_dir, layout = cat / "ground_truth" / defect, "mvtec"
    try:
        names = {p.name.lower(): p for p in listdir(gt_dir)} if anomalous else {}
    except OSError as exc:
        yield unlistable(ctx, gt_dir, exc)
        return
    g = ctx.rel(gt_dir)
    for img in rgb or images:
        if layout == "mvtec3d":
            found = _find_stem(names, img.stem)
            missing = (
                f"missing mask for defect image {ctx.rel(img)}: expected {g}/{img.stem}.png "
                "(MVTec 3D-AD); add the mask or move the image to test/good/rgb"
            )
        else:
            found = find_mvtec_mask(gt_dir, img.stem, names) if anomalous else None
            missing = (
                f"missing mask for defect image {ctx.rel(img)}: expected {g}/{img.stem}_mask.png "
                f"(MVTec AD), {g}/{img.stem}.png (VisA) or a folder {g}/{img.stem}/ of masks "
                "(MVTec LOCO); add the mask or move the image to test/good"
            )
        yield ctx.item(
            img,
            category=cat.name,
            defect=defect,
            anomalous=anomalous,
            mask=found,
            missing_mask=missing,
            pool=train_good,
            layout=layout,
        )


def _find_stem(names: dict[str, Path], stem: str) -> Path | None:
    low = stem.lower()
    for suffix in IMAGE_SUFFIXES:
        hit = names.get(low + suffix)
        if hit is not None and hit.is_file():
            return hit
    return None
