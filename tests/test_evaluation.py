"""Evaluation runners (``omniad_train.evaluation``) end to end and in parts.

The end-to-end tests use the tiny offline Qwen2.5-VL through the real Inspector,
briefly trained (as in ``tests/test_inspector.py``) to answer every prompt with one
known response, so expected tables can be computed independently.  Metric arithmetic is
also checked on hand-made result files, and interruption (SIGKILL of a subprocess),
truncated logs, sharding and bad inputs are exercised.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from memorize import memorized_checkpoint  # noqa: E402

import textmask  # noqa: E402
from omniad_core import Inspector  # noqa: E402
from omniad_core.metrics import DetectionMeter  # noqa: E402
from omniad_train.evaluation import (  # noqa: E402
    IncompleteRunError,
    RunConfigError,
    RunLog,
    RunLogLockedError,
    build_report,
    detection_meter,
    load_paper_numbers,
    merge_shards,
    mmad_meter,
    read_jsonl,
    resolve_shard,
    run_detection,
    run_mmad,
    shard_slice,
)
from omniad_train.evaluation.common import RUN_FORMAT, write_json  # noqa: E402
from omniad_train.evaluation.detection import main as detection_main  # noqa: E402
from omniad_train.evaluation.mmad import main as mmad_main  # noqa: E402
from omniad_train.evaluation.paper import (  # noqa: E402
    MMAD_DATASETS,
    mmad_dataset_reasons,
    subset_reasons,
)

REPO = Path(__file__).resolve().parent.parent
SEG = "(1, 1)-(1, 2), (3, 0)"
TARGET = f"<seg>{SEG}</seg><think>A spot at the left top.</think><answer>A</answer>"
PROMPT = "Find defects."
MMAD_FIELDS = {
    "id",
    "index",
    "status",
    "dataset",
    "category",
    "image",
    "type",
    "normal",
    "question",
    "options",
    "gold",
    "predicted",
    "correct",
    "response",
    "seg",
    "format_ok",
    "reference",
    "seconds",
}
DET_FIELDS = {
    "id",
    "index",
    "status",
    "dataset",
    "category",
    "image",
    "defect",
    "gt_anomalous",
    "height",
    "width",
    "predicted",
    "answer_anomalous",
    "seg_anomalous",
    "pixel",
    "seg",
    "response",
    "format_ok",
    "reference",
    "mask_file",
    "seconds",
}


def _rgb(h: int, w: int, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)


def _save(path: Path, array: np.ndarray) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _mask(h: int, w: int, box: tuple[int, int, int, int]) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[box[0] : box[1], box[2] : box[3]] = 255
    return m


# --------------------------------------------------------------------------- model
@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One intra-op thread: far faster for a toy model, and immune to a busy machine."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A checkpoint answering TARGET to 0-shot and 1-shot questions alike."""
    prompts = [
        (_rgb(40, 60, 0), None, None, None),
        (
            _rgb(64, 64, 1),
            "Which defect is on the cap?",
            ["crack", "hole", "scratch", "bent"],
            None,
        ),
        (_rgb(90, 50, 2), "Is there any defect?", {"A": "Yes", "B": "No"}, _rgb(50, 50, 3)),
        (_rgb(48, 64, 4), "Where is it?", {"B": "left", "C": "right"}, None),
        (_rgb(40, 48, 5), "What object is this?", {"A": "cap", "B": "pcb"}, None),
        (
            _rgb(40, 48, 6),
            "Describe it.",
            {"A": "a", "B": "b", "C": "c", "D": "d"},
            _rgb(40, 48, 7),
        ),
    ]
    probes = [
        (_rgb(44, 52, 60 + k), "Which defect?", {"A": "x", "B": "y"}, ref)
        for k, ref in enumerate([None, _rgb(40, 48, 70)])
    ]
    return memorized_checkpoint(
        tmp_path_factory, TARGET, prompts, system_prompt=PROMPT, probes=probes
    )


@pytest.fixture(scope="module")
def inspector(ckpt):
    return Inspector.from_pretrained(ckpt, max_new_tokens=64)


# --------------------------------------------------------------------------- data
# (key, questions [(question, options, gold, raw type)], mask box or None)
MMAD_GOOD = [
    (
        "Alpha/cap/test/good/000.png",
        [
            (
                "Is there any defect in the object?",
                {"A": "Yes", "B": "No"},
                "B",
                "Anomaly Detection",
            ),
            ("What object is this?", {"A": "cap", "B": "pcb"}, "A", "Object Classification"),
        ],
        None,
    ),
    (
        "Alpha/cap/test/crack/001.png",
        [
            (
                "Is there any defect in the object?",
                {"A": "Yes", "B": "No"},
                "A",
                "Anomaly Detection",
            ),
            ("Which defect?", {"A": "crack", "B": "hole"}, "A", "Defect Classification"),
            (
                "Which defect type?",
                {"A": "crack", "B": "hole", "C": "bent"},
                "A",
                "Defect Classification",
            ),
        ],
        (4, 12, 4, 20),
    ),
    (
        "Alpha/cap/test/crack/002.png",
        [
            ("Which defect?", {"A": "crack", "B": "hole"}, "A", "Defect Classification"),
            ("Which defect is it?", {"A": "crack", "B": "hole"}, "B", "Defect Classification"),
            ("Where is it?", {"B": "left", "C": "right"}, "B", "Defect Localization"),
        ],
        (10, 20, 0, 10),
    ),
    (
        "Beta/pcb/test/good/003.png",
        [
            (
                "Is there any defect in the object?",
                {"A": "Yes", "B": "No"},
                "B",
                "Anomaly Detection",
            ),
            ("How is it built?", {"A": "flat", "B": "round"}, "A", "Object Structure"),
        ],
        None,
    ),
    (
        "Beta/pcb/test/hole/004.png",
        [
            (
                "Is there any defect in the object?",
                {"A": "Yes", "B": "No"},
                "A",
                "Anomaly Detection",
            ),
            ("Describe it.", {"A": "a", "B": "b", "C": "c", "D": "d"}, "C", "Defect Description"),
        ],
        (0, 8, 0, 8),
    ),
]
N_MMAD_QUESTIONS = 12 + 1 + 2 + 1 + 1  # answerable + missing image + no options/bad answer
# + unreadable image + defect without mask


