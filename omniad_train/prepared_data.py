"""A prepared dataset folder as the trainers read it: manifest, prompt spec and columns.

``omniad-train prepare`` (:mod:`omniad_train.data`) writes ``sft/``, ``grpo/`` and
``manifest.json``; this module reads them back before training.  :func:`load_manifest`
reads the manifest, :func:`dataset_spec` turns it into how the data prompts the model
(and checks it against the recipe), :func:`check_dataset` checks that the splits and
the columns a trainer needs (:data:`SFT_COLUMNS`, :data:`GRPO_COLUMNS`) are there.

>>> load_manifest("")
Traceback (most recent call last):
...
omniad_train.recipe_checks.RecipeError: dataset_path is not set; point it at a folder written by `omniad-train prepare`
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import textmask
from omniad_core.prompts import SYSTEM_PROMPT
from omniad_train.recipe_checks import RecipeError
from omniad_train.script_args import OmniADScriptArguments

__all__ = ["GRPO_COLUMNS", "SFT_COLUMNS", "check_dataset", "dataset_spec", "load_manifest"]

#: Columns each trainer needs in a prepared dataset.
SFT_COLUMNS = ("prompt", "completion", "images")
GRPO_COLUMNS = ("prompt", "images", "mask", "answer", "options")


def load_manifest(dataset_path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``manifest.json`` of a prepared dataset folder, with a fix-it error if absent."""
    root = Path(dataset_path)
    if not str(dataset_path):
        raise RecipeError(
            "dataset_path is not set; point it at a folder written by `omniad-train prepare`"
        )
    path = root / "manifest.json"
    if not path.is_file():
        raise RecipeError(
            f"no manifest.json in {root}: dataset_path must be a folder written by "
            "`omniad-train prepare` (it holds sft/, grpo/ and manifest.json)"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise RecipeError(
            f"{path} cannot be read ({exc}); prepare the data again with `omniad-train prepare`"
        ) from None
    if not isinstance(manifest, dict):
        raise RecipeError(f"{path} must hold a JSON object; prepare the data again")
    return manifest


def dataset_spec(script_args: OmniADScriptArguments) -> dict[str, Any]:
    """How the prepared data prompts the model, from its ``manifest.json``.

    Returns ``{"grid": textmask.Grid, "image_size": int, "system_prompt": str | None,
    "shots": int}``: what every checkpoint's ``omniad.json`` records, so the Inspector
    and the evaluation prompt a trained model as it was trained.  A key the manifest
    lacks (data prepared by hand) falls back to the recipe's value (grid, image size),
    the paper's system prompt and 0 shots.

    Raises
    ------
    RecipeError
        A missing or unreadable manifest, a value of the wrong type in it, or a recipe
        whose ``grid`` or ``image_size`` contradicts it.
    """
    manifest = load_manifest(script_args.dataset_path)
    path = Path(script_args.dataset_path) / "manifest.json"
    spec = manifest.get("textmask", manifest.get("grid"))
    try:
        grid = textmask.Grid.of(spec) if spec is not None else textmask.Grid.of(script_args.grid)
    except (textmask.TextMaskError, TypeError, ValueError) as exc:
        raise RecipeError(f"{path}: bad textmask grid {spec!r} ({exc})") from None
    if grid.shape != (script_args.grid, script_args.grid):
        fix = (
            f"set grid: {grid.rows} in the recipe"
            if grid.rows == grid.cols
            else "recipes train square grids only"
        )
        raise RecipeError(
            f"the data was prepared on a {grid.rows}x{grid.cols} grid but the recipe says "
            f"grid: {script_args.grid}; {fix} or prepare the data again with "
            f"--grid {script_args.grid}"
        )
    size = manifest.get("image_size", script_args.image_size)
    if isinstance(size, bool) or not isinstance(size, int):
        raise RecipeError(f"{path}: image_size must be an integer, got {size!r}")
    if size != script_args.image_size:
        raise RecipeError(
            f"the data was prepared at image_size {size} but the recipe says "
            f"{script_args.image_size}; make them equal"
        )
    prompt = manifest.get("system_prompt", SYSTEM_PROMPT)
    if prompt is not None and not isinstance(prompt, str):
        raise RecipeError(f"{path}: system_prompt must be a string or null, got {prompt!r}")
    shots = manifest.get("shots", 0)
    if shots not in (0, 1) or isinstance(shots, bool):
        raise RecipeError(f"{path}: shots must be 0 or 1, got {shots!r}")
    return {"grid": grid, "image_size": size, "system_prompt": prompt, "shots": shots}


def check_dataset(script_args: OmniADScriptArguments, kind: str, columns: Sequence[str]) -> Path:
    """Check a prepared dataset against the recipe; return the folder of ``kind`` (sft/grpo).

    Raises :class:`RecipeError` for a missing folder or split, a missing column, or a
    grid or image size that differs from the recipe's (see :func:`dataset_spec`).
    """
    dataset_spec(script_args)
    folder = Path(script_args.dataset_path) / kind
    if not folder.is_dir():
        raise RecipeError(
            f"no {kind}/ dataset in {script_args.dataset_path}; run `omniad-train prepare`"
        )
    from datasets import load_from_disk

    data = load_from_disk(str(folder))
    splits = [script_args.dataset_train_split]
    if script_args.dataset_test_split:
        splits.append(script_args.dataset_test_split)
    for split in splits:
        if split not in data:
            raise RecipeError(f"{folder} has no split {split!r} (it has {list(data)})")
        missing = [c for c in columns if c not in data[split].column_names]
        if missing:
            raise RecipeError(
                f"the {kind} dataset {folder} [{split}] lacks column(s) {missing} that "
                f"{'the rewards' if kind == 'grpo' else 'SFT'} need; prepare it with "
                "`omniad-train prepare` or add them"
            )
    return folder
