"""omniad_core.metrics against scikit-learn (the oracle) and brute force."""

from __future__ import annotations

import ast
import doctest
import importlib
import json
import math
import os
import subprocess
import sys
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import sklearn
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score, f1_score, precision_recall_curve
from strategies import ex

import textmask as tm
from omniad_core import metrics as M
from omniad_core.metrics import (
    MMAD_TYPES,
    Confusion,
    DetectionMeter,
    MMADMeter,
    apply_threshold,
    confusion_at_threshold,
    f1_at_threshold,
    normalize_question_type,
    optimal_threshold,
    pr_curve,
    thresholds,
)

PACKAGE = Path(M.__file__).parent
SUBMODULES = [
    importlib.import_module(f"omniad_core.metrics.{f.stem}")
    for f in sorted(PACKAGE.glob("[!_]*.py"))
]


def approx(x):
    return pytest.approx(x, rel=1e-12, abs=1e-12)


def sk_f1(y, p) -> float:
    with sklearn.config_context(skip_parameter_validation=True, assume_finite=True):
        return float(f1_score(y, p, zero_division=1.0))


# --------------------------------------------------------------------------- module
def test_doctests_run():
    attempted = 0
    for mod in [M, *SUBMODULES]:
        res = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
        assert res.failed == 0, mod.__name__
        attempted += res.attempted
    assert len(SUBMODULES) == 4
    assert attempted > 20


def test_package_imports_only_numpy_stdlib_and_textmask():
    """The layer rule: textmask <- omniad_core; nothing heavier."""
    names = set()
    for node in (n for f in PACKAGE.glob("*.py") for n in ast.parse(f.read_text()).body):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add((node.module or "").split(".")[0])
    third_party = names - set(sys.stdlib_module_names) - {"__future__", "omniad_core"}
    assert third_party == {"numpy", "textmask"}


def test_import_does_not_load_torch_or_sklearn():
    code = (
        "import sys, omniad_core.metrics; "
        "print(sorted(m for m in ('torch', 'sklearn', 'scipy.stats') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ
    )
    assert out.stdout.strip() == "[]"


def test_all_is_complete():
    for mod in SUBMODULES:
        public = {
            n
            for n in dir(mod)
            if not n.startswith("_")
            and getattr(getattr(mod, n), "__module__", None) == mod.__name__
        }
        assert set(mod.__all__) >= public, mod.__name__
        assert set(M.__all__) >= set(mod.__all__), mod.__name__
    assert all(hasattr(M, n) for n in M.__all__)


# --------------------------------------------------------------------------- Confusion
@given(st.lists(st.integers(0, 50), min_size=4, max_size=4))
@settings(max_examples=ex(100))
def test_confusion_matches_sklearn(counts):
    tp, fp, fn, tn = counts
    y = [1] * tp + [0] * fp + [1] * fn + [0] * tn
    p = [1] * tp + [1] * fp + [0] * fn + [0] * tn
    c = Confusion(tp, fp, fn, tn)
    if y:
        assert c.f1 == approx(sk_f1(y, p))
        assert c.accuracy == approx(accuracy_score(y, p))
    else:
        assert c.f1 == 1.0 and c.accuracy == 1.0


def test_confusion_is_textmask_scores():
    """One confusion-count type across the layers: the same class, the same counts."""
    assert Confusion is tm.Scores and M.Confusion is tm.Scores
    c = Confusion(tp=2, fp=1, fn=1, tn=6)
    assert (c.tp, c.fp, c.fn, c.tn, c.total) == (2, 1, 1, 6, 10)
    assert Confusion() == Confusion(0, 0, 0, 0) and Confusion().cells is None
    gt = np.zeros((48, 48), bool)
    gt[0:2, 0:2] = True
    s = tm.GroundTruth(gt).score("(0, 0)-(0, 1)")  # a textmask score is a Confusion
    assert isinstance(s, Confusion) and s.accuracy == (4 + 2300 - 4) / 2304
    pooled = s + Confusion(tp=1, tn=3)  # and they add
    assert (pooled.tp, pooled.fp, pooled.fn, pooled.tn) == (5, 4, 0, 2299)
    assert pooled.cells is None  # pooled with counts of no known cell prediction
    assert s + s == Confusion(8, 8, 0, 4592, cells=4)
    assert s.__add__((1, 2, 3, 4)) is NotImplemented  # only counts add to counts


def test_meter_state_formats_unchanged_with_scores():
    """The JSON state of both meters is what it was: counts as lists of four ints."""
    gt = np.zeros((48, 48), bool)
    gt[0:2, 0:2] = True
    m = DetectionMeter()
    m.update_scores(tm.score("(0, 0)-(0, 1)", gt), dataset="D", category="c")
    assert m.state_dict() == {
        "format": "omniad.metrics.DetectionMeter",
        "version": 1,
        "entries": [
            {"dataset": "D", "category": "c", "pixel": [4, 4, 0, 2296], "image": [1, 0, 0, 0]}
        ],
    }
    row = m.results().overall
    assert row.pixel == Confusion(4, 4, 0, 2296) and row.image == Confusion(tp=1)
    assert row.to_dict()["pixel_fp"] == 4 and "pixel_cells" not in row.to_dict()
    assert json.loads(json.dumps(m.state_dict())) == m.state_dict()


