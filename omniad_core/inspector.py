"""The Inspector: ask a vision-language model about an image, get a mask and an answer.

Example (tested end to end in ``tests/test_inspector.py``)::

    from omniad_core import Inspector

    insp = Inspector.from_pretrained("path/to/checkpoint")
    result = insp.analyze("part.png")            # "Is there any defect in the object?"
    result.is_anomalous, result.answer, result.mask.shape   # (True, 'A', (900, 1200))
    result.overlay().save("part_overlay.png")

torch and transformers are imported when an Inspector is built, never at module import.
Weights load from safetensors only, and remote code is refused unless asked for.
"""

from __future__ import annotations

import difflib
import itertools
import json
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import textmask
from omniad_core.images import load_image, overlay
from omniad_core.parsing import ParsedResponse, parse_response
from omniad_core.prompts import DEFECT_QUESTION, SYSTEM_PROMPT, Question, build_messages

__all__ = [
    "IMAGE_SIZE_RANGE",
    "SPEC_FILE",
    "SPEC_KEYS",
    "Analysis",
    "CheckpointError",
    "Inspector",
    "check_checkpoint",
    "check_model_location",
    "demo_model_path",
    "load_spec",
    "save_spec",
]

#: File next to a checkpoint's weights describing how it reads and writes masks.
SPEC_FILE = "omniad.json"
#: The keys ``omniad.json`` may hold.
SPEC_KEYS = ("textmask", "image_size", "system_prompt", "shots")
#: Accepted ``image_size`` values (pixels per side; 28 is one Qwen2.5-VL patch merge).
IMAGE_SIZE_RANGE = (28, 8192)
_MAX_SPEC_BYTES = 1_000_000
_MAX_PROMPT_CHARS = 100_000
_DEFAULT_OPTIONS = {"A": "Yes", "B": "No"}


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
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt",
                    "spiece.model", "sentencepiece.bpe.model")  # fmt: skip
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


def _check_processor(processor: Any, source: str) -> None:
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


