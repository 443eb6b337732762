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

>>> OmniADScriptArguments(alpha=float("nan"))
Traceback (most recent call last):
...
omniad_train.config.RecipeError: alpha = nan in the arguments is invalid: expected a finite number > 0
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
import numbers
import os
import re
import sys
import types
import typing
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from enum import Enum
from pathlib import Path
from typing import Any

import textmask

__all__ = [
    "GRPO_COLUMNS",
    "SFT_COLUMNS",
    "OmniADScriptArguments",
    "RecipeError",
    "check_args",
    "check_dataset",
    "dataset_spec",
    "load_manifest",
    "parse_recipe",
    "read_recipe",
]

#: Columns each trainer needs in a prepared dataset.
SFT_COLUMNS = ("prompt", "completion", "images")
GRPO_COLUMNS = ("prompt", "images", "mask", "answer", "options")

#: A recipe larger than this is refused unread (recipes are a few dozen lines).
MAX_RECIPE_BYTES = 1 << 20
#: Values (list items and mapping entries, aliases expanded) a recipe may hold.
_MAX_RECIPE_NODES = 100_000


class RecipeError(ValueError):
    """A recipe, its dataset or its arguments cannot work together (raised before loading a model)."""


# --------------------------------------------------------------------------- value rules
def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(x)


@dataclass(frozen=True)
class _Rule:
    """What one argument may hold (``kind``: number, int, bool, str, text, choice, strs,
    weights, attn)."""

    kind: str
    lo: float | None = None
    hi: float | None = None
    open_lo: bool = False
    open_hi: bool = False
    none: bool = False
    choices: tuple[str, ...] = ()

    def expected(self) -> str:
        if self.kind in ("number", "int"):
            what = "an integer" if self.kind == "int" else "a finite number"
            if self.lo is not None and self.hi is not None:
                a, b = "(" if self.open_lo else "[", ")" if self.open_hi else "]"
                what += f" in {a}{_fmt(self.lo)}, {_fmt(self.hi)}{b}"
            elif self.lo is not None:
                what += f" {'>' if self.open_lo else '>='} {_fmt(self.lo)}"
        else:
            what = {
                "bool": "true or false",
                "str": "a non-empty string",
                "text": "a string",
                "choice": "one of " + ", ".join(repr(c) for c in self.choices),
                "strs": "a string or a list of strings",
                "weights": "a list of finite numbers, not all zero",
                "attn": "eager, sdpa, flash_attention_2 (or another transformers attention "
                "implementation) or a hub kernel 'org/name'",
            }[self.kind]
        return what + (", or null" if self.none else "")

    def ok(self, v: Any) -> bool:
        if v is None:
            return self.none
        if self.kind in ("number", "int"):
            want = numbers.Integral if self.kind == "int" else numbers.Real
            if isinstance(v, bool) or not isinstance(v, want) or not math.isfinite(v):
                return False
            lo_ok = self.lo is None or (v > self.lo if self.open_lo else v >= self.lo)
            hi_ok = self.hi is None or (v < self.hi if self.open_hi else v <= self.hi)
            return lo_ok and hi_ok
        if self.kind == "bool":
            return isinstance(v, bool)
        if self.kind == "text":
            return isinstance(v, str)
        if self.kind == "str":
            return isinstance(v, str) and bool(v.strip())
        if self.kind == "choice":
            return isinstance(v, str) and v in self.choices
        if self.kind == "strs":
            return (isinstance(v, str) and bool(v)) or (
                isinstance(v, (list, tuple)) and all(isinstance(x, str) and x for x in v)
            )
        if self.kind == "weights":
            num = _Rule("number", lo=-math.inf)
            return (
                isinstance(v, (list, tuple))
                and len(v) > 0
                and all(num.ok(x) for x in v)
                and any(x != 0 for x in v)
            )
        if self.kind == "attn":
            return isinstance(v, str) and _attn_ok(v)
        raise AssertionError(self.kind)  # pragma: no cover