# --------------------------------------------------------------------------- detection
def _mask(rng, shape, density, dtype):
    m = rng.random(shape) < density
    if dtype == "bool":
        return m
    if dtype == "uint8_255":
        return m.astype(np.uint8) * 255
    return m.astype(dtype)


def random_images(rng):
    """Records (dataset, category, pred, gt, image_pred) of random sizes and contents."""
    recs = []
    for d in range(int(rng.integers(1, 4))):
        for c in range(int(rng.integers(1, 4))):
            for _ in range(int(rng.integers(1, 6))):
                shape = tuple(int(v) for v in rng.integers(1, 13, size=2))
                gt_density = float(rng.choice([0.0, 0.0, 0.05, 0.3, 1.0]))
                pred_density = float(rng.choice([0.0, 0.1, 0.5]))
                dtype = str(rng.choice(["bool", "uint8_255", "int64", "float32"]))
                gt = _mask(rng, shape, gt_density, dtype)
                pred = _mask(rng, shape, pred_density, dtype)
                image_pred = [None, None, True, False][int(rng.integers(4))]
                recs.append((f"ds{d}", f"cat{c}", pred, gt, image_pred))
    return recs


def meter_of(recs) -> DetectionMeter:
    m = DetectionMeter()
    for ds, cat, pred, gt, ip in recs:
        m.update(pred, gt, dataset=ds, category=cat, image_pred=ip)
    return m


def _oracle(recs):
    """Pixel / image label and prediction vectors per group, straight from the masks."""
    groups = {}
    for ds, cat, pred, gt, ip in recs:
        g = groups.setdefault((ds, cat), {"py": [], "pp": [], "iy": [], "ip": []})
        g["py"].append(np.asarray(gt).ravel() != 0)
        g["pp"].append(np.asarray(pred).ravel() != 0)
        g["iy"].append(bool(np.any(gt)))
        g["ip"].append(bool(np.any(pred)) if ip is None else ip)
    return groups


def _sk_metrics(groups):
    py = np.concatenate([v for g in groups for v in g["py"]])
    pp = np.concatenate([v for g in groups for v in g["pp"]])
    iy = [v for g in groups for v in g["iy"]]
    ip = [v for g in groups for v in g["ip"]]
    return (
        100 * sk_f1(py, pp),
        100 * accuracy_score(py, pp),
        100 * sk_f1(iy, ip),
        100 * accuracy_score(iy, ip),
    )


FIELDS = ("pixel_f1", "pixel_acc", "image_f1", "image_acc")
POOLED = tuple(f"pooled_{f}" for f in FIELDS)


@pytest.mark.parametrize("seed", range(25))
def test_detection_meter_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    recs = random_images(rng)
    report = meter_of(recs).results()
    groups = _oracle(recs)
    datasets = sorted({d for d, _ in groups})
    ds_means = []
    for ds in datasets:
        cats = sorted(c for d, c in groups if d == ds)
        cat_vals = []
        for cat in cats:
            want = _sk_metrics([groups[(ds, cat)]])
            row = report.category(ds, cat)
            assert [getattr(row, f) for f in FIELDS] == approx(list(want))
            assert [getattr(row, f) for f in POOLED] == approx(list(want))
            assert row.n_images == len(groups[(ds, cat)]["iy"])
            cat_vals.append(want)
        row = report.dataset(ds)
        mean = np.mean(cat_vals, axis=0)
        assert [getattr(row, f) for f in FIELDS] == approx(list(mean))
        pooled = _sk_metrics([groups[(ds, c)] for c in cats])
        assert [getattr(row, f) for f in POOLED] == approx(list(pooled))
        assert row.n_categories == len(cats)
        ds_means.append(mean)
    overall = report.overall
    assert overall.scope == "overall"
    assert [getattr(overall, f) for f in FIELDS] == approx(list(np.mean(ds_means, axis=0)))
    assert [getattr(overall, f) for f in POOLED] == approx(list(_sk_metrics(groups.values())))
    assert overall.n_images == len(recs)
    # row order: categories of a dataset, then the dataset, ..., overall last
    scopes = [(r.scope, r.dataset) for r in report]
    assert scopes[-1] == ("overall", None)
    assert len(report) == len(groups) + len(datasets) + 1


