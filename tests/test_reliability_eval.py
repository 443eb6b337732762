"""Evaluation runners under faults (issue 10): concurrent ``--overwrite``, bad result
lines on resume, a model that cannot be loaded, and Ctrl-C.

The runs use the tiny offline Qwen2.5-VL (untrained: its answers are arbitrary text,
which is all these tests need) through the real Inspector, real files and, where two
processes are involved, real subprocesses.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from omniad_core import Inspector  # noqa: E402
from omniad_train.evaluation import (  # noqa: E402
    EvalInterrupted,
    RunLog,
    RunLogLockedError,
    build_report,
    check_line,
    line_validator,
    read_jsonl,
    run_detection,
    run_mmad,
)
from omniad_train.evaluation.cli import EXIT_INTERRUPTED, run_cli  # noqa: E402
from omniad_train.evaluation.common import RUN_FORMAT, write_json  # noqa: E402
from omniad_train.evaluation.mmad import main as mmad_main  # noqa: E402
from omniad_train.evaluation.schema import STATUSES  # noqa: E402

PROMPT = "Find defects."
N_QUESTIONS = 8  # 4 images x 2 questions
ENV = {
    **os.environ,
    "OMP_NUM_THREADS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_OFFLINE": "1",
}


def _rgb(h: int, w: int, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)


def _save(path: Path, array: np.ndarray) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """The untrained tiny model as a checkpoint folder the Inspector loads."""
    from omniad_core import save_spec
    from omniad_train.tiny import TinyConfig, build_tiny_qwen2_5_vl

    path = build_tiny_qwen2_5_vl(tmp_path_factory.mktemp("tiny") / "model", TinyConfig.test())
    save_spec(path, grid=24, image_size=56, system_prompt=PROMPT)
    return path


@pytest.fixture(scope="module")
def inspector(ckpt):
    return Inspector.from_pretrained(ckpt, max_new_tokens=8)


def _mmad(root: Path, n_images: int = 4) -> Path:
    """An mmad.json of ``n_images`` images with two questions each."""
    data = {}
    for k in range(n_images):
        key = f"Alpha/cap/test/good/{k:03d}.png"
        _save(root / key, _rgb(40, 48, k))
        data[key] = {
            "conversation": [
                {
                    "Question": "Is there any defect in the object?",
                    "Options": {"A": "Yes", "B": "No"},
                    "Answer": "B",
                    "type": "Anomaly Detection",
                },
                {
                    "Question": "What object is this?",
                    "Options": {"A": "cap", "B": "pcb"},
                    "Answer": "A",
                    "type": "Object Classification",
                },
            ]
        }
    (root / "mmad.json").write_text(json.dumps(data))
    return root / "mmad.json"


@pytest.fixture(scope="module")
def mmad_json(tmp_path_factory):
    return _mmad(tmp_path_factory.mktemp("mmad"))


@pytest.fixture(scope="module")
def finished(inspector, mmad_json, tmp_path_factory):
    """A finished MMAD run folder."""
    out = tmp_path_factory.mktemp("finished") / "run"
    result = run_mmad(inspector, mmad_json, out=out, batch_size=4, progress=False)
    assert result.complete
    return out


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def _snapshot(out: Path) -> dict[str, bytes]:
    """The folder's files (lock files aside: they hold nothing)."""
    return {
        p.name: p.read_bytes()
        for p in sorted(out.iterdir())
        if p.is_file() and not p.name.endswith(".lock")
    }


_HOLD = """
import fcntl, sys
f = open(sys.argv[1], "a+b")
fcntl.flock(f.fileno(), fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.read()  # hold the lock until the test closes our stdin
"""


class _Holder:
    """Another process holding a run log's lock (as a running evaluation does)."""

    def __init__(self, results: Path) -> None:
        lock = results.with_name(f".{results.name}.lock")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _HOLD, str(lock)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "locked"

    def __enter__(self) -> _Holder:
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


