"""Readers of MMAD's ``mmad.json`` and of MVTec-style folders, as records.

Each reader yields :class:`~omniad_train.data.records.Record` objects and, for bad
inputs, :class:`~omniad_train.data.records.Reject` objects whose reason names the
problem and the fix; readers never raise for a bad record.  They check what is cheap
(files exist, options, answer letters, question types, masks of defect images); images
are decoded later, by whoever uses the records.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from omniad_core.images import ImageError, load_mask, mask_from_array
from omniad_core.prompts import DEFECT_QUESTION
from omniad_train.data.paths import path_problem, real_root, safe_exists, safe_is_dir, safe_is_file
from omniad_train.data.reasoning import LOCATION_QUESTION, describe_mask, location_question, rng_for
from omniad_train.data.records import (
    MaskInfo,
    Record,
    Reject,
    describe_value,
    field_problem,
    make_record,
)

__all__ = [
    "IMAGE_SUFFIXES",
    "defect_mask_problem",
    "find_mvtec_mask",
    "iter_mmad",
    "iter_mvtec",
    "mask_files_problem",
    "mask_from_array",
    "read_mask",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

ReferenceFrom = Literal["similar", "random"]
MaskInfoFn = Callable[[str], MaskInfo]


def _is_image(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_SUFFIXES and safe_is_file(p)


def _mask_file(p: Path) -> np.ndarray:
    name = repr(str(p))
    if not safe_is_file(p):
        raise ImageError(f"no mask file at {name}; check the path or add the mask")
    return load_mask(p)


def read_mask(source: str | os.PathLike[str]) -> np.ndarray:
    """A boolean mask from a mask file, or the union of a folder of masks (MVTec LOCO).

    The file's raw values are read (8, 16 or 32 bit integers, floats; no conversion to
    8 bits) and the mask is where they are non-zero (floats: positive), by
    :func:`omniad_core.images.load_mask`, the one mask reader of the toolkit (its
    image pixel limit applies).

    Raises :class:`~omniad_core.images.ImageError` for unreadable files, NaN values, an
    empty folder, or masks of different sizes in one folder.
    """
    p = Path(source)
    if not safe_is_dir(p):
        return _mask_file(p)
    files = sorted(f for f in p.iterdir() if _is_image(f))
    if not files:
        raise ImageError(
            f"the mask folder {str(p)!r} holds no mask images; put the masks ({', '.join(IMAGE_SUFFIXES)}) in it"
        )
    out: np.ndarray | None = None
    for f in files:
        m = _mask_file(f)
        if out is None:
            out = m.copy()
        elif m.shape != out.shape:
            raise ImageError(
                f"the masks in {str(p)!r} differ in size ({f.name} is {m.shape[0]}x{m.shape[1]}, "
                f"{files[0].name} is {out.shape[0]}x{out.shape[1]}); all must have the image's size"
            )
        else:
            out |= m
    assert out is not None
    return out


#: How to fix an empty mask, per source.
_EMPTY_MASK_FIX = {
    "mvtec": "draw the defect in the mask, or move the image to test/good",
    "mmad": "draw the defect in the mask, or move the image under a 'good' folder",
    "jsonl": 'draw the defect in the mask, or set "anomalous": false and remove "mask"',
}


def defect_mask_problem(mask: str, info: MaskInfo, source: str) -> str | None:
    """The reason to reject a defect image whose mask is empty (all zero), or None.

    The one rule for readers, ``prepare`` and the evaluation runners: a defect image
    needs a non-empty mask (a missing mask is rejected by the readers already).

    >>> defect_mask_problem("m.png", MaskInfo(height=2, width=2, area=0.0), "mvtec")
    'the mask m.png of a defect image is empty (all zero); draw the defect in the mask, or move the image to test/good'
    """
    if not info.empty:
        return None
    fix = _EMPTY_MASK_FIX.get(source, "draw the defect in the mask, or mark the image normal")
    return f"the mask {mask} of a defect image is empty (all zero); {fix}"


def mask_files_problem(
    mask: str | os.PathLike[str], root: str | None, what: str, **fix: str
) -> str | None:
    """Why a mask file or folder may not be used (outside ``root``, also any file in a
    mask folder; see :func:`~omniad_train.data.paths.path_problem`), or None."""
    problem = path_problem(mask, root, what, **fix)
    if problem is None and safe_is_dir(mask):
        for f in sorted(Path(mask).iterdir()):
            if _is_image(f):
                problem = path_problem(f, root, f"the file {f.name!r} in {what}", **fix)
                if problem is not None:
                    break
    return problem


def _default_mask_info(path: str) -> MaskInfo:
    return describe_mask(read_mask(path))


# --------------------------------------------------------------------------- MMAD
def iter_mmad(
    mmad_json: str | os.PathLike[str],
    image_root: str | os.PathLike[str] | None = None,
    *,
    reference_from: ReferenceFrom = "similar",
) -> Iterator[Record | Reject]:
    """Records from MMAD's ``mmad.json``, one per question.

    Image, mask and template paths are relative to ``image_root`` (default: the folder
    holding ``mmad.json``); a ``mask_path`` is also looked up relative to the image's
    ``<dataset>/<category>`` folder.  Images with ``good`` as a path component are
    normal.  ``reference`` holds the ``similar_templates`` or ``random_templates`` list
    (``reference_from``); 1-shot uses its first entry.

    Raises
    ------
    FileNotFoundError, ValueError
        When ``mmad.json`` is missing or is not a JSON object (bad *records* are rejects).
    """
    if reference_from not in ("similar", "random"):
        raise ValueError(f"reference_from must be 'similar' or 'random', got {reference_from!r}")
    path = Path(mmad_json)
    if not path.is_file():
        raise FileNotFoundError(f"no mmad.json at {str(path)!r}; pass the path of MMAD's mmad.json")
    root = Path(image_root) if image_root is not None else path.parent
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ValueError(
            f"{str(path)!r} is not valid JSON ({exc}); re-download mmad.json"
        ) from None
    if not isinstance(data, dict):
        raise ValueError(
            f"{str(path)!r} must map image paths to entries, got a {type(data).__name__}"
        )
    root_real = real_root(root)
    for key, entry in data.items():
        yield from _mmad_entry(key, entry, root, root_real, reference_from)


#: Kinds of the fields of an mmad.json entry and of one of its questions.
_MMAD_ENTRY = {
    "conversation": "list",
    "mask_path": "text",
    "similar_templates": "texts",
    "random_templates": "texts",
}
_MMAD_QUESTION = {
    "Question": "text",
    "Answer": "text",
    "Options": "options",
    "type": "text",
    "Reasoning": "text",
    "reasoning": "text",
}
_MMAD_SHAPE = (
    '{"conversation": [{"Question": ..., "Answer": ..., "Options": {...}, "type": ...}], '
    '"mask_path": ..., "similar_templates": [...], "random_templates": [...]}'
)


def _mmad_entry(
    key: str, entry: Any, root: Path, root_real: str, reference_from: str
) -> Iterator[Record | Reject]:
    def reject_all(reason: str, wheres: list[str]) -> Iterator[Reject]:
        for where in wheres:
            yield Reject(source="mmad", record=where, reason=reason)

    if not isinstance(entry, dict):
        yield Reject(
            source="mmad",
            record=key,
            reason=f"the entry must be an object {_MMAD_SHAPE}, got {describe_value(entry)}; "
            "fix the entry in mmad.json",
        )
        return
    conv = entry.get("conversation")
    if not isinstance(conv, list) or not conv:
        got = "" if conv is None else f" (got {describe_value(conv)})"
        yield Reject(
            source="mmad",
            record=key,
            reason=f"the entry has no 'conversation' list of questions{got}; each image needs "
            '{"conversation": [{"Question", "Answer", "Options", "type"}], ...}',
        )
        return
    wheres = [f"{key}#{k}" for k in range(len(conv))]
    problem = field_problem(entry, _MMAD_ENTRY)
    if problem is not None:
        yield from reject_all(f"bad entry in mmad.json: {problem}", wheres)
        return
    parts = Path(key).parts
    dataset = parts[0] if len(parts) > 2 else ""
    category = parts[1] if len(parts) > 2 else ""
    anomalous = "good" not in parts
    image = root / key
    problem = path_problem(image, root_real, f"the image {key!r}")
    if problem is None and not safe_is_file(image):
        problem = (
            f"image file not found at {str(image)!r}; pass the folder that holds MMAD's "
            "images as image_root (default: the folder of mmad.json)"
        )
    mask = None
    if problem is None and anomalous:
        mask, problem = _mmad_mask(key, entry.get("mask_path"), root, root_real, dataset, category)
    templates = entry.get(f"{reference_from}_templates") or []
    reference = [str(root / t) for t in templates if t]
    for t, ref in zip([t for t in templates if t], reference, strict=True):
        if problem is None:
            problem = path_problem(ref, root_real, f"the template {t!r}")
    if problem is not None:
        yield from reject_all(problem, wheres)
        return
    for k, q in enumerate(conv):
        if not isinstance(q, dict):
            yield Reject(
                source="mmad",
                record=wheres[k],
                reason=f"the question must be an object, got {describe_value(q)}; write "
                '{"Question": ..., "Answer": ..., "Options": {...}, "type": ...}',
            )
            continue
        problem = field_problem(q, _MMAD_QUESTION)
        if problem is not None:
            yield Reject(source="mmad", record=wheres[k], reason=f"bad question: {problem}")
            continue
        yield make_record(
            "mmad",
            wheres[k],
            id=f"mmad:{key}#{k}",
            image_id=f"mmad:{key}",
            image=str(image),
            mask=mask,
            anomalous=anomalous,
            question=q.get("Question") or "",
            options=q.get("Options"),
            answer=q.get("Answer"),
            type=q.get("type"),
            category=category,
            dataset=dataset,
            reasoning=q.get("Reasoning") or q.get("reasoning"),
            reference=reference,
        )


def _mmad_mask(
    key: str, mask_path: Any, root: Path, root_real: str, dataset: str, category: str
) -> tuple[str | None, str | None]:
    if not isinstance(mask_path, str) or not mask_path:
        return None, (
            f"defect image {key} has no 'mask_path' in mmad.json; add the mask path, or "
            "mark the image normal by putting it under a 'good' folder"
        )
    candidates = [root / mask_path]
    if dataset and not mask_path.startswith(f"{dataset}/"):
        candidates.append(root / dataset / category / mask_path)
    outside = None
    for c in candidates:
        problem = mask_files_problem(c, root_real, f"the mask_path {mask_path!r}")
        if problem is not None:
            outside = outside or problem
        elif safe_exists(c):
            return str(c), None
    if outside is not None:
        return None, outside
    tried = ", ".join(repr(str(c)) for c in candidates)
    return None, f"missing mask for defect image {key}: expected it at {tried}; add the mask file"


# --------------------------------------------------------------------------- MVTec
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


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in _listdir(folder) if _is_image(p))


def _listdir(folder: Path) -> list[Path]:
    """The entries of ``folder`` ([] when it is not a folder); OSError when unreadable."""
    return list(folder.iterdir()) if safe_is_dir(folder) else []


def _unlistable(folder: Path, top: Path, exc: OSError) -> Reject:
    rel = folder.relative_to(top).as_posix() if folder.is_relative_to(top) else str(folder)
    return Reject(
        source="mvtec",
        record=rel,
        reason=f"cannot list the folder {rel} ({exc.strerror or exc}); its images are left "
        "out: make it readable",
    )


@dataclass(frozen=True)
class _MVTec:
    """What the folders of one MVTec-style root share."""

    top: Path
    root_real: str
    name: str
    seed: int
    location_questions: bool
    describe: MaskInfoFn


def iter_mvtec(
    root: str | os.PathLike[str],
    *,
    dataset: str | None = None,
    location_questions: bool = True,
    seed: int = 0,
    include_train_good: bool = False,
    mask_info: MaskInfoFn | None = None,
) -> Iterator[Record | Reject]:
    """Records from MVTec-style folders (MVTec AD, VisA in MVTec layout, MVTec LOCO, ...).

    ``root`` holds category folders with ``test/<defect>/`` images (``good`` = normal),
    ``train/good/`` normal images and ``ground_truth/<defect>/`` masks (see
    :func:`find_mvtec_mask`); ``root`` may also be a single category folder.  Every test
    image gets the question "Is there any defect in the object?" (A: Yes, B: No); with
    ``location_questions`` every defect image also gets "Where is the defect located?"
    with the mask centroid's region and three seeded distractors.  ``reference`` is one
    ``train/good`` image of the category, chosen by ``seed``.

    Every defect image needs a mask that is readable and not empty: an image without
    one is a :class:`Reject` (one per image, whatever ``location_questions``; see
    :func:`defect_mask_problem`), so ``prepare`` and the detection evaluation list the
    same images.  Images, masks and references must resolve (symlinks followed) inside
    ``root``; others are rejects, and ``train/good`` images outside are never references.

    ``mask_info(path)`` describes a mask (default: read it); ``prepare`` passes a cached
    version.  ``dataset`` defaults to the name of the folder holding the categories.
    """
    base = Path(root)
    if not base.is_dir():
        raise FileNotFoundError(f"no MVTec-style folder at {str(base)!r}")
    describe = mask_info or _default_mask_info
    if (base / "test").is_dir():
        categories = [base]
        top = base.parent
    else:
        try:
            categories = sorted(d for d in base.iterdir() if safe_is_dir(d / "test"))
        except OSError as exc:
            raise ValueError(
                f"cannot list the MVTec-style folder {str(base)!r} ({exc.strerror or exc}); "
                "make it readable"
            ) from None
        top = base
    name = dataset or top.name
    if not categories:
        raise FileNotFoundError(
            f"no category folder with a test/ subfolder under {str(base)!r}; expected "
            "<category>/test/<defect>/*.png (MVTec layout)"
        )
    ctx = _MVTec(
        top=top,
        root_real=real_root(base),
        name=name,
        seed=seed,
        location_questions=location_questions,
        describe=describe,
    )
    for cat in categories:
        try:
            train_good = [
                p
                for p in _images(cat / "train" / "good")
                if path_problem(p, ctx.root_real, "a reference") is None
            ]
        except OSError as exc:  # no references then; the folder's own listing says why
            train_good = []
            if not include_train_good:
                yield _unlistable(cat / "train" / "good", top, exc)
        try:
            folders = [(d, "test") for d in sorted(_listdir(cat / "test")) if safe_is_dir(d)]
        except OSError as exc:
            yield _unlistable(cat / "test", top, exc)
            folders = []
        if include_train_good:
            folders.append((cat / "train" / "good", "train"))
        for folder, _split in folders:
            yield from _mvtec_folder(folder, cat, train_good, ctx)


def _mvtec_folder(
    folder: Path, cat: Path, train_good: list[Path], ctx: _MVTec
) -> Iterator[Record | Reject]:
    defect = folder.name
    anomalous = defect != "good"
    gt_dir = cat / "ground_truth" / defect
    try:
        images = _images(folder)
    except OSError as exc:
        yield _unlistable(folder, ctx.top, exc)
        return
    try:
        names = {p.name.lower(): p for p in _listdir(gt_dir)} if anomalous else {}
    except OSError as exc:
        yield _unlistable(gt_dir, ctx.top, exc)
        return
    for img in images:
        rel = img.relative_to(ctx.top).as_posix()
        problem = path_problem(img, ctx.root_real, f"the image {rel!r}")
        if problem is not None:
            yield Reject(source="mvtec", record=rel, reason=problem)
            continue
        image_id = f"mvtec:{ctx.name}/{rel}"
        pool = [p for p in train_good if p != img]
        reference = [str(rng_for(ctx.seed, image_id, "reference").choice(pool))] if pool else []
        mask, info = None, None
        if anomalous:
            found = find_mvtec_mask(gt_dir, img.stem, names)
            if found is None:
                g = gt_dir.relative_to(ctx.top).as_posix()
                yield Reject(
                    source="mvtec",
                    record=rel,
                    reason=f"missing mask for defect image {rel}: expected {g}/{img.stem}_mask.png "
                    f"(MVTec AD), {g}/{img.stem}.png (VisA) or a folder {g}/{img.stem}/ of masks "
                    "(MVTec LOCO); add the mask or move the image to test/good",
                )
                continue
            mask = str(found)
            info, problem = _mvtec_mask_info(rel, found, ctx)
            if problem is not None:
                yield Reject(source="mvtec", record=rel, reason=problem)
                continue
        common = dict(
            image_id=image_id,
            image=str(img),
            mask=mask,
            anomalous=anomalous,
            category=cat.name,
            dataset=ctx.name,
            reference=reference,
        )
        yield make_record(
            "mvtec",
            rel,
            id=f"{image_id}#defect",
            question=DEFECT_QUESTION,
            options={"A": "Yes", "B": "No"},
            answer="A" if anomalous else "B",
            type="Anomaly Discrimination",
            **common,
        )
        if anomalous and ctx.location_questions and info is not None and info.region is not None:
            options, gold = location_question(info.region, seed=ctx.seed, key=image_id)
            yield make_record(
                "mvtec",
                f"{rel}#location",
                id=f"{image_id}#location",
                question=LOCATION_QUESTION,
                options=options,
                answer=gold,
                type="Defect Localization",
                **common,
            )


def _mvtec_mask_info(rel: str, mask: Path, ctx: _MVTec) -> tuple[MaskInfo | None, str | None]:
    """The mask's description, or the reason to reject defect image ``rel``."""
    g = mask.relative_to(ctx.top).as_posix() if mask.is_relative_to(ctx.top) else str(mask)
    problem = mask_files_problem(mask, ctx.root_real, f"the mask {g!r}")
    if problem is not None:
        return None, problem
    try:
        info = ctx.describe(str(mask))
    except (ImageError, OSError, ValueError) as exc:
        return None, (
            f"cannot read the mask of defect image {rel}: {exc}; fix the mask file (an 8- or "
            "16-bit grayscale PNG of the image's size) or move the image to test/good"
        )
    return info, defect_mask_problem(str(mask), info, "mvtec")
