"""The demo folder's step bookkeeping: each step of a run records its settings and the
hashes of the steps it reads from, so a re-run skips, resumes or redoes it.

:func:`decide_steps` compares the records in the folder with the steps of the current
plan; :func:`run_steps` acts on that; :func:`claim_folder` accepts a new, empty or demo
folder and refuses any other (:class:`DemoError`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "DEMO_ENTRIES",
    "DEMO_FILE",
    "DEMO_FORMAT",
    "DONE",
    "DemoError",
    "Step",
    "StepDecision",
    "claim_folder",
    "clean",
    "decide_steps",
    "is_demo_folder",
    "read_json",
    "run_steps",
    "say",
    "write_json",
]

DEMO_FILE = "omniad-demo.json"
DEMO_FORMAT = "omniad-demo/1"
DONE = "DONE"
# Everything a demo writes at the top of its folder (what ``overwrite`` deletes).
DEMO_ENTRIES = (
    "data",
    "prepared",
    "model-built",
    "model-start",
    "sft",
    "grpo",
    "eval",
    "overlays",
    "report.md",
    "report.json",
    "grpo_rewards.png",
    DEMO_FILE,
)

# Step folders of runs made before ``omniad-demo.json`` existed (each had a ``DONE``).
_LEGACY_STEP_FOLDERS = ("data", "model-start", "sft", "grpo")


def say(msg: str) -> None:
    """Print one line of the demo's progress, ``[omniad demo] msg``."""
    print(f"[omniad demo] {msg}", flush=True)


def read_json(path: Path) -> Any:
    """The JSON in ``path``, or None when it is missing or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` to ``path`` atomically (through a ``.tmp`` file)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)


def clean(folder: Path) -> None:
    """Delete ``folder`` (a folder, a file or a symlink, which is not followed), if any."""
    if folder.is_dir() and not folder.is_symlink():
        shutil.rmtree(folder)
    elif folder.exists() or folder.is_symlink():
        folder.unlink()


class DemoError(RuntimeError):
    """The demo cannot use its output folder (a file, or a folder that is not a demo's)."""


@dataclass(frozen=True)
class Step:
    """One resumable step of a run: what it depends on and the function that does it.

    Parameters
    ----------
    name
        Shown in messages and used as the key of its record.
    folder
        Its output folder, relative to the run folder; the step owns it (a redo deletes it).
    settings
        The values its output depends on (JSON types); a change redoes the step.
    run
        Called with the (existing) step folder.
    upstream
        Names of earlier steps it reads from: a redone upstream step redoes this one.
    resumable
        ``run`` continues the work of an interrupted call with the same settings (the
        evaluation runners, ``prepare``), so an unfinished folder is kept, not cleaned.
    """

    name: str
    folder: str
    settings: Mapping[str, Any]
    run: Callable[[Path], object]
    upstream: tuple[str, ...] = ()
    resumable: bool = False


@dataclass(frozen=True)
class StepDecision:
    """What :func:`decide_steps` chose for a step.

    ``action`` is ``"skip"`` (finished with these settings), ``"resume"`` (unfinished with
    these settings, folder kept) or ``"run"`` (from a clean folder). ``reason`` says why an
    earlier output is not reused (empty for a first run or a skip).
    """

    name: str
    action: Literal["skip", "resume", "run"]
    record: dict[str, Any]
    reason: str = ""


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value))


def _started(out: Path) -> dict[str, Any]:
    data = read_json(out / DEMO_FILE)
    steps = data.get("steps") if isinstance(data, dict) else None
    return steps if isinstance(steps, dict) else {}


def _record(step: Step, hashes: dict[str, str]) -> dict[str, Any]:
    settings = _jsonable(dict(step.settings))
    upstream = {u: hashes[u] for u in step.upstream}
    key = json.dumps({"settings": settings, "upstream": upstream}, sort_keys=True)
    return {
        "step": step.name,
        "settings": settings,
        "upstream": upstream,
        "hash": hashlib.sha256(key.encode()).hexdigest()[:16],
    }


