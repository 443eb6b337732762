"""Data preparation: readers, records, templates, ``prepare`` and ``omniad-train prepare``.

All inputs are built in ``tmp_path`` with NumPy and PIL: an MVTec-style tree (two
categories, good and two defect types each, MVTec ``_mask.png`` masks, a LOCO-style mask
folder, a VisA-style mask suffix, a missing mask, a mask of the wrong size, an
unreadable image), an MMAD-style ``mmad.json`` and a generic JSONL.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from qwen_template import qwen_template

import textmask
from omniad_core import SYSTEM_PROMPT, make_rewards, parse_response
from omniad_core.metrics import MMAD_TYPES
from omniad_core.prompts import REFERENCE_PREFIX
from omniad_train.data import (
    REGIONS,
    PrepareError,
    Record,
    Reject,
    build_parser,
    describe_mask,
    iter_jsonl,
    iter_mmad,
    iter_mvtec,
    output,
    prepare,
    prepare_main,
    region_of,
    template_reasoning,
)
from omniad_train.data import cache as cache_module

# the package attribute ``prepare`` is the function; the module is reached this way
prepare_module = importlib.import_module("omniad_train.data.prepare")

datasets = pytest.importorskip("datasets")

IMG = 48  # image_size used in the tests (small: fast)
VISION = "<|vision_start|><|image_pad|><|vision_end|>"


# --------------------------------------------------------------------------- builders
def _image(path: Path, h: int, w: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    Image.fromarray(arr).save(path)
    return path


def _mask(path: Path, h: int, w: int, box: tuple[int, int, int, int], rgb: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    m = np.zeros((h, w), np.uint8)
    y0, y1, x0, x1 = box
    m[y0:y1, x0:x1] = 255
    if rgb:  # MMAD's coloured masks
        m = np.stack([m, np.zeros_like(m), m // 2], axis=2)
    Image.fromarray(m).save(path)
    return path


def build_mvtec(root: Path) -> Path:
    """widget (60x80): good x2, scratch (ok, missing mask, wrong-size mask), hole (LOCO
    folder, unreadable image); gadget (72x72): good, crack (VisA suffix, JPG), dent."""
    w = root / "widget"
    for k in range(2):
        _image(w / "train" / "good" / f"{k:03d}.png", 60, 80, 10 + k)
        _image(w / "test" / "good" / f"{k:03d}.png", 60, 80, 20 + k)
    for k in range(3):
        _image(w / "test" / "scratch" / f"{k:03d}.png", 60, 80, 30 + k)
    _mask(w / "ground_truth" / "scratch" / "000_mask.png", 60, 80, (2, 5, 10, 70))  # thin, top
    _mask(w / "ground_truth" / "scratch" / "002_mask.png", 30, 40, (2, 5, 10, 30))  # wrong size
    _image(w / "test" / "hole" / "000.png", 60, 80, 40)
    _mask(w / "ground_truth" / "hole" / "000" / "000.png", 60, 80, (40, 50, 5, 15))
    _mask(w / "ground_truth" / "hole" / "000" / "001.png", 60, 80, (45, 58, 8, 20))
    (w / "test" / "hole" / "001.png").write_bytes(b"this is not a png")
    _mask(w / "ground_truth" / "hole" / "001_mask.png", 60, 80, (0, 10, 0, 10))
    g = root / "gadget"
    _image(g / "train" / "good" / "000.png", 72, 72, 50)
    _image(g / "test" / "good" / "000.png", 72, 72, 51)
    _image(g / "test" / "crack" / "000.JPG", 72, 72, 52)
    _mask(g / "ground_truth" / "crack" / "000.png", 72, 72, (30, 42, 30, 42))  # center
    _image(g / "test" / "dent" / "000.png", 72, 72, 53)
    _mask(g / "ground_truth" / "dent" / "000_mask.png", 72, 72, (50, 70, 50, 70))  # right bottom
    return root


MVTEC_ROWS, MVTEC_REJECTS = 11, 5


def build_mmad(root: Path) -> Path:
    bottle = "DS-MVTec/bottle"
    _image(root / bottle / "image" / "good" / "000.png", 64, 64, 60)
    _image(root / bottle / "image" / "broken" / "000.png", 64, 64, 61)
    _image(root / bottle / "image" / "broken" / "001.png", 64, 64, 62)
    _mask(
        root / bottle / "rbg_mask" / "broken" / "000_rbg_mask.png",
        64,
        64,
        (5, 20, 40, 60),
        rgb=True,
    )
    _mask(root / bottle / "rbg_mask" / "broken" / "001_rbg_mask.png", 64, 64, (40, 60, 2, 20))
    _image(root / bottle / "template" / "t1.png", 64, 64, 63)
    _image(root / bottle / "template" / "t2.png", 64, 64, 64)
    yes_no = {"A": "Yes", "B": "No"}
    four = {"A": "crack", "B": "scratch", "C": "broken", "D": "contamination"}
    templates = {
        "similar_templates": [f"{bottle}/template/t1.png", f"{bottle}/template/t2.png"],
        "random_templates": [f"{bottle}/template/t2.png"],
    }

    def q(text: str, answer: str, options: dict | None, type_: str) -> dict:
        out = {"Question": text, "Answer": answer, "type": type_}
        if options is not None:
            out["Options"] = options
        return out

    data = {
        f"{bottle}/image/good/000.png": {
            "conversation": [
                q("Is there any defect in the object?", "B", yes_no, "Anomaly Detection"),
                q(
                    "What is this object?",
                    "A",
                    {"A": "bottle", "B": "cable"},
                    "Object Classification",
                ),
                q("Is the bottle round?", "A", yes_no, "Object Structure"),
            ],
            "mask_path": "",
            **templates,
        },
        f"{bottle}/image/broken/000.png": {
            "conversation": [
                q("Is there any defect in the object?", "A", yes_no, "Anomaly Detection"),
                q("What kind of defect?", "C", four, "Defect Classification"),
                q("Where is the defect?", "E", four, "Defect Localization"),  # bad letter
                q("Describe the defect.", "A", None, "Defect Description"),  # no options
                q("What colour is the cap?", "B", {"A": "red", "B": "white"}, "Object Details"),
                q("Which colour?", "A", yes_no, "Defect Colour"),  # unknown type
            ],
            "mask_path": f"{bottle}/rbg_mask/broken/000_rbg_mask.png",
            **templates,
        },
        f"{bottle}/image/broken/001.png": {  # mask_path relative to <dataset>/<category>
            "conversation": [
                q("Is there any defect in the object?", "A", yes_no, "Anomaly Detection")
            ],
            "mask_path": "rbg_mask/broken/001_rbg_mask.png",
            **templates,
        },
        f"{bottle}/image/broken/002.png": {  # the image is missing
            "conversation": [
                q("Is there any defect in the object?", "A", yes_no, "Anomaly Detection")
            ],
            "mask_path": f"{bottle}/rbg_mask/broken/000_rbg_mask.png",
            **templates,
        },
    }
    path = root / "mmad.json"
    path.write_text(json.dumps(data))
    return path


MMAD_ROWS, MMAD_REJECTS = 7, 4


def build_jsonl(root: Path) -> Path:
    _image(root / "img" / "a.png", 40, 50, 70)
    _mask(root / "img" / "a_mask.png", 40, 50, (30, 38, 35, 48))
    _image(root / "img" / "b.png", 40, 50, 71)
    _image(root / "img" / "ref.png", 40, 50, 72)
    lines = [
        {
            "id": "j1",
            "image": "img/a.png",
            "mask": "img/a_mask.png",
            "question": "How would you describe the defect?",
            "options": {"A": "a dark stain", "B": "a missing part"},
            "answer": "A",
            "reasoning": "There is a dark stain near the right bottom edge.",
            "type": "Defect Description",
            "category": "cable",
            "dataset": "custom",
            "reference": "img/ref.png",
        },
        {
            "image": "img/b.png",
            "question": "Is there any defect in the object?",
            "options": ["Yes", "No"],
            "answer": "b",
            "category": "cable",
        },
        {"image": "img/missing.png", "question": "Q?", "options": ["Yes", "No"], "answer": "A"},
    ]
    path = root / "records.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


JSONL_ROWS, JSONL_REJECTS = 2, 1


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    base = tmp_path_factory.mktemp("inputs")
    return {
        "mvtec_root": build_mvtec(base / "mvtec"),
        "mmad_json": build_mmad(base / "mmad"),
        "jsonl": build_jsonl(base / "extra"),
    }


#: The question types MVTec-style folders had before all five template types existed; the
#: counts of these tests are of those (tests/test_templates.py covers the other types).
LEGACY_TYPES = ("Anomaly Discrimination", "Defect Localization")


def _run(out: Path, inputs: dict, **kw) -> prepare_module.PrepareResult:
    args = {**inputs, "image_size": IMG, "verbose": False, "question_types": LEGACY_TYPES, **kw}
    return prepare(out, **args)


@pytest.fixture(scope="module")
def full(inputs, tmp_path_factory):
    """All three sources, 0-shot, a test split."""
    out = tmp_path_factory.mktemp("full") / "out"
    result = _run(out, inputs, eval_fraction=0.3)
    return out, result


@pytest.fixture(scope="module")
def one_shot(inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("oneshot") / "out"
    return out, _run(out, inputs, shots=1)


def _load(out: Path, kind: str):
    return datasets.load_from_disk(str(out / kind))


def _rows(out: Path, kind: str) -> list[dict]:
    dd = _load(out, kind)
    return [r for split in dd for r in dd[split]]


def _raw(out: Path, kind: str) -> dict:
    """Every split as a plain dict of columns, images as undecoded bytes."""
    dd = _load(out, kind)
    res = {}
    for split, ds in dd.items():
        ds = ds.cast_column("images", datasets.List(datasets.Image(decode=False)))
        ds = ds.cast_column("mask", datasets.Image(decode=False))
        res[split] = ds.to_dict()
    return res


def _by_id(rows: list[dict]) -> dict[str, dict]:
    return {r["id"]: r for r in rows}


MV = "mvtec:mvtec"  # id prefix of the MVTec-style tree (dataset name = folder name)


# --------------------------------------------------------------------------- readers
def test_mvtec_reader_finds_every_mask_layout_and_rejects_missing_masks(inputs):
    items = list(iter_mvtec(inputs["mvtec_root"], seed=0))
    recs = _by_id([r.model_dump() for r in items if isinstance(r, Record)])
    rejects = [r for r in items if isinstance(r, Reject)]
    # good 2+1, defects with masks: widget scratch 000, 002, hole 000, 001; gadget crack, dent
    assert len(recs) == 3 + 2 * 6
    assert len(rejects) == 1
    assert rejects[0].record == "widget/test/scratch/001.png"
    assert "widget/ground_truth/scratch/001_mask.png" in rejects[0].reason
    assert "add the mask" in rejects[0].reason
    loco = recs[f"{MV}/widget/test/hole/000.png#defect"]
    assert Path(loco["mask"]).is_dir() and loco["anomalous"] and loco["answer"] == "A"
    visa = recs[f"{MV}/gadget/test/crack/000.JPG#defect"]
    assert visa["mask"].endswith("ground_truth/crack/000.png")
    good = recs[f"{MV}/widget/test/good/000.png#defect"]
    assert (
        good["mask"] is None
        and good["answer"] == "B"
        and good["options"] == {"A": "Yes", "B": "No"}
    )
    assert good["type"] == "Anomaly Discrimination" and good["category"] == "widget"
    assert good["reference"][0].startswith(str(inputs["mvtec_root"] / "widget" / "train" / "good"))
    expected = {
        "widget/test/scratch/000.png": "top",
        "widget/test/hole/000.png": "left bottom",
        "gadget/test/crack/000.JPG": "center",
        "gadget/test/dent/000.png": "right bottom",
    }
    for rel, region in expected.items():
        loc = recs[f"{MV}/{rel}#location"]
        assert loc["type"] == "Defect Localization" and len(loc["options"]) == 4
        assert loc["options"][loc["answer"]] == region
        assert set(loc["options"].values()) <= set(REGIONS)
    again = list(iter_mvtec(inputs["mvtec_root"], seed=0))
    assert [r.model_dump() for r in again] == [r.model_dump() for r in items]
    other = {r.id: r for r in iter_mvtec(inputs["mvtec_root"], seed=1) if isinstance(r, Record)}
    assert any(other[k].options != recs[k]["options"] for k in recs if k.endswith("#location"))
    no_loc = [r for r in iter_mvtec(inputs["mvtec_root"], location_questions=False)]
    assert sum(isinstance(r, Record) for r in no_loc) == 3 + 6


def test_mmad_reader_normalises_types_and_rejects_bad_questions(inputs):
    items = list(iter_mmad(inputs["mmad_json"]))
    recs = _by_id([r.model_dump() for r in items if isinstance(r, Record)])
    rejects = {r.record: r.reason for r in items if isinstance(r, Reject)}
    assert len(recs) == MMAD_ROWS and len(rejects) == MMAD_REJECTS
    good = "mmad:DS-MVTec/bottle/image/good/000.png"
    assert recs[f"{good}#0"]["type"] == "Anomaly Discrimination"  # raw "Anomaly Detection"
    assert recs[f"{good}#2"]["type"] == "Object Analysis"  # raw "Object Structure"
    assert not recs[f"{good}#0"]["anomalous"] and recs[f"{good}#0"]["mask"] is None
    broken = "mmad:DS-MVTec/bottle/image/broken/000.png"
    assert recs[f"{broken}#4"]["type"] == "Object Analysis"  # raw "Object Details"
    assert recs[f"{broken}#0"]["anomalous"] and recs[f"{broken}#0"]["dataset"] == "DS-MVTec"
    assert recs[f"{broken}#1"]["category"] == "bottle"
    # a mask_path relative to <dataset>/<category> is found too
    assert recs["mmad:DS-MVTec/bottle/image/broken/001.png#0"]["mask"].endswith(
        "DS-MVTec/bottle/rbg_mask/broken/001_rbg_mask.png"
    )
    assert recs[f"{good}#0"]["reference"][0].endswith("template/t1.png")
    assert "answer 'E'" in rejects["DS-MVTec/bottle/image/broken/000.png#2"]
    assert "no options" in rejects["DS-MVTec/bottle/image/broken/000.png#3"]
    assert (
        "unknown question type 'Defect Colour'" in rejects["DS-MVTec/bottle/image/broken/000.png#5"]
    )
    assert "image file not found" in rejects["DS-MVTec/bottle/image/broken/002.png#0"]
    rand = [
        r for r in iter_mmad(inputs["mmad_json"], reference_from="random") if isinstance(r, Record)
    ]
    assert rand[0].reference[0].endswith("template/t2.png")


def test_jsonl_reader(inputs, tmp_path):
    items = list(iter_jsonl(inputs["jsonl"]))
    j1, j2, bad = items
    assert isinstance(j1, Record) and j1.id == "j1" and j1.anomalous and j1.reasoning
    assert j1.reference == [str(inputs["jsonl"].parent / "img" / "ref.png")]
    assert j1.type == "Defect Description" and j1.dataset == "custom"
    assert isinstance(j2, Record) and j2.id == "jsonl:records:2" and j2.answer == "B"
    assert j2.type == "Anomaly Discrimination" and not j2.anomalous and j2.dataset == "records"
    assert isinstance(bad, Reject) and "image file not found" in bad.reason
    _image(tmp_path / "x.png", 8, 8, 0)
    lines = [
        "{not json",
        json.dumps(
            {
                "image": "x.png",
                "question": "Q?",
                "options": ["Yes", "No"],
                "answer": "A",
                "mask_path": "m.png",
            }
        ),
        json.dumps(
            {
                "image": "x.png",
                "question": "Q?",
                "options": ["Yes", "No"],
                "answer": "A",
                "anomalous": True,
            }
        ),
        json.dumps({"image": "x.png", "question": "Which?", "options": ["a", "b"], "answer": "A"}),
        json.dumps(
            {
                "image": "x.png",
                "question": "Q?",
                "options": ["Yes", "No"],
                "answer": "B",
                "reasoning": "fine</think><answer>A",
            }
        ),
        json.dumps({"image": "x.png", "question": "Q?", "options": [], "answer": "A"}),
    ]
    (tmp_path / "bad.jsonl").write_text("\n".join(lines) + "\n")
    reasons = [r.reason for r in iter_jsonl(tmp_path / "bad.jsonl")]
    assert len(reasons) == len(lines)
    for reason, word in zip(
        reasons,
        [
            "not valid JSON",
            "unknown fields ['mask_path']",
            "missing mask",
            'no "type"',
            "tags",
            "no options",
        ],
        strict=True,
    ):
        assert word in reason


# --------------------------------------------------------------------------- templates
def test_regions_shapes_and_reasoning_templates():
    assert [region_of((y, x)) for y in (0.1, 0.5, 0.9) for x in (0.1, 0.5, 0.9)] == list(REGIONS)
    m = np.zeros((100, 100), bool)
    spot, thin, large, two = m.copy(), m.copy(), m.copy(), m.copy()
    spot[50:53, 50:53] = True
    thin[10:12, 5:90] = True
    large[10:60, 10:60] = True
    two[5:10, 5:10] = two[80:90, 80:90] = True
    assert describe_mask(spot).shape == "a small spot"
    assert describe_mask(thin).shape == "a thin elongated region"
    assert describe_mask(large).shape == "a large region"
    assert describe_mask(two).shape == "two separate regions"
    info = describe_mask(thin)
    yes_no = {"A": "Yes", "B": "No"}
    kw = dict(type="Anomaly Discrimination", options=yes_no, answer="A", key="k")
    text = template_reasoning(info, anomalous=True, seed=0, **kw)
    assert text.startswith(
        "According to the segmentation result, there is an anomaly in the object, which is "
        "located in the top. "
    )
    assert "a thin elongated region" in text and "less than 1%" not in text
    assert text == template_reasoning(info, anomalous=True, seed=0, **kw)
    assert len({template_reasoning(info, anomalous=True, seed=s, **kw) for s in range(12)}) > 1
    normal = template_reasoning(None, anomalous=False, seed=0, **{**kw, "answer": "B"})
    assert normal.startswith(
        "According to the segmentation result, there is no anomaly in the object."
    )


# --------------------------------------------------------------------------- prepare
def test_prepare_counts_rejects_and_manifest(full):
    out, res = full
    assert res.n_records == MVTEC_ROWS + MMAD_ROWS + JSONL_ROWS
    assert res.n_rejects == MVTEC_REJECTS + MMAD_REJECTS + JSONL_REJECTS
    assert sum(res.splits.values()) == res.n_records and set(res.splits) == {"train", "test"}
    rejects = [json.loads(x) for x in (out / "rejects.jsonl").read_text().splitlines()]
    assert len(rejects) == res.n_rejects
    assert all(set(r) == {"source", "record", "reason"} for r in rejects)
    text = "\n".join(r["reason"] for r in rejects)
    for word in [
        "missing mask",
        "unreadable image",
        "is 30x40 (H x W) but the image is 60x80",
        "answer 'E'",
        "no options",
        "unknown question type",
        "image file not found",
    ]:
        assert word in text
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["textmask"] == textmask.Grid(24).to_dict()
    assert manifest["image_size"] == IMG and manifest["shots"] == 0
    assert manifest["system_prompt"] == SYSTEM_PROMPT
    assert manifest["system_prompt_sha256"] == hashlib.sha256(SYSTEM_PROMPT.encode()).hexdigest()
    assert manifest["n_rejects"] == res.n_rejects and manifest["n_records"] == res.n_records
    assert [s["kind"] for s in manifest["sources"]] == ["mmad", "mvtec", "jsonl"]
    assert manifest["omniad_version"] and manifest["created"]
    for kind in ("sft", "grpo"):
        c = manifest["counts"][kind]
        assert c["total"]["rows"] == res.n_records
        assert sum(c["total"]["by_type"].values()) == res.n_records
        assert set(c["total"]["by_type"]) <= set(MMAD_TYPES)
        assert c["total"]["by_dataset"] == {"DS-MVTec": 7, "custom": 1, "mvtec": 11, "records": 1}
        assert c["total"]["by_category"]["mvtec/gadget"] == 5
        assert {k: v["rows"] for k, v in c["splits"].items()} == res.splits
        loaded = _load(out, kind)
        assert {k: len(v) for k, v in loaded.items()} == res.splits


def test_columns_and_feature_types(full):
    out, _ = full
    text = datasets.Value("string")
    messages = datasets.List({"role": text, "content": datasets.List({"type": text, "text": text})})
    expected = {
        "id": text,
        "prompt": messages,
        "images": datasets.List(datasets.Image()),
        "mask": datasets.Image(),
        "seg": text,
        "answer": text,
        "options": text,
        "type": text,
        "category": text,
        "dataset": text,
        "image_path": text,
        "shots": datasets.Value("int32"),
    }
    for kind in ("sft", "grpo"):
        for ds in _load(out, kind).values():
            want = {**expected, "completion": messages} if kind == "sft" else expected
            assert dict(ds.features) == want
    row = _load(out, "sft")["train"][0]
    assert row["completion"][0]["role"] == "assistant"
    assert row["prompt"][0] == {
        "role": "system",
        "content": [{"type": "text", "text": SYSTEM_PROMPT}],
    }


def test_prompts_render_with_the_qwen25vl_template(full, one_shot):
    tpl = qwen_template()
    for out in (full[0], one_shot[0]):
        for row in _rows(out, "grpo"):
            text = tpl.render(messages=row["prompt"], add_generation_prompt=True)
            assert text.count(VISION) == len(row["images"]) == 1 + row["shots"]
            assert SYSTEM_PROMPT in text and text.endswith("<|im_start|>assistant\n")
            options = json.loads(row["options"])
            assert all(f"{k}: {v}" in text for k, v in options.items())


def test_sft_completions_parse_and_match_the_mask(full):
    out, _ = full
    for row in _rows(out, "sft"):
        target = row["completion"][0]["content"][0]["text"]
        parsed = parse_response(target, options=json.loads(row["options"]))
        assert parsed.format_ok, (row["id"], parsed.problems)
        assert parsed.answer == row["answer"]
        assert [tuple(r) for r in parsed.runs] == [
            tuple(r) for r in textmask.text_to_runs(row["seg"]).tolist()
        ]
        mask = np.asarray(row["mask"]) > 0
        assert row["seg"] == textmask.encode(mask, 24)
        think = parsed.think
        if row["id"] == "j1":
            assert think == "There is a dark stain near the right bottom edge."
        elif mask.any():
            assert think.startswith(
                "According to the segmentation result, there is an anomaly in the object, "
                f"which is located in the {describe_mask(mask).region}."
            )
        else:
            assert think.startswith("According to the segmentation result, there is no anomaly")


def test_mask_column_holds_the_original_size_mask(full, inputs):
    out, _ = full
    rows = _by_id(_rows(out, "grpo"))
    gt = inputs["mvtec_root"] / "widget" / "ground_truth"
    scratch = rows[f"{MV}/widget/test/scratch/000.png#defect"]
    assert scratch["mask"].mode == "L" and scratch["mask"].size == (80, 60)
    want = np.asarray(Image.open(gt / "scratch" / "000_mask.png")) > 0
    assert np.array_equal(np.asarray(scratch["mask"]) > 0, want)
    assert set(np.unique(np.asarray(scratch["mask"]))) == {0, 255}
    hole = np.asarray(rows[f"{MV}/widget/test/hole/000.png#defect"]["mask"]) > 0
    union = (np.asarray(Image.open(gt / "hole" / "000" / "000.png")) > 0) | (
        np.asarray(Image.open(gt / "hole" / "000" / "001.png")) > 0
    )
    assert np.array_equal(hole, union)
    normal = rows[f"{MV}/gadget/test/good/000.png#defect"]["mask"]
    assert normal.size == (72, 72) and not np.asarray(normal).any()
    assert rows[f"{MV}/gadget/test/good/000.png#defect"]["seg"] == ""
    rgb = rows["mmad:DS-MVTec/bottle/image/broken/000.png#0"]["mask"]
    assert (np.asarray(rgb) > 0)[5:20, 40:60].all() and (np.asarray(rgb) > 0).sum() == 15 * 20
    for row in rows.values():
        assert all(im.size == (IMG, IMG) and im.mode == "RGB" for im in row["images"])
        assert Path(row["image_path"]).is_file()


def test_location_answers_match_the_mask_centroid(full):
    out, _ = full
    locs = [r for r in _rows(out, "grpo") if r["id"].endswith("#location")]
    assert len(locs) == 4
    for row in locs:
        region = describe_mask(np.asarray(row["mask"]) > 0).region
        assert json.loads(row["options"])[row["answer"]] == region
        assert row["type"] == "Defect Localization"


def test_one_shot_puts_the_reference_first(one_shot, inputs):
    out, res = one_shot
    assert res.n_records == MVTEC_ROWS + MMAD_ROWS + JSONL_ROWS - 1  # JSONL line 2: no reference
    rejects = (out / "rejects.jsonl").read_text()
    assert "no normal reference image" in rejects
    rows = _by_id(_rows(out, "sft"))
    for row in rows.values():
        kinds = [c["type"] for c in row["prompt"][1]["content"]]
        assert kinds == ["image", "text", "image", "text"] and row["shots"] == 1
        assert row["prompt"][1]["content"][1]["text"] == REFERENCE_PREFIX
    row = rows["mmad:DS-MVTec/bottle/image/good/000.png#0"]
    root = inputs["mmad_json"].parent / "DS-MVTec" / "bottle"

    def resized(path: Path) -> np.ndarray:
        img = Image.open(path).convert("RGB")
        return np.asarray(img.resize((IMG, IMG), Image.Resampling.BICUBIC))

    assert np.array_equal(np.asarray(row["images"][0]), resized(root / "template" / "t1.png"))
    assert np.array_equal(
        np.asarray(row["images"][1]), resized(root / "image" / "good" / "000.png")
    )
    mv = rows[f"{MV}/gadget/test/dent/000.png#defect"]
    ref = inputs["mvtec_root"] / "gadget" / "train" / "good" / "000.png"
    assert np.array_equal(np.asarray(mv["images"][0]), resized(ref))


def test_ids_are_unique_and_splits_group_by_image(full):
    out, _ = full
    dd = _load(out, "grpo")
    ids = [i for split in dd for i in dd[split]["id"]]
    assert len(ids) == len(set(ids))
    where = {}
    for split in dd:
        for path in dd[split]["image_path"]:
            assert where.setdefault(path, split) == split
    rows = [{"id": str(k), "image_id": f"img{k // 2}"} for k in range(40)]
    splits = [output.split_rows(rows, 0.25, seed) for seed in range(4)]
    for s in splits:
        assert len({r["image_id"] for r in s["test"]}) == 5
        assert {r["image_id"] for r in s["test"]}.isdisjoint({r["image_id"] for r in s["train"]})
    assert output.split_rows(rows, 0.25, 0) == splits[0]
    assert len({tuple(r["id"] for r in s["test"]) for s in splits}) > 1
    assert set(output.split_rows(rows, 0.0, 0)) == {"train"}


def _work_mtimes(out: Path) -> dict[str, int]:
    work = out / ".work"
    return {str(p.relative_to(work)): p.stat().st_mtime_ns for p in work.rglob("*") if p.is_file()}


def test_rerun_skips_finished_work_and_gives_identical_datasets(inputs, tmp_path, monkeypatch):
    out = tmp_path / "out"
    first = _run(out, inputs, eval_fraction=0.3)
    assert first.processed > 0 and first.images_read > 0 and not first.up_to_date
    before, raw = _work_mtimes(out), {k: _raw(out, k) for k in ("sft", "grpo")}
    calls = []
    real = cache_module.load_image
    monkeypatch.setattr(cache_module, "load_image", lambda *a: calls.append(a) or real(*a))
    again = _run(out, inputs, eval_fraction=0.3)
    assert calls == [] and again.images_read == 0 and again.processed == 0
    assert again.reused == first.processed and again.up_to_date
    assert _work_mtimes(out) == before
    assert {k: _raw(out, k) for k in ("sft", "grpo")} == raw
    shutil.rmtree(out / "sft")  # a lost output is rebuilt from the work folder alone
    rebuilt = _run(out, inputs, eval_fraction=0.3)
    assert not rebuilt.up_to_date and rebuilt.processed == 0 and calls == []
    assert {k: _raw(out, k) for k in ("sft", "grpo")} == raw
    coarse = _run(out, inputs, eval_fraction=0.3, grid=12)  # rows redone, images reused
    assert coarse.processed == first.processed and calls == []
    assert json.loads((out / "manifest.json").read_text())["textmask"]["rows"] == 12
    segs = {r["id"]: r["seg"] for r in _rows(out, "grpo")}
    assert segs[f"{MV}/gadget/test/crack/000.JPG#defect"] == "(5, 5)-(5, 6), (6, 5)-(6, 6)"
    bigger = _run(out, inputs, eval_fraction=0.3, image_size=56)  # images redone
    assert len(calls) == bigger.images_read > 0
    assert _rows(out, "grpo")[0]["images"][0].size == (56, 56)


def test_interrupted_run_then_rerun_equals_a_clean_run(inputs, tmp_path, monkeypatch):
    clean = tmp_path / "clean"
    _run(clean, inputs, eval_fraction=0.3, shots=1)
    out = tmp_path / "out"
    real, calls = prepare_module.process_record, []

    def flaky(*args):
        if len(calls) == 9:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(prepare_module, "process_record", flaky)
    with pytest.raises(KeyboardInterrupt):
        _run(out, inputs, eval_fraction=0.3, shots=1)
    assert not (out / "sft").exists()
    assert len((out / ".work" / "records.jsonl").read_text().splitlines()) == 9
    monkeypatch.setattr(prepare_module, "process_record", real)
    resumed = _run(out, inputs, eval_fraction=0.3, shots=1)
    assert resumed.reused == 9 and resumed.processed > 0
    for kind in ("sft", "grpo"):
        assert _raw(out, kind) == _raw(clean, kind)
    assert (out / "rejects.jsonl").read_text() == (clean / "rejects.jsonl").read_text()
    m1, m2 = (json.loads((p / "manifest.json").read_text()) for p in (out, clean))
    assert m1["counts"] == m2["counts"] and m1["fingerprint"] == m2["fingerprint"]


def test_rewards_read_the_prepared_columns(full):
    out, _ = full
    grpo = _load(out, "grpo")["train"]
    sft = _by_id(_rows(out, "sft"))
    completions = [sft[i]["completion"] for i in grpo["id"]]
    columns = {"mask": grpo["mask"], "answer": grpo["answer"], "options": grpo["options"]}
    fmt, det, ans = make_rewards()
    assert fmt(completions, **columns) == [1.0] * len(grpo)
    assert ans(completions, **columns) == [1.0] * len(grpo)
    scores = det(completions, **columns)
    for score, mask in zip(scores, grpo["mask"], strict=True):
        assert score == 1.0 if not np.asarray(mask).any() else 0.0 < score <= 2.0


# --------------------------------------------------------------------------- entry points
def test_prepare_main_exit_codes_and_help(inputs, tmp_path, capsys):
    args = ["--mvtec_root", str(inputs["mvtec_root"]), "--image_size", str(IMG)]
    args += ["--question_types", ",".join(LEGACY_TYPES)]
    assert prepare_main([str(tmp_path / "ok"), *args, "--quiet"]) == 0
    assert (tmp_path / "ok" / "grpo" / "dataset_dict.json").is_file()
    capsys.readouterr()
    assert prepare_main([str(tmp_path / "ok"), *args]) == 0  # re-run, with the summary line
    printed = capsys.readouterr().out
    assert f"{MVTEC_ROWS} records from" in printed and f"{MVTEC_REJECTS} rejected, see" in printed
    assert prepare_main([str(tmp_path / "o2"), "--mvtec_root", str(tmp_path / "nope")]) == 1
    assert "mvtec_root: no folder" in capsys.readouterr().err
    assert prepare_main([str(tmp_path / "o3")]) == 1
    assert "nothing to prepare" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps({"image": "nope.png", "question": "Q?", "options": ["a"], "answer": "A"}) + "\n"
    )
    assert prepare_main([str(tmp_path / "o4"), "--jsonl", str(bad), "--quiet"]) == 1
    assert "all 1 records were rejected" in capsys.readouterr().err
    assert "image file not found" in (tmp_path / "o4" / "rejects.jsonl").read_text()
    with pytest.raises(SystemExit) as exc:
        prepare_main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for action in build_parser()._actions:
        assert action.help, action.dest
        assert all(opt in text for opt in action.option_strings)


def test_output_folder_rules_and_argument_errors(inputs, tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(PrepareError, match="not a prepare output folder"):
        _run(foreign, {"jsonl": inputs["jsonl"]})
    res = _run(foreign, {"jsonl": inputs["jsonl"]}, overwrite=True)
    assert res.n_records == JSONL_ROWS and (foreign / "notes.txt").read_text() == "mine"
    for bad in (
        {"shots": 2},
        {"eval_fraction": 1.0},
        {"grid": 0},
        {"image_size": 8},
        {"reference_from": "best"},
        {"max_records": 0},
    ):
        with pytest.raises(PrepareError):
            _run(tmp_path / "x", {"jsonl": inputs["jsonl"]}, **bad)
    limited = _run(tmp_path / "few", inputs, max_records=5)
    assert limited.n_records == 5  # the first 5 good records, all MMAD (read first)


def test_an_unexpected_error_rejects_the_record_and_is_retried_next_run(
    inputs, tmp_path, monkeypatch
):
    rows_module = importlib.import_module("omniad_train.data.rows")
    real = rows_module.sft_target

    def broken(seg, reasoning, answer):
        if "dark stain" in reasoning:
            raise RuntimeError("boom")
        return real(seg, reasoning, answer)

    monkeypatch.setattr(rows_module, "sft_target", broken)
    out = tmp_path / "out"
    first = _run(out, {"jsonl": inputs["jsonl"]})
    assert first.n_records == JSONL_ROWS - 1
    assert (
        "unexpected RuntimeError while preparing the record: boom"
        in (out / "rejects.jsonl").read_text()
    )
    monkeypatch.setattr(rows_module, "sft_target", real)
    second = _run(out, {"jsonl": inputs["jsonl"]})
    assert second.n_records == JSONL_ROWS and second.processed == 1 and second.reused == 1
