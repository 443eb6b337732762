"""MMAD-style multiple-choice questions about a rendered sample, correct by construction.

Every answer comes from what the generator drew (the category, the defect type, the
appearance it chose, the mask, the scene's facts), never from looking at pixels.  Option
order is shuffled by :func:`~omniad_train.data.reasoning.rng_for` from the seed and the
image key, so a re-run writes the same file.  The question texts and the option helpers
are those of the template questions of image folders (:mod:`omniad_train.data.templates`,
:func:`~omniad_train.data.reasoning.choice_options`).
"""

from __future__ import annotations

from typing import Any

from omniad_core.prompts import DEFECT_QUESTION
from omniad_train.data.reasoning import (
    LOCATION_QUESTION,
    choice_options,
    describe_mask,
    location_question,
    shuffled,
)
from omniad_train.data.templates import (
    CLASSIFICATION_QUESTION,
    DESCRIPTION_QUESTION,
    OBJECT_QUESTION,
)
from omniad_train.synthetic.defects import DESCRIPTIONS, confusable
from omniad_train.synthetic.objects import BOARD_COLOURS, CAP_COLOURS, PILL_COLOURS, SCREW_COLOURS
from omniad_train.synthetic.render import CATEGORIES, Sample
from omniad_train.synthetic.textures import (
    FABRIC_COLOURS,
    LEATHER_COLOURS,
    METAL_COLOURS,
    TILE_COLOURS,
    WOOD_COLOURS,
)

__all__ = [
    "CLASSIFICATION_QUESTION",
    "COUNT_QUESTION",
    "DEFECT_NAMES",
    "DESCRIPTION_QUESTION",
    "OBJECT_QUESTION",
    "answer_text",
    "questions_for",
]

COUNT_QUESTION = "How many components are on the board?"

#: Option text of each defect type (the folder name is the key).
DEFECT_NAMES = {
    "scratch": "scratch",
    "crack": "crack",
    "hole": "hole",
    "stain": "stain",
    "contamination": "contamination",
    "missing": "missing component",
    "misplaced": "misplaced component",
}

# products that are never drawn, as extra distractors (none looks like a drawn category)
_OTHER_PRODUCTS = ("metal nut", "cable", "zipper", "bottle", "hazelnut", "toothbrush")

_PALETTES = {
    "fabric": FABRIC_COLOURS,
    "metal": METAL_COLOURS,
    "wood": WOOD_COLOURS,
    "tile": TILE_COLOURS,
    "leather": LEATHER_COLOURS,
    "bottle_cap": CAP_COLOURS,
    "screw": SCREW_COLOURS,
    "pill": PILL_COLOURS,
    "pcb": BOARD_COLOURS,
}
_FILLER_COLOURS = ("purple", "blue", "green", "black", "white", "grey", "orange", "yellow")
# colours too close to a palette colour to be a fair distractor
_NEAR = {
    "metal": {"grey", "white", "yellow", "orange"},
    "screw": {"grey", "white", "yellow"},
    "wood": {"orange", "yellow"},
    "leather": {"orange"},
    "bottle_cap": {"grey", "yellow"},
    "pill": {"grey"},
    "tile": {"black"},
    "fabric": {"purple", "black"},
}

# Object Structure questions: scene attribute -> (question, every possible answer)
_STRUCTURE: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "fabric": (
        "weave",
        "What weave pattern does the fabric have?",
        ("plain weave", "twill weave", "satin weave", "knitted loops"),
    ),
    "metal": (
        "brushing",
        "In which direction is the metal brushed?",
        ("horizontal", "vertical", "diagonal", "in circles"),
    ),
    "wood": (
        "grain",
        "In which direction does the wood grain run?",
        ("horizontal", "vertical", "diagonal", "in circles"),
    ),
    "screw": (
        "head",
        "On which side of the image is the head of the screw?",
        ("left", "right", "top", "bottom"),
    ),
    "pill": ("shape", "What shape is the pill?", ("round", "oval", "square", "triangular")),
}


#: Option helpers shared with the template questions of image folders.
_choice = choice_options
_shuffled = shuffled


def _q(question: str, options: dict[str, str], answer: str, type_: str) -> dict[str, Any]:
    return {"Question": question, "Answer": answer, "Options": options, "type": type_}


