"""The backend seam: what a backend returns (:class:`Generation`) and what it is (:class:`Backend`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

__all__ = ["SEG_STRIPPED", "Backend", "EndpointError", "Generation"]

#: The problem text of a reply whose ``<seg>`` block the server dropped.
SEG_STRIPPED = (
    "the server returned no <seg> block (it split the reply into reasoning_content and "
    "content, and the seg did not survive): the mask is lost. Start vLLM or SGLang without "
    "--reasoning-parser; transformers serve drops the seg from non-streamed replies only, "
    "so keep streaming on (the default); see docs/serving.md"
)


class EndpointError(RuntimeError):
    """An endpoint cannot be used (checked before any work): one line saying why and what to do."""


@dataclass
class Generation:
    """What a backend returns for one request.

    Attributes
    ----------
    text : str or None
        The full response; where the server split it, rebuilt as
        ``<seg>..</seg><think>..</think><answer>..</answer>`` (:func:`rebuild_response`).
        None when the request failed.
    error : str or None
        One-line reason when the request failed after the last retry (``text`` is None).
    raw : dict or None
        The fields the server returned: ``content``, ``reasoning_content``,
        ``finish_reason``, ``usage``, ``model``, ``attempts``.
    seg_stripped : bool
        The server dropped the ``<seg>`` block (:data:`SEG_STRIPPED` says which setting).
    prompt_tokens, completion_tokens : int or None
        Token counts (the server's ``usage``, or counted in process).
    seconds : float
        Time of this request (in process: the batch's time divided by its size).
    """

    text: str | None
    error: str | None = None
    raw: dict[str, Any] | None = None
    seg_stripped: bool = False
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when the request produced text."""
        return self.error is None and self.text is not None


@runtime_checkable
class Backend(Protocol):
    """Turns chat conversations and their images into generated text.

    ``conversations[i]`` is a chat in :mod:`omniad_core.prompts`' format (typed content,
    ``{"type": "image"}`` entries, with or without the image inside) and ``images[i]`` the
    images of its image entries, in their order.  Results come back in input order, one
    :class:`Generation` per conversation; a failed request is a :class:`Generation` with
    ``error`` set, not an exception.
    """

    #: Recorded in run fingerprints: the model's name or path (never a key).
    name: str
    #: How many requests the Inspector hands over at once by default.
    batch_size: int

    def generate(
        self,
        conversations: list[list[dict[str, Any]]],
        images: list[list[Any]],
        *,
        max_new_tokens: int,
        progress: bool = False,
    ) -> list[Generation]:
        """One :class:`Generation` per conversation, in input order."""
        ...


class HTTPFailure(Exception):
    """One failed HTTP exchange (internal): ``status`` None for connection errors and timeouts."""

    def __init__(self, status: int | None, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


def one_line(text: str, limit: int = 500) -> str:
    """``text`` on one line, at most ``limit`` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
