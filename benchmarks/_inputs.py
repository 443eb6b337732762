"""What the benchmark measures on: the 0/1 masks of each kind and shape, and the baselines
that are not textmask (a memory pass, the pure-Python reference, the naive reward path)."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from _tables import log

__all__ = [
    "BENCH_DIR",
    "GRID",
    "KINDS",
    "REFERENCE",
    "ROOT",
    "cell_edges",
    "load_naive",
    "load_reference",
    "make_mask",
    "memory_pass",
]

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = Path(__file__).resolve().parent
REFERENCE = ROOT / "tests" / "reference.py"

GRID = 24
KINDS = ("sparse", "empty", "checker", "noise50")


# --------------------------------------------------------------------------- masks
def cell_edges(n_pixels: int, n_cells: int = GRID) -> np.ndarray:
    """Exact grid geometry: edge ``k`` is ``floor(k * n_pixels / n_cells)``.

    Examples
    --------
    >>> cell_edges(10, 4).tolist()
    [0, 2, 5, 7, 10]
    """
    return (np.arange(n_cells + 1) * n_pixels) // n_cells


def make_mask(kind: str, shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A 0/1 ``uint8`` benchmark mask of one kind.

    Examples
    --------
    >>> int(make_mask("checker", (48, 48)).sum()), int(make_mask("empty", (8, 8)).sum())
    (1152, 0)
    """
    h, w = shape
    rng = np.random.default_rng(seed)
    if kind == "empty":
        return np.zeros(shape, np.uint8)
    if kind == "noise50":
        return rng.integers(0, 2, size=shape, dtype=np.uint8)
    if kind == "checker":
        row_cell = np.repeat(np.arange(GRID), np.diff(cell_edges(h)))
        col_cell = np.repeat(np.arange(GRID), np.diff(cell_edges(w)))
        return np.asarray((row_cell[:, None] + col_cell[None, :]) % 2 == 0, dtype=np.uint8)
    if kind == "sparse":  # three small blobs and two thin scratches
        m = np.zeros(shape, np.uint8)
        s = min(h, w)
        yy, xx = np.ogrid[:h, :w]
        for _ in range(3):
            cy, cx = rng.uniform(0.1, 0.9) * h, rng.uniform(0.1, 0.9) * w
            r = rng.uniform(0.005, 0.02) * s
            m[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 1
        for _ in range(2):
            y0, x0 = rng.uniform(0.1, 0.9) * h, rng.uniform(0.1, 0.9) * w
            angle, length = rng.uniform(0, np.pi), rng.uniform(0.05, 0.15) * s
            t = np.linspace(0.0, 1.0, int(2 * length) + 2)
            ys = np.clip(np.rint(y0 + t * length * np.sin(angle)), 0, h - 2).astype(np.intp)
            xs = np.clip(np.rint(x0 + t * length * np.cos(angle)), 0, w - 1).astype(np.intp)
            m[ys, xs] = 1
            m[ys + 1, xs] = 1  # 2 px wide
        return m
    raise ValueError(f"unknown mask kind {kind!r}")


# --------------------------------------------------------------------------- baselines
def memory_pass(mask: np.ndarray) -> Callable[[], Any]:
    """``mask.view(np.uint64).max()``: one read of the mask at memory speed."""
    if mask.shape[1] % 8 == 0:
        return lambda: mask.view(np.uint64).max()
    return lambda: mask.reshape(-1).view(np.uint64).max()  # width not a multiple of 8


def load_reference(wait_seconds: float = 1800.0) -> ModuleType:
    """Import ``tests/reference.py``, waiting for it if another engineer is writing it."""
    deadline = time.monotonic() + wait_seconds
    while not REFERENCE.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"{REFERENCE} did not appear within {wait_seconds:.0f} s")
        log(f"waiting for {REFERENCE} ...")
        time.sleep(10)
    sys.path.insert(0, str(REFERENCE.parent))
    return importlib.import_module("reference")


def load_naive() -> ModuleType:
    """``benchmarks/naive.py``, the naive NumPy reward path, loaded from its file."""
    spec = importlib.util.spec_from_file_location("naive", BENCH_DIR / "naive.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
