"""Script arguments, recipe parsing and the checks that run before any model loads.

Entry points follow open-r1: ``main(script_args, training_args, model_args)``, the
three dataclasses parsed by :class:`trl.TrlParser` from a YAML recipe (``--config``)
and command-line overrides.  ``script_args`` is :class:`OmniADScriptArguments`,
``training_args`` TRL's ``SFTConfig`` or ``GRPOConfig``, ``model_args`` TRL's
``ModelConfig``.

A recipe is read with a safe YAML loader (no Python tags, no duplicate keys) before TRL
sees it; every value is checked against its field's type and, for the values that
decide a run (learning rate, batch sizes, rewards, dtype, ...), against its range.  A bad
value is a :class:`RecipeError` naming the key, the value, what was expected and where it
came from (the recipe file or the command line), raised before any weights load.

This module is the public entry: :func:`parse_recipe` lives here, and every other name
comes from the module that holds its concept:

- :mod:`omniad_train.script_args`: :class:`OmniADScriptArguments` and its field docs;
- :mod:`omniad_train.recipe_yaml`: :func:`read_recipe`, the safe loader and its limits;
- :mod:`omniad_train.recipe_checks`: :class:`RecipeError`, the rule of each value and
  the checks across values (:func:`check_args`);
- :mod:`omniad_train.recipe_types`: recipe values as written against their field types;
- :mod:`omniad_train.prepared_data`: the prepared dataset (:func:`load_manifest`,
  :func:`dataset_spec`, :func:`check_dataset`, the column constants).

>>> OmniADScriptArguments(alpha=float("nan"))
Traceback (most recent call last):
...
omniad_train.recipe_checks.RecipeError: alpha = nan in the arguments is invalid: expected a finite number > 0
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from omniad_train.prepared_data import (
    GRPO_COLUMNS,
    SFT_COLUMNS,
    check_dataset,
    dataset_spec,
    load_manifest,
)
from omniad_train.recipe_checks import RecipeError, check_args, check_value
from omniad_train.recipe_types import check_raw, field_hints
from omniad_train.recipe_yaml import MAX_RECIPE_BYTES as MAX_RECIPE_BYTES
from omniad_train.recipe_yaml import read_recipe
from omniad_train.script_args import OmniADScriptArguments

__all__ = [
    "GRPO_COLUMNS",
    "LANGUAGE_LORA_TARGETS",
    "SFT_COLUMNS",
    "OmniADScriptArguments",
    "RecipeError",
    "apply_defaults",
    "check_args",
    "check_dataset",
    "dataset_spec",
    "load_manifest",
    "parse_recipe",
    "read_recipe",
]


#: Default LoRA targets (a PEFT regex, matched against full module names): the attention
#: and MLP projections of the language model only.  PEFT has no default for qwen2_5_vl,
#: and ``all-linear`` would also wrap the vision tower (its blocks have ``gate_proj``,
#: ``up_proj`` and ``down_proj`` too), which VLM-R1 and others keep out of LoRA.
LANGUAGE_LORA_TARGETS = (
    r"^(?:.*\.)?language_model\.layers\.\d+\."
    r"(?:self_attn\.(?:q|k|v|o)_proj|mlp\.(?:gate|up|down)_proj)$"
)


def apply_defaults(script_args: Any, training_args: Any, model_args: Any) -> None:
    """Fill the defaults that depend on other values (in place; idempotent).

    - LoRA (``use_peft: true``) without ``lora_target_modules`` targets
      :data:`LANGUAGE_LORA_TARGETS`: the language model's projections, not the vision
      tower.

    >>> from types import SimpleNamespace as NS
    >>> m = NS(use_peft=True, lora_target_modules=None)
    >>> apply_defaults(None, None, m)
    >>> m.lora_target_modules == LANGUAGE_LORA_TARGETS
    True
    """
    if getattr(model_args, "use_peft", False) and not getattr(
        model_args, "lora_target_modules", None
    ):
        model_args.lora_target_modules = LANGUAGE_LORA_TARGETS


def _given(key: str, data: dict[str, Any], namespace: Any, on_cli: set[str]) -> Any:
    """The value of ``key`` the user gave (command line over recipe), or None."""
    if key in on_cli:
        return getattr(namespace, key)
    value = data.get(key)
    if isinstance(value, str):  # "16" in YAML: check_raw already accepted it as a number
        try:
            return int(value)
        except ValueError:
            return value
    return value


def _field_default(cls: type, key: str) -> Any:
    from dataclasses import MISSING, fields

    for f in fields(cls):
        if f.name == key:
            return None if f.default is MISSING else f.default
    return None


def _batch_overrides(
    training_cls: type,
    data: dict[str, Any],
    namespace: Any,
    on_cli: set[str],
    world_size: int | None,
) -> list[str]:
    """Command-line overrides laying out ``global_batch_size`` on the world size.

    Derives ``per_device_train_batch_size`` and ``gradient_accumulation_steps`` (see
    :func:`omniad_train.planner.batch.resolve_batch`) and, for GRPO, passes the generation
    batch as ``generation_batch_size`` so TRL derives ``steps_per_generation`` from its
    own world size.
    """
    from omniad_train.planner.batch import resolve_batch, world_size_from_env

    def given(key: str) -> Any:
        return _given(key, data, namespace, on_cli)

    grpo = _field_default(training_cls, "num_generations") is not None
    explicit_gen = given("generation_batch_size") is not None
    explicit_spg = given("steps_per_generation") is not None
    global_batch = given("global_batch_size")
    if global_batch is None and not grpo:
        return []  # per_device_train_batch_size and gradient_accumulation_steps as given
    per_device = given("per_device_train_batch_size")
    if global_batch is None and per_device is None:
        per_device = _field_default(training_cls, "per_device_train_batch_size")
    batch = resolve_batch(
        global_batch,
        world_size=world_size if world_size is not None else world_size_from_env(),
        max_per_device=given("max_per_device_batch"),
        per_device=per_device,
        grad_accum=given("gradient_accumulation_steps"),
        num_generations=(
            given("num_generations") or _field_default(training_cls, "num_generations")
        )
        if grpo
        else None,
        generation_batch_size=given("generation_batch_size"),
        steps_per_generation=given("steps_per_generation"),
    )
    out = [
        "--per_device_train_batch_size",
        str(batch.per_device),
        "--gradient_accumulation_steps",
        str(batch.grad_accum),
    ]
    if grpo and not explicit_gen and not explicit_spg:
        out += ["--generation_batch_size", str(batch.generation_batch_size)]
    return out


def _hint_key(key: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    return f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else "")


def parse_recipe(
    training_cls: type, argv: Sequence[str] | None = None, *, world_size: int | None = None
) -> tuple[Any, Any, Any]:
    """Parse ``[--config recipe.yaml] [--key value ...]`` into the three dataclasses.

    The recipe is read with :func:`read_recipe`; unknown keys raise :class:`RecipeError`
    naming the closest known key, and every value is checked (:func:`check_args`)
    before anything is built from it.

    With ``global_batch_size`` set, ``per_device_train_batch_size`` and
    ``gradient_accumulation_steps`` are derived from it and ``world_size`` (default: the
    launcher's, :func:`omniad_train.planner.batch.world_size_from_env`); a world size
    that cannot realise it exactly, or explicit values that disagree with it, raise
    :class:`RecipeError`.  Defaults that depend on other values are filled by
    :func:`apply_defaults`.
    """
    from trl import ModelConfig, TrlParser

    classes = (OmniADScriptArguments, training_cls, ModelConfig)
    parser = TrlParser(classes, exit_on_error=False)
    hints = field_hints(classes)
    args = list(argv) if argv is not None else sys.argv[1:]
    recipe: Path | None = None
    cli = list(args)
    if "--config" in args:
        i = args.index("--config")
        if i + 1 >= len(args) or args[i + 1].startswith("--"):
            raise RecipeError("--config needs a recipe path: --config PATH/TO/recipe.yaml")
        recipe = Path(args[i + 1])
        cli = args[:i] + args[i + 2 :]
        if "--config" in cli:
            raise RecipeError("--config is given twice; pass one recipe")
    data = read_recipe(recipe) if recipe is not None else {}
    in_recipe = f"in recipe {recipe}"
    unknown = [k for k in data if k != "env" and k not in hints]
    if unknown:
        raise RecipeError(
            f"unknown key(s) in recipe {recipe}: {', '.join(_hint_key(k, hints) for k in unknown)}"
            ". Keys are fields of OmniADScriptArguments, TRL's SFTConfig/GRPOConfig and "
            "ModelConfig."
        )
    env = data.get("env", {})
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and isinstance(v, (str, int, float, bool)) for k, v in env.items()
    ):
        raise RecipeError(f"env {in_recipe} must map variable names to plain values")
    for key, value in data.items():
        if key != "env":
            check_raw(key, value, *hints[key], in_recipe)

    dests = {opt: action.dest for opt, action in parser._option_string_actions.items()}
    on_cli: set[str] = set()
    for token in cli:
        if token.startswith("--"):
            name = token.split("=", 1)[0]
            if name not in dests:
                raise RecipeError(
                    f"unknown option {name} on the command line: "
                    f"{_hint_key(name[2:], hints)}; options are the recipe's keys"
                )
            on_cli.add(dests[name])
    try:
        namespace = None
        if on_cli:
            namespace, _ = parser.parse_known_args(cli)
            for key in sorted(on_cli):
                check_value(key, getattr(namespace, key), "on the command line")
        derived = _batch_overrides(training_cls, data, namespace, on_cli, world_size)
        parsed = tuple(parser.parse_args_and_config([*args, *derived]))
    except argparse.ArgumentError as exc:
        raise RecipeError(f"command line: {' '.join(str(exc).split())}") from None
    except (ValueError, TypeError, ArithmeticError) as exc:
        if isinstance(exc, RecipeError):
            raise
        msg = " ".join(str(exc).split())
        if "num_generations" in msg or isinstance(exc, ZeroDivisionError):
            raise RecipeError(
                f"{msg} Fix: make per_device_train_batch_size x number of processes x "
                "steps_per_generation (or generation_batch_size) a multiple of num_generations."
            ) from None
        raise RecipeError(msg + (f" ({in_recipe})" if recipe else "")) from None
    origin = {k: in_recipe for k in data}
    origin.update({k: "on the command line" for k in on_cli})
    apply_defaults(*parsed)
    check_args(*parsed, origin=origin)
    return parsed  # type: ignore[return-value]
