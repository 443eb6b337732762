"""Reading a recipe file safely: plain YAML only, bounded in size, nothing executed.

:func:`read_recipe` turns a recipe YAML into a mapping of argument names to plain values
before TRL sees it.  The loader is a ``yaml.SafeLoader`` (no Python tags) that also
refuses duplicate keys; a file over :data:`MAX_RECIPE_BYTES` or one expanding (YAML
aliases included) to more than 100,000 values is refused.  Every refusal is a one-line
:class:`~omniad_train.recipe_checks.RecipeError` naming the file and how to fix it.

Shipped recipes are addressable by name from an installed package:
:func:`resolve_recipe` turns ``qwen2_5_vl_7b/sft`` (or ``qwen2_5_vl_7b/sft.yaml``) into
the packaged file when no such path exists locally (a local path wins), and
:func:`shipped_recipes` lists them with a one-line description each.

>>> read_recipe("no/such/recipe.yaml")
Traceback (most recent call last):
...
omniad_train.recipe_checks.RecipeError: recipe not found: no/such/recipe.yaml; pass --config PATH/TO/recipe.yaml or a shipped recipe's name (`omniad-train recipes` lists them)
>>> resolve_recipe("tiny_cpu/sft").name
'sft.yaml'
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from omniad_train.recipe_checks import RecipeError

__all__ = [
    "MAX_RECIPE_BYTES",
    "ShippedFile",
    "read_recipe",
    "recipes_folder",
    "resolve_recipe",
    "resolve_shipped",
    "shipped_recipes",
]

#: A recipe larger than this is refused unread (recipes are a few dozen lines).
MAX_RECIPE_BYTES = 1 << 20
#: Values (list items and mapping entries, aliases expanded) a recipe may hold.
_MAX_RECIPE_NODES = 100_000


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
            f"recipe not found: {p}"
            + (" (it is a folder)" if p.is_dir() else "")
            + "; pass --config PATH/TO/recipe.yaml or a shipped recipe's name "
            "(`omniad-train recipes` lists them)"
        )
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


# --------------------------------------------------------------------------- shipped files
#: What a shipped file is for: a training recipe (``--config``), a DeepSpeed JSON (the
#: ``deepspeed`` key) or an accelerate config (``accelerate launch --config_file``).
Kind = Literal["recipe", "deepspeed", "accelerate"]
_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class ShippedFile:
    """A file shipped in ``omniad_train/recipes/``: its ``name`` (``folder/stem``, what
    ``--config`` accepts), its ``path``, its ``kind`` and a one-line ``description``."""

    name: str
    path: Path
    kind: Kind
    description: str


def recipes_folder() -> Path:
    """The installed ``omniad_train/recipes/`` folder (through :mod:`importlib.resources`)."""
    from importlib.resources import files

    return Path(str(files("omniad_train").joinpath("recipes")))


def _leading_comment(path: Path) -> str:
    """The first line of a YAML file's leading comment, without ``#``."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        text = line.lstrip("#").strip()
        if text:
            return text
    return ""


def _deepspeed_description(path: Path) -> str:
    """What a DeepSpeed JSON does, read from it (JSON has no comments)."""
    try:
        zero = json.loads(path.read_text(encoding="utf-8")).get("zero_optimization", {})
    except (OSError, ValueError, AttributeError):
        return "DeepSpeed config"
    off = [
        w
        for k, w in (("offload_optimizer", "optimizer"), ("offload_param", "parameters"))
        if k in zero
    ]
    where = f", {' and '.join(off)} offloaded to CPU" if off else ""
    return f'DeepSpeed ZeRO stage {zero.get("stage", "?")}{where} ("auto" values from the recipe)'


def shipped_recipes() -> list[ShippedFile]:
    """Every shipped recipe, DeepSpeed and accelerate config, sorted by kind and name.

    >>> [f.name for f in shipped_recipes() if f.kind == "recipe"]
    ['qwen2_5_vl_7b/grpo', 'qwen2_5_vl_7b/sft', 'tiny_cpu/grpo', 'tiny_cpu/sft']
    """
    root = recipes_folder()
    out: list[ShippedFile] = []
    for path in sorted(root.glob("*/*")):
        if path.suffix not in _SUFFIXES or not path.is_file():
            continue
        folder = path.parent.name
        kind: Kind = (
            "deepspeed"
            if folder == "deepspeed"
            else "accelerate"
            if folder == "accelerate"
            else "recipe"
        )
        text = _deepspeed_description(path) if kind == "deepspeed" else _leading_comment(path)
        out.append(ShippedFile(f"{folder}/{path.stem}", path, kind, text))
    order = {"recipe": 0, "deepspeed": 1, "accelerate": 2}
    return sorted(out, key=lambda f: (order[f.kind], f.name))


def _name_of(value: str) -> str:
    name = value.replace("\\", "/").strip("/")
    for suffix in _SUFFIXES:
        name = name.removesuffix(suffix)
    return name.removeprefix("omniad_train/").removeprefix("recipes/")


def resolve_shipped(value: str | os.PathLike[str], kinds: tuple[Kind, ...]) -> Path | None:
    """The shipped file of one of ``kinds`` that ``value`` names, or None.

    ``value`` is a name as :func:`shipped_recipes` lists it, with or without its suffix,
    or the path of a shipped file relative to the repository (``omniad_train/recipes/...``).
    """
    name = _name_of(os.fspath(value))
    return next((f.path for f in shipped_recipes() if f.kind in kinds and f.name == name), None)


def resolve_recipe(value: str | os.PathLike[str]) -> Path:
    """The recipe file ``--config value`` means: a local path if it exists, else the
    shipped recipe of that name.

    Raises
    ------
    RecipeError
        Neither a local file nor a shipped name: the message lists the shipped recipes.
    """
    path = Path(value)
    if path.exists():
        return path
    shipped = resolve_shipped(value, ("recipe",))
    if shipped is not None:
        return shipped
    names = ", ".join(f.name for f in shipped_recipes() if f.kind == "recipe")
    raise RecipeError(
        f"recipe not found: {value} is neither a file nor a shipped recipe; pass --config "
        f"PATH/TO/recipe.yaml or one of the shipped names: {names} (`omniad-train recipes` "
        "describes them)"
    )
