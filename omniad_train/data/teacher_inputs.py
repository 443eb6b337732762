"""What the teacher is given: the versioned prompt file, the folder facts and the image.

A teacher prompt (:class:`TeacherPrompt`) is a text file users can edit: a version line,
then ``[system]``, ``[user]`` and ``[retry]`` sections with ``$name`` placeholders
(:data:`PLACEHOLDERS`), filled per image by :func:`prompt_fields`.  The image is sent
with its mask painted over it (:func:`teacher_image`).  The default prompt ships as
``omniad_train/data/teacher_prompt.txt``.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

from omniad_train.data.layouts import ImageItem
from omniad_train.data.templates import display_name

__all__ = [
    "PLACEHOLDERS",
    "TeacherError",
    "TeacherPrompt",
    "default_prompt_path",
    "prompt_fields",
    "teacher_image",
]

#: The placeholders a teacher prompt may use (``$problems`` only in ``[retry]``).
PLACEHOLDERS = ("dataset", "category", "defect", "state", "mask", "region", "types", "count")
_VERSION_LINE = "omniad-teacher-prompt version:"
_SECTIONS = ("system", "user", "retry")
_MAX_PROMPT_BYTES = 64_000
_DEFAULT_RETRY = "Your answer could not be used: $problems\nAnswer again with one JSON object only."
_WHAT = {
    "Defect Analysis": "a question about the defect itself: its likely cause, its effect on "
    "the product, how serious it is, or what should be done about it",
    "Object Analysis": "a question about the object: its structure, parts, material, shape, "
    "count or other details visible in the image",
}


class TeacherError(ValueError):
    """A teacher that cannot be used (bad prompt file, options or endpoint): one line."""


def default_prompt_path() -> Path:
    """The shipped teacher prompt, ``omniad_train/data/teacher_prompt.txt``."""
    return Path(str(importlib.resources.files("omniad_train.data") / "teacher_prompt.txt"))


# --------------------------------------------------------------------------- prompt
@dataclass(frozen=True)
class TeacherPrompt:
    """A teacher prompt file: its version, hash and the ``[system]``, ``[user]`` and
    ``[retry]`` sections (``$name`` placeholders of :data:`PLACEHOLDERS`).

    The file starts with ``omniad-teacher-prompt version: V``; ``#`` lines before the
    first section are comments.  See the shipped ``teacher_prompt.txt``.
    """

    version: str
    sha256: str
    path: str
    system: str
    user: str
    retry: str = _DEFAULT_RETRY

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> TeacherPrompt:
        """Read and check a prompt file (None: the shipped one).

        Raises
        ------
        TeacherError
            Unreadable file, no version line, a missing or repeated section, or an unknown
            placeholder: the message names the file, what was expected and the fix.
        """
        p = Path(path) if path is not None else default_prompt_path()
        where = f"the teacher prompt {str(p)!r}"
        try:
            data = p.read_bytes()
        except OSError as exc:
            raise TeacherError(f"cannot read {where}: {exc.strerror or exc}") from None
        if len(data) > _MAX_PROMPT_BYTES:
            raise TeacherError(f"{where} has {len(data):,} bytes, at most {_MAX_PROMPT_BYTES:,}")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise TeacherError(f"{where} is not UTF-8 text; save it as UTF-8") from None
        lines = text.splitlines()
        first = next((k for k, line in enumerate(lines) if line.strip()), None)
        head = lines[first].strip() if first is not None else ""
        version = head[len(_VERSION_LINE) :].strip() if head.startswith(_VERSION_LINE) else ""
        if not version or len(version) > 40 or any(c.isspace() for c in version):
            raise TeacherError(
                f"{where} must start with a line '{_VERSION_LINE} 1' (a version without "
                f"spaces), got {head[:60]!r}; add it (change the version when you edit)"
            )
        parts: dict[str, list[str]] = {}
        current = None
        for line in lines[first + 1 :]:
            name = line.strip()
            if name.startswith("[") and name.endswith("]") and name[1:-1] in _SECTIONS:
                current = name[1:-1]
                if current in parts:
                    raise TeacherError(f"{where} has the section [{current}] twice; keep one")
                parts[current] = []
            elif current is not None:
                parts[current].append(line)
            elif name and not name.startswith("#"):
                raise TeacherError(
                    f"{where}: the text {name[:40]!r} comes before the first section; start "
                    "the sections with [system], [user] (and optionally [retry])"
                )
        body = {k: "\n".join(v).strip() for k, v in parts.items()}
        for need in ("system", "user"):
            if not body.get(need):
                raise TeacherError(f"{where} has no (or an empty) [{need}] section; add it")
        prompt = cls(
            version=version,
            sha256=hashlib.sha256(data).hexdigest(),
            path=os.path.abspath(p),
            system=body["system"],
            user=body["user"],
            retry=body.get("retry") or _DEFAULT_RETRY,
        )
        dummy = dict.fromkeys(PLACEHOLDERS, "x")
        for section in _SECTIONS:
            names = {**dummy, "problems": "x"} if section == "retry" else dummy
            try:
                Template(getattr(prompt, section)).substitute(names)
            except KeyError as exc:
                raise TeacherError(
                    f"{where} uses the unknown placeholder ${exc.args[0]} in [{section}]; use "
                    + ", ".join(f"${n}" for n in PLACEHOLDERS)
                    + (", $problems" if section == "retry" else "")
                    + " (write $$ for a dollar sign)"
                ) from None
            except ValueError as exc:
                raise TeacherError(
                    f"{where}: a bad placeholder in [{section}] ({exc}); write $$ for a dollar sign"
                ) from None
        return prompt

    def render(self, section: str, fields: dict[str, str]) -> str:
        """A section with its placeholders filled in."""
        return Template(getattr(self, section)).substitute(fields)


def prompt_fields(item: ImageItem, asked: Sequence[str]) -> dict[str, str]:
    info = item.info
    if item.anomalous and info is not None and info.region is not None:
        pct = "less than 0.1%" if info.area < 0.001 else f"{100 * info.area:.1f}%"
        state = (
            f"It has a {display_name(item.defect) or 'defect'} defect, painted red on the "
            "image (a red overlay with a red outline)."
        )
        mask = (
            f"The marked region lies in the {info.region} of the image, covers about {pct} "
            f"of it and is {info.shape or 'a region'}."
        )
        defect, region = display_name(item.defect) or "defect", info.region
    else:
        state = "It is a normal object: nothing is painted on the image."
        mask, defect, region = "The object has no defect.", "none (a normal image)", "none"
    return {
        "dataset": display_name(item.dataset) or "unnamed",
        "category": display_name(item.category) or "object",
        "defect": defect,
        "state": state,
        "mask": mask,
        "region": region,
        "types": "\n".join(f"- {t}: {_WHAT[t]}" for t in asked),
        "count": str(len(asked)),
    }


def teacher_image(item: ImageItem, size: int) -> Any:
    """The image the teacher sees: resized to fit ``size`` x ``size`` (aspect kept), the
    mask of a defect image painted over it in red with an outline.

    Raises
    ------
    omniad_core.images.ImageError
        An unreadable image or mask, or a mask of another size than its image.
    """
    import numpy as np
    from PIL import Image

    from omniad_core.images import ImageError, load_image, overlay
    from omniad_train.data.masks import read_mask

    img = load_image(item.image)
    w, h = img.size
    scale = min(1.0, size / max(w, h))
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = img.resize(new, Image.Resampling.BICUBIC) if new != (w, h) else img
    if not (item.anomalous and item.mask):
        return small
    m = read_mask(item.mask)
    if m.shape != (h, w):
        raise ImageError(f"the mask is {m.shape[0]}x{m.shape[1]} (H x W) but the image is {h}x{w}")
    m_small = Image.fromarray(m.astype(np.uint8) * 255).resize(new, Image.Resampling.NEAREST)
    return overlay(small, np.asarray(m_small) > 0)
