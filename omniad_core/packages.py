"""Which installed packages running a model needs, and the commands that install them.

Every missing package is a :class:`MissingPackageError` (an ``ImportError``) whose
message names the install; the CLI prints it as a one-line error.  Nothing here imports
torch unless asked for the torch build (:func:`torchvision_hint` without arguments).
"""

from __future__ import annotations

__all__ = ["MODEL_INSTALL", "MissingPackageError", "require_model_packages", "torchvision_hint"]


class MissingPackageError(ImportError):
    """A package the checkpoint needs is not installed (the message says what to install)."""


#: The packages a model in this process needs, and what to install when one is missing.
MODEL_INSTALL = (
    "pip install torch==2.13.0 (the CPU build; on a GPU machine see the README, 'On a GPU "
    "machine'), then pip install 'omniad[model]'"
)


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