# --------------------------------------------------------------------------- item 1
def test_overwrite_is_refused_while_another_process_holds_the_run(
    inspector, ckpt, mmad_json, finished, tmp_path, capsys
):
    out = _copy(finished, tmp_path / "run")
    before = _snapshot(out)
    assert {"results.jsonl", "run.json", "report.json", "report.md"} <= set(before)
    with _Holder(out / "results.jsonl"):
        with pytest.raises(RunLogLockedError, match="another process"):
            run_mmad(inspector, mmad_json, out=out, overwrite=True, progress=False)
        # the command line too, and with other settings (which --overwrite would discard)
        argv = _overwrite_argv(ckpt, mmad_json, out)
        assert mmad_main(argv) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("error: another process is writing")
        assert _snapshot(out) == before  # nothing deleted, nothing rewritten
    # once the other process is gone, --overwrite works
    again = run_mmad(ckpt, mmad_json, out=out, overwrite=True, max_new_tokens=4, progress=False)
    assert again.complete and again.n_new == N_QUESTIONS


def test_sharded_overwrite_does_not_delete_a_live_single_process_run(
    inspector, mmad_json, finished, tmp_path
):
    out = _copy(finished, tmp_path / "run")
    before = _snapshot(out)
    with _Holder(out / "results.jsonl"):
        with pytest.raises(RunLogLockedError, match="does not delete"):
            run_mmad(
                inspector,
                mmad_json,
                out=out,
                shard_index=0,
                num_shards=2,
                overwrite=True,
                progress=False,
            )
        assert _snapshot(out) == before


_SLOW_RUN = """
import sys, time
import torch
torch.set_num_threads(1)
from omniad_core import Inspector
from omniad_train.evaluation import run_mmad

ckpt, mmad_json, out = sys.argv[1:4]
insp = Inspector.from_pretrained(ckpt, max_new_tokens=8)
generate = insp.analyze_batch

def slow(*args, **kwargs):  # slow enough for a second command to start mid-run
    time.sleep(0.3)
    return generate(*args, **kwargs)

insp.analyze_batch = slow
result = run_mmad(insp, mmad_json, out=out, batch_size=1, progress=False)
print(result.complete, result.report["counts"]["lines"])
"""


def _overwrite_argv(ckpt: Path, mmad_json: Path, out: Path) -> list[str]:
    """``eval mmad`` into ``out`` with other settings than its run and ``--overwrite``."""
    base = ["--model", str(ckpt), "--mmad_json", str(mmad_json), "--out", str(out)]
    return [*base, "--max_new_tokens", "4", "--overwrite", "--no_progress"]


