"""MMAD runner: every multiple-choice question of ``mmad.json``, 0-shot or 1-shot.

Questions come from :func:`omniad_train.data.iter_mmad` (its rejects are listed as
skipped; a run in which no question can be asked is an error naming them).  Each answer is one JSONL line; the report (the paper's Table 2 layout: the 7
question types and their average, per dataset and averaged over datasets) is rebuilt
from the JSONL with :class:`omniad_core.metrics.MMADMeter`.  Unanswerable responses (no
option letter could be read) count as wrong; the variant that drops them, as MMAD's
own script does, is reported too.

The command line is built in :mod:`omniad_train.evaluation.cli` (``benchmarks/run_mmad.py``
or ``python -m omniad_train.evaluation mmad``)::

    python benchmarks/run_mmad.py --model CKPT --mmad_json MMAD/mmad.json \\
        --image_root MMAD --out runs/mmad --shots 0 --batch_size 8 --compare_paper
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from omniad_core.images import ImageError, load_image
from omniad_core.metrics import MMAD_TYPES, MMADMeter
from omniad_core.parsing import parse_response
from omniad_train.data.records import Record, Reject
from omniad_train.data.sources import iter_mmad
from omniad_train.evaluation.baseline import PROMPT_DESCRIPTIONS, mmad_question
from omniad_train.evaluation.execution import (
    EvalResult,
    Item,
    SkipItem,
    base_line,
    execute,
    parse_categories,
    select,
)
from omniad_train.evaluation.model import PROMPTS, Endpoint, runner_model
from omniad_train.evaluation.paper import (
    compare_mmad,
    comparison_markdown,
    mmad_dataset_reasons,
    not_comparable_text,
    subset_reasons,
)
from omniad_train.evaluation.protocol import EvalProtocol, protocol_text
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

__all__ = [
    "KIND",
    "collect_mmad_items",
    "mmad_meter",
    "mmad_report",
    "reject_kind",
    "run_mmad",
    "subset_config",
]

#: The run kind in ``run.json``.
KIND = "mmad"


def reject_kind(reason: str) -> str:
    """A short kind for a reader's reject reason (for the report's counts).

    >>> reject_kind("image file not found at 'x.png'; pass the folder ...")
    'missing_image'
    >>> reject_kind("the question has no options; a multiple-choice question needs options")
    'options'
    >>> reject_kind('bad entry in mmad.json: "similar_templates" must be a list of texts')
    'input'
    """
    r = reason.lower()
    if r.startswith(("bad entry", "bad question", "the entry must be", "the question must be")):
        return "input"  # a field of the wrong type; the reason names the field
    if "image file not found" in r:
        return "missing_image"
    if "mask" in r:
        return "mask"
    if "options" in r:
        return "options"
    if "answer" in r:
        return "answer"
    if "question type" in r:
        return "type"
    return "input"


def _key_parts(key: str) -> tuple[str, str]:
    parts = Path(key).parts
    return (parts[0], parts[1]) if len(parts) > 2 else ("", "")


def collect_mmad_items(
    mmad_json: str | os.PathLike[str],
    image_root: str | os.PathLike[str] | None = None,
    *,
    reference_from: str = "similar",
    categories: str | Sequence[str] | None = None,
    limit: int | None = None,
    limit_per_category: int | None = None,
    protocol: EvalProtocol | None = None,
) -> list[Item]:
    """The run's questions in file order: answerable records and reader rejects.

    ``protocol`` keeps only the questions of its split and leaves out training images
    (before ``limit`` and the other filters); it counts what it left out.
    """

    def stream() -> Iterator[Item]:
        for item in read():
            if protocol is None or protocol.keep(item):
                yield item

    def read() -> Iterator[Item]:
        for r in iter_mmad(mmad_json, image_root, reference_from=reference_from):  # type: ignore[arg-type]
            if isinstance(r, Reject):
                key = r.record.rpartition("#")[0] if "#" in r.record else r.record
                ds, cat = _key_parts(key)
                yield Item(
                    id=f"mmad:{r.record}",
                    index=0,
                    dataset=ds,
                    category=cat,
                    skip=(reject_kind(r.reason), r.reason),
                    extra={"image": key},
                )
            else:
                assert isinstance(r, Record)
                yield Item(
                    id=r.id,
                    index=0,
                    dataset=r.dataset,
                    category=r.category,
                    record=r,
                    extra={"image": r.image_id.removeprefix("mmad:")},
                )

    return select(
        stream(),
        categories=parse_categories(categories),
        limit=limit,
        limit_per_category=limit_per_category,
    )


class _MMADTask:
    """Loads an item's images, asks its question and writes its line."""

    def __init__(
        self, shots: int, reference_from: str, prompt: str = "omniad", layout: str = "lines"
    ) -> None:
        self.shots = shots
        self.reference_from = reference_from
        self.prompt = prompt
        self.layout = layout

    def prepare(self, item: Item) -> tuple[Any, Any, str | None, Record]:
        rec = item.record
        assert rec is not None
        try:
            image = load_image(rec.image)
        except (ImageError, OSError) as exc:
            raise SkipItem("image", str(exc)) from None
        ref, ref_path = None, None
        if self.shots == 1:
            if not rec.reference:
                raise SkipItem(
                    "reference",
                    f"1-shot needs a normal reference image, but the entry has no "
                    f"{self.reference_from}_templates",
                )
            ref_path = rec.reference[0]
            try:
                ref = load_image(ref_path)
            except (ImageError, OSError) as exc:
                raise SkipItem("reference", f"cannot use the reference template: {exc}") from None
        return image, ref, ref_path, rec

    def request(self, prepared: Any) -> tuple[Any, str, Any, Any]:
        image, ref, _, rec = prepared
        if self.prompt == "mmad":  # the whole user turn, options and instruction included
            return image, mmad_question(rec.question, rec.options, self.layout), None, ref
        return image, rec.question, rec.options, ref

    def skipped(self, item: Item, kind: str, reason: str) -> dict[str, Any]:
        rec = item.record
        return {
            **base_line(item, "skipped"),
            "image": item.extra.get("image"),
            "type": rec.type if rec is not None else None,
            "skip_kind": kind,
            "reason": reason,
        }

    def finish(self, item: Item, prepared: Any, analysis: Any) -> dict[str, Any]:
        rec = item.record
        assert rec is not None
        predicted = analysis.answer
        if self.prompt == "mmad":  # asked without options: read the letter against them
            predicted = parse_response(
                analysis.response, options=rec.options, grid=analysis.parsed.grid
            ).answer
        return {
            **base_line(item, "ok"),
            "image": item.extra.get("image"),
            "type": rec.type,
            "normal": not rec.anomalous,
            "question": rec.question,
            "options": rec.options,
            "gold": rec.answer,
            "predicted": predicted,
            "correct": None if predicted is None else predicted == rec.answer,
            "response": analysis.response,
            "seg": analysis.parsed.seg_canonical,
            "format_ok": analysis.parsed.format_ok,
            "reference": prepared[2],
            "seconds": round(float(analysis.seconds), 4),
        }


