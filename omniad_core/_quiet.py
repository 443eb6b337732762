"""Known noise of the libraries under ``omniad_train``, filtered by exact message; nothing else.

Loading a model or building a trainer prints messages that say nothing to an OmniAD user
and that no recipe can fix (a transformers class's own deprecation, DeepSpeed saying it
found no GPU on a CPU run, TRL calling a renamed transformers property).
:data:`KNOWN_NOISE` lists each one: where it comes from (a ``warnings`` category or a
logger), a regular expression that must match the *whole* message, and why it is noise.
:func:`quiet_known_noise` installs exactly those filters; every other warning and log
record, of these libraries too, is shown as before.  ``docs/training.md`` ("Library
noise") lists the same messages.  Set ``OMNIAD_SHOW_NOISE=1`` to install no filter.

>>> import logging
>>> quiet_known_noise()
>>> noise = KNOWN_NOISE[0]
>>> record = logging.LogRecord(noise.where, logging.WARNING, "", 0, noise.example, None, None)
>>> logging.getLogger(noise.where).filter(record)
False
>>> record.msg = "something else"
>>> bool(logging.getLogger(noise.where).filter(record))
True
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from dataclasses import dataclass
from typing import Literal

__all__ = ["KNOWN_NOISE", "Noise", "quiet_known_noise"]


@dataclass(frozen=True)
class Noise:
    """One known noise message.

    Parameters
    ----------
    source : ``"log"`` or ``"warning"``
        A record of the logger named ``where``, or a warning of the category ``where``.
    where : str
        The logger's name, or the warning category's name (a builtin warning class).
    pattern : str
        A regular expression matched against the whole message (``re.fullmatch``).
    example : str
        The message as the library prints it (the tests check that ``pattern`` matches it).
    why : str
        Why it is noise for an OmniAD user.
    """

    source: Literal["log", "warning"]
    where: str
    pattern: str
    example: str
    why: str


KNOWN_NOISE: tuple[Noise, ...] = (
    Noise(
        "log",
        "transformers.processing_utils",
        r"`PaddleOCRVLProcessor` defines `image_processor_class = 'AutoImageProcessor'`, "
        r"which is deprecated\. Register the correct mapping in `AutoImageProcessor` instead\.",
        "`PaddleOCRVLProcessor` defines `image_processor_class = 'AutoImageProcessor'`, "
        "which is deprecated. Register the correct mapping in `AutoImageProcessor` instead.",
        "transformers (5.24) about its own PaddleOCRVLProcessor class, which the tiny and demo "
        "models use on CPU without torchvision (omniad_train.tiny.build_processor); printed "
        "on every load of their processor",
    ),
    Noise(
        "log",
        "DeepSpeed",
        r"Setting accelerator to CPU\. If you have GPU or other accelerator, we were unable "
        r"to detect it\.",
        "Setting accelerator to CPU. If you have GPU or other accelerator, we were unable to "
        "detect it.",
        "DeepSpeed (0.19) on import when there is no GPU, on stdout: on CPU runs (use_cpu: "
        "true, the demo, the tests) it is expected; a GPU run without CUDA stops at TRL's "
        "own check with a message of its own",
    ),
    Noise(
        "warning",
        "FutureWarning",
        r"`is_gradient_checkpointing` is deprecated and will be removed in v6\. Use "
        r"`is_activation_checkpointing` instead\.",
        "`is_gradient_checkpointing` is deprecated and will be removed in v6. Use "
        "`is_activation_checkpointing` instead.",
        "TRL (1.16) GRPOTrainer reads transformers' (5.24) old property name; nothing in a "
        "recipe causes or fixes it",
    ),
)


class _MessageFilter(logging.Filter):
    """Drops a logger's records whose whole message matches one of its patterns."""

    def __init__(self, patterns: list[str]) -> None:
        super().__init__()
        self.patterns = [re.compile(p) for p in patterns]

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is not ours to judge
            return True
        return not any(p.fullmatch(message) for p in self.patterns)


def quiet_known_noise() -> None:
    """Install the filters of :data:`KNOWN_NOISE` (idempotent; cheap, imports nothing;
    nothing with ``OMNIAD_SHOW_NOISE=1``).

    Log records are filtered on their logger (set up before the library creates it, so
    a message printed on import is caught too); warnings by category and a message
    regex anchored at both ends.
    """
    if os.environ.get("OMNIAD_SHOW_NOISE") == "1":
        return
    by_logger: dict[str, list[str]] = {}
    for noise in KNOWN_NOISE:
        if noise.source == "log":
            by_logger.setdefault(noise.where, []).append(noise.pattern)
        else:
            # the message regex is matched from the start (re.match); \Z anchors the end
            warnings.filterwarnings(
                "ignore", message=noise.pattern + r"\Z", category=_builtin_warning(noise.where)
            )
    for name, patterns in by_logger.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _MessageFilter) for f in logger.filters):
            logger.addFilter(_MessageFilter(patterns))


def _builtin_warning(name: str) -> type[Warning]:
    import builtins

    cls = getattr(builtins, name, None)
    if not (isinstance(cls, type) and issubclass(cls, Warning)):
        raise ValueError(f"{name!r} is not a builtin warning category")
    return cls