def _wait_for_lines(path: Path, n: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file() and len(path.read_bytes().splitlines()) >= n:
            return
        if proc.poll() is not None:
            pytest.fail(f"the run ended early: {proc.communicate()}")
        time.sleep(0.02)
    pytest.fail(f"{path} did not reach {n} lines")


@pytest.mark.slow
def test_overwrite_during_a_running_evaluation_keeps_its_results(ckpt, tmp_path, capsys):
    mmad_json = _mmad(tmp_path / "data", n_images=8)  # 16 questions, ~0.3 s each
    out = tmp_path / "run"
    first = subprocess.Popen(
        [sys.executable, "-c", _SLOW_RUN, str(ckpt), str(mmad_json), str(out)],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for_lines(out / "results.jsonl", 2, first)
        argv = _overwrite_argv(ckpt, mmad_json, out)
        assert mmad_main(argv) == 1  # the second process is refused ...
        assert "another process" in capsys.readouterr().err
        stdout, stderr = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    # ... and the first one finishes with every result on disk and in its report
    assert first.returncode == 0, stderr
    assert stdout.split() == ["True", "16"]
    lines = read_jsonl(out / "results.jsonl")[0]
    assert len(lines) == 16 and len({d["id"] for d in lines}) == 16
    report = json.loads((out / "report.json").read_text())
    assert report["counts"]["lines"] == 16 and report["status"]["complete"]
    run = json.loads((out / "run.json").read_text())
    assert run["fingerprint"]["generation"]["max_new_tokens"] == 8  # the first run's settings


# --------------------------------------------------------------------------- item 5
def _rewrite(path: Path, edits: dict[int, object]) -> list[dict]:
    """Replace lines (0-based) by JSON values; returns the original lines."""
    raw = path.read_text().splitlines()
    old = [json.loads(x) for x in raw]
    for k, value in edits.items():
        raw[k] = json.dumps(value)
    path.write_text("\n".join(raw) + "\n")
    return old


def test_resume_redoes_invalid_lines_and_names_them(
    inspector, mmad_json, finished, tmp_path, caplog
):
    out = _copy(finished, tmp_path / "run")
    results = out / "results.jsonl"
    old = _rewrite(results, {})
    bad = {
        1: {"id": old[1]["id"]},  # only an id
        3: {**old[3], "status": "done"},  # unknown status
        4: {**old[4], "options": 5},  # a field of the wrong type
        6: {k: v for k, v in old[6].items() if k != "predicted"},  # a missing field
    }
    _rewrite(results, bad)
    caplog.set_level("WARNING", logger="omniad.evaluation")
    again = run_mmad(inspector, mmad_json, out=out, batch_size=4, progress=False)
    assert again.complete and again.n_new == len(bad)  # exactly the invalid lines are redone
    messages = "\n".join(r.getMessage() for r in caplog.records)
    assert f"{results}:2: id {old[1]['id']!r}: no 'index'" in messages
    assert f"{results}:4: id {old[3]['id']!r}: 'status' is 'done'" in messages
    assert f"{results}:5: id {old[4]['id']!r}: 'options' is 5" in messages
    assert f"{results}:7: id {old[6]['id']!r}: no 'predicted'" in messages
    lines = read_jsonl(results)[0]
    assert [d["id"] for d in lines] == [d["id"] for d in old]  # one line each, in order
    assert all(check_line("mmad", d) is None for d in lines)
    for k, (a, b) in enumerate(zip(old, lines, strict=True)):
        if k not in bad:
            assert a == b  # untouched lines are kept as they were
    assert again.report["counts"]["answered"] == N_QUESTIONS
    assert again.report["counts"]["lines"] == N_QUESTIONS


def _mvtec(root: Path) -> Path:
    for k in range(2):
        _save(root / "bottle" / "train" / "good" / f"{k:03d}.png", _rgb(40, 48, 100 + k))
        _save(root / "bottle" / "test" / "good" / f"{k:03d}.png", _rgb(40, 48, k))
    _save(root / "bottle" / "test" / "broken" / "000.png", _rgb(40, 48, 7))
    mask = np.zeros((40, 48), np.uint8)
    mask[4:10, 4:20] = 255
    _save(root / "bottle" / "ground_truth" / "broken" / "000_mask.png", mask)
    return root


def test_detection_resume_redoes_invalid_lines(inspector, tmp_path, caplog):
    roots = {"MVTec-AD": _mvtec(tmp_path / "mvtec")}
    out = tmp_path / "det"
    first = run_detection(inspector, roots, out, progress=False)
    assert first.complete and first.n_items == 3
    results = out / "results.jsonl"
    old = _rewrite(results, {})
    _rewrite(
        results,
        {
            0: {**old[0], "pixel": [1, 2, 3]},  # not 4 counts
            2: {**old[2], "pixel": [0, 0, 0, 1]},  # counts that do not cover the image
        },
    )
    caplog.set_level("WARNING", logger="omniad.evaluation")
    again = run_detection(inspector, roots, out, progress=False)
    assert again.complete and again.n_new == 2
    messages = "\n".join(r.getMessage() for r in caplog.records)
    assert f"{results}:1: " in messages and f"{results}:3: " in messages
    assert "not height x width = 1920" in messages
    lines = read_jsonl(results)[0]
    assert [d["pixel"] for d in lines] == [d["pixel"] for d in old]
    assert all(check_line("detection", d) is None for d in lines)


def test_report_names_the_lines_it_cannot_use(tmp_path, caplog):
    out = tmp_path / "mmad"
    out.mkdir()
    write_json(
        out / "run.json",
        {
            "format": RUN_FORMAT,
            "kind": "mmad",
            "num_shards": 1,
            "created": "x",
            "selection_sha256": "s",
            "fingerprint": {"shots": 0},
            "config": {},
            "report_options": {},
        },
    )
    write_json(out / "done.rank0.json", {"n_items": 3, "selection_sha256": "s"})
    good = {
        "id": "q0",
        "index": 0,
        "status": "ok",
        "dataset": "D",
        "category": "c",
        "type": "Object Classification",
        "normal": True,
        "gold": "A",
        "predicted": "A",
    }
    (out / "results.jsonl").write_text(
        json.dumps(good) + "\n" + json.dumps({"id": "q1"}) + "\nnot json\n"
    )
    caplog.set_level("WARNING", logger="omniad.evaluation")
    report = build_report(out)
    assert report["counts"]["answered"] == 1 and report["status"]["n_lines"] == 1
    problems = report["status"]["unreadable_lines"]
    path = out / "results.jsonl"
    assert problems[0].startswith(f"{path}:2: id 'q1': no 'status'")
    assert problems[1] == f'{path}:3: not a JSON object with a string "id"'
    assert problems[0] in "\n".join(r.getMessage() for r in caplog.records)


_OK_MMAD = {
    "id": "q",
    "index": 0,
    "status": "ok",
    "dataset": "D",
    "category": "c",
    "image": "a.png",
    "type": "Object Classification",
    "normal": True,
    "question": "What?",
    "options": {"A": "cap", "B": "pcb"},
    "gold": "A",
    "predicted": None,
    "correct": None,
    "response": "...",
    "seg": "",
    "format_ok": False,
    "reference": None,
    "seconds": 0.5,
}
_SKIPPED = {
    "id": "s",
    "index": 1,
    "status": "skipped",
    "dataset": "D",
    "category": "c",
    "skip_kind": "image",
    "reason": "cannot read",
}


@given(st.sampled_from(sorted(set(_OK_MMAD) - {"id"})))
def test_a_line_missing_any_field_is_not_done(field):
    assert check_line("mmad", _OK_MMAD) is None
    problem = check_line("mmad", {k: v for k, v in _OK_MMAD.items() if k != field})
    assert problem is not None and repr(field) in problem


@settings(max_examples=50)
@given(st.one_of(st.text(max_size=10), st.integers(), st.none(), st.booleans()))
def test_unknown_status_is_not_done(status):
    line = {**_SKIPPED, "status": status}
    if status in STATUSES:  # ok, skipped, failed (a request that failed: redone on resume)
        return
    assert check_line("mmad", line) is not None
    assert check_line("detection", line) is not None
    assert check_line("mmad", line, full=False) is not None


def test_runlog_drops_invalid_lines_and_says_where(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(
        "".join(json.dumps(d) + "\n" for d in (_OK_MMAD, {"id": "x"}, _SKIPPED, {**_SKIPPED}))
    )
    with RunLog(path, validate=line_validator("mmad")) as log:
        assert set(log.done) == {"q", "s"}
        assert log.repair.invalid_lines == ((2, "id 'x': no 'index' (expected an integer)"),)
        assert log.repair.duplicate_ids == ("s",)
        assert log.repair.problems(path) == [f"{path}:2: id 'x': no 'index' (expected an integer)"]
    assert [json.loads(x)["id"] for x in path.read_text().splitlines()] == ["q", "s"]


# --------------------------------------------------------------------------- item 14
def test_mistyped_model_path_is_one_error_and_leaves_nothing(
    ckpt, mmad_json, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a hub lookup fails at once (no network here)
    (tmp_path / "runs").mkdir()
    out = tmp_path / "runs" / "mmad"
    argv = [
        "--mmad_json",
        str(mmad_json),
        "--out",
        str(out),
        "--max_new_tokens",
        "4",
        "--no_progress",
    ]
    assert mmad_main(["--model", "runs/omniad-7b", *argv]) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("error: ")
    assert "Traceback" not in err and "runs/omniad-7b" in err
    assert not out.exists()  # the check came before anything was locked, read or written
    # the corrected command is not refused as "a run with other settings"
    assert mmad_main(["--model", str(ckpt), *argv]) == 0
    assert len(read_jsonl(out / "results.jsonl")[0]) == N_QUESTIONS


def test_a_model_that_fails_to_load_leaves_no_settings_behind(ckpt, mmad_json, tmp_path, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{}")  # no weights: the load fails
    out = tmp_path / "run"
    argv = [
        "--mmad_json",
        str(mmad_json),
        "--out",
        str(out),
        "--max_new_tokens",
        "4",
        "--no_progress",
    ]
    assert mmad_main(["--model", str(broken), *argv]) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("error: ") and "safetensors" in err
    assert sorted(p.name for p in out.iterdir()) == [".results.jsonl.lock"]
    assert mmad_main(["--model", str(ckpt), *argv]) == 0
    # and a failed load under --overwrite keeps the earlier results
    before = _snapshot(out)
    assert mmad_main(["--model", str(broken), *argv, "--overwrite"]) == 1
    assert _snapshot(out) == before


# --------------------------------------------------------------------------- item 15
class _CtrlC:
    """A transformers stopping criterion that presses Ctrl-C in its ``calls``-th step."""

    def __init__(self, calls: int) -> None:
        self.calls = calls
        self.seen = 0

    def __call__(self, input_ids, scores, **kwargs):
        self.seen += 1
        if self.seen == self.calls:
            raise KeyboardInterrupt
        return torch.zeros(input_ids.shape[0], dtype=torch.bool)


def test_ctrl_c_says_what_is_saved_and_a_rerun_resumes(ckpt, mmad_json, tmp_path, capsys):
    from transformers import StoppingCriteria, StoppingCriteriaList

    class Stop(_CtrlC, StoppingCriteria):
        pass

    out = tmp_path / "run"
    stop = Stop(calls=8 * 2 + 3)  # 8 generation steps per batch: in the third batch
    insp = Inspector.from_pretrained(
        ckpt,
        max_new_tokens=8,
        generation_kwargs={"stopping_criteria": StoppingCriteriaList([stop])},
    )
    try:
        rc = run_cli(
            lambda: run_mmad(insp, mmad_json, out=out, batch_size=2, progress=False, verbose=True),
            None,
        )
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C escaped the command line")
    assert rc == EXIT_INTERRUPTED == 130 and stop.seen == stop.calls
    err = capsys.readouterr().err
    results = out / "results.jsonl"
    saved = read_jsonl(results)[0]
    n = len(saved)  # the batches finished before Ctrl-C (two, unless one stopped early)
    assert 0 < n < N_QUESTIONS and n % 2 == 0
    assert (
        f"interrupted: {n} of {N_QUESTIONS} items finished, saved to {results}; re-run the "
        "same command to resume"
    ) in err
    assert "Traceback" not in err and not (out / "report.json").exists()
    # the same run again (no Ctrl-C this time) does only what is left
    again = run_mmad(ckpt, mmad_json, out=out, batch_size=2, max_new_tokens=8, progress=False)
    assert again.complete and again.n_new == N_QUESTIONS - n
    lines = read_jsonl(results)[0]
    assert len(lines) == N_QUESTIONS and lines[:n] == saved


def test_ctrl_c_before_anything_is_saved(ckpt, mmad_json, tmp_path):
    from transformers import StoppingCriteria, StoppingCriteriaList

    class Stop(_CtrlC, StoppingCriteria):
        pass

    insp = Inspector.from_pretrained(
        ckpt,
        max_new_tokens=8,
        generation_kwargs={"stopping_criteria": StoppingCriteriaList([Stop(calls=1)])},
    )
    with pytest.raises(EvalInterrupted) as info:
        run_mmad(insp, mmad_json, out=tmp_path / "run", batch_size=2, progress=False)
    assert (info.value.n_done, info.value.n_items) == (0, N_QUESTIONS)
    assert isinstance(info.value, KeyboardInterrupt)


@pytest.mark.slow
def test_sigint_during_a_cli_run(ckpt, tmp_path):
    mmad_json = _mmad(tmp_path / "data", n_images=8)  # 16 questions
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "omniad_train.evaluation",
        "mmad",
        "--model",
        str(ckpt),
        "--mmad_json",
        str(mmad_json),
        "--out",
        str(out),
        "--batch_size",
        "1",
        "--max_new_tokens",
        "600",
        "--no_progress",
    ]
    proc = subprocess.Popen(
        cmd,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # a pytest started in the background (`cmd &`) ignores SIGINT, and its children
        # would inherit that: give the child the default, as a terminal's Ctrl-C finds it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        _wait_for_lines(out / "results.jsonl", 2, proc)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    n = len(read_jsonl(out / "results.jsonl")[0])
    assert 2 <= n < 16
    last = err.strip().splitlines()[-1]
    assert last == (
        f"interrupted: {n} of 16 items finished, saved to {out / 'results.jsonl'}; "
        "re-run the same command to resume"
    )
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert f"16 items, {n} already done, {16 - n} to do" in done.stderr
    ids = [d["id"] for d in read_jsonl(out / "results.jsonl")[0]]
    assert len(ids) == len(set(ids)) == 16


# --------------------------------------------------------------------------- item 6
def test_mmad_run_lists_bad_records_and_goes_on(inspector, tmp_path):
    root = tmp_path / "data"
    mmad_json = _mmad(root, n_images=3)
    data = json.loads(mmad_json.read_text())
    keys = sorted(data)
    data[keys[1]]["similar_templates"] = 5  # a bad entry: all its questions are rejected
    data[keys[2]]["conversation"][0]["Reasoning"] = 5  # one bad question
    data["Alpha/cap/test/good/999.png"] = 5  # not an object at all
    mmad_json.write_text(json.dumps(data))
    result = run_mmad(inspector, mmad_json, out=tmp_path / "run", progress=False)
    assert result.complete
    report = result.report
    assert report["counts"]["answered"] == 2 + 1  # the first image, and the good question
    skipped = {s["id"]: s for s in report["skipped"]}
    assert set(skipped) == {
        f"mmad:{keys[1]}#0",
        f"mmad:{keys[1]}#1",
        f"mmad:{keys[2]}#0",
        "mmad:Alpha/cap/test/good/999.png",
    }
    assert all(s["kind"] == "input" for s in skipped.values())
    assert "similar_templates" in skipped[f"mmad:{keys[1]}#0"]["reason"]
    assert "Reasoning" in skipped[f"mmad:{keys[2]}#0"]["reason"]
    md = (tmp_path / "run" / "report.md").read_text()
    assert "## Skipped inputs (4)" in md and "similar_templates" in md


# --------------------------------------------------------------------------- file modes
@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_run_files_get_the_umask_mode_not_0600(inspector, mmad_json, tmp_path, umask):
    """Issue 15 item 12: report.json, report.md, run.json and done.*.json came from
    ``tempfile.mkstemp`` with mode 0600 (unreadable to the group a run is shared with);
    every file a run writes now has the mode a plain ``open`` gives (0666 less the umask)."""
    old = os.umask(umask)
    try:
        out = tmp_path / "run"
        result = run_mmad(inspector, mmad_json, out=out, limit=2, progress=False)
        assert result.complete
        build_report(out, compare_paper=True)  # a rebuilt report too
    finally:
        os.umask(old)
    modes = {
        p.relative_to(out).as_posix(): oct(p.stat().st_mode & 0o777)
        for p in out.rglob("*")
        if p.is_file()
    }
    assert {"report.json", "report.md", "run.json", "results.jsonl"} <= set(modes)
    assert set(modes.values()) == {oct(0o666 & ~umask)}, modes