def run_mmad(
    model: Any,
    mmad_json: str | os.PathLike[str],
    image_root: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] = "runs/mmad",
    *,
    shots: int = 0,
    reference_from: str = "similar",
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
    holdout_fraction: float | None = None,
    split_seed: int = 0,
    split_file: str | os.PathLike[str] | None = None,
    exclude_training: Sequence[str | os.PathLike[str]] = (),
    refuse_training: Sequence[str | os.PathLike[str]] = (),
) -> EvalResult:
    """Ask every MMAD question and write ``results.jsonl`` plus the report.

    Parameters
    ----------
    model : path or Inspector
        A checkpoint folder (loaded with ``Inspector.from_pretrained`` only if there is
        work left) or a ready :class:`~omniad_core.Inspector`.
    mmad_json, image_root : path
        MMAD's ``mmad.json`` and the folder its image paths are relative to (default:
        the folder of ``mmad.json``).
    out : path
        The run folder.  Re-running with the same settings resumes.
    shots : {0, 1}
        1-shot puts the first ``{reference_from}_templates`` image first, as a normal
        reference.
    reference_from : {"similar", "random"}
        Which template list 1-shot uses.
    batch_size : int
        Questions per ``generate`` call.
    limit, limit_per_category, categories
        Subsets for quick checks: the first ``limit`` questions, at most
        ``limit_per_category`` per category, only these categories (names,
        ``dataset/category`` or dataset names; a list or ``"a,b"``).
    shard_index, num_shards : int, optional
        This process's shard (default: ``RANK`` / ``WORLD_SIZE``, else a single shard).
    compare_paper : bool
        Add the paper's numbers and the differences to the report.
    overwrite : bool
        Discard this shard's earlier results (needed when the settings changed).
    progress, verbose : bool
        Show a progress bar; print the table when the report is written.
    device, dtype, max_new_tokens, grid, image_size, layout
        Model loading options (checkpoint paths only; an Inspector is used as is).
        With an endpoint, grid, image size and layout come from here or the defaults.
    endpoint, served_model, api_key_env, concurrency
        A served model instead of ``model`` (None): an OpenAI-compatible API root, the
        name it serves, the environment variable holding the key, requests in flight
        (default 8).  Checked before any work; the fingerprint holds the URL and the name.
        An :class:`~omniad_train.evaluation.model.Endpoint` gives retries and timeouts too.
    prompt : {"omniad", "mmad"}
        ``mmad`` asks MMAD's way (:mod:`omniad_train.evaluation.baseline`): no system
        turn, the letter only; scored by the same meter.
    holdout_fraction, split_seed, split_file, exclude_training, refuse_training
        The protocol (:class:`~omniad_train.evaluation.protocol.EvalProtocol`): a
        held-out split by image, or the images of a split file; leave out, or refuse,
        the training images of prepared dataset folders.  Recorded in ``run.json`` and
        printed in the report.

    Returns
    -------
    EvalResult
        ``report`` is set once every shard has finished.
    """
    if shots not in (0, 1):
        raise ValueError(f"shots must be 0 or 1, got {shots!r}")
    if reference_from not in ("similar", "random"):
        raise ValueError(f"reference_from must be 'similar' or 'random', got {reference_from!r}")
    if prompt not in PROMPTS:
        raise ValueError(f"prompt must be one of {PROMPTS}, got {prompt!r}")
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
        prompt=prompt,
    )
    protocol = EvalProtocol(
        holdout_fraction=holdout_fraction,
        split_seed=split_seed,
        split_file=split_file,
        exclude_training=list(exclude_training),
        refuse_training=list(refuse_training),
    )
    items = collect_mmad_items(
        mmad_json,
        image_root,
        reference_from=reference_from,
        categories=categories,
        limit=limit,
        limit_per_category=limit_per_category,
        protocol=protocol,
    )
    protocol.check_split_found()
    check_evaluable(items, f"MMAD questions of {str(mmad_json)!r}")
    protocol.refuse(items)
    root = Path(image_root) if image_root is not None else Path(mmad_json).parent
    fingerprint = {
        **chosen.settings,
        "shots": shots,
        "reference_from": reference_from if shots == 1 else None,
        "mmad_json": str(Path(mmad_json).resolve()),
        "image_root": str(root.resolve()),
    }
    setting = protocol.setting()
    if setting != {"split": "full", "exclude_training": [], "refuse_training": []}:
        fingerprint["protocol"] = setting  # a full-benchmark run resumes runs made before
    config = {
        **subset_config(chosen, batch_size, limit, limit_per_category, categories),
        "protocol": {**setting, **protocol.summary(len(items))},
    }
    result = execute(
        kind=KIND,
        report=mmad_report,
        task=_MMADTask(shots, reference_from, prompt, layout or getattr(model, "layout", "lines")),
        items=items,
        out_dir=out,
        model_factory=load,
        fingerprint=fingerprint,
        config=config,
        report_options={"compare_paper": bool(compare_paper)},
        shard_index=shard_index,
        num_shards=num_shards,
        batch_size=batch_size,
        progress=progress,
        overwrite=overwrite,
        unit="q",
        verbose=verbose,
        concurrency=chosen.concurrency,
    )
    return check_evaluated(result, "answered", "MMAD")


