"""The evaluation command lines: every argparse parser and ``main`` of the package.

``python -m omniad_train.evaluation {mmad,detection,merge} ...`` (also
``omniad-train eval ...``) dispatches to :func:`mmad_main`, :func:`detection_main` and
:func:`merge_main`; ``benchmarks/run_mmad.py`` and ``benchmarks/run_detection.py`` call
the first two (they work under ``torchrun`` / ``accelerate launch`` too).  The runners
(:func:`~omniad_train.evaluation.mmad_runner.run_mmad`,
:func:`~omniad_train.evaluation.detection_runner.run_detection`) know nothing of the
command line; ``--merge`` rebuilds a report with
:func:`omniad_train.evaluation.merge.build_report`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from omniad_core.backends import EndpointError
from omniad_core.cli import grid_arg
from omniad_train.evaluation.detection_runner import IMAGE_DECISIONS, run_detection
from omniad_train.evaluation.execution import EvalInterrupted, EvalResult
from omniad_train.evaluation.merge import build_report
from omniad_train.evaluation.mmad_runner import run_mmad
from omniad_train.evaluation.model import DEFAULT_CONCURRENCY, PROMPTS, Endpoint
from omniad_train.evaluation.runfiles import IncompleteRunError, RunConfigError
from omniad_train.evaluation.runlog import RunLogLockedError

__all__ = [
    "EXIT_FAILED_REQUESTS",
    "EXIT_INTERRUPTED",
    "add_endpoint_args",
    "add_model_args",
    "add_run_args",
    "build_detection_parser",
    "build_mmad_parser",
    "common_kwargs",
    "detection_main",
    "finish_merge",
    "main",
    "merge_main",
    "mmad_main",
    "run_cli",
]

_USAGE = """usage: python -m omniad_train.evaluation {mmad,detection,merge} [options]

  mmad        evaluate on MMAD's multiple-choice questions
  detection   evaluate anomaly detection on MVTec-style folders
  merge       combine the shards of a run in --out and (re)build its report

Run `python -m omniad_train.evaluation COMMAND --help` for a command's options."""


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
    g.add_argument(
        "--dtype",
        choices=("float32", "bfloat16", "float16"),
        help="default bfloat16 on CUDA, float32 on CPU",
    )
    g.add_argument("--max_new_tokens", "--max-new-tokens", type=_positive, help="default 1024")
    g.add_argument(
        "--grid",
        type=grid_arg,
        metavar="N|ROWSxCOLS",
        help="e.g. 24 or 16x32 (default: the checkpoint's, else 24)",
    )
    g.add_argument("--image_size", "--image-size", type=_positive, help="default: checkpoint's")
    g.add_argument("--layout", choices=("lines", "inline"), help="how options are shown")


def _fraction(value: str) -> float:
    f = float(value)
    if not 0 < f < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (e.g. 0.8), got {f}")
    return f


def _seconds(value: str) -> float:
    f = float(value)
    if not f > 0:
        raise argparse.ArgumentTypeError(f"must be > 0 seconds, got {f}")
    return f


def add_endpoint_args(p: argparse.ArgumentParser) -> None:
    """``--endpoint URL --served_model NAME`` and the request options (instead of --model)."""
    g = p.add_argument_group(
        "served model",
        "an OpenAI-compatible server (vLLM, SGLang, transformers serve, a hosted API) "
        "instead of --model; --grid, --image_size and the system prompt then come from the "
        "flags or the defaults (no omniad.json is read)",
    )
    g.add_argument("--endpoint", metavar="URL", help="API root, e.g. http://127.0.0.1:8000/v1")
    g.add_argument(
        "--served_model", "--served-model", metavar="NAME", help="the name GET /v1/models lists"
    )
    g.add_argument(
        "--api_key_env",
        "--api-key-env",
        metavar="VAR",
        help="environment variable holding the API key (the key itself is never a flag)",
    )
    g.add_argument(
        "--concurrency",
        type=_positive,
        default=None,
        metavar="N",
        help=f"requests in flight (default {DEFAULT_CONCURRENCY}, sized for one server)",
    )
    g.add_argument(
        "--request_timeout",
        "--request-timeout",
        type=_seconds,
        default=300.0,
        metavar="S",
        help="seconds per request (default 300)",
    )
    g.add_argument(
        "--retries",
        type=_nonneg,
        default=4,
        help="further attempts after a 429 / 5xx / connection error, with backoff (default 4)",
    )
    g.add_argument(
        "--prompt",
        choices=PROMPTS,
        default="omniad",
        help="omniad: the checkpoint's system prompt (default); mmad: MMAD's way for a "
        "general model (no system turn, the option's letter only; MMAD runs only)",
    )


