"""Names, errors and atomic file writes shared by the folder-inspection modules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omniad_core._files import atomic_write, atomic_write_text

__all__ = [
    "DEMO_NOTICE",
    "IMAGE_SUFFIXES",
    "MASK_DIR",
    "OVERLAY_DIR",
    "REFERENCE_STEMS",
    "RESULTS_FILE",
    "RUN_FILE",
    "SUMMARY_COLUMNS",
    "SUMMARY_FILE",
    "FolderInterrupted",
    "FolderRunError",
]

#: File suffixes taken as images when a folder is walked or a glob is expanded.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif")
#: With ``reference="per-folder"``: the stems of a folder's normal reference image.
REFERENCE_STEMS = ("good", "reference")
RESULTS_FILE = "results.jsonl"
SUMMARY_FILE = "summary.csv"
RUN_FILE = "run.json"
OVERLAY_DIR = "overlays"
MASK_DIR = "masks"
_LOCK_FILE = ".omniad-folder.lock"
_KIND = "omniad-folder-inspection"
_STATUSES = ("ok", "unreadable", "failed")
#: Columns of ``summary.csv`` (no timings: a resumed run writes the same table).
SUMMARY_COLUMNS = (
    "rank",
    "image",
    "status",
    "anomalous",
    "answer",
    "answer_text",
    "mask_area",
    "seg",
    "overlay",
    "mask",
    "reference",
    "width",
    "height",
    "error",
)

#: What the page and the command lines say when the embedded demo model is loaded.
DEMO_NOTICE = (
    "the embedded demo model is loaded: a 1.7M-parameter model trained by `omniad demo` "
    "on synthetic textures only ({categories}); it shows the output format, it is not a "
    "model for real inspection (pass --model PATH for real weights)"
)


class FolderRunError(ValueError):
    """A folder run cannot start: bad inputs, a results folder of another run, bad options."""


class FolderInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a folder run; what was finished is saved and re-running resumes.

    Attributes
    ----------
    results : Path
        The JSONL holding the finished images.
    n_done, n_items : int
        Images with a line in ``results``, and images in the run.
    """

    def __init__(self, results: Path, n_done: int, n_items: int) -> None:
        self.results, self.n_done, self.n_items = results, n_done, n_items
        super().__init__(
            f"interrupted: {n_done} of {n_items} images finished, saved to {results}; "
            "re-run the same command to resume"
        )


def _save_png(image: Any, path: Path) -> None:
    """Write a PNG whole or not at all (:func:`~omniad_core._files.atomic_write`)."""
    atomic_write(path, lambda f: image.save(f, format="PNG"), sync=False)


def _atomic_text(path: Path, text: str) -> None:
    atomic_write_text(path, text)
