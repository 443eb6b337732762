"""Test configuration: make the oracle importable and set hypothesis defaults.

Set TEXTMASK_EXAMPLES_SCALE (e.g. 10) to run every property test with more examples.
"""

import os
import sys

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
