"""The Inspector: ask a vision-language model about an image, get a mask and an answer.

Example (tested end to end in ``tests/test_inspector.py``)::

    from omniad_core import Inspector

    insp = Inspector.from_pretrained("path/to/checkpoint")
    result = insp.analyze("part.png")            # "Is there any defect in the object?"
    result.is_anomalous, result.answer, result.mask.shape   # (True, 'A', (900, 1200))
    result.overlay().save("part_overlay.png")

What produces the text is a backend (:mod:`omniad_core.backends`): the model in this
process by default, or a served model (:meth:`Inspector.from_endpoint`); prompts, image
preparation and parsing are the same for both.  torch and transformers are imported when
an in-process Inspector is built, never at module import.
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
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

import textmask
from omniad_core.analysis import Analysis
from omniad_core.backends import (
    SEG_STRIPPED,
    Backend,
    EndpointBackend,
    Generation,
    TransformersBackend,
)
from omniad_core.backends.endpoint import served_spec
from omniad_core.backends.local import (
    _ALWAYS,
    GREEDY,
    collector_paused,
    default_placement,
    image_token_count,
    load_pretrained,
    load_processor,
    pin_image_budget,
)
from omniad_core.backends.threads import threads_for_model
from omniad_core.batch_inputs import (
    options_per_image,
    questions_per_image,
    references_per_image,
)
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
    checkpoint_spec,
    demo_model_path,
    image_pixel_budget,
    load_spec,
    resolve_settings,
    save_spec,
    torchvision_hint,
    use_left_padding,
)
from omniad_core.images import load_image
from omniad_core.parsing import ParsedResponse, parse_response
from omniad_core.prompts import DEFECT_QUESTION, Question, build_messages

# The checkpoint names are re-exported: they lived here before omniad_core.checkpoint; the
# processor and placement helpers live with the in-process backend (omniad_core.backends.local).
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
    num_threads : int, "auto" or None
        CPU threads of each in-process ``generate`` (restored after it); None: the
        measured policy of :mod:`omniad_core.backends.threads` (one thread under 20M
        parameters; ``$OMNIAD_NUM_THREADS`` overrides it), 0: torch's setting.
        :attr:`num_threads` and :attr:`threads_reason` say what was chosen and why.
    backend : Backend, optional
        What produces the text (:mod:`omniad_core.backends`).  Default: a
        :class:`~omniad_core.backends.TransformersBackend` over ``model`` and ``processor``;
        with another backend, ``model`` and ``processor`` may be None
        (:meth:`from_endpoint` builds one for an OpenAI-compatible server).

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
        backend: Backend | None = None,
        spec: dict[str, Any] | None = None,
        num_threads: int | str | None = None,
    ) -> None:
        self.num_threads: int | None = None
        self.threads_reason = "served model (threads are the server's)"
        if backend is not None and model is None:
            self._init_settings(spec or {}, grid, image_size, system_prompt, layout)
            self.model = None
            self.processor = processor
            self.max_new_tokens = int(max_new_tokens)
            self.generation_kwargs = {"max_new_tokens": int(max_new_tokens)}
            self.backend = backend
            return
        if isinstance(model, (str, os.PathLike)):
            other = Inspector.from_pretrained(model, num_threads=0)
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
        self._init_settings(
            checkpoint_spec(model) if spec is None else spec,
            grid,
            image_size,
            system_prompt,
            layout,
        )
        if self.image_size is not None:  # a large input costs an image_size square, no more
            pin_image_budget(processor, self.image_size)
        # what the checkpoint's generation config would otherwise bring into generate()
        pins = GREEDY if not do_sample else {k: GREEDY[k] for k in _ALWAYS}
        known = getattr(model, "generation_config", None)
        gen: dict[str, Any] = {k: v for k, v in pins.items() if known is None or hasattr(known, k)}
        gen.update(max_new_tokens=int(max_new_tokens), do_sample=bool(do_sample))
        gen.update(generation_kwargs or {})
        self.generation_kwargs = gen
        self.max_new_tokens = int(gen.get("max_new_tokens", max_new_tokens))
        if backend is None:
            self.num_threads, self.threads_reason = threads_for_model(model, num_threads)
            backend = TransformersBackend(model, processor, gen, num_threads=self.num_threads)
        else:
            self.threads_reason = "the given backend's"
        self.backend: Backend = backend

    def describe(self) -> dict[str, Any]:
        """What produces and reads the answers, JSON-ready: model, grid, sizes, sources.

        ``grid`` is the grid the seg text is read on (rows, cols, threshold, index base),
        ``model_image_size`` the square images are resized to before the model sees them
        (None: kept), ``settings_source`` where each setting came from (``"given"``,
        ``"omniad.json"``, ``"default"``: :attr:`CheckpointSettings.source`).
        """
        g = self.grid
        return {
            "model": str(getattr(self.backend, "name", "") or "model"),
            "grid": {
                "rows": g.rows,
                "cols": g.cols,
                "threshold": g.threshold,
                "index_base": g.index_base,
            },
            "model_image_size": self.image_size,
            "settings_source": dict(self.settings.source or {}),
            "num_threads": self.num_threads,
            "threads_reason": self.threads_reason,
        }

    def _init_settings(
        self, spec: dict[str, Any], grid: Any, image_size: Any, system_prompt: Any, layout: str
    ) -> None:
        settings = resolve_settings(
            spec,
            grid=FROM_CHECKPOINT if grid is None else grid,
            image_size=image_size,
            system_prompt=system_prompt,
        )
        self.settings: CheckpointSettings = settings
        self.grid = settings.grid
        self.image_size = settings.image_size
        self.system_prompt = settings.system_prompt
        self.layout = layout

    @classmethod
    def from_endpoint(
        cls,
        base_url: str,
        model: str,
        *,
        api_key_env: str | None = None,
        concurrency: int = 8,
        timeout: float = 300.0,
        retries: int = 4,
        backoff: float = 1.0,
        temperature: float = 0.0,
        spec: str | os.PathLike[str] | dict[str, Any] | None = None,
        check: bool = True,
        extra_body: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Inspector:
        """An Inspector whose text comes from an OpenAI-compatible chat endpoint.

        Parameters
        ----------
        base_url : str
            The server's API root, e.g. ``http://127.0.0.1:8000/v1``.
        model : str
            The served model's name (as ``GET /v1/models`` lists it).
        api_key_env : str, optional
            The environment variable holding the API key (never the key itself).
        concurrency, timeout, retries, backoff, temperature, extra_body
            See :class:`~omniad_core.backends.EndpointBackend`.
        spec : path or dict, optional
            The served checkpoint's ``omniad.json`` (or the folder holding it): its grid,
            image size and system prompt.  A server has no local ``omniad.json``: without
            ``spec``, settings not given in ``kwargs`` take the paper's defaults (24 x 24,
            512 px, its prompt), and a warning says so.  When ``model`` is itself a local
            checkpoint folder (``transformers serve`` names models by the folder it was
            given), its ``omniad.json`` is read.
        check : bool
            Call :meth:`~omniad_core.backends.EndpointBackend.check` now: an unreachable
            URL or a model the server does not list fails here, before any work.
        **kwargs
            ``grid``, ``image_size``, ``system_prompt``, ``max_new_tokens``, ``layout``.

        Raises
        ------
        omniad_core.backends.EndpointError
            A key variable named but unset, an unreachable URL, a wrong model name.
        """
        spec = served_spec(model, spec)
        backend = EndpointBackend(
            base_url,
            model,
            api_key_env=api_key_env,
            concurrency=concurrency,
            timeout=timeout,
            retries=retries,
            backoff=backoff,
            temperature=temperature,
            extra_body=extra_body,
        )
        if check:
            backend.check()
        defaulted = [
            k
            for k in ("grid", "image_size", "system_prompt")
            if kwargs.get(k, FROM_CHECKPOINT) is FROM_CHECKPOINT
            and (spec is None or {"grid": "textmask"}.get(k, k) not in spec)
        ]
        if defaulted:
            warnings.warn(
                f"served model {model!r}: no omniad.json here, so {', '.join(defaulted)} take "
                "the paper's defaults (24x24 grid, 512 px, its system prompt); pass the "
                "served checkpoint's spec= (or grid=, image_size=, system_prompt=) if it was "
                "trained otherwise",
                stacklevel=2,
            )
        return cls(None, None, backend=backend, spec=dict(spec or {}), **kwargs)

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
        onto a GPU (``device_map``, which needs accelerate), never into host memory first.  The processor is
        :func:`load_processor`'s: left padding, and a :class:`MissingPackageError` naming
        the install when it needs torchvision.
        """
        check_model_location(path_or_id)
        with collector_paused():  # torch, transformers and the model's modules: ~3,000
            model, processor = load_pretrained(path_or_id, trust_remote_code, device, dtype)
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
        """``(chat-template text, images, image, user turn, options)`` of one request."""
        messages, images, img, user, opts = self._prepare_messages(
            image, question, options, reference
        )
        text = self.processor.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
        return text, images, img, user, opts

    def _prepare_messages(
        self, image: Any, question: Question | str | None, options: Any, reference: Any
    ) -> tuple[list[dict[str, Any]], list[Any], Any, str, Any]:
        """``(messages, images, image, user turn, options)``: one code path for every backend."""
        img = load_image(image)
        if question is None:
            question = DEFECT_QUESTION
            options = _DEFAULT_OPTIONS if options is None else options
        ref = None if reference is None else self._resize(load_image(reference))
        messages = build_messages(
            question,
            self._resize(img),
            options=options,
            reference=ref,
            system_prompt=self.system_prompt,
            layout=self.layout,  # type: ignore[arg-type]
        )
        images = [
            c["image"]
            for m in messages
            if isinstance(m["content"], list)
            for c in m["content"]
            if c.get("type") == "image"
        ]
        opts = question.options if isinstance(question, Question) and options is None else options
        user = messages[-1]["content"][-1]["text"]
        return messages, images, img, user, opts

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
        batch_size: int | None = None,
        progress: bool = True,
    ) -> list[Analysis]:
        """Analyze many images through the backend (results in input order).

        One question, option set (``["Yes", "No"]`` or a dict) or reference is shared by
        every image; a list of them gives one per image (:mod:`omniad_core.batch_inputs`
        has the exact rule), so ``analyze_batch(images, "Is the cap scratched?", ["Yes",
        "No"])`` asks every image the same question with the same options.

        ``batch_size`` requests are prepared and handed to the backend at a time
        (default: the backend's own, 8 in process, 4 x ``concurrency`` for an endpoint,
        whose requests then run ``concurrency`` at a time).  A request that failed at an
        endpoint is an :class:`Analysis` with ``error`` set; an in-process generation
        error raises, as before.
        """
        n = len(images)
        qs = questions_per_image(questions, n)
        opts = options_per_image(options, n)
        refs = references_per_image(references, n)
        size = int(getattr(self.backend, "batch_size", 8)) if batch_size is None else batch_size
        if size < 1:
            raise ValueError(f"batch_size must be >= 1, got {size}")
        results: list[Analysis] = []
        bar = None
        if progress and n > size:
            from tqdm.auto import tqdm

            bar = tqdm(total=n, desc="inspect", unit="img")
        t_start, tokens = time.perf_counter(), 0
        for start in range(0, n, size):
            prepared = [
                self._prepare_messages(images[k], qs[k], opts[k], refs[k])
                for k in range(start, min(n, start + size))
            ]
            gens = self.backend.generate(
                [p[0] for p in prepared],
                [p[1] for p in prepared],
                max_new_tokens=int(self.generation_kwargs.get("max_new_tokens", 1024)),
                progress=False,
            )
            for (_, _, img, user, opt), gen in zip(prepared, gens, strict=True):
                results.append(self._analysis(gen, img, user, opt))
                tokens += gen.completion_tokens or 0
            if bar is not None:
                bar.update(len(prepared))
                dt = max(time.perf_counter() - t_start, 1e-9)
                bar.set_postfix_str(f"{bar.n / dt:.2f} req/s, {tokens / dt:.1f} tok/s")
        if bar is not None:
            bar.close()
        return results

    def _analysis(self, gen: Generation, img: Any, user: str, opt: Any) -> Analysis:
        """The Analysis of one backend result (parsed, or a failure with its reason)."""
        h, w = img.size[1], img.size[0]
        common = dict(
            seconds=gen.seconds,
            raw=gen.raw,
            seg_stripped=gen.seg_stripped,
            prompt_tokens=gen.prompt_tokens,
            completion_tokens=gen.completion_tokens,
        )
        if gen.error is not None or gen.text is None:
            error = gen.error or "the backend returned no text"
            parsed = ParsedResponse(
                raw="",
                grid=self.grid.shape,
                index_base=self.grid.index_base,
                problems=[f"request failed: {error}"],
            )
            mask = np.zeros((h, w), bool)
            return Analysis("", parsed, mask, img, user, error=error, **common)  # type: ignore[arg-type]
        parsed = parse_response(gen.text, options=opt, grid=self.grid)
        if gen.seg_stripped:
            parsed = parsed.model_copy(
                update={"problems": [SEG_STRIPPED, *parsed.problems], "format_ok": False}
            )
        mask = textmask.unpatchify(parsed.cells, (h, w))
        return Analysis(gen.text, parsed, mask, img, user, **common)  # type: ignore[arg-type]
