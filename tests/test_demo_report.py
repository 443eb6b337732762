"""Issue 15, items 9, 11 and 12: reports that read right.

The ``--quick`` demo report says what a quick run is for; every overlay has a legend;
the best model is picked by a stated rule, with a note when it does not beat the
untrained one; the spread script reads real reports; the PR plot draws a point at
recall 1.0 whole; ``prepare``'s summary says what ``train/good`` images are used for.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from omniad_train.demo.metrics import BEST_RULE, MEAN_R_DET, MetricKey, pick_best
from omniad_train.demo.plan import DemoPlan
from omniad_train.demo.report import (
    GROUND_TRUTH_COLOR,
    PREDICTION_COLOR,
    add_legend,
    write_report,
)
from omniad_train.plots import COLORS, PRPoint, draw_pr_points

ROOT = Path(__file__).resolve().parent.parent
PIXEL_F1 = MetricKey("detection", "pixel f1")
UNREADABLE = MetricKey("detection", "unreadable answers %")
MMAD_AVG = MetricKey("MMAD", "average")


def _quick_metrics() -> dict:
    """What a quick run measures: nothing learned, the SFT model's R_det below the
    untrained one's (the issue's run: best model sft although its R_det was lower)."""
    zero = {PIXEL_F1: 0.0, MMAD_AVG: 0.0, UNREADABLE: 100.0}
    return {
        "untrained": {**zero, MEAN_R_DET: 0.25},
        "sft": {**zero, MEAN_R_DET: 0.1},
        "sft+grpo": {**zero, MEAN_R_DET: 0.05},
    }


def _models(out: Path) -> dict[str, Path]:
    return {"untrained": out / "model-start", "sft": out / "sft", "sft+grpo": out / "grpo"}


def test_quick_report_says_what_a_quick_run_is_for_and_why_this_best(tmp_path):
    metrics = _quick_metrics()
    best = pick_best(metrics)
    report = write_report(tmp_path, DemoPlan.quick(), metrics, {}, _models(tmp_path), best)
    text = report.read_text()
    top = text.split("| metric |")[0]
    assert "quick run" in top and "smoke test" in top
    assert "metrics at 0 and 100% unreadable answers are expected" in top
    assert "100 SFT steps" in top  # the plan's own sizes
    section = text.split("## Best model", 1)[1]
    assert best.stage == "sft" and BEST_RULE in section
    assert "no trained model beats the untrained one" in section
    assert "mean R_det 0.100 is below the untrained model's 0.250" in section
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["best"]["rule"] == BEST_RULE and data["preset"] == "quick"
    assert len(data["best"]["notes"]) == 2


def test_full_report_has_no_quick_note_and_a_clear_best(tmp_path):
    metrics = {
        "untrained": {PIXEL_F1: 0.0, MMAD_AVG: 0.0, MEAN_R_DET: 0.21},
        "sft": {PIXEL_F1: 20.2, MMAD_AVG: 37.2, MEAN_R_DET: 0.392},
        "sft+grpo": {PIXEL_F1: 20.0, MMAD_AVG: 37.4, MEAN_R_DET: 0.394},
    }
    best = pick_best(metrics)
    assert (best.stage, best.notes) == ("sft+grpo", ())  # 57.4 vs 57.4: R_det breaks the tie
    text = write_report(tmp_path, DemoPlan.full(), metrics, {}, _models(tmp_path), best).read_text()
    assert "quick run" not in text and "**sft+grpo**, by the rule" in text


def test_pick_best_prefers_the_higher_score_then_r_det_then_sft():
    base = {"untrained": {}}
    assert pick_best({**base, "sft": {PIXEL_F1: 2.0}, "sft+grpo": {PIXEL_F1: 1.0}}).stage == "sft"
    assert pick_best({**base, "sft": {PIXEL_F1: 1.0}, "sft+grpo": {PIXEL_F1: 2.0}}).stage == (
        "sft+grpo"
    )
    tie = {PIXEL_F1: 1.0, MEAN_R_DET: 0.3}
    assert pick_best({**base, "sft": tie, "sft+grpo": tie}).stage == "sft"
    nan = {PIXEL_F1: float("nan"), MMAD_AVG: 5.0}
    assert pick_best({**base, "sft": nan, "sft+grpo": {MMAD_AVG: 4.0}}).stage == "sft"


def test_every_overlay_in_the_report_has_a_legend(tmp_path):
    """The overlays were copied as drawn: red and green, with no word on which is which."""
    det = tmp_path / "eval" / "sft_grpo" / "detection" / "fabric"
    det.mkdir(parents=True)
    img = np.full((64, 64, 3), 90, np.uint8)
    img[10:20, 10:20] = PREDICTION_COLOR
    Image.fromarray(img).save(det / "hole_000_overlay.png")
    write_report(tmp_path, DemoPlan.full(), _quick_metrics(), {}, _models(tmp_path))
    (shown,) = list((tmp_path / "overlays").glob("*.png"))
    text = (tmp_path / "report.md").read_text()
    assert "Red, filled: the predicted mask; green outline: the true mask" in text
    out = np.asarray(Image.open(shown).convert("RGB"))
    assert out.shape[0] == 64 + 22 and out.shape[1] >= 64
    assert (out[:64, :64] == img).all()  # the overlay itself unchanged
    strip = out[64:].reshape(-1, 3)
    assert (strip == PREDICTION_COLOR).all(axis=1).sum() >= 50  # the filled swatch
    assert (strip == GROUND_TRUTH_COLOR).all(axis=1).sum() >= 20  # the outlined one
    assert (strip < 60).all(axis=1).sum() > 30  # the words


def test_add_legend_keeps_the_image_and_adds_a_strip(tmp_path):
    src = tmp_path / "a.png"
    Image.new("RGB", (224, 224), (10, 20, 30)).save(src)
    dst = add_legend(src, tmp_path / "sub" / "a.png")
    assert Image.open(dst).size == (224, 246)


def _frame(img: np.ndarray) -> tuple[int, int]:
    """The plot frame's right column and top row: the long black lines of the chart."""
    black = (img == 0).all(axis=2)
    cols = np.flatnonzero(black.sum(axis=0) > img.shape[0] // 2)
    rows = np.flatnonzero(black.sum(axis=1) > img.shape[1] // 2)
    return int(cols.max()), int(rows.min())


def test_pr_plot_draws_points_at_recall_and_precision_one_whole(tmp_path):
    """An image-level point at recall 1.0 was centred on the frame line, half outside."""
    path = draw_pr_points(
        [PRPoint("all", 1.0, 1.0, "image-pooled"), PRPoint("x", 0.5, 1.0, "image")],
        tmp_path / "pr.png",
        title="t",
    )
    img = np.asarray(Image.open(path).convert("RGB"))
    right, top = _frame(img)
    orange = (img == COLORS[1]).all(axis=2)
    legend_x = right + 12  # the legend's swatches are right of the frame
    ys, xs = np.nonzero(orange[:, :legend_x])
    assert xs.size > 100
    assert xs.max() < right and ys.min() > top  # the whole marker inside the frame


def test_prepare_summary_says_what_train_good_images_are_for(tmp_path, capsys):
    from omniad_train.data.prepare import prepare

    rng = np.random.default_rng(0)
    root = tmp_path / "mvtec" / "bottle"
    for rel in ("train/good/000.png", "train/good/001.png", "test/good/000.png"):
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((rng.random((32, 32, 3)) * 255).astype(np.uint8)).save(p)
    for k in range(2):
        p = root / "test" / "crack" / f"00{k}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((rng.random((32, 32, 3)) * 255).astype(np.uint8)).save(p)
        m = np.zeros((32, 32), np.uint8)
        m[4:12, 4:12] = 255
        mp = root / "ground_truth" / "crack" / f"00{k}_mask.png"
        mp.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(m).save(mp)
    zero = prepare(tmp_path / "o0", mvtec_root=tmp_path / "mvtec", image_size=28, grid=4)
    printed = capsys.readouterr().out
    assert "train/good: not used (--shots 0)" in printed and "never training examples" in printed
    assert zero.n_folder_references == 2
    one = prepare(tmp_path / "o1", mvtec_root=tmp_path / "mvtec", image_size=28, grid=4, shots=1)
    printed = capsys.readouterr().out
    assert "train/good: 2 normal images are used only as 1-shot references" in printed
    assert one.summary().splitlines()[1] == one.references_note()
    jsonl = tmp_path / "r.jsonl"
    jsonl.write_text(
        json.dumps(
            {
                "image": str(root / "test/good/000.png"),
                "question": "Q?",
                "options": ["A", "B"],
                "answer": "A",
                "type": "Anomaly Discrimination",
            }
        )
        + "\n"
    )
    only = prepare(tmp_path / "o2", jsonl=jsonl, allow_outside_root=True, image_size=28, grid=4)
    assert only.references_note() is None and "train/good" not in capsys.readouterr().out


def test_spread_script_reads_real_reports(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import demo_spread
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    folders = []
    for seed, f1 in ((0, 20.0), (3, 16.0)):
        out = tmp_path / f"seed{seed}"
        out.mkdir()
        metrics = {s: {PIXEL_F1: f1, MEAN_R_DET: 0.3} for s in ("untrained", "sft", "sft+grpo")}
        write_report(out, DemoPlan.full(seed=seed), metrics, {}, _models(out))
        folders.append(str(out))
    table = demo_spread.spread_table(dict(demo_spread.read_run(f) for f in folders))
    assert "| sft | detection: pixel f1 | 16.0 | 20.0 | 18.0 | 20.0 | 16.0 |" in table
    assert "| sft | detection: mean R_det (0-2) | 0.300 | 0.300 | 0.300 |" in table
    assert demo_spread.main(["--from-runs", *folders]) == 0


@pytest.mark.parametrize("preset", ["quick", "full"])
def test_plan_presets_are_recorded(preset):
    plan = getattr(DemoPlan, preset)()
    assert plan.preset == preset


# ------------------------------------------------- a full run against the measured range
def test_a_full_report_puts_the_sft_figures_against_the_measured_range(tmp_path):
    from omniad_train.demo.expected import MEASURED

    unread = UNREADABLE
    metrics = {
        "untrained": {PIXEL_F1: 0.0, MMAD_AVG: 0.0, MEAN_R_DET: 0.21, unread: 100.0},
        "sft": {PIXEL_F1: 12.0, MMAD_AVG: 20.0, MEAN_R_DET: 0.30, unread: 0.0},
        "sft+grpo": {PIXEL_F1: 11.0, MMAD_AVG: 21.0, MEAN_R_DET: 0.29, unread: 0.0},
    }
    text = write_report(tmp_path, DemoPlan.full(seed=5), metrics, {}, _models(tmp_path)).read_text()
    assert "## Against the measured range (SFT model)" in text
    lo, hi = MEASURED[PIXEL_F1.label]
    assert f"| {PIXEL_F1.label} | 12.0 | {lo:.1f}-{hi:.1f} | in range |" in text
    assert f"| {MMAD_AVG.label} | 20.0 |" in text and "| below |" in text
    assert "looks broken" not in text
    broken = {**metrics, "sft": {**metrics["sft"], unread: 97.0}}
    text = write_report(tmp_path, DemoPlan.full(), broken, {}, _models(tmp_path)).read_text()
    assert "**This run looks broken**: 97% of the SFT model's answers are unreadable" in text
    other = write_report(tmp_path, DemoPlan.full(sft_steps=50), metrics, {}, _models(tmp_path))
    assert "measured range" not in other.read_text()  # another plan: the range says nothing


def test_the_measured_range_is_docs_demo_tables():
    """The code's ranges and docs/demo.md's spread table are the same figures."""
    from omniad_train.demo.expected import MEASURED

    doc = (ROOT / "docs" / "demo.md").read_text()
    table = doc[doc.index("### How much the figures vary") :]
    names = {
        "detection: pixel f1": "detection: pixel F1",
        "detection: image f1": "detection: image F1",
        "MMAD: average": "MMAD average",
        "detection: mean R_det (0-2)": "mean R_det",
    }
    for label, (lo, hi) in MEASURED.items():
        row = next(ln for ln in table.splitlines() if ln.startswith(f"| SFT | {names[label]} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert (float(cells[2]), float(cells[3])) == (lo, hi), row
