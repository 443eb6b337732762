"""The Inspector a command line or the page asks for (a checkpoint, a server, the demo)."""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omniad_core.folder.common import (
    DEMO_NOTICE,
    FolderRunError,
)
from omniad_core.folder.run import (
    model_label,
)

__all__ = ["LoadedModel", "demo_notice", "load_from_args", "load_inspector"]


# ----------------------------------------------------------------------- the models
@dataclass
class LoadedModel:
    """An Inspector and what to say about it: ``label`` (:func:`model_label`),
    ``is_demo`` (the embedded demo model), ``notes`` (warnings and notices to show)."""

    inspector: Any
    label: str
    is_demo: bool
    notes: list[str] = field(default_factory=list)


def demo_notice() -> str:
    """:data:`DEMO_NOTICE` with the categories the embedded model was trained on."""
    from omniad_core.checkpoint import demo_model_path

    cats = "fabric, leather, tile, wood"
    path = demo_model_path()
    with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
        plan = json.loads((Path(path) / "demo_plan.json").read_text(encoding="utf-8"))  # type: ignore[arg-type]
        cats = ", ".join(str(c) for c in plan["categories"]) or cats
    return DEMO_NOTICE.format(categories=cats)


def load_from_args(args: Any) -> LoadedModel:
    """:func:`load_inspector` for parsed command-line arguments: ``--model`` or the
    served-model options of :func:`omniad_core._cli_args.add_endpoint_args`,
    ``--max-new-tokens`` and, when the command has it, ``--grid``."""
    return load_inspector(
        args.model,
        endpoint=args.endpoint,
        served_model=args.served_model,
        api_key_env=args.api_key_env,
        spec=args.spec,
        concurrency=args.concurrency,
        max_new_tokens=args.max_new_tokens,
        grid=getattr(args, "grid", None),
    )


def load_inspector(
    model: str | os.PathLike[str] | None = None,
    *,
    endpoint: str | None = None,
    served_model: str | None = None,
    api_key_env: str | None = None,
    spec: str | None = None,
    concurrency: int = 8,
    max_new_tokens: int = 1024,
    grid: Any = None,
) -> LoadedModel:
    """The Inspector a command line asks for: ``--model PATH``, ``--endpoint URL
    --served-model NAME``, or the embedded demo model when neither is given.

    Every argument and the checkpoint (or the server) is checked before any weights
    load; problems are a :class:`FolderRunError` of one line.
    """
    kwargs: dict[str, Any] = {"max_new_tokens": int(max_new_tokens)}
    if grid is not None:
        kwargs["grid"] = grid
    if endpoint is not None or served_model is not None:
        return _load_endpoint(model, endpoint, served_model, api_key_env, spec, concurrency, kwargs)
    if api_key_env is not None or spec is not None:
        raise FolderRunError("--api-key-env and --spec go with --endpoint URL --served-model NAME")
    from omniad_core.checkpoint import (
        CheckpointError,
        MissingPackageError,
        check_checkpoint,
        check_model_location,
        demo_model_path,
    )

    is_demo = model is None
    if model is None:
        model = demo_model_path()
        if model is None:
            raise FolderRunError(
                "no model: pass --model PATH (a checkpoint folder with safetensors weights)"
            )
    try:
        check_model_location(model)
    except FileNotFoundError as exc:
        raise FolderRunError(f"--model: {exc}") from None
    path = Path(model).expanduser()
    if not path.is_dir():
        raise FolderRunError(f"--model {os.fspath(model)}: no such checkpoint folder")
    try:
        check_checkpoint(path)
    except (OSError, ValueError) as exc:
        raise FolderRunError(f"--model {os.fspath(model)}: {exc}") from None
    from omniad_core.inspector import Inspector

    try:
        insp = Inspector.from_pretrained(path, **kwargs)
    except (OSError, ValueError, CheckpointError, MissingPackageError) as exc:
        raise FolderRunError(f"cannot load the model from {path}: {exc}") from None
    notes = [demo_notice()] if is_demo else []
    label = "embedded demo model" if is_demo else model_label(insp)
    return LoadedModel(insp, label, is_demo, notes)


def _load_endpoint(
    model: Any,
    endpoint: Any,
    served_model: Any,
    api_key_env: Any,
    spec: Any,
    concurrency: int,
    kwargs: dict[str, Any],
) -> LoadedModel:
    from omniad_core.backends import EndpointError
    from omniad_core.inspector import Inspector

    if endpoint is None or served_model is None:
        raise FolderRunError("--endpoint URL and --served-model NAME go together; give both")
    if model is not None:
        raise FolderRunError(
            "--model loads weights in this process; with --endpoint the server runs the "
            "model: give --spec PATH for the served checkpoint's omniad.json instead"
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            insp = Inspector.from_endpoint(
                endpoint,
                served_model,
                api_key_env=api_key_env,
                concurrency=concurrency,
                spec=spec,
                **kwargs,
            )
        except (EndpointError, OSError, ValueError) as exc:
            raise FolderRunError(str(exc)) from None
    notes = [" ".join(str(w.message).split()) for w in caught]
    return LoadedModel(insp, model_label(insp), False, notes)
