"""Synthetic industrial defect images with exact masks and MMAD-style questions.

Textured surfaces (fabric, brushed metal, wood, tile, leather) and objects on a
background (bottle cap, screw, pill, printed circuit board) with scratches, cracks,
holes, stains, contamination, missing and misplaced parts.  Everything is pure numpy
and deterministic by seed.

- :func:`render_sample` renders one image (and its exact mask) in memory.
- :func:`generate` writes MVTec-style folders plus an MMAD-style ``mmad.json``.
- :func:`synthetic_main` is the command line (``omniad-train synth``).

See ``docs/synthetic.md``.
"""

from omniad_train.synthetic.defects import DESCRIPTIONS
from omniad_train.synthetic.questions import DEFECT_NAMES, questions_for
from omniad_train.synthetic.render import CATEGORIES, Category, Sample, render_sample, sample_seed
from omniad_train.synthetic.writer import GenerationResult, build_parser, generate, synthetic_main

__all__ = [
    "CATEGORIES",
    "DEFECT_NAMES",
    "DESCRIPTIONS",
    "Category",
    "GenerationResult",
    "Sample",
    "build_parser",
    "generate",
    "questions_for",
    "render_sample",
    "sample_seed",
    "synthetic_main",
]
