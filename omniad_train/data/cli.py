"""``omniad-train prepare``: the command line of :func:`omniad_train.data.prepare`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from omniad_core.cli import grid_arg
from omniad_core.prompts import SYSTEM_PROMPT
from omniad_train.data.teacher import TeacherError, add_teacher_args, teacher_from_args
from omniad_train.data.templates import TEMPLATE_TYPES, parse_question_types

__all__ = ["build_parser", "prepare_main"]


def _types_arg(value: str) -> tuple[str, ...]:
    try:
        return parse_question_types(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


_EPILOG = """\
examples:
  omniad-train prepare data/sft_mvtec --mvtec_root /data/mvtec_anomaly_detection --eval_fraction 0.05
  omniad-train prepare data/mmad --mmad_json /data/MMAD/mmad.json --shots 1
  omniad-train prepare data/mix --mvtec_root /data/visa_pytorch --mvtec_root /data/loco \\
      --jsonl extra.jsonl --max_records 2000
  omniad-train prepare data/paper_sft --mvtec_root /data/mvtec_ad --visa_root /data/VisA \\
      --mvtec_root /data/mvtec_loco --mvtec_root /data/mvtec_3d --max_per_category 1 \\
      --mmad_json /data/MMAD/mmad.json --mmad_max_per_category 40

