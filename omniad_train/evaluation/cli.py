"""Command-line pieces shared by ``run_mmad`` and ``run_detection``.

``python -m omniad_train.evaluation {mmad,detection,merge} ...`` dispatches to
:func:`omniad_train.evaluation.mmad.main`, :func:`omniad_train.evaluation.detection.main`
and :func:`merge_main` (works under ``torchrun`` / ``accelerate launch`` too).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from omniad_train.evaluation.common import (
    EvalInterrupted,
    EvalResult,
    IncompleteRunError,
    RunConfigError,
    build_report,
)
from omniad_train.evaluation.runlog import RunLogLockedError

__all__ = [
    "EXIT_INTERRUPTED",
    "add_model_args",
    "add_run_args",
    "common_kwargs",
    "main",
    "merge_main",
]

_USAGE = """usage: python -m omniad_train.evaluation {mmad,detection,merge} [options]

  mmad        evaluate on MMAD's multiple-choice questions
  detection   evaluate anomaly detection on MVTec-style folders
  merge       combine the shards of a run in --out and (re)build its report

Run `python -m omniad_train.evaluation COMMAND --help` for a command's options."""


def _grid(value: str) -> Any:
    v = value.lower().replace(" ", "")
    try:
        if "x" in v:
            rows, cols = v.split("x")
            return (int(rows), int(cols))
        return int(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"grid must be N or RxC, got {value!r}") from None


def _nonneg(value: str) -> int:
    n = int(value)
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {n}")
    return n


def _positive(value: str) -> int:
    n = int(value)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {n}")
    return n


def add_model_args(p: argparse.ArgumentParser) -> None:
    """``--model`` and the model loading options."""
    g = p.add_argument_group("model")
    g.add_argument("--model", help="checkpoint folder (safetensors) or hub id")
    g.add_argument("--device", help="e.g. cpu, cuda:0 (default: cuda:LOCAL_RANK if available)")
    g.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), help="default float32")
    g.add_argument("--max_new_tokens", "--max-new-tokens", type=_positive, help="default 512")
    g.add_argument("--grid", type=_grid, help="N or RxC (default: the checkpoint's, else 24)")
    g.add_argument("--image_size", "--image-size", type=_positive, help="default: checkpoint's")
    g.add_argument("--layout", choices=("lines", "inline"), help="how options are shown")


def add_run_args(p: argparse.ArgumentParser, *, default_out: str) -> None:
    """Output, batching, subsets, sharding and report options."""
    g = p.add_argument_group("run")
    g.add_argument("--out", default=default_out, help=f"run folder (default {default_out})")
    g.add_argument("--batch_size", "--batch-size", type=_positive, default=8)
    g.add_argument("--limit", type=_nonneg, help="only the first N items")
    g.add_argument(
        "--limit_per_category", "--limit-per-category", type=_nonneg, help="at most N per category"
    )
    g.add_argument(
        "--categories", help="comma-separated categories, dataset/category or dataset names"
    )
    g.add_argument("--shard_index", "--shard-index", type=_nonneg, help="default: $RANK or 0")
    g.add_argument("--num_shards", "--num-shards", type=_positive, help="default: $WORLD_SIZE or 1")
    g.add_argument(
        "--compare_paper",
        "--compare-paper",
        action="store_true",
        default=None,
        help="add the paper's numbers and the differences to the report",
    )
    g.add_argument("--overwrite", action="store_true", help="discard earlier results of this shard")
    g.add_argument("--no_progress", "--no-progress", action="store_true", help="no progress bar")
    g.add_argument(
        "--merge",
        action="store_true",
        help="only merge the shards in --out and (re)build the report (no model needed)",
    )
    g.add_argument(
        "--allow_partial",
        "--allow-partial",
        action="store_true",
        help="with --merge: report on the shards present even if some are missing",
    )