def test_detection_tiny_case_by_hand():
    m = DetectionMeter()
    gt = np.zeros((2, 5), np.uint8)
    gt[0, :2] = 255  # 2 anomalous pixels
    pred = np.zeros((2, 5), bool)
    pred[0, 1:4] = True  # 1 hit, 2 false alarms
    m.update(pred, gt, dataset="D", category="a")  # image TP
    m.update(np.zeros((3, 3)), np.zeros((3, 3)), dataset="D", category="a")  # image TN
    m.update(np.ones((1, 2)), np.zeros((1, 2)), dataset="D", category="b")  # image FP
    m.update(np.zeros((1, 4)), np.ones((1, 4)), dataset="E", category="c")  # image FN
    r = m.results()
    a = r.category("D", "a")
    assert a.pixel == Confusion(1, 2, 1, 15)
    assert a.image == Confusion(1, 0, 0, 1)
    assert a.pixel_f1 == approx(100 * 2 / 5)
    assert a.pixel_acc == approx(100 * 16 / 19)
    assert (a.image_f1, a.image_acc) == (100.0, 100.0)
    b = r.category("D", "b")
    assert (b.pixel_f1, b.pixel_acc, b.image_f1, b.image_acc) == (0.0, 0.0, 0.0, 0.0)
    d = r.dataset("D")
    assert d.pixel_f1 == approx(20.0)  # mean of 40 and 0
    assert d.pooled_pixel_f1 == approx(100 * 2 / 7)  # tp 1, fp 4, fn 1
    assert d.image_acc == approx(50.0) and d.pooled_image_acc == approx(100 * 2 / 3)
    e = r.dataset("E")
    assert (e.pixel_f1, e.image_f1, e.image_acc) == (0.0, 0.0, 0.0)
    assert r.overall.pixel_f1 == approx(10.0)  # mean of datasets: 20 and 0
    assert d.image_f1 == approx(50.0)  # a: 100, b: 0
    assert r.overall.image_f1 == approx(25.0)  # D: 50, E: 0
    assert r.overall.pooled_image_f1 == approx(100 * 2 / 4)  # tp 1, fp 1, fn 1


def test_detection_no_positives_f1_is_100():
    m = DetectionMeter()
    m.update(np.zeros((4, 4)), np.zeros((4, 4)), dataset="D", category="good")
    row = m.results().overall
    assert (row.pixel_f1, row.pixel_acc, row.image_f1, row.image_acc) == (100.0,) * 4


def test_detection_image_overrides():
    m = DetectionMeter()
    # anomalous image whose mask is empty (no pixel annotation): allowed
    m.update(np.zeros((2, 2)), np.zeros((2, 2)), dataset="D", category="c", image_gt=True)
    # the image-level decision may differ from the mask
    m.update(np.zeros((2, 2)), np.zeros((2, 2)), dataset="D", category="c", image_pred=True)
    assert m.results().overall.image == Confusion(tp=0, fp=1, fn=1, tn=0)
    with pytest.raises(ValueError, match="image_gt is False"):
        m.update(np.ones((2, 2)), np.ones((2, 2)), dataset="D", category="c", image_gt=False)
    with pytest.raises(TypeError, match="image_pred must be a bool"):
        m.update(np.ones((2, 2)), np.ones((2, 2)), dataset="D", category="c", image_pred=0.7)
    assert m.n_images == 2


def test_detection_errors():
    m = DetectionMeter()
    with pytest.raises(ValueError, match="shape"):
        m.update(np.zeros((2, 3)), np.zeros((3, 2)), dataset="D", category="c")
    with pytest.raises(TypeError, match="dataset must be a str"):
        m.update(np.zeros((2, 2)), np.zeros((2, 2)), dataset=1, category="c")
    with pytest.raises(ValueError, match="tp must be >= 0"):
        m.update_counts(-1, 0, 0, 0, dataset="D", category="c")
    with pytest.raises(TypeError, match="integer count"):
        m.update_counts(1.5, 0, 0, 0, dataset="D", category="c")
    with pytest.raises(TypeError, match="pred_mask"):
        m.update(np.array([["a"]]), np.zeros((1, 1)), dataset="D", category="c")
    with pytest.raises(TypeError):
        m.merge(MMADMeter())
    assert m.n_images == 0 and m.state_dict()["entries"] == []


def test_detection_empty_meter():
    r = DetectionMeter().results()
    assert len(r) == 1 and math.isnan(r.overall.pixel_f1) and r.overall.n_images == 0
    assert "| **Average** |  | 0 | - | - | - | - |" in r.to_markdown()


def test_detection_markdown_layout():
    m = DetectionMeter()
    m.update_counts(1, 1, 0, 2, dataset="VisA", category="pcb1")
    m.update_counts(0, 0, 0, 4, dataset="VisA", category="pcb2")
    m.update_counts(2, 0, 0, 2, dataset="GoodsAD", category="cigarette_box")
    md = m.to_markdown()
    lines = md.strip().splitlines()
    assert lines[0].startswith("| Dataset | Category | Images | Pixel F1")
    assert len(lines) == 2 + 3 + 2 + 1
    assert lines[2].startswith("| GoodsAD | cigarette_box | 1 | 100.0")
    assert "| VisA | **mean** | 2 | 83.3 |" in md  # mean of 66.7 and 100
    pooled = m.to_markdown(categories=False, pooled=True)
    assert "| VisA | **pooled** | 2 | 66.7 |" in pooled
    assert pooled.strip().splitlines()[-1].startswith("| **Pooled** |")
    assert len(pooled.strip().splitlines()) == 2 + 2 + 1
    dicts = m.results().to_dicts()
    assert dicts[0]["pixel_tp"] == 2 and dicts[0]["category"] == "cigarette_box"
    json.dumps(dicts)


def test_detection_memory_is_counts_only():
    m = DetectionMeter()
    m.update(np.ones((600, 500), bool), np.ones((600, 500), bool), dataset="D", category="c")
    state = m.state_dict()
    assert state["entries"] == [
        {"dataset": "D", "category": "c", "pixel": [300000, 0, 0, 0], "image": [1, 0, 0, 0]}
    ]
    assert all(isinstance(v, int) for v in state["entries"][0]["pixel"])


