"""The Inspector: ask a vision-language model about an image, get a mask and an answer.

Example (tested end to end in ``tests/test_inspector.py``)::

    from omniad_core import Inspector

    insp = Inspector.from_pretrained("path/to/checkpoint")
    result = insp.analyze("part.png")            # "Is there any defect in the object?"
    result.is_anomalous, result.answer, result.mask.shape   # (True, 'A', (900, 1200))
    result.overlay().save("part_overlay.png")

torch and transformers are imported when an Inspector is built, never at module import.
Weights load from safetensors only, and remote code is refused unless asked for.

Defaults for real checkpoints on real GPUs: :meth:`Inspector.from_pretrained` loads
straight onto ``cuda:$LOCAL_RANK`` in bfloat16 when CUDA is present (the CPU in float32
otherwise, :func:`default_placement`); the processor pads on the left and its image-token
budget is pinned to the image size (:func:`load_processor`); greedy decoding overrides
whatever sampling settings and repetition penalty the checkpoint's generation config
carries (:data:`GREEDY`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import textmask
from omniad_core.checkpoint import (
    FROM_CHECKPOINT,
    IMAGE_SIZE_RANGE,
    SPEC_FILE,
    SPEC_KEYS,
    CheckpointError,
    CheckpointSettings,
    MissingPackageError,
    check_checkpoint,
    check_model_location,
    check_processor,
    checkpoint_spec,
    demo_model_path,
    image_pixel_budget,
    load_spec,
    resolve_settings,
    save_spec,
    torchvision_hint,
    use_left_padding,
)
from omniad_core.images import load_image, overlay
from omniad_core.parsing import ParsedResponse, parse_response
from omniad_core.prompts import DEFECT_QUESTION, Question, build_messages

# The checkpoint names are re-exported: they lived here before omniad_core.checkpoint.
__all__ = [
    "FROM_CHECKPOINT",
    "GREEDY",
    "IMAGE_SIZE_RANGE",
    "SPEC_FILE",
    "SPEC_KEYS",
    "Analysis",
    "CheckpointError",
    "Inspector",
    "MissingPackageError",
    "check_checkpoint",
    "check_model_location",
    "default_placement",
    "demo_model_path",
    "image_pixel_budget",
    "image_token_count",
    "load_processor",
    "load_spec",
    "pin_image_budget",
    "save_spec",
    "torchvision_hint",
    "use_left_padding",
]

_DEFAULT_OPTIONS = {"A": "Yes", "B": "No"}


#: What greedy decoding pins, whatever the checkpoint's ``generation_config.json`` says:
#: ``generate`` starts from the model's generation config, and Qwen's carries sampling
#: defaults and a repetition penalty of 1.05 (which bends coordinates: they repeat digits
#: constantly). ``generation_kwargs`` still override any of these.
GREEDY: dict[str, Any] = {
    "do_sample": False,
    "num_beams": 1,
    "temperature": None,
    "top_p": None,
    "top_k": None,
    "min_p": None,
    "typical_p": None,
    "epsilon_cutoff": None,
    "eta_cutoff": None,
    "repetition_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    "num_return_sequences": 1,
    "return_dict_in_generate": False,
}
#: Pinned for sampling too: one plain sequence per prompt, no penalty unless asked for.
_ALWAYS = ("repetition_penalty", "no_repeat_ngram_size", "num_return_sequences",
           "return_dict_in_generate")  # fmt: skip


def default_placement(
    device: str | None = None,
    dtype: Any = None,
    *,
    cuda_available: bool,
    bf16_supported: bool = True,
    local_rank: int = 0,
) -> tuple[str, str]:
    """The device and dtype (its name) a model loads to when the caller leaves them open.

    ``cuda:<local_rank>`` when CUDA is available (one shard per GPU), else the CPU;
    bfloat16 on CUDA (float16 on a GPU without bfloat16), float32 elsewhere.  The flags
    are parameters so every branch is testable without a GPU.

    >>> default_placement(cuda_available=False)
    ('cpu', 'float32')
    >>> default_placement(cuda_available=True, local_rank=3)
    ('cuda:3', 'bfloat16')
    >>> default_placement("cpu", cuda_available=True), default_placement(dtype="float16", cuda_available=False)
    (('cpu', 'float32'), ('cpu', 'float16'))
    """
    if device is None:
        device = f"cuda:{int(local_rank)}" if cuda_available else "cpu"
    on_gpu = str(device).startswith("cuda") or (str(device) == "auto" and cuda_available)
    if dtype is None:
        dtype = ("bfloat16" if bf16_supported else "float16") if on_gpu else "float32"
    return str(device), str(dtype).removeprefix("torch.")


def _local_rank() -> int:
    try:
        return int(os.environ.get("LOCAL_RANK", "0") or 0)
    except ValueError:
        return 0


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
        The grid the model writes masks on.
    image_size : int or None
        Images are resized to ``image_size x image_size`` before the model sees them
        (512 in the paper); None keeps them as they are.  Masks always come back at
        the input image's own size.
    system_prompt : str or None
        The system turn; None sends none.

    ``grid``, ``image_size`` and ``system_prompt`` default to :data:`FROM_CHECKPOINT`:
    the value in the checkpoint's ``omniad.json`` (read from the path, or from the
    folder a loaded model came from), else the paper's (24 x 24, 512 px, its prompt).
    :func:`omniad_core.checkpoint.resolve_settings` decides, for every way of building
    an Inspector and for the evaluation runners; :attr:`settings` says what it chose.
    max_new_tokens : int
        Generation budget per answer.
    do_sample : bool
        False (default): greedy decoding, reproducible results: :data:`GREEDY` overrides
        the sampling settings and repetition penalty of the checkpoint's generation config.
    generation_kwargs : dict, optional
        Further arguments for ``model.generate`` (they override :data:`GREEDY`).

    When ``image_size`` is set, the processor's image-token budget is pinned to that
    square (:func:`pin_image_budget`), and it pads on the left (:func:`use_left_padding`);
    both change the processor passed in.
    """

    def __init__(
        self,
        model: Any,
        processor: Any = None,
        *,
        grid: textmask.grid.GridLike | None = FROM_CHECKPOINT,
        image_size: int | None = FROM_CHECKPOINT,
        system_prompt: str | None = FROM_CHECKPOINT,
        max_new_tokens: int = 1024,
        do_sample: bool = False,
        generation_kwargs: dict[str, Any] | None = None,
        layout: str = "lines",
    ) -> None:
        if isinstance(model, (str, os.PathLike)):
            other = Inspector.from_pretrained(model)
            model, processor = other.model, processor or other.processor
        if processor is None:
            source = getattr(getattr(model, "config", None), "_name_or_path", None)
            if not source:
                raise ValueError(
                    "no processor given and the model does not say where it was loaded from; "
                    "pass processor=AutoProcessor.from_pretrained(...)"
                )
            processor = load_processor(source)
        use_left_padding(processor)  # decoder-only generation pads on the left
        self.model = model
        self.processor = processor
        settings = resolve_settings(
            checkpoint_spec(model),
            grid=FROM_CHECKPOINT if grid is None else grid,
            image_size=image_size,
            system_prompt=system_prompt,
        )
        self.settings: CheckpointSettings = settings
        self.grid = settings.grid
        self.image_size = settings.image_size
        self.system_prompt = settings.system_prompt
        self.layout = layout
        if self.image_size is not None:  # a large input costs an image_size square, no more
            pin_image_budget(processor, self.image_size)
        # what the checkpoint's generation config would otherwise bring into generate()
        pins = GREEDY if not do_sample else {k: GREEDY[k] for k in _ALWAYS}
        known = getattr(model, "generation_config", None)
        gen: dict[str, Any] = {k: v for k, v in pins.items() if known is None or hasattr(known, k)}
        gen.update(max_new_tokens=int(max_new_tokens), do_sample=bool(do_sample))
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

        ``device`` and ``dtype`` default to :func:`default_placement`: ``cuda:$LOCAL_RANK``
        in bfloat16 when CUDA is available, else the CPU in float32.  Weights load straight
        onto the device (``device_map``), never into host memory first.  The processor is
        :func:`load_processor`'s: left padding, and a :class:`MissingPackageError` naming
        the install when it needs torchvision.
        """
        check_model_location(path_or_id)
        import torch
        from transformers import AutoModelForImageTextToText

        path = Path(path_or_id).expanduser()
        source = str(path_or_id)
        if path.exists():
            check_checkpoint(path)  # the spec is read back by __init__ from the folder
            source = str(path)
        cuda = torch.cuda.is_available()
        device, dtype_name = default_placement(
            device,
            dtype,
            cuda_available=cuda,
            bf16_supported=cuda and torch.cuda.is_bf16_supported(),
            local_rank=_local_rank(),
        )
        torch_dtype = getattr(torch, dtype_name, None)
        if not isinstance(torch_dtype, torch.dtype):
            raise ValueError(f"unknown dtype {dtype_name!r}; use float32, bfloat16 or float16")
        try:
            processor = load_processor(source, trust_remote_code=trust_remote_code)
        except (AttributeError, KeyError, TypeError) as exc:  # e.g. "... no attribute image_token"
            raise FileNotFoundError(
                f"cannot build the processor of {source} ({type(exc).__name__}: {exc}): its "
                "tokenizer or processor files are missing or do not match; save the model's "
                "processor into it with AutoProcessor.from_pretrained(BASE_MODEL)"
                ".save_pretrained(...)"
            ) from None
        check_processor(processor, source)
        model = AutoModelForImageTextToText.from_pretrained(
            source,
            use_safetensors=True,
            trust_remote_code=trust_remote_code,
            dtype=torch_dtype,
            device_map=device,
        )
        model.eval()
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


# ------------------------------------------------------------------ processor
def _pixel_factor(image_processor: Any) -> int | None:
    """Pixels per image token along a side (patch x merge) of a Qwen-VL-style processor."""
    patch, merge = (getattr(image_processor, k, None) for k in ("patch_size", "merge_size"))
    return int(patch) * int(merge) if patch and merge else None


def pin_image_budget(processor: Any, image_size: int) -> int | None:
    """Fix the image processor's pixel budget (min = max) to an ``image_size`` square.

    Any input then costs the tokens of an ``image_size`` square at most (324 for 512)
    instead of the checkpoint's default (the release: up to 16384), and an
    ``image_size`` square exactly that. Sets ``size = {"shortest_edge", "longest_edge"}``
    (transformers 5) and ``min_pixels`` / ``max_pixels`` where they exist, so
    ``save_pretrained`` writes the pinned budget. Returns the budget, or None (nothing
    changed) for an image processor that is not Qwen-VL-style.
    """
    image_processor = getattr(processor, "image_processor", None)
    factor = _pixel_factor(image_processor)
    if factor is None:
        return None
    budget = image_pixel_budget(image_size, factor)
    image_processor.size = {"shortest_edge": budget, "longest_edge": budget}
    for name in ("min_pixels", "max_pixels"):
        if getattr(image_processor, name, None) is not None:
            setattr(image_processor, name, budget)
    return budget


def image_token_count(processor: Any, height: int, width: int) -> int:
    """Image tokens ``processor`` gives a ``height`` x ``width`` image (one image, a blank
    one run through its image processor, so the budget and rounding are its own)."""
    from PIL import Image

    image_processor = processor.image_processor
    out = image_processor(images=[Image.new("RGB", (width, height))], return_tensors="np")
    merge = int(getattr(image_processor, "merge_size", 1) or 1)
    return int(out["image_grid_thw"][0].prod()) // (merge * merge)


def load_processor(
    source: str | os.PathLike[str],
    *,
    image_size: int | None = None,
    trust_remote_code: bool = False,
    revision: str | None = None,
) -> Any:
    """A checkpoint's processor as training and inference use it.

    ``AutoProcessor.from_pretrained``, then :func:`use_left_padding` whatever the
    checkpoint's tokenizer says, then :func:`pin_image_budget` when ``image_size`` is given.

    Raises
    ------
    MissingPackageError
        The processor needs torchvision (Qwen2.5-VL's video processor does) and it is
        missing or does not match torch; the message gives the command that installs it.
    """
    from transformers import AutoProcessor

    try:
        processor = AutoProcessor.from_pretrained(
            source, trust_remote_code=trust_remote_code, revision=revision
        )
    except (ImportError, RuntimeError) as exc:  # RuntimeError: a torchvision that fails
        if "torchvision" not in str(exc).lower():
            raise
        what = "is not installed" if isinstance(exc, ImportError) else "fails to import"
        raise MissingPackageError(
            f"cannot load the processor of {source}: it needs torchvision (Qwen2.5-VL's video "
            f"processor), which {what}; install it: {torchvision_hint()}"
        ) from None
    use_left_padding(processor)
    if image_size is not None:
        pin_image_budget(processor, image_size)
    return processor
