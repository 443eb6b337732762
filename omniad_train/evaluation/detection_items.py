"""Detection inputs: dataset roots and the test images of each, in a fixed order.

:func:`normalize_roots` names the roots; :func:`collect_detection_items` reads their
test images with :func:`omniad_train.data.iter_mvtec` (rejects become skipped items).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from omniad_train.data.records import Record, Reject
from omniad_train.data.sources import iter_mvtec
from omniad_train.evaluation.execution import Item, parse_categories, select

__all__ = ["RootsLike", "collect_detection_items", "normalize_roots"]

RootsLike = (
    str | os.PathLike[str] | Mapping[str, Any] | Sequence[str | os.PathLike[str] | tuple[str, Any]]
)


def _default_name(path: Path) -> str:
    return path.parent.name if (path / "test").is_dir() else path.name


def normalize_roots(roots: RootsLike) -> list[tuple[str, Path]]:
    """``[(dataset name, folder)]`` from a path, ``{name: path}``, ``"NAME=PATH"`` strings
    or ``(name, path)`` pairs; a bare path is named after its folder.

    >>> normalize_roots(["VisA=/data/visa", "/data/mvtec_ad"])
    [('VisA', PosixPath('/data/visa')), ('mvtec_ad', PosixPath('/data/mvtec_ad'))]
    """
    if isinstance(roots, (str, os.PathLike)):
        entries: list[Any] = [roots]
    elif isinstance(roots, Mapping):
        entries = list(roots.items())
    else:
        entries = list(roots)
    out: list[tuple[str, Path]] = []
    for e in entries:
        if isinstance(e, tuple):
            name, path = str(e[0]), Path(e[1])
        else:
            s = os.fspath(e)
            if "=" in s and not Path(s).exists():
                name, _, rest = s.partition("=")
                path = Path(rest)
            else:
                path = Path(s)
                name = _default_name(path)
        if not name:
            raise ValueError(f"empty dataset name for root {str(path)!r}")
        out.append((name, path))
    names = [n for n, _ in out]
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise ValueError(f"dataset names must be unique, got {dups} twice; name roots NAME=PATH")
    if not out:
        raise ValueError("give at least one dataset root")
    return out


def collect_detection_items(
    roots: RootsLike,
    *,
    seed: int = 0,
    categories: str | Sequence[str] | None = None,
    limit: int | None = None,
    limit_per_category: int | None = None,
) -> list[Item]:
    """The test images of every root, in order (reader rejects become skipped items)."""

    def stream() -> Iterator[Item]:
        for name, path in normalize_roots(roots):
            for r in iter_mvtec(path, dataset=name, location_questions=False, seed=seed):
                if isinstance(r, Reject):
                    yield Item(
                        id=f"mvtec:{name}/{r.record}#defect",
                        index=0,
                        dataset=name,
                        category=_reject_category(r.record),
                        skip=(_reject_kind(r.reason), r.reason),
                        extra={"image": r.record},
                    )
                    continue
                assert isinstance(r, Record)
                if not r.id.endswith("#defect"):
                    continue
                rel = r.image_id.removeprefix(f"mvtec:{name}/")
                yield Item(
                    id=r.id,
                    index=0,
                    dataset=name,
                    category=r.category,
                    record=r,
                    extra={"image": rel},
                )

    return select(
        stream(),
        categories=parse_categories(categories),
        limit=limit,
        limit_per_category=limit_per_category,
    )


def _reject_category(record: str) -> str:
    p = Path(record)  # a root that is no dataset is named by its absolute path
    return "" if p.is_absolute() or not p.parts else p.parts[0]


def _reject_kind(reason: str) -> str:
    if "none of it is read" in reason:
        return "layout"  # a folder in no known layout
    return "mask" if "mask" in reason else "input"
