"""The ``omniad`` command line: inspect images with a model, encode and decode masks.

Exit codes: 0 success, 1 an input or model could not be used (the message says which
and how to fix it), 2 wrong usage, 130 interrupted (Ctrl-C).  Every error is one line,
``omniad COMMAND: error: ...``; set ``OMNIAD_TRACEBACK=1`` to see the traceback of an
unexpected one.

::

    omniad inspect part.png --model ckpt/ [--reference good.png] [--question Q --options Yes No]
                            [--json] [--overlay out.png]
    omniad inspect part.png --endpoint http://127.0.0.1:8000/v1 --served-model NAME
                            [--api-key-env VAR] [--concurrency N] [--spec ckpt/]
    omniad encode mask.png [--grid 24|ROWSxCOLS] [--threshold 0] [--index-base 0]
    omniad decode "(3, 4)-(3, 6)" --shape 512 512 --out mask.png [--grid 24]
    omniad demo [--quick] [--out runs/demo] [--overwrite]

``omniad demo`` is ``omniad-train demo`` (synthetic data, SFT + GRPO, evaluation).  The
core never imports the training layer: commands of other layers are found through the
``omniad.commands`` entry-point group, which the training layer fills in.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["PLUGIN_GROUP", "grid_arg", "main"]

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
    import textmask

    try:
        return textmask.Grid.of(args.grid, threshold=args.threshold, index_base=args.index_base)
    except textmask.TextMaskError as exc:
        raise _Fail(str(exc)) from None


def _cmd_encode(args: argparse.Namespace) -> int:
    import textmask
    from omniad_core.images import ImageError, load_mask

    grid = _grid(args)
    try:
        mask = load_mask(args.mask)  # "any non-zero" on the raw values, at any bit depth
        text = textmask.encode(mask, grid)
    except (ImageError, textmask.TextMaskError) as exc:
        raise _Fail(str(exc)) from None
    print(text)
    return 0


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
    from omniad_core.images import ImageError, check_output_path, load_image

    for label, p in (("image", args.image), ("reference", args.reference)):
        if p is not None and not Path(p).is_file():
            raise _Fail(f"{label} file not found: {p}")
    if args.options and not args.question:
        raise _Fail("--options needs --question")
    try:
        if args.overlay:
            check_output_path(args.overlay)
    except ImageError as exc:
        raise _Fail(str(exc)) from None
    if args.endpoint is not None or args.served_model is not None:
        return _inspect_endpoint(args)
    if args.api_key_env is not None or args.spec is not None:
        raise _Fail("--api-key-env and --spec go with --endpoint URL --served-model NAME")
    from omniad_core.checkpoint import MissingPackageError
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
    except (OSError, ValueError) as exc:
        raise _Fail(f"--model {args.model}: {exc}") from None
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
    if args.grid is not None:
        kwargs["grid"] = _grid(args)
    try:
        insp = Inspector.from_pretrained(model, **kwargs)
    except (OSError, ValueError, CheckpointError, MissingPackageError) as exc:
        raise _Fail(f"cannot load the model from {model}: {exc}") from None
    return _run_inspect(insp, image, reference, args)


def _inspect_endpoint(args: argparse.Namespace) -> int:
    """``omniad inspect --endpoint``: every setting and the server checked before any work."""
    import warnings

    from omniad_core.backends import EndpointError
    from omniad_core.images import ImageError, load_image
    from omniad_core.inspector import Inspector

    if args.endpoint is None or args.served_model is None:
        raise _Fail("--endpoint URL and --served-model NAME go together; give both")
    if args.model is not None:
        raise _Fail(
            "--model loads weights in this process; with --endpoint the server runs the "
            "model: give --spec PATH for the served checkpoint's omniad.json instead"
        )
    kwargs: dict[str, Any] = {"max_new_tokens": args.max_new_tokens}
    if args.grid is not None:
        kwargs["grid"] = _grid(args)
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
        print(f"omniad inspect: warning: {_one_line(str(w.message))}", file=sys.stderr)
    try:
        image = load_image(args.image)
        reference = None if args.reference is None else load_image(args.reference)
    except ImageError as exc:
        raise _Fail(str(exc)) from None
    return _run_inspect(insp, image, reference, args)


def _run_inspect(insp: Any, image: Any, reference: Any, args: argparse.Namespace) -> int:
    from omniad_core.images import ImageError, save_image

    try:
        result = insp.analyze(image, args.question, args.options or None, reference)
        if result.error is not None:
            raise _Fail(f"the server did not answer: {result.error}")
        if args.overlay:
            save_image(result.overlay(), args.overlay)
    except (ImageError, ValueError) as exc:
        raise _Fail(str(exc)) from None
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
    else:
        d = result.to_dict()
        print(f"question : {d['question']}")
        print(f"answer   : {d['answer']}")
        print(f"anomalous: {'yes' if d['is_anomalous'] else 'no'} ({d['anomalous_pixels']} pixels)")
        print(f"seg      : {d['seg'] or '(none)'}")
        print(f"think    : {(d['think'] or '').strip()}")
        if d["problems"]:
            print(f"problems : {'; '.join(d['problems'])}")
        if args.overlay:
            print(f"overlay  : {args.overlay}")
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="omniad", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    def grid_args(sp: argparse.ArgumentParser, default: str | None) -> None:
        sp.add_argument(
            "--grid",
            type=grid_arg,
            default=None if default is None else grid_arg(default),
            metavar="N|ROWSxCOLS",
            help="grid size, e.g. 24 or 16x32 (default: "
            + (default if default is not None else "the checkpoint's")
            + ")",
        )
        sp.add_argument("--threshold", type=float, default=0.0, help="cell labelling threshold")
        sp.add_argument("--index-base", type=int, default=0, choices=(0, 1))

    for name, help_text in _plugin_help().items():
        sub.add_parser(name, help=help_text, add_help=False)
    sp = sub.add_parser("inspect", help="analyze an image with a model")
    sp.add_argument("image")
    sp.add_argument(
        "--model", help="checkpoint folder (safetensors weights); default: the embedded demo model"
    )
    sp.add_argument("--reference", help="a normal image of the same category (1-shot)")
    sp.add_argument("--question", help='default: "Is there any defect in the object?"')
    sp.add_argument("--options", nargs="+", help="option texts, lettered A, B, ...")
    sp.add_argument("--json", action="store_true", help="print the result as JSON")
    sp.add_argument("--overlay", help="write the mask over the image to this PNG")
    sp.add_argument(
        "--max-new-tokens",
        "--max_new_tokens",
        dest="max_new_tokens",
        type=int,
        default=1024,
        help="generation budget (default 1024: a large 24x24 mask alone is 300-600 tokens)",
    )
    ep = sp.add_argument_group("served model (an OpenAI-compatible server; docs/serving.md)")
    ep.add_argument(
        "--endpoint", dest="endpoint", metavar="URL",
        help="the server's API root, e.g. http://127.0.0.1:8000/v1 (instead of --model)",
    )  # fmt: skip
    ep.add_argument(
        "--served-model", "--served_model", dest="served_model", metavar="NAME",
        help="the model name the server lists at GET /v1/models",
    )  # fmt: skip
    ep.add_argument(
        "--api-key-env", "--api_key_env", dest="api_key_env", metavar="VAR",
        help="environment variable holding the API key (the key is never a command-line value)",
    )  # fmt: skip
    ep.add_argument(
        "--concurrency", type=_positive_int, default=8, metavar="N",
        help="requests in flight at once (default 8)",
    )  # fmt: skip
    ep.add_argument(
        "--spec", metavar="PATH",
        help="the served checkpoint's folder or omniad.json (grid, image size, system prompt)",
    )  # fmt: skip
    grid_args(sp, None)
    sp.set_defaults(func=_cmd_inspect)

    sp = sub.add_parser("encode", help="print the seg text of a mask image")
    sp.add_argument("mask")
    grid_args(sp, "24")
    sp.set_defaults(func=_cmd_encode)

    sp = sub.add_parser("decode", help="write the mask of a seg text as a PNG")
    sp.add_argument("text", help="seg text, or - to read it from stdin")
    sp.add_argument("--shape", type=int, nargs=2, required=True, metavar=("H", "W"))
    sp.add_argument("--out", required=True, help="output PNG path")
    sp.add_argument("--strict", action="store_true", help="accept canonical text only")
    grid_args(sp, "24")
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
    """Run the command line; returns the exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    plugins = _plugins() if args_list and not args_list[0].startswith("-") else {}
    if args_list and args_list[0] in plugins:
        return _run_plugin(args_list[0], plugins[args_list[0]], args_list[1:])
    parser = _parser()
    args = parser.parse_args(args_list)
    try:
        return int(args.func(args))
    except _Fail as exc:
        print(f"omniad {args.command}: error: {_one_line(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"omniad {args.command}: interrupted (Ctrl-C)", file=sys.stderr)
        return 130
    except Exception as exc:  # never a library traceback for the user
        if os.environ.get("OMNIAD_TRACEBACK", "").strip() not in ("", "0"):
            raise
        print(
            f"omniad {args.command}: error: unexpected {type(exc).__name__}: "
            f"{_one_line(str(exc))} (run again with OMNIAD_TRACEBACK=1 to see where)",
            file=sys.stderr,
        )
        return 1


def _one_line(text: str) -> str:
    """``text`` on one line (library messages may hold newlines), at most 2000 chars."""
    flat = " ".join(text.split())
    return flat if len(flat) <= 2000 else flat[:1997] + "..."


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
