"""Stage 0 for a model built from scratch: teach its vision tower positions and defects.

A real Qwen2.5-VL starts SFT with a vision encoder pretrained on billions of images. The
demo model (:func:`omniad_train.tiny.build_tiny_qwen2_5_vl`) starts from random weights,
and minutes of CPU SFT alone teach its language model the response template while it
ignores the image: measured on the demo data, the SFT loss with every image swapped for
another one's was within 2% of the loss with the right images, and the model wrote the
same ``<seg>`` for every picture. Two things are missing at random init:

* **where** a visual token is. Qwen2.5-VL's vision tower has only rotary (relative)
  positions, yet the ``<seg>`` text names absolute rows and columns;
* **what** a defect looks like, which a tiny tower does not pick up through the long,
  indirect path of next-token loss in a few hundred steps.

:func:`pretrain_vision` stands in for the pretrained encoder: it trains the vision tower
(patch embedding, blocks and merger) with two per-token heads that are discarded
afterwards, one classifying the token's row and column in the merged-token grid, one
predicting whether the token's pixels contain a defect (from the prepared training
masks). The language model is not touched. SFT and GRPO then run as for any checkpoint.
This is for models built from scratch; do not run it on a pretrained Qwen2.5-VL.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from textmask import Scores

__all__ = ["VisionPretrainResult", "pretrain_vision", "token_labels"]


@dataclass
class VisionPretrainResult:
    """What :func:`pretrain_vision` did: the saved model and its held-back figures."""

    out_dir: Path
    steps: int
    images: int
    position_accuracy: float
    defect_f1: float
    seconds: float


def token_labels(mask: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Which cells of a ``rows x cols`` split of ``mask`` hold any defect pixel.

    >>> m = np.zeros((4, 6), bool); m[3, 5] = True
    >>> token_labels(m, 2, 3).astype(int).tolist()
    [[0, 0, 0], [0, 0, 1]]
    """
    mask = np.asarray(mask) > 0
    h, w = mask.shape
    ys = np.linspace(0, h, rows + 1).round().astype(int)
    xs = np.linspace(0, w, cols + 1).round().astype(int)
    out = np.zeros((rows, cols), bool)
    for i in range(rows):
        band = mask[ys[i] : max(ys[i + 1], ys[i] + 1)]
        for j in range(cols):
            out[i, j] = band[:, xs[j] : max(xs[j + 1], xs[j] + 1)].any()
    return out


def _unique_images(dataset: Any, limit: int | None) -> list[tuple[Any, np.ndarray]]:
    """One (image, mask) pair per distinct image of a prepared SFT split."""
    seen: set[str] = set()
    pairs = []
    for row in dataset:
        key = row["image_path"]
        if key in seen:
            continue
        seen.add(key)
        image = row["images"][-1]  # the query image (a 1-shot row has the reference first)
        mask = row["mask"]
        if mask is None:
            raise ValueError(
                f"prepared row for {key} has no mask; re-run `omniad-train prepare` "
                "(it stores an all-zero mask for normal images)"
            )
        pairs.append((image.convert("RGB"), np.asarray(mask) > 0))
        if limit is not None and len(pairs) >= limit:
            break
    return pairs


