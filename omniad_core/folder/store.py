"""What a run writes: the append-only JSONL, the lock, output names, the CSV table."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omniad_core.folder.common import (
    _LOCK_FILE,
    _STATUSES,
    SUMMARY_COLUMNS,
    FolderRunError,
    _atomic_text,
)

__all__ = ["FolderResult", "summary_rows"]

# -------------------------------------------------------------------------- outputs
_UNSAFE = re.compile(r"[^A-Za-z0-9._ +=@,()\[\]-]")


def _safe_part(part: str) -> str:
    cleaned = _UNSAFE.sub("_", part).strip() or "_"
    if cleaned.startswith(".") or cleaned in (".", ".."):
        cleaned = "_" + cleaned
    return cleaned


def _output_rel(item_id: str) -> str:
    """The overlay's / mask's path inside its folder: the id, made safe, ending in .png."""
    parts = [_safe_part(p) for p in item_id.split("/") if p not in ("", ".", "..")]
    rel = "/".join(parts or ["_"])
    if not rel.lower().endswith(".png"):
        rel += ".png"
    if rel != item_id and rel != item_id + ".png":  # changed by cleaning: keep it unique
        stem = rel[: -len(".png")]
        rel = f"{stem}-{hashlib.sha256(item_id.encode()).hexdigest()[:8]}.png"
    return rel


def _inside(out_dir: Path, rel: str) -> Path:
    """``out_dir / rel``, refused unless it resolves (symlinks too) inside ``out_dir``."""
    base = out_dir.resolve()
    target = (base / rel).resolve()
    if not target.is_relative_to(base):
        raise FolderRunError(
            f"refusing to write {rel!r}: it resolves to {str(target)!r}, outside {str(base)!r} "
            "(a symbolic link inside the results folder?)"
        )
    return target


# ---------------------------------------------------------------------- the JSONL log
def _dumps(line: Mapping[str, Any]) -> str:
    return json.dumps(line, ensure_ascii=False, allow_nan=False)


def _valid(obj: Any) -> bool:
    return (
        isinstance(obj, dict)
        and isinstance(obj.get("id"), str)
        and obj.get("status") in _STATUSES
        and isinstance(obj.get("path"), str)
    )


class _Log:
    """The append-only results JSONL: one ``write`` + ``fsync`` per line; on opening, a
    partial last line, corrupt lines and repeated ids are dropped (the file is rewritten
    atomically), so their images are simply redone."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: dict[str, dict[str, Any]] = {}
        self.dropped = 0
        data = path.read_bytes() if path.is_file() else b""
        rewrite = bool(data) and not data.endswith(b"\n")
        for raw in data.split(b"\n"):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                obj = None
            if not _valid(obj) or obj["id"] in self.lines:
                self.dropped += 1
                rewrite = True
                continue
            self.lines[obj["id"]] = obj
        if rewrite:
            self._rewrite(list(self.lines.values()))
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def _rewrite(self, lines: list[dict[str, Any]]) -> None:
        _atomic_text(self.path, "".join(_dumps(d) + "\n" for d in lines))

    def append(self, line: dict[str, Any]) -> None:
        data = (_dumps(line) + "\n").encode("utf-8")
        os.write(self._fd, data)  # one write of the whole line, O_APPEND
        os.fsync(self._fd)
        self.lines[line["id"]] = line

    def replace_all(self, lines: list[dict[str, Any]]) -> None:
        """Rewrite the file with ``lines`` (atomically) and keep appending after them."""
        os.close(self._fd)
        self._rewrite(lines)
        self.lines = {d["id"]: d for d in lines}
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


