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
import importlib.util
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from omniad_train._argparse import respell_options
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
    "RENAMED_KEYS",
    "SFT_COLUMNS",
    "OmniADScriptArguments",
    "RecipeError",
    "apply_defaults",
    "check_args",
    "check_dataset",
    "checkpointing_args",
    "dataset_spec",
    "load_manifest",
    "normalize_options",
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


#: Training arguments transformers renamed (old name -> new name): a recipe may use either,
#: and the one the installed transformers lacks is read as the other, so recipes work on
#: both sides of the rename and the new name avoids its FutureWarning.
RENAMED_KEYS = {
    "gradient_checkpointing": "activation_checkpointing",
    "gradient_checkpointing_kwargs": "activation_checkpointing_kwargs",
}


def normalize_options(tokens: Sequence[str]) -> list[str]:
    """Command-line tokens with ``--flag-name`` spelled ``--flag_name`` (values untouched).

    Recipe keys are Python field names; this lets the command line use either spelling.
    A bare ``--`` ends the options.

    >>> normalize_options(["--learning-rate", "1e-4", "--max-steps=5", "--", "--x-y"])
    ['--learning_rate', '1e-4', '--max_steps=5', '--', '--x-y']
    """
    return respell_options(tokens, lambda name: "--" + name[2:].replace("-", "_"))


def _renames(hints: Iterable[str]) -> dict[str, str]:
    """``name as written -> name the installed classes have`` for :data:`RENAMED_KEYS`."""
    known = set(hints)
    out: dict[str, str] = {}
    for old, new in RENAMED_KEYS.items():
        if new in known:
            out[old] = new
        elif old in known:
            out[new] = old
    return out


def _rename_cli(cli: list[str], renames: dict[str, str], dests: set[str]) -> list[str]:
    """``--old value`` as ``--new value`` (and ``--no_old`` as ``--new false``)."""
    out: list[str] = []
    for token in cli:
        name, eq, value = token.partition("=")
        key = name[2:] if name.startswith("--") else ""
        if key in renames:
            token = f"--{renames[key]}{eq}{value}"
        elif key.startswith("no_") and key[3:] in renames and not eq:
            new = renames[key[3:]]
            out += [f"--no_{new}"] if f"--no_{new}" in dests else [f"--{new}", "false"]
            continue
        out.append(token)
    return out


