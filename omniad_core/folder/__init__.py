"""Inspect a folder of images: one JSONL line per image, a table sorted by anomaly, overlays.

:func:`inspect_folder` runs an :class:`~omniad_core.inspector.Inspector` (in process or
behind an endpoint) over any images, a batch at a time, and writes into ``out_dir``:

- ``results.jsonl``: one line per image (``id``, ``path``, ``status``, ``answer``,
  ``anomalous``, ``seg``, ``grid``, ``mask_area``, ``reasoning``, ``seconds``, ``model``,
  ``reference``, ``overlay``, ``mask``, ``error``, ...), appended and ``fsync``-ed one
  line at a time, in input order once the run is complete;
- ``summary.csv``: the same images sorted by anomaly (anomalous first, largest mask area
  first, then the normal ones, then requests that failed and files that could not be
  read, with the reason);
- ``overlays/``: the mask over the image for the anomalous images (every image with
  ``overlays="all"``), ``masks/``: the mask as a PNG at the image's own size
  (``save_masks=True``); both mirror the input folders and never leave ``out_dir``;
- ``run.json``: the settings fingerprint (model, grid, image size, question, options,
  reference, input root).

An interrupted run (Ctrl-C, a killed process) resumes: a line in the JSONL means that
image is finished and is never redone; a partial last line is dropped and redone.
Lines of unreadable files and of failed requests are tried again.  A run with other
settings in the same folder is refused (``overwrite=True`` / ``--overwrite`` starts over).

The command line (``omniad inspect DIR_OR_GLOB --out RESULTS``) is :func:`folder_main`;
``python -m omniad_core.folder`` runs it too.  See ``docs/ui.md``.
"""

from omniad_core.folder.cli import folder_main, folder_parser, is_folder_request
from omniad_core.folder.common import (
    DEMO_NOTICE,
    IMAGE_SUFFIXES,
    REFERENCE_STEMS,
    RESULTS_FILE,
    RUN_FILE,
    SUMMARY_FILE,
    FolderInterrupted,
    FolderRunError,
)
from omniad_core.folder.listing import ImageItem, collect_images
from omniad_core.folder.models import LoadedModel, demo_notice, load_from_args, load_inspector
from omniad_core.folder.run import inspect_folder, model_label
from omniad_core.folder.store import FolderResult, summary_rows

__all__ = [
    "DEMO_NOTICE",
    "IMAGE_SUFFIXES",
    "REFERENCE_STEMS",
    "RESULTS_FILE",
    "RUN_FILE",
    "SUMMARY_FILE",
    "FolderInterrupted",
    "FolderResult",
    "FolderRunError",
    "ImageItem",
    "LoadedModel",
    "collect_images",
    "demo_notice",
    "folder_main",
    "folder_parser",
    "inspect_folder",
    "is_folder_request",
    "load_from_args",
    "load_inspector",
    "model_label",
    "summary_rows",
]