@st.composite
def image_records(draw, max_size=10):
    out = []
    for _ in range(draw(st.integers(0, max_size))):
        ds = draw(st.sampled_from(["MVTec-AD", "VisA"]))
        cat = draw(st.sampled_from(["a", "b", "c"]))
        h, w = draw(st.integers(1, 5)), draw(st.integers(1, 5))
        cells = st.lists(st.booleans(), min_size=h * w, max_size=h * w)
        gt = np.array(draw(cells), bool).reshape(h, w)
        pred = np.array(draw(cells), bool).reshape(h, w)
        out.append((ds, cat, pred, gt, draw(st.none() | st.booleans())))
    return out


@given(image_records(), st.data())
@settings(max_examples=ex(80))
def test_detection_merge_of_halves_equals_whole(recs, data):
    k = data.draw(st.integers(0, len(recs)))
    whole = meter_of(recs)
    a, b = meter_of(recs[:k]), meter_of(recs[k:])
    assert a.merge(b) is a
    assert a == whole
    assert a.results() == whole.results()
    assert a.state_dict() == whole.state_dict()


@given(image_records())
@settings(max_examples=ex(80))
def test_detection_state_dict_round_trip(recs):
    m = meter_of(recs)
    state = json.loads(json.dumps(m.state_dict()))
    back = DetectionMeter.from_state_dict(state)
    assert back == m and back.results() == m.results()
    assert back.state_dict() == m.state_dict()


@given(image_records())
@settings(max_examples=ex(80))
def test_detection_update_counts_equals_update(recs):
    via_masks = meter_of(recs)
    via_counts = DetectionMeter()
    for ds, cat, pred, gt, ip in recs:
        tp = int((pred & gt).sum())
        fp, fn = int((pred & ~gt).sum()), int((~pred & gt).sum())
        tn = int(pred.size - tp - fp - fn)
        via_counts.update_counts(tp, fp, fn, tn, None, ip, dataset=ds, category=cat)
    assert via_counts == via_masks


def test_detection_update_scores_from_textmask():
    rng = np.random.default_rng(3)
    via_scores, via_masks = DetectionMeter(), DetectionMeter()
    for i in range(20):
        h, w = (int(v) for v in rng.integers(5, 60, size=2))
        gt = rng.random((h, w)) < rng.choice([0.0, 0.02, 0.2])
        cells = rng.random((24, 24)) < rng.choice([0.0, 0.01, 0.1])
        text = tm.encode(cells)
        cat = f"c{i % 3}"
        via_scores.update_scores(tm.GroundTruth(gt).score(text), dataset="D", category=cat)
        pred = tm.decode(text, shape=(h, w))
        via_masks.update(pred, gt, dataset="D", category=cat)
    assert via_scores == via_masks


def test_detection_state_dict_validation():
    m = DetectionMeter()
    m.update_counts(1, 2, 3, 4, dataset="D", category="c")
    good = m.state_dict()
    with pytest.raises(ValueError, match="format"):
        DetectionMeter.from_state_dict({**good, "format": "x"})
    with pytest.raises(ValueError, match="version"):
        DetectionMeter.from_state_dict({**good, "version": 99})
    with pytest.raises(ValueError, match="duplicate"):
        DetectionMeter.from_state_dict({**good, "entries": good["entries"] * 2})
    bad = json.loads(json.dumps(good))
    bad["entries"][0]["pixel"] = [1, 2, 3]
    with pytest.raises(ValueError, match="tp, fp, fn, tn"):
        DetectionMeter.from_state_dict(bad)
    bad["entries"][0]["pixel"] = [1, 2, 3, -4]
    with pytest.raises(ValueError, match=">= 0"):
        DetectionMeter.from_state_dict(bad)
    with pytest.raises(ValueError, match="not a"):
        DetectionMeter.from_state_dict(MMADMeter().state_dict())


# --------------------------------------------------------------------------- MMAD
def _upd(m, t, ok, ds="MVTec-AD", cat="bottle", normal=False):
    m.update(t, ok, dataset=ds, category=cat, is_normal=normal)


def test_mmad_three_of_four_is_75():
    m = MMADMeter()
    for ok in (True, False, True, True):
        _upd(m, "Defect Classification", ok)
    r = m.results()
    assert r.dataset("MVTec-AD")["Defect Classification"] == 75.0
    assert r.overall["Defect Classification"] == 75.0
    assert r.dataset("MVTec-AD").n_by_type["Defect Classification"] == 4


def test_mmad_discrimination_is_mean_of_normal_and_abnormal():
    m = MMADMeter()
    for ok in (True, True, True, False):  # normal images: 3 / 4 = 75 %
        _upd(m, "Anomaly Detection", ok, normal=True)
    for ok in (True, False):  # abnormal images: 1 / 2 = 50 %
        _upd(m, "Anomaly Discrimination", ok, normal=False)
    row = m.results().dataset("MVTec-AD")
    assert row.normal_acc == 75.0 and row.abnormal_acc == 50.0
    assert row["Anomaly Discrimination"] == 62.5  # not the plain 4 / 6 = 66.7
    assert row.average == 62.5  # the only type present
    # other types without questions are NaN
    assert all(math.isnan(row[t]) for t in MMAD_TYPES[1:])