def _endpoint(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Endpoint | None:
    """The served model of a command line, or None (then --model is required)."""
    if args.endpoint is None:
        if args.served_model or args.api_key_env or args.concurrency:
            parser.error("--served_model, --api_key_env and --concurrency need --endpoint URL")
        if not args.model:
            parser.error(
                "--model or --endpoint URL --served_model NAME is required (unless --merge)"
            )
        return None
    if args.model:
        parser.error("give --model or --endpoint, not both")
    if not args.served_model:
        parser.error(
            "--endpoint needs --served_model NAME (as the server's GET /v1/models lists it)"
        )
    return Endpoint(
        args.endpoint,
        args.served_model,
        api_key_env=args.api_key_env,
        concurrency=args.concurrency or DEFAULT_CONCURRENCY,
        timeout=args.request_timeout,
        retries=args.retries,
    )


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
    EndpointError,  # an unset key variable, an unreachable URL, a wrong served model name
    ValueError,
    TypeError,
    RunConfigError,
    RunLogLockedError,
    IncompleteRunError,
)


#: Exit code after Ctrl-C (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED = 130

#: Exit code of a run that finished with failed requests (the report is written).
EXIT_FAILED_REQUESTS = 3


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
    if result.n_failed:
        print(
            f"error: {result.n_failed} request(s) failed after their last retry and are not "
            f"scored (listed in {result.report_md if result.complete else result.results}); "
            "re-run the same command to retry only them",
            file=sys.stderr,
        )
        return EXIT_FAILED_REQUESTS
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


# --------------------------------------------------------------------------- mmad
def build_mmad_parser() -> argparse.ArgumentParser:
    """The ``run_mmad`` argument parser."""
    p = argparse.ArgumentParser(
        prog="run_mmad",
        description="Evaluate a checkpoint on MMAD (0-shot or 1-shot); resumable and shardable.",
    )
    p.add_argument("--mmad_json", "--mmad-json", help="MMAD's mmad.json")
    p.add_argument("--image_root", "--image-root", help="folder MMAD's image paths are relative to")
    p.add_argument("--shots", type=int, choices=(0, 1), default=0)
    p.add_argument(
        "--reference",
        choices=("similar", "random"),
        default="similar",
        help="1-shot reference: first of similar_templates (default) or random_templates",
    )
    add_model_args(p)
    add_endpoint_args(p)
    g = p.add_argument_group(
        "protocol",
        "which questions: the full benchmark (default), a held-out split, no training images "
        "(recorded in run.json and printed in the report)",
    )
    g.add_argument(
        "--holdout_fraction",
        "--holdout-fraction",
        type=_fraction,
        metavar="F",
        help="evaluate the held-out split: the images (fraction F, e.g. 0.8) whose hash "
        "with --split_seed is below F",
    )
    g.add_argument("--split_seed", "--split-seed", type=int, default=0, help="default 0")
    g.add_argument(
        "--split_file",
        "--split-file",
        metavar="FILE",
        help="evaluate only the images listed in FILE (MMAD keys or absolute paths, one a line)",
    )
    g.add_argument(
        "--exclude_training",
        "--exclude-training",
        action="append",
        default=[],
        metavar="PREPARED_DIR",
        help="leave out every image a prepared training set (omniad-train prepare) trains "
        "on; repeatable",
    )
    g.add_argument(
        "--refuse_training_overlap",
        "--refuse-training-overlap",
        action="append",
        default=[],
        metavar="PREPARED_DIR",
        help="stop before any work if a selected image is in that prepared training set",
    )
    add_run_args(p, default_out="runs/mmad")
    return p


