"""``omniad demo`` re-runs: each step records its settings; a changed plan redoes what it
invalidates (and says so), an interrupted step is redone or resumed, ``--overwrite``
clears only a demo folder (issue 10, item 16)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from omniad_train.demo import (
    DEMO_FILE,
    DemoError,
    DemoPlan,
    Step,
    claim_folder,
    decide_steps,
    demo_main,
    demo_steps,
    run_steps,
)


class Chain:
    """Three real steps a -> b -> c plus an independent d; each writes a file from its
    settings and its upstream's file, and counts its calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.fail: set[str] = set()

    def steps(self, **settings: dict) -> list[Step]:
        s = {"a": {"n": 1}, "b": {"n": 1}, "c": {"n": 1}, "d": {"n": 1}, **settings}

        def make(name: str, up: str | None):
            def run(folder: Path) -> None:
                self.calls.append(name)
                src = (folder.parent / up / "out.txt").read_text() if up else ""
                (folder / "partial.txt").write_text("started")
                if name in self.fail:
                    raise KeyboardInterrupt
                (folder / "out.txt").write_text(f"{src}{name}{s[name]['n']};")

            return run

        return [
            Step("a", "a", s["a"], make("a", None)),
            Step("b", "b", s["b"], make("b", "a"), upstream=("a",)),
            Step("c", "c", s["c"], make("c", "b"), upstream=("b",)),
            Step("d", "d", s["d"], make("d", None)),
        ]

    def run(self, out: Path, **settings: dict) -> list[str]:
        self.calls.clear()
        lines: list[str] = []
        run_steps(out, self.steps(**settings), say=lines.append)
        return lines


def test_a_rerun_with_the_same_settings_does_no_work(tmp_path):
    chain = Chain()
    assert chain.run(tmp_path) == [] and chain.calls == ["a", "b", "c", "d"]
    assert chain.run(tmp_path) == [] and chain.calls == []
    assert (tmp_path / "c" / "out.txt").read_text() == "a1;b1;c1;"


def test_a_changed_step_is_redone_with_everything_downstream_and_says_so(tmp_path):
    chain = Chain()
    chain.run(tmp_path)
    (tmp_path / "b" / "stale.ckpt").write_text("from the old plan")
    lines = chain.run(tmp_path, b={"n": 2})
    assert lines == ["plan changed for b (n 1 -> 2): redoing b, c"]
    assert chain.calls == ["b", "c"]  # a and d are kept
    assert (tmp_path / "c" / "out.txt").read_text() == "a1;b2;c1;"
    assert not (tmp_path / "b" / "stale.ckpt").exists()  # a redo starts from a clean folder
    assert json.loads((tmp_path / "b" / "DONE").read_text())["settings"] == {"n": 2}
    # an early change reaches the end of the chain
    lines = chain.run(tmp_path, a={"n": 3}, b={"n": 2})
    assert lines == ["plan changed for a (n 1 -> 3): redoing a, b, c"]
    assert chain.calls == ["a", "b", "c"]
    assert (tmp_path / "c" / "out.txt").read_text() == "a3;b2;c1;"


def test_an_interrupted_step_is_redone_and_what_follows_it_is_not_reused(tmp_path):
    chain = Chain()
    chain.run(tmp_path)
    chain.fail = {"b"}
    with pytest.raises(KeyboardInterrupt):
        chain.run(tmp_path, a={"n": 2})
    assert not (tmp_path / "b" / "DONE").exists()
    assert not (tmp_path / "c" / "DONE").exists()  # c was made from the old a
    chain.fail = set()
    lines = chain.run(tmp_path, a={"n": 2})
    assert lines == ["b did not finish: redoing b, c"]
    assert chain.calls == ["b", "c"]
    assert (tmp_path / "c" / "out.txt").read_text() == "a2;b1;c1;"


def test_c_made_from_an_older_upstream_is_redone_even_with_its_done(tmp_path):
    chain = Chain()
    chain.run(tmp_path)
    c_done = (tmp_path / "c" / "DONE").read_text()
    chain.run(tmp_path, b={"n": 2})
    (tmp_path / "c" / "DONE").write_text(c_done)  # a DONE recorded against the old b
    lines = chain.run(tmp_path, b={"n": 2})
    assert lines == ["c was made from an earlier b: redoing c"] and chain.calls == ["c"]


