"""The synthetic defect generator: determinism, exact masks, readers, answer correctness."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from omniad_core.images import load_mask
from omniad_core.metrics import MMAD_TYPES, normalize_question_type
from omniad_core.prompts import DEFECT_QUESTION
from omniad_train.data.reasoning import LOCATION_QUESTION, REGIONS, describe_mask
from omniad_train.data.records import Record, Reject
from omniad_train.data.sources import iter_mmad, iter_mvtec
from omniad_train.synthetic import (
    CATEGORIES,
    DEFECT_NAMES,
    DESCRIPTIONS,
    generate,
    render_sample,
    sample_seed,
    synthetic_main,
)
from omniad_train.synthetic.defects import confusable
from omniad_train.synthetic.questions import (
    CLASSIFICATION_QUESTION,
    COUNT_QUESTION,
    DESCRIPTION_QUESTION,
    OBJECT_QUESTION,
)
from omniad_train.synthetic.raster import dilate

PAIRS = [(c, d) for c in CATEGORIES for d in CATEGORIES[c].defects]
SIZE = 64


def _changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a != b).any(-1)


# --------------------------------------------------------------------------- rendering
@pytest.mark.parametrize("category", list(CATEGORIES))
def test_render_is_deterministic_by_seed(category):
    defect = CATEGORIES[category].defects[0]
    a = render_sample(category, defect, seed=7, size=96)
    b = render_sample(category, defect, seed=7, size=96)
    c = render_sample(category, defect, seed=8, size=96)
    assert a.image.tobytes() == b.image.tobytes()
    assert a.mask.tobytes() == b.mask.tobytes()
    assert a.description == b.description and a.attrs == b.attrs
    assert a.image.tobytes() != c.image.tobytes()


@pytest.mark.parametrize(("category", "defect"), PAIRS)
def test_mask_is_exactly_the_changed_pixels(category, defect):
    for seed, size in ((3, 128), (4, 96)):
        s = render_sample(category, defect, seed=seed, size=size)
        clean = render_sample(category, None, seed=seed, size=size)
        assert s.mask is not None and s.mask.dtype == bool and s.mask.shape == (size, size)
        assert s.mask.any(), "a defect image needs a non-empty mask"
        changed = _changed(s.image, clean.image)
        # the brief's criterion: no change outside the mask dilated by one pixel ...
        assert not (changed & ~dilate(s.mask, 1)).any()
        # ... and mostly changed pixels inside, visibly (>= 2 grey levels) so
        diff = np.abs(s.image.astype(int) - clean.image.astype(int)).max(-1)
        assert (diff[s.mask] >= 2).mean() >= 0.9
        # by construction the mask is exactly the set of changed pixels
        assert np.array_equal(changed, s.mask)
        assert s.description in DESCRIPTIONS[defect]


def test_normal_images_have_no_mask_and_match_their_defect_twin_outside_the_mask():
    clean = render_sample("pcb", None, seed=11, size=96)
    assert clean.mask is None and clean.defect is None and clean.description is None
    missing = render_sample("pcb", "missing", seed=11, size=96)
    assert missing.attrs["components"] == clean.attrs["components"] - 1
    assert np.array_equal(missing.image[~missing.mask], clean.image[~missing.mask])


def test_render_rejects_bad_arguments():
    with pytest.raises(ValueError, match="unknown category"):
        render_sample("banana", seed=0)
    with pytest.raises(ValueError, match="has no defect"):
        render_sample("fabric", "missing", seed=0)
    with pytest.raises(ValueError, match="at least 64"):
        render_sample("wood", seed=0, size=32)


@settings(max_examples=25, deadline=None)
@given(
    pair=st.sampled_from(PAIRS),
    seed=st.integers(0, 2**63 - 1),
    size=st.integers(64, 160),
)
def test_invariants_over_seeds_and_sizes(pair, seed, size):
    category, defect = pair
    s = render_sample(category, defect, seed=seed, size=size)
    assert s.image.shape == (size, size, 3) and s.image.dtype == np.uint8
    assert s.mask.shape == (size, size) and s.mask.any()
    clean = render_sample(category, None, seed=seed, size=size)
    assert np.array_equal(_changed(s.image, clean.image), s.mask)
    assert describe_mask(s.mask).region in REGIONS
    assert isinstance(s.attrs["colour"], str) and s.attrs["colour"]
    assert clean.attrs["colour"] == s.attrs["colour"]


# --------------------------------------------------------------------------- writer
@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    result = generate(
        out,
        n_train_good=3,
        n_test_good=2,
        n_test_defect_per_type=2,
        image_size=SIZE,
        seed=5,
        workers=1,
        progress=False,
    )
    return result


def _digest(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "synthetic.json"
    }


def test_generate_layout_and_counts(synth):
    root = synth.mvtec_root
    assert root == synth.out_dir / "synth" and synth.mmad_json == synth.out_dir / "mmad.json"
    assert synth.image_root == synth.out_dir
    n_defect_types = sum(len(c.defects) for c in CATEGORIES.values())
    assert synth.n_images == len(CATEGORIES) * (3 + 2) + 2 * n_defect_types
    for cat in CATEGORIES.values():
        assert len(list((root / cat.name / "train" / "good").glob("*.png"))) == 3
        assert len(list((root / cat.name / "test" / "good").glob("*.png"))) == 2
        assert not (root / cat.name / "ground_truth" / "good").exists()
        for d in cat.defects:
            images = sorted((root / cat.name / "test" / d).glob("*.png"))
            masks = sorted((root / cat.name / "ground_truth" / d).glob("*_mask.png"))
            assert [p.stem for p in images] == ["000", "001"]
            assert [p.name for p in masks] == ["000_mask.png", "001_mask.png"]
            m = np.asarray(Image.open(masks[0]))
            assert m.shape == (SIZE, SIZE) and set(np.unique(m)) == {0, 255}
    manifest = json.loads((synth.out_dir / "synthetic.json").read_text())
    assert manifest["n_images"] == synth.n_images and manifest["dataset"] == "synth"
    assert "images/s" in synth.summary()


def test_mvtec_reader_accepts_everything(synth):
    recs = list(iter_mvtec(synth.mvtec_root, include_train_good=True))
    rejects = [r for r in recs if isinstance(r, Reject)]
    assert rejects == []
    by_type = Counter(r.type for r in recs)
    n_defect = synth.n_images - len(CATEGORIES) * 5
    assert by_type["Anomaly Discrimination"] == synth.n_images
    assert by_type["Defect Localization"] == n_defect
    assert all(r.dataset == "synth" for r in recs)
    assert all(r.reference for r in recs)


def test_mmad_reader_accepts_everything(synth):
    recs = list(iter_mmad(synth.mmad_json))
    rejects = [r for r in recs if isinstance(r, Reject)]
    assert rejects == []
    assert len(recs) == synth.n_questions
    types = {r.type for r in recs}
    assert types == set(MMAD_TYPES) - {"Defect Analysis"}
    for r in recs:
        assert isinstance(r, Record)
        assert r.reference and all(Path(p).is_file() for p in r.reference)
        assert ("/good/" in r.image) == (not r.anomalous)
        assert r.anomalous == (r.mask is not None)


def test_answers_are_correct_by_construction(synth):
    data = json.loads(synth.mmad_json.read_text())
    letters = Counter()
    for key, entry in data.items():
        dataset, cat, split, folder, name = key.split("/")
        assert (dataset, split) == ("synth", "test") and cat in CATEGORIES
        defect = None if folder == "good" else folder
        index = int(name[:3])
        sample = render_sample(
            cat, defect, seed=sample_seed(5, "test", cat, f"test/{folder}", index), size=SIZE
        )
        stored = np.asarray(Image.open(synth.image_root / key).convert("RGB"))
        assert np.array_equal(stored, sample.image)
        if defect is not None:
            mask = load_mask(synth.image_root / entry["mask_path"])
            assert np.array_equal(mask, sample.mask)
        else:
            assert entry["mask_path"] is None
        templates = entry["similar_templates"] + entry["random_templates"]
        assert templates and all(f"/{cat}/train/good/" in t for t in templates)
        seen = set()
        for q in entry["conversation"]:
            opts, answer, question = q["Options"], q["Answer"], q["Question"]
            text = opts[answer]
            assert len(set(opts.values())) == len(opts)
            assert normalize_question_type(q["type"]) in MMAD_TYPES
            seen.add(question)
            if question == DEFECT_QUESTION:
                assert opts == {"A": "Yes", "B": "No"}
                assert answer == ("B" if defect is None else "A")
                continue
            assert len(opts) == 4 and list(opts) == ["A", "B", "C", "D"]
            letters[answer] += 1
            if question == CLASSIFICATION_QUESTION:
                assert text == DEFECT_NAMES[defect]
            elif question == LOCATION_QUESTION:
                assert text == describe_mask(mask).region
            elif question == DESCRIPTION_QUESTION:
                assert text == sample.description
                assert not any(confusable(o, text) for o in opts.values() if o != text)
            elif question == OBJECT_QUESTION:
                assert text == CATEGORIES[cat].title
            elif question == COUNT_QUESTION:
                assert text == str(sample.attrs["components"])
            elif question.startswith("What colour"):
                assert text == sample.attrs["colour"]
            else:
                assert text in {str(v) for v in sample.attrs.values()}
        assert OBJECT_QUESTION in seen
        if defect is not None:
            assert {CLASSIFICATION_QUESTION, LOCATION_QUESTION, DESCRIPTION_QUESTION} <= seen
    assert len(letters) == 4 and min(letters.values()) > 0.1 * sum(letters.values())


def test_generate_is_deterministic_and_independent_of_workers(synth, tmp_path):
    again = generate(
        tmp_path / "again",
        n_train_good=3,
        n_test_good=2,
        n_test_defect_per_type=2,
        image_size=SIZE,
        seed=5,
        workers=2,
        progress=False,
    )
    assert _digest(again.out_dir) == _digest(synth.out_dir)


def test_train_split_differs_from_test_split(tmp_path):
    kw = dict(n_train_good=1, n_test_good=1, n_test_defect_per_type=1, image_size=SIZE)
    test = generate(tmp_path / "t", categories=["wood"], workers=1, progress=False, **kw)
    train = generate(
        tmp_path / "t2", categories="wood", split="train", workers=1, progress=False, **kw
    )
    assert train.dataset == "synth_train" and test.dataset == "synth"
    a = _digest(test.mvtec_root)
    b = _digest(train.mvtec_root)
    assert a.keys() == b.keys()
    assert all(a[k] != b[k] for k in a if k.endswith(".png") and "_mask" not in k)
    assert list(iter_mmad(train.mmad_json))


def test_regenerate_replaces_own_output_but_not_foreign_data(tmp_path):
    kw = dict(categories=["pill"], image_size=SIZE, workers=1, progress=False)
    generate(tmp_path, n_train_good=2, n_test_good=2, n_test_defect_per_type=2, **kw)
    generate(tmp_path, n_train_good=1, n_test_good=1, n_test_defect_per_type=1, **kw)
    assert len(list((tmp_path / "synth" / "pill" / "test" / "good").glob("*.png"))) == 1
    foreign = tmp_path / "other"
    (foreign / "mydata").mkdir(parents=True)
    (foreign / "mydata" / "keep.txt").write_text("not ours")
    with pytest.raises(FileExistsError):
        generate(foreign, dataset="mydata", **kw)
    assert (foreign / "mydata" / "keep.txt").is_file()
    with pytest.raises(ValueError, match="unknown categories"):
        generate(tmp_path / "x", categories=["banana"], progress=False)
    with pytest.raises(ValueError, match="split"):
        generate(tmp_path / "x", split="val", progress=False)


def test_cli(tmp_path, capsys):
    out = tmp_path / "cli"
    argv = [
        str(out),
        "--categories",
        "screw,pcb",
        "--n_train_good",
        "1",
        "--n_test_good",
        "1",
        "--n_test_defect_per_type",
        "1",
        "--image_size",
        "64",
        "--workers",
        "1",
        "--no_progress",
        "--seed",
        "2",
    ]
    assert synthetic_main(argv) == 0
    assert "images" in capsys.readouterr().out
    assert (out / "synth" / "pcb" / "test" / "missing" / "000.png").is_file()
    assert not (out / "synth" / "wood").exists()
    assert [r for r in iter_mmad(out / "mmad.json") if isinstance(r, Reject)] == []
    assert synthetic_main(["--list"]) == 0
    assert "misplaced" in capsys.readouterr().out
    assert synthetic_main([str(tmp_path / "y"), "--categories", "banana"]) == 1
    assert synthetic_main([]) == 2
