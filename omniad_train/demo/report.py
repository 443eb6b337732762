"""The demo's report: ``report.md`` (what the run is for, the stages' figures side by
side, the best model and the rule that picked it, GRPO's reward curves, overlays of
predicted masks with a legend, the plan and timings) and ``report.json``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from omniad_train.demo.expected import range_section
from omniad_train.demo.metrics import MEAN_R_DET, BestChoice, MetricKey, Metrics
from omniad_train.demo.plan import STAGES, DemoPlan
from omniad_train.demo.steps import clean
from omniad_train.plots import draw_line_chart

__all__ = [
    "GROUND_TRUTH_COLOR",
    "PREDICTION_COLOR",
    "QUICK_NOTE",
    "add_legend",
    "format_figure",
    "pick_overlays",
    "plot_curves",
    "rows_with_values",
    "write_report",
]

#: The colours of the detection runner's overlays: the predicted mask filled and outlined
#: in red (``omniad_core.images.overlay``'s default), the true mask outlined in green.
PREDICTION_COLOR = (255, 40, 40)
GROUND_TRUTH_COLOR = (40, 200, 40)

#: What the top of a ``--quick`` report says (formatted with the plan's fields).
QUICK_NOTE = (
    "**This is a quick run (`--quick`): a ~2-minute smoke test that every step of the "
    "pipeline runs on this machine.** Its sizes (a few images, {sft_steps} SFT steps, "
    "{grpo_steps} GRPO steps) are far too small for the model to learn: metrics at 0 and 100% unreadable answers "
    "are expected here and say nothing about the method. Run `omniad demo` (about 15 "
    "minutes on 2 cores) for figures to compare with docs/demo.md."
)


def plot_curves(series: dict[str, list[tuple[float, float]]], path: Path, title: str) -> Path:
    """A line chart (PIL only) of named ``[(x, y), ...]`` series against the training
    step (:func:`omniad_train.plots.draw_line_chart`)."""
    return draw_line_chart(
        series, path, title=title, xlabel="step", ylabel="reward", integer_x=True
    )


def pick_overlays(paths: Sequence[Path], n: int = 6) -> list[Path]:
    """Up to ``n`` overlays (``<category>/<defect>_<i>_overlay.png``), as many defect
    types and categories as possible: round-robin over categories, each time the first
    overlay of a defect type not shown yet (then any not shown yet).

    >>> ps = [Path(f"{c}/{d}_00{i}_overlay.png") for c in "ab" for d in ("hole", "stain")
    ...       for i in (0, 1)]
    >>> [f"{p.parent}/{p.name[:-12]}" for p in pick_overlays(ps, 3)]
    ['a/hole_000', 'b/stain_000', 'a/hole_001']
    """
    by_cat: dict[str, list[Path]] = {}
    for p in paths:
        by_cat.setdefault(p.parent.name, []).append(p)
    chosen: list[Path] = []
    types: set[str] = set()
    while len(chosen) < n and any(by_cat.values()):
        for cat in list(by_cat):
            left = by_cat[cat]
            if not left or len(chosen) == n:
                continue
            new = [p for p in left if p.name.rsplit("_", 2)[0] not in types]
            p = (new or left)[0]
            left.remove(p)
            types.add(p.name.rsplit("_", 2)[0])
            chosen.append(p)
    return chosen


def add_legend(src: Path, dst: Path) -> Path:
    """Copy the overlay ``src`` to ``dst`` with a legend strip below it: the prediction's
    colour (filled) and the ground truth's (outlined), as the detection runner drew them."""
    from PIL import Image, ImageDraw, ImageFont

    try:
        font = ImageFont.load_default(size=11)
    except TypeError:  # pragma: no cover - Pillow < 10.1
        font = ImageFont.load_default()
    with Image.open(src) as img:
        shown = img.convert("RGB")
    w, h = shown.size
    strip = 22
    entries = (("prediction", PREDICTION_COLOR, True), ("ground truth", GROUND_TRUTH_COLOR, False))
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    need = 4 + sum(14 + int(measure.textlength(t, font=font)) + 12 for t, _, _ in entries)
    out = Image.new("RGB", (max(w, need), h + strip), "white")  # wider for a narrow image
    out.paste(shown, (0, 0))
    d = ImageDraw.Draw(out)
    x, y = 4, h + strip // 2
    for label, color, filled in entries:
        box = [x, y - 5, x + 10, y + 5]
        d.rectangle(box, fill=color if filled else None, outline=color, width=2)
        d.text((x + 14, y), label, fill="black", font=font, anchor="lm")
        x += 14 + int(d.textlength(label, font=font)) + 12
    dst.parent.mkdir(parents=True, exist_ok=True)
    out.save(dst)
    return dst


def rows_with_values(metrics: dict[str, Metrics], stages: Sequence[str]) -> list[MetricKey]:
    """Metric keys in first-seen order, leaving out those no stage has a value for (a
    question type with no questions in the run)."""
    names = dict.fromkeys(k for st in stages for k in metrics.get(st, {}))
    return [
        k
        for k in names
        if any(format_figure(k, metrics.get(st, {}).get(k)) != "-" for st in stages)
    ]