def test_a_resumable_step_keeps_its_work_only_under_the_same_settings(tmp_path):
    chain = Chain()
    steps = chain.steps()
    seen: list[bool] = []

    def run(folder: Path) -> None:
        seen.append((folder / "partial.txt").exists())
        (folder / "partial.txt").write_text("half")
        if len(seen) == 1:
            raise KeyboardInterrupt

    resumable = [steps[0], Step("b", "b", {"n": 1}, run, ("a",), resumable=True)]
    with pytest.raises(KeyboardInterrupt):
        run_steps(tmp_path, resumable, say=lambda m: None)
    lines: list[str] = []
    run_steps(tmp_path, resumable, say=lines.append)
    assert seen == [False, True] and lines == ["b did not finish: resuming b"]
    # interrupted under other settings: not resumed, cleaned
    seen.clear()
    changed = [steps[0], Step("b", "b", {"n": 2}, run, ("a",), resumable=True)]
    with pytest.raises(KeyboardInterrupt):
        run_steps(tmp_path, changed, say=lambda m: None)
    lines.clear()
    run_steps(tmp_path, [steps[0], Step("b", "b", {"n": 3}, run, ("a",), True)], lines.append)
    assert seen == [False, False] and lines == ["plan changed for b (n 2 -> 3): redoing b"]


def test_markers_without_settings_from_older_runs_are_redone(tmp_path):
    for name in "abcd":
        (tmp_path / name).mkdir()
        (tmp_path / name / "DONE").write_text("{}\n" if name != "d" else "not json")
        (tmp_path / name / "out.txt").write_text("old")
    chain = Chain()
    lines = chain.run(tmp_path)
    assert lines == [
        "a has no recorded settings (an older demo run): redoing a, b, c",
        "d has no recorded settings (an older demo run): redoing d",
    ]
    assert chain.calls == ["a", "b", "c", "d"]
    assert (tmp_path / "c" / "out.txt").read_text() == "a1;b1;c1;"


def test_steps_must_name_their_upstream_first(tmp_path):
    b = Step("b", "b", {}, lambda f: None, upstream=("a",))
    with pytest.raises(ValueError, match="upstream"):
        decide_steps(tmp_path, [b, Step("a", "a", {}, lambda f: None)])


def _finish(out: Path, plan: DemoPlan) -> None:
    """Write the DONE markers a finished run of ``plan`` leaves (no training)."""
    steps = demo_steps(out, plan)
    decisions, _ = decide_steps(out, steps)
    for step, d in zip(steps, decisions, strict=True):
        (out / step.folder).mkdir(parents=True, exist_ok=True)
        (out / step.folder / "DONE").write_text(json.dumps(d.record))


def test_quick_then_full_redoes_the_steps_the_plan_changed(tmp_path):
    _finish(tmp_path, DemoPlan.quick())
    decisions, lines = decide_steps(tmp_path, demo_steps(tmp_path, DemoPlan.full()))
    assert {d.name: d.action for d in decisions} == {
        "data": "run",
        "prepare": "run",
        "build": "skip",
        "stage 0": "run",
        "sft": "run",
        "sft+grpo": "run",
        "eval untrained": "run",
        "eval sft": "run",
        "eval sft+grpo": "run",
    }
    assert lines[0].startswith(
        'plan changed for data (categories ["fabric", "tile"] -> ["fabric", "leather", "tile", '
        '"wood"], train_good 4 -> 40, train_defects 3 -> 15, '
    )
    assert lines[0].endswith(
        ": redoing data, prepare, stage 0, sft, sft+grpo, eval untrained, eval sft, eval sft+grpo"
    )
    assert lines[2] == (  # as docs/demo.md shows it
        "plan changed for sft (sft_steps 100 -> 600, sft_lr 0.003 -> 0.002): redoing sft, "
        "sft+grpo, eval sft, eval sft+grpo"
    )
    assert (
        "plan changed for eval sft (max_new_tokens 160 -> 200, mmad_limit 24 -> 240)" in (lines[5])
    )
    assert len(lines) == 7  # data, stage 0, sft, sft+grpo and the three evaluations


@pytest.mark.parametrize(
    ("change", "line", "redone"),
    [
        (
            {"grpo_steps": 3},
            "plan changed for sft+grpo (grpo_steps 2 -> 3): redoing sft+grpo, eval sft+grpo",
            {"sft+grpo", "eval sft+grpo"},
        ),
        (
            {"mmad_limit": 10},
            "plan changed for eval untrained (mmad_limit 24 -> 10): redoing eval untrained",
            {"eval untrained", "eval sft", "eval sft+grpo"},
        ),
        (
            {"vision_lr": 0.01},
            "plan changed for stage 0 (vision_lr 0.001 -> 0.01): redoing "
            "stage 0, sft, sft+grpo, eval untrained, eval sft, eval sft+grpo",
            {"stage 0", "sft", "sft+grpo", "eval untrained", "eval sft", "eval sft+grpo"},
        ),
    ],
)
def test_one_changed_setting_redoes_its_step_and_what_depends_on_it(tmp_path, change, line, redone):
    _finish(tmp_path, DemoPlan.quick())
    decisions, lines = decide_steps(tmp_path, demo_steps(tmp_path, DemoPlan.quick(**change)))
    assert lines[0] == line
    assert {d.name for d in decisions if d.action != "skip"} == redone