def mmad_main(argv: Sequence[str] | None = None) -> int:
    """``run_mmad`` command line; returns the exit code."""
    parser = build_mmad_parser()
    args = parser.parse_args(argv)
    if args.merge:
        return finish_merge(args)
    if not args.mmad_json:
        parser.error("--mmad_json is required (unless --merge)")
    if args.holdout_fraction is not None and args.split_file:
        parser.error("give --holdout_fraction or --split_file, not both")
    endpoint = _endpoint(args, parser)

    def call() -> EvalResult:
        return run_mmad(
            args.model,
            args.mmad_json,
            args.image_root,
            args.out,
            shots=args.shots,
            reference_from=args.reference,
            endpoint=endpoint,
            prompt=args.prompt,
            holdout_fraction=args.holdout_fraction,
            split_seed=args.split_seed,
            split_file=args.split_file,
            exclude_training=args.exclude_training,
            refuse_training=args.refuse_training_overlap,
            **common_kwargs(args),
        )

    return run_cli(call, args)


# --------------------------------------------------------------------------- detection
def build_detection_parser() -> argparse.ArgumentParser:
    """The ``run_detection`` argument parser."""
    p = argparse.ArgumentParser(
        prog="run_detection",
        description="Evaluate anomaly detection on MVTec-style folders; resumable and shardable.",
    )
    p.add_argument(
        "--root",
        action="append",
        default=[],
        metavar="[NAME=]PATH",
        help="a dataset root (repeat for several); NAME defaults to the folder name",
    )
    p.add_argument("--shots", type=int, choices=(0, 1), default=0)
    p.add_argument(
        "--image_decision",
        "--image-decision",
        choices=IMAGE_DECISIONS,
        default=None,
        help="image level from the answer (default) or from a non-empty seg",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the 1-shot reference choice")
    p.add_argument(
        "--save_masks",
        "--save-masks",
        type=int,
        default=0,
        metavar="N",
        help="save predicted masks and overlays of the first N images per category",
    )
    add_model_args(p)
    add_endpoint_args(p)
    add_run_args(p, default_out="runs/detection")
    return p


def detection_main(argv: Sequence[str] | None = None) -> int:
    """``run_detection`` command line; returns the exit code."""
    parser = build_detection_parser()
    args = parser.parse_args(argv)
    if args.merge:
        return finish_merge(args)
    if not args.root:
        parser.error("at least one --root is required (unless --merge)")
    if args.prompt != "omniad":
        parser.error(
            "--prompt mmad is for MMAD's questions: detection scores the mask, which only the "
            "omniad prompt asks for"
        )
    endpoint = _endpoint(args, parser)

    def call() -> EvalResult:
        return run_detection(
            args.model,
            args.root,
            args.out,
            shots=args.shots,
            image_decision=args.image_decision or "answer",
            seed=args.seed,
            save_masks=args.save_masks,
            endpoint=endpoint,
            **common_kwargs(args),
        )

    return run_cli(call, args)


# --------------------------------------------------------------------------- dispatch
_COMMANDS: dict[str, Callable[[Sequence[str] | None], int]] = {
    "mmad": mmad_main,
    "detection": detection_main,
    "merge": merge_main,
}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m omniad_train.evaluation {mmad,detection,merge} ...``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_USAGE)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command in _COMMANDS:
        return _COMMANDS[command](rest)
    print(f"unknown command {command!r}\n\n{_USAGE}", file=sys.stderr)
    return 2
