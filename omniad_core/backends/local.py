"""Backends that run the model on this machine: transformers ``generate``, vLLM offline."""

from __future__ import annotations

import gc
import importlib.util
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omniad_core.backends.base import Generation
from omniad_core.backends.replies import to_openai_messages
from omniad_core.backends.threads import torch_threads
from omniad_core.checkpoint import (
    MissingPackageError,
    check_checkpoint,
    check_processor,
    image_pixel_budget,
    require_model_packages,
    torchvision_hint,
    use_left_padding,
)

__all__ = [
    "GREEDY",
    "QUIET_LOAD_BYTES",
    "TransformersBackend",
    "VLLMBackend",
    "collector_paused",
    "default_placement",
    "image_token_count",
    "load_pretrained",
    "load_processor",
    "pin_image_budget",
    "weights_bar_for",
]


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
_ALWAYS = (
    "repetition_penalty",
    "no_repeat_ngram_size",
    "num_return_sequences",
    "return_dict_in_generate",
)


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


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector during a burst of imports.

    Importing torch and transformers creates millions of objects and no garbage cycles
    worth collecting; the collector's passes over them cost about 0.6 s of the 2-3 s
    (``docs/speed.md``).  Reference counting frees memory as usual meanwhile.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


#: A local checkpoint whose weight files are smaller than this loads in well under a
#: second: transformers' "Loading weights" bar would only flash by (the embedded demo
#: model: 7 MB); larger ones, and every hub download, keep their bars.
QUIET_LOAD_BYTES = 256 * 2**20


