"""Token counts of a run in the checkpoint's own tokens: images, prompts and targets.

Nothing here loads weights: the tokenizer, the image processor and (to see whether the
run can load it) the processor come from the checkpoint folder.

- Image tokens: Qwen2.5-VL gives one token per 28 x 28 px (14-px patches merged 2 x 2).
  :func:`pinned_pixels` is the budget of an ``image_size`` square; :func:`image_tokens`
  runs the checkpoint's image processor on such a square under that budget.
- Target lengths: SFT completions as the dataset holds them; GRPO targets rendered from
  the ground-truth ``seg`` (the canonical encoding) plus a reasoning allowance, since a
  GRPO completion is generated.  Counts include the end-of-turn token.

>>> pinned_pixels(512), pinned_pixels(512) // 28**2
(254016, 324)
>>> length_stats([1, 2, 3, 4, 100])
{'p50': 3, 'p90': 100, 'p99': 100, 'max': 100, 'rows': 5}
>>> truncated_fraction([10, 20, 30, 40], 25)
0.5
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omniad_core.checkpoint import image_pixel_budget as pinned_pixels

__all__ = [
    "DEFAULT_REASONING_TOKENS",
    "MAX_ROWS",
    "image_tokens",
    "length_stats",
    "pinned_pixels",
    "prompt_lengths",
    "saved_pixel_budget",
    "target_lengths",
    "truncated_fraction",
]

#: Tokens allowed for ``<think>..</think>`` when sizing a GRPO completion.
DEFAULT_REASONING_TOKENS = 256
#: Rows measured at most (evenly spaced over the split), so a plan stays quick.
MAX_ROWS = 5000


def saved_pixel_budget(image_processor: Any) -> tuple[int | None, int | None]:
    """``(min_pixels, max_pixels)`` the checkpoint's image processor was saved with."""
    size = getattr(image_processor, "size", None)
    get = (lambda k: size.get(k)) if isinstance(size, dict) else (lambda k: getattr(size, k, None))
    lo = getattr(image_processor, "min_pixels", None) or get("shortest_edge")
    hi = getattr(image_processor, "max_pixels", None) or get("longest_edge")
    return lo, hi


def image_tokens(image_processor: Any, image_size: int, max_pixels: int | None) -> int:
    """Tokens of one ``image_size`` square through ``image_processor`` (its own resize),
    under ``max_pixels`` (None: the processor's saved budget)."""
    from PIL import Image

    kwargs: dict[str, Any] = {}
    if max_pixels is not None:
        lo, _ = saved_pixel_budget(image_processor)
        kwargs["size"] = {"shortest_edge": min(lo or 3136, max_pixels), "longest_edge": max_pixels}
    out = image_processor(
        images=[Image.new("RGB", (image_size, image_size))], return_tensors="np", **kwargs
    )
    merge = int(getattr(image_processor, "merge_size", 2) or 2)
    return int(math.prod(int(x) for x in out["image_grid_thw"][0]) // merge**2)


def length_stats(values: Sequence[int]) -> dict[str, int] | None:
    """``p50``, ``p90``, ``p99`` (nearest rank), ``max`` and ``rows``; None when empty."""
    if not values:
        return None
    xs = sorted(values)

    def rank(q: float) -> int:
        return xs[min(len(xs) - 1, max(0, math.ceil(q * len(xs)) - 1))]

    return {"p50": rank(0.5), "p90": rank(0.9), "p99": rank(0.99), "max": xs[-1], "rows": len(xs)}


def truncated_fraction(values: Sequence[int], limit: int | None) -> float | None:
    """Fraction of ``values`` over ``limit`` (None without values or without a limit)."""
    if not values or limit is None:
        return None
    return sum(v > limit for v in values) / len(values)


def _rows(folder: Path, split: str, columns: Sequence[str], max_rows: int) -> tuple[Any, int]:
    """The split's ``columns`` (no image is decoded), at most ``max_rows`` evenly spaced."""
    from datasets import load_from_disk

    data = load_from_disk(str(folder))[split]
    n = len(data)
    data = data.select_columns([c for c in columns if c in data.column_names])
    if n > max_rows:
        step = n / max_rows
        data = data.select([int(i * step) for i in range(max_rows)])
    return data, n


def _text(message: Any) -> str:
    content = message["content"]
    if isinstance(content, str):
        return content
    return "".join(part.get("text") or "" for part in content)


def target_lengths(
    folder: Path,
    split: str,
    kind: str,
    tokenizer: Any,
    *,
    reasoning_tokens: int = DEFAULT_REASONING_TOKENS,
    max_rows: int = MAX_ROWS,
) -> tuple[list[int], int]:
    """Target tokens per row and the split's row count.

    ``kind`` ``"sft"``: the completion's text; ``"grpo"``: ``<seg>SEG</seg><think>
    </think><answer>A</answer>`` from the ``seg`` and ``answer`` columns plus
    ``reasoning_tokens``.  Both count one more token for the end of the turn.
    """
    from omniad_train.data.reasoning import sft_target

    if kind == "sft":
        data, n = _rows(folder, split, ["completion"], max_rows)
        texts = [_text(c[-1]) for c in data["completion"]]
        extra = 1
    else:
        data, n = _rows(folder, split, ["seg", "answer"], max_rows)
        texts = [
            sft_target(s or "", "", a or "")
            for s, a in zip(data["seg"], data["answer"], strict=True)
        ]
        extra = 1 + reasoning_tokens
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
    return [len(x) + extra for x in ids], n


def prompt_lengths(
    folder: Path,
    split: str,
    renderer: Any,
    tokenizer: Any,
    tokens_per_image: int,
    *,
    max_rows: int = MAX_ROWS,
) -> list[int]:
    """Prompt tokens per row: the chat template's text with every image placeholder
    expanded to ``tokens_per_image`` (``renderer`` has ``apply_chat_template``)."""
    data, _ = _rows(folder, split, ["prompt"], max_rows)
    out = []
    for prompt in data["prompt"]:
        text = renderer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        images = sum(
            1
            for m in prompt
            if not isinstance(m["content"], str)
            for part in m["content"]
            if part.get("type") == "image"
        )
        n = len(tokenizer(text, add_special_tokens=False)["input_ids"])
        out.append(n + images * (tokens_per_image - 1))
    return out
