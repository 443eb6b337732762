"""``omniad demo`` end to end with the smallest plan: data, SFT, GRPO, evaluation, report."""

from __future__ import annotations

import json

import pytest

import textmask

pytest.importorskip("trl")

from omniad_core.cli import main as omniad_main
from omniad_train.demo import STAGES, DemoPlan, export_model, plot_curves, run_demo

pytestmark = pytest.mark.slow


def test_smallest_demo_runs_to_its_report_and_resumes(tmp_path):
    plan = DemoPlan.quick(vision_steps=3, sft_steps=4, grpo_steps=1, grpo_batch=4,
                          mmad_limit=6, max_new_tokens=24, categories=("fabric",))  # fmt: skip
    result = run_demo(tmp_path / "demo", plan)
    report = result.report.read_text()
    assert "| metric | untrained | sft | sft+grpo |" in report
    assert "detection: pixel f1" in report and "MMAD: average" in report
    assert (tmp_path / "demo" / "grpo_rewards.png").is_file()
    assert list((tmp_path / "demo" / "overlays").glob("*.png"))
    data = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert set(data["metrics"]) == set(STAGES)
    assert (result.best_model / "model.safetensors").is_file()
    assert (result.best_model / "omniad.json").is_file()
    exported = export_model(result, tmp_path / "export")
    assert (exported / "model.safetensors").is_file() and (exported / "omniad.json").is_file()
    assert json.loads((exported / "demo_plan.json").read_text())["categories"] == ["fabric"]
    assert "omniad demo" in (exported / "README.md").read_text()
    from omniad_core import Inspector

    assert Inspector.from_pretrained(exported).grid == textmask.Grid(8, 8)
    # a second run skips the finished training steps
    again = run_demo(tmp_path / "demo", plan)
    assert again.ran == []  # every step finished with these settings
    assert again.metrics == result.metrics  # read back from the finished evaluations
    assert again.seconds["sft"] < 1.0 and again.seconds["grpo"] < 1.0
    assert again.seconds["vision"] < 1.0


def test_plot_curves_draws_named_series(tmp_path):
    from PIL import Image

    path = plot_curves({"a": [(1, 0.5), (2, 1.0)], "b": [(1, 0.1)]}, tmp_path / "c.png", "t")
    img = Image.open(path)
    assert img.size == (640, 360) and len(img.getcolors(100000)) > 3


def test_demo_help_and_bad_args(capsys):
    with pytest.raises(SystemExit) as exc:
        omniad_main(["demo", "--help"])
    assert exc.value.code == 0 and "--quick" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        omniad_main(["demo", "--frobnicate"])
    assert exc.value.code == 2
