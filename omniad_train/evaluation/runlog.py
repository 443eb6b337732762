"""Resumable JSONL result logs and deterministic sharding.

A run writes one JSON object per line, one line per finished item, each with a unique
``"id"``.  :class:`RunLog` makes such a file safe to resume:

- lines are appended a batch at a time, flushed and ``fsync``-ed, so a killed process
  loses at most the batch it was generating;
- on opening, a partial last line (the process died mid-write), corrupt lines,
  lines a ``validate`` function rejects (e.g. a line holding only an ``"id"``) and
  repeated ids are detected and dropped (the first valid line of an id wins); the file
  is rewritten atomically when that happens, and the dropped items are simply redone;
- an exclusive lock (POSIX ``flock`` on a ``.lock`` file next to the log) stops two
  processes from appending to the same file; :meth:`RunLog.acquire` takes it before
  anything is read or written, so a caller can check or clear a run folder while no
  other process can use the log.

Sharding splits an ordered item list into ``num_shards`` disjoint, deterministic
slices (item ``k`` goes to shard ``k % num_shards``); :func:`resolve_shard` reads the
shard from arguments or from the ``RANK`` / ``WORLD_SIZE`` variables that ``torchrun``
and ``accelerate launch`` set.

>>> shard_slice(list("abcdefg"), 1, 3)
['b', 'e']
>>> resolve_shard(None, None, env={"RANK": "2", "WORLD_SIZE": "4"})
(2, 4)
>>> resolve_shard(None, None, env={})
(0, 1)
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from omniad_core._files import atomic_write_text, default_file_mode

__all__ = [
    "LogRepair",
    "RunLog",
    "RunLogLockedError",
    "Validator",
    "atomic_write_text",
    "default_file_mode",
    "read_jsonl",
    "resolve_shard",
    "selection_sha256",
    "shard_slice",
]

T = TypeVar("T")

#: A line check: None for a usable line, else what is wrong with it (one short phrase).
Validator = Callable[[Mapping[str, Any]], str | None]


@dataclass(frozen=True)
class LogRepair:
    """What reading a JSONL log found wrong (and :class:`RunLog` dropped).

    Attributes
    ----------
    partial_last_line : bool
        The file ended with an incomplete line (an interrupted write).
    corrupt_lines : tuple of int
        1-based numbers of lines that were not a JSON object with a string ``"id"``.
    duplicate_ids : tuple of str
        Ids seen again after their first valid line.
    invalid_lines : tuple of (int, str)
        1-based line numbers of JSON objects with an ``"id"`` that the log's validator
        rejected, each with the reason (e.g. a missing field or an unknown status).
    """

    partial_last_line: bool = False
    corrupt_lines: tuple[int, ...] = ()
    duplicate_ids: tuple[str, ...] = ()
    invalid_lines: tuple[tuple[int, str], ...] = ()

    @property
    def clean(self) -> bool:
        """True when nothing had to be dropped."""
        return not (
            self.partial_last_line or self.corrupt_lines or self.duplicate_ids or self.invalid_lines
        )

    def describe(self) -> str:
        """A one-line summary for logs."""
        parts = []
        if self.partial_last_line:
            parts.append("a partial last line")
        if self.corrupt_lines:
            parts.append(
                f"{len(self.corrupt_lines)} corrupt line(s) {list(self.corrupt_lines)[:5]}"
            )
        if self.invalid_lines:
            parts.append(
                f"{len(self.invalid_lines)} invalid line(s) "
                f"{[n for n, _ in self.invalid_lines][:5]}"
            )
        if self.duplicate_ids:
            parts.append(f"{len(self.duplicate_ids)} repeated id(s)")
        return ", ".join(parts) if parts else "nothing"

    def problems(self, path: str | os.PathLike[str], limit: int = 20) -> list[str]:
        """One ``FILE:LINE: what is wrong`` message per dropped line (at most ``limit``).

        >>> LogRepair(corrupt_lines=(2,), invalid_lines=((3, "no 'status'"),)).problems("r")
        ['r:2: not a JSON object with a string "id"', "r:3: no 'status'"]
        """
        found = [(n, 'not a JSON object with a string "id"') for n in self.corrupt_lines]
        found += list(self.invalid_lines)
        out = [f"{os.fspath(path)}:{n}: {why}" for n, why in sorted(found)]
        if len(out) > limit:
            out = [*out[:limit], f"... and {len(out) - limit} more"]
        return out


def _parse(
    data: bytes, validate: Validator | None = None
) -> tuple[list[dict[str, Any]], LogRepair, bool]:
    """Good lines (first valid one per id), what was wrong, and whether to rewrite."""
    pieces = data.split(b"\n")
    tail = pieces.pop()  # b"" when the data ends with a newline
    good: list[dict[str, Any]] = []
    seen: set[str] = set()
    corrupt: list[int] = []
    invalid: list[tuple[int, str]] = []
    dups: list[str] = []
    partial = False
    entries = [(k + 1, p, True) for k, p in enumerate(pieces)]
    if tail.strip():
        entries.append((len(pieces) + 1, tail, False))
    for lineno, raw, terminated in entries:
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            obj = None
        if not isinstance(obj, dict) or not isinstance(obj.get("id"), str):
            if terminated:
                corrupt.append(lineno)
            else:
                partial = True
            continue
        problem = validate(obj) if validate is not None else None
        if problem is not None:
            invalid.append((lineno, f"id {obj['id']!r}: {problem}"))
            continue
        if obj["id"] in seen:
            dups.append(obj["id"])
            continue
        seen.add(obj["id"])
        good.append(obj)
    repair = LogRepair(partial, tuple(corrupt), tuple(dups), tuple(invalid))
    blank_lines = any(not p.strip() for p in pieces)
    needs_rewrite = not repair.clean or bool(tail) or blank_lines
    return good, repair, needs_rewrite


def read_jsonl(
    path: str | os.PathLike[str], validate: Validator | None = None
) -> tuple[list[dict[str, Any]], LogRepair]:
    """The valid lines of a result log (first line per id) without modifying the file.

    A missing file reads as empty.  ``validate`` (see :class:`RunLog`) drops the lines
    it rejects; they are listed in ``LogRepair.invalid_lines``.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "r.jsonl"
    >>> _ = p.write_text('{"id": "a"}\\nnot json\\n{"id": "a"}\\n{"id": "b", "x"')
    >>> lines, repair = read_jsonl(p)
    >>> [d["id"] for d in lines], repair.partial_last_line, repair.corrupt_lines
    (['a'], True, (2,))
    """
    p = Path(path)
    if not p.is_file():
        return [], LogRepair()
    good, repair, _ = _parse(p.read_bytes(), validate)
    return good, repair


def _dumps(line: Mapping[str, Any]) -> str:
    return json.dumps(line, ensure_ascii=False, allow_nan=False)


class RunLogLockedError(RuntimeError):
    """Another process holds the log (two processes would write the same shard)."""


class RunLog:
    """An append-only JSONL log of finished items, safe to interrupt and resume.

    Use as a context manager::

        with RunLog("out/results.jsonl") as log:
            done = log.done          # {id: line} of the items already finished
            log.append([{"id": "q1", ...}, {"id": "q2", ...}])

    Parameters
    ----------
    path : path
        The JSONL file (created when missing).
    lock : bool
        Take an exclusive lock for as long as the log is open (POSIX only).
    validate : callable, optional
        ``validate(line)`` returns None for a usable line, else the reason it is not;
        rejected lines are dropped on opening (their items are redone) and listed in
        :attr:`repair`.

    The lock can be taken before opening (:meth:`acquire`), so that a caller may check
    and clear the run's other files while no other process can use this log.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        lock: bool = True,
        validate: Validator | None = None,
    ) -> None:
        self.path = Path(path)
        self._lock = lock
        self.validate = validate
        self._lock_file: Any = None
        self._file: Any = None
        self.done: dict[str, dict[str, Any]] = {}
        self.repair = LogRepair()

    def __enter__(self) -> RunLog:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def locked(self) -> bool:
        """True while this object holds the log's lock."""
        return self._lock_file is not None

    def acquire(self) -> None:
        """Take the exclusive lock (creating the folder); nothing else is read or written.

        Raises :class:`RunLogLockedError` when another process holds it.  A no-op when
        already held or when the log was made with ``lock=False``.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self._lock and self._lock_file is None:
            self._acquire()

    def open(self) -> dict[str, dict[str, Any]]:
        """Lock (unless :meth:`acquire` did), repair and open the log; returns the
        finished lines by id."""
        self.acquire()
        try:
            data = self.path.read_bytes() if self.path.is_file() else b""
            good, self.repair, rewrite = _parse(data, self.validate)
            if rewrite:
                atomic_write_text(self.path, "".join(_dumps(d) + "\n" for d in good))
            self.done = {d["id"]: d for d in good}
            self._file = open(self.path, "ab")  # noqa: SIM115 - closed in close()
        except BaseException:
            self._release()
            raise
        return self.done

    def append(self, lines: Iterable[Mapping[str, Any]]) -> None:
        """Append finished items (one write, flushed and fsync-ed).

        Lines need a string ``"id"``; an id already in the log is an error.
        """
        if self._file is None:
            raise RuntimeError("the log is not open; use `with RunLog(path) as log:`")
        batch = list(lines)
        for line in batch:
            key = line.get("id")
            if not isinstance(key, str):
                raise ValueError(f"every line needs a string 'id', got {key!r}")
            if key in self.done:
                raise ValueError(f"id {key!r} is already in {self.path}")
        data = "".join(_dumps(line) + "\n" for line in batch).encode("utf-8")
        if not data:
            return
        self._file.write(data)
        self._file.flush()
        os.fsync(self._file.fileno())
        for line in batch:
            self.done[line["id"]] = dict(line)

    def discard(self, ids: Iterable[str]) -> int:
        """Remove the lines of ``ids`` (rewriting the file atomically); returns how many.

        Used to redo items, e.g. inputs skipped by an earlier run that may have been fixed.
        """
        if self._file is None:
            raise RuntimeError("the log is not open; use `with RunLog(path) as log:`")
        drop = {i for i in ids if i in self.done}
        if not drop:
            return 0
        for i in drop:
            del self.done[i]
        self._file.close()
        atomic_write_text(self.path, "".join(_dumps(d) + "\n" for d in self.done.values()))
        self._file = open(self.path, "ab")  # noqa: SIM115 - closed in close()
        return len(drop)

    def sort(self, key: Callable[[dict[str, Any]], Any]) -> bool:
        """Rewrite the log in ``key`` order (atomically) unless it is in order already."""
        if self._file is None:
            raise RuntimeError("the log is not open; use `with RunLog(path) as log:`")
        lines = list(self.done.values())
        ordered = sorted(lines, key=key)
        if ordered == lines:
            return False
        self._file.close()
        atomic_write_text(self.path, "".join(_dumps(d) + "\n" for d in ordered))
        self._file = open(self.path, "ab")  # noqa: SIM115 - closed in close()
        self.done = {d["id"]: d for d in ordered}
        return True

    def close(self) -> None:
        """Close the file and release the lock."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self._release()

    # ------------------------------------------------------------------ locking
    def _acquire(self) -> None:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no locking
            return
        lock_path = self.path.with_name(f".{self.path.name}.lock")
        f = open(lock_path, "a+b")  # noqa: SIM115 - kept open while locked
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            raise RunLogLockedError(
                f"another process is writing {self.path}; run each shard once (give every "
                "process its own --shard_index) or wait for the other run to finish"
            ) from None
        self._lock_file = f

    def _release(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()  # closing the descriptor releases the flock
            self._lock_file = None


# --------------------------------------------------------------------------- sharding
def _int_env(env: Mapping[str, str], name: str) -> int | None:
    value = env.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


def resolve_shard(
    shard_index: int | None = None,
    num_shards: int | None = None,
    *,
    env: Mapping[str, str] | None = None,
) -> tuple[int, int]:
    """``(shard_index, num_shards)`` from the arguments, else ``RANK`` / ``WORLD_SIZE``.

    ``torchrun`` and ``accelerate launch`` set both variables; without them and without
    arguments the run is a single shard ``(0, 1)``.
    """
    if (shard_index is None) != (num_shards is None):
        raise ValueError("give both shard_index and num_shards (or neither)")
    if shard_index is None:
        env = os.environ if env is None else env
        rank, world = _int_env(env, "RANK"), _int_env(env, "WORLD_SIZE")
        if rank is None or world is None:
            return 0, 1
        shard_index, num_shards = rank, world
    assert num_shards is not None
    if isinstance(shard_index, bool) or isinstance(num_shards, bool):
        raise TypeError("shard_index and num_shards must be integers")
    shard_index, num_shards = int(shard_index), int(num_shards)
    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    if not 0 <= shard_index < num_shards:
        raise ValueError(f"shard_index must be in 0..{num_shards - 1}, got {shard_index}")
    return shard_index, num_shards


def shard_slice(items: Sequence[T], shard_index: int, num_shards: int) -> list[T]:
    """Shard ``shard_index`` of ``num_shards``: items ``shard_index, shard_index + n, ...``."""
    return list(items[shard_index::num_shards])


def selection_sha256(ids: Iterable[str]) -> str:
    """A fingerprint of an ordered id list (shards of one run share it)."""
    h = hashlib.sha256()
    for i in ids:
        h.update(i.encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()