# --------------------------------------------------------------------------- report
def _model_row(fingerprint: dict[str, Any]) -> str:
    """How a report names the model: the checkpoint, or ``name @ URL`` for a served one."""
    name = str(fingerprint.get("model", "?"))
    if fingerprint.get("backend") == "endpoint":
        return f"{name} @ {fingerprint.get('endpoint')}"
    return name


def mmad_meter(lines: Sequence[dict[str, Any]]) -> MMADMeter:
    """An :class:`MMADMeter` from result lines (answered ones; correctness recomputed)."""
    meter = MMADMeter()
    for d in lines:
        if d.get("status") != "ok":
            continue
        pred = d.get("predicted")
        correct = None if pred is None else pred == d["gold"]
        meter.update(
            d["type"],
            correct,
            dataset=d.get("dataset") or "",
            category=d.get("category") or "",
            is_normal=bool(d["normal"]),
        )
    return meter


def _discrimination_md(report: Any) -> str:
    out = [
        "| Dataset | Normal acc | Abnormal acc | Discrimination | Questions | Unanswerable |",
        "|---|--:|--:|--:|--:|--:|",
    ]
    for r in report.rows:
        name = r.dataset if r.scope == "dataset" else "**Average**"
        vals = [r.normal_acc, r.abnormal_acc, r.accuracy[MMAD_TYPES[0]]]
        shown = ["-" if v != v else f"{v:.1f}" for v in vals]
        out.append(f"| {name} | {' | '.join(shown)} | {r.n_questions} | {r.n_unanswerable} |")
    return "\n".join(out) + "\n"


