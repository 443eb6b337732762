"""The model a run uses: its settings known before loading, the checks, the load.

:func:`model_settings` goes into the run's fingerprint (so a resumed run is checked
without loading anything); :func:`load_inspector` is called only when a batch needs the
model.  torch is imported by the load only.

A served model (:class:`Endpoint`: an OpenAI-compatible URL and the served model's
name) is the other kind of model: :func:`connect_endpoint` checks it before any work
(an unset key variable, an unreachable URL or a wrong model name is one
:class:`~omniad_core.backends.EndpointError`), its fingerprint holds the URL and the
served name (never the key), and its grid, image size and system prompt come from the
arguments or the defaults: there is no local ``omniad.json`` to read.
"""

from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omniad_core.backends import EndpointBackend, EndpointError, normalize_base_url
from omniad_core.backends.endpoint import served_spec
from omniad_core.checkpoint import (
    DEFAULT_GRID,
    DEFAULT_IMAGE_SIZE,
    FROM_CHECKPOINT,
    check_model_location,
    checkpoint_spec,
    resolve_settings,
)
from omniad_core.inspector import GREEDY, Inspector, default_placement
from omniad_train.evaluation.runfiles import sha256_text

__all__ = [
    "DEFAULT_CONCURRENCY",
    "DEFAULT_SETTINGS",
    "PROMPTS",
    "Endpoint",
    "RunModel",
    "as_endpoint",
    "check_model",
    "connect_endpoint",
    "default_device",
    "endpoint_concurrency",
    "load_inspector",
    "model_settings",
    "run_model",
    "runner_model",
]

log = logging.getLogger("omniad.evaluation")

#: Settings of a checkpoint whose ``omniad.json`` does not give them.
DEFAULT_SETTINGS = {
    "grid": DEFAULT_GRID,
    "image_size": DEFAULT_IMAGE_SIZE,
    "max_new_tokens": 1024,  # a large or fragmented 24x24 mask is 300-600 tokens
    "layout": "lines",
}

_LOAD_OPTIONS = ("grid", "image_size", "max_new_tokens", "layout", "system_prompt")

#: Requests in flight at once against one server by default: enough to fill the batch of
#: one vLLM / SGLang / transformers-serve process without queueing far ahead of it.
DEFAULT_CONCURRENCY = 8

#: How a question is asked: ``omniad`` (the checkpoint's system prompt: seg, think,
#: answer) or ``mmad`` (MMAD's way for a general model: no system turn, the question and
#: its options, "answer with the option's letter only").
PROMPTS = ("omniad", "mmad")


@dataclass(frozen=True)
class Endpoint:
    """A served model: an OpenAI-compatible chat endpoint and the name it serves.

    Attributes
    ----------
    url : str
        The API root, e.g. ``http://127.0.0.1:8000/v1`` (``/v1`` is added to a bare host).
    served_model : str
        The model's name as the server's ``GET /v1/models`` lists it.
    api_key_env : str, optional
        The environment variable holding the API key (never the key itself).
    concurrency : int
        Requests in flight at once.
    timeout, retries, backoff : float, int, float
        Seconds per request; further attempts after a 429 / 5xx / connection error, the
        first wait between them (doubled each time, jittered).
    spec : str, optional
        The served checkpoint's folder or its ``omniad.json`` (grid, image size, system
        prompt).  Without it, a served name that is a local checkpoint folder (as
        ``transformers serve`` names models) gives its ``omniad.json``; else the flags
        or the defaults hold, as :meth:`Inspector.from_endpoint` does.
    """

    url: str
    served_model: str
    api_key_env: str | None = None
    concurrency: int = DEFAULT_CONCURRENCY
    timeout: float = 300.0
    retries: int = 4
    backoff: float = 1.0
    spec: str | None = None

    def served_spec(self) -> dict[str, Any] | None:
        """The served checkpoint's ``omniad.json``, or None when there is none to read
        (FileNotFoundError for a ``spec`` that is not a checkpoint folder or its file)."""
        return served_spec(self.served_model, self.spec)

    @property
    def base_url(self) -> str:
        """The normalized API root (what the fingerprint records)."""
        return normalize_base_url(self.url)

    def backend(self) -> EndpointBackend:
        """The backend (reads the key variable; EndpointError when it is unset)."""
        return EndpointBackend(
            self.url,
            self.served_model,
            api_key_env=self.api_key_env,
            concurrency=self.concurrency,
            timeout=self.timeout,
            retries=self.retries,
            backoff=self.backoff,
        )