def _diff(old: Any, new: dict[str, Any]) -> str:
    old = old if isinstance(old, dict) else {}
    keys = list(new) + [k for k in old if k not in new]
    return ", ".join(
        f"{k} {json.dumps(old.get(k))} -> {json.dumps(new.get(k))}"
        for k in keys
        if old.get(k) != new.get(k)
    )


def _why(name: str, old: Any, rec: dict[str, Any], finished: bool) -> tuple[str, bool]:
    """Why the earlier output ``old`` (a record, or None) is not reused; and whether the
    step's own settings changed (then it is always announced)."""
    if not isinstance(old, dict) or not isinstance(old.get("hash"), str):
        return f"{name} has no recorded settings (an older demo run)", False
    diff = _diff(old.get("settings"), rec["settings"])
    if diff:
        return f"plan changed for {name} ({diff})", True
    ups = sorted(
        u for u in rec["upstream"] if (old.get("upstream") or {}).get(u) != rec["upstream"][u]
    )
    if ups:
        return f"{name} was made from an earlier {', '.join(ups)}", False
    return ("" if finished else f"{name} did not finish"), False


def decide_steps(out: Path, steps: Sequence[Step]) -> tuple[list[StepDecision], list[str]]:
    """Decide, from the records in ``out``, which steps to skip, resume or redo.

    A step is skipped when its folder holds ``DONE`` with the same settings hash, which
    covers its own settings and the hashes of its upstream steps, and no upstream step
    runs. Any other step runs, from a clean folder unless it is resumable and was
    interrupted with the same settings. Returns the decisions in order and one message
    per step whose earlier output is discarded, naming it and everything redone with it.

    >>> import tempfile
    >>> a = Step("a", "a", {"n": 1}, run=lambda f: None)
    >>> b = Step("b", "b", {}, run=lambda f: None, upstream=("a",))
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = run_steps(Path(tmp), [a, b], say=lambda m: None)
    ...     a2 = Step("a", "a", {"n": 2}, run=lambda f: None)
    ...     decisions, lines = decide_steps(Path(tmp), [a2, b])
    >>> [d.action for d in decisions], lines
    (['run', 'run'], ['plan changed for a (n 1 -> 2): redoing a, b'])
    """
    names = [s.name for s in steps]
    if len(set(names)) != len(names):
        raise ValueError(f"step names repeat: {names}")
    hashes: dict[str, str] = {}
    started = _started(out)
    decisions: list[StepDecision] = []
    running: set[str] = set()
    reasons: list[tuple[str, str, bool]] = []
    for step in steps:
        missing = [u for u in step.upstream if u not in hashes]
        if missing:
            raise ValueError(f"step {step.name!r}: upstream {missing} must come before it")
        rec = _record(step, hashes)
        hashes[step.name] = rec["hash"]
        folder = out / step.folder
        # an unreadable DONE counts as one without settings
        done = (read_json(folder / DONE) or {}) if (folder / DONE).is_file() else None
        forced = any(u in running for u in step.upstream)
        old = started.get(step.name)
        same_start = isinstance(old, dict) and old.get("hash") == rec["hash"]
        if done is not None:
            finished = isinstance(done, dict) and done.get("hash") == rec["hash"]
            action = "skip" if finished and not forced else "run"
            reason, own = _why(step.name, done, rec, True)
        elif same_start:
            action = "resume" if step.resumable else "run"
            reason, own = f"{step.name} did not finish", False
        elif old is not None or (folder.is_dir() and any(folder.iterdir())):
            action = "run"
            reason, own = _why(step.name, old, rec, False)
        else:
            action, reason, own = "run", "", False
        if action != "skip":
            running.add(step.name)
            if reason:
                reasons.append((step.name, reason, own))
        decisions.append(StepDecision(step.name, action, rec, reason if action != "skip" else ""))
    lines: list[str] = []
    covered: set[str] = set()
    for name, reason, own in reasons:
        if name in covered and not own:
            continue
        chain = _downstream(steps, name)
        covered.update(chain)
        if next(d for d in decisions if d.name == name).action == "resume":
            rest = chain[1:]
            lines.append(
                f"{reason}: resuming {name}" + (f", redoing {', '.join(rest)}" if rest else "")
            )
        else:
            lines.append(f"{reason}: redoing {', '.join(chain)}")
    return decisions, lines


