"""Packaging promises: light imports, CI runs the README's commands, no-JIT mode works."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        cwd=ROOT,
        timeout=600,
    )


def test_import_textmask_leaves_torch_out():
    code = (
        "import sys, numpy as np, textmask\n"
        "textmask.encode(np.ones((4, 4), bool), 2)\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'trl', 'PIL', 'pydantic') if m in sys.modules)\n"
        "print(heavy)\n"
    )
    out = _run(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Set up and test", 1)[1].split("\n## ", 1)[0]
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", section, re.S)]


def test_ci_runs_exactly_the_readme_commands():
    install, test = _readme_commands()
    assert install.startswith("python -m pip install torch==2.13.0 &&")
    ci = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert install in ci and ci[-1] == test
    assert ci.index(install) < ci.index(test)


def test_warmup_module_command():
    out = subprocess.run(
        [sys.executable, "-m", "textmask", "warmup"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    assert "textmask kernels ready" in out.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "textmask", "nonsense"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "usage" in bad.stderr


@pytest.mark.slow
def test_codec_suite_passes_without_jit():
    """The kernels are plain Python under NUMBA_DISABLE_JIT=1 and must agree there too."""
    tests = [
        "tests/test_golden.py",
        "tests/test_codec_properties.py",
        "tests/test_decode_tolerant.py",
        "tests/test_metrics_reward.py",
    ]
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-x",
            "-p",
            "no:cacheprovider",
            "-m",
            "not slow",
            *tests,
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={
            **os.environ,
            "NUMBA_DISABLE_JIT": "1",
            "TEXTMASK_HYPOTHESIS_PROFILE": "nojit",
            "TEXTMASK_EXAMPLES_SCALE": "0.1",
        },
        timeout=1200,
    )
    tail = out.stdout[-3000:]
    assert out.returncode == 0, tail + out.stderr[-3000:]
    assert re.search(r"\d+ passed", tail) and " failed" not in tail


def test_package_data_ships_every_file_of_the_embedded_model():
    import fnmatch

    import tomllib

    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = data["tool"]["setuptools"]["package-data"]["omniad_core"]
    files = [p.name for p in (ROOT / "omniad_core" / "demo_model").iterdir() if p.is_file()]
    assert "model.safetensors" in files
    missing = [f for f in files if not any(fnmatch.fnmatch(f"demo_model/{f}", g) for g in globs)]
    assert not missing, f"add package-data globs for {missing} in pyproject.toml"