def _num(lo: float | None = None, hi: float | None = None, **kw: Any) -> _Rule:
    return _Rule("number", lo, hi, **kw)


def _int(lo: float | None = None, hi: float | None = None, **kw: Any) -> _Rule:
    return _Rule("int", lo, hi, **kw)


_BOOL = _Rule("bool")
_SEED = _int(0, 2**32 - 1)

#: Rules for ``OmniADScriptArguments`` (every field).
_SCRIPT_RULES: dict[str, _Rule] = {
    "dataset_path": _Rule("text"),
    "dataset_train_split": _Rule("str"),
    "dataset_test_split": _Rule("str", none=True),
    "max_train_samples": _int(1, none=True),
    "grid": _int(1, 4096),
    "image_size": _int(28),
    "freeze_vision_tower": _BOOL,
    "alpha": _num(0, open_lo=True),
    "answer_correct": _num(),
    "answer_wrong": _num(),
    "reward_level": _Rule("choice", choices=("pixel", "cell")),
}
#: Rules for SFTConfig / GRPOConfig values that decide a run (a key absent from the
#: recipe's training class is skipped).
_TRAINING_RULES: dict[str, _Rule] = {
    "learning_rate": _num(0, open_lo=True),
    "weight_decay": _num(0),
    "num_train_epochs": _num(0),
    "max_steps": _int(-1),
    "per_device_train_batch_size": _int(1),
    "per_device_eval_batch_size": _int(1),
    "gradient_accumulation_steps": _int(1),
    "warmup_steps": _num(0),
    "max_grad_norm": _num(0, none=True),
    "adam_beta1": _num(0, 1, open_hi=True),
    "adam_beta2": _num(0, 1, open_hi=True),
    "adam_epsilon": _num(0, open_lo=True),
    "logging_steps": _num(0, open_lo=True),
    "save_steps": _num(0, open_lo=True),
    "eval_steps": _num(0, open_lo=True, none=True),
    "save_total_limit": _int(0, none=True),
    "seed": _SEED,
    "data_seed": _int(0, 2**32 - 1, none=True),
    "dataloader_num_workers": _int(0),
    "output_dir": _Rule("str", none=True),
    "use_cpu": _BOOL,
    "bf16": _Rule("bool", none=True),
    "fp16": _BOOL,
    "gradient_checkpointing": _BOOL,
    "trust_remote_code": _BOOL,
    # SFT
    "max_length": _int(1, none=True),
    # GRPO
    "num_generations": _int(2),
    "num_generations_eval": _int(1, none=True),
    "max_completion_length": _int(1, none=True),
    "temperature": _num(0, open_lo=True),
    "top_p": _num(0, 1, open_lo=True),
    "top_k": _int(0, none=True),
    "min_p": _num(0, 1, none=True),
    "repetition_penalty": _num(0, open_lo=True),
    "beta": _num(0),
    "epsilon": _num(0, open_lo=True),
    "epsilon_high": _num(0, open_lo=True, none=True),
    "num_iterations": _int(1),
    "steps_per_generation": _int(1, none=True),
    "generation_batch_size": _int(1, none=True),
    "reward_weights": _Rule("weights", none=True),
}
#: Rules for TRL's ``ModelConfig``.
_MODEL_RULES: dict[str, _Rule] = {
    "model_name_or_path": _Rule("str"),
    "model_revision": _Rule("str"),
    "dtype": _Rule("choice", none=True, choices=("auto", "bfloat16", "float16", "float32")),
    "attn_implementation": _Rule("attn", none=True),
    "use_peft": _BOOL,
    "lora_r": _int(1),
    "lora_alpha": _int(1),
    "lora_dropout": _num(0, 1, open_hi=True),
    "lora_target_modules": _Rule("strs", none=True),
    "load_in_8bit": _BOOL,
    "load_in_4bit": _BOOL,
}
_ALL_RULES = {**_TRAINING_RULES, **_MODEL_RULES, **_SCRIPT_RULES}