def _count_options(count: int, *, seed: int, key: str) -> tuple[dict[str, str], str]:
    near = [c for c in range(max(1, count - 3), count + 4) if c != count]
    picks = _shuffled(near, seed=seed, key=key, tag="count-pick")[:3]
    texts = sorted([count, *picks])
    options = {chr(65 + k): str(t) for k, t in enumerate(texts)}  # numbers stay in order
    return options, next(k for k, t in options.items() if t == str(count))


def questions_for(sample: Sample, *, seed: int, key: str) -> list[dict[str, Any]]:
    """The MMAD ``conversation`` list for one sample.

    Every image gets Anomaly Discrimination, Object Classification and Object Analysis
    questions (colour, plus structure or component count where the category has one);
    defect images also get Defect Classification, Localization and Description.  Raw
    MMAD type names are used for Object Analysis ("Object Details" for colour, "Object
    Structure" for structure and counts).  Defect Analysis questions are not generated.
    """
    cat = CATEGORIES[sample.category]
    out: list[dict[str, Any]] = []
    defect = sample.defect
    out.append(
        _q(
            DEFECT_QUESTION,
            {"A": "Yes", "B": "No"},
            "A" if defect else "B",
            "Anomaly Discrimination",
        )
    )
    if defect is not None:
        assert sample.mask is not None and sample.description is not None
        own = [DEFECT_NAMES[d] for d in cat.defects if d != defect]
        others = [t for d, t in DEFECT_NAMES.items() if d not in cat.defects]
        distract = _shuffled(own, seed=seed, key=key, tag="cls-own") + _shuffled(
            others, seed=seed, key=key, tag="cls-other"
        )
        opts, ans = _choice(DEFECT_NAMES[defect], distract, seed=seed, key=key, tag="cls")
        out.append(_q(CLASSIFICATION_QUESTION, opts, ans, "Defect Classification"))
        region = describe_mask(sample.mask).region
        assert region is not None
        opts, ans = location_question(region, seed=seed, key=key)
        out.append(_q(LOCATION_QUESTION, opts, ans, "Defect Localization"))
        pool = [t for ts in DESCRIPTIONS.values() for t in ts]
        fair = [t for t in pool if not confusable(t, sample.description)]
        distract = _shuffled(fair, seed=seed, key=key, tag="desc-pool")
        opts, ans = _choice(sample.description, distract, seed=seed, key=key, tag="desc")
        out.append(_q(DESCRIPTION_QUESTION, opts, ans, "Defect Description"))
    titles = [c.title for c in CATEGORIES.values() if c.name != cat.name]
    distract = _shuffled(titles, seed=seed, key=key, tag="obj-cat")[:2] + _shuffled(
        _OTHER_PRODUCTS, seed=seed, key=key, tag="obj-other"
    )
    opts, ans = _choice(cat.title, distract, seed=seed, key=key, tag="obj")
    out.append(_q(OBJECT_QUESTION, opts, ans, "Object Classification"))
    colour = sample.attrs["colour"]
    near = _NEAR.get(cat.name, set())
    palette = [c for c in _PALETTES[cat.name] if c != colour]
    fillers = [c for c in _FILLER_COLOURS if c not in _PALETTES[cat.name] and c not in near]
    distract = _shuffled(palette, seed=seed, key=key, tag="col-own") + _shuffled(
        fillers, seed=seed, key=key, tag="col-fill"
    )
    opts, ans = _choice(colour, distract, seed=seed, key=key, tag="col")
    verb = "are" if cat.noun.endswith("s") else "is"  # "the tiles"
    out.append(_q(f"What colour {verb} the {cat.noun}?", opts, ans, "Object Details"))
    if cat.name in _STRUCTURE:
        attr, question, answers = _STRUCTURE[cat.name]
        value = sample.attrs[attr]
        distract = [a for a in answers if a != value]
        opts, ans = _choice(value, distract, seed=seed, key=key, tag="struct")
        out.append(_q(question, opts, ans, "Object Structure"))
    if "components" in sample.attrs:
        opts, ans = _count_options(int(sample.attrs["components"]), seed=seed, key=key)
        out.append(_q(COUNT_QUESTION, opts, ans, "Object Structure"))
    return out


def answer_text(q: dict[str, Any]) -> str:
    """The text of the correct option of a question dict."""
    return q["Options"][q["Answer"]]