def format_figure(key: MetricKey, v: float | None) -> str:
    """A figure as the tables show it: ``-`` when missing or NaN, 3 decimals for
    :data:`MEAN_R_DET` (0 to 2), else 1 (a percentage).

    >>> format_figure(MEAN_R_DET, 1.5), format_figure(MetricKey("MMAD", "average"), 50)
    ('1.500', '50.0')
    """
    if v is None or v != v:  # missing, or NaN (no question of that type)
        return "-"
    return f"{v:.3f}" if key == MEAN_R_DET else f"{v:.1f}"


def write_report(
    out: Path,
    plan: DemoPlan,
    metrics: dict[str, Metrics],
    seconds: dict[str, float],
    models: dict[str, Path],
    best: BestChoice | None = None,
) -> Path:
    """Write ``out/report.md`` and ``out/report.json`` for the stages' ``metrics``.

    A quick plan's report starts with :data:`QUICK_NOTE`; a full one compares the SFT
    model with the measured range (:func:`~omniad_train.demo.expected.range_section`).
    ``best`` (the choice of
    :func:`~omniad_train.demo.metrics.pick_best`) adds the best model, the rule that
    picked it and its notes.  The reward curves come from
    ``models["sft+grpo"]/reward_history.json``, the overlays from the SFT+GRPO
    evaluation (each with a legend, :func:`add_legend`); those of an earlier plan are
    deleted first.  Returns the path of ``report.md``.
    """
    rows = rows_with_values(metrics, STAGES)
    lines = ["# OmniAD demo on synthetic defects", ""]
    if plan.preset == "quick":
        lines += [QUICK_NOTE.format(**plan.__dict__), ""]
    lines += [
        "Everything below was produced by `omniad demo` on this machine: synthetic images, a "
        "small Qwen2.5-VL built offline, a vision stage 0 standing in for a pretrained "
        "vision encoder, SFT then GRPO through TRL, and the detection and MMAD runners on "
        "held-out images. `untrained` is the model SFT starts from (random language model, "
        "vision tower after stage 0). Percentages, except mean R_det (0 to 2, GRPO's "
        "detection reward averaged over the held-out images); higher is better.",
        "",
        "| metric | " + " | ".join(STAGES) + " |",
        "|---|" + "---:|" * len(STAGES),
    ]
    for r in rows:
        vals = [metrics.get(s, {}).get(r) for s in STAGES]
        lines.append(f"| {r.label} | " + " | ".join(format_figure(r, v) for v in vals) + " |")
    if best is not None:
        lines += ["", "## Best model", "", f"**{best.stage}**, by the rule: {best.rule}."]
        scores = ", ".join(f"{k} {v:.1f}" for k, v in best.scores.items())
        lines += ["", f"Scores on the rule: {scores}."]
        lines += [f"\n{n[0].upper()}{n[1:]}" for n in best.notes]
    lines += range_section(plan, metrics)
    for stale in ("grpo_rewards.png", "overlays"):  # from a run with another plan
        clean(out / stale)
    hist_path = models["sft+grpo"] / "reward_history.json"
    if hist_path.is_file():
        hist = json.loads(hist_path.read_text())
        series = {
            name: [
                (h["step"], h[f"rewards/{name}/mean"]) for h in hist if f"rewards/{name}/mean" in h
            ]
            for name in ("format_reward", "detection_reward", "answer_reward")
        }
        series["total"] = [(h["step"], h["reward"]) for h in hist if "reward" in h]
        plot_curves(series, out / "grpo_rewards.png", "GRPO rewards (mean over completions)")
        lines += ["", "## GRPO rewards during training", "", "![GRPO rewards](grpo_rewards.png)"]
    overlays = pick_overlays(
        sorted((out / "eval" / "sft_grpo" / "detection").rglob("*_overlay.png"))
    )
    if overlays:
        (out / "overlays").mkdir(exist_ok=True)
        lines += [
            "",
            "## Predicted masks of the SFT+GRPO model (held-out images)",
            "",
            "Red, filled: the predicted mask; green outline: the true mask (none on a normal "
            "image). The legend under each image says the same.",
            "",
        ]
        for p in overlays:
            dst = add_legend(p, out / "overlays" / f"{p.parent.name}_{p.name}")
            lines.append(f"![{p.stem}](overlays/{dst.name})")
    lines += [
        "",
        "## Run",
        "",
        "```json",
        json.dumps(
            {"plan": plan.__dict__, "seconds": {k: round(v, 1) for k, v in seconds.items()}},
            indent=1,
        ),
        "```",
        "",
    ]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    shown = {stage: {k.label: v for k, v in m.items()} for stage, m in metrics.items()}
    data: dict[str, object] = {"metrics": shown, "seconds": seconds, "preset": plan.preset}
    if best is not None:
        data["best"] = {"stage": best.stage, "rule": best.rule, "notes": list(best.notes)}
    (out / "report.json").write_text(json.dumps(data, indent=1))
    return path
