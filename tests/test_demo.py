"""``omniad demo`` end to end with the smallest plan: data, SFT, GRPO, evaluation, report."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import textmask

pytest.importorskip("trl")

from omniad_core.cli import main as omniad_main
from omniad_train.demo import STAGES, DemoPlan, export_model, plot_curves, run_demo

pytestmark = pytest.mark.slow


def test_smallest_demo_runs_to_its_report_and_resumes(tmp_path):
    plan = DemoPlan.quick(
        vision_steps=3,
        sft_steps=4,
        grpo_steps=1,
        grpo_batch=4,
        mmad_limit=6,
        max_new_tokens=24,
        categories=("fabric",),
    )
    result = run_demo(tmp_path / "demo", plan)
    report = result.report.read_text()
    assert "| metric | untrained | sft | sft+grpo |" in report
    assert "detection: pixel f1" in report and "MMAD: average" in report
    assert (tmp_path / "demo" / "grpo_rewards.png").is_file()
    assert list((tmp_path / "demo" / "overlays").glob("*.png"))
    # issue 15: a quick plan says what it is for, the best model comes with its rule, and
    # every overlay has a legend strip under the 224-px image
    assert report.startswith("# OmniAD demo on synthetic defects\n\n**This is a quick run")
    assert "## Best model" in report and result.best.rule in report
    assert result.best_stage == result.best.stage
    from PIL import Image

    for shown in (tmp_path / "demo" / "overlays").glob("*.png"):
        assert Image.open(shown).size[1] == 224 + 22
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


# --------------------------------------------------------------------------- charts
def test_plot_curves_leaves_out_non_finite_points(tmp_path):
    """A NaN reward in the GRPO log (a diverged step) used to crash the report."""
    from PIL import Image

    nan = float("nan")
    path = plot_curves(
        {"a": [(1, nan), (2, 1.0), (3, 0.5)], "b": [(1, nan)]}, tmp_path / "c.png", "t"
    )
    assert Image.open(path).size == (640, 360)


def test_line_chart_axes_ticks_and_legend(tmp_path):
    from PIL import Image

    from omniad_train.plots import COLORS, Chart, draw_line_chart, nice_ticks

    chart = Chart(
        (640, 360), xlim=(1, 7), ylim=(0, 1.7), xlabel="step", ylabel="reward", integer_x=True
    )
    assert chart.xticks == [0, 2, 4, 6, 8] and chart.yticks == [0, 0.5, 1, 1.5, 2]
    assert chart.xy(0, 0) == (chart.left, chart.bottom)  # the axes end at the outer ticks
    assert chart.xy(8, 2) == (chart.right, chart.top)
    x, _ = chart.xy(4, 0)  # a grid line at each tick, inside the frame
    assert chart.image.getpixel((int(x), (chart.top + chart.bottom) // 2)) == (232, 232, 232)
    path = draw_line_chart(
        {"format": [(1, 0.2), (7, 1.0)], "total": [(1, 0.5), (7, 1.7)]},
        tmp_path / "r.png",
        title="rewards",
        xlabel="step",
        ylabel="reward",
        integer_x=True,
    )
    colours = {c for _, c in Image.open(path).convert("RGB").getcolors(1 << 20)}
    assert COLORS[0] in colours and COLORS[1] in colours  # both series and their swatches
    assert nice_ticks(0, 1.7) == [0, 0.5, 1, 1.5, 2]


@settings(max_examples=200, deadline=None)
@given(
    st.floats(-1e6, 1e6, allow_nan=False),
    st.floats(0, 1e6, allow_nan=False),
    st.booleans(),
)
@example(lo=0.0, span=5e-324, integer=False)  # a subnormal span once underflowed to log10(0)
def test_nice_ticks_cover_the_range_with_one_round_step(lo, span, integer):
    from omniad_train.plots import nice_ticks

    hi = lo + span
    ticks = nice_ticks(lo, hi, integer=integer)
    assert 2 <= len(ticks) <= 13
    steps = [b - a for a, b in itertools.pairwise(ticks)]
    assert max(steps) - min(steps) <= 1e-6 * steps[0]
    assert ticks[0] <= lo + 1e-6 * steps[0] and ticks[-1] >= hi - 1e-6 * steps[0]
    if integer:
        assert steps[0] >= 1


# --------------------------------------------------------------------------- metric keys
def test_metric_keys_are_structured_and_read_from_old_and_new_files(tmp_path):
    from omniad_train.demo import MEAN_R_DET, MetricKey, mean_detection_reward
    from omniad_train.demo.metrics import metrics_from_json as _metrics_from_json
    from omniad_train.demo.metrics import metrics_to_json as _metrics_to_json
    from omniad_train.demo.report import format_figure as _fmt

    results = tmp_path / "results.jsonl"
    lines = [
        {"status": "ok", "pixel": [5, 0, 0, 95]},  # perfect: 2 * F1 = 2
        {"status": "ok", "pixel": [0, 0, 0, 100]},  # both empty: 1
        {"status": "skipped"},
    ]
    results.write_text("".join(json.dumps(d) + "\n" for d in lines))
    got = mean_detection_reward(results)
    assert got == {MEAN_R_DET: 1.5} and MEAN_R_DET.label == "detection: mean R_det (0-2)"
    figures = {MetricKey("detection", "pixel f1"): 40.0, **got}
    assert _metrics_from_json(json.loads(json.dumps(_metrics_to_json(figures)))) == figures
    old = {"detection: pixel f1": 40.0, "detection: mean R_det (0-2)": 1.5}  # earlier demos
    assert _metrics_from_json(old) == figures
    assert _fmt(MEAN_R_DET, 1.5) == "1.500" and _fmt(MetricKey("MMAD", "average"), 50) == "50.0"
    assert _metrics_from_json(None) == {} and _metrics_from_json(["x"]) == {}


# --------------------------------------------------------------------------- determinism
def test_the_same_seed_gives_the_same_run_and_another_seed_does_not(tmp_path):
    """Issue 15, item 11: a run is deterministic for a seed on one machine (one thread,
    seeded Python / NumPy / torch, deterministic torch kernels); the seed matters."""
    import dataclasses

    import torch

    plan = DemoPlan.quick(
        vision_steps=2,
        sft_steps=3,
        grpo_steps=1,
        grpo_batch=4,
        mmad_limit=4,
        max_new_tokens=16,
        categories=("fabric",),
    )
    before = torch.are_deterministic_algorithms_enabled()
    a = run_demo(tmp_path / "a", plan)
    b = run_demo(tmp_path / "b", plan)
    c = run_demo(tmp_path / "c", dataclasses.replace(plan, seed=1))
    assert torch.are_deterministic_algorithms_enabled() == before  # restored after the run
    for stage in ("untrained", "sft", "sft_grpo"):
        same = [(r.out_dir / "eval" / stage / "metrics.json").read_bytes() for r in (a, b)]
        assert same[0] == same[1], stage
    for model in ("model-start", "sft", "grpo"):
        weights = [(r.out_dir / model / "model.safetensors").read_bytes() for r in (a, b, c)]
        assert weights[0] == weights[1], model
        assert weights[0] != weights[2], f"{model}: seed 1 gave the same weights as seed 0"
    assert a.metrics == b.metrics and a.best == b.best
