"""The generic JSONL reader: one multiple-choice question per line.

A line is a JSON object with the fields of :data:`JSONL_FIELDS`; ``docs/data.md`` shows
examples.  Relative paths are relative to the JSONL file's folder (or ``root``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

from omniad_train.data.masks import mask_files_problem
from omniad_train.data.paths import path_problem, real_root, safe_exists, safe_is_file
from omniad_train.data.records import Record, Reject, field_problem, make_record, safe_text

__all__ = ["JSONL_FIELDS", "iter_jsonl"]

#: Fields of one generic JSONL line (``image``, ``question``, ``options``, ``answer`` required).
JSONL_FIELDS = (
    "id",
    "image",
    "mask",
    "anomalous",
    "question",
    "options",
    "answer",
    "type",
    "category",
    "dataset",
    "reasoning",
    "reference",
    "image_id",
)


#: Kinds of the JSONL fields (see :data:`~omniad_train.data.records.FIELD_KINDS`).
_KINDS = {
    "id": "id",
    "image": "text",
    "mask": "text",
    "anomalous": "bool",
    "question": "text",
    "options": "options",
    "answer": "text",
    "type": "text",
    "category": "text",
    "dataset": "text",
    "reasoning": "text",
    "reference": "path or paths",
    "image_id": "id",
}


def iter_jsonl(
    path: str | os.PathLike[str],
    *,
    root: str | os.PathLike[str] | None = None,
    allow_outside_root: bool = False,
) -> Iterator[Record | Reject]:
    """Records from a generic JSONL file, one question per line.

    Fields (see :data:`JSONL_FIELDS`): ``image``, ``question``, ``options`` (mapping or
    list) and ``answer`` are required; ``mask`` (file or folder; absent = normal image),
    ``anomalous`` (default: a mask is given), ``type`` (default Anomaly Discrimination
    for Yes/No options), ``category``, ``dataset`` (default: the file's stem),
    ``reasoning``, ``reference`` (path or list), ``id`` (default ``jsonl:<stem>:<line>``)
    and ``image_id`` (default: the image path as written) are optional.  Every field is
    type-checked; a line with a field of the wrong kind is a :class:`Reject`.

    Relative paths are relative to ``root`` (default: the JSONL file's folder), and
    every path must resolve (symlinks followed) inside it: a line with an absolute path
    elsewhere or a ``..`` path leading out is a reject, unless ``allow_outside_root``.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no JSONL file at {str(p)!r}")
    base = Path(root) if root is not None else p.parent
    limit = None if allow_outside_root else real_root(base)
    with p.open(encoding="utf-8", errors="surrogateescape") as fh:
        for lineno, line in enumerate(fh, 1):
            if line.strip():
                yield _jsonl_line(line, f"{p.name}:{lineno}", p.stem, lineno, base, limit)


def _resolve(base: Path, value: str) -> Path:
    try:
        q = Path(value).expanduser()
    except RuntimeError:  # "~user" of an unknown user: an ordinary relative name
        q = Path(value)
    return q if q.is_absolute() else base / q


_OUTSIDE_FIX = (
    "give a path inside that folder, or allow paths outside it explicitly with "
    "allow_outside_root=True (omniad-train prepare --allow_outside_root)"
)


def _jsonl_line(
    line: str, where: str, stem: str, lineno: int, base: Path, limit: str | None
) -> Record | Reject:
    def bad(reason: str) -> Reject:
        return Reject(source="jsonl", record=where, reason=reason)

    def check(field: str, value: str, resolved: Path) -> str | None:
        what = f'the "{field}" path {value!r}'
        if field == "mask":
            return mask_files_problem(resolved, limit, what, fix=_OUTSIDE_FIX)
        return path_problem(resolved, limit, what, _OUTSIDE_FIX)

    if safe_text(line) is not line:
        return bad("the line is not valid UTF-8 text; save the JSONL file as UTF-8")
    try:
        obj = json.loads(line)
    except ValueError as exc:
        return bad(f"the line is not valid JSON ({exc}); write one JSON object per line")
    if not isinstance(obj, dict):
        return bad(f"the line is a JSON {type(obj).__name__}, not an object; write one object")
    unknown = sorted(set(obj) - set(JSONL_FIELDS))
    if unknown:
        return bad(f"unknown fields {unknown}; the known fields are {', '.join(JSONL_FIELDS)}")
    problem = field_problem(obj, _KINDS)
    if problem is not None:
        return bad(problem)
    image = obj.get("image")
    if not isinstance(image, str) or not image:
        return bad('the line has no "image" path; add the image file path')
    if obj.get("id") is not None:
        where = f"{where} (id {obj['id']})"
    image_path = _resolve(base, image)
    problem = check("image", image, image_path)
    if problem is not None:
        return bad(problem)
    if not safe_is_file(image_path):
        return bad(
            f"image file not found at {str(image_path)!r}; fix the path (relative to {str(base)!r})"
        )
    mask = obj.get("mask")
    mask_path = None
    if mask is not None:
        if not mask:
            return bad('"mask" must be a file path or null')
        mask_path = _resolve(base, mask)
        problem = check("mask", mask, mask_path)
        if problem is not None:
            return bad(problem)
        if not safe_exists(mask_path):
            return bad(f'mask not found at {str(mask_path)!r}; fix the path or remove "mask"')
    anomalous = obj.get("anomalous", mask_path is not None)
    if not isinstance(anomalous, bool):
        return bad(f'"anomalous" must be true or false, got {anomalous!r}')
    if anomalous and mask_path is None:
        return bad('missing mask for a defect image; add "mask" or set "anomalous": false')
    ref = obj.get("reference") or []
    refs = [ref] if isinstance(ref, str) else ref
    references = [_resolve(base, r) for r in refs if r]
    for r, rp in zip([r for r in refs if r], references, strict=True):
        problem = check("reference", r, rp)
        if problem is not None:
            return bad(problem)
    qtype = obj.get("type")
    if qtype is None:
        opts = obj.get("options")
        texts = list(opts.values()) if isinstance(opts, dict) else opts
        if isinstance(texts, list) and [str(t).strip().lower() for t in texts] == ["yes", "no"]:
            qtype = "Anomaly Discrimination"
        elif texts:  # without options, make_record names that problem first
            return bad('the line has no "type"; add one of the 7 MMAD question types')
    return make_record(
        "jsonl",
        where,
        id=str(obj.get("id") or f"jsonl:{stem}:{lineno}"),
        image_id=str(obj.get("image_id") or f"jsonl:{image}"),
        image=str(image_path),
        mask=str(mask_path) if mask_path is not None else None,
        anomalous=anomalous,
        question=obj.get("question") or "",
        options=obj.get("options"),
        answer=obj.get("answer"),
        type=qtype,
        category=obj.get("category") or "",
        dataset=obj.get("dataset") or stem,
        reasoning=obj.get("reasoning"),
        reference=[str(r) for r in references],
    )
