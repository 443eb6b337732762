"""A tiny, randomly initialised Qwen2.5-VL built fully offline, for tests and demos.

Nothing here is downloaded. :func:`build_tiny_qwen2_5_vl` trains a small byte-level BPE
tokenizer in memory (Qwen2's pre-tokenizer and special tokens), wraps it in a processor with
the real Qwen2.5-VL chat template and image processor, creates a
``Qwen2_5_VLForConditionalGeneration`` with random, seeded weights and saves everything
with ``save_pretrained`` (safetensors). The folder then loads like a hub checkpoint with
``AutoModelForImageTextToText.from_pretrained(path)`` and ``AutoProcessor.from_pretrained(path)``:
no network, no ``trust_remote_code``.

The model has the real architecture (vision tower with windowed and full attention, patch
merger, multimodal RoPE, image placeholder expansion) at toy sizes, so ``forward``,
``generate``, SFT and GRPO run on a CPU in seconds. **Until it is trained it writes
arbitrary text**: use it to exercise code paths, never to judge answers.

Presets: :meth:`TinyConfig.test` (about 130K parameters, for unit tests) and
:meth:`TinyConfig.demo` (about 1.7M parameters, 7 MB, big enough to learn a small
OmniAD-format task in minutes on two CPU cores).

Processor: transformers 5.x can only build the real ``Qwen2_5_VLProcessor`` with a working
torchvision (its video processor is torchvision-only). Without one, :func:`build_processor`
uses transformers' built-in ``PaddleOCRVLProcessor``, whose image path is the same code
(see :func:`build_processor`).

Example (needs torch and transformers, so it is not run as a doctest)::

    from PIL import Image
    from omniad_core.prompts import SYSTEM_PROMPT
    from omniad_train.tiny import TinyConfig, build_tiny_qwen2_5_vl, load_tiny

    path = build_tiny_qwen2_5_vl("/tmp/tiny-qwen", TinyConfig.test())
    model, processor = load_tiny(path)
    messages = [
        {"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Any defect?"}]},
    ]
    text = processor.apply_chat_template(messages, add_generation_prompt=True)
    inputs = processor(text=[text], images=[Image.new("RGB", (64, 64))], return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=8)
    print(processor.batch_decode(out[:, inputs["input_ids"].shape[1]:]))

The configuration needs no torch:

>>> cfg = TinyConfig.test(seed=3)
>>> cfg.hidden_size, cfg.mrope_section, cfg.seed
(32, [2, 1, 1], 3)
>>> TinyConfig.demo().mrope_section
[4, 6, 6]

This module imports neither torch nor transformers at import time; its functions do.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import pathlib
from collections.abc import Iterable, Sequence
from typing import Any

from omniad_core.prompts import SYSTEM_PROMPT
from textmask.regions import REGIONS

__all__ = [
    "QWEN_SPECIAL_TOKENS",
    "TinyConfig",
    "build_processor",
    "build_release_shaped",
    "build_tiny_qwen2_5_vl",
    "build_tokenizer",
    "default_corpus",
    "load_tiny",
    "qwen_chat_template",
    "qwen_processor_available",
    "train_bpe",
]

#: The Qwen2/Qwen2.5-VL special tokens, in the order (and so with the relative ids) of the
#: real tokenizer. They are added after the BPE vocabulary, as in Qwen.
QWEN_SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# Tokens the model must never generate: they only mark where image features go.
_VISION_TOKENS = (
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# The Qwen2 pre-tokenizer pattern: every digit is its own pre-token, so coordinates are
# written digit by digit (learnable, and any number up to 47 is one or two tokens).
_QWEN2_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


@dataclasses.dataclass(frozen=True)
class TinyConfig:
    """Sizes of a tiny Qwen2.5-VL. The defaults are the unit-test size (about 130K weights).

    ``vocab_size`` is the largest BPE vocabulary (256 byte symbols plus merges) to train; a
    small corpus may stop earlier. The model's vocabulary is the trained one plus the 14
    Qwen special tokens. ``hidden_size / num_heads`` must be even; the multimodal RoPE
    sections are derived from it like Qwen's ``[16, 24, 24]`` for head size 128. The vision
    tower always has 14-px patches, a 2x2 merge and 2-frame temporal patches, as Qwen2.5-VL.
    ``min_pixels``/``max_pixels`` bound the resized image area (multiples of 28x28).
    ``rope_theta`` is the text model's RoPE base. Qwen's 1e6 leaves the height and width
    sections of a small head with almost no rotation over a few image rows (width's fastest
    frequency is 1e6 ** (-10/16), about 2e-4 rad per cell for the demo head size), so a
    small model cannot tell image positions apart; the demo preset uses a small base.
    ``vision_window_attention`` keeps Qwen's layout (windowed vision blocks, the last one
    global); ``False`` makes every vision block global, so each patch sees the whole
    image (cheap at demo sizes, and it lets a tower trained from scratch find where it is).
    ``seed`` seeds the weights.
    """

    hidden_size: int = 32
    intermediate_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    vision_depth: int = 2
    vision_hidden_size: int = 32
    vision_intermediate_size: int = 64
    vision_num_heads: int = 4
    vision_window_attention: bool = True
    vocab_size: int = 512
    min_pixels: int = 28 * 28 * 4
    max_pixels: int = 28 * 28 * 16
    rope_theta: float = 1_000_000.0
    seed: int = 0

    @classmethod
    def test(cls, **overrides: Any) -> TinyConfig:
        """The fastest preset, for unit tests (about 120K parameters)."""
        return dataclasses.replace(cls(), **overrides)

    @classmethod
    def demo(cls, **overrides: Any) -> TinyConfig:
        """A preset that can learn a small task on a CPU (about 1.7M parameters, 7 MB).

        ``max_pixels`` keeps images up to 336x336 at full size (the demo uses 224x224:
        8x8 image tokens after the 2x2 merge, one per cell of an 8x8 grid). RoPE base 10
        and global attention in every vision block let a model trained from scratch
        tell image positions apart (see the class docstring).
        """
        base = cls(
            hidden_size=128,
            intermediate_size=384,
            num_layers=4,
            num_heads=4,
            num_kv_heads=2,
            vision_depth=4,
            vision_hidden_size=96,
            vision_intermediate_size=256,
            vision_num_heads=4,
            vocab_size=1024,
            min_pixels=28 * 28 * 4,
            max_pixels=28 * 28 * 144,
            rope_theta=10.0,
            vision_window_attention=False,
        )
        return dataclasses.replace(base, **overrides)

    @property
    def head_dim(self) -> int:
        """Text attention head size."""
        return self.hidden_size // self.num_heads

    @property
    def mrope_section(self) -> list[int]:
        """Temporal, height and width RoPE sections; they sum to ``head_dim // 2``."""
        half = self.head_dim // 2
        hw = (half - half // 4) // 2
        return [half - 2 * hw, hw, hw]

    def validate(self) -> None:
        """Raise ``ValueError`` if the sizes cannot make a working model."""
        problems = []
        if self.hidden_size % self.num_heads or self.head_dim % 2:
            problems.append("hidden_size / num_heads must be an even integer")
        if self.num_heads % self.num_kv_heads:
            problems.append("num_heads must be a multiple of num_kv_heads")
        if self.head_dim < 4:
            problems.append("head_dim must be at least 4 (multimodal RoPE needs 3 sections)")
        if self.vision_hidden_size % self.vision_num_heads:
            problems.append("vision_hidden_size must be a multiple of vision_num_heads")
        elif (self.vision_hidden_size // self.vision_num_heads) % 4:
            problems.append("vision head dim must be a multiple of 4 (2-D rotary embedding)")
        if self.vocab_size < 256:
            problems.append("vocab_size must be at least 256 (the byte alphabet)")
        if not 0 < self.min_pixels <= self.max_pixels:
            problems.append("need 0 < min_pixels <= max_pixels")
        if problems:
            raise ValueError("invalid TinyConfig: " + "; ".join(problems))


# --------------------------------------------------------------------------- tokenizer

_DEFECTS = (
    "scratch",
    "crack",
    "hole",
    "stain",
    "contamination",
    "missing",
    "broken",
    "bent",
    "cut",
    "fold",
    "color",
    "squeeze",
    "poke",
    "glue",
    "thread",
    "rough",
    "dent",
    "misplaced",
    "faulty imprint",
    "damaged",
)
_OBJECTS = (
    "bottle",
    "cable",
    "capsule",
    "carpet",
    "grid",
    "hazelnut",
    "leather",
    "metal nut",
    "pill",
    "screw",
    "tile",
    "toothbrush",
    "transistor",
    "wood",
    "zipper",
    "object",
)


def default_corpus() -> list[str]:
    """The built-in training text: everything an OmniAD model reads and writes.

    Deterministic (no randomness): the system prompt, chat-template words, questions and
    options, defect and region words, coordinates with every number 0..47, and complete
    ``<seg>...</seg><think>...</think><answer>X</answer>`` responses.
    """
    lines = [
        SYSTEM_PROMPT,
        SYSTEM_PROMPT.replace("<\\", "</"),
        "system\nYou are a helpful assistant.",
        "user\n",
        "assistant\n",
        "This is an image of a normal object.",
        "Is there any defect in the object?",
        "Is there any anomaly in the image?",
        "What is the type of the defect?",
        "Where is the defect located?",
        "What is the appearance of the defect?",
        "What is the effect of the defect?",
        "What kind of product is in the image?",
        "Answer with the option's letter from the given choices directly.",
        "A: Yes\nB: No",
        "A: Yes B: No",
        "A: No\nB: Yes",
        "<seg></seg><think></think><answer></answer>",
        "<seg>\n</seg>\n<think>\n</think>\n<answer>\n</answer>",
        "According to the segmentation result, there is no anomaly in the object.",
        "The object looks normal, so there is no defect.",
    ]
    letters = "ABCDE"
    for i, defect in enumerate(_DEFECTS):
        lines.append(f"{letters[i % 5]}: {defect}")
        lines.append(f"There is a {defect} on the object. The defect is a {defect}.")
    for region in REGIONS:
        lines.append(f"{letters[len(region) % 5]}: {region}")
        lines.append(
            "According to the segmentation result, there is an anomaly in the object, "
            f"which is located in the {region}."
        )
    for obj in _OBJECTS:
        lines.append(f"This is a {obj}. The {obj} has a defect. A: {obj}")
    # Coordinates: every number 0..47 as row and as column, runs and single patches.
    for r in range(48):
        c = (r * 7) % 48
        c2 = min(47, c + 2)
        lines.append(f"({r}, {c})-({r}, {c2}), ({r}, {r})")
        lines.append(f"({c}, {r}), ({c2}, {r})-({c2}, {min(47, r + 3)})")
    for r in range(0, 24, 3):
        seg = ", ".join(f"({r + k}, {4 + k})-({r + k}, {7 + k})" for k in range(3))
        for letter in "AB":
            lines.append(
                f"<seg>{seg}</seg><think>According to the segmentation result, there is an "
                f"anomaly in the object, which is located in the {REGIONS[r % 9]}.</think>"
                f"<answer>{letter}</answer>"
            )
    lines.append("<seg></seg><think>There is no anomaly in the object.</think><answer>B</answer>")
    return lines


def train_bpe(corpus: Iterable[str] | None = None, vocab_size: int = 512) -> Any:
    """Train the raw byte-level BPE ``tokenizers.Tokenizer`` (needs only ``tokenizers``).

    Qwen2's NFC normaliser and pre-tokenizer regex (so every digit is its own token),
    byte-level alphabet, then :data:`QWEN_SPECIAL_TOKENS` appended after the BPE vocabulary.
    Deterministic: the same corpus gives the same tokenizer, in any process.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from tokenizers.trainers import BpeTrainer

    texts = list(default_corpus() if corpus is None else corpus)
    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_QWEN2_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    tok.add_special_tokens(list(QWEN_SPECIAL_TOKENS))
    return tok


def build_tokenizer(corpus: Iterable[str] | None = None, vocab_size: int = 512) -> Any:
    """A Qwen2-style ``transformers`` tokenizer around :func:`train_bpe`.

    ``corpus`` defaults to :func:`default_corpus`. Any (NFC) text round-trips exactly
    through ``encode``/``decode``. ``eos`` is ``<|im_end|>``, ``pad`` is ``<|endoftext|>``,
    padding is on the left (as batched generation and TRL's GRPO need), there is no BOS
    and no unknown token, and the tokenizer knows the image/video/vision tokens by name
    (``tokenizer.image_token`` and ``tokenizer.image_token_id``...). It carries the
    Qwen2.5-VL chat template too, for text-only use.
    """
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=train_bpe(corpus, vocab_size),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        padding_side="left",
        clean_up_tokenization_spaces=False,
        model_max_length=32768,
        image_token="<|image_pad|>",
        video_token="<|video_pad|>",
        vision_start_token="<|vision_start|>",
        vision_end_token="<|vision_end|>",
    )
    tokenizer.chat_template = qwen_chat_template()
    return tokenizer


# --------------------------------------------------------------------------- processor


def qwen_chat_template() -> str:
    """The real Qwen2.5-VL chat template, as shipped inside the installed ``trl``."""
    return (
        importlib.resources.files("trl")
        .joinpath("chat_templates", "qwen2_5_vl.jinja")
        .read_text(encoding="utf-8")
    )


def qwen_processor_available() -> bool:
    """True if transformers can build a real ``Qwen2_5_VLProcessor`` here.

    In transformers 5.x that processor always holds a video processor, and the only video
    processors are torchvision-based; without a working torchvision it cannot be built
    (nor loaded by ``AutoProcessor``).
    """
    from transformers.utils import is_torchvision_available

    if not is_torchvision_available():
        return False
    try:
        from transformers import Qwen2VLImageProcessor, Qwen2VLVideoProcessor  # noqa: F401
    except Exception:  # a torchvision that does not match torch fails on import
        return False
    return True


def build_processor(tokenizer: Any, config: TinyConfig | None = None, *, kind: str = "auto") -> Any:
    """The processor for the tiny model: ``tokenizer``, the real chat template, 14-px patches.

    ``kind="qwen2_5_vl"`` gives the real ``Qwen2_5_VLProcessor`` with the torchvision image
    and video processors (needs torchvision). ``kind="image_only"`` gives a
    ``PaddleOCRVLProcessor`` (a built-in transformers class with exactly the Qwen2.5-VL
    image logic: it expands each ``<|image_pad|>`` to ``grid_t*grid_h*grid_w/4`` copies and
    returns ``input_ids``, ``attention_mask``, ``pixel_values``, ``image_grid_thw``,
    ``mm_token_type_ids``) around ``Qwen2VLImageProcessorPil``; it needs no torchvision but
    has no video support. ``kind="auto"`` picks the first if it can be built, else the second.
    Both save and load with plain ``save_pretrained`` / ``AutoProcessor.from_pretrained``.
    """
    cfg = config or TinyConfig()
    if kind == "auto":
        kind = "qwen2_5_vl" if qwen_processor_available() else "image_only"
    pixels = {"min_pixels": cfg.min_pixels, "max_pixels": cfg.max_pixels}
    if kind == "qwen2_5_vl":
        from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

        return Qwen2_5_VLProcessor(
            image_processor=Qwen2VLImageProcessor(**pixels),
            tokenizer=tokenizer,
            video_processor=Qwen2VLVideoProcessor(),
            chat_template=qwen_chat_template(),
        )
    if kind == "image_only":
        from transformers import PaddleOCRVLProcessor, Qwen2VLImageProcessorPil

        return PaddleOCRVLProcessor(
            image_processor=Qwen2VLImageProcessorPil(**pixels),
            tokenizer=tokenizer,
            chat_template=qwen_chat_template(),
        )
    raise ValueError(f"kind must be 'auto', 'qwen2_5_vl' or 'image_only', not {kind!r}")


# --------------------------------------------------------------------------- model


def _model_config(cfg: TinyConfig, tokenizer: Any) -> Any:
    from transformers import Qwen2_5_VLConfig

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}
    text_config = {
        "vocab_size": len(tokenizer),
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads,
        "num_key_value_heads": cfg.num_kv_heads,
        "max_position_embeddings": 32768,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": float(cfg.rope_theta),
            "mrope_section": cfg.mrope_section,
        },
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
        "tie_word_embeddings": False,
    }
    vision_config = {
        "depth": cfg.vision_depth,
        "hidden_size": cfg.vision_hidden_size,
        "intermediate_size": cfg.vision_intermediate_size,
        "num_heads": cfg.vision_num_heads,
        "out_hidden_size": cfg.hidden_size,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "window_size": 112,
        "fullatt_block_indexes": (
            [cfg.vision_depth - 1] if cfg.vision_window_attention else list(range(cfg.vision_depth))
        ),
    }
    return Qwen2_5_VLConfig(
        text_config=text_config,
        vision_config=vision_config,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )


def build_tiny_qwen2_5_vl(
    out_dir: str | pathlib.Path,
    config: TinyConfig | None = None,
    *,
    corpus: Sequence[str] | None = None,
    processor: str = "auto",
) -> pathlib.Path:
    """Build and save a randomly initialised tiny Qwen2.5-VL with its processor.

    ``config`` defaults to :meth:`TinyConfig.test`; ``corpus`` (tokenizer training text)
    to :func:`default_corpus`; ``processor`` is the ``kind`` of :func:`build_processor`.
    Weights are seeded by ``config.seed``: the same config and corpus give bit-identical
    weights, and the global torch RNG is left as it was. ``out_dir`` (created if needed)
    then holds ``model.safetensors``, ``config.json``, ``generation_config.json`` and the
    processor and tokenizer files. The generation config is greedy (``do_sample=False``),
    stops at ``<|im_end|>``, pads with ``<|endoftext|>``, allows 512 new tokens and
    suppresses the vision placeholder tokens (a generated ``<|image_pad|>`` would break the
    next forward pass over prompt plus completion). Takes well under a second once torch and
    transformers are imported. Returns ``out_dir`` as a ``pathlib.Path``.
    """
    import torch
    from transformers import GenerationConfig, Qwen2_5_VLForConditionalGeneration

    cfg = config or TinyConfig()
    cfg.validate()
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    tokenizer = build_tokenizer(corpus, vocab_size=cfg.vocab_size)
    proc = build_processor(tokenizer, cfg, kind=processor)
    model_config = _model_config(cfg, tokenizer)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = Qwen2_5_VLForConditionalGeneration(model_config).to(torch.float32)
    model.eval()
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}
    model.generation_config = GenerationConfig(
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
        do_sample=False,
        max_new_tokens=512,
        suppress_tokens=[ids[t] for t in _VISION_TOKENS],
    )
    model.save_pretrained(out)
    proc.save_pretrained(out)
    return out


def load_tiny(path: str | pathlib.Path) -> tuple[Any, Any]:
    """Load ``(model, processor)`` saved by :func:`build_tiny_qwen2_5_vl`.

    Plain ``AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32)`` (in eval
    mode) and ``AutoProcessor.from_pretrained(path)``.
    """
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32)
    model.eval()
    processor = AutoProcessor.from_pretrained(path)
    return model, processor


def build_release_shaped(path: str | pathlib.Path, *, seed: int = 0) -> pathlib.Path:
    """A random, seeded tiny checkpoint folder shaped like the hub's Qwen2.5-VL-7B-Instruct.

    Every file a loader reads as the release ships it (flat ``config.json`` with M-RoPE
    ``rope_scaling``, sharded bf16 safetensors under the release's tensor names, a tokenizer
    that pads on the right, sampling ``generation_config.json`` with repetition penalty 1.05,
    the release's pixel budgets and chat template), the sizes scaled down; see
    :mod:`omniad_train.tiny_release` for what is the release's and what is not.
    """
    from omniad_train.tiny_release import build_release_shaped as build

    return build(path, seed=seed)


def _main(argv: Sequence[str] | None = None) -> int:
    """``python -m omniad_train.tiny OUT_DIR [--preset test|demo] [--seed N]``."""
    import argparse

    p = argparse.ArgumentParser(
        prog="python -m omniad_train.tiny",
        description="Build a randomly initialised tiny Qwen2.5-VL with its processor (offline).",
    )
    p.add_argument("out_dir")
    p.add_argument("--preset", choices=("test", "demo"), default="test")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    cfg = (TinyConfig.demo if a.preset == "demo" else TinyConfig.test)(seed=a.seed)
    print(build_tiny_qwen2_5_vl(a.out_dir, cfg))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(_main())
