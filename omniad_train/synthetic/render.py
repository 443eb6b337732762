"""Categories and the rendering of one sample: scene, defect, lighting, noise, mask.

:func:`render_sample` is a pure function of ``(category, defect, seed, size)``.  The
scene, the defect and the lighting draw from three independent random streams of
``seed``, so ``render_sample(c, None, seed=s)`` is exactly the defect image
``render_sample(c, d, seed=s)`` without its defect.  The mask of a defect image is
exactly the set of pixels where the two differ (in any channel).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from omniad_train.synthetic.defects import DEFECTS
from omniad_train.synthetic.objects import OBJECTS
from omniad_train.synthetic.raster import F32, coords, value_noise
from omniad_train.synthetic.scene import Scene
from omniad_train.synthetic.textures import TEXTURES

__all__ = ["CATEGORIES", "Category", "Sample", "render_sample", "sample_seed"]


@dataclass(frozen=True)
class Category:
    """A product category: its renderer, defect types and the words questions use."""

    name: str
    render: Callable[[np.random.Generator, int], Scene]
    defects: tuple[str, ...]
    title: str  # what the product is called in questions ("woven fabric")
    noun: str  # what "What colour is the {noun}?" asks about
    kind: str  # "texture" or "object"


CATEGORIES: dict[str, Category] = {
    c.name: c
    for c in (
        Category(
            "fabric",
            TEXTURES["fabric"],
            ("hole", "stain", "contamination"),
            "woven fabric",
            "fabric",
            "texture",
        ),
        Category(
            "metal",
            TEXTURES["metal"],
            ("scratch", "hole", "stain", "contamination"),
            "brushed metal sheet",
            "metal",
            "texture",
        ),
        Category(
            "wood",
            TEXTURES["wood"],
            ("scratch", "crack", "hole", "stain"),
            "wooden board",
            "wood",
            "texture",
        ),
        Category(
            "tile",
            TEXTURES["tile"],
            ("crack", "scratch", "stain", "contamination"),
            "ceramic tiles",
            "tiles",
            "texture",
        ),
        Category(
            "leather",
            TEXTURES["leather"],
            ("scratch", "hole", "stain", "contamination"),
            "leather",
            "leather",
            "texture",
        ),
        Category(
            "bottle_cap",
            OBJECTS["bottle_cap"],
            ("scratch", "hole", "stain", "contamination"),
            "bottle cap",
            "bottle cap",
            "object",
        ),
        Category(
            "screw",
            OBJECTS["screw"],
            ("scratch", "crack", "stain", "contamination"),
            "screw",
            "screw",
            "object",
        ),
        Category(
            "pill",
            OBJECTS["pill"],
            ("crack", "scratch", "stain", "contamination"),
            "pill",
            "pill",
            "object",
        ),
        Category(
            "pcb",
            OBJECTS["pcb"],
            ("missing", "misplaced", "scratch", "contamination"),
            "printed circuit board",
            "circuit board",
            "object",
        ),
    )
}


@dataclass
class Sample:
    """One rendered image: ``image`` is ``(H, W, 3)`` uint8; ``mask`` is bool or None."""

    category: str
    defect: str | None
    seed: int
    image: np.ndarray
    mask: np.ndarray | None
    description: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)


def sample_seed(seed: int, *parts: object) -> int:
    """A 63-bit sample seed from a base seed and labels (stable across runs and machines).

    >>> sample_seed(0, "test", "wood", "crack", 3) == sample_seed(0, "test", "wood", "crack", 3)
    True
    """
    text = "\x1f".join(str(p) for p in (int(seed), *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


def _lighting(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """A smooth gain field and sensor noise, both from the lighting stream."""
    yy, xx = coords(n, n)
    a = rng.uniform(0, 2 * np.pi)
    ramp = ((yy - n / 2) * math.sin(a) + (xx - n / 2) * math.cos(a)) / n
    r2 = ((yy - n / 2) ** 2 + (xx - n / 2) ** 2) / (n * n / 2)
    gain = 1 + rng.uniform(0, 0.12) * ramp - rng.uniform(0.02, 0.12) * r2
    gain = gain + 0.02 * value_noise(rng, n, n, n / 2)
    sigma = F32(rng.uniform(0.004, 0.012))
    noise = rng.standard_normal((n, n, 1), dtype=F32) * sigma  # luminance noise
    return gain.astype(F32), noise


def _finish(img: np.ndarray, gain: np.ndarray, noise: np.ndarray) -> np.ndarray:
    out = img * gain[..., None] + noise
    return np.floor(np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8)


def render_sample(
    category: str, defect: str | None = None, *, seed: int, size: int = 256
) -> Sample:
    """Render one image of ``category``, with ``defect`` (a type of that category) or none.

    Raises ``ValueError`` for an unknown category, a defect the category does not have,
    or a size below 64.

    >>> s = render_sample("wood", "crack", seed=1, size=64)
    >>> s.image.shape, s.mask.dtype, bool(s.mask.any())
    ((64, 64, 3), dtype('bool'), True)
    >>> clean = render_sample("wood", None, seed=1, size=64)
    >>> bool(((s.image != clean.image).any(-1) == s.mask).all()), clean.mask is None
    (True, True)
    """
    if category not in CATEGORIES:
        raise ValueError(f"unknown category {category!r}; choose from {', '.join(CATEGORIES)}")
    cat = CATEGORIES[category]
    if defect is not None and defect not in cat.defects:
        raise ValueError(
            f"category {category!r} has no defect {defect!r}; its defects are "
            f"{', '.join(cat.defects)}"
        )
    if int(size) < 64:
        raise ValueError(f"image size must be at least 64 pixels, got {size}")
    n = int(size)
    scene_ss, defect_ss, light_ss = np.random.SeedSequence([int(seed) & (2**63 - 1)]).spawn(3)
    scene = cat.render(np.random.default_rng(scene_ss), n)
    gain, noise = _lighting(np.random.default_rng(light_ss), n)
    clean = _finish(scene.image, gain, noise)
    attrs = dict(scene.attrs)
    if defect is None:
        return Sample(category, None, int(seed), clean, None, None, attrs)
    rng = np.random.default_rng(defect_ss)
    min_pixels = max(4, n * n // 20000)
    for _ in range(16):
        d = DEFECTS[defect](scene, rng)
        if int(d.support.sum()) >= min_pixels:
            break
    else:  # pragma: no cover - every defect lands on the surface in practice
        raise RuntimeError(f"could not place a {defect} on {category} (seed {seed})")
    support = d.support
    mixed = np.where(support[..., None], d.image, scene.image).astype(F32)
    out = _finish(mixed, gain, noise)
    same = support & (out == clean).all(-1)
    if same.any():  # a change lost to rounding: move those pixels one level the defect's way
        darker = (d.image.sum(-1) < scene.image.sum(-1))[same]
        base = clean[same].astype(np.int16)
        step = np.where(darker[:, None], -1, 1)
        step = np.where(base + step < 0, 1, np.where(base + step > 255, -1, step))
        out[same] = (base + step).astype(np.uint8)
    attrs.update(d.attrs)
    return Sample(category, defect, int(seed), out, support.copy(), d.description, attrs)
