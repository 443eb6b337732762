"""A checkpoint's own description (``omniad.json``) and the checks made before loading it.

One place resolves how a checkpoint reads and writes masks and prompts the model:
:func:`resolve_settings` combines what the caller asked for, the checkpoint's
``omniad.json`` and the toolkit's defaults (a 24 x 24 grid, 512 px images, the paper's
system prompt), in that order.  The :class:`~omniad_core.Inspector` (built from a path,
from a loaded model or with ``from_pretrained``) and the evaluation runners use it, so
they prompt a checkpoint the same way.

The checks (:func:`check_model_location`, :func:`check_checkpoint`,
:func:`check_processor`) turn a mistyped path, a damaged safetensors file or missing
processor files into one-line errors before torch is imported or weights load.

:func:`use_left_padding`, :func:`image_pixel_budget` and :class:`MissingPackageError`
serve :func:`omniad_core.inspector.load_processor`, which loads a checkpoint's processor
the one way training and inference use it.
"""

from __future__ import annotations

import difflib
import itertools
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import textmask
from omniad_core.packages import (
    MODEL_INSTALL,
    MissingPackageError,
    require_model_packages,
    torchvision_hint,
)
from omniad_core.prompts import SYSTEM_PROMPT

__all__ = [
    "DEFAULT_GRID",
    "DEFAULT_IMAGE_SIZE",
    "FROM_CHECKPOINT",
    "IMAGE_SIZE_RANGE",
    "MODEL_INSTALL",
    "SPEC_FILE",
    "SPEC_KEYS",
    "CheckpointError",
    "CheckpointSettings",
    "MissingPackageError",
    "check_checkpoint",
    "check_model_location",
    "check_processor",
    "checkpoint_spec",
    "demo_model_path",
    "image_pixel_budget",
    "load_spec",
    "require_model_packages",
    "resolve_settings",
    "save_spec",
    "torchvision_hint",
    "use_left_padding",
]

#: File next to a checkpoint's weights describing how it reads and writes masks.
SPEC_FILE = "omniad.json"
#: The keys ``omniad.json`` may hold.
SPEC_KEYS = ("textmask", "image_size", "system_prompt", "shots")
#: Accepted ``image_size`` values (pixels per side; 28 is one Qwen2.5-VL patch merge).
IMAGE_SIZE_RANGE = (28, 8192)
_MAX_SPEC_BYTES = 1_000_000
_MAX_PROMPT_CHARS = 100_000


class CheckpointError(ValueError):
    """A checkpoint folder holds a damaged or inconsistent file (the message names it)."""


def demo_model_path() -> Path | None:
    """The small demo checkpoint shipped in the package, or None when it is absent.

    It was trained by ``omniad demo`` on synthetic defects only: it shows the method
    working, it is not a model for real inspection.
    """
    path = Path(__file__).resolve().parent / "demo_model"
    return path if (path / "model.safetensors").is_file() else None


# --------------------------------------------------------------------- omniad.json
def _spec_values(spec: Any, where: str) -> dict[str, Any]:
    """``spec`` checked key by key; errors name ``where`` and the key."""
    if not isinstance(spec, dict):
        raise ValueError(f"{where} must hold a JSON object, got {type(spec).__name__}")
    unknown = sorted(set(spec) - set(SPEC_KEYS))
    if unknown:
        raise ValueError(
            f"{where}: unknown key {unknown[0]!r}; the keys are {', '.join(SPEC_KEYS)} "
            "(fix the spelling or remove it)"
        )
    out: dict[str, Any] = {}
    if "textmask" in spec:
        tm = spec["textmask"]
        if not isinstance(tm, dict):
            raise ValueError(
                f"{where}: 'textmask' must be an object like "
                f'{{"rows": 24, "cols": 24, "threshold": 0.0, "index_base": 0}}, got {tm!r:.80}'
            )
        try:
            grid = textmask.Grid.from_dict(tm)
        except (textmask.TextMaskError, TypeError) as exc:
            raise ValueError(f"{where}: 'textmask' is not a valid grid: {exc}") from None
        out["textmask"] = grid.to_dict()
    if "image_size" in spec:
        size = spec["image_size"]
        lo, hi = IMAGE_SIZE_RANGE
        ok = size is None or (type(size) is int and lo <= size <= hi)
        if not ok:
            raise ValueError(
                f"{where}: 'image_size' must be an integer in {lo}..{hi} (pixels per side) "
                f"or null, got {size!r:.80}"
            )
        out["image_size"] = size
    if "system_prompt" in spec:
        prompt = spec["system_prompt"]
        if prompt is not None and not isinstance(prompt, str):
            raise ValueError(
                f"{where}: 'system_prompt' must be a string or null, got {type(prompt).__name__}"
            )
        if isinstance(prompt, str) and len(prompt) > _MAX_PROMPT_CHARS:
            raise ValueError(
                f"{where}: 'system_prompt' has {len(prompt):,} characters, more than "
                f"{_MAX_PROMPT_CHARS:,}"
            )
        out["system_prompt"] = prompt
    if "shots" in spec:
        shots = spec["shots"]
        if shots is not None and (type(shots) is not int or shots not in (0, 1)):
            raise ValueError(
                f"{where}: 'shots' must be 0 (query image only), 1 (a normal reference image "
                f"first) or null, got {shots!r:.80}"
            )
        out["shots"] = shots
    return out


