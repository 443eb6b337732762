"""Script arguments, recipe parsing and the checks that run before any model loads.

Entry points follow open-r1: ``main(script_args, training_args, model_args)``, the
three dataclasses parsed by :class:`trl.TrlParser` from a YAML recipe (``--config``)
and command-line overrides.  ``script_args`` is :class:`OmniADScriptArguments`,
``training_args`` TRL's ``SFTConfig`` or ``GRPOConfig``, ``model_args`` TRL's
``ModelConfig``.
"""

from __future__ import annotations

import difflib
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import textmask

__all__ = [
    "GRPO_COLUMNS",
    "SFT_COLUMNS",
    "OmniADScriptArguments",
    "RecipeError",
    "check_dataset",
    "load_manifest",
    "parse_recipe",
]

#: Columns each trainer needs in a prepared dataset.
SFT_COLUMNS = ("prompt", "completion", "images")
GRPO_COLUMNS = ("prompt", "images", "mask", "answer", "options")


class RecipeError(ValueError):
    """A recipe, its dataset or its arguments cannot work together (raised before loading a model)."""


@dataclass
class OmniADScriptArguments:
    """What to train on and how the rewards score (the ``script_args`` of a recipe)."""

    dataset_path: str = field(
        default="",
        metadata={
            "help": "Folder written by `omniad-train prepare` (holds sft/, grpo/, manifest.json)."
        },
    )
    dataset_train_split: str = field(default="train", metadata={"help": "Split to train on."})
    dataset_test_split: str | None = field(
        default=None, metadata={"help": "Split to evaluate on (None: no evaluation)."}
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Use only the first N training rows (quick runs)."}
    )
    grid: int = field(
        default=24, metadata={"help": "Grid size; must equal the prepared data's grid."}
    )
    image_size: int = field(
        default=512, metadata={"help": "Image side; must equal the prepared data's image size."}
    )
    freeze_vision_tower: bool = field(
        default=False,
        metadata={
            "help": "Train the vision tower's patch embedding and blocks or keep them fixed "
            "(the merger that projects into the language model always trains)."
        },
    )
    alpha: float = field(default=2.0, metadata={"help": "Detection reward: alpha * F1 (paper: 2)."})
    answer_correct: float = field(default=1.0, metadata={"help": "Answer reward when right."})
    answer_wrong: float = field(default=0.1, metadata={"help": "Answer reward when wrong."})
    reward_level: str = field(
        default="pixel",
        metadata={"help": "Detection F1 on mask pixels ('pixel') or grid cells ('cell')."},
    )

    def __post_init__(self) -> None:
        if self.reward_level not in ("pixel", "cell"):
            raise RecipeError(f"reward_level must be 'pixel' or 'cell', got {self.reward_level!r}")
        if self.grid < 1 or self.image_size < 28:
            raise RecipeError(
                f"grid must be >= 1 and image_size >= 28, got {self.grid}, {self.image_size}"
            )


def parse_recipe(training_cls: type, argv: Sequence[str] | None = None) -> tuple[Any, Any, Any]:
    """Parse ``[--config recipe.yaml] [--key value ...]`` into the three dataclasses.

    Unknown keys raise :class:`RecipeError` naming the closest known key.
    """
    from trl import ModelConfig, TrlParser

    parser = TrlParser((OmniADScriptArguments, training_cls, ModelConfig))
    known = {
        f.name for cls in (OmniADScriptArguments, training_cls, ModelConfig) for f in fields(cls)
    }
    args = list(argv) if argv is not None else sys.argv[1:]
    if "--config" in args and args.index("--config") + 1 < len(args):
        _check_recipe_keys(Path(args[args.index("--config") + 1]), known)
    try:
        return tuple(parser.parse_args_and_config(args))  # type: ignore[return-value]
    except ValueError as exc:
        msg = str(exc)
        if "num_generations" in msg:
            raise RecipeError(
                f"{msg} Fix: make per_device_train_batch_size x number of processes x "
                "steps_per_generation (or generation_batch_size) a multiple of num_generations."
            ) from None
        raise RecipeError(msg) from None


def _check_recipe_keys(path: Path, known: set[str]) -> None:
    import yaml

    if not path.is_file():
        raise RecipeError(f"recipe not found: {path}")
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise RecipeError(f"recipe {path} must be a YAML mapping of argument names to values")
    bad = [k for k in data if k != "env" and k not in known]
    if bad:
        hints = []
        for k in bad:
            close = difflib.get_close_matches(k, known, n=1)
            hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise RecipeError(
            f"unknown key(s) in recipe {path}: {', '.join(hints)}. Keys are fields of "
            "OmniADScriptArguments, TRL's SFTConfig/GRPOConfig and ModelConfig."
        )


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
    return json.loads(path.read_text())


def check_dataset(script_args: OmniADScriptArguments, kind: str, columns: Sequence[str]) -> Path:
    """Check a prepared dataset against the recipe; return the folder of ``kind`` (sft/grpo).

    Raises :class:`RecipeError` for a missing folder or split, a missing column, or a
    grid or image size that differs from the recipe's.
    """
    manifest = load_manifest(script_args.dataset_path)
    spec = manifest.get("textmask") or manifest.get("grid")
    if spec is not None:
        grid = textmask.Grid.of(spec)
        if grid.shape != (script_args.grid, script_args.grid):
            raise RecipeError(
                f"the data was prepared on a {grid.rows}x{grid.cols} grid but the recipe says "
                f"grid: {script_args.grid}; set grid: {grid.rows} in the recipe or prepare the "
                f"data again with --grid {script_args.grid}"
            )
    size = manifest.get("image_size")
    if size is not None and int(size) != script_args.image_size:
        raise RecipeError(
            f"the data was prepared at image_size {size} but the recipe says "
            f"{script_args.image_size}; make them equal"
        )
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
