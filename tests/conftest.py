"""Test configuration: make the oracle importable, set hypothesis defaults, shared fixtures.

Set TEXTMASK_EXAMPLES_SCALE (e.g. 10) to run every property test with more examples.
"""

import os
import sys

import pytest
from hypothesis import HealthCheck, settings

sys.path.insert(0, os.path.dirname(__file__))

settings.register_profile(
    "textmask",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# NUMBA_DISABLE_JIT=1 runs the kernels as plain Python: fewer examples keep it quick
settings.register_profile(
    "nojit",
    deadline=None,
    max_examples=12,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("TEXTMASK_HYPOTHESIS_PROFILE", "textmask"))


@pytest.fixture(scope="session")
def release_ckpt(tmp_path_factory):
    """A tiny checkpoint folder shaped like the hub's Qwen2.5-VL-7B-Instruct, built once.

    Right-padding tokenizer, sampling generation config with repetition penalty 1.05, the
    release's pixel budgets, flat config and sharded bf16 weights: see
    :mod:`omniad_train.tiny_release`. Read-only: copy it before changing any file in it.
    """
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from omniad_train.tiny import build_release_shaped

    return build_release_shaped(tmp_path_factory.mktemp("release") / "Qwen2.5-VL-7B-Instruct")
