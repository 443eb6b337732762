"""Real dataset layouts (MVTec 3D-AD RGB, VisA's original layout) and no silent drops.

Every tree is built here with real PNG files: 3D-AD masks hold class ids (253, 254,
255; 0 is good, as in the dataset's ``class_ids.json``), VisA masks hold 0/1.  A folder
the readers do not recognise must come back as a reject naming it and the layouts they
expected, in ``prepare`` (also next to good roots) and in both evaluation runners.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from omniad_train.data import LAYOUTS, PrepareError, Record, Reject, iter_mvtec, prepare
from omniad_train.evaluation import run_detection, run_mmad
from omniad_train.evaluation.detection import collect_detection_items
from omniad_train.evaluation.detection import main as detection_main
from omniad_train.evaluation.mmad import main as mmad_main

datasets = pytest.importorskip("datasets")
IMG = 32


def _image(path: Path, h: int = 40, w: int = 48, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    Image.fromarray(arr).save(path)
    return path


def _mask(path: Path, boxes: dict[int, tuple[int, int, int, int]], h: int = 40, w: int = 48):
    """A class-id mask: value -> box."""
    path.parent.mkdir(parents=True, exist_ok=True)
    m = np.zeros((h, w), np.uint8)
    for value, (y0, y1, x0, x1) in boxes.items():
        m[y0:y1, x0:x1] = value
    Image.fromarray(m).save(path)
    return m


def _split(items):
    items = list(items)
    recs = {r.id: r for r in items if isinstance(r, Record)}
    rejects = {r.record: r.reason for r in items if isinstance(r, Reject)}
    return recs, rejects


# --------------------------------------------------------------------------- MVTec 3D-AD
@pytest.fixture
def mvtec3d(tmp_path) -> tuple[Path, dict[str, np.ndarray]]:
    root = tmp_path / "mvtec_3d"
    tire = root / "tire"
    (tire / "class_ids.json").parent.mkdir(parents=True)
    (tire / "class_ids.json").write_text(
        '{"255": "contamination", "254": "cut", "253": "hole", "0": "good"}'
    )
    for k in range(2):
        _image(tire / "train" / "good" / "rgb" / f"{k:03d}.png", seed=k)
        (tire / "train" / "good" / "xyz").mkdir(parents=True, exist_ok=True)
    _image(tire / "test" / "good" / "rgb" / "000.png", seed=5)
    _mask(tire / "test" / "good" / "gt" / "000.png", {})  # 3D-AD ships all-zero masks for good
    masks = {
        "cut": _mask(tire / "test" / "cut" / "gt" / "000.png", {254: (2, 8, 30, 46)}),
        "hole": _mask(tire / "test" / "hole" / "gt" / "000.png", {253: (30, 38, 2, 10)}),
        "combined": _mask(
            tire / "test" / "combined" / "gt" / "000.png",
            {253: (14, 26, 18, 30), 255: (16, 20, 20, 24)},
        ),
    }
    for k, d in enumerate(masks):
        _image(tire / "test" / d / "rgb" / "000.png", seed=10 + k)
        (tire / "test" / d / "xyz").mkdir()
        (tire / "test" / d / "xyz" / "000.tiff").write_bytes(b"II*\x00")
    _image(tire / "test" / "cut" / "rgb" / "001.png", seed=20)  # no gt/001.png
    (tire / "test" / "scan_only" / "xyz").mkdir(parents=True)  # no rgb/: a reject
    return root, masks


def test_mvtec_3d_ad_rgb_images_and_class_id_masks_are_read(mvtec3d, tmp_path):
    root, masks = mvtec3d
    recs, rejects = _split(iter_mvtec(root))
    prefix = "mvtec:mvtec_3d/tire/test"
    assert set(rejects) == {"tire/test/cut/rgb/001.png", "tire/test/scan_only"}
    assert "expected tire/test/cut/gt/001.png (MVTec 3D-AD)" in rejects["tire/test/cut/rgb/001.png"]
    assert "holds no image the reader recognises" in rejects["tire/test/scan_only"]
    assert LAYOUTS["mvtec3d"] in rejects["tire/test/scan_only"]
    good = recs[f"{prefix}/good/rgb/000.png#defect"]
    assert not good.anomalous and good.mask is None and good.answer == "B"
    assert good.reference[0].startswith(str(root / "tire" / "train" / "good" / "rgb"))
    for defect in masks:
        rec = recs[f"{prefix}/{defect}/rgb/000.png#defect"]
        assert rec.anomalous and rec.defect == defect and rec.answer == "A"
        assert rec.mask == str(root / "tire" / "test" / defect / "gt" / "000.png")
    out = tmp_path / "out"
    res = prepare(out, mvtec_root=root, image_size=IMG, verbose=False)
    rows = {r["id"]: r for r in datasets.load_from_disk(str(out / "grpo"))["train"]}
    for defect, raw in masks.items():  # every class id counts, 0 does not
        got = np.asarray(rows[f"{prefix}/{defect}/rgb/000.png#defect"]["mask"]) > 0
        np.testing.assert_array_equal(got, raw > 0)
    by_type = json.loads((out / "manifest.json").read_text())["counts"]["sft"]["total"]["by_type"]
    assert by_type["Defect Classification"] == 3 and by_type["Defect Description"] == 3
    assert res.n_rejects == 2


# --------------------------------------------------------------------------- VisA
@pytest.fixture
def visa(tmp_path) -> Path:
    root = tmp_path / "VisA_20220922"
    rows = ["\ufeffobject,split,label,image,mask"]
    for obj, (h, w) in {"candle": (40, 48), "pcb1": (36, 44)}.items():
        imgs, gts = root / obj / "Data" / "Images", root / obj / "Data" / "Masks" / "Anomaly"
        for k in range(2):
            _image(imgs / "Normal" / f"{k:04d}.JPG", h, w, seed=k)
            rows.append(f"{obj},train,normal,{obj}/Data/Images/Normal/{k:04d}.JPG,")
        _image(imgs / "Normal" / "0100.JPG", h, w, seed=7)
        rows.append(f"{obj},test,normal,{obj}/Data/Images/Normal/0100.JPG,")
        _image(imgs / "Anomaly" / "000.JPG", h, w, seed=8)
        _mask(gts / "000.png", {1: (3, 9, 3, 15)}, h, w)  # VisA masks hold 0 and 1
        rows.append(
            f"{obj},test,anomaly,{obj}/Data/Images/Anomaly/000.JPG,{obj}/Data/Masks/Anomaly/000.png"
        )
    _image(tmp_path / "secret.png", 40, 48, seed=99)
    _image(root / "candle" / "Data" / "Images" / "Anomaly" / "001.JPG", seed=9)
    rows += [
        "candle,test,anomaly,candle/Data/Images/Anomaly/001.JPG,../../secret.png",  # line 10
        "candle,test,normal,candle/Data/Images/Normal/9999.JPG,",  # missing image
        "candle,test,broken,candle/Data/Images/Normal/0100.JPG,",  # unknown label
        "candle,test,normal,candle/Data/Images/Normal/0100.JPG,",  # listed twice
    ]
    (root / "split_csv").mkdir(parents=True)
    (root / "split_csv" / "1cls.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root


def test_visa_original_layout_from_its_split_csv(visa, tmp_path):
    recs, rejects = _split(iter_mvtec(visa))
    assert set(rejects) == {f"split_csv/1cls.csv:{n}" for n in (10, 11, 12, 13)}
    assert "leads outside the data root" in rejects["split_csv/1cls.csv:10"]
    assert "listed twice (first on line 4)" in rejects["split_csv/1cls.csv:13"]
    assert "image file not found" in rejects["split_csv/1cls.csv:11"]
    assert "label normal or anomaly" in rejects["split_csv/1cls.csv:12"]
    ids = {i for i in recs if i.endswith("#defect")}
    assert ids == {
        f"mvtec:VisA_20220922/{o}/Data/Images/{f}#defect"
        for o in ("candle", "pcb1")
        for f in ("Normal/0100.JPG", "Anomaly/000.JPG")
    }  # test rows only: train rows are the references
    bad = recs["mvtec:VisA_20220922/pcb1/Data/Images/Anomaly/000.JPG#defect"]
    assert bad.anomalous and bad.category == "pcb1" and bad.defect == "anomaly"
    assert "/pcb1/Data/Images/Normal/000" in bad.reference[0]
    out = tmp_path / "out"
    prepare(out, visa_root=visa, image_size=IMG, verbose=False)
    rows = {r["id"]: r for r in datasets.load_from_disk(str(out / "grpo"))["train"]}
    got = np.asarray(rows[bad.id]["mask"]) > 0
    assert got.shape == (36, 44) and got[3:9, 3:15].all() and got.sum() == 6 * 12
    m = json.loads((out / "manifest.json").read_text())
    assert m["sources"][0]["kind"] == "visa"
    reasons = {(n["category"], n["type"]) for n in m["skipped_questions"]}
    assert reasons == {("candle", "Defect Classification"), ("pcb1", "Defect Classification")}
    assert m["summary"][0]["images"] == 4 and m["summary"][0]["rejects"] == 4


def test_a_visa_category_folder_without_the_csv_is_read_from_its_folders(visa):
    os.remove(visa / "split_csv" / "1cls.csv")
    recs, rejects = _split(iter_mvtec(visa / "candle"))
    assert len([i for i in recs if i.endswith("#defect")]) == 4
    (reason,) = rejects.values()  # Anomaly/001.JPG has no Masks/Anomaly/001.png
    assert "expected candle/Data/Masks/Anomaly/001.png (VisA)" in reason
    normal = recs["mvtec:VisA_20220922/candle/Data/Images/Normal/0000.JPG#defect"]
    assert not normal.anomalous and normal.reference and normal.reference[0] != normal.image


def test_visa_root_asks_for_the_visa_layout(mvtec3d, tmp_path):
    root, _ = mvtec3d
    with pytest.raises(PrepareError, match="all 1 records were rejected") as exc:
        prepare(tmp_path / "o", visa_root=root, image_size=IMG, verbose=False)
    assert "visa " in str(exc.value)
    (line,) = (tmp_path / "o" / "rejects.jsonl").read_text().splitlines()
    assert "not the one asked for" in line and "VisA's original layout" in line


# --------------------------------------------------------------------------- no silent drops
@pytest.fixture
def junk(tmp_path) -> Path:
    root = tmp_path / "junk"
    (root / "photos").mkdir(parents=True)
    _image(root / "photos" / "a.png")  # images, but in no known layout
    (root / "notes.txt").write_text("not a folder")
    return root


def test_a_folder_in_no_known_layout_is_a_reject_naming_it_and_the_layouts(junk, tmp_path):
    recs, rejects = _split(iter_mvtec(junk))
    assert recs == {} and set(rejects) == {"photos", str(junk)}
    for reason in rejects.values():
        assert "none of it is read" in reason
        assert all(text in reason for text in LAYOUTS.values())
    empty = tmp_path / "empty"
    empty.mkdir()
    assert list(_split(iter_mvtec(empty))[1]) == [str(empty)]


def test_a_root_that_gives_nothing_is_named_next_to_good_roots(mvtec3d, junk, tmp_path, capsys):
    root, _ = mvtec3d
    res = prepare(tmp_path / "o", mvtec_root=[root, junk], image_size=IMG)
    printed = capsys.readouterr().out
    good, bad = res.sources
    assert good["qa_pairs"] > 0 and bad == {
        "source": 1,
        "kind": "mvtec",
        "input": str(junk),
        "images": 0,
        "qa_pairs": 0,
        "rejects": 2,
        "by_type": {},
        "by_question_source": {},
    }
    assert f"warning: source 1 (mvtec {junk}) gave no record: 2 rejected" in printed
    assert f"| mvtec {junk} | 0 | 0 |" in printed
    lines = [json.loads(x) for x in (tmp_path / "o" / "rejects.jsonl").read_text().splitlines()]
    assert {x["record"] for x in lines} >= {"photos", str(junk)}


def test_detection_runner_lists_the_readers_rejects_and_fails_when_nothing_is_left(
    mvtec3d, junk, tmp_path, capsys
):
    root, _ = mvtec3d
    items = collect_detection_items({"3d": root, "junk": junk})
    skipped = {i.id: i.skip for i in items if i.skip}
    assert skipped["mvtec:junk/photos#defect"][0] == "layout"
    assert "mvtec:3d/tire/test/scan_only#defect" in skipped
    defects = {i.record.defect for i in items if i.record is not None}
    assert defects == {"", "cut", "hole", "combined"}
    model = tmp_path / "model"
    model.mkdir()
    with pytest.raises(ValueError, match="nothing can be evaluated, all 2 inputs were rejected"):
        run_detection(str(model), {"junk": junk}, tmp_path / "det", progress=False)
    argv = ["--model", str(model), "--root", f"junk={junk}", "--out", str(tmp_path / "det2")]
    assert detection_main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "photos" in err and err.count("\n") == 1


def test_a_run_that_evaluates_nothing_does_not_exit_0(tmp_path, capsys):
    cat = tmp_path / "mv" / "widget"
    for name in ("good", "crack"):
        (cat / "test" / name).mkdir(parents=True)
        (cat / "test" / name / "000.png").write_bytes(b"not a png")
    _mask(cat / "ground_truth" / "crack" / "000_mask.png", {255: (1, 4, 1, 4)})
    model = tmp_path / "model"
    model.mkdir()
    argv = ["--model", str(model), "--root", f"mv={tmp_path / 'mv'}", "--out", str(tmp_path / "d")]
    assert detection_main(argv) == 1
    err = capsys.readouterr().err
    assert "no item could be evaluated, all 2 were skipped" in err
    report = json.loads((tmp_path / "d" / "report.json").read_text())
    assert report["counts"]["evaluated"] == 0 and report["counts"]["skipped"] == 2


def test_mmad_runner_fails_when_no_question_can_be_asked(tmp_path, capsys):
    entry = {
        "conversation": [
            {
                "Question": "Q?",
                "Answer": "A",
                "Options": {"A": "Yes", "B": "No"},
                "type": "Anomaly Detection",
            }
        ]
    }
    (tmp_path / "mmad.json").write_text(json.dumps({"DS/cap/test/good/000.png": entry}))
    model = tmp_path / "model"
    model.mkdir()
    with pytest.raises(ValueError, match=r"all 1 inputs were rejected: DS/cap/test/good/000\.png"):
        run_mmad(str(model), tmp_path / "mmad.json", out=tmp_path / "m", progress=False)
    argv = [
        "--model",
        str(model),
        "--mmad_json",
        str(tmp_path / "mmad.json"),
        "--out",
        str(tmp_path / "m2"),
    ]
    assert mmad_main(argv) == 1
    assert "image file not found" in capsys.readouterr().err