def _downstream(steps: Sequence[Step], name: str) -> list[str]:
    """``name`` and every step that depends on it, directly or not, in step order."""
    chain = [name]
    for s in steps:
        if any(u in chain for u in s.upstream) and s.name not in chain:
            chain.append(s.name)
    return chain


def run_steps(
    out: Path, steps: Sequence[Step], say: Callable[[str], None] = say
) -> tuple[list[str], dict[str, float]]:
    """Run ``steps`` in order in ``out``, skipping those finished with the same settings.

    Says why earlier outputs are redone (see :func:`decide_steps`). A step that runs first
    loses the ``DONE`` of everything downstream of it and, unless resumed, its folder; its
    settings are recorded in ``out/omniad-demo.json`` when it starts and in its
    ``DONE`` when it finishes, so an interrupted step is redone (or resumed) next time.
    Returns the names of the steps that ran and the seconds each step took.
    """
    decisions, lines = decide_steps(out, steps)
    for line in lines:
        say(line)
    ran: list[str] = []
    seconds: dict[str, float] = {}
    by_name = {s.name: s for s in steps}
    for step, d in zip(steps, decisions, strict=True):
        t = time.perf_counter()
        if d.action != "skip":
            folder = out / step.folder
            for name in _downstream(steps, step.name)[1:]:
                (out / by_name[name].folder / DONE).unlink(missing_ok=True)
            if d.action == "run":
                clean(folder)
            else:
                (folder / DONE).unlink(missing_ok=True)
            data = read_json(out / DEMO_FILE)
            data = data if isinstance(data, dict) else {"format": DEMO_FORMAT}
            data["steps"] = {**_started(out), step.name: d.record}
            write_json(out / DEMO_FILE, data)
            folder.mkdir(parents=True, exist_ok=True)
            step.run(folder)
            write_json(folder / DONE, {**d.record, "finished": time.time()})
            ran.append(step.name)
        seconds[step.name] = time.perf_counter() - t
    return ran, seconds


def is_demo_folder(out: Path) -> bool:
    """Whether ``out`` holds a demo run: its ``omniad-demo.json``, or (runs made before
    that file existed) a step folder with a ``DONE`` marker."""
    if (out / DEMO_FILE).is_file():
        return True
    return any((out / name / DONE).is_file() for name in _LEGACY_STEP_FOLDERS)


def claim_folder(out: Path, overwrite: bool = False) -> None:
    """Make ``out`` ready for a demo run, or raise :class:`DemoError`.

    A new or empty folder, or a demo folder, is accepted; ``overwrite`` first deletes the
    demo's own files (:data:`DEMO_ENTRIES`; anything else in the folder stays). A file,
    or a non-empty folder that is not a demo's, is refused and nothing is deleted.
    """
    if out.exists() and not out.is_dir():
        raise DemoError(f"the output {str(out)!r} is a file; give a folder with --out")
    if out.is_dir() and any(out.iterdir()) and not is_demo_folder(out):
        raise DemoError(
            f"{str(out)!r} is not empty and is not an omniad demo folder (no {DEMO_FILE}); "
            "give a new or empty folder with --out"
            + (
                "; --overwrite deletes only a demo folder's files, nothing was deleted"
                if overwrite
                else ""
            )
        )
    out.mkdir(parents=True, exist_ok=True)
    if overwrite:
        for name in DEMO_ENTRIES:
            clean(out / name)
    if not (out / DEMO_FILE).is_file():
        write_json(out / DEMO_FILE, {"format": DEMO_FORMAT, "steps": {}})