_KERNEL = re.compile(r"^[\w.-]+/[\w.-]+(@[\w.-]+)?(:[\w.-]+)?$")


def _attn_ok(name: str) -> bool:
    if _KERNEL.match(name):  # a hub kernel, e.g. kernels-community/flash-attn
        return True
    try:
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

        known = {"eager", *ALL_ATTENTION_FUNCTIONS.valid_keys()}
    except Exception:  # pragma: no cover - older transformers
        known = {"eager", "sdpa", "flash_attention_2", "flash_attention_3", "flex_attention"}
    base = name.split("|", 1)[1] if name.startswith("paged|") else name
    return name in known or base in known


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _fail(key: str, value: Any, expected: str, where: str) -> RecipeError:
    """The error for a bad value; ``where`` is "in recipe PATH", "on the command line",
    "in the arguments" or "" (the default value)."""
    if not where:
        if value is None:
            return RecipeError(
                f"{key} is not set: expected {expected}; set {key} in the recipe or pass --{key}"
            )
        where = "(the default)"
    return RecipeError(f"{key} = {_show(value)} {where} is invalid: expected {expected}")


def _check_value(key: str, value: Any, where: str) -> None:
    rule = _ALL_RULES.get(key)
    if rule is not None and not rule.ok(value):
        raise _fail(key, value, rule.expected(), where)


def _check_all(
    obj: Any, rules: Mapping[str, _Rule], origin: Mapping[str, str], default: str
) -> None:
    names = {f.name for f in fields(obj)} if hasattr(obj, "__dataclass_fields__") else set()
    for key, rule in rules.items():
        if (names and key not in names) or not hasattr(obj, key):
            continue
        value = getattr(obj, key)
        if not rule.ok(value):
            raise _fail(key, value, rule.expected(), origin.get(key, default))


def check_args(
    script_args: Any,
    training_args: Any,
    model_args: Any,
    *,
    origin: Mapping[str, str] | None = None,
) -> None:
    """Check the types and ranges of every value that decides a run (before any model loads).

    Parameters
    ----------
    script_args, training_args, model_args
        The three dataclasses of a recipe (``OmniADScriptArguments``, ``SFTConfig`` or
        ``GRPOConfig``, ``ModelConfig``).
    origin : mapping, optional
        Where each key's value came from (``"in recipe PATH"``, ``"on the command
        line"``); named in the error.  Without it the error says "in the arguments".

    Raises
    ------
    RecipeError
        Naming the key, the value, what was expected and where the value came from.
    """
    where = dict(origin or {})
    default = "in the arguments" if origin is None else ""
    _check_all(script_args, _SCRIPT_RULES, where, default)
    _check_all(training_args, _TRAINING_RULES, where, default)
    _check_all(model_args, _MODEL_RULES, where, default)
    if script_args.answer_correct <= script_args.answer_wrong:
        raise RecipeError(
            f"answer_correct = {script_args.answer_correct} must be larger than answer_wrong = "
            f"{script_args.answer_wrong}, or GRPO rewards wrong answers; fix them "
            + (where.get("answer_correct") or where.get("answer_wrong") or "in the recipe")
        )
    steps = getattr(training_args, "max_steps", -1)
    epochs = getattr(training_args, "num_train_epochs", 1)
    if steps <= 0 and epochs <= 0:
        raise RecipeError(
            f"num_train_epochs = {epochs} and max_steps = {steps}: nothing would train; set "
            "num_train_epochs > 0 or max_steps >= 1"
        )
    if getattr(model_args, "load_in_8bit", False) and getattr(model_args, "load_in_4bit", False):
        raise RecipeError("load_in_8bit and load_in_4bit are both true; choose one")


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
        _check_all(self, _SCRIPT_RULES, {}, "in the arguments")


