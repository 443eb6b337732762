"""The value checks of a recipe: types and ranges of every value that decides a run.

Each argument a recipe may set has a :class:`Rule` (what it may hold) in one of three
tables: :data:`SCRIPT_RULES` (``OmniADScriptArguments``), :data:`TRAINING_RULES` (TRL's
``SFTConfig`` / ``GRPOConfig``) and :data:`MODEL_RULES` (TRL's ``ModelConfig``).  Checks
across values (``answer_correct > answer_wrong``, something to train, one quantization)
are the functions in :data:`CROSS_CHECKS`, run in order by :func:`check_args` after every
value passed its own rule.  All of it runs before any weights load.

To check a new value, add its rule to the table of its dataclass; to check values
against each other, add a function ``(script_args, training_args, model_args, where)``
to :data:`CROSS_CHECKS` that raises :class:`RecipeError`.

>>> Rule.number(0, 1, open_hi=True).expected()
'a finite number in [0, 1)'
>>> check_value("alpha", 0, "in recipe sft.yaml")
Traceback (most recent call last):
...
omniad_train.recipe_checks.RecipeError: alpha = 0 in recipe sft.yaml is invalid: expected a finite number > 0
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

__all__ = [
    "CROSS_CHECKS",
    "MODEL_RULES",
    "SCRIPT_RULES",
    "TRAINING_RULES",
    "CrossCheck",
    "RecipeError",
    "Rule",
    "check_args",
    "check_fields",
    "check_value",
    "invalid",
    "rule_for",
]


class RecipeError(ValueError):
    """A recipe, its dataset or its arguments cannot work together (raised before loading a model)."""


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(x)


@dataclass(frozen=True)
class Rule:
    """What one argument may hold.

    Parameters
    ----------
    kind : str
        ``number``, ``int``, ``bool``, ``str`` (non-empty), ``text`` (any string),
        ``choice``, ``strs`` (a string or a list of strings), ``weights`` (finite
        numbers, not all zero) or ``attn`` (an attention implementation).
    lo, hi : float, optional
        Bounds of a ``number`` or ``int``; ``open_lo`` / ``open_hi`` exclude them.
    none : bool
        Whether null (None) is allowed.
    choices : tuple of str
        The values a ``choice`` may take.
    """

    kind: str
    lo: float | None = None
    hi: float | None = None
    open_lo: bool = False
    open_hi: bool = False
    none: bool = False
    choices: tuple[str, ...] = ()

    @classmethod
    def number(cls, lo: float | None = None, hi: float | None = None, **kw: Any) -> Rule:
        """A finite number in ``[lo, hi]`` (either bound may be open or absent)."""
        return cls("number", lo, hi, **kw)

    @classmethod
    def integer(cls, lo: float | None = None, hi: float | None = None, **kw: Any) -> Rule:
        """An integer in ``[lo, hi]`` (either bound may be open or absent)."""
        return cls("int", lo, hi, **kw)

    def expected(self) -> str:
        """What the value should be, as the error says it."""
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
                "attn": "auto (flash_attention_2 when flash-attn is installed and CUDA is "
                "present, else sdpa), sdpa, eager, flash_attention_2 (or another transformers "
                "attention implementation) or a hub kernel 'org/name'",
            }[self.kind]
        return what + (", or null" if self.none else "")

    def ok(self, v: Any) -> bool:
        """Whether ``v`` satisfies the rule."""
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
            num = Rule.number(lo=-math.inf)
            return (
                isinstance(v, (list, tuple))
                and len(v) > 0
                and all(num.ok(x) for x in v)
                and any(x != 0 for x in v)
            )
        if self.kind == "attn":
            return isinstance(v, str) and _attn_ok(v)
        raise AssertionError(self.kind)  # pragma: no cover


_BOOL = Rule("bool")

#: Rules for ``OmniADScriptArguments`` (every field).
SCRIPT_RULES: dict[str, Rule] = {
    "dataset_path": Rule("text"),
    "dataset_train_split": Rule("str"),
    "dataset_test_split": Rule("str", none=True),
    "max_train_samples": Rule.integer(1, none=True),
    "global_batch_size": Rule.integer(1, none=True),
    "max_per_device_batch": Rule.integer(1, none=True),
    "grid": Rule.integer(1, 4096),
    "image_size": Rule.integer(28),
    "freeze_vision_tower": _BOOL,
    "alpha": Rule.number(0, open_lo=True),
    "answer_correct": Rule.number(),
    "answer_wrong": Rule.number(),
    "reward_level": Rule("choice", choices=("pixel", "cell")),
}
#: Rules for SFTConfig / GRPOConfig values that decide a run (a key absent from the
#: recipe's training class is skipped).
TRAINING_RULES: dict[str, Rule] = {
    "learning_rate": Rule.number(0, open_lo=True),
    "weight_decay": Rule.number(0),
    "num_train_epochs": Rule.number(0),
    "max_steps": Rule.integer(-1),
    "per_device_train_batch_size": Rule.integer(1),
    "per_device_eval_batch_size": Rule.integer(1),
    "gradient_accumulation_steps": Rule.integer(1),
    "warmup_steps": Rule.number(0),
    "max_grad_norm": Rule.number(0, none=True),
    "adam_beta1": Rule.number(0, 1, open_hi=True),
    "adam_beta2": Rule.number(0, 1, open_hi=True),
    "adam_epsilon": Rule.number(0, open_lo=True),
    "logging_steps": Rule.number(0, open_lo=True),
    "save_steps": Rule.number(0, open_lo=True),
    "eval_steps": Rule.number(0, open_lo=True, none=True),
    "save_total_limit": Rule.integer(0, none=True),
    "seed": Rule.integer(0, 2**32 - 1),
    "data_seed": Rule.integer(0, 2**32 - 1, none=True),
    "dataloader_num_workers": Rule.integer(0),
    "output_dir": Rule("str", none=True),
    "use_cpu": _BOOL,
    "bf16": Rule("bool", none=True),
    "fp16": _BOOL,
    "gradient_checkpointing": _BOOL,
    "activation_checkpointing": Rule("bool", none=True),
    "trust_remote_code": _BOOL,
    "save_only_model": _BOOL,
    # SFT
    "max_length": Rule.integer(1, none=True),
    # GRPO
    "num_generations": Rule.integer(2),
    "num_generations_eval": Rule.integer(1, none=True),
    "max_completion_length": Rule.integer(1, none=True),
    "mask_truncated_completions": _BOOL,
    "temperature": Rule.number(0, open_lo=True),
    "top_p": Rule.number(0, 1, open_lo=True),
    "top_k": Rule.integer(0, none=True),
    "min_p": Rule.number(0, 1, none=True),
    "repetition_penalty": Rule.number(0, open_lo=True),
    "beta": Rule.number(0),
    "epsilon": Rule.number(0, open_lo=True),
    "epsilon_high": Rule.number(0, open_lo=True, none=True),
    "num_iterations": Rule.integer(1),
    "steps_per_generation": Rule.integer(1, none=True),
    "generation_batch_size": Rule.integer(1, none=True),
    "reward_weights": Rule("weights", none=True),
}
#: Rules for TRL's ``ModelConfig``.
MODEL_RULES: dict[str, Rule] = {
    "model_name_or_path": Rule("str"),
    "model_revision": Rule("str"),
    "dtype": Rule("choice", none=True, choices=("auto", "bfloat16", "float16", "float32")),
    "attn_implementation": Rule("attn", none=True),
    "use_peft": _BOOL,
    "lora_r": Rule.integer(1),
    "lora_alpha": Rule.integer(1),
    "lora_dropout": Rule.number(0, 1, open_hi=True),
    "lora_target_modules": Rule("strs", none=True),
    "load_in_8bit": _BOOL,
    "load_in_4bit": _BOOL,
}


def rule_for(key: str) -> Rule | None:
    """The rule of ``key`` (script, then model, then training table), or None."""
    for table in (SCRIPT_RULES, MODEL_RULES, TRAINING_RULES):
        if key in table:
            return table[key]
    return None


_KERNEL = re.compile(r"^[\w.-]+/[\w.-]+(@[\w.-]+)?(:[\w.-]+)?$")


def _attn_ok(name: str) -> bool:
    if name == "auto" or _KERNEL.match(name):  # auto: chosen at load time; or a hub kernel
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


def invalid(key: str, value: Any, expected: str, where: str) -> RecipeError:
    """The error for a bad value; ``where`` is "in recipe PATH", "on the command line",
    "in the arguments" or "" (the default value)."""
    if not where:
        if value is None:
            return RecipeError(
                f"{key} is not set: expected {expected}; set {key} in the recipe or pass --{key}"
            )
        where = "(the default)"
    return RecipeError(f"{key} = {_show(value)} {where} is invalid: expected {expected}")


def check_value(key: str, value: Any, where: str) -> None:
    """Check ``value`` against the rule of ``key`` (a key without a rule passes).

    Raises
    ------
    RecipeError
        From :func:`invalid`, when the value breaks the rule.
    """
    rule = rule_for(key)
    if rule is not None and not rule.ok(value):
        raise invalid(key, value, rule.expected(), where)


def check_fields(
    obj: Any, rules: Mapping[str, Rule], origin: Mapping[str, str], default: str
) -> None:
    """Check the attributes of ``obj`` that ``rules`` names (a dataclass: its fields only).

    ``origin`` says where each key's value came from; ``default`` is used for the rest.
    """
    names = {f.name for f in fields(obj)} if hasattr(obj, "__dataclass_fields__") else set()
    for key, rule in rules.items():
        if (names and key not in names) or not hasattr(obj, key):
            continue
        value = getattr(obj, key)
        if not rule.ok(value):
            raise invalid(key, value, rule.expected(), origin.get(key, default))


#: A check across values: ``(script_args, training_args, model_args, where)``, where
#: ``where`` maps a key to where its value came from; raises :class:`RecipeError`.
CrossCheck = Callable[[Any, Any, Any, Mapping[str, str]], None]


def _answer_rewards_ordered(script_args: Any, _t: Any, _m: Any, where: Mapping[str, str]) -> None:
    if script_args.answer_correct <= script_args.answer_wrong:
        raise RecipeError(
            f"answer_correct = {script_args.answer_correct} must be larger than answer_wrong = "
            f"{script_args.answer_wrong}, or GRPO rewards wrong answers; fix them "
            + (where.get("answer_correct") or where.get("answer_wrong") or "in the recipe")
        )


def _something_trains(_s: Any, training_args: Any, _m: Any, _w: Mapping[str, str]) -> None:
    steps = getattr(training_args, "max_steps", -1)
    epochs = getattr(training_args, "num_train_epochs", 1)
    if steps <= 0 and epochs <= 0:
        raise RecipeError(
            f"num_train_epochs = {epochs} and max_steps = {steps}: nothing would train; set "
            "num_train_epochs > 0 or max_steps >= 1"
        )


def _one_quantization(_s: Any, _t: Any, model_args: Any, _w: Mapping[str, str]) -> None:
    if getattr(model_args, "load_in_8bit", False) and getattr(model_args, "load_in_4bit", False):
        raise RecipeError("load_in_8bit and load_in_4bit are both true; choose one")


#: The checks across values, in the order :func:`check_args` runs them.
CROSS_CHECKS: tuple[CrossCheck, ...] = (
    _answer_rewards_ordered,
    _something_trains,
    _one_quantization,
)


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
    check_fields(script_args, SCRIPT_RULES, where, default)
    check_fields(training_args, TRAINING_RULES, where, default)
    check_fields(model_args, MODEL_RULES, where, default)
    for check in CROSS_CHECKS:
        check(script_args, training_args, model_args, where)