@contextmanager
def weights_bar_for(path: Path) -> Iterator[None]:
    """Hide transformers' "Loading weights" bar while a small local checkpoint loads.

    Below :data:`QUIET_LOAD_BYTES` of ``*.safetensors`` the bar says nothing.  Only that
    bar is hidden, through transformers' tqdm hook (``set_tqdm_hook``, restored after):
    other bars, the hub's settings and the user's own switches are left as they are.
    With a transformers that has no such hook, the bar shows.
    """
    from transformers.utils import logging as hf_logging

    set_hook = getattr(hf_logging, "set_tqdm_hook", None)
    small = (
        path.is_dir()
        and sum(f.stat().st_size for f in path.glob("*.safetensors") if f.is_file())
        < QUIET_LOAD_BYTES
    )
    if not small or set_hook is None:
        yield
        return
    previous = None

    def hook(factory: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if kwargs.get("desc") == "Loading weights":
            kwargs = {**kwargs, "disable": True}
        return previous(factory, args, kwargs) if previous else factory(*args, **kwargs)

    previous = set_hook(hook)
    try:
        yield
    finally:
        set_hook(previous)


def load_pretrained(
    path_or_id: str | os.PathLike[str], trust_remote_code: bool, device: Any, dtype: Any
) -> tuple[Any, Any]:
    """``(model, processor)`` of :meth:`~omniad_core.Inspector.from_pretrained`: a local
    folder checked (:func:`~omniad_core.checkpoint.check_checkpoint`), the processor of
    :func:`load_processor`, the model in eval mode on :func:`default_placement`'s device;
    a :class:`MissingPackageError` naming the install when torch or transformers is missing."""
    require_model_packages(f"loading the model {path_or_id}")
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
    # the CPU is where weights load anyway: no device_map there (it needs accelerate, which
    # an install without the model extra's full list may lack); any other device gets its
    # weights loaded straight onto it
    on_cpu = str(device).split(":")[0] == "cpu" or (str(device) == "auto" and not cuda)
    if not on_cpu and importlib.util.find_spec("accelerate") is None:
        raise MissingPackageError(
            f"loading {source} onto {device} needs accelerate (transformers places the weights "
            "with it), which is not installed; install it: pip install accelerate (the model "
            "extra has it), or load on the CPU (device='cpu')"
        )
    with weights_bar_for(path):
        model = AutoModelForImageTextToText.from_pretrained(
            source,
            use_safetensors=True,
            trust_remote_code=trust_remote_code,
            dtype=torch_dtype,
            device_map=None if on_cpu else device,
        )
    model.eval()
    return model, processor


# --------------------------------------------------------------------------- in process
@dataclass
class TransformersBackend:
    """``model.generate`` in this process: batched, left padding, :data:`GREEDY` pins.

    Parameters
    ----------
    model, processor
        A loaded image-text-to-text model and its processor (left padding).
    generation_kwargs : dict
        Arguments of ``model.generate`` (the Inspector's: greedy pins and overrides);
        ``max_new_tokens`` of :meth:`generate` wins.
    batch_size : int
        Conversations per ``generate`` call when the Inspector groups them.
    num_threads : int or None
        CPU threads of each ``generate`` call (set for the call, restored after it:
        :func:`omniad_core.backends.threads.torch_threads`); None keeps torch's setting.
        The Inspector chooses it (:func:`~omniad_core.backends.threads.resolve_num_threads`).
    """

    model: Any
    processor: Any
    generation_kwargs: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 8
    num_threads: int | None = None

    @property
    def name(self) -> str:
        """The folder or hub id the model came from."""
        return str(getattr(getattr(self.model, "config", None), "_name_or_path", "") or "model")

    def generate(
        self,
        conversations: list[list[dict[str, Any]]],
        images: list[list[Any]],
        *,
        max_new_tokens: int,
        progress: bool = False,
    ) -> list[Generation]:
        """One batched ``generate`` call over all conversations (group them beforehand).

        A failure of the call (out of memory, an image the processor rejects) raises:
        in-process errors are the caller's to handle, as before the seam.
        """
        import torch

        if not conversations:
            return []
        texts = [
            self.processor.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
            for c in conversations
        ]
        flat = [im for ims in images for im in ims]
        inputs = self.processor(text=texts, images=flat or None, return_tensors="pt", padding=True)
        device = getattr(self.model, "device", None)
        if device is not None:
            inputs = inputs.to(device)
        kwargs = {**self.generation_kwargs, "max_new_tokens": int(max_new_tokens)}
        t0 = time.perf_counter()
        with torch_threads(self.num_threads), torch.inference_mode():
            out = self.model.generate(**inputs, **kwargs)
        dt = (time.perf_counter() - t0) / len(conversations)
        prompt_len = inputs["input_ids"].shape[1]
        new = out[:, prompt_len:]
        responses = self.processor.batch_decode(new, skip_special_tokens=True)
        mask = inputs.get("attention_mask")
        pad = getattr(getattr(self.processor, "tokenizer", None), "pad_token_id", None)
        gens = []
        for k, resp in enumerate(responses):
            p = int(mask[k].sum()) if mask is not None else int(prompt_len)
            c = int((new[k] != pad).sum()) if pad is not None else int(new.shape[1])
            gens.append(Generation(resp, prompt_tokens=p, completion_tokens=c, seconds=dt))
        return gens


# --------------------------------------------------------------------------- vLLM offline
class VLLMBackend:
    """vLLM's offline engine (``vllm.LLM.chat``): a GPU evaluation without a server.

    Untested on the CPU machines this project is tested on: it needs ``vllm`` and a GPU
    (see ``docs/serving.md``).  Greedy (temperature 0); the reply is the text as generated
    (no reasoning parser is involved offline).

    Parameters
    ----------
    model : str
        A checkpoint folder or hub id.
    **llm_kwargs
        Passed to ``vllm.LLM`` (e.g. ``tensor_parallel_size``, ``max_model_len``).
    """

    def __init__(self, model: str, *, batch_size: int = 256, **llm_kwargs: Any) -> None:
        try:
            from vllm import LLM
        except ImportError:
            raise MissingPackageError(
                "the vLLM backend needs vllm: pip install vllm (a GPU machine; pick the "
                "release built for your torch)"
            ) from None
        self.name = str(model)
        self.batch_size = int(batch_size)
        llm_kwargs.setdefault("limit_mm_per_prompt", {"image": 2})
        self._llm = LLM(model=str(model), **llm_kwargs)

    def __repr__(self) -> str:
        return f"VLLMBackend({self.name!r})"

    def generate(
        self,
        conversations: list[list[dict[str, Any]]],
        images: list[list[Any]],
        *,
        max_new_tokens: int,
        progress: bool = False,
    ) -> list[Generation]:
        """All conversations through ``LLM.chat`` (vLLM batches them itself)."""
        from vllm import SamplingParams

        params = SamplingParams(temperature=0.0, max_tokens=int(max_new_tokens))
        msgs = [to_openai_messages(c, ims) for c, ims in zip(conversations, images, strict=True)]
        t0 = time.perf_counter()
        outs = self._llm.chat(msgs, params, use_tqdm=progress)
        dt = (time.perf_counter() - t0) / max(len(msgs), 1)
        gens = []
        for o in outs:
            c = o.outputs[0]
            gens.append(
                Generation(
                    c.text,
                    raw={"content": c.text, "finish_reason": c.finish_reason},
                    prompt_tokens=len(o.prompt_token_ids or []),
                    completion_tokens=len(c.token_ids or []),
                    seconds=dt,
                )
            )
        return gens