def test_mmad_average_of_seven_and_markdown():
    m = MMADMeter()
    want = {}
    for i, t in enumerate(MMAD_TYPES):
        right = i + 1  # out of 8
        for j in range(8):
            normal = t == MMAD_TYPES[0] and j % 2 == 0
            _upd(m, t, j < right, normal=normal)
        want[t] = 100 * right / 8
    # discrimination: normal images are j = 0, 2, 4, 6 -> 1 of 4 right; abnormal 0 of 4
    want[MMAD_TYPES[0]] = (25.0 + 0.0) / 2
    row = m.results().dataset("MVTec-AD")
    assert row.accuracy == approx(want)
    assert list(row.accuracy) == list(MMAD_TYPES)
    assert row.average == approx(sum(want.values()) / 7)
    md = m.to_markdown()
    lines = md.strip().splitlines()
    assert lines[0] == "| Dataset | " + " | ".join(MMAD_TYPES) + " | Average |"
    assert lines[2] == "| MVTec-AD | 12.5 | 25.0 | 37.5 | 50.0 | 62.5 | 75.0 | 87.5 | 50.0 |"
    assert lines[3].startswith("| **Average** | 12.5 |")
    assert len(lines) == 4


def test_mmad_unanswerable_variants():
    m = MMADMeter()
    for ok in (True, True, False, None):
        _upd(m, "Defect Description", ok)
    _upd(m, "Defect Analysis", None)
    _upd(m, "Defect Analysis", None)
    wrong = m.results().dataset("MVTec-AD")
    drop = m.results(unanswerable="drop").dataset("MVTec-AD")
    assert wrong["Defect Description"] == 50.0
    assert drop["Defect Description"] == approx(200 / 3)
    assert wrong["Defect Analysis"] == 0.0
    assert math.isnan(drop["Defect Analysis"])  # nothing left: skipped by the average
    assert wrong.average == 25.0
    assert drop.average == approx(200 / 3)
    assert wrong.n_unanswerable == drop.n_unanswerable == 3
    assert wrong.n_questions == drop.n_questions == 6
    assert m.results(unanswerable="drop").unanswerable == "drop"
    assert "| MVTec-AD | - | - | - | 66.7 | - | - | - | 66.7 |" in m.to_markdown(
        unanswerable="drop"
    )
    with pytest.raises(ValueError, match="'wrong' or 'drop'"):
        m.results(unanswerable="ignore")


def test_mmad_unanswerable_discrimination_sides():
    m = MMADMeter()
    _upd(m, "Anomaly Discrimination", True, normal=False)
    _upd(m, "Anomaly Discrimination", None, normal=True)
    wrong = m.results().dataset("MVTec-AD")
    drop = m.results(unanswerable="drop").dataset("MVTec-AD")
    assert (wrong.normal_acc, wrong.abnormal_acc, wrong["Anomaly Discrimination"]) == (
        0.0,
        100.0,
        50.0,
    )
    assert math.isnan(drop.normal_acc) and drop["Anomaly Discrimination"] == 100.0


def test_mmad_overall_is_mean_over_datasets():
    m = MMADMeter()
    _upd(m, "Object Classification", True, ds="A")
    for ok in (True, False, False):
        _upd(m, "Object Classification", ok, ds="B", cat="x")
    r = m.results()
    assert [row.dataset for row in r] == ["A", "B", None]
    assert r.dataset("B")["Object Classification"] == approx(100 / 3)
    assert r.overall["Object Classification"] == approx((100 + 100 / 3) / 2)
    assert r.pooled["Object Classification"] == 50.0
    assert r.overall.n_questions == r.pooled.n_questions == 4
    assert r.to_dicts()[0]["Object Classification"] == 100.0
    json.dumps(r.to_dicts())


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("Defect Classification", "Defect Classification"),
        ("defect classification", "Defect Classification"),
        ("DEFECT_CLASSIFICATION", "Defect Classification"),
        ("  defect   classification\n", "Defect Classification"),
        ("Defect-Localization", "Defect Localization"),
        ("DefectDescription", "Defect Description"),
        ("Object Structure", "Object Analysis"),
        ("object details", "Object Analysis"),
        ("Object Analysis", "Object Analysis"),
        ("Anomaly Detection", "Anomaly Discrimination"),
        ("anomaly discrimination", "Anomaly Discrimination"),
        ("object classification", "Object Classification"),
        ("Defect Analysis", "Defect Analysis"),
    ],
)
def test_question_type_normalisation(raw, canonical):
    assert normalize_question_type(raw) == canonical


def test_unknown_question_type_message():
    with pytest.raises(ValueError) as info:
        normalize_question_type("Defect Colour")
    msg = str(info.value)
    assert "'Defect Colour'" in msg
    assert all(t in msg for t in MMAD_TYPES)
    m = MMADMeter()
    with pytest.raises(ValueError, match="unknown MMAD question type"):
        _upd(m, "Object Counting", True)
    with pytest.raises(TypeError, match="correct must be a bool"):
        _upd(m, "Defect Analysis", "yes")
    with pytest.raises(TypeError):
        normalize_question_type(None)
    assert m.n_questions == 0