def save_spec(
    path: str | os.PathLike[str],
    *,
    grid: textmask.grid.GridLike = 24,
    image_size: int = 512,
    system_prompt: str | None = SYSTEM_PROMPT,
    shots: int | None = None,
) -> Path:
    """Write ``omniad.json`` (textmask spec, image size, system prompt, shots) into ``path``.

    ``shots`` is the number of normal reference images the training prompts held (0 or
    1); None leaves it out.  The values are checked as :func:`load_spec` checks them, so
    what is written loads.
    """
    p = Path(path) / SPEC_FILE
    size = image_size if isinstance(image_size, bool) else _as_int(image_size)
    spec = {
        "textmask": textmask.Grid.of(grid).to_dict(),
        "image_size": size,
        "system_prompt": system_prompt,
    }
    if shots is not None:
        spec["shots"] = shots
    _spec_values(spec, f"save_spec({str(p)!r})")
    p.write_text(json.dumps(spec, indent=2) + "\n")
    return p


def _as_int(value: Any) -> Any:
    try:
        return int(value) if int(value) == value else value
    except (TypeError, ValueError, OverflowError):
        return value


def load_spec(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read ``omniad.json`` from a checkpoint folder ({} when absent).

    Every key is checked: ``textmask`` a grid object (:meth:`textmask.Grid.from_dict`),
    ``image_size`` an integer in :data:`IMAGE_SIZE_RANGE` (or null: no resizing),
    ``system_prompt`` a string (or null), ``shots`` 0 or 1 (or null: unknown); any
    other key is an error.  Errors are
    ``ValueError`` naming the file and the key.
    """
    p = Path(path) / SPEC_FILE
    if not p.is_file():
        return {}
    size = p.stat().st_size
    if size > _MAX_SPEC_BYTES:
        raise ValueError(f"{p} is {size:,} bytes; a spec is a few hundred: fix or delete it")
    try:
        spec = json.loads(p.read_bytes().decode("utf-8"))
    except ValueError as exc:
        raise ValueError(f"{p} is not valid JSON ({exc}); fix or delete it") from None
    return _spec_values(spec, str(p))


# --------------------------------------------------------------------- locations
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}(/[\w.-]{1,96})?")


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _path_like(s: str) -> bool:
    if s.startswith((".", "~")) or os.path.isabs(s) or "\\" in s:
        return True
    if s.count("/") > 1 or s.endswith("/"):
        return True
    if os.sep != "/" and (os.sep in s or (os.altsep and os.altsep in s) or ":" in s):
        return True
    first = s.split("/", 1)[0]
    if "/" in s and first and os.path.isdir(first):
        return True
    return _REPO_ID.fullmatch(s) is None  # cannot be a hub id (spaces, "..", ...)


def _cached_on_hub(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - a transformers dependency
        return False
    try:
        found = try_to_load_from_cache(repo_id, "config.json")
    except Exception:  # an invalid id, an unreadable cache: not cached
        return False
    return isinstance(found, str)


def _nearby(p: Path) -> str:
    """What exists near the missing path ``p``, as a phrase."""
    parent = p.parent
    missing = [p.name]
    while not parent.is_dir() and parent != parent.parent:
        missing.append(parent.name)
        parent = parent.parent
    shown = str(parent) if str(parent) not in ("", ".") else "the current folder"
    if not parent.is_dir():  # pragma: no cover - the root always exists
        return "nothing of it exists"
    try:
        with os.scandir(parent) as it:
            names = sorted(e.name for e in itertools.islice(it, 2000) if e.is_dir())
    except OSError:
        return f"{shown} cannot be listed"
    target = missing[-1]
    close = difflib.get_close_matches(target, names, n=3, cutoff=0.6)
    where = f"{shown} has no {target!r}"
    if close:
        return f"{where}; close matches: {', '.join(repr(c) for c in close)}"
    if names:
        more = f" and {len(names) - 5} more" if len(names) > 5 else ""
        return f"{where}; it holds {', '.join(repr(n) for n in names[:5])}{more}"
    return f"{where}; it holds no folders"


def check_model_location(path_or_id: str | os.PathLike[str]) -> None:
    """Raise ``FileNotFoundError`` at once for a model path that does not exist.

    A hub id (``org/name``, ``name``) passes; so does any path that exists.  The
    argument counts as a path when it is a ``Path``, absolute, starts with ``.`` or
    ``~``, holds a backslash, more than one ``/`` or ends with ``/`` (or holds the
    system's separator or a drive colon on Windows), when its first component is a
    local folder (``runs/omniad-7b`` with a ``runs/`` here), when it cannot be a hub id,
    or when ``HF_HUB_OFFLINE=1`` and it is not in the local hub cache.  The one-line
    message says what was found nearby (close matches in the nearest existing folder).

    >>> check_model_location("Qwen/Qwen2.5-VL-7B-Instruct")  # a hub id: not checked here
    """
    if not isinstance(path_or_id, (str, os.PathLike)):
        raise TypeError(
            f"a model location must be a path or a hub id, got {type(path_or_id).__name__}"
        )
    s = os.fspath(path_or_id)
    if not isinstance(s, str):
        raise TypeError("a model location must be a str path, not bytes")
    if not s.strip():
        raise FileNotFoundError("the model location is empty; pass a checkpoint folder")
    p = Path(s).expanduser()
    if p.exists():
        return
    is_path = not isinstance(path_or_id, str) or _path_like(s)
    if not is_path and not _offline():
        return
    if not is_path and _cached_on_hub(s):
        return
    why = (
        "is not a local folder, and HF_HUB_OFFLINE=1 keeps the hub from being asked"
        if not is_path
        else "does not exist"
    )
    raise FileNotFoundError(
        f"model {s!r} {why}: {_nearby(p)}; check the path (relative to {os.getcwd()!r})"
    )


# --------------------------------------------------------------------- checkpoints
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer.model",
    "vocab.json",
    "vocab.txt",
    "spiece.model",
    "sentencepiece.bpe.model",
)
_PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json")
_TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json")
_DAMAGED = "the file is damaged (an interrupted download or save?): download or save it again"


def _check_safetensors(file: Path) -> None:
    """Check a safetensors file's header against its size (no tensor is read)."""
    size = file.stat().st_size
    if size < 8:
        raise CheckpointError(f"{file} is truncated ({size} bytes, no header); {_DAMAGED}")
    with open(file, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        if n > size - 8 or n > 100_000_000:
            raise CheckpointError(
                f"{file} is truncated or not a safetensors file: its header claims {n:,} "
                f"bytes, the file has {size:,}; {_DAMAGED}"
            )
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
        ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        raise CheckpointError(f"{file} has an unreadable safetensors header; {_DAMAGED}") from None
    expected = 8 + n + max(ends, default=0)
    if size < expected:
        raise CheckpointError(
            f"{file} is truncated: {size:,} bytes of the {expected:,} its header announces; "
            f"{_DAMAGED}"
        )
    if size > expected:
        raise CheckpointError(
            f"{file} has {size - expected:,} unexpected bytes after its tensors; {_DAMAGED}"
        )


def _has_key(file: Path, key: str) -> bool:
    """True when the JSON object in ``file`` has a non-empty ``key`` (False if unreadable)."""
    try:
        if not file.is_file() or file.stat().st_size > 50_000_000:
            return False
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and bool(data.get(key))


def check_checkpoint(path: str | os.PathLike[str]) -> None:
    """Check a local checkpoint folder before loading it; raise a one-line error if not usable.

    * ``FileNotFoundError`` when the folder, its ``*.safetensors`` weights (or a shard
      named in ``model.safetensors.index.json``), its tokenizer files, its processor
      config or its chat template are missing;
    * :class:`CheckpointError` for a truncated or damaged safetensors file;
    * ``ValueError`` for a bad ``omniad.json`` (see :func:`load_spec`).
    """
    path = Path(path)
    if not path.is_dir():
        if path.exists():
            raise CheckpointError(f"{path} is a file; pass the checkpoint folder")
        check_model_location(path)
        raise FileNotFoundError(f"no checkpoint folder at {path}")
    files = sorted(p.name for p in path.iterdir())
    weights = [path / f for f in files if f.endswith(".safetensors")]
    if not weights:
        raise FileNotFoundError(
            f"no *.safetensors weights in {path} (found {files[:10]}); this toolkit only "
            "loads safetensors: re-save the model with save_pretrained(..., "
            "safe_serialization=True)"
        )
    index = path / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = set(json.loads(index.read_text())["weight_map"].values())
        except (ValueError, KeyError, TypeError, AttributeError):
            raise CheckpointError(f"{index} is not a valid shard index; {_DAMAGED}") from None
        absent = sorted(str(s) for s in shards if not (path / str(s)).is_file())
        if absent:
            raise FileNotFoundError(
                f"{path} lacks {len(absent)} weight shard(s) named in {index.name}: "
                f"{', '.join(absent[:3])}; copy or download the whole checkpoint"
            )
    for w in weights:
        _check_safetensors(w)
    fix = (
        "the checkpoint was saved without its processor: load the processor of the model "
        "it was trained from and save it next to the weights, e.g. "
        f"AutoProcessor.from_pretrained(BASE_MODEL).save_pretrained({str(path)!r})"
    )
    if not any(f in files for f in _TOKENIZER_FILES):
        raise FileNotFoundError(
            f"{path} has no tokenizer files (none of {', '.join(_TOKENIZER_FILES[:3])}, ...); "
            + fix
        )
    if not any(f in files for f in _PROCESSOR_FILES):
        raise FileNotFoundError(
            f"{path} has no image processor config ({' or '.join(_PROCESSOR_FILES)}); " + fix
        )
    if not any(f in files for f in _TEMPLATE_FILES) and not any(
        _has_key(path / f, "chat_template") for f in (*_PROCESSOR_FILES, "tokenizer_config.json")
    ):
        raise FileNotFoundError(
            f"{path} has no chat template ({' or '.join(_TEMPLATE_FILES)}, or a "
            "'chat_template' in its tokenizer or processor config); " + fix
        )
    load_spec(path)


def check_processor(processor: Any, source: str) -> None:
    """Raise when ``processor`` cannot turn an image and a chat into model inputs."""
    fix = (
        f"save the model's processor into {source} with "
        "AutoProcessor.from_pretrained(BASE_MODEL).save_pretrained(...)"
    )
    if getattr(processor, "image_processor", None) is None:
        raise FileNotFoundError(
            f"{source} gave a {type(processor).__name__}, not an image-text processor "
            f"(its image processor config is missing); {fix}"
        )
    tok = getattr(processor, "tokenizer", None)
    if tok is None:
        raise FileNotFoundError(f"{source} has a processor without a tokenizer; {fix}")
    if not (getattr(processor, "chat_template", None) or getattr(tok, "chat_template", None)):
        raise FileNotFoundError(f"{source} has no chat template (chat_template.jinja); {fix}")


# --------------------------------------------------------------------- processor
def use_left_padding(processor: Any) -> Any:
    """Make ``processor`` (and its tokenizer) pad on the left; return it.

    Decoder-only generation needs it, and so does TRL's GRPO: it left-pads the prompt ids
    itself but takes ``mm_token_type_ids`` from the processor's own padded output, so a
    right-padding tokenizer (as released) misplaces the image positions of every shorter
    prompt in a batch.
    """
    tok = getattr(processor, "tokenizer", None)
    for obj in (processor, tok):
        if obj is not None and hasattr(obj, "padding_side"):
            obj.padding_side = "left"
    return processor


def image_pixel_budget(image_size: int, factor: int = 28) -> int:
    """Pixels of an ``image_size`` square after the processor rounds it to ``factor`` px.

    Qwen2.5-VL gives one image token per 28 x 28 px (14-px patches merged 2 x 2):

    >>> image_pixel_budget(512), image_pixel_budget(512) // 28**2, image_pixel_budget(672) // 28**2
    (254016, 324, 576)
    """
    side = max(1, round(image_size / factor)) * factor
    return side * side


# --------------------------------------------------------------------- settings
#: The grid of a checkpoint that does not say (the paper's 24 x 24).
DEFAULT_GRID = 24
#: The image size of a checkpoint that does not say (the paper's 512 x 512).
DEFAULT_IMAGE_SIZE = 512


class _FromCheckpoint:
    """The default of a setting the caller leaves to the checkpoint (then to the default)."""

    _instance: _FromCheckpoint | None = None

    def __new__(cls) -> _FromCheckpoint:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "FROM_CHECKPOINT"

    def __reduce__(self) -> str:
        return "FROM_CHECKPOINT"


#: "Use the checkpoint's value": the default of the Inspector's settings.
FROM_CHECKPOINT: Any = _FromCheckpoint()


@dataclass(frozen=True)
class CheckpointSettings:
    """How a checkpoint is prompted and how its masks are read.

    Attributes
    ----------
    grid : textmask.Grid
        The grid the seg text refers to.
    image_size : int or None
        Images are resized to ``image_size x image_size`` (None: kept as they are).
    system_prompt : str or None
        The system turn (None: no system turn).
    shots : int or None
        0 or 1 normal reference images in the training prompts (None: not recorded).
    source : dict
        For each setting, where it came from: ``"given"``, ``"omniad.json"`` or
        ``"default"``.
    """

    grid: textmask.Grid
    image_size: int | None
    system_prompt: str | None
    shots: int | None = None
    source: Mapping[str, str] | None = None


def checkpoint_spec(model: Any) -> dict[str, Any]:
    """The checked ``omniad.json`` of a checkpoint folder, or ``{}``.

    ``model`` is a path, a hub id (``{}``: only local folders are read) or a loaded
    transformers model, whose ``config._name_or_path`` names the folder it came from.
    """
    if not isinstance(model, (str, os.PathLike)):
        model = getattr(getattr(model, "config", None), "_name_or_path", None)
        if not model:
            return {}
    path = Path(model).expanduser()
    return load_spec(path) if path.is_dir() else {}


def resolve_settings(
    spec: Mapping[str, Any] | None = None,
    *,
    grid: Any = FROM_CHECKPOINT,
    image_size: Any = FROM_CHECKPOINT,
    system_prompt: Any = FROM_CHECKPOINT,
) -> CheckpointSettings:
    """The settings a checkpoint runs with: what is given, else its spec, else the default.

    ``spec`` is a checked ``omniad.json`` (:func:`load_spec`, :func:`checkpoint_spec`).
    A setting left at :data:`FROM_CHECKPOINT` comes from the spec, then from the
    default (24 x 24 grid, 512 px, the paper's system prompt).  ``None`` is a value:
    no resizing, no system turn.

    >>> s = resolve_settings({"textmask": {"rows": 8, "cols": 8}, "image_size": 224})
    >>> s.grid.shape, s.image_size, s.source["image_size"], s.source["system_prompt"]
    ((8, 8), 224, 'omniad.json', 'default')
    >>> resolve_settings({"image_size": 224}, image_size=None).image_size is None
    True
    """
    spec = dict(spec or {})
    source: dict[str, str] = {}

    def pick(name: str, given: Any, key: str, default: Any) -> Any:
        if given is not FROM_CHECKPOINT:
            source[name] = "given"
            return given
        if key in spec:
            source[name] = SPEC_FILE
            return spec[key]
        source[name] = "default"
        return default

    g = pick("grid", grid, "textmask", DEFAULT_GRID)
    g = textmask.Grid.from_dict(g) if isinstance(g, dict) else textmask.Grid.of(g)
    size = pick("image_size", image_size, "image_size", DEFAULT_IMAGE_SIZE)
    lo, hi = IMAGE_SIZE_RANGE
    if size is not None and (type(size) is not int or not lo <= size <= hi):
        raise ValueError(f"image_size must be an int in {lo}..{hi} or None, got {size!r}")
    prompt = pick("system_prompt", system_prompt, "system_prompt", SYSTEM_PROMPT)
    if prompt is not None and not isinstance(prompt, str):
        raise ValueError(f"system_prompt must be a str or None, got {type(prompt).__name__}")
    return CheckpointSettings(g, size, prompt, spec.get("shots"), source)
