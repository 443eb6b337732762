"""Cold and warm start: ``import textmask; textmask.encode(mask)`` in fresh processes.

*Cold* runs use a :class:`Sandbox`, a private copy of the package with an empty Numba
cache, so every kernel used is compiled; *warm* runs reuse the filled cache.  A few
context rows (``python -c pass``, ``import numpy``, ``import numba``) come first.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from _tables import Section, log
from _timing import Config

import textmask as tm

__all__ = ["Sandbox", "Startup", "bench_startup", "startup_section"]

_CHILD = """\
import sys, time
{hide}t0 = time.perf_counter()
import numpy as np
import textmask
{call}
t1 = time.perf_counter()
assert textmask.__file__.startswith({pkg!r}), textmask.__file__
print(t1 - t0)
"""
_ENCODE = "m = np.zeros((512, 512), np.uint8); m[70:80, 90:140] = 1; textmask.encode(m)"
_WARMUP = "textmask.warmup()"
#: Start-up rows for context: (label, code run by ``python -c``).
_CONTEXT = (
    ("python -c pass", "pass"),
    ("import numpy", "import numpy"),
    ("import numba", "import numba"),
)
_HIDE_SCIPY = "sys.modules['scipy'] = None  # as if scipy were not installed\n"


@dataclass
class Startup:
    """Timings of one start-up command over several fresh processes."""

    label: str
    wall: list[float] = field(default_factory=list)
    inproc: list[float] = field(default_factory=list)

    def add(self, wall: float, inproc: float) -> None:
        self.wall.append(wall)
        self.inproc.append(inproc)

    @property
    def best_wall(self) -> float:
        return min(self.wall)

    @property
    def best_inproc(self) -> float:
        return min(self.inproc)


class Sandbox:
    """A private copy of the textmask package with an empty Numba cache directory."""

    def __init__(self, root: Path) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="sandbox-", dir=root))
        self.src = self.dir / "src"
        self.cache = self.dir / "numba-cache"
        self.cache.mkdir()
        shutil.copytree(
            Path(tm.__file__).parent,
            self.src / "textmask",
            ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc", "*.pyc"),
        )

    def run(self, call: str, *, hide_scipy: bool = False) -> tuple[float, float]:
        """(wall seconds of the process, in-process seconds of import + call)."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(self.src), env.get("PYTHONPATH", "")) if p
        )
        env["NUMBA_CACHE_DIR"] = str(self.cache)
        code = _CHILD.format(
            hide=_HIDE_SCIPY if hide_scipy else "",
            call=call,
            pkg=str(self.src / "textmask"),
        )
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-c", code],
            env=env,
            cwd=self.dir,  # not the repository: '' on sys.path would find its textmask
            capture_output=True,
            text=True,
            check=False,
        )
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"start-up child failed:\n{proc.stderr}")
        return wall, float(proc.stdout.strip().splitlines()[-1])


def _plain(code: str) -> tuple[float, float]:
    """(wall, in-process) seconds of ``python -c code`` in a fresh process."""
    timed = f"import time\nt0 = time.perf_counter()\n{code}\nprint(time.perf_counter() - t0)"
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", timed], capture_output=True, text=True, check=True)
    return time.perf_counter() - t0, float(proc.stdout.strip())


def bench_startup(cfg: Config) -> list[Startup]:
    """Cold runs first (each in a new sandbox), then rounds of every warm command.

    Going round-robin over the warm commands spreads a burst of load from other
    processes over all rows instead of spoiling every run of one.
    """
    log("start-up: fresh processes (cold runs compile every kernel used)")
    rows: list[Startup] = []
    jobs: list[tuple[Startup, Callable[[], tuple[float, float]]]] = []
    for label, code in _CONTEXT:
        rows.append(Startup(label))
        jobs.append((rows[-1], functools.partial(_plain, code)))
    calls = [("encode(mask)", _ENCODE)]
    if not cfg.quick:
        calls.append(("warmup() (every kernel)", _WARMUP))
    has_scipy = importlib.util.find_spec("scipy") is not None
    with tempfile.TemporaryDirectory(prefix="textmask-bench-") as tmp:
        for name, call in calls:
            cold = Startup(f"cold: import textmask; {name}")
            for _ in range(cfg.cold_runs):
                box = Sandbox(Path(tmp))
                cold.add(*box.run(call))
            rows.append(cold)
            rows.append(Startup(f"warm: import textmask; {name}"))
            jobs.append((rows[-1], functools.partial(box.run, call)))
            if has_scipy and call == _ENCODE:
                rows.append(Startup(f"warm, scipy hidden: import textmask; {name}"))
                jobs.append((rows[-1], functools.partial(box.run, call, hide_scipy=True)))
        for _ in range(cfg.startup_runs):
            for row, job in jobs:
                row.add(*job())
    return rows


def startup_section(rows: list[Startup]) -> Section:
    """The *Cold and warm start* table."""
    sec = Section(
        "Cold and warm start (fresh processes)",
        "Each row is a new `python -c ...` process.  *cold*: the `textmask` package is "
        "copied to a new temporary directory put first on `PYTHONPATH` (so no kernel "
        "cached next to the installed package is found) and `NUMBA_CACHE_DIR` is a new "
        "empty directory, so every kernel used is compiled.  *warm*: the same copy and "
        "cache again, now filled.  *scipy hidden* sets `sys.modules['scipy'] = None` "
        "first: Numba imports `scipy.linalg` (to look for BLAS) the first time it loads "
        "any kernel when scipy is installed, and this row shows the start-up of an "
        "environment without scipy.  *in-process* is the time from the first import to "
        "the end of the call, *process* the wall time of the whole subprocess, and "
        "*outside* the difference (interpreter start-up and shutdown; once Numba has "
        "loaded kernels, shutdown takes a few tenths of a second).  Best of the runs "
        "shown.",
        ["command", "in-process (s)", "process (s)", "outside (s)", "runs"],
    )
    for r in rows:
        outside = min(w - i for w, i in zip(r.wall, r.inproc, strict=True))
        sec.rows.append(
            [
                r.label,
                f"{r.best_inproc:.2f}",
                f"{r.best_wall:.2f}",
                f"{outside:.2f}",
                str(len(r.wall)),
            ]
        )
    return sec
