"""Readers of MMAD's ``mmad.json`` and of image folders, as records.

Each reader yields :class:`~omniad_train.data.records.Record` objects and, for bad
inputs, :class:`~omniad_train.data.records.Reject` objects whose reason names the
problem and the fix; readers never raise for a bad record.  They check what is cheap
(files exist, options, answer letters, question types, masks of defect images); images
are decoded later, by whoever uses the records.  The folder reader :func:`iter_mvtec`
lives in :mod:`omniad_train.data.folders` and the mask rules in
:mod:`omniad_train.data.masks`; both are re-exported here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from omniad_train.data.folders import iter_mvtec
from omniad_train.data.layouts import find_mvtec_mask
from omniad_train.data.masks import (
    IMAGE_SUFFIXES,
    defect_mask_problem,
    mask_files_problem,
    mask_from_array,
    read_mask,
)
from omniad_train.data.paths import path_problem, real_root, safe_exists, safe_is_file
from omniad_train.data.records import (
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

ReferenceFrom = Literal["similar", "random"]


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
    defect = parts[-2] if anomalous and len(parts) >= 2 else ""  # the defect-type folder
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
            defect=defect,
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
