"""Codec fidelity: the best pixel F1 a perfect model reaches through the codec, per grid,
threshold and defect kind (about the format, not speed)."""

from __future__ import annotations

from _tables import Section, log
from _timing import Config

import textmask as tm
from textmask.fidelity import DEFECT_KINDS

__all__ = ["fidelity_section"]


def fidelity_section(cfg: Config) -> Section:
    """Measure :func:`textmask.codec_fidelity` and return its table."""
    log(f"fidelity: codec_fidelity(defect_masks({cfg.fidelity_n}, (512, 512), seed=0))")
    masks = tm.defect_masks(cfg.fidelity_n, (512, 512), seed=0)
    grids, thresholds = (8, 16, 24, 32, 48), (0.0, 0.25, 0.5)
    rows = tm.codec_fidelity(masks, grids=grids, thresholds=thresholds)
    by = {(r["grid"], r["threshold"], r["kind"]): r for r in rows}
    kinds = [*DEFECT_KINDS, "all"]
    sec = Section(
        f"Codec fidelity ({cfg.fidelity_n} masks per kind, 512 x 512)",
        "`textmask.codec_fidelity(textmask.defect_masks(n, (512, 512), seed=0), "
        "grids=(8, 16, 24, 32, 48), thresholds=(0, 0.25, 0.5))`: every mask is encoded "
        "and decoded to pixels, and the result compared with the mask itself.  The mean "
        "pixel F1 is the best a perfect model can score through the codec; *lost* is the "
        "fraction of masks whose text is empty (the defect vanished).  Scratches are thin "
        "and pay most for coarse grids; thresholds above 0 lose small defects.",
        ["grid", "threshold"] + [f"F1 {k}" for k in kinds] + [f"lost {k}" for k in kinds],
    )
    for g in grids:
        for thr in thresholds:
            cells = [f"{by[(g, thr, k)]['mean_f1']:.3f}" for k in kinds]
            cells += [f"{by[(g, thr, k)]['lost']:.2f}" for k in kinds]
            sec.rows.append([f"{g} x {g}", f"{thr:g}", *cells])
    return sec
