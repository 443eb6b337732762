"""The real Qwen2.5-VL chat template (shipped by TRL), rendered as transformers renders it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


def qwen_template():
    """A jinja2 template object; skips the test when jinja2 or TRL's file is absent."""
    sandbox = pytest.importorskip("jinja2.sandbox")
    spec = importlib.util.find_spec("trl")  # locate the file without importing trl
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("trl is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "chat_templates" / "qwen2_5_vl.jinja"
    if not path.is_file():
        pytest.skip("trl does not ship qwen2_5_vl.jinja")
    # transformers renders chat templates in this environment with these options
    env = sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(path.read_text())