def pretrain_vision(
    model_path: str | Path,
    dataset_path: str | Path,
    out_dir: str | Path,
    *,
    steps: int = 800,
    learning_rate: float = 1e-3,
    batch_size: int = 8,
    held_out: float = 0.1,
    max_images: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> VisionPretrainResult:
    """Train the vision tower of ``model_path`` on positions and defect masks; save it.

    Parameters
    ----------
    model_path
        A Qwen2.5-VL-style checkpoint (safetensors) with a ``visual`` tower.
    dataset_path
        A folder written by ``omniad-train prepare`` (its ``sft`` split is read).
    out_dir
        Where the checkpoint (all weights, the processor, ``vision_pretrain.json``) goes.
    steps, learning_rate, batch_size, seed
        AdamW steps over random batches of distinct training images.
    held_out
        Fraction of the images kept out of training to report position accuracy and
        defect F1 (of the discarded heads) in ``vision_pretrain.json`` (null there, and
        NaN in the result, when 10 or fewer images leave none to hold out).
    max_images
        Use at most this many distinct images (they are held in memory; the demo's
        545 images at 224 px take about 80 MB).

    The stage takes about 3 minutes for the demo; an interrupted run starts over (the
    demo marks it finished only once the checkpoint is written).
    """
    import time

    import torch
    from datasets import load_from_disk
    from tqdm.auto import tqdm
    from transformers import AutoModelForImageTextToText, AutoProcessor

    t0 = time.perf_counter()
    folder = Path(dataset_path) / "sft"
    if not folder.is_dir():
        raise FileNotFoundError(
            f"{folder} not found; pass the folder written by `omniad-train prepare`"
        )
    data = load_from_disk(str(folder))
    data = data["train"] if hasattr(data, "keys") else data
    pairs = _unique_images(data, max_images)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(pairs))
    n_test = round(held_out * len(pairs)) if len(pairs) > 10 else 0
    test = [pairs[i] for i in order[:n_test]]
    train = [pairs[i] for i in order[n_test:]]
    if not train:
        raise ValueError(f"{folder} holds no images to train on")

    processor = AutoProcessor.from_pretrained(model_path)
    model = AutoModelForImageTextToText.from_pretrained(model_path, use_safetensors=True)
    visual = getattr(getattr(model, "model", model), "visual", None)
    if visual is None:
        raise ValueError(f"{type(model).__name__} has no `visual` tower to pretrain")
    merge = int(model.config.vision_config.spatial_merge_size)
    width = int(model.config.vision_config.out_hidden_size)
    torch.manual_seed(seed)

    def encode(images: list[Any]) -> tuple[list[Any], list[tuple[int, int]]]:
        inputs = processor.image_processor(images=images, return_tensors="pt")
        out = model.model.get_image_features(inputs["pixel_values"], inputs["image_grid_thw"])
        out = getattr(out, "pooler_output", out)
        out = torch.cat(list(out)) if isinstance(out, (list, tuple)) else out
        grids = [(int(h) // merge, int(w) // merge) for _, h, w in inputs["image_grid_thw"]]
        return list(out.split([r * c for r, c in grids])), grids

    # the token grid of one image, from the processor alone (no forward pass)
    _, h, w = processor.image_processor(images=[train[0][0]], return_tensors="pt")[
        "image_grid_thw"
    ][0]
    grid = rows, cols = int(h) // merge, int(w) // merge
    defect_head = torch.nn.Linear(width, 1)
    position_head = torch.nn.Linear(width, rows + cols)
    params = [*visual.parameters(), *defect_head.parameters(), *position_head.parameters()]
    optimizer = torch.optim.AdamW(params, lr=learning_rate, weight_decay=0.03)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=learning_rate, total_steps=steps, pct_start=0.05
    )
    labels = [token_labels(m, rows, cols).reshape(-1) for _, m in train]
    rate = float(np.mean(labels)) if labels else 0.0
    pos_weight = torch.tensor(min(max((1 - rate) / max(rate, 1e-6), 1.0), 20.0))
    r_idx = torch.arange(rows * cols) // cols
    c_idx = torch.arange(rows * cols) % cols

    def losses(batch: list[int]) -> Any:
        feats, grids = encode([train[i][0] for i in batch])
        if any(g != (rows, cols) for g in grids):
            raise ValueError(
                f"images give token grids {sorted(set(grids))}, expected one grid {grid}; "
                "prepare the data at one image size"
            )
        f = torch.cat(feats)
        y = torch.tensor(np.concatenate([labels[i] for i in batch]), dtype=torch.float32)
        defect = torch.nn.functional.binary_cross_entropy_with_logits(
            defect_head(f).squeeze(-1), y, pos_weight=pos_weight
        )
        pos = position_head(f)
        n = len(batch)
        position = torch.nn.functional.cross_entropy(pos[:, :rows], r_idx.repeat(n))
        position = position + torch.nn.functional.cross_entropy(pos[:, rows:], c_idx.repeat(n))
        return defect + position

    model.train()
    bar = tqdm(range(steps), desc="vision pretraining", disable=not progress)
    for _ in bar:
        batch = rng.choice(len(train), size=min(batch_size, len(train)), replace=False).tolist()
        loss = losses(batch)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")

    model.eval()
    pos_ok = pos_n = tp = fp = fn = 0
    with torch.no_grad():
        for k in range(0, len(test), batch_size):
            chunk = test[k : k + batch_size]
            feats, _ = encode([im for im, _ in chunk])
            for f, (_, m) in zip(feats, chunk, strict=True):
                pos = position_head(f)
                pos_ok += int((pos[:, :rows].argmax(1) == r_idx).sum())
                pos_ok += int((pos[:, rows:].argmax(1) == c_idx).sum())
                pos_n += 2 * rows * cols
                pred = (defect_head(f).squeeze(-1) > 0).numpy()
                truth = token_labels(m, rows, cols).reshape(-1)
                tp += int((pred & truth).sum())
                fp += int((pred & ~truth).sum())
                fn += int((~pred & truth).sum())
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    for name in ("omniad.json", "README.md"):  # keep the spec and card of the input
        if (Path(model_path) / name).is_file() and Path(model_path).resolve() != out.resolve():
            shutil.copyfile(Path(model_path) / name, out / name)
    result = VisionPretrainResult(
        out_dir=out,
        steps=steps,
        images=len(train),
        position_accuracy=pos_ok / pos_n if pos_n else float("nan"),
        defect_f1=Scores(tp, fp, fn, 0).f1 if test else float("nan"),
        seconds=time.perf_counter() - t0,
    )
    info = {k: (None if isinstance(v, float) and v != v else v) for k, v in asdict(result).items()}
    info = {
        **info,
        "out_dir": str(out),
        "learning_rate": learning_rate,
        "batch_size": batch_size,
        "held_out_images": len(test),
        "seed": seed,
    }
    (out / "vision_pretrain.json").write_text(json.dumps(info, indent=1) + "\n")
    return result
