"""``prepare``: SFT and GRPO datasets from MMAD, image folders and generic JSONL.

The output folder holds ``sft/`` and ``grpo/`` (``datasets.DatasetDict`` saved with
``save_to_disk``, self-contained: image and mask bytes are stored inside),
``manifest.json``, ``rejects.jsonl`` and the work folder ``.work/`` that makes
re-runs cheap (see :mod:`omniad_train.data.cache`).  The schema is documented in
``docs/data.md``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import textmask
from omniad_core.prompts import SYSTEM_PROMPT
from omniad_train.data.cache import (
    MASK_VERSION,
    RESIZE_VERSION,
    RecordLog,
    WorkCache,
    digest,
    write_atomic,
)
from omniad_train.data.folders import resolve_types
from omniad_train.data.jsonl import iter_jsonl
from omniad_train.data.output import (
    counts,
    feature_names,
    source_summary,
    split_rows,
    summary_table,
    up_to_date,
    write_datasets,
)
from omniad_train.data.reasoning import TEMPLATE_VERSION
from omniad_train.data.records import Record, Reject
from omniad_train.data.rows import process_record, record_key, usable
from omniad_train.data.selection import per_category
from omniad_train.data.sources import iter_mmad, iter_mvtec
from omniad_train.data.templates import TEMPLATE_TYPES, QuestionWriter

__all__ = ["PrepareError", "PrepareResult", "prepare"]

PathLike = str | os.PathLike[str]
PathsLike = PathLike | Sequence[PathLike] | None
#: Version of the row layout; bump when columns change (cached rows are then redone).
ROW_VERSION = 1
_OURS = ("sft", "grpo", "manifest.json", "rejects.jsonl", ".work")


class PrepareError(ValueError):
    """Bad arguments, a missing input, or nothing that could be prepared."""


@dataclass
class PrepareResult:
    """What :func:`prepare` wrote and did."""

    output_dir: Path
    sft_dir: Path
    grpo_dir: Path
    manifest_path: Path
    rejects_path: Path
    n_records: int
    n_images: int
    n_rejects: int
    splits: dict[str, int]
    processed: int = 0
    reused: int = 0
    images_read: int = 0
    up_to_date: bool = False
    counts: dict[str, Any] = field(default_factory=dict)
    sources: list[dict[str, Any]] = field(default_factory=list)
    skipped_questions: list[dict[str, Any]] = field(default_factory=list)
    shots: int = 0
    #: Distinct normal training images (``train/good``) of the image-folder sources picked
    #: as 1-shot references; None without an image-folder source.
    n_folder_references: int | None = None

    def table(self) -> str:
        """Images and QA pairs per source and type (Markdown), as printed by ``prepare``."""
        return summary_table(self.sources)

    def summary(self) -> str:
        """What ``prepare`` prints at the end: records, images, splits and rejects, then
        (with an image-folder source) what its ``train/good`` images are used for."""
        split = ", ".join(f"{k} {v:,}" for k, v in self.splits.items())
        line = (
            f"{self.n_records:,} records from {self.n_images:,} images prepared ({split}), "
            f"{self.n_rejects:,} rejected, see {self.rejects_path}"
        )
        note = self.references_note()
        return line + (f"\n{note}" if note else "")

    def references_note(self) -> str | None:
        """What the image folders' ``train/good`` images are used for, and how many.

        >>> r = PrepareResult(Path("o"), Path("o/sft"), Path("o/grpo"), Path("o/m"),
        ...     Path("o/r"), 4, 2, 0, {"train": 4}, shots=1, n_folder_references=3)
        >>> print(r.references_note())
        train/good: 3 normal images are used only as 1-shot references (one in each prompt), never as training examples
        """
        n = self.n_folder_references
        if n is None:
            return None
        if self.shots:
            return (
                f"train/good: {n:,} normal images are used only as 1-shot references (one in "
                "each prompt), never as training examples"
            )
        return (
            "train/good: not used (--shots 0); the image folders' normal training images are "
            f"only ever 1-shot references ({n:,} would be with --shots 1), never training "
            "examples"
        )


def _paths(value: PathsLike) -> list[Path]:
    if value is None:
        return []
    if isinstance(value, (str, os.PathLike)):
        return [Path(value)]
    return [Path(v) for v in value]


def prepare(
    output_dir: PathLike,
    *,
    mmad_json: PathsLike = None,
    image_root: PathsLike = None,
    mvtec_root: PathsLike = None,
    visa_root: PathsLike = None,
    jsonl: PathsLike = None,
    grid: textmask.grid.GridLike = 24,
    image_size: int = 512,
    shots: Literal[0, 1] = 0,
    reference_from: Literal["similar", "random"] = "similar",
    system_prompt: str | None = SYSTEM_PROMPT,
    eval_fraction: float = 0.0,
    seed: int = 0,
    location_questions: bool = True,
    question_types: str | Sequence[str] | None = None,
    max_per_category: int | None = None,
    mmad_max_per_category: int | None = None,
    max_records: int | None = None,
    allow_outside_root: bool = False,
    question_writers: Sequence[QuestionWriter] = (),
    overwrite: bool = False,
    verbose: bool = True,
) -> PrepareResult:
    """Build the SFT and GRPO datasets in ``output_dir``; see ``docs/data.md``.

    Image folders (``mvtec_root``: any known layout; ``visa_root``: VisA's original
    layout) get the template questions of ``question_types`` (default: all five types
    of :data:`~omniad_train.data.templates.TEMPLATE_TYPES`; ``location_questions=False``
    drops Defect Localization), then those of ``question_writers`` (e.g. a teacher
    model; see :class:`~omniad_train.data.templates.QuestionWriter`).
    ``max_per_category`` keeps at most that many images per category of each image
    folder (``mmad_max_per_category``: of each MMAD file), round-robin over the defect
    types; the paper's SFT mix takes one per category (see ``docs/data.md``).

    Bad records go to ``rejects.jsonl`` with a reason; a re-run with the same arguments
    reuses the work folder and, when nothing changed, leaves the datasets as they are.
    ``overwrite=True`` first deletes the outputs of an earlier run (only ``sft/``,
    ``grpo/``, ``manifest.json``, ``rejects.jsonl`` and ``.work/``).

    Every path a source names must resolve inside its root (MMAD: ``image_root``;
    MVTec-style: the folder; JSONL: the file's folder); ``allow_outside_root=True``
    lets JSONL lines name absolute paths and paths outside their folder.

    Raises
    ------
    PrepareError
        Bad arguments, a missing input, a non-empty foreign output folder, or no record
        that could be prepared (``rejects.jsonl`` is written first).
    """
    try:
        g = textmask.Grid.of(grid)
    except textmask.TextMaskError as exc:
        raise PrepareError(f"bad grid: {exc}") from None
    _check_args(image_size, shots, reference_from, eval_fraction, max_records, seed)
    for name, v in (
        ("max_per_category", max_per_category),
        ("mmad_max_per_category", mmad_max_per_category),
    ):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise PrepareError(f"{name} must be None or an integer >= 1, got {v!r}")
    try:
        types = resolve_types(question_types, location_questions, TEMPLATE_TYPES)
    except ValueError as exc:
        raise PrepareError(f"question_types: {exc}") from None
    if not isinstance(allow_outside_root, bool):
        raise PrepareError(f"allow_outside_root must be True or False, got {allow_outside_root!r}")
    folders = [(r, "auto") for r in _paths(mvtec_root)] + [(r, "visa") for r in _paths(visa_root)]
    sources = _check_sources(
        _paths(mmad_json), _paths(image_root), folders, _paths(jsonl), reference_from
    )
    for src in sources:
        if src["kind"] in ("mvtec", "visa"):
            src["args"].update(
                location_questions=location_questions,
                seed=seed,
                question_types=list(types),
                max_per_category=max_per_category,
            )
        elif src["kind"] == "mmad" and mmad_max_per_category is not None:
            src["args"].update(max_per_category=mmad_max_per_category)
        elif src["kind"] == "jsonl" and allow_outside_root:
            src["args"].update(allow_outside_root=True)
    out = Path(output_dir)
    _check_output(out, overwrite)
    work = out / ".work"
    cache = WorkCache(work, image_size)
    cfg = {
        "grid": g.to_dict(),
        "image_size": image_size,
        "shots": shots,
        "system_prompt": system_prompt,
        "seed": seed,
        "templates": TEMPLATE_VERSION,
        "rows": ROW_VERSION,
        "resize": RESIZE_VERSION,
        "masks": MASK_VERSION,
        "writers": [f"{w.name}/{w.version}" for w in question_writers],
    }
    notes: list[dict[str, Any]] = []
    items, origin, n_unselected = _read_sources(
        sources, cache, seed, types, question_writers, notes, max_records, verbose
    )

    entries, processed, reused = _process_all(items, cache, g, cfg, work, verbose)
    table = source_summary(sources, entries, origin)
    rows = [e["row"] for e in entries if "row" in e]
    rejects = [e["reject"] for e in entries if "reject" in e]
    rejects_path = out / "rejects.jsonl"
    rejects_text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rejects)
    if not rows:
        write_atomic(rejects_path, rejects_text.encode())
        per_source = "; ".join(f"{s['kind']} {s['input']}: {s['rejects']} rejected" for s in table)
        raise PrepareError(
            f"nothing could be prepared: all {len(rejects):,} records were rejected, see "
            f"{rejects_path} ({per_source})"
            if rejects
            else f"nothing could be prepared: the sources hold no records ({per_source})"
        )
    by_split = split_rows(rows, eval_fraction, seed)
    fp = digest(
        cfg,
        [e.get("key") for e in entries],
        rejects,
        {k: [r["id"] for r in v] for k, v in by_split.items()},
    )
    tallies = {kind: counts(by_split) for kind in ("sft", "grpo")}
    manifest_path = out / "manifest.json"
    fresh = up_to_date(out, fp)
    if not fresh:
        write_datasets(out, work, by_split, cache, fp, verbose)
        write_atomic(rejects_path, rejects_text.encode())
        manifest = {
            "format": "omniad-prepare/1",
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "omniad_version": _version(),
            "textmask": g.to_dict(),
            "image_size": image_size,
            "shots": shots,
            "seed": seed,
            "eval_fraction": eval_fraction,
            "location_questions": location_questions,
            "question_types": list(types),
            "question_writers": ["template/1", *cfg["writers"]],
            "max_per_category": max_per_category,
            "mmad_max_per_category": mmad_max_per_category,
            "max_records": max_records,
            "system_prompt": system_prompt,
            "system_prompt_sha256": hashlib.sha256((system_prompt or "").encode()).hexdigest(),
            "sources": [s["args"] for s in sources],
            "n_records": len(rows),
            "n_images": len({r["image_id"] for r in rows}),
            "n_rejects": len(rejects),
            "n_unselected_images": n_unselected,
            "counts": tallies,
            "summary": table,
            "skipped_questions": notes,
            "teacher": [w.report() for w in question_writers if hasattr(w, "report")],
            "columns": {k: feature_names(k == "sft") for k in ("sft", "grpo")},
            "fingerprint": fp,
        }
        write_atomic(manifest_path, (json.dumps(manifest, indent=2) + "\n").encode())
    result = PrepareResult(
        output_dir=out,
        sft_dir=out / "sft",
        grpo_dir=out / "grpo",
        manifest_path=manifest_path,
        rejects_path=rejects_path,
        n_records=len(rows),
        n_images=len({r["image_id"] for r in rows}),
        n_rejects=len(rejects),
        splits={k: len(v) for k, v in by_split.items()},
        processed=processed,
        reused=reused,
        images_read=cache.reads["image"],
        up_to_date=fresh,
        counts=tallies,
        sources=table,
        skipped_questions=notes,
        shots=shots,
        n_folder_references=_folder_references(items, origin, sources),
    )
    if verbose:
        print(result.table())
        for note in _empty_sources(table):
            print(note)
        line, _, refs = result.summary().partition("\n")
        print(line + (" (datasets already up to date)" if fresh else ""))
        if refs:
            print(refs)
        for w in question_writers:
            if hasattr(w, "summary"):
                print(w.summary())
    return result


def _folder_references(
    items: list[Record | Reject], origin: list[int], sources: list[dict[str, Any]]
) -> int | None:
    """Distinct references of the image-folder sources' records (None: no such source)."""
    folders = {k for k, s in enumerate(sources) if s["kind"] in ("mvtec", "visa")}
    if not folders:
        return None
    return len(
        {
            it.reference[0]
            for it, k in zip(items, origin, strict=True)
            if k in folders and isinstance(it, Record) and it.reference
        }
    )


def _empty_sources(table: list[dict[str, Any]]) -> list[str]:
    return [
        f"warning: source {s['source']} ({s['kind']} {s['input']}) gave no record: "
        f"{s['rejects']} rejected, see rejects.jsonl"
        for s in table
        if not s["qa_pairs"]
    ]


# --------------------------------------------------------------------------- checks
def _check_args(
    image_size: Any,
    shots: Any,
    reference_from: Any,
    eval_fraction: Any,
    max_records: Any,
    seed: Any,
) -> None:
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 28:
        raise PrepareError(f"image_size must be an integer >= 28 (pixels), got {image_size!r}")
    if shots not in (0, 1) or isinstance(shots, bool):
        raise PrepareError(f"shots must be 0 or 1, got {shots!r}")
    if reference_from not in ("similar", "random"):
        raise PrepareError(f"reference_from must be 'similar' or 'random', got {reference_from!r}")
    if not isinstance(eval_fraction, (int, float)) or not 0.0 <= eval_fraction < 1.0:
        raise PrepareError(f"eval_fraction must be in [0, 1), got {eval_fraction!r}")
    if max_records is not None and (not isinstance(max_records, int) or max_records < 1):
        raise PrepareError(f"max_records must be None or an integer >= 1, got {max_records!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise PrepareError(f"seed must be an integer, got {seed!r}")


def _check_sources(
    mmad_jsons: list[Path],
    image_roots: list[Path],
    folders: list[tuple[Path, str]],
    jsonl_paths: list[Path],
    reference_from: str,
) -> list[dict[str, Any]]:
    sources: list[dict[str, Any]] = []
    if image_roots and not mmad_jsons:
        raise PrepareError("image_root is the folder of MMAD's images; pass mmad_json with it")
    if len(image_roots) > 1 and len(image_roots) != len(mmad_jsons):
        raise PrepareError(
            f"give one image_root for every mmad_json ({len(mmad_jsons)}), or a single one for "
            f"all; got {len(image_roots)}"
        )
    for k, mj in enumerate(mmad_jsons):
        if not mj.is_file():
            raise PrepareError(
                f"mmad_json: no file at {str(mj)!r}; pass the path of MMAD's mmad.json"
            )
        root = image_roots[k if len(image_roots) > 1 else 0] if image_roots else mj.parent
        if not root.is_dir():
            raise PrepareError(f"image_root: no folder at {str(root)!r}; pass MMAD's image folder")
        args = {
            "mmad_json": os.path.abspath(mj),
            "image_root": os.path.abspath(root),
            "reference_from": reference_from,
        }
        sources.append({"kind": "mmad", "args": {"kind": "mmad", **args}})
    for r, layout in folders:
        kind = "visa" if layout == "visa" else "mvtec"
        if not r.is_dir():
            raise PrepareError(
                f"{kind}_root: no folder at {str(r)!r}; pass "
                + ("a VisA folder" if kind == "visa" else "a dataset folder (MVTec-style, ...)")
            )
        args = {"kind": kind, "root": os.path.abspath(r), "layout": layout}
        sources.append({"kind": kind, "args": args})
    for j in jsonl_paths:
        if not j.is_file():
            raise PrepareError(f"jsonl: no file at {str(j)!r}")
        sources.append({"kind": "jsonl", "args": {"kind": "jsonl", "path": os.path.abspath(j)}})
    if not sources:
        raise PrepareError(
            "nothing to prepare: give mmad_json, mvtec_root, visa_root or jsonl (one at least)"
        )
    return sources


def _check_output(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise PrepareError(f"the output {str(out)!r} is a file; give a folder")
    if out.is_dir():
        names = {p.name for p in out.iterdir()}
        if overwrite:
            for name in _OURS:
                p = out / name
                if p.is_dir():
                    shutil.rmtree(p)
                elif p.exists():
                    p.unlink()
        elif names and not names & {".work", "manifest.json"}:
            raise PrepareError(
                f"{str(out)!r} is not empty and is not a prepare output folder; choose a new "
                "folder or pass overwrite=True (it deletes only sft/, grpo/, manifest.json, "
                "rejects.jsonl and .work/)"
            )
    out.mkdir(parents=True, exist_ok=True)


# --------------------------------------------------------------------------- reading
def _read_sources(
    sources: list[dict[str, Any]],
    cache: WorkCache,
    seed: int,
    types: tuple[str, ...],
    writers: Sequence[QuestionWriter],
    notes: list[dict[str, Any]],
    max_records: int | None,
    verbose: bool,
) -> tuple[list[Record | Reject], list[int], int]:
    """Every source's records and rejects, the index of the source of each, and the
    number of images left out by ``max_per_category``."""
    from tqdm.auto import tqdm

    def mask_info(path: str) -> Any:
        return cache.mask(path).info

    items: list[Record | Reject] = []
    origin: list[int] = []
    seen: set[str] = set()
    n = unselected = 0
    chosen: dict[str, int] = {}
    for k, src in enumerate(sources):
        a = src["args"]

        def select(items: list[Any], limit: int | None = a.get("max_per_category")) -> list[Any]:
            kept, chosen["left_out"] = per_category(items, limit, seed)
            return kept

        it: Iterable[Record | Reject]
        try:
            if src["kind"] == "mmad":
                it = iter_mmad(a["mmad_json"], a["image_root"], reference_from=a["reference_from"])
            elif src["kind"] in ("mvtec", "visa"):
                mine: list[dict[str, Any]] = []
                it = iter_mvtec(
                    a["root"],
                    seed=seed,
                    mask_info=mask_info,
                    question_types=types,
                    layout=a["layout"],
                    writers=writers,
                    notes=mine,
                    select=select if a.get("max_per_category") is not None else None,
                )
            else:
                it = iter_jsonl(a["path"], allow_outside_root=a.get("allow_outside_root", False))
            got = list(tqdm(it, desc=f"reading {src['kind']}", unit=" rec", disable=not verbose))
            if src["kind"] in ("mvtec", "visa"):
                notes.extend({"source": k, **note} for note in mine)
        except (FileNotFoundError, ValueError) as exc:
            raise PrepareError(f"{src['kind']}: {exc}") from None
        if src["kind"] in ("mvtec", "visa"):  # chosen inside, before the writers asked
            unselected += chosen.pop("left_out", 0)
        else:
            got, left_out = per_category(got, a.get("max_per_category"), seed)
            unselected += left_out
        for item in got:
            if isinstance(item, Record):
                if item.id in seen:
                    item = Reject(
                        source=item.source,
                        record=item.id,
                        reason=f"duplicate id {item.id!r}: an earlier record has it; give "
                        "each record its own id",
                    )
                else:
                    seen.add(item.id)
                    n += 1
            items.append(item)
            origin.append(k)
            if max_records is not None and n >= max_records:
                return items, origin, unselected
    return items, origin, unselected


def _process_all(
    items: list[Record | Reject],
    cache: WorkCache,
    g: textmask.Grid,
    cfg: dict[str, Any],
    work: Path,
    verbose: bool,
) -> tuple[list[dict[str, Any]], int, int]:
    """Process every record not in the log yet; entries in source order, readers' rejects too."""
    from tqdm.auto import tqdm

    log = RecordLog(work / "records.jsonl")
    done = log.load()
    entries: list[dict[str, Any]] = []
    kept: list[dict[str, Any]] = []
    processed = reused = 0
    total = sum(1 for it in items if isinstance(it, Record))
    with log, tqdm(total=total, desc="preparing", unit=" rec", disable=not verbose) as bar:
        for it in items:
            if isinstance(it, Reject):
                entries.append({"reject": it.model_dump()})
                continue
            key = record_key(it, cfg)
            entry = done.get(key)
            if entry is None or not usable(entry, cache):
                entry = {"key": key, **process_record(it, cache, g, cfg)}
                processed += 1
                if entry.pop("retry", False):  # unexpected error: not logged, retried next run
                    entries.append(entry)
                    bar.update()
                    continue
                log.append(entry)
            else:
                reused += 1
            entries.append(entry)
            kept.append(entry)
            bar.update()
    if processed or len(done) != len(kept):
        log.rewrite(kept)  # drop entries of records no longer asked for
    return entries, processed, reused


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("omniad")
    except Exception:  # not installed as a distribution
        return "unknown"