@st.composite
def mmad_records(draw):
    return draw(
        st.lists(
            st.tuples(
                st.sampled_from([*MMAD_TYPES, "Object Structure", "anomaly detection"]),
                st.sampled_from([True, False, None]),
                st.sampled_from(["MVTec-AD", "VisA", "GoodsAD"]),
                st.sampled_from(["a", "b"]),
                st.booleans(),
            ),
            max_size=30,
        )
    )


def mmad_of(recs) -> MMADMeter:
    m = MMADMeter()
    for t, ok, ds, cat, normal in recs:
        m.update(t, ok, dataset=ds, category=cat, is_normal=normal)
    return m


def _rows_equal(a, b):
    """Reports equal, NaN == NaN."""
    return json.dumps([r.to_dict() for r in [*a, a.pooled]]) == json.dumps(
        [r.to_dict() for r in [*b, b.pooled]]
    )


@given(mmad_records(), st.data())
@settings(max_examples=ex(80))
def test_mmad_merge_and_state_dict(recs, data):
    k = data.draw(st.integers(0, len(recs)))
    whole = mmad_of(recs)
    merged = mmad_of(recs[:k]).merge(mmad_of(recs[k:]))
    assert merged == whole
    back = MMADMeter.from_state_dict(json.loads(json.dumps(whole.state_dict())))
    assert back == whole
    for mode in ("wrong", "drop"):
        assert _rows_equal(merged.results(unanswerable=mode), whole.results(unanswerable=mode))
        assert _rows_equal(back.results(unanswerable=mode), whole.results(unanswerable=mode))


@given(mmad_records())
@settings(max_examples=ex(80))
def test_mmad_against_direct_count(recs):
    m = mmad_of(recs)
    for mode in ("wrong", "drop"):
        rep = m.results(unanswerable=mode)
        ds_avgs = {}
        for ds in sorted({r[2] for r in recs}):
            row = rep.dataset(ds)
            accs = {}
            for t in MMAD_TYPES:

                def acc(sel, t=t, ds=ds, mode=mode):
                    oks = [
                        ok
                        for tt, ok, d, _, n in recs
                        if d == ds and normalize_question_type(tt) == t and sel(n)
                    ]
                    if mode == "drop":
                        oks = [o for o in oks if o is not None]
                    return 100 * sum(o is True for o in oks) / len(oks) if oks else math.nan

                if t == MMAD_TYPES[0]:
                    parts = [v for v in (acc(lambda n: n), acc(lambda n: not n)) if v == v]
                    accs[t] = sum(parts) / len(parts) if parts else math.nan
                else:
                    accs[t] = acc(lambda n: True)
                got = row[t]
                assert (math.isnan(got) and math.isnan(accs[t])) or got == approx(accs[t])
            present = [v for v in accs.values() if v == v]
            if present:
                assert row.average == approx(sum(present) / len(present))
            else:
                assert math.isnan(row.average)
            ds_avgs[ds] = accs
        for t in MMAD_TYPES:
            vals = [a[t] for a in ds_avgs.values() if a[t] == a[t]]
            want = sum(vals) / len(vals) if vals else math.nan
            got = rep.overall[t]
            assert (math.isnan(got) and math.isnan(want)) or got == approx(want)


def test_mmad_state_dict_validation():
    m = MMADMeter()
    _upd(m, "Defect Analysis", True)
    good = m.state_dict()
    assert good["entries"] == [
        {
            "dataset": "MVTec-AD",
            "category": "bottle",
            "type": "Defect Analysis",
            "normal": False,
            "correct": 1,
            "wrong": 0,
            "unanswerable": 0,
        }
    ]
    bad = json.loads(json.dumps(good))
    bad["entries"][0]["type"] = "Nope"
    with pytest.raises(ValueError, match="unknown MMAD question type"):
        MMADMeter.from_state_dict(bad)
    with pytest.raises(ValueError, match="not a"):
        MMADMeter.from_state_dict(DetectionMeter().state_dict())


# --------------------------------------------------------------------------- thresholds
def _flat(pieces):
    return np.concatenate([np.asarray(p, dtype=np.float64).ravel() for p in pieces])


