"""Which installed packages each part needs, and the commands that install them.

``pip install omniad`` brings the codec (NumPy, Numba); the ``core`` extra the rest of
``omniad_core`` (Pillow, pydantic, tqdm); ``model`` torch and transformers for a model
in this process; ``ui`` gradio.  Every missing package is a :class:`MissingPackageError`
(an ``ImportError``) whose message names the install, or an ``ImportError`` of a module
that :func:`install_hint` turns into one; the CLIs print either as a one-line error.
Nothing here imports torch unless asked for the torch build (:func:`torchvision_hint`
without arguments).
"""

from __future__ import annotations

__all__ = [
    "DISTRIBUTION_OF",
    "EXTRA_OF",
    "MODEL_INSTALL",
    "MissingPackageError",
    "install_hint",
    "missing_hint",
    "require_model_packages",
    "torchvision_hint",
]


class MissingPackageError(ImportError):
    """A package the checkpoint needs is not installed (the message says what to install)."""


#: The packages a model in this process needs, and what to install when one is missing.
MODEL_INSTALL = (
    "pip install torch==2.13.0 (the CPU build; on a GPU machine see the README, 'On a GPU "
    "machine'), then pip install 'omniad[model]'"
)


#: The extra that brings each optional top-level module the core and model layers import.
EXTRA_OF = {
    "PIL": "core",
    "pydantic": "core",
    "tqdm": "core",
    "torch": "model",
    "transformers": "model",
    "safetensors": "model",
    "tokenizers": "model",
    "accelerate": "model",
    "gradio": "ui",
}


#: The name to install a module by, where it differs from the module's name.
DISTRIBUTION_OF = {"PIL": "Pillow"}


def missing_hint(module: str) -> str:
    """The line for a module of :data:`EXTRA_OF` that is not installed.

    >>> missing_hint("PIL")
    "this needs Pillow, which is not installed; install it with: pip install 'omniad[core]'"
    """
    extra = EXTRA_OF[module]
    command = MODEL_INSTALL if extra == "model" else f"pip install 'omniad[{extra}]'"
    name = DISTRIBUTION_OF.get(module, module)
    return f"this needs {name}, which is not installed; install it with: {command}"


def install_hint(exc: ImportError) -> str | None:
    """What to install for the missing package behind ``exc``, or None when ``exc`` is no
    missing package of an extra (then it is a real error, and says so itself).

    Only a :class:`ModuleNotFoundError` for a module of :data:`EXTRA_OF` that is really
    absent counts: ``from transformers import NoSuchThing`` (a version that lacks a
    name) or a broken install of a package that is there is not an install problem.

    >>> install_hint(ModuleNotFoundError("No module named 'numpy'", name="numpy")) is None
    True
    >>> install_hint(ImportError("cannot import name 'X'", name="transformers")) is None
    True
    """
    import importlib.util

    if isinstance(exc, MissingPackageError):
        return str(exc)
    if not isinstance(exc, ModuleNotFoundError):
        return None
    name = (exc.name or "").split(".")[0]
    if name not in EXTRA_OF:
        return None
    try:
        if importlib.util.find_spec(name) is not None:
            return None  # installed: a submodule or a dependency of it is what is missing
    except (ImportError, ValueError):
        return None
    return missing_hint(name)


def require_model_packages(what: str) -> None:
    """Raise :class:`MissingPackageError` naming the install unless torch and transformers
    are importable; ``what`` says what needs them (``"loading a model"``).

    >>> require_model_packages("a doctest")  # this environment has both: nothing happens
    """
    import importlib.util

    missing = [m for m in ("torch", "transformers") if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingPackageError(
            f"{what} needs {' and '.join(missing)}, which this environment does not have "
            f"(the model extra brings them); install them: {MODEL_INSTALL}"
        )


def torchvision_hint(torch_version: str | None = None, cuda: str | None = None) -> str:
    """How to install the torchvision build that matches a torch build.

    >>> torchvision_hint("2.13.0+cpu")  # doctest: +ELLIPSIS
    "pip install 'torchvision==0.28.*' --index-url https://download.pytorch.org/whl/cpu (...)"
    >>> torchvision_hint("2.13.0", cuda="12.8").split(" (")[0]
    "pip install 'torchvision==0.28.*' --index-url https://download.pytorch.org/whl/cu128"
    """
    if torch_version is None:
        import torch

        torch_version, cuda = torch.__version__, torch.version.cuda
    parts = torch_version.split("+")[0].split(".")
    known = len(parts) > 1 and parts[0] == "2" and parts[1].isdigit()
    spec = f"'torchvision==0.{int(parts[1]) + 15}.*'" if known else "torchvision"
    index = f"cu{cuda.replace('.', '')}" if cuda else "cpu"
    return (
        f"pip install {spec} --index-url https://download.pytorch.org/whl/{index} (the build "
        f"matching torch {torch_version}; on a GPU machine: pip install 'omniad[gpu]' after "
        "your CUDA torch, see the README, 'On a GPU machine')"
    )