@pytest.fixture(scope="module")
def mmad_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("mmad")
    data = {}
    for k, (key, questions, box) in enumerate(MMAD_GOOD):
        _save(root / key, _rgb(40, 48, k))
        ds, cat = key.split("/")[:2]
        entry = {
            "conversation": [
                {"Question": q, "Options": o, "Answer": a, "type": t} for q, o, a, t in questions
            ],
            "similar_templates": [f"{ds}/{cat}/train/good/t0.png"],
            "random_templates": [f"{ds}/{cat}/train/good/t1.png"],
        }
        if box is not None:
            mask_key = key.replace("/test/", "/ground_truth/").replace(".png", "_mask.png")
            _save(root / mask_key, _mask(40, 48, box))
            entry["mask_path"] = mask_key
        data[key] = entry
    for ds, cat in (("Alpha", "cap"), ("Beta", "pcb")):
        _save(root / f"{ds}/{cat}/train/good/t0.png", _rgb(40, 48, 50))
        _save(root / f"{ds}/{cat}/train/good/t1.png", _rgb(40, 48, 51))
    dq = {
        "Question": "Is there any defect?",
        "Options": {"A": "Yes", "B": "No"},
        "Answer": "A",
        "type": "Anomaly Detection",
    }
    data["Beta/pcb/test/hole/005.png"] = {"conversation": [dq], "mask_path": "x.png"}  # no image
    _save(root / "Beta/pcb/test/good/006.png", _rgb(40, 48, 6))
    data["Beta/pcb/test/good/006.png"] = {
        "conversation": [
            {"Question": "Any defect?", "Answer": "A", "type": "Anomaly Detection"},  # no options
            {**dq, "Answer": "E"},  # gold letter not among the options
        ]
    }
    bad = root / "Beta/pcb/test/good/007.png"
    bad.write_bytes(b"this is not a png")  # unreadable image
    data["Beta/pcb/test/good/007.png"] = {"conversation": [{**dq, "Answer": "B"}]}
    _save(root / "Alpha/cap/test/crack/008.png", _rgb(40, 48, 8))
    data["Alpha/cap/test/crack/008.png"] = {"conversation": [dq]}  # defect without mask_path
    (root / "mmad.json").write_text(json.dumps(data, indent=1))
    return root


def _mvtec(root: Path, categories: dict[str, list[tuple]]) -> Path:
    """Write an MVTec-style tree: {category: [(defect, stem, (h, w), mask spec)]}."""
    for c, (cat, images) in enumerate(categories.items()):
        for k in range(2):
            _save(root / cat / "train" / "good" / f"{k:03d}.png", _rgb(48, 64, 100 + k))
        for j, (defect, stem, (h, w), mask) in enumerate(images):
            img = root / cat / "test" / defect / f"{stem}.png"
            if mask == "unreadable":
                img.parent.mkdir(parents=True, exist_ok=True)
                img.write_bytes(b"\x89PNG broken")
                mask = (0, 4, 0, 4)
            else:
                _save(img, _rgb(h, w, 10 * c + j))
            if isinstance(mask, tuple):
                name = f"{stem}_mask.png" if root.name != "visa" else f"{stem}.png"
                _save(root / cat / "ground_truth" / defect / name, _mask(h, w, mask))
            elif mask == "other_size":
                _save(
                    root / cat / "ground_truth" / defect / f"{stem}_mask.png",
                    _mask(10, 10, (0, 5, 0, 5)),
                )
    return root


@pytest.fixture(scope="module")
def mvtec_data(tmp_path_factory):
    base = tmp_path_factory.mktemp("det")
    ad = _mvtec(
        base / "mvtec_ad",
        {
            "bottle": [
                ("broken", "000", (48, 64), (0, 6, 0, 8)),
                ("broken", "001", (48, 64), "other_size"),  # mask of another size
                ("broken", "002", (48, 64), None),  # defect image without a mask
                ("good", "000", (48, 64), None),
            ],
            "screw": [
                ("good", "000", (40, 40), None),
                ("scratch", "000", (40, 40), (2, 10, 0, 12)),
                ("scratch", "001", (40, 40), "unreadable"),
            ],
        },
    )
    visa = _mvtec(
        base / "visa",
        {
            "pcb1": [("bad", "000", (50, 70), (30, 50, 40, 70)), ("good", "000", (50, 70), None)],
        },
    )
    return {"MVTec-AD": ad, "VisA": visa}


def _strip(lines):
    """Result lines without timing, keyed by id."""
    return {d["id"]: {k: v for k, v in d.items() if k != "seconds"} for d in lines}


