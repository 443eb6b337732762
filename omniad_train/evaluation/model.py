"""The model a run uses: its settings known before loading, the checks, the load.

:func:`model_settings` goes into the run's fingerprint (so a resumed run is checked
without loading anything); :func:`load_inspector` is called only when a batch needs the
model.  torch is imported by the load only.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from omniad_core.checkpoint import (
    DEFAULT_GRID,
    DEFAULT_IMAGE_SIZE,
    check_model_location,
    checkpoint_spec,
    resolve_settings,
)
from omniad_core.inspector import GREEDY, Inspector, default_placement
from omniad_train.evaluation.runfiles import sha256_text

__all__ = ["DEFAULT_SETTINGS", "check_model", "default_device", "load_inspector", "model_settings"]

log = logging.getLogger("omniad.evaluation")

#: Settings of a checkpoint whose ``omniad.json`` does not give them.
DEFAULT_SETTINGS = {
    "grid": DEFAULT_GRID,
    "image_size": DEFAULT_IMAGE_SIZE,
    "max_new_tokens": 1024,  # a large or fragmented 24x24 mask is 300-600 tokens
    "layout": "lines",
}

_LOAD_OPTIONS = ("grid", "image_size", "max_new_tokens", "layout", "system_prompt")


def model_settings(model: Any, overrides: dict[str, Any]) -> dict[str, Any]:
    """The settings a model will run with, known before loading it (for the fingerprint).

    ``model`` is a checkpoint path / hub id (its ``omniad.json`` is read if present) or
    an :class:`~omniad_core.Inspector`.
    """
    if isinstance(model, Inspector):
        gen = {  # the pins every Inspector applies (GREEDY) are implied, as for a path
            k: v
            for k, v in model.generation_kwargs.items()
            if isinstance(v, (int, float, str, bool))
            and not (k in GREEDY and k != "do_sample" and GREEDY[k] == v)
        }
        name = getattr(getattr(model.model, "config", None), "_name_or_path", None)
        if name and Path(name).exists():
            name = str(Path(name).resolve())  # as for a path argument: resumable either way
        return {
            "model": str(name) if name else f"<{type(model.model).__name__} instance>",
            "grid": model.grid.to_dict(),
            "image_size": model.image_size,
            "system_prompt_sha256": sha256_text(model.system_prompt),
            "layout": model.layout,
            "generation": gen,
        }
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(
            f"model must be a checkpoint path or an omniad_core.Inspector, got {type(model).__name__}"
        )
    path = Path(model)
    given = {k: v for k, v in overrides.items() if v is not None}
    resolved = resolve_settings(
        checkpoint_spec(model),
        **{k: given[k] for k in ("grid", "image_size", "system_prompt") if k in given},
    )
    grid, prompt = resolved.grid, resolved.system_prompt
    gen: dict[str, Any] = {
        "max_new_tokens": int(given.get("max_new_tokens", DEFAULT_SETTINGS["max_new_tokens"])),
        "do_sample": False,
    }
    settings = {
        "model": str(path.resolve()) if path.exists() else str(model),
        "grid": grid.to_dict(),
        "image_size": resolved.image_size,
        "system_prompt_sha256": sha256_text(prompt),
        "layout": given.get("layout", DEFAULT_SETTINGS["layout"]),
        "generation": gen,
    }
    if given.get("dtype") is not None:
        settings["dtype"] = str(given["dtype"])
    return settings


def check_model(model: Any) -> None:
    """Fail at once, before any work, on a model argument that cannot be loaded.

    A path-like argument (``runs/omniad-7b``, ``./ckpt``) that does not exist raises
    FileNotFoundError with a one-line message, instead of being tried as a hub id
    (:func:`omniad_core.inspector.check_model_location`); an Inspector passes as is.
    """
    if isinstance(model, (str, os.PathLike)):
        check_model_location(model)


def default_device() -> str:
    """``cuda:$LOCAL_RANK`` when CUDA is available (one shard per GPU), else ``cpu``:
    :func:`omniad_core.inspector.default_placement` with this machine's flags."""
    import torch

    try:
        rank = int(os.environ.get("LOCAL_RANK", "0") or 0)
    except ValueError:
        rank = 0
    return default_placement(cuda_available=torch.cuda.is_available(), local_rank=rank)[0]


def load_inspector(model: Any, overrides: dict[str, Any], device: str | None = None) -> Any:
    """An Inspector: ``model`` itself, or loaded from a checkpoint path with ``overrides``.

    Device and dtype default as :meth:`Inspector.from_pretrained`'s: straight onto
    ``cuda:$LOCAL_RANK`` in bfloat16 when CUDA is available, the CPU in float32 otherwise.
    """
    if isinstance(model, Inspector):
        return model
    import torch

    kwargs = {k: v for k, v in overrides.items() if v is not None and k in _LOAD_OPTIONS}
    dtype = overrides.get("dtype")
    if isinstance(dtype, str):
        if not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise ValueError(f"unknown dtype {dtype!r}; use float32, bfloat16 or float16")
        dtype = getattr(torch, dtype)
    log.info("loading %s", model)
    return Inspector.from_pretrained(model, device=device, dtype=dtype, **kwargs)
