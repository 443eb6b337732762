"""Machinery shared by the MMAD and detection runners.

- :class:`Item`: one unit of work (a question to ask, or a bad input to list as skipped).
- :func:`execute`: the resumable, sharded, batched loop writing a rank's JSONL.
- :func:`merge_shards` and :func:`build_report`: combine rank files and write reports.
- Run files in the output folder:

  ==========================  ==================================================
  ``run.json``                what was run (fingerprint checked on resume)
  ``results.jsonl``           one line per item (single process, or merged shards)
  ``results.rank{i}.jsonl``   shard ``i`` of a sharded run
  ``done.rank{i}.json``       shard ``i`` finished (item count, selection hash)
  ``report.md/.json``         the report, rebuilt from ``results.jsonl``
  ==========================  ==================================================
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import logging
import math
import os
import platform
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from omniad_train.data.records import Record
from omniad_train.evaluation.runlog import (
    LogRepair,
    RunLog,
    RunLogLockedError,
    Validator,
    atomic_write_text,
    read_jsonl,
    resolve_shard,
    selection_sha256,
    shard_slice,
)
from omniad_train.evaluation.schema import KINDS, line_validator

__all__ = [
    "EvalInterrupted",
    "EvalResult",
    "IncompleteRunError",
    "Item",
    "RunConfigError",
    "SkipItem",
    "build_report",
    "check_model",
    "execute",
    "merge_shards",
    "model_settings",
    "package_versions",
    "shard_status",
]

log = logging.getLogger("omniad.evaluation")

RUN_FILE = "run.json"
RESULTS_FILE = "results.jsonl"
RUN_FORMAT = "omniad.evaluation.run/1"


class RunConfigError(ValueError):
    """The output folder holds a run made with other settings."""


class IncompleteRunError(RuntimeError):
    """Not every shard of a sharded run has finished."""


class EvalInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a run; what was finished is saved and re-running resumes.

    A ``KeyboardInterrupt``, so code that stops on Ctrl-C still stops.

    Attributes
    ----------
    results : Path
        The JSONL holding the finished items.
    n_done, n_items : int
        Items of this shard with a line in ``results``, and items in the shard.
    shard : (index, num_shards)
    """

    def __init__(
        self,
        results: Path,
        n_done: int,
        n_items: int,
        shard: tuple[int, int],
        overwrite: bool = False,
    ) -> None:
        self.results, self.n_done, self.n_items, self.shard = results, n_done, n_items, shard
        where = "" if shard[1] == 1 else f"shard {shard[0]}/{shard[1]}: "
        again = "the same command without --overwrite" if overwrite else "the same command"
        super().__init__(
            f"{where}interrupted: {n_done} of {n_items} items finished, saved to {results}; "
            f"re-run {again} to resume"
        )


