"""Each extra on its own, as a user installs it: a fresh virtual environment, a wheel
built from a copy of the repository, then only what the README says for that use.

- ``pip install omniad``: the codec works; anything more names the ``core`` extra.
- ``omniad[core]``: encode, decode and the rewards without torch, and a whole client
  of a served model (``omniad inspect --endpoint`` against a real ``transformers serve``).
- torch (the CPU build, first), then ``omniad[model]``: ``omniad inspect`` with the
  embedded model, imported from site-packages, and no training packages installed.

The suite's own environment has every extra (``.[all,dev]``), so a package that only
another extra brings (accelerate came with ``train``) hides a broken install, and an
editable install hides package data missing from the wheel (the embedded demo model,
recipes).  Packages come from the same index as ``.ci/run``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import venv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def _tracked_copy(dest: Path) -> Path:
    """The repository's tracked and new (not ignored) files, as a clean clone holds them."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for rel in filter(None, listed):
        src = ROOT / os.fsdecode(rel)
        if src.is_file():
            target = dest / os.fsdecode(rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
    return dest


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    if shutil.which("git") is None:
        pytest.skip("git is needed to copy the repository's files")
    return _tracked_copy(tmp_path_factory.mktemp("install") / "src")


def _venv(where: Path, *installs: list[str]) -> Path:
    """``bin/`` of a new virtual environment after each ``pip install`` of ``installs``."""
    venv.create(where, with_pip=True)
    bin_dir = where / "bin"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PIP_PROGRESS_BAR"] = "off"
    for args in installs:
        done = subprocess.run(
            [str(bin_dir / "python"), "-m", "pip", "install", "-q", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=1200,
        )
        assert done.returncode == 0, f"pip install {' '.join(args)}:\n{done.stderr[-3000:]}"
    return bin_dir


@pytest.fixture(scope="module")
def model_only(source, tmp_path_factory) -> Path:
    """``omniad[model]`` and its dependencies only (torch first: the CPU build)."""
    return _venv(tmp_path_factory.mktemp("model") / "venv", ["torch==2.13.0"], [f"{source}[model]"])


@pytest.fixture(scope="module")
def codec_only(source, tmp_path_factory) -> Path:
    """``pip install omniad``: the codec (NumPy, Numba) and nothing else."""
    return _venv(tmp_path_factory.mktemp("codec") / "venv", [str(source)])


@pytest.fixture(scope="module")
def core_only(source, tmp_path_factory) -> Path:
    """``omniad[core]``: the codec, parsing, rewards and the codec commands; no torch."""
    return _venv(tmp_path_factory.mktemp("core") / "venv", [f"{source}[core]"])


def _run(bin_dir: Path, *argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(
        [str(bin_dir / argv[0]), *argv[1:]],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_the_model_extra_alone_inspects_an_image_with_the_embedded_model(model_only, tmp_path):
    image = tmp_path / "part.png"
    pixels = np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(image)
    run = _run(model_only, "omniad", "inspect", str(image), "--json", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["answer"] in {"A", "B"}
    assert out["image_size_hw"] == [300, 400]
    assert "embedded demo model" in run.stderr
    # installed from the wheel, not from the source tree
    where = _run(
        model_only, "python", "-c", "import omniad_core; print(omniad_core.__file__)", cwd=tmp_path
    )
    assert where.returncode == 0, where.stderr
    assert str(ROOT) not in where.stdout and "site-packages" in where.stdout


def test_the_model_extra_has_no_training_packages(model_only, tmp_path):
    """What ``model`` brings is what the Inspector needs: no TRL, no datasets, no peft."""
    code = (
        "import importlib.util as u\n"
        "print([m for m in ('trl', 'datasets', 'peft', 'deepspeed', 'gradio') if u.find_spec(m)])"
    )
    run = _run(model_only, "python", "-c", code, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"
    train = _run(model_only, "omniad-train", "--help", cwd=tmp_path)
    assert train.returncode == 0, train.stderr  # the entry point is installed and says how
    assert train.stdout.startswith("usage: omniad-train") and " sft " in train.stdout


def test_the_core_extra_encodes_and_decodes_and_names_the_extra_a_model_needs(core_only, tmp_path):
    mask = np.zeros((64, 64), np.uint8)
    mask[8:24, 16:40] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    enc = _run(
        core_only, "omniad", "encode", str(tmp_path / "mask.png"), "--grid", "8", cwd=tmp_path
    )
    assert enc.returncode == 0, enc.stderr
    assert enc.stdout.strip() == "(1, 2)-(1, 4), (2, 2)-(2, 4)"
    code = (
        "import sys\n"
        "from textmask import decode\n"
        "from omniad_core import FormatReward, parse_response\n"
        "print(int(decode(sys.argv[1], 8).sum()), sys.modules.get('torch'))\n"
    )
    dec = _run(core_only, "python", "-c", code, enc.stdout.strip(), cwd=tmp_path)
    assert dec.returncode == 0, dec.stderr
    assert dec.stdout.split() == ["6", "None"]
    run = _run(core_only, "omniad", "inspect", str(tmp_path / "mask.png"), cwd=tmp_path)
    assert run.returncode != 0
    assert "omniad[model]" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr


def test_the_core_extra_is_a_whole_client_of_a_served_model(core_only, served_demo, tmp_path):
    """No torch, no transformers: ``omniad inspect --endpoint`` against `transformers serve`
    (run by the suite's environment) answers, and reads the served folder's grid."""
    url, name = served_demo
    image = tmp_path / "part.png"
    pixels = np.random.default_rng(1).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(image)
    argv = ["omniad", "inspect", str(image), "--endpoint", url, "--served-model", name, "--json"]
    run = _run(core_only, *argv, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["answer"] in {"A", "B"}
    assert (out["grid"]["rows"], out["grid"]["cols"]) == (8, 8)  # the served omniad.json
    has = _run(core_only, "python", "-c", "import torch", cwd=tmp_path)
    assert has.returncode != 0 and "No module named 'torch'" in has.stderr


def test_the_bare_package_is_the_codec_and_names_the_extra_for_the_rest(codec_only, tmp_path):
    code = (
        "import numpy as np\n"
        "from textmask import decode, encode\n"
        "m = np.zeros((64, 64), bool); m[8:24, 16:40] = True\n"
        "t = encode(m, 8)\n"
        "print(t, '|', int(decode(t, 8, shape=(64, 64)).sum()))\n"
    )
    run = _run(codec_only, "python", "-c", code, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "(1, 2)-(1, 4), (2, 2)-(2, 4) | 384"  # 6 cells of 8 x 8 px
    mask = tmp_path / "mask.npy"
    np.save(mask, np.zeros((8, 8), np.uint8))  # a real file: the error must be the extra
    for argv in (["encode", str(mask)], ["inspect", str(mask)]):
        got = _run(codec_only, "omniad", *argv, cwd=tmp_path)
        lines = [ln for ln in got.stderr.splitlines() if ln.strip()]
        assert got.returncode == 1 and len(lines) == 1, got.stderr
        assert "pip install 'omniad[core]'" in lines[0] and "unexpected" not in lines[0]
