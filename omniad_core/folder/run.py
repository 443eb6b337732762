"""The run: settings fingerprint, resume, batches through the Inspector, outputs."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from omniad_core.folder.common import (
    _KIND,
    _LOCK_FILE,
    MASK_DIR,
    OVERLAY_DIR,
    RESULTS_FILE,
    RUN_FILE,
    SUMMARY_FILE,
    FolderInterrupted,
    FolderRunError,
    _atomic_text,
    _save_png,
)
from omniad_core.folder.listing import (
    ImageItem,
    _References,
    _references,
    collect_images,
)
from omniad_core.folder.store import (
    FolderResult,
    _inside,
    _locked,
    _Log,
    _output_rel,
    _write_summary,
)

__all__ = ["inspect_folder", "model_label"]


# --------------------------------------------------------------------- the settings
def model_label(inspector: Any) -> str:
    """The model's name as results and the page show it (``NAME @ URL`` when served)."""
    backend = getattr(inspector, "backend", None)
    name = str(getattr(backend, "name", None) or "model")
    url = getattr(backend, "base_url", None)
    return f"{name} @ {url}" if url else name


def _question_spec(question: Any, options: Any) -> tuple[Any, Any]:
    """JSON-safe ``(question, options)`` for the fingerprint, checked now."""
    from omniad_core.prompts import DEFECT_QUESTION, Question, normalize_options

    if isinstance(question, Question):
        if options is not None:
            raise FolderRunError("give options inside the Question, not as well as options=")
        return question.text, dict(question.options)
    if question is None:
        if options is not None:
            raise FolderRunError("options need a question: pass question= with them")
        return DEFECT_QUESTION, {"A": "Yes", "B": "No"}
    if not isinstance(question, str) or not question.strip():
        raise FolderRunError(f"the question must be a non-empty text, got {question!r:.80}")
    try:
        opts = None if options is None else normalize_options(options)
    except ValueError as exc:
        raise FolderRunError(f"options: {exc}") from None
    return question.strip(), opts


def _fingerprint(
    inspector: Any, question: Any, options: Any, refs: _References, root: Path
) -> dict[str, Any]:
    grid = getattr(inspector, "grid", None)
    return {
        "model": model_label(inspector),
        "grid": grid.to_dict() if hasattr(grid, "to_dict") else None,
        "image_size": getattr(inspector, "image_size", None),
        "question": question,
        "options": options,
        "reference": refs.describe,
        "root": os.path.abspath(root),
    }