@contextlib.contextmanager
def _locked(out_dir: Path) -> Any:
    """An exclusive lock on the results folder for as long as the run lasts (POSIX)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no locking
        yield
        return
    f = open(out_dir / _LOCK_FILE, "a+b")  # noqa: SIM115 - closed below
    try:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise FolderRunError(
                f"another process is writing {out_dir}; wait for it to finish or choose "
                "another --out"
            ) from None
        yield
    finally:
        f.close()


# ------------------------------------------------------------------------- results
@dataclass
class FolderResult:
    """What :func:`inspect_folder` wrote.

    Attributes
    ----------
    out_dir, results, summary : Path
        The results folder, its JSONL and its CSV table.
    lines : list of dict
        The JSONL lines, in input order.
    n_new : int
        Images analysed (or found unreadable) by this call; the others were finished
        by an earlier run.
    model : str
        The model's name (:func:`model_label`).
    """

    out_dir: Path
    results: Path
    summary: Path
    lines: list[dict[str, Any]]
    n_new: int
    model: str

    @property
    def n_images(self) -> int:
        """Images in the run."""
        return len(self.lines)

    def _count(self, status: str) -> int:
        return sum(1 for d in self.lines if d["status"] == status)

    @property
    def n_anomalous(self) -> int:
        """Images the model marked anomalous."""
        return sum(1 for d in self.lines if d["status"] == "ok" and d["anomalous"])

    @property
    def n_unreadable(self) -> int:
        """Files that could not be read as images (skipped, with a reason)."""
        return self._count("unreadable")

    @property
    def n_failed(self) -> int:
        """Requests a served model did not answer (tried again by the next run)."""
        return self._count("failed")

    @property
    def unreadable(self) -> list[tuple[str, str]]:
        """``(path, reason)`` of every file that could not be read."""
        return [(d["path"], d["error"]) for d in self.lines if d["status"] == "unreadable"]

    def rows(self) -> list[dict[str, Any]]:
        """The rows of ``summary.csv`` (sorted by anomaly), as dicts."""
        return summary_rows(self.lines)


def _sort_key(line: Mapping[str, Any]) -> tuple[Any, ...]:
    status = line.get("status")
    rank = {"ok": 1, "failed": 2}.get(str(status), 3)
    if status == "ok" and line.get("anomalous"):
        rank = 0
    return (rank, -float(line.get("mask_area") or 0.0), str(line.get("id")))


def _csv_cell(value: Any) -> Any:
    """A table cell; text that a spreadsheet would run as a formula is quoted."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def summary_rows(lines: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The summary table of JSONL lines: anomalous first (largest mask area first), then
    normal, then failed requests, then unreadable files.

    >>> rows = summary_rows([
    ...     {"id": "a.png", "status": "ok", "anomalous": False, "mask_area": 0.0},
    ...     {"id": "b.png", "status": "unreadable", "error": "truncated"},
    ...     {"id": "c.png", "status": "ok", "anomalous": True, "mask_area": 0.25},
    ... ])
    >>> [(r["rank"], r["image"], r["status"]) for r in rows]
    [(1, 'c.png', 'ok'), (2, 'a.png', 'ok'), (3, 'b.png', 'unreadable')]
    """
    out = []
    for k, line in enumerate(sorted(lines, key=_sort_key), start=1):
        area = line.get("mask_area")
        out.append(
            {
                "rank": k,
                "image": line.get("id"),
                "status": line.get("status"),
                "anomalous": line.get("anomalous"),
                "answer": line.get("answer"),
                "answer_text": line.get("answer_text"),
                "mask_area": None if area is None else f"{float(area):.6f}",
                "seg": line.get("seg"),
                "overlay": line.get("overlay"),
                "mask": line.get("mask"),
                "reference": line.get("reference"),
                "width": line.get("width"),
                "height": line.get("height"),
                "error": line.get("error"),
            }
        )
    return out


def _write_summary(path: Path, lines: Iterable[Mapping[str, Any]]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(SUMMARY_COLUMNS), lineterminator="\n")
    w.writeheader()
    for row in summary_rows(lines):
        w.writerow({k: _csv_cell(v) for k, v in row.items()})
    _atomic_text(path, buf.getvalue())
