"""Mask descriptions, location questions and templated reasoning for SFT targets.

Everything here is deterministic: variation comes from a seed and the record's id,
never from global random state, so a re-run writes the same texts.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Mapping
from typing import TypeVar

import numpy as np

import textmask
from omniad_train.data.records import MaskInfo
from textmask.regions import REGIONS, region_of  # re-exported: the region names of docs/format.md

__all__ = [
    "FORMS",
    "LOCATION_QUESTION",
    "REGIONS",
    "SIZES",
    "choice_options",
    "describe_mask",
    "form_word",
    "location_question",
    "region_of",
    "rng_for",
    "sft_target",
    "shuffled",
    "size_word",
    "template_reasoning",
]

#: The location question generated for defect images of MVTec-style folders.
LOCATION_QUESTION = "Where is the defect located?"

#: Bump when a template text changes: cached rows built with older texts are redone.
TEMPLATE_VERSION = 2  # 2: conclusions of Defect Classification / Description, Object Classification

T = TypeVar("T")
_COARSE = 48  # cells per side for counting connected regions


def rng_for(seed: int, *parts: str) -> random.Random:
    """A private ``random.Random`` from a seed and strings (stable across Python runs)."""
    digest = hashlib.sha256("\x1f".join([str(seed), *parts]).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _components(mask: np.ndarray) -> int:
    """8-connected regions of the mask on a coarse grid (robust to speckle)."""
    h, w = mask.shape  # no coarser cells than pixels: empty cells would split a region
    cells = textmask.patchify(mask, (min(_COARSE, h), min(_COARSE, w)))
    seen = np.zeros_like(cells)
    count = 0
    rows, cols = cells.shape
    for r0, c0 in zip(*np.nonzero(cells), strict=True):
        if seen[r0, c0]:
            continue
        count += 1
        stack = [(int(r0), int(c0))]
        seen[r0, c0] = True
        while stack:
            r, c = stack.pop()
            for dr in (-1, 0, 1):
                for dc in (-1, 0, 1):
                    rr, cc = r + dr, c + dc
                    if 0 <= rr < rows and 0 <= cc < cols and cells[rr, cc] and not seen[rr, cc]:
                        seen[rr, cc] = True
                        stack.append((rr, cc))
    return count


def _shape_words(area: float, bbox_h: int, bbox_w: int, count: int, components: int) -> str:
    fill = count / max(1, bbox_h * bbox_w)
    elongation = max(bbox_h, bbox_w) / max(1, min(bbox_h, bbox_w))
    if components >= 3:
        return "several separate small spots" if area < 0.01 else "several separate regions"
    if components == 2:
        return "two separate regions"
    if elongation >= 3.0 or (fill < 0.25 and elongation >= 2.0):
        return "a thin elongated region"
    if area < 0.005:
        return "a small spot"
    if area >= 0.1:
        return "a large region"
    if fill < 0.4:
        return "an irregular region"
    return "a compact region"


def describe_mask(mask: np.ndarray) -> MaskInfo:
    """Area, centroid, bounding box, region and shape words of a boolean mask.

    >>> m = np.zeros((90, 90), bool); m[5:8, 5:80] = True
    >>> info = describe_mask(m)
    >>> info.region, info.shape, round(info.area, 4)
    ('top', 'a thin elongated region', 0.0278)
    >>> describe_mask(np.zeros((4, 4), bool)).empty
    True
    """
    m = np.asarray(mask) != 0
    h, w = m.shape
    count = int(m.sum())
    if count == 0:
        return MaskInfo(height=h, width=w, area=0.0)
    ys, xs = np.nonzero(m)
    cy = float((ys.mean() + 0.5) / h)
    cx = float((xs.mean() + 0.5) / w)
    y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    area = count / (h * w)
    components = _components(m)
    return MaskInfo(
        height=h,
        width=w,
        area=area,
        centroid=(cy, cx),
        bbox=(y0 / h, x0 / w, y1 / h, x1 / w),
        components=components,
        region=region_of((cy, cx)),
        shape=_shape_words(area, y1 - y0, x1 - x0, count, components),
    )


def location_question(
    region: str, *, seed: int, key: str, n_options: int = 4
) -> tuple[dict[str, str], str]:
    """Options (the true region plus seeded distractors, shuffled) and the gold letter.

    >>> opts, gold = location_question("center", seed=0, key="img")
    >>> len(opts), opts[gold]
    (4, 'center')
    >>> location_question("center", seed=0, key="img") == (opts, gold)
    True
    """
    if region not in REGIONS:
        raise ValueError(f"unknown region {region!r}; expected one of {REGIONS}")
    if not 2 <= n_options <= len(REGIONS):
        raise ValueError(f"n_options must be in 2..{len(REGIONS)}, got {n_options}")
    rng = rng_for(seed, key, "location")
    texts = [region, *rng.sample([r for r in REGIONS if r != region], n_options - 1)]
    rng.shuffle(texts)
    options = {chr(65 + k): t for k, t in enumerate(texts)}
    gold = next(k for k, t in options.items() if t == region)
    return options, gold


def _key(text: str) -> str:
    return " ".join(text.split()).casefold()


def shuffled(items: Iterable[T], *, seed: int, key: str, tag: str) -> list[T]:
    """``items`` in a seeded order (the same for the same seed, key and tag)."""
    out = list(items)
    rng_for(seed, key, tag).shuffle(out)
    return out


def choice_options(
    answer: str, distractors: Iterable[str], *, seed: int, key: str, tag: str, n: int = 4
) -> tuple[dict[str, str], str]:
    """Options (the answer plus the first ``n - 1`` distinct distractors, shuffled) and
    the gold letter.

    A distractor equal to the answer or to an earlier distractor (ignoring case and
    spacing) is left out, so no text appears twice; the shuffle is seeded by ``seed``,
    ``key`` and ``tag``, so the gold letter is uniformly placed and stable across runs.

    >>> opts, gold = choice_options("crack", ["Crack", "hole", "hole", "cut"], seed=0, key="k", tag="t")
    >>> sorted(opts.values()), opts[gold]
    (['crack', 'cut', 'hole'], 'crack')
    """
    texts, seen = [answer], {_key(answer)}
    for d in distractors:
        if len(texts) >= n:
            break
        if _key(d) not in seen:
            seen.add(_key(d))
            texts.append(d)
    rng_for(seed, key, tag).shuffle(texts)
    options = {chr(65 + k): t for k, t in enumerate(texts)}
    return options, next(k for k, t in options.items() if t == answer)


#: Size words of a mask by its area fraction (upper bounds; the last has none).
SIZES = ("tiny", "small", "medium-sized", "large")
_SIZE_BOUNDS = (0.005, 0.02, 0.1)
#: Form words of a mask (see :func:`form_word`).
FORMS = ("compact", "elongated", "irregular", "two-part", "scattered")


def size_word(area: float) -> str:
    """``tiny`` (< 0.5% of the image), ``small`` (< 2%), ``medium-sized`` (< 10%) or
    ``large``; the bounds agree with the shape words ("a small spot" is tiny, "a large
    region" is large).

    >>> [size_word(a) for a in (0.001, 0.01, 0.05, 0.3)]
    ['tiny', 'small', 'medium-sized', 'large']
    """
    for word, bound in zip(SIZES, _SIZE_BOUNDS, strict=False):
        if area < bound:
            return word
    return SIZES[-1]


def form_word(info: MaskInfo) -> str:
    """The form of a non-empty mask: ``scattered`` (3+ separate regions), ``two-part``,
    ``elongated`` (bounding box 3:1 or longer, or 2:1 and less than a quarter filled),
    ``irregular`` (box less than 40% filled) or ``compact``; the rules of the shape words.

    >>> m = np.zeros((40, 40), bool); m[5:8, 2:38] = True
    >>> form_word(describe_mask(m))
    'elongated'
    """
    if info.bbox is None or info.empty:
        raise ValueError("form_word needs a non-empty mask")
    if info.components >= 3:
        return "scattered"
    if info.components == 2:
        return "two-part"
    top, left, bottom, right = info.bbox
    bh = max(1, round((bottom - top) * info.height))
    bw = max(1, round((right - left) * info.width))
    fill = info.area * info.height * info.width / (bh * bw)
    elongation = max(bh, bw) / min(bh, bw)
    if elongation >= 3.0 or (fill < 0.25 and elongation >= 2.0):
        return "elongated"
    return "irregular" if fill < 0.4 else "compact"


def _percent(area: float) -> str:
    if area < 0.01:
        return "less than 1%"
    return f"about {round(area * 100)}%"


_DESCRIBE = (
    "The anomalous area is {shape}, covering {pct} of the image.",
    "It appears as {shape} that takes up {pct} of the image.",
    "The segmented area looks like {shape} and covers {pct} of the image.",
)
_YES = (
    "Since an anomalous region is present, the object is defective, so the answer is {letter}.",
    "Therefore there is a defect in the object, and the answer is {letter}.",
    "So the object has a defect: the answer is {letter}.",
)
_NO = (
    "The object looks normal, so there is no defect and the answer is {letter}.",
    "Therefore the object is free of defects, and the answer is {letter}.",
    "So no defect is present: the answer is {letter}.",
)
_WHERE = (
    "So the defect is located in the {region}, which is option {letter}.",
    "Therefore the defect lies in the {region}: the answer is {letter}.",
)
_OTHER = (
    "Considering this, the best matching option is {letter}: {text}.",
    "Taking this into account, the answer is {letter}: {text}.",
)
_KIND = (
    "Its appearance points to {text}, so the type of the defect is {text}: the answer is {letter}.",
    "This looks like {text}, so the defect type is option {letter}: {text}.",
)
_LOOKS = (
    "So the defect is {text}, which is option {letter}.",
    "This matches the description {letter}: {text}.",
)
_PRODUCT = (
    "The product shown is {text}, so the answer is {letter}.",
    "The object in the image is {text}: the answer is {letter}.",
)
#: The conclusion of each question type that has its own (others use _OTHER).
_CONCLUSIONS = {
    "Defect Classification": _KIND,
    "Defect Description": _LOOKS,
    "Object Classification": _PRODUCT,
}


def template_reasoning(
    info: MaskInfo | None,
    *,
    anomalous: bool,
    type: str,
    options: Mapping[str, str],
    answer: str,
    seed: int,
    key: str,
) -> str:
    """The templated reasoning of a record that brings none.

    Opens with the paper's region sentence (or its no-anomaly form), then describes the
    mask (shape words and area), then concludes; phrasings vary by ``seed`` and ``key``.

    >>> m = np.zeros((60, 60), bool); m[40:50, 2:12] = True
    >>> print(template_reasoning(describe_mask(m), anomalous=True,
    ...       type="Anomaly Discrimination", options={"A": "Yes", "B": "No"}, answer="A",
    ...       seed=0, key="k").split(". ")[0])
    According to the segmentation result, there is an anomaly in the object, which is located in the left bottom
    """
    rng = rng_for(seed, key, "reasoning")
    text = options.get(answer, "")
    if anomalous and info is not None and not info.empty:
        parts = [
            "According to the segmentation result, there is an anomaly in the object, which "
            f"is located in the {info.region}.",
            rng.choice(_DESCRIBE).format(shape=info.shape, pct=_percent(info.area)),
        ]
        if type == "Anomaly Discrimination":
            parts.append(rng.choice(_YES).format(letter=answer))
        elif type == "Defect Localization" and text == info.region:
            parts.append(rng.choice(_WHERE).format(region=info.region, letter=answer))
        else:
            endings = _CONCLUSIONS.get(type, _OTHER)
            parts.append(rng.choice(endings).format(letter=answer, text=text.rstrip(".")))
    else:
        parts = ["According to the segmentation result, there is no anomaly in the object."]
        if type == "Anomaly Discrimination":
            parts.append(rng.choice(_NO).format(letter=answer))
        else:
            endings = _PRODUCT if type == "Object Classification" else _OTHER
            parts.append(rng.choice(endings).format(letter=answer, text=text.rstrip(".")))
    return " ".join(parts)


def sft_target(seg: str, reasoning: str, answer: str) -> str:
    """The assistant turn: ``<seg>..</seg><think>..</think><answer>..</answer>``.

    >>> sft_target("(1, 2)", "A spot.", "A")
    '<seg>(1, 2)</seg><think>A spot.</think><answer>A</answer>'
    """
    return f"<seg>{seg}</seg><think>{reasoning}</think><answer>{answer}</answer>"
