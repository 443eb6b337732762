"""Every package the code imports is brought by the extras its layer declares.

The suite runs with every extra and the dev tools installed, so an import of a package
that only ``dev`` brings (scikit-learn, rich, fastapi...) passes every other test and
fails a user's ``pip install 'omniad[train]'``.  This reads every import of every module
(function-level ones too) and checks each third-party one against the distributions
that ``pip install`` of the layer's extras would bring, following ``Requires-Dist``
of the installed packages, so a package that transformers pulls in counts too.
``tests/test_install.py`` checks the same for real in fresh environments, for the
commands it runs.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11+")

ROOT = Path(__file__).resolve().parent.parent

#: layer -> the extras a user installs to use it (what the README and docs say)
LAYER_EXTRAS = {
    "textmask": (),
    "omniad_core": ("core", "model", "ui"),
    "omniad_train": ("all", "deepspeed", "gpu"),
}

#: Imported only when the user asks for them, each with an error naming the install.
OPTIONAL = {
    "vllm": "the vLLM backend and use_vllm: true; docs/checkpoints.md, README",
    "flash_attn": "attn_implementation: auto / flash_attention_2; README",
}


def _imports(path: Path) -> set[str]:
    """Top-level names of the absolute imports in one module."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _closure(requirements: Iterable[str]) -> set[str]:
    """Normalised names of the distributions ``requirements`` bring, transitively, as
    installed here (markers evaluated for the extras asked for; a requirement that is not
    installed here is skipped: it can bring nothing the code imports in this environment)."""
    todo = [Requirement(r) for r in requirements]
    seen: set[str] = set()
    while todo:
        req = todo.pop()
        name = req.name.lower().replace("_", "-")
        key = f"{name}[{','.join(sorted(req.extras))}]"
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            continue
        for line in dist.requires or []:
            sub = Requirement(line)
            wanted = sub.marker is None or any(
                sub.marker.evaluate({"extra": extra}) for extra in req.extras or {""}
            )
            if wanted:
                sub.marker = None  # evaluated here, for the extras that brought it
                todo.append(sub)
    return {k.split("[")[0] for k in seen}


def _ours(extras: tuple[str, ...]) -> set[str]:
    """What ``pip install 'omniad[extras]'`` brings: this package's requirements read from
    pyproject.toml (the source, not an installed copy that may be older), the rest from
    the installed packages' metadata."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    optional = project["optional-dependencies"]
    wanted, todo, reqs = set(), list(extras), list(project["dependencies"])
    while todo:
        extra = todo.pop()
        if extra in wanted:
            continue
        wanted.add(extra)
        for line in optional[extra]:
            req = Requirement(line)
            if req.name == project["name"]:
                todo.extend(req.extras)
            else:
                reqs.append(line)
    return _closure(reqs)


def _module_to_dists() -> dict[str, set[str]]:
    return {
        mod: {d.lower().replace("_", "-") for d in dists}
        for mod, dists in metadata.packages_distributions().items()
    }


@pytest.mark.parametrize("layer", sorted(LAYER_EXTRAS))
def test_every_third_party_import_comes_with_the_layers_extras(layer):
    allowed = _ours(LAYER_EXTRAS[layer])
    providers = _module_to_dists()
    stdlib = set(sys.stdlib_module_names)
    own = {"textmask", "omniad_core", "omniad_train", "__future__"}
    wrong: dict[str, list[str]] = {}
    for path in sorted((ROOT / layer).rglob("*.py")):
        for name in _imports(path) - stdlib - own - set(OPTIONAL):
            dists = providers.get(name)
            if not dists:
                wrong.setdefault(f"{name} (not installed here)", []).append(path.name)
            elif not dists & allowed:
                wrong.setdefault(f"{name} (from {', '.join(sorted(dists))})", []).append(path.name)
    assert not wrong, (
        f"{layer} imports packages that `pip install 'omniad[{','.join(LAYER_EXTRAS[layer])}]'`"
        f" does not bring: {wrong}; add them to an extra in pyproject.toml or drop the import"
    )


def test_the_closure_follows_extras_and_markers():
    """The oracle itself: the train extra brings TRL and, through it, datasets; the bare
    package brings neither torch nor pydantic, and numba brings llvmlite."""
    train = _ours(("train",))
    assert {"trl", "datasets", "torch", "transformers", "pydantic"} <= train
    bare = _ours(())
    assert {"numpy", "numba", "llvmlite"} <= bare and "gradio" in _ours(("ui",))
    assert not {"torch", "pydantic", "pillow", "scikit-learn"} & bare
    assert "scikit-learn" not in _ours(("all", "deepspeed", "gpu"))  # dev only