Image folders get template questions of five MMAD types (--question_types); the table
printed at the end counts images and QA pairs per source and type (also in manifest.json).
Output: sft/ and grpo/ (datasets.load_from_disk), manifest.json, rejects.jsonl and the
work folder .work/ that makes a re-run with the same arguments skip finished work.
Image folders' train/good images are never training examples: they are the normal
reference images of 1-shot prompts (--shots 1) and are not used with --shots 0.
Exit status: 0 on success, 1 when an input is missing or nothing could be prepared.
"""


def build_parser(prog: str = "omniad-train prepare") -> argparse.ArgumentParser:
    """The argument parser (every option of :func:`~omniad_train.data.prepare`)."""
    from omniad_train.cli import CommandParser

    p = CommandParser(
        prog=prog,
        usage=f"{prog} OUTPUT_DIR SOURCE [SOURCE ...] [options]\n"
        "  SOURCE: --mmad_json FILE | --mvtec_root DIR | --visa_root DIR | --jsonl FILE",
        description="Build the SFT and GRPO datasets of OmniAD from MMAD's mmad.json, "
        "image folders (MVTec AD, VisA, MVTec LOCO, MVTec 3D-AD, ...) and generic JSONL files.",
        epilog=_EPILOG,
    )
    p.add_argument(
        "output_dir",
        type=Path,
        help="folder to write sft/, grpo/, manifest.json, rejects.jsonl into",
    )
    src = p.add_argument_group("sources (give at least one)")
    src.add_argument("--mmad_json", type=Path, action="append", help="MMAD's mmad.json; repeatable")
    src.add_argument(
        "--image_root",
        type=Path,
        action="append",
        help="folder MMAD's image, mask and template paths are relative to (default: the folder of mmad.json); one, or one per --mmad_json",
    )
    src.add_argument(
        "--mvtec_root",
        type=Path,
        action="append",
        help="image folder, layout detected: MVTec-style <category>/{train/good,test/<defect>,ground_truth/<defect>}, MVTec 3D-AD <category>/test/<defect>/{rgb,gt} or VisA's original layout; repeatable",
    )
    src.add_argument(
        "--visa_root",
        type=Path,
        action="append",
        help="VisA in its original layout (split_csv/1cls.csv, <object>/Data/{Images,Masks}); repeatable",
    )
    src.add_argument(
        "--jsonl",
        type=Path,
        action="append",
        help="generic JSONL of records (see docs/data.md); repeatable",
    )
    src.add_argument(
        "--allow_outside_root",
        action="store_true",
        help="JSONL lines may name absolute paths and paths outside the JSONL file's folder (default: such lines are rejected)",
    )
    fmt = p.add_argument_group("format")
    fmt.add_argument(
        "--grid",
        type=grid_arg,
        default=24,
        metavar="N|ROWSxCOLS",
        help="textmask grid, e.g. 24 or 16x32 (default 24)",
    )
    fmt.add_argument(
        "--image_size",
        type=int,
        default=512,
        help="images are resized to this square size (default 512)",
    )
    fmt.add_argument(
        "--shots",
        type=int,
        choices=(0, 1),
        default=0,
        help="1: prompts start with a normal reference image of the same category (default 0)",
    )
    fmt.add_argument(
        "--reference_from",
        choices=("similar", "random"),
        default="similar",
        help="MMAD 1-shot reference: first of similar_templates or random_templates (default similar)",
    )
    sp = fmt.add_mutually_exclusive_group()
    sp.add_argument("--system_prompt", help="system prompt text (default: the paper's prompt)")
    sp.add_argument("--system_prompt_file", type=Path, help="read the system prompt from this file")
    sp.add_argument("--no_system_prompt", action="store_true", help="prompts without a system turn")
    fmt.add_argument(
        "--question_types",
        type=_types_arg,
        default=None,
        metavar="TYPE,TYPE",
        help="image folders: the template question types, comma-separated (default: all of "
        + ", ".join(TEMPLATE_TYPES)
        + ")",
    )
    fmt.add_argument(
        "--no_location_questions",
        action="store_true",
        help="image folders: no Defect Localization ('Where is the defect located?') questions",
    )
    sel = p.add_argument_group("selection")
    sel.add_argument(
        "--eval_fraction",
        type=float,
        default=0.0,
        help="fraction of images in a 'test' split, by image (default 0: train only)",
    )
    sel.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of splits, distractors, references, templates (default 0)",
    )
    sel.add_argument(
        "--max_per_category",
        type=int,
        metavar="N",
        help="image folders: at most N images per category, round-robin over the defect types (the paper's SFT mix: 1)",
    )
    sel.add_argument(
        "--mmad_max_per_category",
        type=int,
        metavar="N",
        help="MMAD: at most N images per dataset/category (default: all)",
    )
    sel.add_argument("--max_records", type=int, help="stop after this many records (quick trials)")
    run = p.add_argument_group("run")
    run.add_argument(
        "--overwrite",
        action="store_true",
        help="delete an earlier run's outputs and work folder first (default: reuse them)",
    )
    run.add_argument("--quiet", action="store_true", help="no progress bars or summary line")
    add_teacher_args(p)
    return p


def prepare_main(argv: Sequence[str] | None = None) -> int:
    """Run ``omniad-train prepare``; returns the exit status (0 ok, 1 failure)."""
    from omniad_train.data.prepare import PrepareError, prepare

    args = build_parser().parse_args(argv)
    if args.no_system_prompt:
        system_prompt = None
    elif args.system_prompt_file is not None:
        try:
            system_prompt = args.system_prompt_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            print(
                f"omniad-train prepare: error: cannot read the system prompt file: {exc}",
                file=sys.stderr,
            )
            return 1
    else:
        system_prompt = args.system_prompt if args.system_prompt is not None else SYSTEM_PROMPT
    try:
        teacher = teacher_from_args(args)
    except TeacherError as exc:
        print(f"omniad-train prepare: error: {exc}", file=sys.stderr)
        return 1
    try:
        prepare(
            args.output_dir,
            mmad_json=args.mmad_json,
            image_root=args.image_root,
            mvtec_root=args.mvtec_root,
            visa_root=args.visa_root,
            jsonl=args.jsonl,
            grid=args.grid,
            image_size=args.image_size,
            shots=args.shots,
            reference_from=args.reference_from,
            system_prompt=system_prompt,
            eval_fraction=args.eval_fraction,
            seed=args.seed,
            location_questions=not args.no_location_questions,
            question_types=args.question_types,
            max_per_category=args.max_per_category,
            mmad_max_per_category=args.mmad_max_per_category,
            max_records=args.max_records,
            question_writers=[teacher] if teacher is not None else [],
            allow_outside_root=args.allow_outside_root,
            overwrite=args.overwrite,
            verbose=not args.quiet,
        )
    except PrepareError as exc:
        print(f"omniad-train prepare: error: {exc}", file=sys.stderr)
        return 1
    return 0