def _read_run(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        data = None
    if not isinstance(data, dict) or data.get("kind") != _KIND:
        raise FolderRunError(
            f"{path} is not the run file of a folder inspection; choose another --out "
            "(or delete the file to start over)"
        )
    return data


def _check_out_dir(out_dir: Path, fingerprint: dict[str, Any], overwrite: bool) -> None:
    """Refuse a folder holding another run (unless ``overwrite``) or other files."""
    run = _read_run(out_dir / RUN_FILE)
    ours = {RUN_FILE, RESULTS_FILE, SUMMARY_FILE, OVERLAY_DIR, MASK_DIR, _LOCK_FILE}
    if run is None:
        other = sorted(n for n in os.listdir(out_dir) if n not in ours and not n.startswith("."))
        if other:
            raise FolderRunError(
                f"{out_dir} is not empty and holds no {RUN_FILE} of a folder inspection "
                f"(found {other[0]!r}); choose a new or empty folder for --out"
            )
    if overwrite:
        for name in (RESULTS_FILE, SUMMARY_FILE, RUN_FILE):
            (out_dir / name).unlink(missing_ok=True)
        for name in (OVERLAY_DIR, MASK_DIR):
            p = out_dir / name
            if p.is_symlink() or p.is_file():
                p.unlink()
            elif p.is_dir():
                shutil.rmtree(p)
        return
    if run is None:
        return
    old = run.get("fingerprint") if isinstance(run.get("fingerprint"), dict) else {}
    differ = [
        f"{k}: {old.get(k)!r} -> {fingerprint.get(k)!r}"
        for k in sorted(set(old) | set(fingerprint))
        if old.get(k) != fingerprint.get(k)
    ]
    if differ:
        raise FolderRunError(
            f"{out_dir} holds results made with other settings ({'; '.join(differ)}); "
            "resume with the same settings, choose another --out, or pass --overwrite "
            "(overwrite=True) to discard them"
        )


# ---------------------------------------------------------------------------- the run
def _base_line(item: ImageItem, label: str, grid: str, ref: str | None) -> dict[str, Any]:
    return {
        "id": item.id,
        "path": str(item.path),
        "status": "ok",
        "answer": None,
        "answer_text": None,
        "anomalous": None,
        "seg": None,
        "grid": grid,
        "mask_area": None,
        "reasoning": None,
        "seconds": 0.0,
        "model": label,
        "reference": ref,
        "width": None,
        "height": None,
        "overlay": None,
        "mask": None,
        "format_ok": None,
        "problems": [],
        "error": None,
    }


def _grid_text(inspector: Any) -> str:
    shape = getattr(getattr(inspector, "grid", None), "shape", None)
    return f"{shape[0]}x{shape[1]}" if shape else "?"


def _mask_of(line: Mapping[str, Any], inspector: Any) -> Any:
    """The pixel mask of a finished line, from its seg text (the image's own size)."""
    import numpy as np

    import textmask

    h, w = int(line["height"]), int(line["width"])
    if not line.get("seg"):
        return np.zeros((h, w), bool)
    return textmask.decode(line["seg"], inspector.grid, shape=(h, w))


def _write_images(
    line: dict[str, Any], out_dir: Path, image: Any, mask: Any, overlays: str, save_masks: bool
) -> None:
    """Write the overlay and mask a line asks for; record their paths in the line."""
    from omniad_core.images import overlay as paint

    rel = _output_rel(line["id"])
    want_overlay = overlays == "all" or (overlays == "anomalous" and line["anomalous"])
    if want_overlay:
        target = _inside(out_dir, f"{OVERLAY_DIR}/{rel}")
        if not target.is_file():
            _save_png(paint(image, mask), target)
        line["overlay"] = f"{OVERLAY_DIR}/{rel}"
    if save_masks:
        from PIL import Image

        target = _inside(out_dir, f"{MASK_DIR}/{rel}")
        if not target.is_file():
            import numpy as np

            _save_png(Image.fromarray(np.asarray(mask, bool).astype(np.uint8) * 255), target)
        line["mask"] = f"{MASK_DIR}/{rel}"


def _complete_outputs(
    lines: Iterable[dict[str, Any]],
    out_dir: Path,
    inspector: Any,
    overlays: str,
    save_masks: bool,
    max_pixels: Any,
) -> bool:
    """Finished lines from an earlier run get the overlays / masks this run asks for
    (rebuilt from their seg text, no model call).  True when a line changed."""
    from omniad_core.images import ImageError, load_image

    changed = False
    for line in lines:
        if line["status"] != "ok":
            continue
        want_overlay = overlays == "all" or (overlays == "anomalous" and line["anomalous"])
        need_o = want_overlay and (
            not line.get("overlay") or not (out_dir / line["overlay"]).is_file()
        )
        need_m = save_masks and (not line.get("mask") or not (out_dir / line["mask"]).is_file())
        if not (need_o or need_m):
            continue
        try:
            image = load_image(line["path"], max_pixels=max_pixels)
        except ImageError:
            continue  # the file is gone or changed: its line stays as it is
        if (image.size[1], image.size[0]) != (line["height"], line["width"]):
            continue
        before = (line.get("overlay"), line.get("mask"))
        _write_images(line, out_dir, image, _mask_of(line, inspector), overlays, save_masks)
        changed |= before != (line.get("overlay"), line.get("mask"))
    return changed


def inspect_folder(
    inspector: Any,
    inputs: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    reference: Any = None,
    question: Any = None,
    options: Any = None,
    batch_size: int = 8,
    overlays: str = "anomalous",
    save_masks: bool = False,
    progress: bool = True,
    overwrite: bool = False,
    max_pixels: int | None = None,
    on_line: Callable[[dict[str, Any]], None] | None = None,
) -> FolderResult:
    """Inspect every image of a folder, a glob or a list; resumable.

    Parameters
    ----------
    inspector : Inspector
        In process (:meth:`~omniad_core.inspector.Inspector.from_pretrained`) or served
        (:meth:`~omniad_core.inspector.Inspector.from_endpoint`).
    inputs : folder, glob, image path, or a list of them
        See :func:`collect_images`.  The results folder is never walked.
    out_dir : path
        The results folder (created; a folder holding other files is refused).
    reference : None, image, mapping or "per-folder"
        The normal image for 1-shot inspection. One image (path, PIL image or array) for
        every image; or ``{folder: reference_path}``, each image taking the reference of
        the deepest listed folder it lies in (images in none: no reference); or
        ``"per-folder"``: each image takes the ``good.*`` (else ``reference.*``) image of
        its own folder, else of the nearest folder above it up to the run's root, else
        none.  References are not inspected.  Each line records its ``reference``.
    question, options
        The question (default: "Is there any defect in the object?", Yes / No).
    batch_size : int
        Images handed to the Inspector at a time (a served model answers a batch's
        requests concurrently, up to its ``concurrency``).
    overlays : "anomalous", "all" or "none"
        Which images get ``overlays/<id>.png``.
    save_masks : bool
        Write ``masks/<id>.png`` (0 / 255, the image's own size) for every image.
    progress : bool
        A progress bar on stderr.
    overwrite : bool
        Discard the results of an earlier run in ``out_dir`` (they are otherwise resumed,
        and a run with other settings is refused).
    max_pixels : int, optional
        The image size limit (default :func:`omniad_core.images.max_image_pixels`).
    on_line : callable, optional
        Called with each new JSONL line once it is on disk.

    Returns
    -------
    FolderResult

    Raises
    ------
    FolderRunError
        Bad inputs or options, another run's results, another process on ``out_dir``.
    FolderInterrupted
        Ctrl-C (a ``KeyboardInterrupt``): what was finished is saved.
    """
    from omniad_core.images import ImageError, load_image

    if overlays not in ("anomalous", "all", "none"):
        raise FolderRunError(f"overlays must be 'anomalous', 'all' or 'none', got {overlays!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise FolderRunError(f"batch_size must be a whole number >= 1, got {batch_size!r}")
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise FolderRunError(f"--out {str(out)!r} is a file; give a folder for the results")
    q_text, q_opts = _question_spec(question, options)
    root, items = collect_images(
        inputs,
        exclude=[out],
        skip_references=isinstance(reference, str) and reference == "per-folder",
    )
    refs = _references(reference, root, items, max_pixels)
    label, grid = model_label(inspector), _grid_text(inspector)
    fingerprint = _fingerprint(inspector, q_text, q_opts, refs, root)
    out.mkdir(parents=True, exist_ok=True)
    with _locked(out):
        _check_out_dir(out, fingerprint, overwrite)
        run_file = out / RUN_FILE
        if not run_file.is_file():
            _atomic_text(
                run_file,
                json.dumps({"kind": _KIND, "version": 1, "fingerprint": fingerprint}, indent=2)
                + "\n",
            )
        log = _Log(out / RESULTS_FILE)
        try:
            return _run(
                inspector,
                items,
                refs,
                log,
                out,
                label,
                grid,
                question,
                options,
                batch_size,
                overlays,
                save_masks,
                progress,
                max_pixels,
                on_line,
                load_image,
                ImageError,
                q_opts,
            )
        finally:
            log.close()


def _run(
    inspector: Any,
    items: list[ImageItem],
    refs: _References,
    log: _Log,
    out: Path,
    label: str,
    grid: str,
    question: Any,
    options: Any,
    batch_size: int,
    overlays: str,
    save_masks: bool,
    progress: bool,
    max_pixels: Any,
    on_line: Callable[[dict[str, Any]], None] | None,
    load_image: Any,
    ImageError: Any,
    option_texts: dict[str, str] | None,
) -> FolderResult:
    retry = [i for i, d in log.lines.items() if d["status"] != "ok"]
    if retry:  # unreadable files may have been fixed, a server may be back
        log.replace_all([d for d in log.lines.values() if d["status"] == "ok"])
    if _complete_outputs(log.lines.values(), out, inspector, overlays, save_masks, max_pixels):
        log.replace_all(list(log.lines.values()))
    pending = [it for it in items if it.id not in log.lines]
    n_new = 0
    from tqdm.auto import tqdm

    bar = tqdm(
        total=len(items),
        initial=len(items) - len(pending),
        desc="inspect",
        unit="img",
        disable=not progress,
        file=sys.stderr,
    )

    def emit(line: dict[str, Any]) -> None:
        nonlocal n_new
        log.append(line)
        n_new += 1
        bar.update(1)
        if on_line is not None:
            on_line(line)

    try:
        for start in range(0, len(pending), batch_size):
            ready: list[tuple[dict[str, Any], Any, Any]] = []
            for item in pending[start : start + batch_size]:
                ref_path = refs.path_for(item)
                line = _base_line(item, label, grid, ref_path)
                if item.problem is not None:
                    emit({**line, "status": "unreadable", "error": f"{item.path}: {item.problem}"})
                    continue
                try:
                    image = load_image(item.path, max_pixels=max_pixels)
                except ImageError as exc:
                    emit({**line, "status": "unreadable", "error": str(exc)})
                    continue
                try:
                    ref = (
                        refs.single
                        if refs.single is not None
                        else _cached_ref(refs, ref_path, max_pixels, load_image)
                    )
                except ImageError as exc:
                    emit(
                        {
                            **line,
                            "status": "unreadable",
                            "error": f"its reference {ref_path}: {exc}",
                        }
                    )
                    continue
                line["width"], line["height"] = image.size
                ready.append((line, image, ref))
            if not ready:
                continue
            results = inspector.analyze_batch(
                [r[1] for r in ready],
                [question] * len(ready),
                [options] * len(ready),
                [r[2] for r in ready],
                batch_size=len(ready),
                progress=False,
            )
            for (line, image, _), res in zip(ready, results, strict=True):
                emit(_finish(line, res, image, out, overlays, save_masks, option_texts))
    except KeyboardInterrupt:
        bar.close()
        done = [d for d in log.lines.values()]
        _write_summary(out / SUMMARY_FILE, done)
        raise FolderInterrupted(
            log.path, sum(1 for it in items if it.id in log.lines), len(items)
        ) from None
    bar.close()
    order = {it.id: k for k, it in enumerate(items)}
    lines = sorted(log.lines.values(), key=lambda d: (order.get(d["id"], len(order)), d["id"]))
    if lines != list(log.lines.values()):
        log.replace_all(lines)
    _write_summary(out / SUMMARY_FILE, lines)
    mine = [d for d in lines if d["id"] in order]
    return FolderResult(out, log.path, out / SUMMARY_FILE, mine, n_new, label)


def _cached_ref(refs: _References, ref_path: str | None, max_pixels: Any, load_image: Any) -> Any:
    if ref_path is None:
        return None
    if ref_path not in refs.cache:
        refs.cache[ref_path] = load_image(ref_path, max_pixels=max_pixels)
    return refs.cache[ref_path]


def _finish(
    line: dict[str, Any],
    res: Any,
    image: Any,
    out: Path,
    overlays: str,
    save_masks: bool,
    option_texts: dict[str, str] | None,
) -> dict[str, Any]:
    """The JSONL line of one answered (or failed) request; its overlay / mask written first."""
    line["seconds"] = round(float(res.seconds), 4)
    if res.error is not None:
        return {**line, "status": "failed", "error": str(res.error)}
    parsed = res.parsed
    mask = res.mask
    answer = parsed.answer
    opts = option_texts or {}
    line.update(
        answer=answer,
        answer_text=opts.get(answer) if answer else None,
        anomalous=bool(res.is_anomalous),
        seg=parsed.seg_canonical,
        mask_area=round(float(mask.sum()) / max(1, mask.size), 6),
        reasoning=parsed.think,
        format_ok=bool(parsed.format_ok),
        problems=list(parsed.problems),
    )
    _write_images(line, out, image, mask, overlays, save_masks)
    return line