class SkipItem(Exception):
    """Raised by a task for an input it cannot use; the item is listed as skipped."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


@dataclass
class Item:
    """One unit of work, in the run's global order (``index``).

    ``record`` is the question to ask; ``skip`` is ``(kind, reason)`` for a bad input
    found while reading (then ``record`` is None).  ``extra`` holds task-specific data.
    """

    id: str
    index: int
    dataset: str
    category: str
    record: Record | None = None
    skip: tuple[str, str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class EvalResult:
    """What a runner call did.

    Attributes
    ----------
    out_dir : Path
        The run folder.
    results : Path
        The JSONL this process wrote (its shard's file).
    shard : (index, num_shards)
    n_items : int
        Items in this shard.
    n_new : int
        Items written by this call (the rest were already in the JSONL); inputs skipped
        by an earlier call are re-checked and count here too.
    complete : bool
        Every shard has finished and the report was written.
    report : dict or None
        The report (as in ``report.json``) when complete.
    """

    out_dir: Path
    results: Path
    shard: tuple[int, int]
    n_items: int
    n_new: int
    complete: bool
    report: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def report_md(self) -> Path:
        return self.out_dir / "report.md"

    @property
    def report_json(self) -> Path:
        return self.out_dir / "report.json"


# --------------------------------------------------------------------------- helpers
def now() -> str:
    """The current UTC time, ISO 8601, seconds."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def package_versions() -> dict[str, str | None]:
    """Versions of omniad, torch, transformers, numpy, Pillow and Python (no imports)."""
    out: dict[str, str | None] = {}
    for name in ("omniad", "torch", "transformers", "numpy", "pillow"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    out["python"] = platform.python_version()
    return out


def sha256_text(text: str | None) -> str | None:
    return None if text is None else hashlib.sha256(text.encode("utf-8")).hexdigest()


def json_safe(value: Any) -> Any:
    """NaN and inf become None; tuples become lists (report.json stays valid JSON)."""
    if isinstance(value, float):
        return None if not math.isfinite(value) else value
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write_json(path: Path, data: Any) -> Path:
    return atomic_write_text(path, json.dumps(json_safe(data), indent=2, ensure_ascii=False) + "\n")


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise RunConfigError(f"{path} is not valid JSON ({exc}); delete it to start over") from None


def results_path(out_dir: Path, shard_index: int, num_shards: int) -> Path:
    """``results.jsonl`` for a single process, ``results.rank{i}.jsonl`` for shards."""
    return out_dir / (RESULTS_FILE if num_shards == 1 else f"results.rank{shard_index}.jsonl")


def done_path(out_dir: Path, shard_index: int) -> Path:
    return out_dir / f"done.rank{shard_index}.json"


def parse_categories(value: str | Iterable[str] | None) -> frozenset[str] | None:
    """A category filter from ``"a,b"`` or a list; None keeps everything."""
    if value is None:
        return None
    parts = value.split(",") if isinstance(value, str) else list(value)
    kept = frozenset(p.strip() for p in parts if p and p.strip())
    return kept or None


def wanted(selection: frozenset[str] | None, dataset: str, category: str) -> bool:
    """An item is kept when its category, ``dataset/category`` or dataset is selected."""
    return selection is None or bool({category, f"{dataset}/{category}", dataset} & selection)


def select(
    stream: Iterable[Item],
    *,
    categories: frozenset[str] | None,
    limit: int | None,
    limit_per_category: int | None,
) -> list[Item]:
    """Filter, cap and number items (stops reading once ``limit`` items are kept)."""
    for name, v in (("limit", limit), ("limit_per_category", limit_per_category)):
        if v is not None and v < 0:
            raise ValueError(f"{name} must be >= 0, got {v}")
    out: list[Item] = []
    per_cat: dict[tuple[str, str], int] = {}
    seen: set[str] = set()
    if limit == 0:
        return out
    for item in stream:
        if not wanted(categories, item.dataset, item.category):
            continue
        key = (item.dataset, item.category)
        if limit_per_category is not None and per_cat.get(key, 0) >= limit_per_category:
            continue
        if item.id in seen:
            raise ValueError(f"two inputs have the same id {item.id!r}; ids must be unique")
        seen.add(item.id)
        item.extra["ordinal_in_category"] = per_cat.get(key, 0)
        per_cat[key] = per_cat.get(key, 0) + 1
        item.index = len(out)
        out.append(item)
        if limit is not None and len(out) >= limit:
            break
    return out


# --------------------------------------------------------------------------- model
_DEFAULT_SETTINGS = {"grid": 24, "image_size": 512, "max_new_tokens": 512, "layout": "lines"}


def model_settings(model: Any, overrides: dict[str, Any]) -> dict[str, Any]:
    """The settings a model will run with, known before loading it (for the fingerprint).

    ``model`` is a checkpoint path / hub id (its ``omniad.json`` is read if present) or
    an :class:`~omniad_core.Inspector`.
    """
    import textmask
    from omniad_core.inspector import Inspector, load_spec
    from omniad_core.prompts import SYSTEM_PROMPT

    if isinstance(model, Inspector):
        gen = {
            k: v
            for k, v in model.generation_kwargs.items()
            if isinstance(v, (int, float, str, bool)) and v is not None
        }
        name = getattr(getattr(model.model, "config", None), "_name_or_path", None)
        if name and Path(name).exists():
            name = str(Path(name).resolve())  # as for a path argument: resumable either way
        return {
            "model": str(name) if name else f"<{type(model.model).__name__} instance>",
            "grid": model.grid.to_dict(),
            "image_size": model.image_size,
            "system_prompt_sha256": sha256_text(model.system_prompt),
            "layout": model.layout,
            "generation": gen,
        }
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(
            f"model must be a checkpoint path or an omniad_core.Inspector, got {type(model).__name__}"
        )
    path = Path(model)
    spec = load_spec(path) if path.is_dir() else {}
    given = {k: v for k, v in overrides.items() if v is not None}
    if "grid" in given:
        grid = textmask.Grid.of(given["grid"])
    elif "textmask" in spec:
        grid = textmask.Grid.from_dict(spec["textmask"])
    else:
        grid = textmask.Grid.of(_DEFAULT_SETTINGS["grid"])
    prompt = given.get("system_prompt", spec.get("system_prompt", SYSTEM_PROMPT))
    gen: dict[str, Any] = {
        "max_new_tokens": int(given.get("max_new_tokens", _DEFAULT_SETTINGS["max_new_tokens"])),
        "do_sample": False,
    }
    settings = {
        "model": str(path.resolve()) if path.exists() else str(model),
        "grid": grid.to_dict(),
        "image_size": given.get(
            "image_size", spec.get("image_size", _DEFAULT_SETTINGS["image_size"])
        ),
        "system_prompt_sha256": sha256_text(prompt),
        "layout": given.get("layout", _DEFAULT_SETTINGS["layout"]),
        "generation": gen,
    }
    if given.get("dtype") is not None:
        settings["dtype"] = str(given["dtype"])
    return settings


def check_model(model: Any) -> None:
    """Fail at once, before any work, on a model argument that cannot be loaded.

    A path-like argument (``runs/omniad-7b``, ``./ckpt``) that does not exist raises
    FileNotFoundError with a one-line message, instead of being tried as a hub id.  The
    check is :func:`omniad_core.inspector.check_model_location` (skipped when the
    installed ``omniad_core`` does not provide it); an Inspector passes as is.
    """
    if not isinstance(model, (str, os.PathLike)):
        return
    from omniad_core import inspector

    check = getattr(inspector, "check_model_location", None)
    if check is not None:
        check(model)


def _default_device() -> str | None:
    import torch

    if torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0') or 0)}"
    return None


def load_inspector(model: Any, overrides: dict[str, Any], device: str | None = None) -> Any:
    """An Inspector: ``model`` itself, or loaded from a checkpoint path with ``overrides``."""
    from omniad_core.inspector import Inspector

    if isinstance(model, Inspector):
        return model
    import torch

    kwargs = {
        k: v
        for k, v in overrides.items()
        if v is not None
        and k in ("grid", "image_size", "max_new_tokens", "layout", "system_prompt")
    }
    dtype = overrides.get("dtype")
    if isinstance(dtype, str):
        if not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise ValueError(f"unknown dtype {dtype!r}; use float32, bfloat16 or float16")
        dtype = getattr(torch, dtype)
    log.info("loading %s", model)
    return Inspector.from_pretrained(
        model, device=device if device is not None else _default_device(), dtype=dtype, **kwargs
    )


# --------------------------------------------------------------------------- run files
def _check_run(
    out_dir: Path, kind: str, fingerprint: dict[str, Any], num_shards: int, overwrite: bool
) -> dict[str, Any] | None:
    """The folder's ``run.json`` (None if none); RunConfigError when it holds a run with
    other settings and ``overwrite`` is False.  Reads only."""
    old = read_json(out_dir / RUN_FILE)
    if old is not None and not isinstance(old, dict):
        raise RunConfigError(
            f"{out_dir / RUN_FILE} is not a run file (a JSON object); delete it to start over"
        )
    if old is None or overwrite:
        return old
    differ = []
    if old.get("kind") != kind:
        differ.append(f"kind: {old.get('kind')!r} -> {kind!r}")
    if old.get("num_shards") != num_shards:
        differ.append(f"num_shards: {old.get('num_shards')!r} -> {num_shards!r}")
    old_fp = old.get("fingerprint", {})
    old_fp = old_fp if isinstance(old_fp, dict) else {}
    for k in sorted(set(old_fp) | set(fingerprint)):
        if json_safe(old_fp.get(k)) != json_safe(fingerprint.get(k)):
            differ.append(f"{k}: {old_fp.get(k)!r} -> {fingerprint.get(k)!r}")
    if differ:
        raise RunConfigError(
            f"{out_dir} holds a run with other settings ({'; '.join(differ)}); resume it "
            "with the same settings, choose another output folder, or pass overwrite=True "
            "(--overwrite) to discard its results"
        )
    return old


def _hold_merged(out_dir: Path, shard: tuple[int, int], overwrite: bool) -> RunLog | None:
    """``--overwrite`` of shard 0 of a sharded run deletes the merged ``results.jsonl``:
    take its lock first, so a live single-process run writing it is never robbed of
    its file (RunLogLockedError instead)."""
    shard_index, num_shards = shard
    merged = out_dir / RESULTS_FILE
    if not (overwrite and num_shards > 1 and shard_index == 0 and merged.exists()):
        return None
    guard = RunLog(merged)
    try:
        guard.acquire()
    except RunLogLockedError:
        raise RunLogLockedError(
            f"another process is writing {merged}; --overwrite does not delete the results "
            "of a live run: wait for it to finish (or stop it), or choose another --out"
        ) from None
    return guard


def _clear_shard(out_dir: Path, shard: tuple[int, int]) -> None:
    """``--overwrite``: delete this shard's results (the caller holds their lock) and,
    for shard 0, the merged results (locked by :func:`_hold_merged`) and the report."""
    shard_index, num_shards = shard
    results_path(out_dir, shard_index, num_shards).unlink(missing_ok=True)
    done_path(out_dir, shard_index).unlink(missing_ok=True)
    if shard_index == 0:
        for name in (RESULTS_FILE, "report.md", "report.json"):
            (out_dir / name).unlink(missing_ok=True)


def _write_run(
    out_dir: Path,
    old: dict[str, Any] | None,
    *,
    kind: str,
    fingerprint: dict[str, Any],
    config: dict[str, Any],
    report_options: dict[str, Any],
    num_shards: int,
    overwrite: bool,
    selection: str,
) -> None:
    write_json(
        out_dir / RUN_FILE,
        {
            "format": RUN_FORMAT,
            "kind": kind,
            "num_shards": num_shards,
            "created": old.get("created") if old and not overwrite else now(),
            "updated": now(),
            "selection_sha256": selection,
            "fingerprint": fingerprint,
            "config": config,
            "report_options": report_options,
        },
    )


def read_run(out_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """``run.json`` of an output folder (FileNotFoundError when it is not a run)."""
    run = read_json(Path(out_dir) / RUN_FILE)
    if not isinstance(run, dict) or run.get("format") != RUN_FORMAT:
        raise FileNotFoundError(
            f"{out_dir} holds no evaluation run ({RUN_FILE} missing or not a run file)"
        )
    return run


def shard_status(out_dir: str | os.PathLike[str]) -> tuple[list[int], list[dict[str, Any]]]:
    """``(missing, markers)``: shards without a done marker for the run's current item
    selection (``selection_sha256`` in ``run.json``), and the markers found."""
    out = Path(out_dir)
    run = read_run(out)
    n = int(run["num_shards"])
    markers = [read_json(done_path(out, i)) for i in range(n)]
    want = run.get("selection_sha256")  # a marker of another selection is stale
    missing = [
        i
        for i, m in enumerate(markers)
        if not isinstance(m, dict) or (want is not None and m.get("selection_sha256") != want)
    ]
    return missing, [m for m in markers if isinstance(m, dict)]


def _report_validator(run: dict[str, Any]) -> Validator | None:
    kind = run.get("kind")
    return line_validator(kind, full=False) if kind in KINDS else None


def _warn_repair(path: Path, repair: LogRepair, action: str) -> None:
    """Log one ``FILE:LINE: reason`` warning per line that could not be used."""
    if repair.clean:
        return
    log.warning("%s: %s %s", path, repair.describe(), action)
    for problem in repair.problems(path):
        log.warning("  %s", problem)


def merge_shards(out_dir: str | os.PathLike[str], *, allow_partial: bool = False) -> Path:
    """Combine ``results.rank{i}.jsonl`` into ``results.jsonl`` (sorted, one line per id).

    Raises :class:`IncompleteRunError` when a shard has not finished, unless
    ``allow_partial`` (then whatever is there is merged).  A single-process run needs
    no merge; its ``results.jsonl`` is returned as is.
    """
    out = Path(out_dir)
    run = read_run(out)
    n = int(run["num_shards"])
    target = out / RESULTS_FILE
    if n == 1:
        return target
    missing, _ = shard_status(out)
    if missing and not allow_partial:
        raise IncompleteRunError(
            f"shard(s) {missing} of {n} in {out} have not finished; run them (same settings, "
            "--shard_index i --num_shards n) or merge with allow_partial=True (--allow_partial)"
        )
    lines: dict[str, dict[str, Any]] = {}
    validate = _report_validator(run)
    for i in range(n):
        path = results_path(out, i, n)
        found, repair = read_jsonl(path, validate)
        _warn_repair(path, repair, "left out of the merge")
        for line in found:
            lines.setdefault(line["id"], line)
    ordered = sorted(lines.values(), key=lambda d: (d.get("index", math.inf), d["id"]))
    text = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in ordered)
    atomic_write_text(target, text)
    return target


def build_report(
    out_dir: str | os.PathLike[str],
    *,
    allow_partial: bool = False,
    **options: Any,
) -> dict[str, Any]:
    """Merge shards if needed and write ``report.md`` / ``report.json`` from the JSONL.

    ``options`` override the run's report options (``compare_paper``, and for detection
    ``image_decision``); None values keep the run's.
    """
    out = Path(out_dir)
    run = read_run(out)
    merge_shards(out, allow_partial=allow_partial)
    missing, markers = shard_status(out)
    if missing and not allow_partial:
        raise IncompleteRunError(
            f"shard(s) {missing} of the run in {out} have not finished; finish them or pass "
            "allow_partial=True (--allow_partial) for a report on what is there"
        )
    lines, repair = read_jsonl(out / RESULTS_FILE, _report_validator(run))
    _warn_repair(out / RESULTS_FILE, repair, "left out of the report")
    opts = dict(run.get("report_options", {}))
    opts.update({k: v for k, v in options.items() if v is not None})
    status = {
        "complete": not missing,
        "missing_shards": missing,
        "num_shards": run["num_shards"],
        "n_items": sum(int(m.get("n_items", 0)) for m in markers) if not missing else None,
        "n_lines": len(lines),
        "unreadable_lines": repair.problems(out / RESULTS_FILE, limit=100),
    }
    if run["kind"] == "mmad":
        from omniad_train.evaluation.mmad import mmad_report

        return mmad_report(out, lines, run, status, **opts)
    if run["kind"] == "detection":
        from omniad_train.evaluation.detection import detection_report

        return detection_report(out, lines, run, status, **opts)
    raise RunConfigError(f"unknown run kind {run['kind']!r} in {out / RUN_FILE}")


# --------------------------------------------------------------------------- execution
class Task(Protocol):
    """What a runner plugs into :func:`execute`."""

    def prepare(self, item: Item) -> Any:
        """Load what the item needs (images, masks); raise :class:`SkipItem` if unusable."""

    def request(self, prepared: Any) -> tuple[Any, str, Any, Any]:
        """``(image, question, options, reference)`` for ``Inspector.analyze_batch``."""

    def finish(self, item: Item, prepared: Any, analysis: Any) -> dict[str, Any]:
        """The JSONL line of an answered item."""

    def skipped(self, item: Item, kind: str, reason: str) -> dict[str, Any]:
        """The JSONL line of a skipped item."""


def base_line(item: Item, status: str) -> dict[str, Any]:
    return {
        "id": item.id,
        "index": item.index,
        "status": status,
        "dataset": item.dataset,
        "category": item.category,
    }


def _generate(
    inspector: Any, task: Task, ready: list[tuple[Item, Any]], had_success: bool
) -> tuple[dict[str, dict[str, Any]], bool]:
    """Answer a batch; on a generation error retry one by one and skip the failures."""
    reqs = [task.request(p) for _, p in ready]

    def run(rs: Sequence[tuple[Any, str, Any, Any]]) -> list[Any]:
        return inspector.analyze_batch(
            [r[0] for r in rs],
            [r[1] for r in rs],
            [r[2] for r in rs],
            [r[3] for r in rs],
            batch_size=len(rs),
            progress=False,
        )

    lines: dict[str, dict[str, Any]] = {}
    try:
        results = run(reqs)
    except Exception as exc:  # e.g. out of memory, or one image the processor rejects
        if len(ready) == 1 and not had_success:
            raise
        log.warning("batch failed (%s); retrying its %d items one by one", exc, len(ready))
        failures = []
        for (item, prep), req in zip(ready, reqs, strict=True):
            try:
                res = run([req])[0]
            except Exception as one:
                failures.append(one)
                lines[item.id] = task.skipped(item, "model_error", f"generation failed: {one}")
                continue
            lines[item.id] = task.finish(item, prep, res)
            had_success = True
        if len(failures) == len(ready) and not had_success:
            raise failures[0] from exc
        return lines, had_success
    for (item, prep), res in zip(ready, results, strict=True):
        lines[item.id] = task.finish(item, prep, res)
    return lines, True


def _batches(
    todo: list[Item], task: Task, batch_size: int
) -> Iterator[tuple[list[Item], dict[str, dict[str, Any]], list[tuple[Item, Any]]]]:
    """Groups of consecutive items holding up to ``batch_size`` items for the model."""
    group: list[Item] = []
    skipped: dict[str, dict[str, Any]] = {}
    ready: list[tuple[Item, Any]] = []
    for item in todo:
        group.append(item)
        if item.skip is not None:
            skipped[item.id] = task.skipped(item, *item.skip)
        else:
            try:
                ready.append((item, task.prepare(item)))
            except SkipItem as s:
                skipped[item.id] = task.skipped(item, s.kind, s.reason)
        if len(ready) >= batch_size:
            yield group, skipped, ready
            group, skipped, ready = [], {}, []
    if group:
        yield group, skipped, ready


def _interrupted(
    path: Path, mine: list[Item], shard: tuple[int, int], validate: Validator, overwrite: bool
) -> EvalInterrupted:
    """What Ctrl-C left: the shard's items that have a line on disk."""
    ids = {d["id"] for d in read_jsonl(path, validate)[0]}
    return EvalInterrupted(path, sum(1 for it in mine if it.id in ids), len(mine), shard, overwrite)


def execute(
    *,
    kind: str,
    task: Task,
    items: list[Item],
    out_dir: str | os.PathLike[str],
    model_factory: Callable[[], Any],
    fingerprint: dict[str, Any],
    config: dict[str, Any],
    report_options: dict[str, Any],
    shard_index: int | None,
    num_shards: int | None,
    batch_size: int,
    progress: bool,
    overwrite: bool,
    unit: str,
    verbose: bool,
) -> EvalResult:
    """Run this process's shard of ``items``, resuming from its JSONL; report when complete.

    Order of work: the shard's log is locked first (a second process is refused before
    it touches anything); the folder's settings are checked and the log is read (no
    writes); the model is loaded when the first batch needs it; only then are the
    folder's files changed (``--overwrite`` clears them, ``run.json`` is written, the
    log is repaired).  A model that fails to load leaves the folder as it was.  Ctrl-C
    raises :class:`EvalInterrupted` (a ``KeyboardInterrupt``) saying what is saved.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    out = Path(out_dir)
    shard = resolve_shard(shard_index, num_shards)
    i, n = shard
    sel_sha = selection_sha256(it.id for it in items)
    mine = shard_slice(items, i, n)
    path = results_path(out, i, n)
    validate = line_validator(kind)
    runlog = RunLog(path, validate=validate)
    try:
        with contextlib.ExitStack() as stack:
            runlog.acquire()  # before anything in the folder is read, deleted or written
            stack.callback(runlog.close)
            old = _check_run(out, kind, fingerprint, n, overwrite)
            merged_guard = _hold_merged(out, shard, overwrite)
            if merged_guard is not None:
                stack.callback(merged_guard.close)
            return _run_shard(
                runlog, old, kind=kind, task=task, mine=mine, out=out, shard=shard,
                sel_sha=sel_sha, model_factory=model_factory, fingerprint=fingerprint,
                config=config, report_options=report_options, batch_size=batch_size,
                progress=progress, overwrite=overwrite, unit=unit, verbose=verbose,
                merged_guard=merged_guard,
            )  # fmt: skip
    except EvalInterrupted:
        raise
    except KeyboardInterrupt:
        raise _interrupted(path, mine, shard, validate, overwrite) from None


def _run_shard(
    runlog: RunLog,
    old: dict[str, Any] | None,
    *,
    kind: str,
    task: Task,
    mine: list[Item],
    out: Path,
    shard: tuple[int, int],
    sel_sha: str,
    model_factory: Callable[[], Any],
    fingerprint: dict[str, Any],
    config: dict[str, Any],
    report_options: dict[str, Any],
    batch_size: int,
    progress: bool,
    overwrite: bool,
    unit: str,
    verbose: bool,
    merged_guard: RunLog | None,
) -> EvalResult:
    i, n = shard
    path = runlog.path
    if overwrite:
        finished: set[str] = set()
    else:
        lines_on_disk, repair = read_jsonl(path, runlog.validate)
        if not repair.clean:
            _warn_repair(path, repair, "dropped; those items are redone")
        # bad inputs are re-checked: a fixed file is picked up, a bad one skipped again
        finished = {d["id"] for d in lines_on_disk if d.get("status") != "skipped"}
    todo = [it for it in mine if it.id not in finished]
    log.info(
        "%s shard %d/%d: %d items, %d already done, %d to do",
        kind, i, n, len(mine), len(mine) - len(todo), len(todo),
    )  # fmt: skip

    def commit() -> None:
        """The first write to the folder: after the model loaded (or was not needed)."""
        current = old if overwrite else _check_run(out, kind, fingerprint, n, overwrite)
        if overwrite:
            _clear_shard(out, shard)
            if merged_guard is not None:
                merged_guard.close()
        _write_run(
            out, current, kind=kind, fingerprint=fingerprint, config=config,
            report_options=report_options, num_shards=n, overwrite=overwrite, selection=sel_sha,
        )  # fmt: skip
        runlog.open()
        runlog.discard(it.id for it in todo)
        if todo:
            done_path(out, i).unlink(missing_ok=True)

    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    n_new = 0
    bar = tqdm(
        total=len(mine),
        initial=len(mine) - len(todo),
        desc=kind if n == 1 else f"{kind} {i}/{n}",
        unit=unit,
        disable=not progress,
        dynamic_ncols=True,
        smoothing=0.1,
    )
    inspector = None
    had_success = False
    n_skipped = 0
    committed = False
    try:
        for group, lines, ready in _batches(todo, task, batch_size):
            if ready and inspector is None:
                inspector = model_factory()
            if not committed:
                commit()
                committed = True
            if ready:
                answered, had_success = _generate(inspector, task, ready, had_success)
                lines.update(answered)
            n_skipped += sum(1 for v in lines.values() if v.get("status") == "skipped")
            runlog.append(lines[it.id] for it in group)
            n_new += len(group)
            bar.update(len(group))
            if n_skipped:
                bar.set_postfix(skipped=n_skipped, refresh=False)
        if not committed:  # nothing to do: refresh run.json, repair the log
            commit()
    finally:
        bar.close()
    n_lines = sum(1 for it in mine if it.id in runlog.done)
    if n_new:  # resumed items and re-checked inputs were appended: restore item order
        runlog.sort(key=lambda d: (d.get("index", math.inf), d["id"]))
    runlog.close()
    elapsed = time.perf_counter() - t0
    if n_lines == len(mine):
        write_json(
            done_path(out, i),
            {
                "shard_index": i,
                "num_shards": n,
                "n_items": len(mine),
                "selection_sha256": sel_sha,
                "finished": now(),
                "elapsed_seconds": round(elapsed, 3),
                "n_new": n_new,
            },
        )
    result = EvalResult(out, path, shard, len(mine), n_new, complete=False)
    missing, _ = shard_status(out)
    if missing:
        log.info("waiting for shard(s) %s; then run the merge step to build the report", missing)
        return result
    report = build_report(out)
    result.complete, result.report = True, report
    if verbose:
        print(report["markdown_summary"])
        print(f"report: {out / 'report.md'}")
    return result
