"""The ``omniad`` command line: inspect images with a model, encode and decode masks.

Exit codes: 0 success, 1 an input or model could not be used (the message says which
and how to fix it), 2 wrong usage, 130 interrupted (Ctrl-C).  Every error is one line,
``omniad COMMAND: error: ...``; set ``OMNIAD_TRACEBACK=1`` to see the traceback of an
unexpected one.

::

    omniad inspect part.png [--model ckpt/] [--reference good.png] [--question Q]
                            [--options Yes No] [--threads N] [--json] [--overlay out.png]
    omniad inspect part.png --endpoint http://127.0.0.1:8000/v1 --served-model NAME
                            [--api-key-env VAR] [--concurrency N] [--spec ckpt/]
    omniad encode mask.png [--grid 24|ROWSxCOLS] [--threshold 0] [--index-base 0]
    omniad decode "(3, 4)-(3, 6)" --shape 512 512 --out mask.png [--grid 24]
    omniad inspect DIR_OR_GLOB --out RESULTS [--model ckpt/ | --endpoint URL ...]   (a folder)
    omniad ui [--model ckpt/ | --endpoint URL ...] [--host 127.0.0.1] [--port 7860]
    omniad demo [--quick] [--out runs/demo] [--overwrite]

``omniad demo`` is ``omniad-train demo`` (synthetic data, SFT + GRPO, evaluation).  The
core never imports the training layer: commands of other layers are found through the
``omniad.commands`` entry-point group, which the training layer fills in.

Every option is spelled ``--flag-name`` and ``--flag_name``.  ``omniad --help`` and each
command's ``--help`` load neither torch nor the codec (``tests/test_first_hour.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omniad_core import _quiet
from omniad_core._cli_args import (
    add_endpoint_args,
    add_max_new_tokens,
    flag,
    one_line,
    reader_gone,
    unexpected_error_line,
)

__all__ = ["DEFAULT_OPTIONS", "PLUGIN_GROUP", "grid_arg", "main"]

#: What ``omniad --help`` says the tool is (plain text: argparse prints it as it is).
DESCRIPTION = (
    "Inspect images with an OmniAD model (a mask, reasoning and an answer), and encode or "
    "decode masks as text."
)
#: The options of ``omniad inspect --question Q`` given without ``--options``.
DEFAULT_OPTIONS = ("Yes", "No")
#: The grid of ``omniad encode`` and ``omniad decode`` when ``--grid`` is not given.
_CODEC_GRID = "24"

#: Entry-point group of ``omniad`` sub-commands that live in other layers or packages:
#: ``name = "module:function"``, the function taking the remaining argv, returning a code.
PLUGIN_GROUP = "omniad.commands"


class _Fail(Exception):
    """An error reported as one line on stderr with exit code 1."""


def grid_arg(text: str) -> Any:
    """An argparse ``type=`` for ``--grid``: ``N`` or ``ROWSxCOLS`` (:meth:`textmask.Grid.parse`).

    Every command line of the toolkit reads grids with it, so they share one syntax.
    """
    import textmask

    try:
        return textmask.Grid.parse(text)
    except textmask.TextMaskError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _grid(args: argparse.Namespace) -> Any:
    """The grid of ``omniad encode`` / ``decode``: the flags, else 24 x 24, threshold 0, base 0."""
    import textmask

    grid = args.grid if args.grid is not None else grid_arg(_CODEC_GRID)
    try:
        return textmask.Grid.of(grid, threshold=args.threshold, index_base=args.index_base)
    except textmask.TextMaskError as exc:
        raise _Fail(str(exc)) from None


def _cmd_encode(args: argparse.Namespace) -> int:
    import textmask
    from omniad_core.images import ImageError, NotAMaskError, load_mask

    grid = _grid(args)
    _not_a_folder(args.mask, "mask", "pass a mask image file")
    try:  # "any non-zero" on the raw values, at any bit depth; a photo is refused
        mask = load_mask(args.mask, refuse_photo=not args.any_nonzero)
        text = textmask.encode(mask, grid)
    except NotAMaskError as exc:
        raise _Fail(f"{exc} (or pass --any-nonzero to count its every non-zero pixel)") from None
    except (ImageError, textmask.TextMaskError) as exc:
        raise _Fail(str(exc)) from None
    print(text)
    return 0


def _not_a_folder(path: str | None, label: str, fix: str) -> None:
    if path is not None and Path(path).expanduser().is_dir():
        raise _Fail(f"{label} {path} is a folder; {fix}")


def _cmd_decode(args: argparse.Namespace) -> int:
    import textmask
    from omniad_core.images import ImageError, check_output_path, max_image_pixels, save_mask

    grid = _grid(args)
    try:
        check_output_path(args.out, lossless=True)  # before any work
        h, w = args.shape
        limit = max_image_pixels()
        if h > 0 and w > 0 and h * w > limit:
            raise _Fail(
                f"--shape {h} {w} is {h * w:,} pixels, more than the image limit of {limit:,}; "
                "give the size of a real image (raise the limit with OMNIAD_MAX_IMAGE_PIXELS)"
            )
        text = sys.stdin.read() if args.text == "-" else args.text
        mask, rep = textmask.decode(
            text, grid, shape=tuple(args.shape), strict=args.strict, report=True
        )
        out = save_mask(mask, args.out)
    except (ImageError, textmask.TextMaskError) as exc:
        raise _Fail(str(exc)) from None
    note = (
        ""
        if rep.clean
        else f" ({rep.chars_skipped} characters skipped, {rep.cells_dropped} cells outside the grid)"
    )
    print(f"wrote {out} ({int(mask.sum())} anomalous pixels){note}", file=sys.stderr)
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    """One image: the collector is paused throughout (``docs/speed.md``: the imports and
    the first answer create millions of objects and little garbage)."""
    from omniad_core.backends.local import collector_paused

    with collector_paused():
        return _inspect_one(args)


def _inspect_one(args: argparse.Namespace) -> int:
    from omniad_core.images import ImageError, check_output_path, load_image

    folder_fix = "pass an image file (folder inspection: omniad inspect DIR --out DIR)"
    _not_a_folder(args.image, "image", folder_fix)
    _not_a_folder(args.reference, "reference", "pass one normal image file")
    for label, p in (("image", args.image), ("reference", args.reference)):
        if p is not None and not Path(p).expanduser().is_file():
            raise _Fail(f"{label} file not found: {p} (relative to {os.getcwd()})")
    try:
        if args.overlay:
            check_output_path(args.overlay)
    except ImageError as exc:
        raise _Fail(str(exc)) from None
    _check_threads(args.threads)
    if args.endpoint is not None or args.served_model is not None:
        return _inspect_endpoint(args)
    if args.api_key_env is not None or args.spec is not None:
        raise _Fail("--api-key-env and --spec go with --endpoint URL --served-model NAME")
    from omniad_core.checkpoint import MissingPackageError, load_spec
    from omniad_core.inspector import CheckpointError, check_checkpoint, check_model_location

    demo = None
    if args.model is None:
        from omniad_core.inspector import demo_model_path

        demo = demo_model_path()
        if demo is None:
            raise _Fail(
                "no model: pass --model PATH (a checkpoint folder with safetensors weights)"
            )
        args.model = str(demo)
    try:  # every argument is checked before any image is decoded or weight loaded
        check_model_location(args.model)
    except FileNotFoundError as exc:
        raise _Fail(f"--model: {exc}") from None
    model = Path(args.model).expanduser()
    if not model.is_dir():
        raise _Fail(f"--model {args.model}: no such checkpoint folder")
    try:
        check_checkpoint(model)
        spec = load_spec(model)
    except (OSError, ValueError) as exc:
        raise _Fail(f"--model {args.model}: {exc}") from None
    grid, grid_source = _grid_flags(args, spec)
    try:
        image = load_image(args.image)
        reference = None if args.reference is None else load_image(args.reference)
    except ImageError as exc:
        raise _Fail(str(exc)) from None
    if demo is not None:
        print(
            "omniad inspect: using the embedded demo model, trained by `omniad demo` on "
            "synthetic defects only (not for real inspection); pass --model PATH to use "
            "real weights",
            file=sys.stderr,
        )
    from omniad_core.inspector import Inspector

    kwargs: dict[str, Any] = {"max_new_tokens": args.max_new_tokens}
    if grid is not None:
        kwargs["grid"] = grid
    if args.threads is not None:
        kwargs["num_threads"] = args.threads
    try:
        insp = Inspector.from_pretrained(model, **kwargs)
    except (OSError, ValueError, CheckpointError, MissingPackageError) as exc:
        raise _Fail(f"cannot load the model from {model}: {exc}") from None
    return _run_inspect(insp, image, reference, args, grid_source)


def _check_threads(value: str | None) -> None:
    if value is None:
        return
    from omniad_core.backends.threads import parse_threads

    try:
        parse_threads(value, "--threads")
    except ValueError as exc:
        raise _Fail(str(exc)) from None


def _grid_flags(args: argparse.Namespace, spec: dict[str, Any] | None) -> tuple[Any, str]:
    """The grid of the flags (None: the checkpoint's) and its source; warns on a contradiction."""
    from omniad_core.overrides import resolve_grid

    try:
        grid, warning, source = resolve_grid(spec, args.grid, args.threshold, args.index_base)
    except ValueError as exc:
        raise _Fail(str(exc)) from None
    if warning is not None:
        print(f"omniad {args.command}: WARNING: {warning}", file=sys.stderr)
    return grid, source


def _inspect_endpoint(args: argparse.Namespace) -> int:
    """``omniad inspect --endpoint``: every setting and the server checked before any work."""
    import warnings

    from omniad_core.backends import EndpointError
    from omniad_core.backends.endpoint import served_spec
    from omniad_core.images import ImageError, load_image
    from omniad_core.inspector import Inspector

    if args.endpoint is None or args.served_model is None:
        raise _Fail("--endpoint URL and --served-model NAME go together; give both")
    if args.model is not None:
        raise _Fail(
            "--model loads weights in this process; with --endpoint the server runs the "
            "model: give --spec PATH for the served checkpoint's omniad.json instead"
        )
    if args.threads is not None:
        raise _Fail("--threads sets this process's CPU threads; a served model runs elsewhere")
    try:
        spec = served_spec(args.served_model, args.spec)
    except (OSError, ValueError) as exc:
        raise _Fail(str(exc)) from None
    grid, grid_source = _grid_flags(args, spec)
    kwargs: dict[str, Any] = {"max_new_tokens": args.max_new_tokens}
    if grid is not None:
        kwargs["grid"] = grid
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            insp = Inspector.from_endpoint(
                args.endpoint,
                args.served_model,
                api_key_env=args.api_key_env,
                concurrency=args.concurrency,
                spec=args.spec,
                **kwargs,
            )
        except (EndpointError, OSError, ValueError) as exc:
            raise _Fail(str(exc)) from None
    for w in caught:
        print(f"omniad inspect: warning: {one_line(str(w.message))}", file=sys.stderr)
    try:
        image = load_image(args.image)
        reference = None if args.reference is None else load_image(args.reference)
    except ImageError as exc:
        raise _Fail(str(exc)) from None
    return _run_inspect(insp, image, reference, args, grid_source)


def _question_and_options(args: argparse.Namespace) -> tuple[Any, Any, str]:
    """``(question, options, where the options came from)`` of ``omniad inspect``.

    No ``--question``: the default defect question, with ``--options`` or Yes / No.  A
    ``--question`` without ``--options`` gets Yes / No too (the model answers with an
    option letter; the output says the options were the default).
    """
    from omniad_core.prompts import DEFECT_QUESTION

    question = args.question if args.question else DEFECT_QUESTION
    if args.options:
        return question, list(args.options), "given"
    return question, list(DEFAULT_OPTIONS), "default"


def _run_inspect(
    insp: Any, image: Any, reference: Any, args: argparse.Namespace, grid_source: str
) -> int:
    from omniad_core.images import ImageError, save_image

    question, options, options_source = _question_and_options(args)
    try:
        result = insp.analyze(image, question, options, reference)
        if result.error is not None:
            raise _Fail(f"the server did not answer: {result.error}")
        if args.overlay:
            save_image(result.overlay(), args.overlay)
    except (ImageError, ValueError) as exc:
        raise _Fail(str(exc)) from None
    d = result.to_dict()
    about = insp.describe()
    about["settings_source"]["grid"] = grid_source
    lettered = {chr(ord("A") + k): text for k, text in enumerate(options)}
    d.update(about, options=lettered, options_source=options_source)
    if args.json:
        print(json.dumps(d, indent=2, ensure_ascii=False))
        return 0
    g = about["grid"]
    h, w = d["image_size_hw"]
    chosen = lettered.get(d["answer"] or "")
    shown = " / ".join(f"{k}. {v}" for k, v in lettered.items())
    note = " (the default: pass --options to change them)" if options_source == "default" else ""
    print(f"question : {question}")
    print(f"options  : {shown}{note}")
    print(f"answer   : {d['answer']}")
    if chosen:
        print(f"chosen   : {chosen}")
    print(f"anomalous: {'yes' if d['is_anomalous'] else 'no'} ({d['anomalous_pixels']} pixels)")
    print(f"seg      : {d['seg'] or '(none)'}")
    print(f"think    : {(d['think'] or '').strip()}")
    if d["problems"]:
        print(f"problems : {'; '.join(d['problems'])}")
    print(
        f"model    : {about['model']} (grid {g['rows']}x{g['cols']}, index base "
        f"{g['index_base']}: {grid_source}; image {h}x{w} H x W)"
    )
    if args.overlay:
        print(f"overlay  : {args.overlay}")
    return 0


def _parser() -> argparse.ArgumentParser:
    """The parser; building it imports nothing heavy (no codec, no torch)."""
    p = argparse.ArgumentParser(prog="omniad", description=DESCRIPTION)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def grid_args(sp: argparse.ArgumentParser, checkpoint: bool) -> None:
        if checkpoint:
            grid_help = (
                "the grid the seg is read on, e.g. 24 or 16x32 (default: the checkpoint's "
                "omniad.json, 24 if it has none; a value that contradicts omniad.json is "
                "warned about: the masks would be wrong)"
            )
            thr_help = (
                "cell labelling threshold, overriding only that field of the checkpoint's "
                "grid (default: the checkpoint's; it does not change how a seg is read)"
            )
            base_help = (
                "0 or 1, the number of the first row and column, overriding only that field "
                "of the checkpoint's grid (default: the checkpoint's)"
            )
        else:
            grid_help = f"grid size, e.g. 24 or 16x32 (default {_CODEC_GRID})"
            thr_help = (
                "a cell is anomalous when more than this fraction of its pixels is "
                "(default 0: any pixel)"
            )
            base_help = "0 or 1, the number of the first row and column (default 0)"
        sp.add_argument("--grid", type=grid_arg, metavar="N|ROWSxCOLS", help=grid_help)
        sp.add_argument("--threshold", type=float, metavar="F", help=thr_help)
        sp.add_argument(
            *flag("index-base"), dest="index_base", type=int, choices=(0, 1), help=base_help
        )

    for name, help_text in _plugin_help().items():
        sub.add_parser(name, help=help_text, add_help=False)
    # `ui` has its own parser (omniad_core.ui.ui_main); listed here for `omniad --help`
    sub.add_parser("ui", help="a web page to inspect images (needs omniad[ui])", add_help=False)
    sp = sub.add_parser(
        "inspect",
        help="analyze an image with a model",
        description="Ask a model about one image: a mask, its reasoning and an answer.",
    )
    sp.add_argument("image", help="the image file to inspect")
    sp.add_argument(
        "--model",
        metavar="PATH",
        help="checkpoint folder (safetensors weights); default: the embedded demo model "
        "(omniad_core.demo_model_path())",
    )
    sp.add_argument(
        "--reference", metavar="PATH", help="a normal image of the same category (1-shot)"
    )
    sp.add_argument(
        "--question",
        help='the question (default: "Is there any defect in the object?"); the model '
        "answers with an option letter, so a question without --options gets Yes / No",
    )
    sp.add_argument(
        "--options",
        nargs="+",
        metavar="TEXT",
        help="option texts, lettered A, B, ... (default: Yes No); with or without --question",
    )
    grid_args(sp, checkpoint=True)
    sp.add_argument(
        "--threads",
        metavar="N",
        help="CPU threads for generation: N, 0 (torch's setting) or auto (default: "
        "$OMNIAD_NUM_THREADS, else 1 for a model under 20M parameters, torch's setting for "
        "a larger one; docs/speed.md)",
    )
    sp.add_argument("--json", action="store_true", help="print the result as JSON")
    sp.add_argument("--overlay", metavar="PNG", help="write the mask over the image to this file")
    add_max_new_tokens(sp)
    add_endpoint_args(sp)
    sp.set_defaults(func=_cmd_inspect)

    sp = sub.add_parser(
        "encode",
        help="print the seg text of a mask image",
        description="Print the seg text of a mask image (0 = normal, non-zero = anomalous).",
    )
    sp.add_argument("mask", help="the mask image file (0 where normal, non-zero where anomalous)")
    grid_args(sp, checkpoint=False)
    sp.add_argument(
        *flag("any-nonzero"),
        dest="any_nonzero",
        action="store_true",
        help="encode a colour photo-like file anyway, every non-zero pixel anomalous (it "
        "is refused by default: a photo is not a mask)",
    )
    sp.set_defaults(func=_cmd_encode)

    sp = sub.add_parser(
        "decode",
        help="write the mask of a seg text as a PNG",
        description="Write the mask of a seg text as an image (0 / 255).",
    )
    sp.add_argument("text", help="seg text, or - to read it from stdin")
    sp.add_argument(
        "--shape",
        type=int,
        nargs=2,
        required=True,
        metavar=("H", "W"),
        help="the image's height and width in pixels (inspect --json: image_size_hw)",
    )
    sp.add_argument("--out", required=True, metavar="PNG", help="output image path (lossless)")
    sp.add_argument("--strict", action="store_true", help="accept canonical text only")
    grid_args(sp, checkpoint=False)
    sp.set_defaults(func=_cmd_decode)
    return p


def _plugins() -> dict[str, Any]:
    """The entry points of :data:`PLUGIN_GROUP`, by command name."""
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=PLUGIN_GROUP)}


