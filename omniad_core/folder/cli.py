"""``omniad inspect DIR_OR_GLOB --out RESULTS_DIR``: the folder-inspection command line."""

from __future__ import annotations

import argparse
import glob
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omniad_core._cli_args import (
    add_endpoint_args,
    add_max_new_tokens,
    positive_int,
    unexpected_error_line,
)
from omniad_core.folder.common import (
    FolderInterrupted,
    FolderRunError,
)
from omniad_core.folder.listing import (
    collect_images,
)
from omniad_core.folder.models import (
    load_from_args,
)
from omniad_core.folder.run import (
    inspect_folder,
)

__all__ = ["folder_main", "folder_parser", "is_folder_request"]


# ------------------------------------------------------------------- command line
def folder_parser(prog: str = "omniad inspect") -> argparse.ArgumentParser:
    """The argument parser of :func:`folder_main`."""
    from omniad_core.cli import grid_arg

    p = argparse.ArgumentParser(
        prog=prog,
        description="Inspect every image of folders or globs; results in --out (resumable).",
    )
    p.add_argument("inputs", nargs="+", metavar="DIR_OR_GLOB", help="folders, images or globs")
    p.add_argument("--out", required=True, metavar="RESULTS_DIR", help="the results folder")
    p.add_argument("--model", help="checkpoint folder (default: the embedded demo model)")
    p.add_argument(
        "--reference",
        action="append",
        metavar="PATH|per-folder|FOLDER=PATH",
        help="normal reference (1-shot): one image for all, 'per-folder' (good.* or "
        "reference.* in each folder), or FOLDER=PATH (repeat it)",
    )
    p.add_argument("--question", help='default: "Is there any defect in the object?"')
    p.add_argument("--options", nargs="+", help="option texts, lettered A, B, ...")
    p.add_argument(
        "--overlays",
        choices=("anomalous", "all", "none"),
        default="anomalous",
        help="which images get an overlay (default: the anomalous ones)",
    )
    p.add_argument("--masks", action="store_true", help="write every mask as a PNG")
    p.add_argument(
        "--batch-size",
        "--batch_size",
        dest="batch_size",
        type=positive_int,
        default=8,
        metavar="N",
        help="images per model call (default 8)",
    )
    p.add_argument("--overwrite", action="store_true", help="discard earlier results in --out")
    p.add_argument(
        "--no-progress",
        "--no_progress",
        dest="progress",
        action="store_false",
        help="no progress bar",
    )
    add_max_new_tokens(p, " per image")
    p.add_argument(
        "--grid",
        type=grid_arg,
        default=None,
        metavar="N|ROWSxCOLS",
        help="the grid the model writes (default: the checkpoint's)",
    )
    add_endpoint_args(p)
    return p


def _reference_arg(values: list[str] | None) -> Any:
    if not values:
        return None
    if values == ["per-folder"]:
        return "per-folder"
    if len(values) == 1 and (Path(values[0]).is_file() or "=" not in values[0]):
        return values[0]
    table = {}
    for v in values:
        folder, eq, ref = v.partition("=")
        if not eq or not folder or not ref or v == "per-folder":
            raise FolderRunError(
                f"--reference {v!r}: give one image for all, 'per-folder', or FOLDER=PATH "
                "for each folder (repeated), not a mix"
            )
        table[folder] = ref
    return table


def is_folder_request(argv: Sequence[str]) -> bool:
    """True when ``omniad inspect ARGV`` asks for a folder run: ``--out`` is given, or the
    first positional argument is a folder or a glob pattern (then :func:`folder_main`
    says that ``--out`` is needed)."""
    args = list(argv)
    if any(a == "--out" or a.startswith("--out=") for a in args):
        return True
    first = next((a for a in args if not a.startswith("-")), None)
    return first is not None and (Path(first).is_dir() or glob.has_magic(first))


def folder_main(argv: Sequence[str] | None = None, *, prog: str = "omniad inspect") -> int:
    """``omniad inspect DIR_OR_GLOB --out RESULTS_DIR [...]``: returns the exit code.

    0 when every image was answered or listed as unreadable, 3 when a served model left
    requests unanswered (re-run to retry them), 1 on an error (one line on stderr),
    130 on Ctrl-C (finished images are kept; re-run to resume).
    """
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = folder_parser(prog)
    args = parser.parse_args(args_list)
    try:
        if args.options and not args.question:
            raise FolderRunError("--options needs --question")
        reference = _reference_arg(args.reference)
        collect_images(args.inputs, exclude=[args.out])  # inputs checked before loading
        loaded = load_from_args(args)
        for note in loaded.notes:
            print(f"{prog}: {'note' if loaded.is_demo else 'warning'}: {note}", file=sys.stderr)
        result = inspect_folder(
            loaded.inspector,
            args.inputs,
            args.out,
            reference=reference,
            question=args.question,
            options=args.options or None,
            batch_size=args.batch_size,
            overlays=args.overlays,
            save_masks=args.masks,
            progress=args.progress,
            overwrite=args.overwrite,
        )
    except FolderRunError as exc:
        print(f"{prog}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    except FolderInterrupted as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print(f"{prog}: interrupted (Ctrl-C)", file=sys.stderr)
        return 130
    except Exception as exc:  # never a library traceback for the user
        print(unexpected_error_line(prog, exc), file=sys.stderr)
        return 1
    for path, reason in result.unreadable[:20]:
        print(f"{prog}: skipped {path}: {' '.join(str(reason).split())}", file=sys.stderr)
    if result.n_unreadable > 20:
        print(
            f"{prog}: ... and {result.n_unreadable - 20} more (see {result.summary})",
            file=sys.stderr,
        )
    print(
        f"{prog}: {result.n_images} images ({result.n_new} new): {result.n_anomalous} "
        f"anomalous, {result.n_unreadable} unreadable, {result.n_failed} failed; "
        f"table: {result.summary}; lines: {result.results}",
        file=sys.stderr,
    )
    return 3 if result.n_failed else 0