def connect_endpoint(endpoint: Endpoint) -> EndpointBackend:
    """The endpoint's backend, checked now, before any work: a key variable named but
    unset, an unreachable URL or a model name the server does not list raise
    :class:`~omniad_core.backends.EndpointError` with one line saying what to do."""
    _check_served_name(endpoint)
    backend = endpoint.backend()
    backend.check()
    return backend


def _check_served_name(endpoint: Endpoint) -> None:
    if not isinstance(endpoint.served_model, str) or not endpoint.served_model.strip():
        raise EndpointError(
            "an endpoint needs the served model's name (--served_model NAME, as the server's "
            "GET /v1/models lists it)"
        )


def endpoint_concurrency(model: Any, endpoint: Endpoint | None) -> int | None:
    """Requests in flight for a run: the endpoint's, an endpoint Inspector's, else None
    (in process: batched ``generate``)."""
    if endpoint is not None:
        return int(endpoint.concurrency)
    backend = getattr(model, "backend", None) if isinstance(model, Inspector) else None
    if isinstance(backend, EndpointBackend):
        return int(backend.concurrency)
    return None


def _endpoint_settings(endpoint: Endpoint, given: dict[str, Any], prompt: str) -> dict[str, Any]:
    _check_served_name(endpoint)  # before the name is read as a folder
    spec = endpoint.served_spec()
    resolved = resolve_settings(
        spec,
        **{k: given[k] for k in ("grid", "image_size") if k in given},
        system_prompt=None if prompt == "mmad" else given.get("system_prompt", FROM_CHECKPOINT),
    )
    return {
        "backend": "endpoint",
        "model": endpoint.served_model,
        "endpoint": endpoint.base_url,
        "grid": resolved.grid.to_dict(),
        "image_size": resolved.image_size,
        "system_prompt_sha256": sha256_text(resolved.system_prompt),
        "layout": given.get("layout", DEFAULT_SETTINGS["layout"]),
        "generation": {
            "max_new_tokens": int(given.get("max_new_tokens", DEFAULT_SETTINGS["max_new_tokens"])),
            "temperature": 0.0,
        },
        "prompt": prompt,
        "settings_source": {k: _served_source(v, spec) for k, v in resolved.source.items()},
    }


def _served_source(source: str, spec: dict[str, Any] | None) -> str:
    if source == "given":
        return "given"
    if spec is None:
        return "default (no omniad.json for the served model: pass --spec CHECKPOINT)"
    return source if source == "default" else "omniad.json of the served checkpoint"


def model_settings(
    model: Any,
    overrides: dict[str, Any],
    *,
    endpoint: Endpoint | None = None,
    prompt: str = "omniad",
) -> dict[str, Any]:
    """The settings a model will run with, known before loading it (for the fingerprint).

    ``model`` is a checkpoint path / hub id (its ``omniad.json`` is read if present) or
    an :class:`~omniad_core.Inspector`; with ``endpoint`` it is None and the settings
    are the served model's (URL and name, never the key).  ``prompt`` is one of
    :data:`PROMPTS`: ``mmad`` sends no system turn.  The ``omniad`` prompt adds nothing
    to the fingerprint of an in-process model (runs made before the option resume).
    """
    if prompt not in PROMPTS:
        raise ValueError(f"prompt must be one of {PROMPTS}, got {prompt!r}")
    given = {k: v for k, v in overrides.items() if v is not None}
    if endpoint is not None:
        if model is not None:
            raise ValueError("give a model or an endpoint, not both")
        return _endpoint_settings(endpoint, given, prompt)
    settings = _local_settings(model, given, prompt)
    if prompt != "omniad":
        settings["prompt"] = prompt
    return settings