def brute_force(pix_s, pix_g, img_s, img_g):
    """Loop over every distinct score and inf; exact objective with Fractions.

    Ties go to the smallest threshold.  sklearn's ``f1_score`` checks the F1 values at
    the best threshold and at about 4 evenly spread candidates (calling it at every
    candidate would dominate the test's run time; Confusion.f1 is checked against it
    separately).
    """
    levels = []
    if pix_s is not None:
        levels.append((_flat(pix_s), _flat(pix_g) != 0))
    if img_s is not None:
        levels.append((np.asarray(img_s, np.float64), np.asarray(img_g) != 0))
    cands = [*sorted({float(v) for s, _ in levels for v in s}), math.inf]
    stride = max(1, len(cands) // 4)
    best = None
    for i, t in enumerate(cands):
        f1s = []
        for s, g in levels:
            p = s >= t
            tp, fp, fn = int((p & g).sum()), int((p & ~g).sum()), int((~p & g).sum())
            f1s.append(Fraction(1) if tp + fp + fn == 0 else Fraction(2 * tp, 2 * tp + fp + fn))
            if i % stride == 0:
                assert float(f1s[-1]) == approx(sk_f1(g, p))
        if len(f1s) == 1:
            h = f1s[0]
        else:
            a, b = f1s
            h = Fraction(0) if a + b == 0 else 2 * a * b / (a + b)
        if best is None or h > best[0]:
            best = (h, t, f1s)
    for (s, g), f in zip(levels, best[2], strict=True):
        assert float(f) == approx(sk_f1(g, s >= best[1]))
    return best


score_values = st.one_of(
    st.integers(0, 4).map(lambda v: v / 4),  # many ties
    st.floats(-3, 3, allow_nan=False, width=32),
)


image_values = st.one_of(score_values, st.floats(-3, 3, allow_nan=False))


@st.composite
def threshold_problems(draw):
    n_img = draw(st.integers(1, 4))
    pix_dtype = draw(st.sampled_from([np.float64, np.float32]))
    all_negative = draw(st.booleans()) and draw(st.booleans())
    pix_s, pix_g = [], []
    for _ in range(n_img):
        h, w = draw(st.integers(1, 3)), draw(st.integers(1, 4))
        s = draw(st.lists(score_values, min_size=h * w, max_size=h * w))
        g = (
            [False] * (h * w)
            if all_negative
            else draw(st.lists(st.booleans(), min_size=h * w, max_size=h * w))
        )
        pix_s.append(np.array(s, pix_dtype).reshape(h, w))
        pix_g.append(np.array(g, bool).reshape(h, w))
    # image scores: float64, sometimes one float64 ulp away from a (float32) pixel score
    near_pixel = st.tuples(st.sampled_from(_flat(pix_s).tolist()), st.sampled_from([-1, 0, 1]))
    img_s = np.array(
        [
            float(np.nextafter(v, math.copysign(math.inf, d))) if d else v
            for v, d in draw(st.lists(near_pixel, min_size=n_img, max_size=n_img))
        ]
    )
    if draw(st.booleans()):
        img_s = np.array(draw(st.lists(image_values, min_size=n_img, max_size=n_img)))
    img_g = np.zeros(n_img, bool) if all_negative else np.array([g.any() for g in pix_g])
    return pix_s, pix_g, img_s, img_g


@given(threshold_problems(), st.sampled_from(["both", "pixel", "image"]), st.integers(1, 4))
@settings(max_examples=ex(90))
def test_optimal_threshold_matches_brute_force(problem, levels, chunk):
    pix_s, pix_g, img_s, img_g = problem
    if levels == "image":
        pix_s = pix_g = None
    if levels == "pixel":
        img_s = img_g = None
    h, t, f1s = brute_force(pix_s, pix_g, img_s, img_g)
    for chunk_size in (chunk, 1 << 20):
        r = optimal_threshold(pix_s, pix_g, img_s, img_g, chunk_size=chunk_size)
        assert r.threshold == t
        assert r.harmonic_mean == approx(float(h))
        got = [f for f in (r.pixel_f1, r.image_f1) if f is not None]
        assert got == approx([float(f) for f in f1s])
        if pix_s is not None:
            assert r.pixel == confusion_at_threshold(pix_s, pix_g, r.threshold)
            assert r.pixel_f1 == approx(sk_f1(_flat(pix_g) != 0, _flat(pix_s) >= r.threshold))
        else:
            assert r.pixel is None and r.pixel_f1 is None
        if img_s is not None:
            assert r.image == confusion_at_threshold(img_s, img_g, r.threshold)
            assert r.image_f1 == f1_at_threshold(img_s, img_g, r.threshold)
        else:
            assert r.image is None and r.image_f1 is None


def test_optimal_threshold_all_negative_predicts_nothing():
    pix = [np.array([[0.2, 0.9]]), np.array([[0.5]])]
    gts = [np.zeros((1, 2)), np.zeros((1, 1))]
    r = optimal_threshold(pix, gts, [0.9, 0.5], [False, False])
    assert r.threshold == np.inf
    assert (r.pixel_f1, r.image_f1, r.harmonic_mean) == (1.0, 1.0, 1.0)
    assert r.pixel == Confusion(0, 0, 0, 3)


def test_optimal_threshold_ties_take_smallest_threshold():
    # scores 1 and 2 both separate perfectly at image level; pixel level has no positives
    # and every finite threshold makes a false positive
    r = optimal_threshold(image_scores=[1.0, 2.0, 0.0], image_gt=[1, 1, 0])
    assert r.threshold == 1.0 and r.image_f1 == 1.0
    r = optimal_threshold(image_scores=[3.0, 3.0, 1.0, 1.0], image_gt=[1, 0, 1, 0])
    # t = 1: tp 2, fp 2 -> F1 2/3; t = 3: tp 1, fp 1, fn 1 -> 1/2; inf -> 0
    assert r.threshold == 1.0 and r.image_f1 == approx(2 / 3)


def test_optimal_threshold_list_equals_concatenated_and_no_mutation():
    rng = np.random.default_rng(0)
    maps = [rng.random((int(rng.integers(3, 30)), 17)).astype(np.float32) for _ in range(12)]
    masks = [rng.random(m.shape) < 0.1 for m in maps]
    img_s = np.array([m.max() for m in maps], np.float64) - 0.05
    img_g = np.array([mk.any() for mk in masks])
    copies = [m.copy() for m in maps]
    a = optimal_threshold(maps, masks, img_s, img_g)
    b = optimal_threshold(
        np.concatenate([m.ravel() for m in maps]),
        np.concatenate([m.ravel() for m in masks]),
        list(img_s),
        list(img_g),
    )
    assert a == b
    assert all(np.array_equal(m, c) for m, c in zip(maps, copies, strict=True))


def test_optimal_threshold_mixed_dtypes_is_exact():
    # a float64 image score between two adjacent float32 pixel scores
    lo = np.float32(0.1)
    hi = np.nextafter(lo, np.float32(1))
    mid = float(lo) + (float(hi) - float(lo)) / 4  # rounds to lo in float32
    assert np.float32(mid) == lo
    assert np.float32(mid) in (lo, hi) and float(lo) < mid < float(hi)
    pix = np.array([lo, hi], np.float32)
    gt = np.array([0, 1])
    r = optimal_threshold(pix, gt, [mid, 0.0], [True, False])
    assert r.threshold == mid and r.pixel_f1 == 1.0 and r.image_f1 == 1.0
    assert r.pixel == confusion_at_threshold(pix, gt, r.threshold)
    assert apply_threshold(pix, r.threshold).tolist() == [False, True]
    assert (pix >= r.threshold).tolist() == [False, True]  # float64 scalar: exact


@given(
    st.lists(st.floats(-3, 3, width=32), min_size=1, max_size=20),
    st.sampled_from([np.float32, np.float16]),
)
@settings(max_examples=ex(100))
def test_counts_at_wider_thresholds_are_exact(values, dtype):
    a = np.sort(np.array(values, dtype))
    wide = a.astype(np.float64)
    t = np.concatenate(
        [wide, np.nextafter(wide, np.inf), np.nextafter(wide, -np.inf), [1e39, -1e39, np.inf]]
    )
    want = [(wide >= x).sum() for x in t]
    assert thresholds._at_least(a, t).tolist() == want
    assert [int(thresholds._at_least(a, np.float64(x))) for x in t] == want


def test_optimal_threshold_errors():
    with pytest.raises(ValueError, match="give pixel scores"):
        optimal_threshold()
    with pytest.raises(ValueError, match="give both image_scores and image_gt"):
        optimal_threshold(image_scores=[0.1])
    with pytest.raises(ValueError, match="finite"):
        optimal_threshold(image_scores=[0.1, np.nan], image_gt=[0, 1])
    with pytest.raises(ValueError, match="finite"):
        optimal_threshold(image_scores=[0.1, -np.inf], image_gt=[0, 1])
    with pytest.raises(ValueError, match="shapes"):
        optimal_threshold([np.zeros((2, 2))], [np.zeros((2, 3))])
    with pytest.raises(ValueError, match="2 score arrays but 1"):
        optimal_threshold([np.zeros(2), np.zeros(2)], [np.zeros(2)])
    with pytest.raises(ValueError, match="no scores"):
        optimal_threshold(image_scores=[], image_gt=[])
    with pytest.raises(ValueError, match="chunk_size"):
        optimal_threshold(image_scores=[1.0], image_gt=[1], chunk_size=0)


def test_optimal_threshold_large_input_is_fast():
    rng = np.random.default_rng(1)
    maps = [rng.random((256, 256), dtype=np.float32) for _ in range(40)]  # 2.6 M pixels
    masks = [rng.random((256, 256)) < 0.01 for _ in range(40)]
    for m, mk in zip(maps, masks, strict=True):
        m[mk] += 0.5
    img_s = np.array([m.max() for m in maps])
    img_g = np.array([i % 2 == 0 for i in range(40)])
    r = optimal_threshold(maps, masks, img_s, img_g)
    assert r.pixel == confusion_at_threshold(maps, masks, r.threshold)
    assert 0.0 < r.harmonic_mean <= 1.0


# --------------------------------------------------------------------------- PR curve
@given(
    st.lists(st.tuples(score_values, st.booleans()), min_size=1, max_size=40),
    st.booleans(),
    st.sampled_from([np.float64, np.float32]),
)
@settings(max_examples=ex(150))
def test_pr_curve_matches_sklearn(pairs, drop, dtype):
    s = np.array([p[0] for p in pairs], dtype)
    y = np.array([p[1] for p in pairs], int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns when there is no positive
        want = precision_recall_curve(y, s, drop_intermediate=drop)
    got = pr_curve(s, y, drop_intermediate=drop)
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=0)
    assert got[2].dtype == s.dtype


def test_pr_curve_list_of_maps_equals_pooled():
    rng = np.random.default_rng(2)
    maps = [rng.integers(0, 20, size=(int(rng.integers(1, 9)), 5)) / 20 for _ in range(6)]
    masks = [rng.random(m.shape) < 0.3 for m in maps]
    got = pr_curve(maps, masks)
    want = precision_recall_curve(
        np.concatenate([m.ravel() for m in masks]), np.concatenate([m.ravel() for m in maps])
    )
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=0)


def test_pr_curve_all_negative_recall_is_one():
    p, r, t = pr_curve(np.array([0.3, 0.1]), np.array([0, 0]))
    assert r.tolist() == [1.0, 1.0, 0.0] and p.tolist() == [0.0, 0.0, 1.0]
    assert t.tolist() == [0.1, 0.3]