@dataclass
class Analysis:
    """The result of :meth:`Inspector.analyze` for one image.

    Attributes
    ----------
    response : str
        The model's raw text.
    parsed : ParsedResponse
        Seg, think and answer read from it (tolerantly).
    mask : numpy.ndarray of bool
        The seg as a pixel mask at the input image's own size.
    image : PIL.Image.Image
        The input image (RGB, original size).
    question : str
        The user turn that was asked.
    seconds : float
        Generation time (for a batch, the batch's time divided by its size).
    """

    response: str
    parsed: ParsedResponse
    mask: np.ndarray
    image: Any = field(repr=False)
    question: str = ""
    seconds: float = 0.0

    @property
    def is_anomalous(self) -> bool:
        """True when the model marked at least one cell."""
        return self.parsed.is_anomalous

    @property
    def answer(self) -> str | None:
        """The option letter the model chose, if one could be read."""
        return self.parsed.answer

    @property
    def think(self) -> str | None:
        """The reasoning text."""
        return self.parsed.think

    def overlay(self, **kwargs: Any) -> Any:
        """The mask painted over the image (``PIL.Image``); see :func:`omniad_core.overlay`."""
        return overlay(self.image, self.mask, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no pixels): answer, seg, think, flags, problems."""
        return {
            "answer": self.answer,
            "is_anomalous": self.is_anomalous,
            "seg": self.parsed.seg_canonical,
            "think": self.think,
            "anomalous_pixels": int(self.mask.sum()),
            "image_size": list(self.mask.shape),
            "format_ok": self.parsed.format_ok,
            "problems": list(self.parsed.problems),
            "response": self.response,
            "question": self.question,
            "seconds": round(self.seconds, 4),
        }


class Inspector:
    """Run the OmniAD method with a Hugging Face vision-language model.

    Parameters
    ----------
    model : PreTrainedModel or str or path
        A loaded image-text-to-text model (e.g. Qwen2.5-VL), or a checkpoint path
        (then loaded with :meth:`from_pretrained`).
    processor : ProcessorMixin, optional
        Its processor; loaded from the model's own path when omitted.
    grid : int, (rows, cols) or textmask.Grid
        The grid the model writes masks on (default 24 x 24, or the checkpoint's).
    image_size : int or None
        Images are resized to ``image_size x image_size`` before the model sees them
        (512 in the paper); None keeps them as they are.  Masks always come back at
        the input image's own size.
    system_prompt : str or None
        Defaults to the paper's prompt.
    max_new_tokens : int
        Generation budget per answer.
    do_sample : bool
        False (default): greedy decoding, reproducible results.
    generation_kwargs : dict, optional
        Further arguments for ``model.generate``.
    """

    def __init__(
        self,
        model: Any,
        processor: Any = None,
        *,
        grid: textmask.grid.GridLike | None = None,
        image_size: int | None = 512,
        system_prompt: str | None = SYSTEM_PROMPT,
        max_new_tokens: int = 512,
        do_sample: bool = False,
        generation_kwargs: dict[str, Any] | None = None,
        layout: str = "lines",
    ) -> None:
        if isinstance(model, (str, os.PathLike)):
            other = Inspector.from_pretrained(model)
            model, processor = other.model, processor or other.processor
            spec_grid = other.grid
        else:
            spec_grid = None
        if processor is None:
            from transformers import AutoProcessor

            source = getattr(getattr(model, "config", None), "_name_or_path", None)
            if not source:
                raise ValueError(
                    "no processor given and the model does not say where it was loaded from; "
                    "pass processor=AutoProcessor.from_pretrained(...)"
                )
            processor = AutoProcessor.from_pretrained(source)
        tok = getattr(processor, "tokenizer", None)
        if tok is not None:
            tok.padding_side = "left"  # decoder-only generation pads on the left
        self.model = model
        self.processor = processor
        self.grid = textmask.Grid.of(grid if grid is not None else (spec_grid or 24))
        if image_size is not None and (not isinstance(image_size, int) or image_size < 28):
            raise ValueError(f"image_size must be an int >= 28 or None, got {image_size!r}")
        self.image_size = image_size
        self.system_prompt = system_prompt
        self.layout = layout
        gen: dict[str, Any] = {"max_new_tokens": int(max_new_tokens), "do_sample": bool(do_sample)}
        if not do_sample:  # silence sampling settings a checkpoint's generation config may carry
            gen.update(temperature=None, top_p=None, top_k=None)
        gen.update(generation_kwargs or {})
        self.generation_kwargs = gen

    @classmethod
    def from_pretrained(
        cls,
        path_or_id: str | os.PathLike[str],
        *,
        trust_remote_code: bool = False,
        device: str | None = None,
        dtype: Any = None,
        **kwargs: Any,
    ) -> Inspector:
        """Load a checkpoint (safetensors only) and its processor.

        Settings in the checkpoint's ``omniad.json`` (grid, image size, system prompt)
        are used unless overridden in ``kwargs``.  A local folder is checked first
        (:func:`check_checkpoint`: weights complete, tokenizer and processor files present,
        spec valid) and a path-like argument that does not exist fails at once
        (:func:`check_model_location`), before torch is imported or the hub is asked.
        """
        check_model_location(path_or_id)
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        path = Path(path_or_id).expanduser()
        spec: dict[str, Any] = {}
        source = str(path_or_id)
        if path.exists():
            check_checkpoint(path)
            spec = load_spec(path)
            source = str(path)
        model = AutoModelForImageTextToText.from_pretrained(
            source,
            use_safetensors=True,
            trust_remote_code=trust_remote_code,
            dtype=dtype if dtype is not None else torch.float32,
        )
        if device is not None:
            model = model.to(device)
        model.eval()
        try:
            processor = AutoProcessor.from_pretrained(source, trust_remote_code=trust_remote_code)
        except (AttributeError, KeyError, TypeError) as exc:  # e.g. "... no attribute image_token"
            raise FileNotFoundError(
                f"cannot build the processor of {source} ({type(exc).__name__}: {exc}): its "
                "tokenizer or processor files are missing or do not match; save the model's "
                "processor into it with AutoProcessor.from_pretrained(BASE_MODEL)"
                ".save_pretrained(...)"
            ) from None
        _check_processor(processor, source)
        if "textmask" in spec and "grid" not in kwargs:
            kwargs["grid"] = textmask.Grid.from_dict(spec["textmask"])
        if "image_size" in spec and "image_size" not in kwargs:
            kwargs["image_size"] = spec["image_size"]
        if "system_prompt" in spec and "system_prompt" not in kwargs:
            kwargs["system_prompt"] = spec["system_prompt"]
        return cls(model, processor, **kwargs)

    # ------------------------------------------------------------------ prompts
    def _resize(self, img: Any) -> Any:
        if self.image_size is None or img.size == (self.image_size, self.image_size):
            return img
        from PIL import Image

        return img.resize((self.image_size, self.image_size), Image.Resampling.BICUBIC)

    def _prepare(
        self, image: Any, question: Question | str | None, options: Any, reference: Any
    ) -> tuple[str, list[Any], Any, str, Any]:
        img = load_image(image)
        if question is None:
            question = DEFECT_QUESTION
            options = _DEFAULT_OPTIONS if options is None else options
        ref = None if reference is None else self._resize(load_image(reference))
        messages = build_messages(
            question, self._resize(img), options=options, reference=ref,
            system_prompt=self.system_prompt, layout=self.layout,  # type: ignore[arg-type]
        )  # fmt: skip
        text = self.processor.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
        images = [c["image"] for m in messages if isinstance(m["content"], list)
                  for c in m["content"] if c.get("type") == "image"]  # fmt: skip
        opts = question.options if isinstance(question, Question) and options is None else options
        user = messages[-1]["content"][-1]["text"]
        return text, images, img, user, opts

    # ------------------------------------------------------------------ running
    def analyze(
        self,
        image: Any,
        question: Question | str | None = None,
        options: Any = None,
        reference: Any = None,
    ) -> Analysis:
        """Ask one question about one image.

        Parameters
        ----------
        image : path, PIL image or array
            The image to inspect.
        question : Question or str, optional
            Default: "Is there any defect in the object?" with options Yes / No.
        options : mapping or list, optional
            Options of a string question (``["Yes", "No"]`` or ``{"A": ..., ...}``).
        reference : path, PIL image or array, optional
            A normal image of the same category (1-shot).
        """
        return self.analyze_batch([image], [question], [options], [reference], progress=False)[0]

    def analyze_batch(
        self,
        images: Sequence[Any],
        questions: Sequence[Question | str | None] | Question | str | None = None,
        options: Sequence[Any] | None = None,
        references: Sequence[Any] | None = None,
        *,
        batch_size: int = 8,
        progress: bool = True,
    ) -> list[Analysis]:
        """Analyze many images with batched generation (results in input order)."""
        import torch

        n = len(images)
        qs = _per_item(questions, n, "questions")
        opts = _per_item(options, n, "options", allow_scalar=False)
        refs = _per_item(references, n, "references", allow_scalar=False)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        results: list[Analysis] = []
        bar = None
        if progress and n > batch_size:
            from tqdm.auto import tqdm

            bar = tqdm(total=n, desc="inspect", unit="img")
        device = getattr(self.model, "device", None)
        for start in range(0, n, batch_size):
            prepared = [
                self._prepare(images[k], qs[k], opts[k], refs[k])
                for k in range(start, min(n, start + batch_size))
            ]
            texts = [p[0] for p in prepared]
            flat = [im for p in prepared for im in p[1]]
            inputs = self.processor(text=texts, images=flat, return_tensors="pt", padding=True)
            if device is not None:
                inputs = inputs.to(device)
            t0 = time.perf_counter()
            with torch.inference_mode():
                out = self.model.generate(**inputs, **self.generation_kwargs)
            dt = (time.perf_counter() - t0) / len(prepared)
            new = out[:, inputs["input_ids"].shape[1] :]
            responses = self.processor.batch_decode(new, skip_special_tokens=True)
            for (_, _, img, user, opt), resp in zip(prepared, responses, strict=True):
                parsed = parse_response(resp, options=opt, grid=self.grid)
                mask = textmask.unpatchify(parsed.cells, (img.size[1], img.size[0]))
                results.append(Analysis(resp, parsed, mask, img, user, dt))
            if bar is not None:
                bar.update(len(prepared))
        if bar is not None:
            bar.close()
        return results


def _per_item(value: Any, n: int, name: str, allow_scalar: bool = True) -> list[Any]:
    if value is None:
        return [None] * n
    if allow_scalar and isinstance(value, (str, Question)):
        return [value] * n
    items = list(value)
    if len(items) != n:
        raise ValueError(f"{name} must have one entry per image: {len(items)} for {n} images")
    return items