def _local_settings(model: Any, given: dict[str, Any], prompt: str) -> dict[str, Any]:
    if isinstance(model, Inspector):
        backend = getattr(model, "backend", None)
        if isinstance(backend, EndpointBackend):
            return {
                "backend": "endpoint",
                "model": backend.model,
                "endpoint": backend.base_url,
                "grid": model.grid.to_dict(),
                "image_size": model.image_size,
                "system_prompt_sha256": sha256_text(
                    None if prompt == "mmad" else model.system_prompt
                ),
                "layout": model.layout,
                "generation": {
                    "max_new_tokens": int(model.generation_kwargs.get("max_new_tokens", 1024)),
                    "temperature": float(backend.temperature),
                },
            }
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
            "system_prompt_sha256": sha256_text(None if prompt == "mmad" else model.system_prompt),
            "layout": model.layout,
            "generation": gen,
        }
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(
            f"model must be a checkpoint path or an omniad_core.Inspector, got {type(model).__name__}"
        )
    path = Path(model)
    resolved = resolve_settings(
        checkpoint_spec(model),
        **{k: given[k] for k in ("grid", "image_size", "system_prompt") if k in given},
    )
    if prompt == "mmad":
        resolved = resolve_settings(
            None, grid=resolved.grid, image_size=resolved.image_size, system_prompt=None
        )
    grid, system = resolved.grid, resolved.system_prompt
    gen: dict[str, Any] = {
        "max_new_tokens": int(given.get("max_new_tokens", DEFAULT_SETTINGS["max_new_tokens"])),
        "do_sample": False,
    }
    settings = {
        "model": str(path.resolve()) if path.exists() else str(model),
        "grid": grid.to_dict(),
        "image_size": resolved.image_size,
        "system_prompt_sha256": sha256_text(system),
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


def load_inspector(
    model: Any,
    overrides: dict[str, Any],
    device: str | None = None,
    *,
    backend: EndpointBackend | None = None,
    prompt: str = "omniad",
    spec: dict[str, Any] | None = None,
) -> Any:
    """An Inspector: ``model`` itself, loaded from a checkpoint path with ``overrides``,
    or over a served model's ``backend`` (checked by :func:`connect_endpoint`) with the
    served checkpoint's ``spec`` (:attr:`RunModel.spec`; None: the flags or the defaults).

    Device and dtype default as :meth:`Inspector.from_pretrained`'s: straight onto
    ``cuda:$LOCAL_RANK`` in bfloat16 when CUDA is available, the CPU in float32 otherwise.
    ``prompt="mmad"`` sends no system turn (an Inspector passed in is copied, not changed).
    """
    kwargs = {k: v for k, v in overrides.items() if v is not None and k in _LOAD_OPTIONS}
    if prompt == "mmad":
        kwargs["system_prompt"] = None
    if backend is not None:
        settings = {k: kwargs[k] for k in ("grid", "image_size", "layout") if k in kwargs}
        return Inspector(
            None,
            None,
            backend=backend,
            spec=spec or {},  # the served checkpoint's omniad.json, else flags / defaults
            system_prompt=kwargs.get("system_prompt", FROM_CHECKPOINT),
            max_new_tokens=int(kwargs.get("max_new_tokens", DEFAULT_SETTINGS["max_new_tokens"])),
            **settings,
        )
    if isinstance(model, Inspector):
        if prompt == "mmad" and model.system_prompt is not None:
            model = copy.copy(model)
            model.system_prompt = None
        return model
    import torch

    dtype = overrides.get("dtype")
    if isinstance(dtype, str):
        if not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise ValueError(f"unknown dtype {dtype!r}; use float32, bfloat16 or float16")
        dtype = getattr(torch, dtype)
    log.info("loading %s", model)
    return Inspector.from_pretrained(model, device=device, dtype=dtype, **kwargs)


# --------------------------------------------------------------------------- a run's model
@dataclass
class RunModel:
    """The model side of a run, checked before any work.

    Attributes
    ----------
    settings : dict
        What the run's fingerprint records (:func:`model_settings`).
    backend : EndpointBackend or None
        A served model's checked backend (give it to :func:`load_inspector`).
    concurrency : int or None
        Requests in flight for a served model; None in process.
    spec : dict or None
        A served model's ``omniad.json`` (:meth:`Endpoint.served_spec`), if it has one.
    """

    settings: dict[str, Any]
    backend: EndpointBackend | None
    concurrency: int | None
    spec: dict[str, Any] | None = None


def as_endpoint(
    endpoint: str | Endpoint | None,
    served_model: str | None = None,
    api_key_env: str | None = None,
    concurrency: int | None = None,
) -> Endpoint | None:
    """An :class:`Endpoint` from a runner's arguments (a URL and the served name)."""
    if endpoint is None:
        if served_model is not None or api_key_env is not None:
            raise ValueError("--served_model and --api_key_env need --endpoint URL")
        return None
    if isinstance(endpoint, Endpoint):
        return endpoint
    if concurrency is not None and (isinstance(concurrency, bool) or int(concurrency) < 1):
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    return Endpoint(
        str(endpoint),
        served_model or "",
        api_key_env=api_key_env,
        concurrency=int(concurrency or DEFAULT_CONCURRENCY),
    )


def run_model(
    model: Any,
    overrides: dict[str, Any],
    *,
    endpoint: Endpoint | None = None,
    prompt: str = "omniad",
) -> RunModel:
    """Check the model (or the endpoint) now; the runner loads it when work needs it.

    A mistyped checkpoint path, an unset key variable, an unreachable URL or a wrong
    served model name fails here, in one line, before anything is read or written.
    """
    if endpoint is None and model is None:
        raise ValueError("give a model (a checkpoint path or an Inspector) or an endpoint")
    if endpoint is None:
        check_model(model)  # a mistyped path fails before anything is read
    settings = model_settings(model, overrides, endpoint=endpoint, prompt=prompt)
    if endpoint is not None:
        backend = connect_endpoint(endpoint)
        return RunModel(settings, backend, endpoint.concurrency, endpoint.served_spec())
    return RunModel(settings, None, endpoint_concurrency(model, None))


def runner_model(
    model: Any,
    *,
    device: str | None,
    dtype: str | None,
    max_new_tokens: int | None,
    grid: Any,
    image_size: int | None,
    layout: str | None,
    endpoint: str | Endpoint | None,
    served_model: str | None,
    api_key_env: str | None,
    concurrency: int | None,
    prompt: str = "omniad",
) -> tuple[RunModel, Any]:
    """The model side of ``run_mmad`` / ``run_detection`` from their keyword arguments:
    the :class:`RunModel` checked now (:func:`run_model`: a mistyped path, an unset key
    variable, an unreachable URL or a wrong served name fails before anything is read or
    written) and the factory that loads the Inspector when work needs it."""
    overrides = {
        "max_new_tokens": max_new_tokens,
        "grid": grid,
        "image_size": image_size,
        "layout": layout,
        "dtype": dtype,
    }
    served = as_endpoint(endpoint, served_model, api_key_env, concurrency)
    chosen = run_model(model, overrides, endpoint=served, prompt=prompt)

    def factory() -> Any:
        return load_inspector(
            model, overrides, device, backend=chosen.backend, prompt=prompt, spec=chosen.spec
        )

    return chosen, factory
