"""The result of one inspected image (:class:`Analysis`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from omniad_core.images import overlay
from omniad_core.parsing import ParsedResponse

__all__ = ["Analysis"]


@dataclass
class Analysis:
    """The result of :meth:`Inspector.analyze` for one image.

    Attributes
    ----------
    response : str
        The model's raw text.
    parsed : ParsedResponse
        Seg, think and answer read from it (tolerantly).
    mask : numpy.ndarray of bool
        The seg as a pixel mask at the input image's own size.
    image : PIL.Image.Image
        The input image (RGB, original size).
    question : str
        The user turn that was asked.
    seconds : float
        Generation time (for a batch, the batch's time divided by its size).
    error : str or None
        Why the request failed (a served model that did not answer after the last retry):
        then ``response`` is empty, the mask is empty and nothing was parsed.  A failed
        request is a result, not an exception.
    raw : dict or None
        The fields a server returned (``content``, ``reasoning_content``,
        ``finish_reason``, ``usage``), before the response was rebuilt from them (None in
        process: ``response`` is the text as generated).
    seg_stripped : bool
        The server dropped the ``<seg>`` block: the mask is lost, ``parsed.problems``
        names the server setting that causes it.
    prompt_tokens, completion_tokens : int or None
        Token counts of the request.
    """

    response: str
    parsed: ParsedResponse
    mask: np.ndarray
    image: Any = field(repr=False)
    question: str = ""
    seconds: float = 0.0
    error: str | None = None
    raw: dict[str, Any] | None = field(default=None, repr=False)
    seg_stripped: bool = False
    prompt_tokens: int | None = None
    completion_tokens: int | None = None

    @property
    def ok(self) -> bool:
        """True when the model answered (the request did not fail)."""
        return self.error is None

    @property
    def is_anomalous(self) -> bool:
        """True when the model marked at least one cell."""
        return self.parsed.is_anomalous

    @property
    def answer(self) -> str | None:
        """The option letter the model chose, if one could be read."""
        return self.parsed.answer

    @property
    def think(self) -> str | None:
        """The reasoning text."""
        return self.parsed.think

    def overlay(self, **kwargs: Any) -> Any:
        """The mask painted over the image (``PIL.Image``); see :func:`omniad_core.overlay`."""
        return overlay(self.image, self.mask, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no pixels): answer, seg, think, flags, problems;
        ``image_size_hw`` (alias ``image_size``) is ``[height, width]``."""
        return {
            "answer": self.answer,
            "is_anomalous": self.is_anomalous,
            "seg": self.parsed.seg_canonical,
            "think": self.think,
            "anomalous_pixels": int(self.mask.sum()),
            "image_size": list(self.mask.shape),  # [H, W], as image_size_hw says
            "image_size_hw": list(self.mask.shape),
            "format_ok": self.parsed.format_ok,
            "problems": list(self.parsed.problems),
            "response": self.response,
            "question": self.question,
            "seconds": round(self.seconds, 4),
            "error": self.error,
            "seg_stripped": self.seg_stripped,
            "raw": self.raw,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }
