"""A tiny checkpoint folder shaped like the hub's ``Qwen/Qwen2.5-VL-7B-Instruct`` release.

:func:`omniad_train.tiny.build_tiny_qwen2_5_vl` saves what *we* would save (transformers 5
layout, left padding, greedy generation, small pixel budgets). A user's checkpoint is the
release, and its files differ exactly where first-run defects hide. :func:`build_release_shaped`
writes every file a loader reads the way the release ships it, with the model scaled down
and random, seeded weights.

**As the release** (file names, keys and values):

- ``config.json``: the flat, pre-transformers-5 layout (text fields at the top level,
  ``rope_scaling = {"type": "mrope", "mrope_section": ...}``, ``rope_theta`` 1e6,
  ``torch_dtype`` bfloat16, ``max_position_embeddings`` 128000, ``sliding_window`` 32768
  unused, ``rms_norm_eps`` 1e-6, ``tie_word_embeddings`` false); architecture
  ``Qwen2_5_VLForConditionalGeneration``; a vision tower with 14-px patches, 2x2 merge,
  2-frame temporal patches, 112-px windows and full attention in every ``k``-th block ending
  with the last (the release: ``[7, 15, 23, 31]`` of 32). The special tokens follow the
  BPE vocabulary in the release's order, so the release's *offsets* hold (image pad =
  ``<|endoftext|>`` + 12...), and the model's vocabulary is padded past the tokenizer's
  (152064 for 151665 tokens in the release).
- weights: bfloat16 safetensors, sharded with ``model.safetensors.index.json``, under the
  release's (pre-transformers-5) tensor names ``model.layers.*``, ``visual.*``, ``lm_head``.
- tokenizer: ``tokenizer.json``, ``vocab.json``, ``merges.txt`` and a ``tokenizer_config.json``
  with the release's keys: class ``Qwen2Tokenizer``, no BOS, no unknown token, eos
  ``<|im_end|>``, pad ``<|endoftext|>``, ``errors: replace``, ``model_max_length`` 131072,
  the 22 added tokens (14 special, 8 tool/FIM tokens), padding on the **right** (the class
  default the release relies on; written out here) and the release's chat template.
- ``chat_template.json`` (the release's file) and ``chat_template.jinja`` (what
  transformers 5 saves), both the release's template.
- ``generation_config.json``: sampling on (``do_sample`` true, ``temperature`` 0.1,
  ``top_p`` 0.001, ``top_k`` 1), ``repetition_penalty`` 1.05, eos ``[<|im_end|>,
  <|endoftext|>]``, bos and pad ``<|endoftext|>``.
- ``preprocessor_config.json``: ``min_pixels`` 3136, ``max_pixels`` 12845056 (up to
  16384 image tokens), patch 14, merge 2, temporal patch 2, the CLIP mean and std.

**Scaled down**: the sizes (:data:`SCALED_7B`, about 0.7M parameters: 2 text layers of
hidden 112 = 7 heads of 16 with one KV head, so the release's 7:1 grouped-query ratio, MLP
592 (the release's 5.3x); ``mrope_section`` ``[2, 3, 3]``, the release's ``16:24:24``
proportions summing to head_dim / 2; a vision tower of 4 blocks, 32 wide with 2 heads and
MLP 88, full attention in blocks 1 and 3 as the release's in every 8th), the tokenizer (a
few hundred BPE merges, so token *ids* are small: 512 for ``<|endoftext|>``, 524 for
``<|image_pad|>``; the release's relative layout, not its absolute ids 151643 and 151655)
and the padded vocabulary (a multiple of 64: 576 for 534 tokens).

**Different on CPU**: the processor class. Without a working torchvision
``Qwen2_5_VLProcessor`` cannot load (see :func:`omniad_train.tiny.qwen_processor_available`),
so ``processor_class`` names the class :func:`omniad_train.tiny.build_processor` picks, and
``tokenizer_config.json`` also names the image/video/vision tokens (the image-only processor
reads them from the tokenizer). With torchvision the release's ``Qwen2_5_VLProcessor`` is
named.

The release's published sizes are :data:`QWEN2_5_VL_7B` and :data:`QWEN2_5_VL_3B`; pass one
as ``sizes`` to build a full-size random checkpoint (``benchmarks/gpu_check.py`` does, on a
GPU).

>>> SCALED_7B.head_dim, SCALED_7B.mrope_section, SCALED_7B.num_heads // SCALED_7B.num_kv_heads
(16, [2, 3, 3], 7)
>>> QWEN2_5_VL_7B.mrope_section, QWEN2_5_VL_7B.num_heads // QWEN2_5_VL_7B.num_kv_heads
([16, 24, 24], 7)
>>> QWEN2_5_VL_3B.hidden_size, QWEN2_5_VL_3B.tie_word_embeddings
(2048, True)
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any

from omniad_train.tiny import (
    QWEN_SPECIAL_TOKENS,
    qwen_chat_template,
    qwen_processor_available,
    train_bpe,
)

__all__ = [
    "QWEN2_5_VL_3B",
    "QWEN2_5_VL_7B",
    "RELEASE_GENERATION",
    "RELEASE_IMAGE_PROCESSOR",
    "SCALED_7B",
    "ReleaseSizes",
    "build_release_shaped",
    "release_config",
]

#: Tokens the release adds after its 14 special tokens; not special (they are text).
EXTRA_TOKENS: tuple[str, ...] = (
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
)

#: The release's sampling defaults (``generation_config.json``), without the token ids.
RELEASE_GENERATION: dict[str, Any] = {
    "do_sample": True,
    "repetition_penalty": 1.05,
    "temperature": 0.1,
    "top_p": 0.001,
    "top_k": 1,
}

#: The release's ``preprocessor_config.json``, without ``processor_class``.
RELEASE_IMAGE_PROCESSOR: dict[str, Any] = {
    "min_pixels": 3136,
    "max_pixels": 12845056,
    "patch_size": 14,
    "temporal_patch_size": 2,
    "merge_size": 2,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "image_processor_type": "Qwen2VLImageProcessor",
}


@dataclasses.dataclass(frozen=True)
class ReleaseSizes:
    """The sizes of a Qwen2.5-VL checkpoint; everything else in its config is fixed."""

    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    vision_depth: int
    vision_hidden_size: int
    vision_intermediate_size: int
    vision_num_heads: int
    fullatt_block_indexes: tuple[int, ...]
    tie_word_embeddings: bool
    #: the model's (padded) vocabulary; 0 means the tokenizer's size rounded up to 64
    vocab_size: int = 0

    @property
    def head_dim(self) -> int:
        """Text attention head size."""
        return self.hidden_size // self.num_heads

    @property
    def mrope_section(self) -> list[int]:
        """Temporal, height, width RoPE sections in the release's 2:3:3 proportions."""
        eighth = self.head_dim // 16
        return [2 * eighth, 3 * eighth, 3 * eighth]