def _renamed_data(data: dict[str, Any], renames: dict[str, str], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = renames.get(key, key)
        if name in out and out[name] != value:
            raise RecipeError(
                f"{key} = {value!r} and {name} = {out[name]!r} {where} disagree (one is the "
                "other's old name); keep one of them"
            )
        out[name] = value
    return out


def _checkpointing_default(training_cls: type, hints: Iterable[str], given: set[str]) -> list[str]:
    """TRL's default for activation checkpointing, under transformers' new name.

    TRL sets ``gradient_checkpointing=True`` by default; transformers then warns that the
    name is deprecated although the user set nothing.  Passing the same default under
    the new name keeps the behaviour and the warning away.
    """
    old, new = "gradient_checkpointing", "activation_checkpointing"
    if new not in set(hints) or given & {old, new}:
        return []
    default = _field_default(training_cls, old)
    if default is None or _field_default(training_cls, new) is not None:
        return []
    return [f"--{new}", str(bool(default)).lower()]


#: How DeepSpeed is installed: after torch, built against it (the README's install line).
DEEPSPEED_INSTALL = "pip install --no-build-isolation deepspeed==0.19.8"


def _deepspeed_override(value: Any) -> list[str]:
    """``--deepspeed PATH`` for the name of a shipped DeepSpeed config (a local file wins).

    Raises
    ------
    RecipeError
        ``value`` names neither a file nor a shipped config.
    """
    from omniad_train.recipe_yaml import resolve_shipped, shipped_recipes

    if not isinstance(value, str) or not value or value.lstrip().startswith("{"):
        return []
    if Path(value).is_file():
        return []
    shipped = resolve_shipped(value, ("deepspeed",))
    if shipped is not None:
        return ["--deepspeed", str(shipped)]
    names = ", ".join(f.name for f in shipped_recipes() if f.kind == "deepspeed")
    raise RecipeError(
        f"deepspeed = {value!r}: no such file and no shipped DeepSpeed config of that name; "
        f"pass a DeepSpeed JSON path or one of {names}"
    )


def parse_recipe(
    training_cls: type,
    argv: Sequence[str] | None = None,
    *,
    world_size: int | None = None,
    plan_only: bool = False,
) -> tuple[Any, Any, Any]:
    """Parse ``[--config RECIPE] [--key value ...]`` into the three dataclasses.

    ``RECIPE`` is a YAML path or the name of a shipped recipe (``qwen2_5_vl_7b/sft``; a
    local path wins, see :func:`~omniad_train.recipe_yaml.resolve_recipe`).  The recipe
    is read with :func:`read_recipe`; unknown keys raise :class:`RecipeError` naming the
    closest known key, and every value is checked (:func:`check_args`) before anything
    is built from it.  Options may be spelled ``--key_name`` or ``--key-name``; the
    ``deepspeed`` key takes a path or a shipped config's name (``deepspeed/zero3``);
    ``gradient_checkpointing`` and ``activation_checkpointing`` (transformers' new name,
    :data:`RENAMED_KEYS`) are both read.

    With ``global_batch_size`` set, ``per_device_train_batch_size`` and
    ``gradient_accumulation_steps`` are derived from it and ``world_size`` (default: the
    launcher's, :func:`omniad_train.planner.batch.world_size_from_env`); a world size
    that cannot realise it exactly, or explicit values that disagree with it, raise
    :class:`RecipeError`.  Defaults that depend on other values are filled by
    :func:`apply_defaults`.

    A ``deepspeed`` key needs DeepSpeed installed (a :class:`RecipeError` naming the
    install otherwise), unless ``plan_only``: ``omniad-train plan`` only reads the config,
    so a laptop without DeepSpeed plans a ZeRO-3 run (``training_args.deepspeed`` is then
    the config's path, and no DeepSpeed object is built).
    """
    from trl import ModelConfig, TrlParser

    from omniad_core import _quiet
    from omniad_train.recipe_yaml import resolve_recipe

    _quiet.quiet_known_noise()
    classes = (OmniADScriptArguments, training_cls, ModelConfig)
    parser = TrlParser(classes, exit_on_error=False)
    hints = field_hints(classes)
    renames = _renames(hints)
    args = normalize_options(list(argv) if argv is not None else sys.argv[1:])
    recipe: Path | None = None
    cli = list(args)
    if "--config" in args:
        i = args.index("--config")
        if i + 1 >= len(args) or args[i + 1].startswith("--"):
            raise RecipeError(
                "--config needs a recipe: --config PATH/TO/recipe.yaml or a shipped "
                "recipe's name (`omniad-train recipes` lists them)"
            )
        recipe = resolve_recipe(args[i + 1])
        cli = args[:i] + args[i + 2 :]
        if "--config" in cli:
            raise RecipeError("--config is given twice; pass one recipe")
    data = read_recipe(recipe) if recipe is not None else {}
    in_recipe = f"in recipe {recipe}"
    unknown = [k for k in data if k != "env" and k not in hints and k not in renames]
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
    data = _renamed_data(data, renames, in_recipe)
    for key, value in data.items():
        if key != "env":
            check_raw(key, value, *hints[key], in_recipe)

    dests = {opt: action.dest for opt, action in parser._option_string_actions.items()}
    cli = _rename_cli(cli, renames, set(dests))
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
        derived += _checkpointing_default(training_cls, hints, set(data) | on_cli)
        ds_value = _given("deepspeed", data, namespace, on_cli)
        ds_flags = _deepspeed_override(ds_value)
        derived += ds_flags
        # transformers builds the DeepSpeed config in the dataclass, and without DeepSpeed
        # fails with a message that does not say so: name the install, or (a plan, which
        # only reads the config) parse without it and keep the path
        ds_missing = bool(ds_value) and importlib.util.find_spec("deepspeed") is None
        if ds_missing and not plan_only:
            raise RecipeError(
                f"deepspeed = {ds_value!r}, but DeepSpeed is not installed; install it "
                f"against your torch: {DEEPSPEED_INSTALL} (the README's install line), or "
                "drop the deepspeed key to train on one GPU or the CPU without it"
            )
        if ds_missing:
            derived += ["--deepspeed", ""]
        for key, value in env.items():  # as TrlParser does with a recipe's env
            os.environ[key] = str(value)
        parser.set_defaults_with_config(**{k: v for k, v in data.items() if k != "env"})
        parsed = tuple(parser.parse_args_into_dataclasses(args=[*cli, *derived]))
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
    if ds_missing:  # a plan: the config is read, never built
        parsed[1].deepspeed = ds_flags[1] if ds_flags else ds_value
    origin = {k: in_recipe for k in data}
    origin.update({k: "on the command line" for k in on_cli})
    apply_defaults(*parsed)
    check_args(*parsed, origin=origin)
    return parsed  # type: ignore[return-value]


def checkpointing_args(training_cls: type, enabled: bool) -> dict[str, bool]:
    """``{name: enabled}`` for activation checkpointing, under the name ``training_cls``
    has (transformers' new ``activation_checkpointing`` when it exists), for code that
    builds a TRL config directly.

    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Old:
    ...     gradient_checkpointing: bool = True
    >>> checkpointing_args(Old, False)
    {'gradient_checkpointing': False}
    """
    from dataclasses import fields

    names = {f.name for f in fields(training_cls)}
    key = (
        "activation_checkpointing"
        if "activation_checkpointing" in names
        else "gradient_checkpointing"
    )
    return {key: enabled}