def mmad_report(
    out_dir: Path,
    lines: Sequence[dict[str, Any]],
    run: dict[str, Any],
    status: dict[str, Any],
    *,
    compare_paper: bool = False,
) -> dict[str, Any]:
    """Build and write ``report.md`` / ``report.json`` of an MMAD run from its lines."""
    meter = mmad_meter(lines)
    wrong = meter.results(unanswerable="wrong")
    drop = meter.results(unanswerable="drop")
    skipped, skipped_md = skipped_summary(lines)
    failures, failures_md = failures_summary(lines)
    served, served_md = served_summary(lines)
    config = report_config(run, status)
    fp = run["fingerprint"]
    shots = int(fp.get("shots", 0))
    prompt = str(fp.get("prompt", "omniad"))
    protocol = protocol_text(fp.get("protocol"), run.get("config", {}).get("protocol"))
    state = run_state(status, failures["count"])
    n_answered = meter.n_questions
    n_unans = meter.n_unanswerable
    counts = {
        "answered": n_answered,
        "unanswerable": n_unans,
        "skipped": len(skipped),
        "lines": len(lines),
    }
    summary = (
        f"MMAD, {shots}-shot, {prompt} prompt, {protocol}: {n_answered} questions answered "
        f"({n_unans} unanswerable, counted as wrong), {len(skipped)} skipped"
        + state_text(status, failures["count"])
        + ".\n"
    )
    model_row = _model_row(fp)
    main_table = wrong.to_markdown()
    md = [
        "# MMAD evaluation",
        "",
        summary,
        "| Model | Prompt | Protocol | Shots |",
        "|---|---|---|--:|",
        f"| {model_row} | {prompt} | {protocol} | {shots} |",
        "",
        f"Prompt {PROMPT_DESCRIPTIONS.get(prompt, prompt)}",
        "",
        "## Accuracy (%), Table 2 layout",
        "",
        "Unanswerable responses (no option letter among the options could be read) count as "
        "wrong. Anomaly Discrimination is the mean of the accuracy on normal and on abnormal "
        "images; Average is the mean of the 7 types; the Average row is the mean over datasets.",
        "",
        main_table,
        "### Anomaly Discrimination detail",
        "",
        _discrimination_md(wrong),
        "## Variant: unanswerable responses dropped (MMAD's own script)",
        "",
        drop.to_markdown(),
    ]
    comparison = None
    if compare_paper:
        reasons = subset_reasons(config)
        reasons += mmad_dataset_reasons({d["dataset"] for d in lines if d.get("dataset")})
        rows = compare_mmad(wrong.overall.to_dict(), shots, reasons)
        comparison = [r.to_dict() for r in rows]
        md += [
            "## Comparison with the paper",
            "",
            f"OmniAD's published {shots}-shot numbers (docs/method.md) next to this run's Average "
            "row (unanswerable counted as wrong). Difference = this run - paper."
            + (not_comparable_text(reasons, "MMAD") if reasons else ""),
            "",
            comparison_markdown(rows, f"Paper (OmniAD, {shots}-shot)"),
        ]
    t = timing(lines)
    if t["seconds_per_item"] is not None:
        config["generation_seconds_per_item"] = t["seconds_per_item"]
    md += [skipped_md]
    md += [x for x in (failures_md, served_md) if x]
    md += ["## Configuration", "", config_markdown(config)]
    markdown = "\n".join(md)
    report = {
        "kind": "mmad",
        "config": config,
        "status": {**status, "state": state, "n_failed": failures["count"]},
        "counts": counts,
        "model": model_row,
        "prompt": prompt,
        "protocol_text": protocol,
        "failures": failures,
        "served": served,
        "protocol": {
            "unanswerable": "counted as wrong in 'accuracy'; left out in 'accuracy_dropped'",
            "skipped": "listed, not scored",
            "failed": "requests that failed after their last retry: listed, not scored; "
            "a re-run retries them",
            "evaluation": fp.get("protocol") or {"split": "full"},
            "types": list(MMAD_TYPES),
        },
        "accuracy": {"rows": wrong.to_dicts(), "pooled": wrong.pooled.to_dict()},
        "accuracy_dropped": {"rows": drop.to_dicts(), "pooled": drop.pooled.to_dict()},
        "timing": timing(lines),
        "paper_comparison": comparison,
        "skipped": skipped,
        "meter_state": meter.state_dict(),
        "markdown_summary": summary + "\n" + main_table,
    }
    write_report(out_dir, report, markdown)
    return report