#: ``Qwen/Qwen2.5-VL-7B-Instruct``'s published shapes.
QWEN2_5_VL_7B = ReleaseSizes(
    3584, 18944, 28, 28, 4, 32, 1280, 3420, 16, (7, 15, 23, 31), False, 152064
)
#: ``Qwen/Qwen2.5-VL-3B-Instruct``'s published shapes (it ties its word embeddings).
QWEN2_5_VL_3B = ReleaseSizes(
    2048, 11008, 36, 16, 2, 32, 1280, 3420, 16, (7, 15, 23, 31), True, 151936
)
#: The 7B release scaled down: about 0.7M parameters, seconds to build and run on a CPU.
SCALED_7B = ReleaseSizes(112, 592, 2, 7, 1, 4, 32, 88, 2, (1, 3), False)


def _padded(n: int, multiple: int = 64) -> int:
    return -(-n // multiple) * multiple


def release_config(sizes: ReleaseSizes, ids: dict[str, int], vocab_size: int) -> dict[str, Any]:
    """``config.json`` in the release's flat layout, for ``sizes`` and the token ``ids``."""
    return {
        "architectures": ["Qwen2_5_VLForConditionalGeneration"],
        "attention_dropout": 0.0,
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
        "vision_token_id": ids["<|vision_pad|>"],
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "hidden_act": "silu",
        "hidden_size": sizes.hidden_size,
        "initializer_range": 0.02,
        "intermediate_size": sizes.intermediate_size,
        "max_position_embeddings": 128000,
        "max_window_layers": sizes.num_layers,
        "model_type": "qwen2_5_vl",
        "num_attention_heads": sizes.num_heads,
        "num_hidden_layers": sizes.num_layers,
        "num_key_value_heads": sizes.num_kv_heads,
        "rms_norm_eps": 1e-06,
        "rope_theta": 1000000.0,
        "sliding_window": 32768,
        "tie_word_embeddings": sizes.tie_word_embeddings,
        "torch_dtype": "bfloat16",
        "transformers_version": "4.41.2",
        "use_cache": True,
        "use_sliding_window": False,
        "vision_config": {
            "depth": sizes.vision_depth,
            "hidden_act": "silu",
            "hidden_size": sizes.vision_hidden_size,
            "intermediate_size": sizes.vision_intermediate_size,
            "num_heads": sizes.vision_num_heads,
            "in_chans": 3,
            "out_hidden_size": sizes.hidden_size,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "spatial_patch_size": 14,
            "window_size": 112,
            "fullatt_block_indexes": list(sizes.fullatt_block_indexes),
            "tokens_per_second": 2,
            "temporal_patch_size": 2,
        },
        "rope_scaling": {"type": "mrope", "mrope_section": sizes.mrope_section},
        "vocab_size": vocab_size,
    }


def _write_json(path: pathlib.Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _write_tokenizer(out: pathlib.Path, template: str, processor_class: str) -> dict[str, int]:
    """Tokenizer files as the release ships them; returns the id of every added token."""
    from tokenizers import AddedToken

    tok = train_bpe()
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in EXTRA_TOKENS])
    tok.save(str(out / "tokenizer.json"))
    tok.model.save(str(out))  # vocab.json and merges.txt
    added = {t: tok.token_to_id(t) for t in (*QWEN_SPECIAL_TOKENS, *EXTRA_TOKENS)}
    decoder = {
        str(i): {
            "content": t,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": t in QWEN_SPECIAL_TOKENS,
        }
        for t, i in added.items()
    }
    config = {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": decoder,
        "additional_special_tokens": list(QWEN_SPECIAL_TOKENS[1:]),
        "bos_token": None,
        "chat_template": template,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "errors": "replace",
        "model_max_length": 131072,
        "pad_token": "<|endoftext|>",
        "padding_side": "right",
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }
    if processor_class != "Qwen2_5_VLProcessor":  # the image-only processor reads these
        config.update(
            image_token="<|image_pad|>",
            video_token="<|video_pad|>",
            vision_start_token="<|vision_start|>",
            vision_end_token="<|vision_end|>",
        )
    _write_json(out / "tokenizer_config.json", config)
    return added


