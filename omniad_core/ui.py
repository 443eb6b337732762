"""A web page to look at a model's answers: ``omniad ui`` (Gradio; the ``ui`` extra).

Two tabs:

- **One image**: upload an image (and optionally a normal reference, 1-shot), keep the
  default defect question or write a question with its options, and see the overlay,
  the marked grid cells, the seg text, the reasoning and the answer, with the model's
  name and the grid it used.
- **Many images**: several files or a folder go through
  :func:`omniad_core.folder.inspect_folder`; the page shows its table (sortable), the
  overlays of the flagged images and the CSV / JSONL to download.

The page says when the embedded demo model is loaded and what it was trained on.  It
binds to 127.0.0.1 unless told otherwise.  Uploads are limited in bytes
(``--max-upload-mb``) and in pixels (the image loader's limit,
:func:`omniad_core.images.max_image_pixels`); a file that is too large or not an image
is an error on the page, and the server keeps serving.  Uploads and results live in a
temporary folder (``GRADIO_TEMP_DIR``, created per server and removed when it stops).

gradio is imported only inside the functions here: ``import omniad_core`` never loads it.
See ``docs/ui.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from omniad_core._cli_args import add_endpoint_args, add_max_new_tokens

__all__ = ["UI_INSTALL", "MissingUIError", "build_app", "cells_picture", "ui_main"]

#: The install command the page needs.
UI_INSTALL = "pip install 'omniad[ui]'"
#: Columns of the table on the "Many images" tab.
TABLE_COLUMNS = ["rank", "image", "status", "anomalous", "answer", "mask_area", "seg", "error"]
_DEFAULT_MODE = "Default: Is there any defect in the object? (A: Yes / B: No)"
_OWN_MODE = "My question"


class MissingUIError(ImportError):
    """gradio is not installed (the ``ui`` extra)."""


def _gradio() -> Any:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home
    try:
        import gradio as gr
    except ImportError:
        raise MissingUIError(f"the web page needs gradio: {UI_INSTALL}") from None
    return gr


def cells_picture(cells: np.ndarray, cell_px: int = 16) -> Any:
    """The grid the model wrote on: marked cells red, the others white (``PIL.Image``).

    >>> pic = cells_picture(np.array([[1, 0], [0, 0]], bool), cell_px=4)
    >>> pic.size, pic.getpixel((2, 2)), pic.getpixel((6, 6))
    ((9, 9), (230, 40, 40), (255, 255, 255))
    """
    from PIL import Image

    c = np.asarray(cells, bool)
    rows, cols = c.shape
    h, w = rows * cell_px + 1, cols * cell_px + 1
    out = np.full((h, w, 3), 255, np.uint8)
    big = np.repeat(np.repeat(c, cell_px, axis=0), cell_px, axis=1)
    out[: rows * cell_px, : cols * cell_px][big] = (230, 40, 40)
    out[::cell_px, :, :] = (190, 190, 190)  # grid lines
    out[:, ::cell_px, :] = (190, 190, 190)
    return Image.fromarray(out)


def _options_from_text(text: str | None) -> list[str] | None:
    opts = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return opts or None


class _Page:
    """What the page's buttons do (no gradio here: tested through the page itself)."""

    def __init__(
        self,
        inspector: Any,
        model_label: str,
        is_demo: bool,
        temp_dir: Path,
        max_pixels: int | None,
        max_files: int,
    ) -> None:
        self.inspector = inspector
        self.model_label = model_label
        self.is_demo = is_demo
        self.temp_dir = temp_dir
        self.max_pixels = max_pixels
        self.max_files = max_files
        self.lock = threading.Lock()  # one model call at a time
        self.runs = 0
        shape = getattr(getattr(inspector, "grid", None), "shape", None)
        self.grid_text = f"{shape[0]}x{shape[1]}" if shape else "?"

    def header(self) -> str:
        size = getattr(self.inspector, "image_size", None)
        line = (
            f"**Model:** `{self.model_label}` · **grid** {self.grid_text} · "
            f"**image size** {size if size else 'as given'} px"
        )
        if self.is_demo:
            from omniad_core.folder import demo_notice

            line += f"\n\n> **Demo model.** {demo_notice()[0].upper()}{demo_notice()[1:]}."
        return line

    # ------------------------------------------------------------ one image
    def inspect_one(
        self, image: Any, reference: Any, mode: str, question: str, options_text: str
    ) -> tuple[Any, ...]:
        """``(overlay, cells, answer, seg, reasoning, status)``; errors go to ``status``."""
        empty = (None, None, "", "", "")
        try:
            return self._inspect_one(image, reference, mode, question, options_text)
        except Exception as exc:  # every failure is shown on the page; the server goes on
            return (*empty, f"**Error:** {_one_line(exc)}")

    def _inspect_one(
        self, image: Any, reference: Any, mode: str, question: str, options_text: str
    ) -> tuple[Any, ...]:
        from omniad_core.images import ImageError, load_image

        if not image:
            raise ValueError("upload an image first")
        name = Path(str(image)).name
        try:
            img = load_image(str(image), max_pixels=self.max_pixels)
            ref = None if not reference else load_image(str(reference), max_pixels=self.max_pixels)
        except ImageError as exc:
            msg = _strip_dirs(str(exc), image, reference)
            if "more than the limit" in msg:
                msg += "; for this page: omniad ui --max-pixels N"
            raise ValueError(msg) from None
        q, opts = None, None
        if mode == _OWN_MODE:
            if not (question or "").strip():
                raise ValueError("write a question, or pick the default defect question")
            q, opts = question.strip(), _options_from_text(options_text)
        with self.lock:
            a = self.inspector.analyze(img, q, opts, ref)
            self.runs += 1
        if a.error is not None:
            raise ValueError(f"the model did not answer: {a.error}")
        options = a.parsed.answer and _option_text(q, opts, a.parsed.answer)
        answer = "(no answer could be read)" if a.answer is None else a.answer
        if options:
            answer = f"{a.answer}: {options}"
        seg = a.parsed.seg_canonical or "(no anomalous cell)"
        status = (
            f"Inspected `{name}` with `{self.model_label}` (grid {self.grid_text}, "
            f"{a.seconds:.2f} s){' with a reference' if ref is not None else ''}: "
            f"{'anomalous' if a.is_anomalous else 'normal'}, "
            f"{100 * a.mask.mean():.1f}% of the image marked."
        )
        if a.parsed.problems:
            status += " Problems: " + "; ".join(a.parsed.problems)
        cells = cells_picture(a.parsed.cells)
        return a.overlay(), cells, answer, seg, (a.think or "").strip(), status

    # ---------------------------------------------------------- many images
    def inspect_many(
        self, files: Any, folder: Any, reference: Any, all_overlays: bool
    ) -> tuple[Any, ...]:
        """``(table rows, gallery, downloads, status)``; errors go to ``status``."""
        try:
            return self._inspect_many(files, folder, reference, all_overlays)
        except Exception as exc:
            return [], [], None, f"**Error:** {_one_line(exc)}"

    def _inspect_many(
        self, files: Any, folder: Any, reference: Any, all_overlays: bool
    ) -> tuple[Any, ...]:
        from omniad_core.folder import inspect_folder

        paths = [str(p) for p in (list(files or []) + list(folder or [])) if p]
        if not paths:
            raise ValueError("upload some images (several files or a folder) first")
        if len(paths) > self.max_files:
            raise ValueError(
                f"{len(paths)} files uploaded; this page takes at most {self.max_files} at "
                "once (start it with --max-files N, or use `omniad inspect DIR --out RESULTS`)"
            )
        with self.lock:
            self.runs += 1
            run = self.temp_dir / "runs" / f"run{self.runs:04d}"
        images = run / "images"
        images.mkdir(parents=True)
        taken: set[str] = set()
        for p in paths:  # the uploads under their own names, inside this run's folder
            name = _unique(_safe_name(Path(p).name), taken)
            _link_or_copy(Path(p), images / name)
        ref = None
        if reference:
            ref_path = run / ("reference" + Path(str(reference)).suffix.lower())
            _link_or_copy(Path(str(reference)), ref_path)
            ref = ref_path
        with self.lock:
            result = inspect_folder(
                self.inspector,
                images,
                run / "results",
                reference=ref,
                overlays="all" if all_overlays else "anomalous",
                progress=False,
                max_pixels=self.max_pixels,
            )
        rows = []
        for r in result.rows():
            flag = "" if r["anomalous"] is None else ("yes" if r["anomalous"] else "no")
            rows.append(
                [
                    r["rank"],
                    r["image"],
                    r["status"],
                    flag,
                    r["answer"] or "",
                    float(r["mask_area"]) if r["mask_area"] is not None else None,
                    r["seg"] or "",
                    (r["error"] or "").replace(str(images) + os.sep, ""),
                ]
            )
        gallery = [
            (str(result.out_dir / r["overlay"]), f"{r['rank']}. {r['image']}")
            for r in result.rows()
            if r["overlay"]
        ]
        status = (
            f"{result.n_images} images with `{self.model_label}` (grid {self.grid_text}): "
            f"{result.n_anomalous} anomalous, {result.n_unreadable} unreadable"
            + (f", {result.n_failed} failed" if result.n_failed else "")
            + ". Click a column name to sort the table."
        )
        return rows, gallery, [str(result.summary), str(result.results)], status


