"""Reading a recipe file safely: plain YAML only, bounded in size, nothing executed.

:func:`read_recipe` turns a recipe YAML into a mapping of argument names to plain values
before TRL sees it.  The loader is a ``yaml.SafeLoader`` (no Python tags) that also
refuses duplicate keys; a file over :data:`MAX_RECIPE_BYTES` or one expanding (YAML
aliases included) to more than 100,000 values is refused.  Every refusal is a one-line
:class:`~omniad_train.recipe_checks.RecipeError` naming the file and how to fix it.

>>> read_recipe("no/such/recipe.yaml")
Traceback (most recent call last):
...
omniad_train.recipe_checks.RecipeError: recipe not found: no/such/recipe.yaml; pass --config PATH/TO/recipe.yaml (shipped recipes are in omniad_train/recipes/)
"""

from __future__ import annotations

import os
import re
from collections.abc import Hashable
from pathlib import Path
from typing import Any

from omniad_train.recipe_checks import RecipeError

__all__ = ["MAX_RECIPE_BYTES", "read_recipe"]

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
            + "; pass --config PATH/TO/recipe.yaml (shipped recipes are in omniad_train/recipes/)"
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
