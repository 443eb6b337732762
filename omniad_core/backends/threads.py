"""How many CPU threads torch uses for an in-process model: measured, overridable.

torch runs every operator on all physical cores by default.  For a small model each
operator is a few microseconds of work, and splitting it costs more than it saves; on a
busy machine it is far worse: a thread whose core is taken stalls every operator of the
others (``benchmarks/bench_inspect.py``, ``docs/speed.md``: on a 2-core machine with one
core busy, one answer of the 1.7M-parameter demo model took 0.3 s on one thread and 1-8 s
on two).  A model of a few hundred million parameters or more (a 3B or 7B Qwen2.5-VL on
a CPU) does enough work per operator for every core to pay, so it keeps torch's default.

:func:`thread_policy` is the rule (pure: parameters and cores in, threads out);
:func:`resolve_num_threads` adds the user's overrides, in this order:

1. the ``num_threads`` argument (``Inspector(num_threads=...)``, ``omniad inspect
   --threads N``): a positive count, ``0`` (leave torch's setting alone) or ``"auto"``
   (the policy);
2. ``OMNIAD_NUM_THREADS`` in the environment (the same values);
3. ``OMP_NUM_THREADS`` set in the environment: torch has already followed it, so it is
   left alone;
4. :func:`thread_policy` on the model's parameter count, for a model on the CPU: one
   thread for a small model; a large one, or a model on a GPU, keeps torch's setting.

The count is applied around each ``generate`` call (:func:`torch_threads`) and restored
afterwards, so building an Inspector does not change the threads of the rest of a program.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

__all__ = [
    "ENV_THREADS",
    "SMALL_MODEL_PARAMS",
    "available_cores",
    "count_parameters",
    "parse_threads",
    "resolve_num_threads",
    "thread_policy",
    "threads_for_model",
    "torch_threads",
]

#: Environment variable overriding the thread policy (a count, ``0`` or ``auto``).
ENV_THREADS = "OMNIAD_NUM_THREADS"
#: Models with fewer parameters run on one thread (measured: ``docs/speed.md``; one thread
#: beat two for the 0.1M test model and the 1.7M demo model, two beat one from 31M up).
SMALL_MODEL_PARAMS = 20_000_000


def thread_policy(n_params: int, cores: int) -> int:
    """Threads for a model of ``n_params`` parameters on ``cores`` usable cores.

    One thread below :data:`SMALL_MODEL_PARAMS`, every core above it (torch's own default).

    >>> thread_policy(1_710_944, 2), thread_policy(31_000_000, 2), thread_policy(7_000_000_000, 16)
    (1, 2, 16)
    >>> thread_policy(3_000_000_000, 0)  # an unknown core count counts as one
    1
    """
    cores = max(1, int(cores))
    return 1 if int(n_params) < SMALL_MODEL_PARAMS else cores


def parse_threads(value: Any, where: str = "num_threads") -> int | str:
    """``value`` as a thread count (``0`` = leave torch alone) or ``"auto"``.

    >>> parse_threads("4"), parse_threads(" auto "), parse_threads(0)
    (4, 'auto', 0)
    >>> parse_threads("many")
    Traceback (most recent call last):
    ...
    ValueError: num_threads must be a whole number of threads (0: leave torch's setting), or 'auto', got 'many'
    """
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    try:
        n = int(value.strip()) if isinstance(value, str) else value
        ok = type(n) is int and n >= 0
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(
            f"{where} must be a whole number of threads (0: leave torch's setting), "
            f"or 'auto', got {value!r}"
        )
    return n  # type: ignore[return-value]


def resolve_num_threads(
    num_threads: int | str | None,
    n_params: int,
    *,
    cores: int,
    on_cpu: bool = True,
    environ: Mapping[str, str] | None = None,
) -> tuple[int | None, str]:
    """``(threads, why)``: the count to run with (None: leave torch's setting) and its reason.

    ``environ`` defaults to ``os.environ``; see the module docstring for the order.

    >>> resolve_num_threads(None, 1_700_000, cores=2, environ={})
    (1, 'policy: 1,700,000 parameters < 20,000,000 -> 1 thread')
    >>> resolve_num_threads(None, 1_700_000, cores=2, environ={"OMNIAD_NUM_THREADS": "2"})
    (2, 'OMNIAD_NUM_THREADS=2')
    >>> resolve_num_threads(None, 1_700_000, cores=2, environ={"OMP_NUM_THREADS": "2"})
    (None, "OMP_NUM_THREADS=2 (torch's setting kept)")
    >>> resolve_num_threads(3, 1_700_000, cores=2, environ={"OMNIAD_NUM_THREADS": "2"})
    (3, 'num_threads=3')
    """
    env = os.environ if environ is None else environ
    if num_threads is not None:
        choice, why = parse_threads(num_threads), f"num_threads={num_threads}"
    elif env.get(ENV_THREADS, "").strip():
        raw = env[ENV_THREADS].strip()
        choice, why = parse_threads(raw, ENV_THREADS), f"{ENV_THREADS}={raw}"
    elif env.get("OMP_NUM_THREADS", "").strip():
        return None, f"OMP_NUM_THREADS={env['OMP_NUM_THREADS'].strip()} (torch's setting kept)"
    else:
        choice, why = "auto", ""
    if choice == 0:
        return None, f"{why} (torch's setting kept)"
    if choice != "auto":
        return int(choice), why
    if not on_cpu:
        return None, "the model is not on the CPU (torch's setting kept)"
    n = thread_policy(n_params, cores)
    if n_params >= SMALL_MODEL_PARAMS:  # every core: torch's own default, so nothing to change
        policy = (
            f"policy: {n_params:,} parameters >= {SMALL_MODEL_PARAMS:,} -> every core "
            f"({n}; torch's setting kept)"
        )
        return None, policy if not why else f"{why}: {policy}"
    policy = f"policy: {n_params:,} parameters < {SMALL_MODEL_PARAMS:,} -> 1 thread"
    return n, policy if not why else f"{why}: {policy}"


def threads_for_model(model: Any, num_threads: int | str | None) -> tuple[int | None, str]:
    """``(threads, why)`` for a loaded torch model (:func:`resolve_num_threads`, live values)."""
    device = str(getattr(model, "device", "cpu"))
    torch = sys.modules.get("torch")
    default = torch.get_num_threads() if torch is not None else None
    return resolve_num_threads(
        num_threads,
        count_parameters(model),
        cores=available_cores(default),
        on_cpu=device.startswith("cpu"),
    )


def available_cores(torch_default: int | None = None) -> int:
    """Cores this process may use: torch's default thread count (its physical cores),
    bounded by the CPU affinity mask (a container or ``taskset`` limit)."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        affinity = os.cpu_count() or 1
    if torch_default is None:
        return max(1, affinity)
    return max(1, min(int(torch_default), affinity))


def count_parameters(model: Any) -> int:
    """Number of parameters of a torch module (0 for anything else)."""
    params = getattr(model, "parameters", None)
    if not callable(params):
        return 0
    try:
        return int(sum(p.numel() for p in params()))
    except (TypeError, AttributeError):
        return 0


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)``, then restore the previous count.

    ``None`` changes nothing.
    """
    if n is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    if before != n:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