def test_a_foreign_folder_is_refused_and_left_alone(tmp_path, capsys):
    (tmp_path / "mine.txt").write_text("keep")
    (tmp_path / "sft").mkdir()  # a folder with a demo step's name, but no demo marker
    (tmp_path / "sft" / "weights.bin").write_text("keep")
    for overwrite in (False, True):
        with pytest.raises(DemoError, match="not an omniad demo folder"):
            claim_folder(tmp_path, overwrite)
    assert demo_main(["--out", str(tmp_path), "--overwrite"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("omniad demo: error: ") and "nothing was deleted" in err
    assert len(err.splitlines()) == 1
    assert (tmp_path / "mine.txt").read_text() == "keep"
    assert (tmp_path / "sft" / "weights.bin").read_text() == "keep"
    assert not (tmp_path / DEMO_FILE).exists()
    (tmp_path / "file").write_text("x")
    assert demo_main(["--out", str(tmp_path / "file")]) == 1
    assert "is a file" in capsys.readouterr().err


def test_overwrite_deletes_only_the_demo_files(tmp_path):
    claim_folder(tmp_path)
    steps = [Step(n, f, {}, lambda f: None) for n, f in (("data", "data"), ("sft", "sft"))]
    run_steps(tmp_path, steps, say=lambda m: None)
    (tmp_path / "report.md").write_text("old report")
    (tmp_path / "notes.txt").write_text("mine")
    claim_folder(tmp_path)  # a demo folder is accepted as it is
    assert (tmp_path / "sft" / "DONE").is_file()
    claim_folder(tmp_path, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", DEMO_FILE]
    assert json.loads((tmp_path / DEMO_FILE).read_text())["steps"] == {}


def test_a_folder_from_an_older_demo_is_recognised(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "DONE").write_text("{}\n")
    claim_folder(tmp_path, overwrite=True)
    assert not (tmp_path / "data").exists()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_demo_rerun_with_a_changed_plan_redoes_what_changed_then_overwrite(tmp_path, capsys):
    pytest.importorskip("trl")
    from omniad_train.demo import run_demo

    out = tmp_path / "demo"
    small = {
        "vision_steps": 3,
        "sft_steps": 4,
        "grpo_steps": 1,
        "grpo_batch": 4,
        "mmad_limit": 6,
        "max_new_tokens": 24,
        "categories": ("fabric",),
    }
    first = run_demo(out, DemoPlan.quick(**small))
    assert len(first.ran) == 9
    stage0, sft = (
        _sha(out / "model-start" / "model.safetensors"),
        _sha(out / "sft" / "model.safetensors"),
    )
    (out / "sft" / "checkpoint-4").mkdir()  # stale output of the old plan
    capsys.readouterr()
    # what crashed before: other generation settings for the evaluation folders
    changed = DemoPlan.quick(
        **{**small, "sft_steps": 5, "grpo_steps": 2, "mmad_limit": 4, "max_new_tokens": 20}
    )
    second = run_demo(out, changed)
    said = capsys.readouterr().out
    assert second.ran == ["sft", "sft+grpo", "eval untrained", "eval sft", "eval sft+grpo"]
    assert (
        "[omniad demo] plan changed for sft (sft_steps 4 -> 5): redoing sft, sft+grpo, "
        "eval sft, eval sft+grpo\n" in said
    )
    assert _sha(out / "model-start" / "model.safetensors") == stage0
    assert _sha(out / "sft" / "model.safetensors") != sft
    assert not (out / "sft" / "checkpoint-4").exists()
    history = json.loads((out / "grpo" / "reward_history.json").read_text())
    assert [h["step"] for h in history] == [1, 2]
    for stage in ("untrained", "sft", "sft_grpo"):
        results = out / "eval" / stage / "mmad" / "results.jsonl"
        assert len(results.read_text().splitlines()) == 4
    assert set(second.metrics) == {"untrained", "sft", "sft+grpo"}
    assert "detection: pixel f1" in second.report.read_text()
    assert run_demo(out, changed).ran == []
    (out / "notes.txt").write_text("mine")
    again = run_demo(out, changed, overwrite=True)
    assert len(again.ran) == 9 and (out / "notes.txt").read_text() == "mine"