# --------------------------------------------------------------------------- reading
def _recipe_loader() -> type:
    """A ``yaml.SafeLoader`` that also refuses duplicate keys."""
    import yaml

    class RecipeLoader(yaml.SafeLoader):
        pass

    def mapping(loader: Any, node: Any, deep: bool = False) -> Any:
        loader.flatten_mapping(node)
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            if isinstance(key, Hashable):
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None,
                        None,
                        f"duplicate key {key!r} (first on line {seen[key] + 1})",
                        key_node.start_mark,
                    )
                seen[key] = key_node.start_mark.line
        return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)

    RecipeLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    return RecipeLoader


def _count_nodes(value: Any, budget: list[int]) -> None:
    budget[0] -= 1
    if budget[0] < 0:
        raise OverflowError
    if isinstance(value, dict):
        for k, v in value.items():
            _count_nodes(k, budget)
            _count_nodes(v, budget)
    elif isinstance(value, list):
        for v in value:
            _count_nodes(v, budget)


def read_recipe(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a recipe YAML safely: a mapping of argument names to plain values.

    Python tags (``!!python/...``) and any other non-standard tag, duplicate keys, a
    file over 1 MiB or one expanding to more than 100,000 values are refused; nothing
    in a recipe is executed.

    Raises
    ------
    RecipeError
        One line naming the file (and the line of a YAML problem) and how to fix it.
    """
    import yaml

    p = Path(path)
    if not p.is_file():
        raise RecipeError(
            f"recipe not found: {p}" + (" (it is a folder)" if p.is_dir() else "")
            + "; pass --config PATH/TO/recipe.yaml (shipped recipes are in omniad_train/recipes/)"
        )  # fmt: skip
    if p.stat().st_size > MAX_RECIPE_BYTES:
        raise RecipeError(f"recipe {p} is larger than {MAX_RECIPE_BYTES} bytes; is it a recipe?")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"cannot read recipe {p}: {exc}") from None
    try:
        data = yaml.load(text, Loader=_recipe_loader())  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise RecipeError(_yaml_message(p, exc)) from None
    except RecursionError:
        raise RecipeError(f"recipe {p} is nested too deeply; is it a recipe?") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RecipeError(
            f"recipe {p} must be a YAML mapping of argument names to values, "
            f"got a {type(data).__name__}"
        )
    try:
        _count_nodes(data, [_MAX_RECIPE_NODES])
    except (OverflowError, RecursionError):
        raise RecipeError(
            f"recipe {p} holds more than {_MAX_RECIPE_NODES:,} values (after expanding YAML "
            "aliases); recipes are short mappings of argument names to values"
        ) from None
    bad = [k for k in data if not isinstance(k, str)]
    if bad:
        raise RecipeError(f"recipe {p}: keys must be argument names (strings), got {bad[0]!r}")
    return data


def _yaml_message(path: Path, exc: Any) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f"recipe {path}" + (f", line {mark.line + 1}" if mark is not None else "")
    problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
    tag = re.search(r"tag '(?:tag:yaml\.org,2002:)?([^']*)'", problem)
    if tag:
        shown = "!!" + tag.group(1) if "python/" in tag.group(1) else tag.group(1)
        return (
            f"{where}: the tag {shown} is not allowed; recipes are plain YAML (numbers, "
            "strings, lists, mappings) and nothing in them is executed: remove the tag"
        )
    if problem.startswith("duplicate key"):
        return f"{where}: {problem}; keep one of them"
    return f"{where}: not valid YAML ({problem}); fix the file"


# --------------------------------------------------------------------------- types
def _describe(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(dict.fromkeys(_describe(a) for a in args))
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (list, tuple, Sequence) or tp is list:
        plural = {bool: "booleans", int: "integers", float: "numbers", str: "strings"}
        return f"a list of {plural.get(args[0], 'values')}" if args else "a list"
    if origin is dict or tp is dict:
        return "a mapping"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    if tp is type(None):
        return "null"
    return names.get(tp, "a string" if isinstance(tp, type) and issubclass(tp, Enum) else str(tp))


def _fits(value: Any, tp: Any) -> bool:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return True
    if tp is type(None):
        return value is None
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if origin is typing.Literal:
        return value in args
    if origin in (list, tuple, Sequence) or tp is list:
        return isinstance(value, list) and (not args or all(_fits(v, args[0]) for v in value))
    if origin is dict or tp is dict:
        return isinstance(value, dict)
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str or (isinstance(tp, type) and issubclass(tp, Enum)):
        return isinstance(value, str)
    return True  # a class this check does not know (TRL/transformers validate it)


def _from_string(value: str, tp: Any) -> Any:
    """Convert a YAML string as argparse would for a field of type ``tp`` (or raise)."""
    from transformers.hf_argparser import string_to_bool

    options = [a for a in typing.get_args(tp) if a is not type(None)] or [tp]
    for t in options:
        try:
            if t is bool:
                return string_to_bool(value)
            if t in (int, float):
                return t(value)
        except (TypeError, ValueError, argparse.ArgumentTypeError):
            continue
    raise ValueError(value)


def _number_text(v: Any) -> bool:
    """Whether ``v`` is text that reads as a number (``1e-3``: YAML 1.1 keeps it a string)."""
    if not isinstance(v, str):
        return False
    try:
        float(v)
    except ValueError:
        return False
    return True


def _field_hints(classes: Iterable[type]) -> dict[str, tuple[Any, tuple[Any, ...]]]:
    """``name -> (type, choices)`` over the dataclasses of a recipe."""
    out: dict[str, tuple[Any, tuple[Any, ...]]] = {}
    for cls in classes:
        hints = typing.get_type_hints(cls)
        for f in fields(cls):
            tp = hints.get(f.name, Any)
            if f.name == "resume_from_checkpoint":
                tp = str | bool | None  # true: the newest complete checkpoint
            out.setdefault(f.name, (tp, tuple(f.metadata.get("choices") or ())))
    return out


def _check_raw(key: str, value: Any, tp: Any, choices: tuple[Any, ...], where: str) -> None:
    """Type, choices and range of a value as written in a recipe (before TRL parses it)."""
    if not _fits(value, tp):
        rule = _ALL_RULES.get(key)
        expected = rule.expected() if rule is not None else _describe(tp)
        if isinstance(value, list) and any(_number_text(v) for v in value):
            expected += " (YAML reads numbers like 1e-3 as text; write 1.0e-3)"
        if not isinstance(value, str):
            raise _fail(key, value, expected, where)
        try:
            value = _from_string(value, tp)
        except ValueError:
            raise _fail(key, value, expected, where) from None
    if choices and value is not None and value not in choices:
        raise _fail(key, value, "one of " + ", ".join(repr(c) for c in choices), where)
    _check_value(key, value, where)


def _hint_key(key: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    return f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else "")


# --------------------------------------------------------------------------- parsing
def parse_recipe(training_cls: type, argv: Sequence[str] | None = None) -> tuple[Any, Any, Any]:
    """Parse ``[--config recipe.yaml] [--key value ...]`` into the three dataclasses.

    The recipe is read with :func:`read_recipe`; unknown keys raise :class:`RecipeError`
    naming the closest known key, and every value is checked (:func:`check_args`)
    before anything is built from it.
    """
    from trl import ModelConfig, TrlParser

    classes = (OmniADScriptArguments, training_cls, ModelConfig)
    parser = TrlParser(classes, exit_on_error=False)
    hints = _field_hints(classes)
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
            _check_raw(key, value, *hints[key], in_recipe)

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
        if on_cli:
            namespace, _ = parser.parse_known_args(cli)
            for key in sorted(on_cli):
                _check_value(key, getattr(namespace, key), "on the command line")
        parsed = tuple(parser.parse_args_and_config(args))
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
    check_args(*parsed, origin=origin)
    return parsed  # type: ignore[return-value]


# --------------------------------------------------------------------------- dataset
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
    from omniad_core.prompts import SYSTEM_PROMPT

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
