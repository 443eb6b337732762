"""The evaluation commands' argument parsers (``omniad-train eval mmad|detection|merge``).

Every parser is a :class:`~omniad_train._argparse.CommandParser`: its usage names the
command as it was called (:func:`program_name`), every option is registered once, as
``--flag_name`` (``--flag-name`` is accepted too), and every option has a help line.
:mod:`omniad_train.evaluation.cli` runs what they parse.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from omniad_core.cli import grid_arg
from omniad_train._argparse import (
    CommandParser,
    nonneg_int,
    open_fraction,
    positive_int,
    positive_seconds,
)
from omniad_train.evaluation.detection_runner import IMAGE_DECISIONS
from omniad_train.evaluation.model import DEFAULT_CONCURRENCY, PROMPTS

__all__ = [
    "PROG",
    "add_endpoint_args",
    "add_model_args",
    "add_run_args",
    "build_detection_parser",
    "build_merge_parser",
    "build_mmad_parser",
    "program_name",
]

#: The name of the evaluation commands when the caller gives none.
PROG = "omniad-train eval"


def program_name(prog: str | None, argv: Sequence[str] | None, command: str) -> str:
    """The command's name as it was called: ``prog`` when given; the script's name when
    the arguments come from ``sys.argv`` (``run_mmad.py``); else ``omniad-train eval CMD``."""
    if prog is not None:
        return prog
    if argv is None and sys.argv and sys.argv[0] and sys.argv[0] != "-c":
        name = os.path.basename(sys.argv[0])
        if name != "__main__.py":
            return name
    return f"{PROG} {command}"


def add_model_args(p: CommandParser) -> None:
    """``--model`` and the model loading options."""
    g = p.add_argument_group("model")
    g.add_argument(
        "--model",
        metavar="CHECKPOINT",
        help="checkpoint folder (safetensors) or hub id; the embedded demo model: "
        "omniad_core.inspector.demo_model_path()",
    )
    g.add_argument(
        "--device",
        metavar="DEVICE",
        help="e.g. cpu, cuda:0 (default: cuda:LOCAL_RANK if available)",
    )
    g.add_argument(
        "--dtype",
        choices=("float32", "bfloat16", "float16"),
        help="default bfloat16 on CUDA, float32 on CPU",
    )
    g.add_argument(
        "--max_new_tokens", type=positive_int, metavar="N", help="tokens per answer (default 1024)"
    )
    g.add_argument(
        "--grid",
        type=grid_arg,
        metavar="N|ROWSxCOLS",
        help="e.g. 24 or 16x32 (default: the checkpoint's, else 24)",
    )
    g.add_argument(
        "--image_size",
        type=positive_int,
        metavar="PX",
        help="side the images are resized to (default: the checkpoint's)",
    )
    g.add_argument("--layout", choices=("lines", "inline"), help="how options are shown")


def add_endpoint_args(p: CommandParser) -> None:
    """``--endpoint URL --served_model NAME`` and the request options (instead of --model)."""
    g = p.add_argument_group(
        "served model",
        "an OpenAI-compatible server (vLLM, SGLang, transformers serve, a hosted API) "
        "instead of --model; --grid, --image_size and the system prompt come from the flags, "
        "else the served checkpoint's omniad.json (--spec, or the served name when it is a "
        "local checkpoint folder, as with transformers serve), else the defaults",
    )
    g.add_argument("--endpoint", metavar="URL", help="API root, e.g. http://127.0.0.1:8000/v1")
    g.add_argument("--served_model", metavar="NAME", help="the name GET /v1/models lists")
    g.add_argument(
        "--spec",
        metavar="PATH",
        help="the served checkpoint's folder or omniad.json (grid, image size, system prompt)",
    )
    g.add_argument(
        "--api_key_env",
        metavar="VAR",
        help="environment variable holding the API key (the key itself is never a flag)",
    )
    g.add_argument(
        "--concurrency",
        type=positive_int,
        default=None,
        metavar="N",
        help=f"requests in flight (default {DEFAULT_CONCURRENCY}, sized for one server)",
    )
    g.add_argument(
        "--request_timeout",
        type=positive_seconds,
        default=300.0,
        metavar="S",
        help="seconds per request (default 300)",
    )
    g.add_argument(
        "--retries",
        type=nonneg_int,
        default=4,
        metavar="N",
        help="further attempts after a 429 / 5xx / connection error, with backoff (default 4)",
    )
    g.add_argument(
        "--prompt",
        choices=PROMPTS,
        default="omniad",
        help="omniad: the checkpoint's system prompt (default); mmad: MMAD's way for a "
        "general model (no system turn, the option's letter only; MMAD runs only)",
    )


def add_run_args(p: CommandParser, *, default_out: str) -> None:
    """Output, batching, subsets, sharding and report options."""
    g = p.add_argument_group("run")
    g.add_argument(
        "--out", default=default_out, metavar="DIR", help=f"run folder (default {default_out})"
    )
    g.add_argument(
        "--batch_size",
        type=positive_int,
        default=8,
        metavar="N",
        help="images per generate call with --model (default 8; lower it if memory runs "
        "out); with --endpoint, --concurrency sets the requests in flight",
    )
    g.add_argument("--limit", type=nonneg_int, metavar="N", help="only the first N items")
    g.add_argument(
        "--limit_per_category", type=nonneg_int, metavar="N", help="at most N items per category"
    )
    g.add_argument(
        "--categories",
        metavar="LIST",
        help="comma-separated categories, dataset/category or dataset names",
    )
    g.add_argument(
        "--shard_index",
        type=nonneg_int,
        metavar="I",
        help="this process's shard (default $RANK or 0)",
    )
    g.add_argument(
        "--num_shards",
        type=positive_int,
        metavar="N",
        help="shards of the run (default $WORLD_SIZE or 1)",
    )
    g.add_argument(
        "--compare_paper",
        action="store_true",
        default=None,
        help="add the paper's numbers and the differences to the report (a subset run is "
        "marked not comparable)",
    )
    g.add_argument("--overwrite", action="store_true", help="discard earlier results of this shard")
    g.add_argument("--no_progress", action="store_true", help="no progress bar")
    g.add_argument(
        "--merge",
        action="store_true",
        help="only merge the shards in --out and (re)build the report (no model needed)",
    )
    g.add_argument(
        "--allow_partial",
        action="store_true",
        help="with --merge: report on the shards present even if some are missing",
    )


def build_merge_parser(prog: str | None = None) -> CommandParser:
    """The ``merge`` argument parser."""
    p = CommandParser(
        prog=prog or f"{PROG} merge",
        description="Combine the shards of a run and (re)build its report (no model needed).",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="the run folder")
    p.add_argument(
        "--allow_partial",
        action="store_true",
        help="report on the shards present even if some are missing",
    )
    p.add_argument(
        "--compare_paper",
        action="store_true",
        default=None,
        help="add the paper's numbers (default: as the run was started)",
    )
    p.add_argument(
        "--image_decision",
        choices=("answer", "seg"),
        help="detection runs: image level from the answer or from a non-empty seg "
        "(default: as the run was started)",
    )
    return p


def build_mmad_parser(prog: str | None = None) -> CommandParser:
    """The ``mmad`` argument parser (``prog``: its name in the usage)."""
    p = CommandParser(
        prog=prog or f"{PROG} mmad",
        description="Evaluate a checkpoint on MMAD (0-shot or 1-shot); resumable and shardable.",
    )
    p.add_argument("--mmad_json", metavar="FILE", help="MMAD's mmad.json")
    p.add_argument("--image_root", metavar="DIR", help="folder MMAD's image paths are relative to")
    p.add_argument(
        "--shots",
        type=int,
        choices=(0, 1),
        default=0,
        help="0: the question alone (default); 1: a normal reference image of the same "
        "product first (see --reference)",
    )
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
        type=open_fraction,
        metavar="F",
        help="evaluate the held-out split: the images (fraction F, e.g. 0.8) whose hash "
        "with --split_seed is below F",
    )
    g.add_argument(
        "--split_seed",
        type=int,
        default=0,
        metavar="N",
        help="seed of the held-out split's hash (default 0)",
    )
    g.add_argument(
        "--split_file",
        metavar="FILE",
        help="evaluate only the images listed in FILE (MMAD keys or absolute paths, one a line)",
    )
    g.add_argument(
        "--exclude_training",
        action="append",
        default=[],
        metavar="PREPARED_DIR",
        help="leave out every image a prepared training set (omniad-train prepare) trains "
        "on; repeatable",
    )
    g.add_argument(
        "--refuse_training_overlap",
        action="append",
        default=[],
        metavar="PREPARED_DIR",
        help="stop before any work if a selected image is in that prepared training set",
    )
    add_run_args(p, default_out="runs/mmad")
    return p


def build_detection_parser(prog: str | None = None) -> CommandParser:
    """The ``detection`` argument parser (``prog``: its name in the usage)."""
    p = CommandParser(
        prog=prog or f"{PROG} detection",
        description="Evaluate anomaly detection on MVTec-style folders; resumable and shardable.",
    )
    p.add_argument(
        "--root",
        action="append",
        default=[],
        metavar="[NAME=]PATH",
        help="a dataset root (repeat for several); NAME defaults to the folder name",
    )
    p.add_argument(
        "--shots",
        type=int,
        choices=(0, 1),
        default=0,
        help="0: the image alone (default); 1: a train/good image of the same category "
        "first (chosen with --seed)",
    )
    p.add_argument(
        "--image_decision",
        choices=IMAGE_DECISIONS,
        default=None,
        help="image level from the answer (default) or from a non-empty seg",
    )
    p.add_argument(
        "--seed", type=int, default=0, metavar="N", help="seed of the 1-shot reference choice"
    )
    p.add_argument(
        "--save_masks",
        type=int,
        default=0,
        metavar="N",
        help="save predicted masks and overlays of the first N images per category",
    )
    add_model_args(p)
    add_endpoint_args(p)
    add_run_args(p, default_out="runs/detection")
    return p
