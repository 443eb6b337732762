"""One record becomes one dataset row (or a reject): images, mask, seg, prompt, target.

Rows are plain JSON (images and masks are referred to by work-folder keys), so they can
be logged in ``.work/records.jsonl`` and reused by a later run.
"""

from __future__ import annotations

import json
import os
from typing import Any

import textmask
from omniad_core.images import ImageError
from omniad_core.prompts import Question, build_messages, split_images
from omniad_train.data.cache import WorkCache, digest, fingerprint
from omniad_train.data.masks import defect_mask_problem
from omniad_train.data.reasoning import sft_target, template_reasoning
from omniad_train.data.records import Record, Reject

__all__ = ["process_record", "record_key", "usable"]


def record_key(rec: Record, cfg: dict[str, Any]) -> str:
    """The log key of a record: its fields, its files' identities and the row parameters."""
    files = [fingerprint(rec.image)]
    if rec.mask is not None:
        files.append(fingerprint(rec.mask))
    if cfg["shots"] and rec.reference:
        files.append(fingerprint(rec.reference[0]))
    return digest(rec.model_dump(), files, cfg)


def usable(entry: dict[str, Any], cache: WorkCache) -> bool:
    """A logged entry can be reused: a reject, or a row whose cached files still exist."""
    row = entry.get("row")
    return row is None or cache.has(row["images"], row["mask"])


def process_record(
    rec: Record, cache: WorkCache, g: textmask.Grid, cfg: dict[str, Any]
) -> dict[str, Any]:
    """``{"row": ...}`` or ``{"reject": ...}`` for one record (reads through the cache).

    An unexpected error also rejects the record (one odd file must not stop a long run),
    marked ``"retry": True`` so that it is not logged and a later run tries again.
    """
    try:
        return {"row": _row(rec, cache, g, cfg)}
    except _Bad as bad:
        reason, retry = str(bad), False
    except Exception as exc:
        reason = (
            f"unexpected {type(exc).__name__} while preparing the record: {exc}; check its files"
        )
        retry = True
    reject = Reject(source=rec.source, record=rec.id, reason=reason).model_dump()
    return {"reject": reject, "retry": True} if retry else {"reject": reject}


class _Bad(Exception):
    pass


def _row(rec: Record, cache: WorkCache, g: textmask.Grid, cfg: dict[str, Any]) -> dict[str, Any]:
    try:
        img = cache.image(rec.image)
    except ImageError as exc:
        raise _Bad(
            f"unreadable image: {exc}; replace the file or remove it from the source"
        ) from None
    mask_key, info, seg = None, None, ""
    if rec.anomalous:
        if rec.mask is None:
            raise _Bad(f"missing mask for defect image {rec.image}; add its mask")
        try:
            m = cache.mask(rec.mask)
        except ImageError as exc:
            raise _Bad(f"unreadable mask: {exc}; fix the mask file") from None
        if (m.info.height, m.info.width) != (img.height, img.width):
            raise _Bad(
                f"the mask {rec.mask} is {m.info.height}x{m.info.width} (H x W) but the image "
                f"is {img.height}x{img.width}; masks must have their image's size: fix the mask"
            )
        empty = defect_mask_problem(rec.mask, m.info, rec.source)
        if empty is not None:
            raise _Bad(empty)
        mask_key, info = m.key, m.info
        seg = textmask.encode(cache.mask_array(m.key), g)
    keys = {"query": img.key}
    if cfg["shots"]:
        if not rec.reference:
            raise _Bad(
                "no normal reference image for a 1-shot prompt; use shots=0, or give references "
                "(MMAD templates, MVTec train/good images, the JSONL 'reference' field)"
            )
        try:
            keys["reference"] = cache.image(rec.reference[0]).key
        except ImageError as exc:
            raise _Bad(f"unreadable reference image: {exc}; fix it or use shots=0") from None
    question = Question(text=rec.question, options=rec.options, answer=rec.answer, type=rec.type)
    messages = build_messages(
        question,
        image="query",
        reference="reference" if cfg["shots"] else None,
        system_prompt=cfg["system_prompt"],
    )
    prompt, order = split_images(messages)
    reasoning = rec.reasoning or template_reasoning(
        info,
        anomalous=rec.anomalous,
        type=rec.type,
        options=rec.options,
        answer=rec.answer,
        seed=cfg["seed"],
        key=rec.id,
    )
    target = sft_target(seg, reasoning, rec.answer)
    return {
        "id": rec.id,
        "image_id": rec.image_id,
        "anomalous": rec.anomalous,
        "prompt": prompt,
        "completion": [{"role": "assistant", "content": [{"type": "text", "text": target}]}],
        "images": [keys[o] for o in order],
        "mask": mask_key,
        "height": img.height,
        "width": img.width,
        "seg": seg,
        "answer": rec.answer,
        "options": json.dumps(rec.options, ensure_ascii=False),
        "type": rec.type,
        "category": rec.category,
        "dataset": rec.dataset,
        "image_path": os.path.abspath(rec.image),
        "shots": int(cfg["shots"]),
        "question_source": rec.question_source,
    }