def _write_weights(out: pathlib.Path, model: Any, shards: int = 2) -> None:
    """Sharded safetensors under the release's tensor names, with the index file."""
    from safetensors.torch import save_file

    renames = (("model.language_model.", "model."), ("model.visual.", "visual."))
    state = {}
    for key, tensor in model.state_dict().items():
        name = next((old + key[len(new) :] for new, old in renames if key.startswith(new)), key)
        state[name] = tensor.detach()
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    keys = sorted(state, key=lambda k: (not k.startswith("visual."), k))
    per = -(-len(keys) // shards)
    weight_map, total = {}, 0
    for n in range(shards):
        name = f"model-{n + 1:05d}-of-{shards:05d}.safetensors"
        part = {k: state[k].cpu().contiguous() for k in keys[n * per : (n + 1) * per]}
        save_file(part, str(out / name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, name))
        total += sum(t.numel() * t.element_size() for t in part.values())
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    _write_json(out / "model.safetensors.index.json", index)


def build_release_shaped(
    path: str | pathlib.Path,
    *,
    seed: int = 0,
    sizes: ReleaseSizes = SCALED_7B,
    device: str = "cpu",
) -> pathlib.Path:
    """Write a random, seeded checkpoint folder shaped like the 7B release; returns its path.

    Parameters
    ----------
    path
        The folder (created if needed).
    seed
        Seeds the weights; the same seed gives bit-identical weights. The global torch RNG
        is left as it was.
    sizes
        :data:`SCALED_7B` (default), or a release's own sizes for a full-size random model.
    device
        Where the weights are initialised (``"cuda"`` for full-size models).

    Returns
    -------
    pathlib.Path
        ``path``, loadable with ``AutoModelForImageTextToText.from_pretrained`` and
        ``AutoProcessor.from_pretrained``; see the module docstring for what is the
        release's and what is scaled down.
    """
    import torch
    from transformers import AutoConfig, Qwen2_5_VLForConditionalGeneration

    out = pathlib.Path(path)
    out.mkdir(parents=True, exist_ok=True)
    template = qwen_chat_template()
    processor_class = (
        "Qwen2_5_VLProcessor" if qwen_processor_available() else "PaddleOCRVLProcessor"
    )
    ids = _write_tokenizer(out, template, processor_class)
    vocab = sizes.vocab_size or _padded(len(ids) + min(ids.values()))
    _write_json(out / "config.json", release_config(sizes, ids, vocab))
    _write_json(out / "chat_template.json", {"chat_template": template})
    (out / "chat_template.jinja").write_text(template, encoding="utf-8")
    _write_json(
        out / "preprocessor_config.json",
        {**RELEASE_IMAGE_PROCESSOR, "processor_class": processor_class},
    )
    generation = {
        "bos_token_id": ids["<|endoftext|>"],
        "pad_token_id": ids["<|endoftext|>"],
        "eos_token_id": [ids["<|im_end|>"], ids["<|endoftext|>"]],
        **RELEASE_GENERATION,
        "transformers_version": "4.49.0",
    }
    _write_json(out / "generation_config.json", generation)

    config = AutoConfig.from_pretrained(out)
    where = torch.device(device)
    rngs = [where.index or 0] if where.type == "cuda" else []
    with torch.random.fork_rng(devices=rngs):  # the global CPU (and CUDA) RNG stay as they were
        torch.manual_seed(seed)
        with torch.device(device):
            model = Qwen2_5_VLForConditionalGeneration(config)
    _write_weights(out, model.to(torch.bfloat16))
    return out