#: One-line help of the plugin commands this distribution registers, so ``omniad --help``
#: lists them without loading a training-layer module.
_KNOWN_PLUGINS = {"demo": "train and evaluate a small model on synthetic defects (--help)"}


def _plugin_help() -> dict[str, str]:
    return {name: _KNOWN_PLUGINS.get(name, f"from {ep.value}") for name, ep in _plugins().items()}


def _run_plugin(name: str, ep: Any, argv: list[str]) -> int:
    try:
        func = ep.load()
    except ImportError as exc:
        print(
            f"omniad {name}: error: this command needs the training extras ({exc}); "
            "install them with: pip install 'omniad[all]'",
            file=sys.stderr,
        )
        return 1
    return int(func(argv))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code.

    Run as the ``omniad`` program (``argv`` None), the objects left when the command ends
    are frozen out of the garbage collector (:func:`gc.freeze`): the interpreter then
    exits without a final pass over the millions that torch and transformers created
    (about 1 s; ``docs/speed.md``).
    """
    try:
        code = _main(argv)
    except BrokenPipeError:  # `omniad --help | head`: the reader went away
        return reader_gone()
    if argv is None:
        import gc

        gc.freeze()
    return code


def _main(argv: Sequence[str] | None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] in (["ui"], ["inspect"]):  # known library noise only, by exact message
        _quiet.quiet_known_noise()
    if args_list[:1] == ["ui"]:
        from omniad_core.ui import ui_main

        return int(ui_main(args_list[1:]))
    if args_list[:1] == ["inspect"]:
        from omniad_core.folder import folder_main

        # a folder run needs --out; without it a folder gets the "is a folder" hint below
        if any(a == "--out" or a.startswith("--out=") for a in args_list[1:]):
            return int(folder_main(args_list[1:]))
    plugins = _plugins() if args_list and not args_list[0].startswith("-") else {}
    if args_list and args_list[0] in plugins:
        return _run_plugin(args_list[0], plugins[args_list[0]], args_list[1:])
    parser = _parser()
    args = parser.parse_args(args_list)
    try:
        return int(args.func(args))
    except _Fail as exc:
        print(f"omniad {args.command}: error: {one_line(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"omniad {args.command}: interrupted (Ctrl-C)", file=sys.stderr)
        return 130
    except Exception as exc:  # never a library traceback for the user
        print(unexpected_error_line(f"omniad {args.command}", exc), file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
