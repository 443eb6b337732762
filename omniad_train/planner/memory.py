"""GPU memory per device, from the checkpoint's ``config.json`` only (no weights).

:func:`param_counts` computes the parameters of a Qwen2-VL / Qwen2.5-VL model from its
dimensions.  :func:`model_states_bytes` is the memory of weights, gradients and Adam
states per device under a ZeRO stage: DeepSpeed's own estimators
(``estimate_zero2_model_states_mem_needs`` / ``estimate_zero3_model_states_mem_needs``,
the functions behind its ``*_all_cold`` tables, which take parameter counts and build no
model) for stages 2 and 3, and for stages 0 and 1::

    stage 0 (DDP): 2 P (bf16 weights) + 2 P (grads) + 16 P (fp32 master, Adam m and v)
    stage 1:       4 P + 16 P / N

:func:`activation_bytes` is the activation estimate for a sequence of ``s`` tokens and a
micro-batch of ``b`` (``h`` hidden size, ``L`` layers, ``V`` vocabulary; bf16, with
fused attention so no ``s x s`` scores are stored)::

    gradient checkpointing: 2 s b h L  (each layer's input)  + 34 s b h  (one layer rebuilt)
    without:                34 s b h L
    plus the logits:        6 s_l b V  (bf16 logits and their fp32 log-softmax)

where ``s_l`` is the number of positions whose logits are kept (SFT: the sequence,
GRPO: the completion).  The vision tower's activations are left out (a 512-px image is
~1.3k patches through a 32-block, 1280-wide tower: well under a GiB).

>>> cfg = {"hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1,
...        "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 10}
>>> param_counts(cfg)["language"]  # embed 80 + q 72 + k, v 72 + o 64 + mlp 384 + norms 24 + head 80
776
>>> activation_bytes(seq=10, batch=1, hidden=8, layers=2, vocab=10, logit_positions=10,
...                  checkpointing=True)
3640
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["activation_bytes", "model_states_bytes", "param_counts", "read_model_config"]

GIB = 2**30


def read_model_config(path: str | Path) -> dict[str, Any]:
    """``config.json`` of a checkpoint folder as a flat mapping of its text model, with
    the vision tower's mapping under ``"vision_config"`` (release and transformers-5
    layouts alike)."""
    raw = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
    if not isinstance(raw, dict):
        raise ValueError("config.json does not hold a JSON object")
    text = raw.get("text_config") if isinstance(raw.get("text_config"), dict) else {}
    flat = {**raw, **text}
    flat.setdefault("tie_word_embeddings", raw.get("tie_word_embeddings", False))
    return flat


def _text_params(c: Mapping[str, Any]) -> tuple[int, int]:
    """(language-model parameters, largest single layer's)."""
    h, inter, n = int(c["hidden_size"]), int(c["intermediate_size"]), int(c["num_hidden_layers"])
    heads = int(c["num_attention_heads"])
    kv = int(c.get("num_key_value_heads") or heads)
    d = int(c.get("head_dim") or h // heads)
    vocab = int(c["vocab_size"])
    attn = (h * heads * d + heads * d) + 2 * (h * kv * d + kv * d) + heads * d * h
    layer = attn + 3 * h * inter + 2 * h
    embed = vocab * h
    head = 0 if c.get("tie_word_embeddings") else vocab * h
    return embed + n * layer + h + head, max(embed, layer)


def _vision_params(v: Mapping[str, Any], out_hidden: int) -> int:
    patch = int(v.get("patch_size", 14))
    temporal = int(v.get("temporal_patch_size", 2))
    channels = int(v.get("in_chans") or v.get("in_channels") or 3)
    merge = int(v.get("spatial_merge_size", 2))
    if "embed_dim" in v:  # Qwen2-VL: LayerNorm blocks with a two-layer MLP
        vh, out = int(v["embed_dim"]), int(v.get("hidden_size") or out_hidden)
        inter = int(vh * float(v.get("mlp_ratio", 4)))
        mlp, norms = 2 * vh * inter + inter + vh, 4 * vh
    else:  # Qwen2.5-VL: RMSNorm blocks with a gated MLP
        vh, out = int(v["hidden_size"]), int(v.get("out_hidden_size") or out_hidden)
        inter = int(v["intermediate_size"])
        mlp, norms = 2 * (vh * inter + inter) + inter * vh + vh, 2 * vh
    embed = channels * temporal * patch * patch * vh
    block = (vh * 3 * vh + 3 * vh) + (vh * vh + vh) + mlp + norms
    merged = vh * merge * merge
    merger = vh * (2 if "embed_dim" in v else 1) + (merged * merged + merged) + merged * out + out
    return embed + int(v["depth"]) * block + merger


def param_counts(config: Mapping[str, Any]) -> dict[str, int]:
    """Parameters from the dimensions: ``language``, ``vision``, ``total`` and
    ``largest_layer`` (the biggest single module: DeepSpeed's ZeRO-3 input)."""
    language, largest = _text_params(config)
    vision_cfg = config.get("vision_config")
    vision = _vision_params(vision_cfg, int(config["hidden_size"])) if vision_cfg else 0
    return {
        "language": language,
        "vision": vision,
        "total": language + vision,
        "largest_layer": largest,
    }


def model_states_bytes(
    total: int,
    largest_layer: int,
    *,
    stage: int,
    world_size: int,
    offload_optimizer: bool = False,
    offload_params: bool = False,
    trainable: int | None = None,
) -> int:
    """Bytes per device for weights, gradients and Adam states under ZeRO ``stage``.

    ``trainable`` (LoRA: the adapter's parameters) makes the frozen weights cost 2 bytes
    each (1/N of that under ZeRO-3) and the trainable ones the full 18 bytes each.
    """
    n = max(1, world_size)
    if trainable is not None:
        frozen = 2 * total // (n if stage == 3 else 1)
        return frozen + 18 * trainable // (n if stage >= 1 else 1)
    if stage >= 2:
        try:
            if stage == 3:
                from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs

                _, gpu, _ = estimate_zero3_model_states_mem_needs(
                    total_params=total,
                    largest_layer_params=largest_layer,
                    num_gpus_per_node=n,
                    num_nodes=1,
                    cpu_offload=offload_optimizer,
                    cpu_offload_params=offload_params,
                    zero_init=True,
                )
            else:
                from deepspeed.runtime.zero.stage_1_and_2 import (
                    estimate_zero2_model_states_mem_needs,
                )

                _, gpu = estimate_zero2_model_states_mem_needs(
                    total_params=total,
                    num_gpus_per_node=n,
                    num_nodes=1,
                    cpu_offload=offload_optimizer,
                )
            return int(gpu)
        except ImportError:  # the same formulas, for a machine without deepspeed
            if stage == 3:
                if offload_params:
                    return 4 * largest_layer
                return 4 * largest_layer + (2 if offload_optimizer else 18) * total // n
            return 2 * total + (0 if offload_optimizer else 18 * total // n)
    if stage == 1:
        return 4 * total + 16 * total // n
    return 20 * total


def activation_bytes(
    *,
    seq: int,
    batch: int,
    hidden: int,
    layers: int,
    vocab: int,
    logit_positions: int,
    checkpointing: bool,
) -> int:
    """Activation bytes of one micro-batch (formula in the module docstring)."""
    per_layer = 34 * seq * batch * hidden
    kept = 2 * seq * batch * hidden * layers + per_layer  # with checkpointing
    body = kept if checkpointing else per_layer * layers
    return body + 6 * logit_positions * batch * vocab
