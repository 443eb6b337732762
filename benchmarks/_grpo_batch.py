"""Reward speed on a GRPO batch: 16 ground truths x 16 completions = 256 seg texts.

:func:`grpo_batch` writes the completions the way a model might (perturbed predictions,
prose, line breaks, brackets, garbage); :func:`bench_grpo` checks that textmask and the
naive path give the same rewards, then times both; :func:`grpo_section` is the table.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import numpy as np
from _inputs import GRID
from _tables import Section, log
from _timing import Config, best_time, best_times, div, ratio, us

import textmask as tm

__all__ = ["GrpoResult", "bench_grpo", "grpo_batch", "grpo_section"]


# --------------------------------------------------------------------------- inputs
_PROSE = (
    "The anomalous region is {}.",
    "Looking at the surface, I see a defect.\n{}\nThe rest of the part is normal.",
    "Answer: {} (24 x 24 grid)",
)
_GARBAGE = (
    "none",
    "no anomaly",
    "(3, x)-(4,",
    "[[,]] 12 34 ((",
    "(99, 99), (-1, 5)",
    "the defect spans (2, 20)-(4, 3) roughly",
    "lorem ipsum dolor sit amet",
)


def _perturb(cells: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A slightly wrong prediction of ``cells``: shifted, dilated, eroded or spotted."""
    c = cells.copy()
    op = int(rng.integers(0, 5))
    if op == 1:  # shift by up to one cell
        dy, dx = (int(v) for v in rng.integers(-1, 2, size=2))
        c = np.roll(c, (dy, dx), axis=(0, 1))
    elif op == 2:  # dilate horizontally and vertically
        c = c | np.roll(c, 1, 0) | np.roll(c, -1, 0) | np.roll(c, 1, 1) | np.roll(c, -1, 1)
    elif op == 3:  # drop a third of the cells
        c &= rng.random(c.shape) > 0.33
    if op == 4 or rng.random() < 0.25:  # a few false positives
        c[rng.integers(0, GRID, 2), rng.integers(0, GRID, 2)] = True
    return c


def _dress(text: str, rng: np.random.Generator) -> str:
    """Write a canonical text the way a model might: prose, line breaks, brackets, junk."""
    u = rng.random()
    if u < 0.05:
        return ""
    if u < 0.10:
        return str(rng.choice(_GARBAGE))
    if u < 0.25:
        return str(rng.choice(_PROSE)).format(text)
    if u < 0.40:  # "(14,\n12)": line breaks inside pairs and between runs
        return text.replace(", ", ",\n")
    if u < 0.48:  # "[3, 4] to [3, 6]"
        return text.replace("(", "[").replace(")", "]").replace("]-[", "] to [")
    return text


def grpo_batch(seed: int = 1) -> tuple[list[np.ndarray], list[str]]:
    """16 ground truths (12 defects, 4 normal) and 16 completions for each of them."""
    rng = np.random.default_rng(seed)
    gts = [m.astype(np.uint8) for _, m in tm.defect_masks(4, (512, 512), seed=seed)]
    gts += [np.zeros((512, 512), np.uint8) for _ in range(4)]
    texts = []
    for gt in gts:
        cells = tm.patchify(gt)
        for _ in range(16):
            pred = _perturb(cells, rng) if rng.random() < 0.9 else cells
            texts.append(_dress(tm.runs_to_text(tm.cells_to_runs(pred)), rng))
    return gts, texts


# --------------------------------------------------------------------------- timing
@dataclass
class GrpoResult:
    """Seconds per batch of each implementation, and a line describing the batch."""

    ours_gt: float
    ours_mask: float
    prepare: float
    loop_gt: float
    naive: float
    n_texts: int
    stats: str


def bench_grpo(cfg: Config, naive: ModuleType) -> GrpoResult:
    """Check that every implementation gives the same rewards on the batch, then time it."""
    log("GRPO batch: 16 ground truths x 16 completions")
    gts, texts = grpo_batch()
    prepared = [tm.GroundTruth(m) for m in gts]
    targets_gt = [prepared[k // 16] for k in range(len(texts))]
    targets_mask = [gts[k // 16] for k in range(len(texts))]

    ours = tm.detection_rewards(texts, targets_gt)
    assert np.array_equal(ours, tm.detection_rewards(texts, targets_mask))
    slow = np.array(
        [naive.naive_detection_reward(x, m) for x, m in zip(texts, targets_mask, strict=True)]
    )
    assert np.allclose(ours, slow, rtol=1e-12, atol=0.0), np.flatnonzero(ours != slow)
    loop = np.array([tm.detection_reward(x, g) for x, g in zip(texts, targets_gt, strict=True)])
    assert np.array_equal(ours, loop)

    def naive_loop() -> list[float]:
        return [
            naive.naive_detection_reward(x, m) for x, m in zip(texts, targets_mask, strict=True)
        ]

    n_empty = sum(1 for x in texts if not x)
    stats = (
        f"{len(texts)} texts, {sum(map(len, texts)):,} characters, {n_empty} empty; "
        f"mean reward {ours.mean():.3f}, {int((ours == 0).sum())} zero rewards"
    )
    t = best_times(
        {
            "ours_gt": lambda: tm.detection_rewards(texts, targets_gt),
            "ours_mask": lambda: tm.detection_rewards(texts, targets_mask),
            "prepare": lambda: [tm.GroundTruth(m) for m in gts],
            "loop_gt": lambda: [
                tm.detection_reward(x, g) for x, g in zip(texts, targets_gt, strict=True)
            ],
        },
        cfg.repeat,
    )
    return GrpoResult(
        ours_gt=t["ours_gt"],
        ours_mask=t["ours_mask"],
        prepare=t["prepare"],
        loop_gt=t["loop_gt"],
        naive=best_time(naive_loop, cfg.grpo_naive_repeat),
        n_texts=len(texts),
        stats=stats,
    )


def grpo_section(g: GrpoResult) -> Section:
    """The *GRPO batch* table."""
    sec = Section(
        "GRPO batch: 16 ground truths x 16 completions (256 seg texts, 512 x 512)",
        "Ground truths are 12 synthetic defects (`defect_masks(4, (512, 512), seed=1)`) "
        "and 4 normal (empty) masks.  Each completion is the canonical text of a slightly "
        "perturbed prediction (shifted, dilated, eroded, with false positives), some "
        "wrapped in prose, with line breaks inside pairs (`(14,\\n12)`), in `[r, c] to "
        "[r, c]` style, empty, or garbage.  `targets` is a list of 256 entries repeating "
        "16 objects: prepared `GroundTruth`s, or raw masks (then the 16 preparations are "
        "included).  The naive path loops over the 256 texts; its rewards were checked "
        "equal to textmask's before timing.",
        ["implementation", "µs / batch", "µs / text", "naive / this"],
    )
    rows = [
        ("detection_rewards(texts, GroundTruth x 256)", g.ours_gt),
        ("detection_rewards(texts, raw masks x 256)", g.ours_mask),
        ("  of which: 16 x GroundTruth(mask)", g.prepare),
        ("loop of 256 x detection_reward(text, gt)", g.loop_gt),
        ("naive path, loop of 256 (benchmarks/naive.py)", g.naive),
    ]
    for name, t in rows:
        sec.rows.append([name, us(t), us(t / g.n_texts), ratio(div(g.naive, t))])
    sec.notes.append(g.stats)
    return sec
