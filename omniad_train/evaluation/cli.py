"""The evaluation command lines: ``main`` of the package and what each command runs.

``omniad-train eval {mmad,detection,merge} ...`` (also ``python -m
omniad_train.evaluation ...``) dispatches to :func:`mmad_main`, :func:`detection_main` and
:func:`merge_main`; ``benchmarks/run_mmad.py`` and ``benchmarks/run_detection.py`` call
the first two (they work under ``torchrun`` / ``accelerate launch`` too).  The parsers
are built in :mod:`omniad_train.evaluation.parsers` (re-exported here): each usage names
the command as it was called, every option is registered once (``--flag_name``;
``--flag-name`` is accepted too) and has a help line.  The runners
(:func:`~omniad_train.evaluation.mmad_runner.run_mmad`,
:func:`~omniad_train.evaluation.detection_runner.run_detection`) know nothing of the
command line; ``--merge`` rebuilds a report with
:func:`omniad_train.evaluation.merge.build_report`.
"""

from __future__ import annotations

import argparse
import difflib
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from omniad_core.backends import EndpointError
from omniad_core.inspector import demo_model_path
from omniad_train.evaluation.detection_runner import run_detection
from omniad_train.evaluation.execution import EvalInterrupted, EvalResult
from omniad_train.evaluation.merge import build_report
from omniad_train.evaluation.mmad_runner import run_mmad
from omniad_train.evaluation.model import DEFAULT_CONCURRENCY, Endpoint
from omniad_train.evaluation.parsers import (
    PROG,
    add_endpoint_args,
    add_model_args,
    add_run_args,
    build_detection_parser,
    build_merge_parser,
    build_mmad_parser,
    program_name,
)
from omniad_train.evaluation.runfiles import IncompleteRunError, RunConfigError
from omniad_train.evaluation.runlog import RunLogLockedError

__all__ = [
    "EXIT_FAILED_REQUESTS",
    "EXIT_INTERRUPTED",
    "PROG",
    "add_endpoint_args",
    "add_model_args",
    "add_run_args",
    "build_detection_parser",
    "build_merge_parser",
    "build_mmad_parser",
    "common_kwargs",
    "detection_main",
    "finish_merge",
    "main",
    "merge_main",
    "missing_model_message",
    "mmad_main",
    "run_cli",
]


_USAGE = """usage: {prog} {{mmad,detection,merge}} [options]

Evaluate a model (a checkpoint folder, or a served model behind --endpoint) on MMAD or
on MVTec-style folders; runs are resumable and shardable.

commands:
  mmad        evaluate on MMAD's multiple-choice questions
  detection   evaluate anomaly detection on MVTec-style folders
  merge       combine the shards of a run in --out and (re)build its report

Run `{prog} COMMAND --help` for a command's options. Every option is accepted as
--flag_name and as --flag-name. Docs: docs/evaluation.md."""


def missing_model_message() -> str:
    """What to pass when neither ``--model`` nor ``--endpoint`` was given, with the path
    of the embedded demo model when the package ships it."""
    text = "no model: pass --model CHECKPOINT or --endpoint URL --served_model NAME"
    demo = demo_model_path()
    if demo is not None:
        text += f" (the embedded demo model is at {demo}: --model {demo})"
    return text + "; --merge needs neither"


def _endpoint(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Endpoint | None:
    """The served model of a command line, or None (then --model is required)."""
    if args.endpoint is None:
        if args.served_model or args.api_key_env or args.concurrency or args.spec:
            parser.error(
                "--served_model, --api_key_env, --concurrency and --spec need --endpoint URL"
            )
        if not args.model:
            parser.error(missing_model_message())
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
        spec=args.spec,
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


def merge_main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """``merge --out RUN [--allow_partial] [--compare_paper] [--image_decision D]``."""
    return finish_merge(build_merge_parser(program_name(prog, argv, "merge")).parse_args(argv))


# --------------------------------------------------------------------------- mmad
def mmad_main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """The ``mmad`` command line (``prog``: its name; default as called); the exit code."""
    parser = build_mmad_parser(program_name(prog, argv, "mmad"))
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
def detection_main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """The ``detection`` command line (``prog``: its name; default as called); the exit code."""
    parser = build_detection_parser(program_name(prog, argv, "detection"))
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
_COMMANDS: dict[str, Callable[[Sequence[str] | None, str | None], int]] = {
    "mmad": mmad_main,
    "detection": detection_main,
    "merge": merge_main,
}


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    """``omniad-train eval {mmad,detection,merge} ...`` (``prog``: the name as called)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_USAGE.format(prog=prog), file=sys.stdout if args else sys.stderr)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command in _COMMANDS:
        return _COMMANDS[command](rest, f"{prog} {command}")
    close = difflib.get_close_matches(command, list(_COMMANDS), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    print(f"usage: {prog} {{mmad,detection,merge}} [options]", file=sys.stderr)
    print(
        f"{prog}: error: unknown command {command!r}{hint}; choose from mmad, detection, merge",
        file=sys.stderr,
    )
    return 2