@pytest.fixture(scope="module")
def single_mmad(inspector, mmad_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("single") / "run"
    result = run_mmad(
        inspector,
        mmad_data / "mmad.json",
        out=out,
        batch_size=4,
        compare_paper=True,
        progress=False,
    )
    return result


# --------------------------------------------------------------------------- MMAD
def test_mmad_end_to_end(single_mmad):
    out = single_mmad.out_dir
    assert single_mmad.complete and single_mmad.n_items == N_MMAD_QUESTIONS
    raw = (out / "results.jsonl").read_text().splitlines()
    lines = [json.loads(x) for x in raw]
    assert len(lines) == N_MMAD_QUESTIONS == len({d["id"] for d in lines})
    ok = [d for d in lines if d["status"] == "ok"]
    assert len(ok) == 12
    for d in ok:
        assert set(d) >= MMAD_FIELDS
        assert d["response"].strip() == TARGET and d["seg"] == SEG
        assert d["format_ok"] == ("A" in d["options"])  # answer "A" must be an option
        assert d["seconds"] >= 0 and d["reference"] is None
    by_q = {(d["image"], d["question"]): d for d in ok}
    unans = by_q[("Alpha/cap/test/crack/002.png", "Where is it?")]
    assert unans["predicted"] is None and unans["correct"] is None  # "A" is not an option
    assert (
        by_q[("Alpha/cap/test/good/000.png", "Is there any defect in the object?")]["correct"]
        is False
    )

    report = json.loads((out / "report.json").read_text())
    rows = {r["dataset"] or "overall": r for r in report["accuracy"]["rows"]}
    # The model always answers A.  Alpha: discrimination (0 + 100) / 2, classification 3/4,
    # localization 0 (unanswerable counted wrong), object classification 100.
    assert rows["Alpha"]["Anomaly Discrimination"] == 50.0
    assert rows["Alpha"]["Defect Classification"] == 75.0
    assert rows["Alpha"]["Defect Localization"] == 0.0
    assert rows["Alpha"]["average"] == pytest.approx((50 + 75 + 0 + 100) / 4)
    assert rows["Beta"]["Object Analysis"] == 100.0 and rows["Beta"]["Defect Description"] == 0.0
    assert rows["overall"]["average"] == pytest.approx((50 + 75 + 0 + 0 + 100 + 100) / 6)
    assert rows["overall"]["Defect Analysis"] is None  # no question of that type: NaN -> null
    dropped = {r["dataset"] or "overall": r for r in report["accuracy_dropped"]["rows"]}
    assert dropped["Alpha"]["Defect Localization"] is None
    assert dropped["Alpha"]["average"] == pytest.approx((50 + 75 + 100) / 3)
    assert report["counts"] == {"answered": 12, "unanswerable": 1, "skipped": 5, "lines": 17}

    md = (out / "report.md").read_text()
    assert (
        "| Dataset | Anomaly Discrimination | Defect Classification | Defect Localization | "
        "Defect Description | Defect Analysis | Object Classification | Object Analysis | "
        "Average |" in md
    )
    assert "| Alpha | 50.0 | 75.0 | 0.0 | - | - | 100.0 | - | 56.2 |" in md
    assert "unanswerable responses dropped" in md and "## Comparison with the paper" in md
    assert "| Average | 54.2 | 79.1 | - | this run's average covers 6 of 7 types" in md
    for key in ("model", "grid", "shots", "system_prompt_sha256", "versions", "report_date"):
        assert key in report["config"]
    assert report["config"]["versions"]["torch"] and report["config"]["shots"] == 0


def test_mmad_bad_inputs_are_listed(single_mmad):
    report = json.loads((single_mmad.out_dir / "report.json").read_text())
    kinds = {s["id"]: s["kind"] for s in report["skipped"]}
    assert kinds == {
        "mmad:Beta/pcb/test/hole/005.png#0": "missing_image",
        "mmad:Beta/pcb/test/good/006.png#0": "options",
        "mmad:Beta/pcb/test/good/006.png#1": "answer",
        "mmad:Beta/pcb/test/good/007.png#0": "image",
        "mmad:Alpha/cap/test/crack/008.png#0": "mask",
    }
    reasons = {s["id"]: s["reason"] for s in report["skipped"]}
    assert "cannot read" in reasons["mmad:Beta/pcb/test/good/007.png#0"]
    md = (single_mmad.out_dir / "report.md").read_text()
    assert "## Skipped inputs (5)" in md and "mmad:Beta/pcb/test/good/007.png#0" in md


def test_mmad_one_shot_cli_and_subsets(ckpt, mmad_data, tmp_path, capsys):
    out = tmp_path / "one"
    argv = [
        "--model",
        str(ckpt),
        "--mmad_json",
        str(mmad_data / "mmad.json"),
        "--out",
        str(out),
        "--shots",
        "1",
        "--reference",
        "random",
        "--limit",
        "6",
        "--categories",
        "Alpha",
        "--max_new_tokens",
        "64",
        "--batch_size",
        "3",
        "--no_progress",
    ]
    assert mmad_main(argv) == 0
    assert "| Alpha |" in capsys.readouterr().out
    lines = read_jsonl(out / "results.jsonl")[0]
    assert len(lines) == 6 and {d["dataset"] for d in lines} == {"Alpha"}
    assert all(d["reference"].endswith("Alpha/cap/train/good/t1.png") for d in lines)
    assert all(d["response"].strip() == TARGET for d in lines)
    # the same folder with other settings is refused, not mixed
    assert mmad_main([*argv[:-3], "--shots", "0", "--no_progress"]) == 1
    assert "other settings" in capsys.readouterr().err
    # per-category limit
    few = run_mmad(
        ckpt,
        mmad_data / "mmad.json",
        out=tmp_path / "few",
        limit_per_category=2,
        max_new_tokens=64,
        progress=False,
        batch_size=8,
    )
    cats = [d["category"] for d in read_jsonl(few.results)[0]]
    assert sorted(cats) == ["cap", "cap", "pcb", "pcb"]


def test_finished_run_is_not_redone_and_needs_no_model(ckpt, single_mmad, tmp_path, monkeypatch):
    import shutil

    import omniad_train.evaluation.model as model_module

    def no_model(*args, **kwargs):
        raise AssertionError("the model must not be loaded when nothing is left to do")

    monkeypatch.setattr(model_module, "load_inspector", no_model)  # the runners' loader
    out = tmp_path / "copy"
    shutil.copytree(single_mmad.out_dir, out)
    mmad_json = json.loads((out / "run.json").read_text())["fingerprint"]["mmad_json"]
    # the checkpoint path gives the same fingerprint as the Inspector loaded from it
    again = run_mmad(ckpt, mmad_json, out=out, max_new_tokens=64, progress=False)
    assert again.complete and again.report["counts"]["answered"] == 12
    assert again.n_new == 5  # only the skipped inputs were re-checked (no model needed)
    with pytest.raises(RunConfigError, match="other settings"):
        run_mmad(ckpt, mmad_json, out=out, max_new_tokens=32, progress=False)


def test_resume_redoes_nothing_but_rechecks_bad_inputs(inspector, mmad_data, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(mmad_data, data)
    out = tmp_path / "run"
    run_mmad(inspector, data / "mmad.json", out=out, batch_size=6, progress=False)
    before = read_jsonl(out / "results.jsonl")[0]
    _save(data / "Beta/pcb/test/good/007.png", _rgb(40, 48, 7))  # the unreadable image is fixed
    again = run_mmad(inspector, data / "mmad.json", out=out, batch_size=6, progress=False)
    assert again.complete and again.n_new == 5  # the 5 skipped inputs were re-checked
    after = read_jsonl(out / "results.jsonl")[0]
    assert [d["id"] for d in after] == [d["id"] for d in before]  # one line each, in order
    fixed = "mmad:Beta/pcb/test/good/007.png#0"
    for b, a in zip(before, after, strict=True):
        if b["status"] == "ok":
            assert a == b  # not redone: even the timing is the old one
    assert {d["id"]: d["status"] for d in after}[fixed] == "ok"
    assert again.report["counts"]["skipped"] == 4 and again.report["counts"]["answered"] == 13


# --------------------------------------------------------------------------- detection
def test_detection_end_to_end(inspector, mvtec_data, tmp_path):
    from PIL import Image

    out = tmp_path / "det"
    result = run_detection(
        inspector,
        mvtec_data,
        out,
        save_masks=1,
        batch_size=3,
        compare_paper=True,
        progress=False,
    )
    assert result.complete
    lines = read_jsonl(out / "results.jsonl")[0]
    assert len(lines) == 9 == len({d["id"] for d in lines})
    ok = [d for d in lines if d["status"] == "ok"]
    assert len(ok) == 6
    expected = DetectionMeter()
    for d in ok:
        assert set(d) >= DET_FIELDS
        assert d["response"].strip() == TARGET and d["seg"] == SEG
        assert d["predicted"] == "A" and d["answer_anomalous"] and d["seg_anomalous"]
        h, w = d["height"], d["width"]
        pred = textmask.decode(SEG, 24, shape=(h, w))
        root = mvtec_data[d["dataset"]]
        if d["gt_anomalous"]:
            cat, _, defect, name = Path(d["image"]).parts
            stem = Path(name).stem
            gt_dir = root / cat / "ground_truth" / defect
            mask_file = next(p for p in gt_dir.iterdir() if p.stem in (stem, f"{stem}_mask"))
            gt = np.asarray(Image.open(mask_file)) > 0
        else:
            gt = np.zeros((h, w), bool)
        tp = int((pred & gt).sum())
        assert d["pixel"] == [
            tp,
            int(pred.sum()) - tp,
            int(gt.sum()) - tp,
            int((~pred & ~gt).sum()),
        ]
        expected.update(
            pred, gt, dataset=d["dataset"], category=d["category"], image_gt=d["gt_anomalous"]
        )
    report = json.loads((out / "report.json").read_text())
    _assert_rows_close(report["rows"], expected.results().to_dicts())
    assert {r["dataset"] for r in report["rows"] if r["scope"] == "dataset"} == {"MVTec-AD", "VisA"}

    skipped = {s["id"]: s for s in report["skipped"]}
    assert set(skipped) == {
        "mvtec:MVTec-AD/bottle/test/broken/001.png#defect",
        "mvtec:MVTec-AD/bottle/test/broken/002.png#defect",
        "mvtec:MVTec-AD/screw/test/scratch/001.png#defect",
    }
    assert "10x10" in skipped["mvtec:MVTec-AD/bottle/test/broken/001.png#defect"]["reason"]
    assert "missing mask" in skipped["mvtec:MVTec-AD/bottle/test/broken/002.png#defect"]["reason"]
    assert skipped["mvtec:MVTec-AD/screw/test/scratch/001.png#defect"]["kind"] == "image"

    # saved masks: the first image of each category, at the image's own size
    saved = sorted(p.relative_to(out).as_posix() for p in (out / "masks").rglob("*.png"))
    assert saved == [
        "masks/MVTec-AD/bottle/broken_000_mask.png",
        "masks/MVTec-AD/bottle/broken_000_overlay.png",
        "masks/MVTec-AD/screw/good_000_mask.png",
        "masks/MVTec-AD/screw/good_000_overlay.png",
        "masks/VisA/pcb1/bad_000_mask.png",
        "masks/VisA/pcb1/bad_000_overlay.png",
    ]
    m = np.asarray(Image.open(out / "masks/VisA/pcb1/bad_000_mask.png")) > 0
    np.testing.assert_array_equal(m, textmask.decode(SEG, 24, shape=(50, 70)))
    assert Image.open(out / "masks/VisA/pcb1/bad_000_overlay.png").size == (70, 50)
    for name in ("pr_MVTec-AD.png", "pr_VisA.png"):
        with Image.open(out / name) as im:
            assert im.size == (720, 640) and len(np.unique(np.asarray(im.convert("L")))) > 10
    md = (out / "report.md").read_text()
    for title in (
        "## Per dataset (Tables 3/4 layout)",
        "## Per category (Tables 10-17 layout)",
        "| Dataset | Category | Images | Pixel F1 | Pixel Acc | Image F1 | Image Acc |",
        "![MVTec-AD](pr_MVTec-AD.png)",
        "| MVTec-AD pixel F1 |",
        "## Skipped inputs (3)",
    ):
        assert title in md
    comp = {r["metric"]: r for r in report["paper_comparison"]}
    mv = next(r for r in report["rows"] if r["scope"] == "dataset" and r["dataset"] == "MVTec-AD")
    assert comp["MVTec-AD image F1"]["paper"] == 97.6
    assert comp["MVTec-AD pixel F1"]["difference"] == pytest.approx(mv["pixel_f1"] - 45.6)
    assert comp["Average (4 datasets) pixel F1"]["difference"] is None  # 2 of 4 datasets

    # the report can switch the image-level rule without re-running
    seg = build_report(out, image_decision="seg")
    assert seg["image_decision"] == "seg"
    assert json.loads((out / "report.json").read_text())["image_decision"] == "seg"


def _assert_rows_close(got, want) -> None:
    for g, w in zip(got, want, strict=True):
        for k, v in w.items():
            assert g[k] == (pytest.approx(v) if isinstance(v, float) else v), k


def test_detection_cli_one_shot_and_merge_flag(ckpt, mvtec_data, tmp_path, capsys):
    out = tmp_path / "det1"
    argv = [
        "--model",
        str(ckpt),
        "--root",
        f"VisA={mvtec_data['VisA']}",
        "--out",
        str(out),
        "--shots",
        "1",
        "--image_decision",
        "seg",
        "--max_new_tokens",
        "64",
        "--no_progress",
    ]
    assert detection_main(argv) == 0
    lines = read_jsonl(out / "results.jsonl")[0]
    assert len(lines) == 2 and all("/pcb1/train/good/" in d["reference"] for d in lines)
    assert json.loads((out / "report.json").read_text())["image_decision"] == "seg"
    capsys.readouterr()
    assert detection_main(["--merge", "--out", str(out), "--image_decision", "answer"]) == 0
    assert "image level from the answer" in capsys.readouterr().out


# --------------------------------------------------------------------------- arithmetic
def _run_dir(tmp_path: Path, kind: str, lines: list[dict], **fingerprint) -> Path:
    """A finished single-process run folder holding hand-made result lines."""
    out = tmp_path / kind
    out.mkdir()
    write_json(
        out / "run.json",
        {
            "format": RUN_FORMAT,
            "kind": kind,
            "num_shards": 1,
            "created": "x",
            "selection_sha256": "s",
            "fingerprint": {"shots": 0, **fingerprint},
            "config": {},
            "report_options": {},
        },
    )
    write_json(out / "done.rank0.json", {"n_items": len(lines), "selection_sha256": "s"})
    (out / "results.jsonl").write_text("".join(json.dumps(d) + "\n" for d in lines))
    return out


def _q(i, ds, qtype, gold, predicted, normal=False):
    return {
        "id": f"q{i}",
        "index": i,
        "status": "ok",
        "dataset": ds,
        "category": "c",
        "type": qtype,
        "normal": normal,
        "gold": gold,
        "predicted": predicted,
    }


def test_mmad_arithmetic_from_handmade_jsonl(tmp_path):
    lines = [
        # Defect Classification: exactly 3 of 4 right -> 75.0
        _q(0, "D", "Defect Classification", "A", "A"),
        _q(1, "D", "Defect Classification", "B", "B"),
        _q(2, "D", "Defect Classification", "C", "C"),
        _q(3, "D", "Defect Classification", "A", "D"),
        # discrimination: normal 1/2 = 50, abnormal 3/3 = 100 -> mean 75 (pooled would be 80)
        _q(4, "D", "Anomaly Detection", "B", "B", normal=True),
        _q(5, "D", "Anomaly Detection", "B", "A", normal=True),
        _q(6, "D", "Anomaly Detection", "A", "A"),
        _q(7, "D", "Anomaly Detection", "A", "A"),
        _q(8, "D", "Anomaly Detection", "A", "A"),
        # unanswerable: wrong by default, dropped in the variant
        _q(9, "D", "Object Details", "A", None),
        _q(10, "D", "Object Structure", "A", "A"),
        # a second dataset; the overall row is the mean over datasets
        _q(11, "E", "Defect Classification", "A", "A"),
        {
            "id": "s0",
            "index": 12,
            "status": "skipped",
            "dataset": "E",
            "category": "c",
            "skip_kind": "image",
            "reason": "cannot read",
        },
    ]
    m = mmad_meter(lines).results()
    d = m.dataset("D")
    assert d["Defect Classification"] == 75.0
    assert (d.normal_acc, d.abnormal_acc, d["Anomaly Discrimination"]) == (50.0, 100.0, 75.0)
    assert d["Object Analysis"] == 50.0
    assert mmad_meter(lines).results(unanswerable="drop").dataset("D")["Object Analysis"] == 100.0
    assert m.overall["Defect Classification"] == (75.0 + 100.0) / 2

    out = _run_dir(tmp_path, "mmad", lines)
    report = build_report(out, compare_paper=True)
    rows = {r["dataset"] or "overall": r for r in report["accuracy"]["rows"]}
    assert rows["D"]["Defect Classification"] == 75.0
    assert rows["D"]["average"] == pytest.approx((75 + 75 + 50) / 3)
    assert report["counts"] == {"answered": 12, "unanswerable": 1, "skipped": 1, "lines": 13}
    comp = {r["metric"]: r for r in report["paper_comparison"]}
    assert comp["Defect Classification"]["paper"] == 67.8
    assert comp["Defect Classification"]["difference"] == pytest.approx(87.5 - 67.8)
    md = (out / "report.md").read_text()
    assert "| D | 75.0 | 75.0 | - | - | - | - | 50.0 | 66.7 |" in md
    assert "| D | 75.0 | 75.0 | - | - | - | - | 100.0 | 83.3 |" in md  # dropped variant


def _det_line(i, ds, cat, pred, gt, answer, gt_anomalous=None):
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    tp = int((pred & gt).sum())
    return {
        "id": f"d{i}",
        "index": i,
        "status": "ok",
        "dataset": ds,
        "category": cat,
        "gt_anomalous": bool(gt.any()) if gt_anomalous is None else gt_anomalous,
        "predicted": answer,
        "answer_anomalous": None if answer is None else answer == "A",
        "seg_anomalous": bool(pred.any()),
        "pixel": [tp, int(pred.sum()) - tp, int(gt.sum()) - tp, int((~pred & ~gt).sum())],
    }


def test_detection_arithmetic_from_handmade_masks(tmp_path):
    z = np.zeros((4, 4), bool)
    gt1 = z.copy()
    gt1[0, :2] = True  # 2 pixels
    p1 = z.copy()
    p1[0, 1:3] = True  # 1 hit, 1 false alarm
    p2 = z.copy()
    p2[3, 3] = True  # a false alarm on a normal image
    lines = [
        _det_line(0, "DS", "a", p1, gt1, "A"),  # TP at image level either way
        _det_line(1, "DS", "a", p2, z, "B"),  # answer: TN; seg: FP
        _det_line(2, "DS", "b", z, gt1, None),  # unreadable answer: wrong (FN); seg: FN
        _det_line(3, "DS", "b", z, z, "B"),  # TN either way
    ]
    ans = detection_meter(lines, "answer").results()
    a = ans.category("DS", "a")
    # pixels of a: tp 1, fp 1 + 1, fn 1, tn 14 + 15 -> F1 = 2 / (2 + 2 + 1) = 40 %
    assert (a.pixel.tp, a.pixel.fp, a.pixel.fn, a.pixel.tn) == (1, 2, 1, 28)
    assert a.pixel_f1 == pytest.approx(40.0) and a.pixel_acc == pytest.approx(29 / 32 * 100)
    assert (a.image_f1, a.image_acc) == (100.0, 100.0)
    b = ans.category("DS", "b")
    assert (b.image.fn, b.image.tn) == (1, 1) and b.image_f1 == 0.0 and b.image_acc == 50.0
    ds = ans.dataset("DS")
    assert ds.image_acc == 75.0 and ds.pixel_f1 == pytest.approx((40.0 + 0.0) / 2)
    seg = detection_meter(lines, "seg").results().category("DS", "a")
    assert (seg.image.tp, seg.image.fp) == (1, 1) and seg.image_acc == 50.0

    out = _run_dir(tmp_path, "detection", lines)
    report = build_report(out, image_decision="answer", compare_paper=True)
    row = next(r for r in report["rows"] if r["scope"] == "category" and r["category"] == "a")
    assert row["pixel_f1"] == pytest.approx(40.0)
    assert report["counts"]["unanswerable"] == 1
    assert (out / "pr_DS.png").is_file()
    assert "| DS | a | 2 | 40.0 | 90.6 | 100.0 | 100.0 |" in (out / "report.md").read_text()


def test_paper_numbers_are_the_spec_numbers():
    p = load_paper_numbers()
    assert p["mmad"]["0"]["average"] == 79.1 and p["mmad"]["1"]["average"] == 79.9
    types = p["mmad"]["0"]["types"]
    assert list(types.values()) == [61.4, 67.8, 73.5, 81.7, 87.5, 95.2, 86.9]
    assert round(sum(types.values()) / 7, 1) == 79.1
    assert p["detection"]["0"]["datasets"] == {
        "MVTec-AD": {"pixel_f1": 45.6, "pixel_acc": 96.9, "image_f1": 97.6, "image_acc": 96.5}
    }
    avg = p["detection"]["0"]["average"]
    assert (avg["pixel_f1"], avg["pixel_acc"], avg["image_f1"], avg["image_acc"]) == (
        23.3,
        95.9,
        92.2,
        90.1,
    )
    assert set(p["mmad"]["1"]["types"]) == set() and "1" not in p["detection"]


# --------------------------------------------------------------------------- run log
def test_runlog_repairs_truncated_and_corrupt_lines(tmp_path):
    path = tmp_path / "r.jsonl"
    with RunLog(path) as log:
        log.append([{"id": "a", "v": 1}, {"id": "b", "v": 2}])
        with pytest.raises(ValueError, match="already"):
            log.append([{"id": "a"}])
        with pytest.raises(RunLogLockedError):
            RunLog(path).open()  # a second writer is refused
    with path.open("ab") as f:
        f.write(b'garbage\n{"id": "a", "v": 9}\n{"id": "c", "v"')  # corrupt, repeated, partial
    with RunLog(path) as log:
        assert set(log.done) == {"a", "b"} and log.done["a"]["v"] == 1
        assert log.repair.partial_last_line and log.repair.corrupt_lines == (3,)
        assert log.repair.duplicate_ids == ("a",)
        log.append([{"id": "c", "v": 3}])
    assert [json.loads(x)["id"] for x in path.read_text().splitlines()] == ["a", "b", "c"]
    with path.open("ab") as f:
        f.write(b'{"id": "d"}')  # complete but unterminated: kept
    with RunLog(path) as log:
        assert set(log.done) == {"a", "b", "c", "d"} and log.repair.clean
        assert log.discard(["b", "zz"]) == 1
        log.append([{"id": "b", "v": 4}])
        assert log.sort(key=lambda d: d["id"]) and not log.sort(key=lambda d: d["id"])
    assert [json.loads(x) for x in path.read_text().splitlines()] == [
        {"id": "a", "v": 1},
        {"id": "b", "v": 4},
        {"id": "c", "v": 3},
        {"id": "d"},
    ]


def test_import_leaves_torch_out():
    code = "import sys, omniad_train.evaluation; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr


def test_shard_helpers(monkeypatch):
    assert shard_slice(list(range(7)), 0, 2) == [0, 2, 4, 6]
    assert resolve_shard(1, 3) == (1, 3)
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert resolve_shard() == (3, 4)
    with pytest.raises(ValueError):
        resolve_shard(2, 2)
    with pytest.raises(ValueError):
        resolve_shard(0, None)


def test_stale_done_markers_do_not_count(tmp_path):
    from omniad_train.evaluation import shard_status

    out = _run_dir(tmp_path, "mmad", [])
    run = json.loads((out / "run.json").read_text())
    write_json(out / "run.json", {**run, "num_shards": 2})
    write_json(out / "done.rank1.json", {"n_items": 3, "selection_sha256": "an older selection"})
    assert shard_status(out)[0] == [1]
    with pytest.raises(IncompleteRunError):
        build_report(out)
    write_json(out / "done.rank1.json", {"n_items": 3, "selection_sha256": "s"})
    assert shard_status(out)[0] == []


# --------------------------------------------------------------------------- scale
def test_two_shards_merge_to_the_single_run(
    inspector, mmad_data, single_mmad, tmp_path, monkeypatch
):
    out = tmp_path / "sharded"
    first = run_mmad(
        inspector,
        mmad_data / "mmad.json",
        out=out,
        shard_index=0,
        num_shards=2,
        batch_size=3,
        compare_paper=True,
        progress=False,
    )
    assert not first.complete and first.results.name == "results.rank0.jsonl"
    with pytest.raises(IncompleteRunError, match=r"\[1\]"):
        merge_shards(out)
    assert mmad_main(["--merge", "--out", str(out)]) == 1
    monkeypatch.setenv("RANK", "1")  # the second shard as torchrun would start it
    monkeypatch.setenv("WORLD_SIZE", "2")
    second = run_mmad(
        inspector,
        mmad_data / "mmad.json",
        out=out,
        batch_size=5,
        compare_paper=True,
        progress=False,
    )
    assert second.shard == (1, 2) and second.complete
    a = {d["id"] for d in read_jsonl(first.results)[0]}
    b = {d["id"] for d in read_jsonl(second.results)[0]}
    assert a and b and not a & b
    merged = read_jsonl(out / "results.jsonl")[0]
    single = read_jsonl(single_mmad.out_dir / "results.jsonl")[0]
    assert [d["id"] for d in merged] == [d["id"] for d in single]  # same order too
    assert _strip(merged) == _strip(single)
    r1 = json.loads((out / "report.json").read_text())
    r0 = json.loads((single_mmad.out_dir / "report.json").read_text())
    for key in ("accuracy", "accuracy_dropped", "counts", "skipped", "meter_state"):
        assert r1[key] == r0[key], key


_DRIVER = """
import sys, time
import torch
torch.set_num_threads(1)
from omniad_core import Inspector
from omniad_train.evaluation import run_mmad

ckpt, mmad_json, out = sys.argv[1:4]
insp = Inspector.from_pretrained(ckpt, max_new_tokens=64)
generate = insp.analyze_batch

def slow(*args, **kwargs):  # slow enough to be killed mid-run
    time.sleep(0.4)
    return generate(*args, **kwargs)

insp.analyze_batch = slow
run_mmad(insp, mmad_json, out=out, batch_size=2, progress=False)
"""


@pytest.mark.slow
def test_killed_run_resumes_without_duplicates(ckpt, mmad_data, single_mmad, tmp_path):
    out = tmp_path / "killed"
    results = out / "results.jsonl"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen(
        [sys.executable, "-c", _DRIVER, str(ckpt), str(mmad_data / "mmad.json"), str(out)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if results.is_file() and len(results.read_bytes().splitlines()) >= 3:
                break
            if proc.poll() is not None:
                pytest.fail(f"the run ended before it was killed: {proc.stderr.read().decode()}")
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    n_before = len(results.read_bytes().splitlines())
    assert 3 <= n_before < N_MMAD_QUESTIONS
    assert not (out / "report.json").exists()
    with results.open("ab") as f:  # as if killed in the middle of writing a line
        f.write(b'{"id": "mmad:Beta/pcb/test/good/003.png#0", "index": 9, "sta')

    cli = [
        sys.executable,
        str(REPO / "benchmarks" / "run_mmad.py"),
        "--model",
        str(ckpt),
        "--mmad_json",
        str(mmad_data / "mmad.json"),
        "--out",
        str(out),
        "--batch_size",
        "3",
        "--max_new_tokens",
        "64",
        "--no_progress",
    ]
    done = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "partial last line" in done.stderr and "| Alpha |" in done.stdout
    ids = [json.loads(x)["id"] for x in results.read_text().splitlines()]
    assert len(ids) == len(set(ids)) == N_MMAD_QUESTIONS  # each question exactly once
    single = read_jsonl(single_mmad.out_dir / "results.jsonl")[0]
    assert _strip(read_jsonl(results)[0]) == _strip(single)
    r1 = json.loads((out / "report.json").read_text())
    r0 = json.loads((single_mmad.out_dir / "report.json").read_text())
    for key in ("accuracy", "accuracy_dropped", "counts", "skipped"):
        assert r1[key] == r0[key], key
    assert not math.isnan(r1["accuracy"]["rows"][-1]["average"])


# --------------------------------------------------------------------------- comparability
def _with_config(out: Path, **config) -> Path:
    run = json.loads((out / "run.json").read_text())
    run["config"] = config
    write_json(out / "run.json", run)
    return out


def test_a_subset_detection_run_is_marked_not_comparable_in_the_table(tmp_path):
    """Issue 15 item 10: a one-category, six-image run printed the paper's 15-category
    MVTec-AD figures next to its own with an empty note."""
    z = np.zeros((4, 4), bool)
    gt = z.copy()
    gt[0, :2] = True
    lines = [_det_line(i, "MVTec-AD", "bottle", gt, gt if i % 2 else z, "A") for i in range(6)]
    out = _with_config(_run_dir(tmp_path, "detection", lines), limit=6)
    report = build_report(out, compare_paper=True)
    rows = {r["metric"]: r for r in report["paper_comparison"]}
    for label in ("pixel F1", "pixel Acc", "image F1", "image Acc"):
        row = rows[f"MVTec-AD {label}"]
        assert row["comparable"] is False
        assert row["not_comparable"] == [
            "--limit 6 (the first 6 items only)",
            "1 of 15 MVTec-AD categories",
        ]
    assert rows["Average (4 datasets) pixel F1"]["comparable"] is False
    md = (out / "report.md").read_text()
    table = md.split("## Comparison with the paper", 1)[1]
    marker = "**not comparable**: --limit 6 (the first 6 items only); 1 of 15 MVTec-AD categories"
    assert "| MVTec-AD pixel F1 | " in table and table.count(marker) >= 4
    assert "**Not comparable**: this run is not the whole of the paper's test sets" in table


def test_a_full_dataset_detection_run_is_comparable(tmp_path):
    z = np.zeros((4, 4), bool)
    cats = [f"c{k:02d}" for k in range(15)]
    lines = [_det_line(i, "mvtec_ad", c, z, z, "B") for i, c in enumerate(cats)]
    out = _run_dir(tmp_path, "detection", lines)
    report = build_report(out, compare_paper=True)
    rows = {r["metric"]: r for r in report["paper_comparison"]}
    assert rows["MVTec-AD image Acc"]["comparable"] is True
    assert rows["MVTec-AD image Acc"]["not_comparable"] == []
    assert rows["Average (4 datasets) image Acc"]["comparable"] is False  # 1 of 4 datasets
    md = (out / "report.md").read_text()
    assert "| MVTec-AD image Acc | 100.0 | 96.5 | +3.5 |  | yes |" in md
    assert "Not comparable" not in md


def _all_mmad_types(i0, ds):
    types = [
        "Defect Classification",
        "Defect Localization",
        "Defect Description",
        "Defect Analysis",
        "Object Classification",
        "Object Structure",
    ]
    qs = [_q(i0 + k, ds, t, "A", "A") for k, t in enumerate(types)]
    qs.append(_q(i0 + 6, ds, "Anomaly Detection", "A", "A"))
    qs.append(_q(i0 + 7, ds, "Anomaly Detection", "B", "B", normal=True))
    return qs


def test_mmad_comparability_follows_selection_and_datasets(tmp_path):
    full = [q for k, ds in enumerate(MMAD_DATASETS) for q in _all_mmad_types(8 * k, ds)]
    (tmp_path / "a").mkdir()
    out = _run_dir(tmp_path / "a", "mmad", full)
    report = build_report(out, compare_paper=True)
    rows = {r["metric"]: r for r in report["paper_comparison"]}
    assert rows["Average"]["comparable"] is True and rows["Average"]["difference"] is not None
    assert "Not comparable" not in (out / "report.md").read_text()

    (tmp_path / "b").mkdir()
    one = _all_mmad_types(0, "MVTec-AD")
    out = _with_config(
        _run_dir(tmp_path / "b", "mmad", one),
        categories=["bottle"],
        protocol={"split": "holdout", "holdout_fraction": 0.8},
    )
    report = build_report(out, compare_paper=True)
    for row in report["paper_comparison"]:
        assert row["comparable"] in (False, None)
        if row["comparable"] is False:
            assert row["not_comparable"] == [
                "--categories bottle",
                "held-out split (80% of the images)",
                "1 of 5 MMAD datasets (MVTec-AD)",
            ]
    md = (out / "report.md").read_text()
    assert "| Average | 100.0 | 79.1 | +20.9 |  | **not comparable**: --categories bottle" in md


def test_subset_reasons_name_every_kind_of_subset():
    assert subset_reasons({"complete": True}) == []
    assert subset_reasons(
        {
            "limit_per_category": 2,
            "complete": False,
            "missing_shards": [1, 3],
            "protocol": {"split": "file", "exclude_training": [{"path": "p"}]},
        }
    ) == [
        "--limit_per_category 2",
        "a split file's images only",
        "training images left out",
        "partial run (shards 1, 3 missing)",
    ]
    assert mmad_dataset_reasons(MMAD_DATASETS) == []
    assert mmad_dataset_reasons([*MMAD_DATASETS, "Mine"]) == ["datasets not in MMAD: Mine"]