def common_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments shared by ``run_mmad`` and ``run_detection``."""
    return {
        "batch_size": args.batch_size,
        "limit": args.limit,
        "limit_per_category": args.limit_per_category,
        "categories": args.categories,
        "shard_index": args.shard_index,
        "num_shards": args.num_shards,
        "compare_paper": bool(args.compare_paper),
        "overwrite": args.overwrite,
        "progress": not args.no_progress,
        "verbose": True,
        "device": args.device,
        "dtype": args.dtype,
        "max_new_tokens": args.max_new_tokens,
        "grid": args.grid,
        "image_size": args.image_size,
        "layout": args.layout,
    }


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time (it may be replaced)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def _setup_logging() -> None:
    logger = logging.getLogger("omniad.evaluation")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


_ERRORS = (
    OSError,  # FileNotFoundError, a checkpoint or hub id that cannot be loaded, a full disk
    ValueError,
    TypeError,
    RunConfigError,
    RunLogLockedError,
    IncompleteRunError,
)


#: Exit code after Ctrl-C (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED = 130


def _error(exc: BaseException) -> str:
    """``error: ...`` on one line (library messages may span several)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"error: {text}"


def _interrupted(exc: KeyboardInterrupt) -> str:
    if isinstance(exc, EvalInterrupted):
        return str(exc)
    return "interrupted; finished items are saved: re-run the same command to resume"


def run_cli(call: Callable[[], EvalResult], args: argparse.Namespace) -> int:
    """Run a runner call, turning expected errors into exit code 1 and Ctrl-C into a
    summary of what is saved (exit code 130)."""
    _setup_logging()
    try:
        result = call()
    except KeyboardInterrupt as exc:
        print(_interrupted(exc), file=sys.stderr)
        return EXIT_INTERRUPTED
    except _ERRORS as exc:
        print(_error(exc), file=sys.stderr)
        return 1
    i, n = result.shard
    print(
        f"shard {i}/{n}: {result.n_items} items ({result.n_new} new) -> {result.results}",
        file=sys.stderr,
    )
    if not result.complete:
        print(
            "other shards are still running; the last one to finish writes the report "
            f"(or run with --merge --out {result.out_dir})",
            file=sys.stderr,
        )
    return 0


def finish_merge(args: argparse.Namespace) -> int:
    """``--merge``: combine shards and rebuild the report."""
    _setup_logging()
    options: dict[str, Any] = {"compare_paper": args.compare_paper}
    if getattr(args, "image_decision", None) is not None:
        options["image_decision"] = args.image_decision
    try:
        report = build_report(args.out, allow_partial=args.allow_partial, **options)
    except KeyboardInterrupt:
        print("interrupted; the results are untouched: run the merge again", file=sys.stderr)
        return EXIT_INTERRUPTED
    except _ERRORS as exc:
        print(_error(exc), file=sys.stderr)
        return 1
    print(report["markdown_summary"])
    print(f"report: {args.out}/report.md")
    return 0


def merge_main(argv: Sequence[str] | None = None) -> int:
    """``merge --out RUN [--allow_partial] [--compare_paper] [--image_decision D]``."""
    p = argparse.ArgumentParser(
        prog="merge", description="Combine the shards of a run and (re)build its report."
    )
    p.add_argument("--out", required=True, help="the run folder")
    p.add_argument("--allow_partial", "--allow-partial", action="store_true")
    p.add_argument("--compare_paper", "--compare-paper", action="store_true", default=None)
    p.add_argument("--image_decision", "--image-decision", choices=("answer", "seg"))
    return finish_merge(p.parse_args(argv))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m omniad_train.evaluation {mmad,detection,merge} ...``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_USAGE)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "mmad":
        from omniad_train.evaluation.mmad import main as mmad_main

        return mmad_main(rest)
    if command == "detection":
        from omniad_train.evaluation.detection import main as detection_main

        return detection_main(rest)
    if command == "merge":
        return merge_main(rest)
    print(f"unknown command {command!r}\n\n{_USAGE}", file=sys.stderr)
    return 2
