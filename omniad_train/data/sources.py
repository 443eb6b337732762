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
from pathlib import Path
from typing import Any, Literal

import numpy as np

from omniad_core.images import ImageError, load_mask
from omniad_core.prompts import DEFECT_QUESTION
from omniad_train.data.reasoning import LOCATION_QUESTION, describe_mask, location_question, rng_for
from omniad_train.data.records import MaskInfo, Record, Reject, make_record

__all__ = [
    "IMAGE_SUFFIXES",
    "find_mvtec_mask",
    "iter_mmad",
    "iter_mvtec",
    "read_mask",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

ReferenceFrom = Literal["similar", "random"]
MaskInfoFn = Callable[[str], MaskInfo]


def _is_image(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()


def read_mask(source: str | os.PathLike[str]) -> np.ndarray:
    """A boolean mask from a mask file, or the union of a folder of masks (MVTec LOCO).

    Raises :class:`~omniad_core.images.ImageError` for unreadable files, an empty
    folder, or masks of different sizes in one folder.
    """
    p = Path(source)
    if not p.is_dir():
        return load_mask(p)
    files = sorted(f for f in p.iterdir() if _is_image(f))
    if not files:
        raise ImageError(
            f"the mask folder {str(p)!r} holds no mask images; put the masks ({', '.join(IMAGE_SUFFIXES)}) in it"
        )
    out: np.ndarray | None = None
    for f in files:
        m = load_mask(f)
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
    for key, entry in data.items():
        yield from _mmad_entry(key, entry, root, reference_from)


def _mmad_entry(key: str, entry: Any, root: Path, reference_from: str) -> Iterator[Record | Reject]:
    conv = entry.get("conversation") if isinstance(entry, dict) else None
    if not isinstance(conv, list) or not conv:
        yield Reject(
            source="mmad",
            record=key,
            reason="the entry has no 'conversation' list of questions; each image needs "
            '{"conversation": [{"Question", "Answer", "Options", "type"}], ...}',
        )
        return
    parts = Path(key).parts
    dataset = parts[0] if len(parts) > 2 else ""
    category = parts[1] if len(parts) > 2 else ""
    anomalous = "good" not in parts
    image = root / key
    wheres = [f"{key}#{k}" for k in range(len(conv))]
    problem = None
    if not image.is_file():
        problem = (
            f"image file not found at {str(image)!r}; pass the folder that holds MMAD's "
            "images as image_root (default: the folder of mmad.json)"
        )
    mask = None
    if problem is None and anomalous:
        mask, problem = _mmad_mask(key, entry.get("mask_path"), root, dataset, category)
    if problem is not None:
        for where in wheres:
            yield Reject(source="mmad", record=where, reason=problem)
        return
    templates = entry.get(f"{reference_from}_templates") or []
    reference = [str(root / t) for t in templates if isinstance(t, str) and t]
    for k, q in enumerate(conv):
        if not isinstance(q, dict):
            yield Reject(
                source="mmad", record=wheres[k], reason="the question is not a JSON object"
            )
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
    key: str, mask_path: Any, root: Path, dataset: str, category: str
) -> tuple[str | None, str | None]:
    if not isinstance(mask_path, str) or not mask_path:
        return None, (
            f"defect image {key} has no 'mask_path' in mmad.json; add the mask path, or "
            "mark the image normal by putting it under a 'good' folder"
        )
    candidates = [root / mask_path]
    if dataset and not mask_path.startswith(f"{dataset}/"):
        candidates.append(root / dataset / category / mask_path)
    for c in candidates:
        if c.exists():
            return str(c), None
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
    return sorted(p for p in folder.iterdir() if _is_image(p)) if folder.is_dir() else []


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

    ``mask_info(path)`` describes a mask for location questions (default: read it);
    ``prepare`` passes a cached version.  ``dataset`` defaults to the name of the folder
    holding the categories.
    """
    base = Path(root)
    if not base.is_dir():
        raise FileNotFoundError(f"no MVTec-style folder at {str(base)!r}")
    describe = mask_info or _default_mask_info
    if (base / "test").is_dir():
        categories = [base]
        top = base.parent
    else:
        categories = sorted(d for d in base.iterdir() if (d / "test").is_dir())
        top = base
    name = dataset or top.name
    if not categories:
        raise FileNotFoundError(
            f"no category folder with a test/ subfolder under {str(base)!r}; expected "
            "<category>/test/<defect>/*.png (MVTec layout)"
        )
    for cat in categories:
        train_good = _images(cat / "train" / "good")
        folders = [(d, "test") for d in sorted((cat / "test").iterdir()) if d.is_dir()]
        if include_train_good:
            folders.append((cat / "train" / "good", "train"))
        for folder, _split in folders:
            yield from _mvtec_folder(
                folder, cat, top, name, train_good, location_questions, seed, describe
            )


def _mvtec_folder(
    folder: Path,
    cat: Path,
    top: Path,
    name: str,
    train_good: list[Path],
    location_questions: bool,
    seed: int,
    describe: MaskInfoFn,
) -> Iterator[Record | Reject]:
    defect = folder.name
    anomalous = defect != "good"
    gt_dir = cat / "ground_truth" / defect
    names = {p.name.lower(): p for p in gt_dir.iterdir()} if gt_dir.is_dir() else {}
    for img in _images(folder):
        rel = img.relative_to(top).as_posix()
        image_id = f"mvtec:{name}/{rel}"
        pool = [p for p in train_good if p != img]
        reference = [str(rng_for(seed, image_id, "reference").choice(pool))] if pool else []
        mask = None
        if anomalous:
            found = find_mvtec_mask(gt_dir, img.stem, names)
            if found is None:
                g = gt_dir.relative_to(top).as_posix()
                yield Reject(
                    source="mvtec",
                    record=rel,
                    reason=f"missing mask for defect image {rel}: expected {g}/{img.stem}_mask.png "
                    f"(MVTec AD), {g}/{img.stem}.png (VisA) or a folder {g}/{img.stem}/ of masks "
                    "(MVTec LOCO); add the mask or move the image to test/good",
                )
                continue
            mask = str(found)
        common = dict(
            image_id=image_id,
            image=str(img),
            mask=mask,
            anomalous=anomalous,
            category=cat.name,
            dataset=name,
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
        if anomalous and location_questions:
            yield _location_record(rel, image_id, mask, seed, describe, common)


def _location_record(
    rel: str, image_id: str, mask: Any, seed: int, describe: MaskInfoFn, common: dict[str, Any]
) -> Record | Reject:
    where = f"{rel}#location"
    try:
        info = describe(mask)
    except (ImageError, OSError) as exc:
        return Reject(
            source="mvtec", record=where, reason=f"cannot read the mask: {exc}; fix the mask file"
        )
    if info.empty or info.region is None:
        return Reject(
            source="mvtec",
            record=where,
            reason=f"the mask {mask} of a defect image is empty (all zero); fix the mask or move "
            "the image to test/good",
        )
    options, gold = location_question(info.region, seed=seed, key=image_id)
    return make_record(
        "mvtec",
        where,
        id=f"{image_id}#location",
        question=LOCATION_QUESTION,
        options=options,
        answer=gold,
        type="Defect Localization",
        **common,
    )
