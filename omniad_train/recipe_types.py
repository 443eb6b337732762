"""Recipe values as written, against the types of the dataclass fields they set.

A recipe value reaches TRL as YAML made it (``1e-3`` is a string to YAML 1.1, ``true`` a
bool).  :func:`check_raw` checks it against its field's type hint (from
:func:`field_hints`), its field's choices and its rule
(:func:`omniad_train.recipe_checks.check_value`) before TRL parses it, so a wrong type
is a :class:`~omniad_train.recipe_checks.RecipeError` naming the key, not a traceback
deep in argparse.

>>> check_raw("grid", "16", int, (), "in recipe sft.yaml")  # converted as argparse would
>>> check_raw("grid", [16], int, (), "in recipe sft.yaml")
Traceback (most recent call last):
...
omniad_train.recipe_checks.RecipeError: grid = [16] in recipe sft.yaml is invalid: expected an integer in [1, 4096]
"""

from __future__ import annotations

import argparse
import types
import typing
from collections.abc import Iterable, Sequence
from dataclasses import fields
from enum import Enum
from typing import Any

from omniad_train.recipe_checks import check_value, invalid, rule_for

__all__ = ["FieldHints", "check_raw", "field_hints"]

#: ``name -> (type, choices)`` of every field a recipe may set.
FieldHints = dict[str, tuple[Any, tuple[Any, ...]]]


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


def field_hints(classes: Iterable[type]) -> FieldHints:
    """``name -> (type, choices)`` over the dataclasses of a recipe (the first class
    that has a field wins)."""
    out: FieldHints = {}
    for cls in classes:
        hints = typing.get_type_hints(cls)
        for f in fields(cls):
            tp = hints.get(f.name, Any)
            if f.name == "resume_from_checkpoint":
                tp = str | bool | None  # true: the newest complete checkpoint
            out.setdefault(f.name, (tp, tuple(f.metadata.get("choices") or ())))
    return out


def check_raw(key: str, value: Any, tp: Any, choices: tuple[Any, ...], where: str) -> None:
    """Type, choices and range of a value as written in a recipe (before TRL parses it).

    A string is converted as argparse would (``"16"`` for an int field) before its
    choices and rule are checked.

    Raises
    ------
    RecipeError
        Naming the key, the value, what was expected and ``where`` it came from.
    """
    if not _fits(value, tp):
        rule = rule_for(key)
        expected = rule.expected() if rule is not None else _describe(tp)
        if isinstance(value, list) and any(_number_text(v) for v in value):
            expected += " (YAML reads numbers like 1e-3 as text; write 1.0e-3)"
        if not isinstance(value, str):
            raise invalid(key, value, expected, where)
        try:
            value = _from_string(value, tp)
        except ValueError:
            raise invalid(key, value, expected, where) from None
    if choices and value is not None and value not in choices:
        raise invalid(key, value, "one of " + ", ".join(repr(c) for c in choices), where)
    check_value(key, value, where)
