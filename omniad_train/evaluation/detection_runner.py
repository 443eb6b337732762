"""Detection runner: "Is there any defect in the object?" on MVTec-style test sets.

Test images come from :func:`omniad_train.data.iter_mvtec` (MVTec-AD, VisA in MVTec
layout or its original one, MVTec-LOCO, MVTec 3D-AD RGB, GoodsAD, ...), one dataset name
per root.  The reader's rejects (a missing mask, a folder in no known layout) are listed
as skipped inputs; a run in which no image can be evaluated is an error naming them.  The model's ``<seg>`` is
decoded to a pixel mask at each image's own size and scored against the ground truth
with :class:`textmask.GroundTruth` (exact pixel counts); image-level decisions are
stored both ways, so the report can use either rule:

- ``image_decision="answer"`` (default): anomalous when the model picks the "Yes"
  option; an unreadable answer counts as a wrong decision;
- ``image_decision="seg"``: anomalous when the seg marks at least one cell.

Pixel-level figures always come from the seg.  The report (paper Tables 3/4 and 10-17
layout) is rebuilt from the JSONL with :class:`omniad_core.metrics.DetectionMeter`:
per category (pooled pixels), per dataset (mean over categories) and averaged over
datasets.

The command line is built in :mod:`omniad_train.evaluation.cli`
(``benchmarks/run_detection.py`` or ``python -m omniad_train.evaluation detection``)::

    python benchmarks/run_detection.py --model CKPT --root MVTec-AD=data/mvtec \\
        --root VisA=data/visa --out runs/det --shots 0 --save_masks 4 --compare_paper
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import textmask
from omniad_core.images import ImageError, load_image, overlay, save_mask
from omniad_core.metrics import DetectionMeter, DetectionReport
from omniad_train.data.sources import read_mask
from omniad_train.evaluation.detection_items import (
    RootsLike,
    collect_detection_items,
    normalize_roots,
)
from omniad_train.evaluation.execution import (
    EvalResult,
    Item,
    SkipItem,
    base_line,
    execute,
)
from omniad_train.evaluation.model import Endpoint, runner_model
from omniad_train.evaluation.paper import (
    compare_detection,
    comparison_markdown,
    not_comparable_text,
    subset_reasons,
)
from omniad_train.evaluation.report import (
    config_markdown,
    failures_summary,
    report_config,
    run_state,
    served_summary,
    skipped_summary,
    state_text,
    timing,
    write_report,
)
from omniad_train.evaluation.runner_checks import check_evaluable, check_evaluated, subset_config
from omniad_train.plots import PRPoint, draw_pr_points

__all__ = [
    "IMAGE_DECISIONS",
    "KIND",
    "collect_detection_items",
    "detection_meter",
    "detection_report",
    "image_prediction",
    "normalize_roots",
    "run_detection",
]

#: The run kind in ``run.json``.
KIND = "detection"
IMAGE_DECISIONS = ("answer", "seg")


def _safe(name: str) -> str:
    return re.sub(r"[^0-9A-Za-z._-]+", "_", name).strip("_") or "_"


class _DetectionTask:
    def __init__(self, out_dir: Path, shots: int, save_masks: int) -> None:
        self.out_dir = out_dir
        self.shots = shots
        self.save_masks = save_masks

    def prepare(self, item: Item) -> dict[str, Any]:
        rec = item.record
        assert rec is not None
        try:
            image = load_image(rec.image)
        except (ImageError, OSError) as exc:
            raise SkipItem("image", str(exc)) from None
        h, w = image.size[1], image.size[0]
        gt = None
        if rec.mask is not None:
            try:
                gt = read_mask(rec.mask)
            except (ImageError, OSError) as exc:
                raise SkipItem("mask", f"cannot read the mask {rec.mask}: {exc}") from None
            if gt.shape != (h, w):
                raise SkipItem(
                    "mask",
                    f"the mask {rec.mask} is {gt.shape[0]}x{gt.shape[1]} (H x W) but the image "
                    f"is {h}x{w}; masks must have the image's size",
                )
        ref, ref_path = None, None
        if self.shots == 1:
            if not rec.reference:
                raise SkipItem(
                    "reference", "1-shot needs a train/good image of the category; none found"
                )
            ref_path = rec.reference[0]
            try:
                ref = load_image(ref_path)
            except (ImageError, OSError) as exc:
                raise SkipItem("reference", f"cannot read the reference image: {exc}") from None
        return {"image": image, "gt": gt, "ref": ref, "ref_path": ref_path, "record": rec}

    def request(self, prepared: dict[str, Any]) -> tuple[Any, str, Any, Any]:
        rec = prepared["record"]
        return prepared["image"], rec.question, rec.options, prepared["ref"]

    def skipped(self, item: Item, kind: str, reason: str) -> dict[str, Any]:
        return {
            **base_line(item, "skipped"),
            "image": item.extra.get("image"),
            "skip_kind": kind,
            "reason": reason,
        }

    def _save(self, item: Item, image: Any, pred: np.ndarray, gt: np.ndarray | None) -> str:
        parts = Path(item.extra["image"]).parts
        stem = _safe("_".join([*parts[2:-1], Path(parts[-1]).stem]))
        folder = self.out_dir / "masks" / _safe(item.dataset) / _safe(item.category)
        save_mask(pred, folder / f"{stem}_mask.png")
        shown = image
        if gt is not None and gt.any():  # ground truth outlined in green
            shown = overlay(shown, gt, color=(40, 200, 40), alpha=0.0, outline=True)
        overlay(shown, pred).save(folder / f"{stem}_overlay.png")
        return (folder / f"{stem}_mask.png").relative_to(self.out_dir).as_posix()

    def finish(self, item: Item, prepared: dict[str, Any], analysis: Any) -> dict[str, Any]:
        rec = prepared["record"]
        image, gt = prepared["image"], prepared["gt"]
        h, w = image.size[1], image.size[0]
        parsed = analysis.parsed
        if gt is not None:
            s = textmask.GroundTruth(gt, parsed.grid).score(parsed.cells)
            pixel = [int(s.tp), int(s.fp), int(s.fn), int(s.tn)]
        else:  # a normal image: every predicted pixel is a false positive
            fp = int(np.count_nonzero(analysis.mask))
            pixel = [0, fp, 0, h * w - fp]
        yes = next((k for k, v in rec.options.items() if v.strip().lower() == "yes"), "A")
        answer = analysis.answer
        mask_file = None
        if item.extra.get("ordinal_in_category", 0) < self.save_masks:
            mask_file = self._save(item, image, analysis.mask, gt)
        return {
            **base_line(item, "ok"),
            "image": item.extra.get("image"),
            "defect": rec.defect
            or ("good" if not rec.anomalous else Path(item.extra["image"]).parts[-2]),
            "gt_anomalous": bool(rec.anomalous),
            "height": h,
            "width": w,
            "predicted": answer,
            "answer_anomalous": None if answer is None else answer == yes,
            "seg_anomalous": bool(parsed.is_anomalous),
            "pixel": pixel,
            "seg": parsed.seg_canonical,
            "response": analysis.response,
            "format_ok": parsed.format_ok,
            "reference": prepared["ref_path"],
            "mask_file": mask_file,
            "seconds": round(float(analysis.seconds), 4),
        }


def run_detection(
    model: Any,
    roots: RootsLike,
    out: str | os.PathLike[str] = "runs/detection",
    *,
    shots: int = 0,
    image_decision: str = "answer",
    seed: int = 0,
    save_masks: int = 0,
    batch_size: int = 8,
    limit: int | None = None,
    limit_per_category: int | None = None,
    categories: str | Sequence[str] | None = None,
    shard_index: int | None = None,
    num_shards: int | None = None,
    compare_paper: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    verbose: bool = False,
    device: str | None = None,
    dtype: str | None = None,
    max_new_tokens: int | None = None,
    grid: Any = None,
    image_size: int | None = None,
    layout: str | None = None,
    endpoint: str | Endpoint | None = None,
    served_model: str | None = None,
    api_key_env: str | None = None,
    concurrency: int | None = None,
    prompt: str = "omniad",
) -> EvalResult:
    """Run anomaly detection over MVTec-style folders and write the JSONL and report.

    Parameters
    ----------
    model : path or Inspector
        A checkpoint folder or a ready :class:`~omniad_core.Inspector`.
    roots : path, mapping or list
        Dataset roots: ``{"MVTec-AD": path, ...}``, ``["VisA=path", ...]``, pairs, or
        bare paths (named after their folder).  A root holds category folders (or is one).
    out : path
        The run folder.  Re-running with the same settings resumes.
    shots : {0, 1}
        1-shot shows a ``train/good`` image of the same category first (chosen
        deterministically from ``seed`` and the image's path).
    image_decision : {"answer", "seg"}
        Image-level rule of the report (both are stored; see the module doc).
    save_masks : int
        Save the predicted mask and an overlay (prediction red, ground truth green
        outline) of the first N images of each category under ``out/masks``.
    batch_size, limit, limit_per_category, categories, shard_index, num_shards,
    compare_paper, overwrite, progress, verbose, device, dtype, max_new_tokens, grid,
    image_size, layout, endpoint, served_model, api_key_env, concurrency
        As in :func:`omniad_train.evaluation.run_mmad`.
    prompt : {"omniad"}
        Detection scores the mask, so only the OmniAD prompt (which asks for one) is
        accepted; ``"mmad"`` is refused.
    """
    if prompt != "omniad":
        raise ValueError(
            f"detection needs the model's mask, which only the omniad prompt asks for; "
            f"prompt {prompt!r} is for MMAD's questions (run_mmad / eval mmad --prompt mmad)"
        )
    if shots not in (0, 1):
        raise ValueError(f"shots must be 0 or 1, got {shots!r}")
    if image_decision not in IMAGE_DECISIONS:
        raise ValueError(f"image_decision must be 'answer' or 'seg', got {image_decision!r}")
    if save_masks < 0:
        raise ValueError(f"save_masks must be >= 0, got {save_masks}")
    chosen, load = runner_model(
        model,
        device=device,
        dtype=dtype,
        max_new_tokens=max_new_tokens,
        grid=grid,
        image_size=image_size,
        layout=layout,
        endpoint=endpoint,
        served_model=served_model,
        api_key_env=api_key_env,
        concurrency=concurrency,
    )
    named = normalize_roots(roots)
    items = collect_detection_items(
        named,
        seed=seed,
        categories=categories,
        limit=limit,
        limit_per_category=limit_per_category,
    )
    check_evaluable(items, "detection over " + ", ".join(f"{n}={p}" for n, p in named))
    fingerprint = {
        **chosen.settings,
        "shots": shots,
        "seed": seed,
        "roots": {name: str(path.resolve()) for name, path in named},
    }
    config = {
        **subset_config(chosen, batch_size, limit, limit_per_category, categories),
        "save_masks": save_masks,
    }
    out_dir = Path(out)
    result = execute(
        kind=KIND,
        report=detection_report,
        task=_DetectionTask(out_dir, shots, save_masks),
        items=items,
        out_dir=out_dir,
        model_factory=load,
        fingerprint=fingerprint,
        config=config,
        report_options={"compare_paper": bool(compare_paper), "image_decision": image_decision},
        shard_index=shard_index,
        num_shards=num_shards,
        batch_size=batch_size,
        progress=progress,
        overwrite=overwrite,
        unit="img",
        verbose=verbose,
        concurrency=chosen.concurrency,
    )
    return check_evaluated(result, "evaluated", "detection")


# --------------------------------------------------------------------------- report
def image_prediction(line: Mapping[str, Any], image_decision: str) -> bool:
    """The image-level decision of a result line; an unreadable answer is a wrong decision."""
    if image_decision == "seg":
        return bool(line["seg_anomalous"])
    if image_decision != "answer":
        raise ValueError(f"image_decision must be 'answer' or 'seg', got {image_decision!r}")
    a = line.get("answer_anomalous")
    return (not line["gt_anomalous"]) if a is None else bool(a)


def detection_meter(lines: Sequence[Mapping[str, Any]], image_decision: str) -> DetectionMeter:
    """A :class:`DetectionMeter` from result lines with the given image-level rule."""
    meter = DetectionMeter()
    for d in lines:
        if d.get("status") != "ok":
            continue
        tp, fp, fn, tn = d["pixel"]
        meter.update_counts(
            tp,
            fp,
            fn,
            tn,
            image_gt=bool(d["gt_anomalous"]),
            image_pred=image_prediction(d, image_decision),
            dataset=d["dataset"],
            category=d["category"],
        )
    return meter


def _both_decisions_md(reports: dict[str, DetectionReport]) -> str:
    out = [
        "| Dataset | Image F1 (answer) | Image Acc (answer) | Image F1 (seg) | Image Acc (seg) |",
        "|---|--:|--:|--:|--:|",
    ]
    a, s = reports["answer"], reports["seg"]
    rows = [(r.dataset or "", r, s.dataset(r.dataset or "")) for r in a.datasets()]
    rows.append(("**Average**", a.overall, s.overall))
    for name, ra, rs in rows:
        vals = [ra.image_f1, ra.image_acc, rs.image_f1, rs.image_acc]
        out.append(f"| {name} | " + " | ".join("-" if v != v else f"{v:.1f}" for v in vals) + " |")
    return "\n".join(out) + "\n"


def _pr_pictures(out_dir: Path, report: DetectionReport, shots: int) -> list[dict[str, Any]]:
    pictures = []
    for ds in report.datasets():
        name = ds.dataset or ""
        points = []
        for r in report:
            if r.scope == "category" and r.dataset == name:
                points.append(PRPoint(r.category or "", r.pixel.precision, r.pixel.recall, "pixel"))
                points.append(PRPoint(r.category or "", r.image.precision, r.image.recall, "image"))
        points.append(PRPoint(name, ds.pixel.precision, ds.pixel.recall, "pixel-pooled"))
        points.append(PRPoint(name, ds.image.precision, ds.image.recall, "image-pooled"))
        path = out_dir / f"pr_{_safe(name)}.png"
        draw_pr_points(points, path, title=f"{name}: precision / recall, {shots}-shot")
        pictures.append(
            {"dataset": name, "file": path.name, "points": [p.to_dict() for p in points]}
        )
    return pictures


def detection_report(
    out_dir: Path,
    lines: Sequence[dict[str, Any]],
    run: dict[str, Any],
    status: dict[str, Any],
    *,
    compare_paper: bool = False,
    image_decision: str = "answer",
) -> dict[str, Any]:
    """Build and write ``report.md`` / ``report.json`` (and PR pictures) of a detection run."""
    if image_decision not in IMAGE_DECISIONS:
        raise ValueError(f"image_decision must be 'answer' or 'seg', got {image_decision!r}")
    meters = {d: detection_meter(lines, d) for d in IMAGE_DECISIONS}
    reports = {d: m.results() for d, m in meters.items()}
    main = reports[image_decision]
    skipped, skipped_md = skipped_summary(lines)
    failures, failures_md = failures_summary(lines)
    served, served_md = served_summary(lines)
    config = report_config(run, status)
    config["image_decision"] = image_decision
    shots = int(run["fingerprint"].get("shots", 0))
    ok = [d for d in lines if d.get("status") == "ok"]
    n_unans = sum(1 for d in ok if d.get("predicted") is None)
    summary = (
        f"Detection, {shots}-shot, image level from the {image_decision}: {len(ok)} images "
        f"evaluated ({n_unans} with an unreadable answer), {len(skipped)} skipped"
        + state_text(status, failures["count"])
        + ".\n"
    )
    per_dataset = main.to_markdown(categories=False)
    pictures = _pr_pictures(out_dir, main, shots) if ok else []
    rule = (
        "anomalous when the model answers the 'Yes' option (an unreadable answer counts as a "
        "wrong decision)"
        if image_decision == "answer"
        else "anomalous when the seg marks at least one cell"
    )
    md = [
        "# Anomaly detection evaluation",
        "",
        summary,
        f"Pixel level: the decoded seg at each image's size against the ground-truth mask, "
        f"pixels pooled per category. Image level: {rule}. A dataset's figure is the mean over "
        "its categories; Average is the mean over datasets. Percent.",
        "",
        "## Per dataset (Tables 3/4 layout)",
        "",
        per_dataset,
        "## Per category (Tables 10-17 layout)",
        "",
        main.to_markdown(),
        "## Image level by decision rule",
        "",
        _both_decisions_md(reports),
        "## Pooled figures (counts summed over all images of a dataset / of the run)",
        "",
        main.to_markdown(categories=False, pooled=True),
    ]
    if pictures:
        md += [
            "## Precision / recall",
            "",
            "The model writes a mask, not a score map, so each category is one operating "
            "point per level (no curve): pixel level (circles) and image level (squares) per "
            "category, pooled points of the dataset outlined, dashed iso-F1 curves for "
            "reference.",
            "",
        ]
        md += [f"![{p['dataset']}]({p['file']})" for p in pictures]
        md.append("")
    comparison = None
    if compare_paper:
        reasons = subset_reasons(config)
        categories: dict[str, set[str]] = {}
        for d in lines:
            if d.get("dataset") and d.get("category"):
                categories.setdefault(d["dataset"], set()).add(d["category"])
        rows = compare_detection(
            {r.dataset or "": r.to_dict() for r in main.datasets()},
            main.overall.to_dict() if main.datasets() else None,
            shots,
            reasons,
            {k: len(v) for k, v in categories.items()},
        )
        reasons += [n for r in rows for n in r.not_comparable if n not in reasons]
        comparison = [r.to_dict() for r in rows]
        md += [
            "## Comparison with the paper",
            "",
            f"OmniAD's published numbers (docs/method.md: 0-shot only) next to this run ({shots}-shot, "
            f"image level from the {image_decision}). Difference = this run - paper."
            + (not_comparable_text(reasons, "the paper's test sets") if reasons else ""),
            "",
            comparison_markdown(rows, "Paper (OmniAD, 0-shot)"),
        ]
    t = timing(lines)
    if t["seconds_per_item"] is not None:
        config["generation_seconds_per_item"] = t["seconds_per_item"]
    md += [skipped_md]
    md += [x for x in (failures_md, served_md) if x]
    md += ["## Configuration", "", config_markdown(config)]
    report = {
        "kind": "detection",
        "config": config,
        "status": {
            **status,
            "state": run_state(status, failures["count"]),
            "n_failed": failures["count"],
        },
        "failures": failures,
        "served": served,
        "counts": {
            "evaluated": len(ok),
            "unanswerable": n_unans,
            "skipped": len(skipped),
            "lines": len(lines),
        },
        "image_decision": image_decision,
        "rows": main.to_dicts(),
        "image_level_by_decision": {
            d: [r.to_dict() for r in (*reports[d].datasets(), reports[d].overall)]
            for d in IMAGE_DECISIONS
        },
        "timing": timing(lines),
        "pr_pictures": pictures,
        "paper_comparison": comparison,
        "skipped": skipped,
        "meter_state": {d: m.state_dict() for d, m in meters.items()},
        "markdown_summary": summary + "\n" + per_dataset,
    }
    write_report(out_dir, report, "\n".join(md))
    return report
