"""The generic JSONL reader: one multiple-choice question per line.

A line is a JSON object with the fields of :data:`JSONL_FIELDS`; ``docs/data.md`` shows
examples.  Relative paths are relative to the JSONL file's folder (or ``root``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

from omniad_train.data.records import Record, Reject, make_record

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


def iter_jsonl(
    path: str | os.PathLike[str], *, root: str | os.PathLike[str] | None = None
) -> Iterator[Record | Reject]:
    """Records from a generic JSONL file, one question per line.

    Fields (see :data:`JSONL_FIELDS`): ``image``, ``question``, ``options`` (mapping or
    list) and ``answer`` are required; ``mask`` (file or folder; absent = normal image),
    ``anomalous`` (default: a mask is given), ``type`` (default Anomaly Discrimination
    for Yes/No options), ``category``, ``dataset`` (default: the file's stem),
    ``reasoning``, ``reference`` (path or list), ``id`` (default ``jsonl:<stem>:<line>``)
    and ``image_id`` (default: the image path as written) are optional.  Relative paths
    are relative to ``root`` (default: the JSONL file's folder).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no JSONL file at {str(p)!r}")
    base = Path(root) if root is not None else p.parent
    with p.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if line.strip():
                yield _jsonl_line(line, f"{p.name}:{lineno}", p.stem, lineno, base)


def _resolve(base: Path, value: str) -> Path:
    q = Path(value).expanduser()
    return q if q.is_absolute() else base / q


def _jsonl_line(line: str, where: str, stem: str, lineno: int, base: Path) -> Record | Reject:
    def bad(reason: str) -> Reject:
        return Reject(source="jsonl", record=where, reason=reason)

    try:
        obj = json.loads(line)
    except ValueError as exc:
        return bad(f"the line is not valid JSON ({exc}); write one JSON object per line")
    if not isinstance(obj, dict):
        return bad(f"the line is a JSON {type(obj).__name__}, not an object; write one object")
    unknown = sorted(set(obj) - set(JSONL_FIELDS))
    if unknown:
        return bad(f"unknown fields {unknown}; the known fields are {', '.join(JSONL_FIELDS)}")
    image = obj.get("image")
    if not isinstance(image, str) or not image:
        return bad('the line has no "image" path; add the image file path')
    if obj.get("id") is not None:
        where = f"{where} (id {obj['id']})"
    image_path = _resolve(base, image)
    if not image_path.is_file():
        return bad(
            f"image file not found at {str(image_path)!r}; fix the path (relative to {str(base)!r})"
        )
    mask = obj.get("mask")
    mask_path = None
    if mask is not None:
        if not isinstance(mask, str) or not mask:
            return bad('"mask" must be a file path or null')
        mask_path = _resolve(base, mask)
        if not mask_path.exists():
            return bad(f'mask not found at {str(mask_path)!r}; fix the path or remove "mask"')
    anomalous = obj.get("anomalous", mask_path is not None)
    if not isinstance(anomalous, bool):
        return bad(f'"anomalous" must be true or false, got {anomalous!r}')
    if anomalous and mask_path is None:
        return bad('missing mask for a defect image; add "mask" or set "anomalous": false')
    ref = obj.get("reference") or []
    refs = [ref] if isinstance(ref, str) else ref
    if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
        return bad('"reference" must be a path or a list of paths')
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
        category=str(obj.get("category") or ""),
        dataset=str(obj.get("dataset") or stem),
        reasoning=obj.get("reasoning"),
        reference=[str(_resolve(base, r)) for r in refs],
    )
