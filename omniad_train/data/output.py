"""The output of ``prepare``: dataset features, splits, counts and writing to disk.

Images and masks are stored *inside* the datasets (PNG bytes, ``path`` None), so a
saved folder is self-contained and can be copied or uploaded on its own.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omniad_train.data.cache import WorkCache, digest, zero_mask_png

__all__ = [
    "counts",
    "feature_names",
    "features",
    "source_summary",
    "split_rows",
    "summary_table",
    "up_to_date",
    "write_datasets",
]


def features(sft: bool) -> Any:
    """The ``datasets.Features`` of the SFT (``sft=True``) or GRPO dataset."""
    from datasets import Features, Image, List, Value

    part = {"type": Value("string"), "text": Value("string")}
    messages = List({"role": Value("string"), "content": List(part)})
    cols: dict[str, Any] = {"id": Value("string"), "prompt": messages}
    if sft:
        cols["completion"] = messages
    cols.update(
        images=List(Image()),
        mask=Image(),
        seg=Value("string"),
        answer=Value("string"),
        options=Value("string"),
        type=Value("string"),
        category=Value("string"),
        dataset=Value("string"),
        image_path=Value("string"),
        shots=Value("int32"),
    )
    return Features(cols)


def split_rows(
    rows: list[dict[str, Any]], eval_fraction: float, seed: int
) -> dict[str, list[dict[str, Any]]]:
    """Train/test by image: the images sorted by a seeded hash, the first ones are test."""
    if eval_fraction <= 0:
        return {"train": rows}
    ids = sorted({r["image_id"] for r in rows}, key=lambda i: (digest("split", seed, i), i))
    n_test = round(len(ids) * eval_fraction)
    n_test = min(max(n_test, 1), len(ids) - 1) if len(ids) >= 2 else 0
    test = set(ids[:n_test])
    return {
        "train": [r for r in rows if r["image_id"] not in test],
        "test": [r for r in rows if r["image_id"] in test],
    }


def _count(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "rows": len(rows),
        "images": len({r["image_id"] for r in rows}),
        "anomalous_rows": sum(1 for r in rows if r["anomalous"]),
        "by_dataset": dict(sorted(Counter(r["dataset"] for r in rows).items())),
        "by_category": dict(
            sorted(Counter(f"{r['dataset']}/{r['category']}" for r in rows).items())
        ),
        "by_type": dict(sorted(Counter(r["type"] for r in rows).items())),
        "by_question_source": dict(
            sorted(Counter(r.get("question_source", "dataset") for r in rows).items())
        ),
    }


def counts(by_split: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    every = [r for rows in by_split.values() for r in rows]
    return {"total": _count(every), "splits": {k: _count(v) for k, v in by_split.items()}}


def source_summary(
    sources: list[dict[str, Any]], entries: list[dict[str, Any]], origin: list[int]
) -> list[dict[str, Any]]:
    """Images, QA pairs (by type and by question source) and rejects of each source.

    ``entries[k]`` (a row or a reject) came from ``sources[origin[k]]``; a source that
    gave nothing is listed with zeros, never left out.
    """
    out = []
    for k, src in enumerate(sources):
        mine = [e for e, o in zip(entries, origin, strict=True) if o == k]
        rows = [e["row"] for e in mine if "row" in e]
        out.append(
            {
                "source": k,
                "kind": src["kind"],
                "input": src["args"].get("root")
                or src["args"].get("mmad_json")
                or src["args"].get("path"),
                "images": len({r["image_id"] for r in rows}),
                "qa_pairs": len(rows),
                "rejects": sum(1 for e in mine if "reject" in e),
                "by_type": dict(sorted(Counter(r["type"] for r in rows).items())),
                "by_question_source": dict(
                    sorted(Counter(r.get("question_source", "dataset") for r in rows).items())
                ),
            }
        )
    return out


def summary_table(summary: list[dict[str, Any]]) -> str:
    """The per-source summary as a Markdown table (types as MMAD's column abbreviations).

    >>> print(summary_table([{"kind": "mvtec", "input": "/d/mv", "images": 2, "qa_pairs": 5,
    ...       "rejects": 1, "by_type": {"Anomaly Discrimination": 2, "Defect Localization": 3}}]))
    | source | images | QA pairs | AD | DC | DL | DD | DA | OC | OA | rejects |
    |---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|
    | mvtec /d/mv | 2 | 5 | 2 | 0 | 3 | 0 | 0 | 0 | 0 | 1 |
    | **total** | 2 | 5 | 2 | 0 | 3 | 0 | 0 | 0 | 0 | 1 |
    """
    from omniad_core.metrics import MMAD_TYPES

    abbr = ["".join(w[0] for w in t.split()) for t in MMAD_TYPES]
    lines = [
        f"| source | images | QA pairs | {' | '.join(abbr)} | rejects |",
        "|---|--:|--:|" + "--:|" * len(abbr) + "--:|",
    ]
    total = {"images": 0, "qa_pairs": 0, "rejects": 0, **{t: 0 for t in MMAD_TYPES}}
    for s in summary:
        by_type = [s["by_type"].get(t, 0) for t in MMAD_TYPES]
        cells = [s["images"], s["qa_pairs"], *by_type, s["rejects"]]
        lines.append(f"| {s['kind']} {s['input']} | " + " | ".join(map(str, cells)) + " |")
        for key in ("images", "qa_pairs", "rejects"):
            total[key] += s[key]
        for t, n in zip(MMAD_TYPES, by_type, strict=True):
            total[t] += n
    cells = [total["images"], total["qa_pairs"], *(total[t] for t in MMAD_TYPES), total["rejects"]]
    lines.append("| **total** | " + " | ".join(map(str, cells)) + " |")
    return "\n".join(lines)


def feature_names(sft: bool) -> dict[str, str]:
    return {k: repr(v) for k, v in features(sft).items()}


def up_to_date(out: Path, fp: str) -> bool:
    try:
        manifest = json.loads((out / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    return (
        manifest.get("fingerprint") == fp
        and (out / "rejects.jsonl").is_file()
        and all((out / k / "dataset_dict.json").is_file() for k in ("sft", "grpo"))
    )


def _examples(rows: list[dict[str, Any]], cache: WorkCache, sft: bool) -> Iterator[dict[str, Any]]:
    for r in rows:
        mask = cache.mask_bytes(r["mask"]) if r["mask"] else zero_mask_png(r["height"], r["width"])
        ex: dict[str, Any] = {"id": r["id"], "prompt": r["prompt"]}
        if sft:
            ex["completion"] = r["completion"]
        ex["images"] = [{"bytes": cache.image_bytes(k), "path": None} for k in r["images"]]
        ex["mask"] = {"bytes": mask, "path": None}
        for k in ("seg", "answer", "options", "type", "category", "dataset", "image_path", "shots"):
            ex[k] = r[k]
        yield ex


class _Rows:
    """Rows passed to a datasets generator without being split into shards or hashed."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows


def _gen(rows: _Rows, cache: WorkCache, sft: bool) -> Iterator[dict[str, Any]]:
    yield from _examples(rows.rows, cache, sft)


def write_datasets(
    out: Path,
    work: Path,
    by_split: dict[str, list[dict[str, Any]]],
    cache: WorkCache,
    fp: str,
    verbose: bool,
) -> None:
    import datasets

    bars = datasets.is_progress_bar_enabled()
    if not verbose:
        datasets.disable_progress_bars()
    hf_cache = work / f"hf-{os.getpid()}"
    try:
        for kind in ("sft", "grpo"):
            feats = features(kind == "sft")
            parts = {
                split: datasets.Dataset.from_generator(
                    _gen,
                    features=feats,
                    cache_dir=str(hf_cache),
                    gen_kwargs={"rows": _Rows(rows), "cache": cache, "sft": kind == "sft"},
                    fingerprint=f"{fp}-{kind}-{split}",
                    split=datasets.NamedSplit(split),
                )
                for split, rows in by_split.items()
            }
            tmp = work / f"tmp-{kind}"
            if tmp.exists():
                shutil.rmtree(tmp)
            datasets.DatasetDict(parts).save_to_disk(str(tmp))
            del parts
            final = out / kind
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
    finally:
        shutil.rmtree(hf_cache, ignore_errors=True)
        if bars and not verbose:
            datasets.enable_progress_bars()