def _option_text(question: Any, options: Any, letter: str) -> str | None:
    from omniad_core.prompts import normalize_options

    if question is None:
        return {"A": "Yes", "B": "No"}.get(letter)
    if not options:
        return None
    try:
        return normalize_options(options).get(letter)
    except ValueError:
        return None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 600 else text[:597] + "..."


def _strip_dirs(text: str, *paths: Any) -> str:
    """Messages name uploaded files by their own names, not the server's temporary paths."""
    for p in paths:
        if p:
            text = text.replace(str(p), Path(str(p)).name)
    return text


def _safe_name(name: str) -> str:
    keep = "".join(c if (c.isalnum() or c in "._- ()") else "_" for c in name).strip()
    keep = keep.lstrip(".") or "upload"
    return keep[:150]


def _unique(name: str, taken: set[str]) -> str:
    stem, dot, suffix = name.rpartition(".")
    if not dot:
        stem, suffix = name, ""
    candidate, k = name, 1
    while candidate.lower() in taken:
        k += 1
        candidate = f"{stem}-{k}.{suffix}" if suffix else f"{stem}-{k}"
    taken.add(candidate.lower())
    return candidate


def _link_or_copy(src: Path, dst: Path) -> None:
    if not src.is_file():
        dst.mkdir(parents=True, exist_ok=True)  # listed by inspect_folder as not an image
        return
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def build_app(
    inspector: Any,
    *,
    model_label: str,
    is_demo: bool,
    temp_dir: str | os.PathLike[str] | None = None,
    max_pixels: int | None = None,
    max_files: int = 200,
) -> Any:
    """The Gradio page over ``inspector`` (a ``gradio.Blocks``; call ``.launch()``).

    Parameters
    ----------
    inspector : Inspector
        In process or served.
    model_label : str
        The model's name as the page shows it.
    is_demo : bool
        The embedded demo model: the page says so and what it was trained on.
    temp_dir : path, optional
        Where the "Many images" tab writes its runs (default: a new temporary folder).
        Uploads go to ``GRADIO_TEMP_DIR``, set to ``temp_dir/uploads`` unless already set.
    max_pixels : int, optional
        The image size limit (default :func:`omniad_core.images.max_image_pixels`).
    max_files : int
        Files the "Many images" tab takes at once.
    """
    work = Path(temp_dir) if temp_dir is not None else Path(tempfile.mkdtemp(prefix="omniad-ui-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("GRADIO_TEMP_DIR", str(work / "uploads"))
    gr = _gradio()
    page = _Page(inspector, model_label, is_demo, work, max_pixels, max_files)
    image_types = [".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif"]
    with gr.Blocks(title="omniad: inspect images", analytics_enabled=False) as app:
        gr.Markdown("## omniad: industrial anomaly inspection")
        gr.Markdown(page.header(), elem_id="model-info")
        with gr.Tab("One image", elem_id="tab-one"):
            with gr.Row():
                with gr.Column(scale=1):
                    image = gr.File(
                        label="Image", file_types=image_types, type="filepath", elem_id="image-file"
                    )
                    reference = gr.File(
                        label="Normal reference (optional, 1-shot)",
                        file_types=image_types,
                        type="filepath",
                        elem_id="reference-file",
                    )
                    mode = gr.Radio(
                        [_DEFAULT_MODE, _OWN_MODE],
                        value=_DEFAULT_MODE,
                        label="Question",
                        elem_id="mode",
                    )
                    with gr.Accordion("Your own question", open=False, elem_id="own"):
                        question = gr.Textbox(
                            label="Question",
                            elem_id="question",
                            placeholder="Which defect does the part show?",
                        )
                        options = gr.Textbox(
                            label="Options, one per line (lettered A, B, ...)",
                            lines=3,
                            elem_id="options",
                        )
                    run = gr.Button("Inspect", variant="primary", elem_id="run")
                with gr.Column(scale=2):
                    status = gr.Markdown("Upload an image and press Inspect.", elem_id="status")
                    with gr.Row():
                        overlay = gr.Image(
                            label="Overlay (mask over the image)",
                            type="pil",
                            format="png",
                            interactive=False,
                            height=300,
                            elem_id="overlay",
                        )
                        cells = gr.Image(
                            label="Marked grid cells",
                            type="pil",
                            format="png",
                            interactive=False,
                            height=300,
                            elem_id="cells",
                        )
                    answer = gr.Textbox(label="Answer", interactive=False, elem_id="answer")
                    seg = gr.Textbox(label="Seg text", interactive=False, elem_id="seg")
                    think = gr.Textbox(
                        label="Reasoning", lines=4, interactive=False, elem_id="reasoning"
                    )
            question.input(lambda: _OWN_MODE, None, mode)  # typing a question selects it
            run.click(
                page.inspect_one,
                [image, reference, mode, question, options],
                [overlay, cells, answer, seg, think, status],
                concurrency_limit=1,
            )
        with gr.Tab("Many images", elem_id="tab-many"):
            with gr.Row():
                files = gr.File(
                    label="Images (several files)",
                    file_count="multiple",
                    type="filepath",
                    elem_id="many-files",
                )
                folder = gr.File(
                    label="or a folder",
                    file_count="directory",
                    type="filepath",
                    elem_id="many-folder",
                )
                many_ref = gr.File(
                    label="Normal reference for all (optional)",
                    file_types=image_types,
                    type="filepath",
                    elem_id="many-reference",
                )
            all_overlays = gr.Checkbox(
                label="Overlays of every image (not only the anomalous)", elem_id="all-overlays"
            )
            run_many = gr.Button("Inspect all", variant="primary", elem_id="run-many")
            many_status = gr.Markdown("", elem_id="many-status")
            table = gr.Dataframe(
                headers=TABLE_COLUMNS, interactive=False, wrap=True, elem_id="table"
            )
            gallery = gr.Gallery(label="Overlays", columns=6, elem_id="gallery")
            downloads = gr.File(
                label="summary.csv and results.jsonl",
                file_count="multiple",
                interactive=False,
                elem_id="downloads",
            )
            run_many.click(
                page.inspect_many,
                [files, folder, many_ref, all_overlays],
                [table, gallery, downloads, many_status],
                concurrency_limit=1,
            )
    app.omniad_page = page  # for tests and embedding
    app.omniad_temp_dir = work
    return app


# ------------------------------------------------------------------- command line
def ui_parser(prog: str = "omniad ui") -> argparse.ArgumentParser:
    """The argument parser of :func:`ui_main`."""
    p = argparse.ArgumentParser(prog=prog, description="Serve a web page to inspect images.")
    p.add_argument("--model", help="checkpoint folder (default: the embedded demo model)")
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument(
        "--max-upload-mb",
        "--max_upload_mb",
        dest="max_upload_mb",
        type=float,
        default=50.0,
        metavar="MB",
        help="largest upload in MB (default 50)",
    )
    p.add_argument(
        "--max-pixels",
        "--max_pixels",
        dest="max_pixels",
        type=int,
        default=None,
        metavar="N",
        help="largest image in pixels (default: the loader's limit, 64 Mpx)",
    )
    p.add_argument(
        "--max-files",
        "--max_files",
        dest="max_files",
        type=int,
        default=200,
        metavar="N",
        help="files per 'Many images' run (default 200)",
    )
    add_max_new_tokens(p)
    add_endpoint_args(p)
    return p


def ui_main(argv: Sequence[str] | None = None, *, prog: str = "omniad ui") -> int:
    """``omniad ui [--model PATH | --endpoint URL --served-model NAME] [--host H --port N]``.

    Serves until Ctrl-C; returns the exit code (1 with a one-line error when gradio is
    missing, the model cannot be loaded or the port is taken).
    """
    args = ui_parser(prog).parse_args(list(sys.argv[1:] if argv is None else argv))

    def fail(msg: str) -> int:
        print(f"{prog}: error: {' '.join(msg.split())}", file=sys.stderr)
        return 1

    if not 1 <= args.port <= 65535:
        return fail(f"--port must be 1..65535, got {args.port}")
    for name in ("max_upload_mb", "max_pixels", "max_files", "max_new_tokens", "concurrency"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            return fail(f"--{name.replace('_', '-')} must be positive, got {value}")
    work = Path(tempfile.mkdtemp(prefix="omniad-ui-"))
    # gradio reads GRADIO_TEMP_DIR when it is imported: everything it writes goes in `work`
    os.environ.setdefault("GRADIO_TEMP_DIR", str(work / "uploads"))
    try:
        return _serve(args, work, prog, fail)
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(work)


def _serve(args: argparse.Namespace, work: Path, prog: str, fail: Any) -> int:
    from omniad_core.folder import FolderRunError, load_from_args

    try:
        _gradio()  # before any weights load
    except MissingUIError as exc:
        return fail(str(exc))
    try:
        loaded = load_from_args(args)
    except FolderRunError as exc:
        return fail(str(exc))
    for note in loaded.notes:
        print(f"{prog}: {'note' if loaded.is_demo else 'warning'}: {note}", file=sys.stderr)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"{prog}: warning: serving on {args.host}: anyone who can reach it can use the "
            "model and upload files (there is no login)",
            file=sys.stderr,
        )
    app = build_app(
        loaded.inspector,
        model_label=loaded.label,
        is_demo=loaded.is_demo,
        temp_dir=work,
        max_pixels=args.max_pixels,
        max_files=args.max_files,
    )
    print(
        f"{prog}: serving on http://{args.host}:{args.port} (files in {work}; Ctrl-C stops)",
        file=sys.stderr,
        flush=True,
    )

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # SIGTERM stops like Ctrl-C: the temporary folder goes too

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        app.launch(
            server_name=args.host,
            server_port=args.port,
            share=False,
            ssr_mode=False,
            max_file_size=f"{int(args.max_upload_mb * 1024 * 1024)}b",
            show_error=True,
            quiet=True,
        )
    except OSError as exc:
        return fail(f"cannot serve on {args.host}:{args.port}: {exc}")
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        with contextlib.suppress(Exception):
            app.close()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(ui_main())
