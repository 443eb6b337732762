"""Template questions of image folders: all five MMAD types the folders can answer.

Answers are checked by an independent computation written here (the mask's centroid
third, its area fraction against the documented size bounds, the form of a rectangle
from its sides, the folder names), never by calling the generator's own helpers.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from omniad_core import parse_response
from omniad_core.metrics import MMAD_TYPES
from omniad_train.data import (
    TEMPLATE_TYPES,
    DatasetFacts,
    ImageItem,
    Record,
    Reject,
    TemplateWriter,
    describe_mask,
    iter_mvtec,
    prepare,
    prepare_main,
)
from omniad_train.data.reasoning import choice_options

datasets = pytest.importorskip("datasets")

IMG = 32
H = W = 120
ROWS = ("top", "", "bottom")
COLS = ("left", "", "right")
#: docs/data.md: size words by area fraction
SIZE_BOUNDS = ((0.005, "tiny"), (0.02, "small"), (0.1, "medium-sized"), (2.0, "large"))
REGION_SENTENCE = (
    "According to the segmentation result, there is an anomaly in the object, which is "
    "located in the {}."
)
NORMAL_SENTENCE = "According to the segmentation result, there is no anomaly in the object."


# --------------------------------------------------------------------------- independent checks
def expected_region(mask: np.ndarray) -> str:
    ys, xs = np.nonzero(mask)
    cy, cx = (ys.mean() + 0.5) / mask.shape[0], (xs.mean() + 0.5) / mask.shape[1]
    row, col = min(2, int(cy * 3)), min(2, int(cx * 3))
    if row == 1 and col == 1:
        return "center"
    return " ".join(w for w in (COLS[col], ROWS[row]) if w)


def expected_size(mask: np.ndarray) -> str:
    area = mask.mean()
    return next(word for bound, word in SIZE_BOUNDS if area < bound)


def shown(folder: str) -> str:
    return folder.replace("_", " ")


def distinct(options: dict[str, str]) -> bool:
    texts = [t.casefold() for t in options.values()]
    return len(texts) == len(set(texts))


# --------------------------------------------------------------------------- builders
def _image(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(seed).integers(0, 255, (H, W, 3), dtype=np.uint8)
    Image.fromarray(arr).save(path)


def _mask(path: Path, boxes: list[tuple[int, int, int, int]]) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    m = np.zeros((H, W), np.uint8)
    for y0, y1, x0, x1 in boxes:
        m[y0:y1, x0:x1] = 255
    Image.fromarray(m).save(path)
    return m > 0


#: category -> defect folder -> (boxes, form by construction)
TREE = {
    "metal_nut": {
        "bent": ([(40, 80, 40, 80)], "compact"),  # 11%: large, center
        "color": ([(5, 7, 10, 100)], "elongated"),  # 1.25%: small, top
        "flip_side": ([(100, 110, 5, 15), (100, 110, 100, 110)], "two-part"),  # bottom
    },
    "screw": {"thread_side": ([(60, 63, 85, 88)], "compact")},  # 0.06%: tiny, right
    "pill": {
        "crack": ([(10, 40, 10, 25)], "compact"),
        "faulty_imprint": ([(70, 74, 20, 60)], "elongated"),
    },
}
N_DEFECT_IMAGES = sum(len(d) for d in TREE.values())


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    root = tmp_path_factory.mktemp("tpl") / "parts"
    masks = {}
    for k, (cat, defects) in enumerate(TREE.items()):
        c = root / cat
        _image(c / "train" / "good" / "000.png", 100 + k)
        _image(c / "test" / "good" / "000.png", 200 + k)
        for j, (defect, (boxes, _)) in enumerate(defects.items()):
            _image(c / "test" / defect / "000.png", 300 + 10 * k + j)
            masks[f"{cat}/{defect}"] = _mask(c / "ground_truth" / defect / "000_mask.png", boxes)
    return root, masks


def _records(items) -> list[Record]:
    return [r for r in items if isinstance(r, Record)]


# --------------------------------------------------------------------------- options
@settings(max_examples=200, deadline=None)
@given(
    answer=st.text(st.sampled_from("abcAB -_"), min_size=1, max_size=6).filter(str.strip),
    distractors=st.lists(st.text(st.sampled_from("abcAB -_"), min_size=1, max_size=6), max_size=8),
    seed=st.integers(0, 3),
    n=st.integers(2, 5),
)
def test_options_hold_the_answer_once_and_no_text_twice(answer, distractors, seed, n):
    distractors = [d for d in distractors if d.strip()]
    options, gold = choice_options(answer, distractors, seed=seed, key="k", tag="t", n=n)
    assert options[gold] == answer
    keys = [" ".join(t.split()).casefold() for t in options.values()]
    assert len(keys) == len(set(keys))  # the answer only once, no distractor twice
    unique = {" ".join(d.split()).casefold() for d in distractors} - {
        keys[list(options).index(gold)]
    }
    assert len(options) == min(n, 1 + len(unique))
    assert list(options) == [chr(65 + k) for k in range(len(options))]


def test_gold_letters_are_uniformly_placed():
    golds = Counter(
        choice_options("x", ["a", "b", "c"], seed=0, key=f"img{k}", tag="class")[1]
        for k in range(800)
    )
    assert set(golds) == set("ABCD") and all(150 <= n <= 250 for n in golds.values()), golds


# --------------------------------------------------------------------------- writer
@settings(max_examples=120, deadline=None)
@given(
    y0=st.integers(0, H - 2),
    x0=st.integers(0, W - 2),
    h=st.integers(1, 60),
    w=st.integers(1, 60),
    defect=st.sampled_from(["scratch", "broken_large", "hole"]),
    seed=st.integers(0, 5),
)
def test_answers_of_every_type_match_the_mask_and_the_folder_names(y0, x0, h, w, defect, seed):
    mask = np.zeros((H, W), bool)
    mask[y0 : y0 + h, x0 : x0 + w] = True
    y1, x1 = min(H, y0 + h), min(W, x0 + w)
    rh, rw = y1 - y0, x1 - x0
    cy, cx = (y0 + y1) / 2 / H, (x0 + x1) / 2 / W
    area = rh * rw / (H * W)
    assume(all(abs(v - b) > 1e-3 for v in (cy, cx) for b in (1 / 3, 2 / 3)))
    assume(all(abs(area - b) > 1e-4 for b, _ in SIZE_BOUNDS))
    facts = DatasetFacts("ds", {"cable": ("broken_large", "hole", "scratch"), "bottle": ("crack",)})
    item = ImageItem(
        image_id=f"mvtec:ds/cable/test/{defect}/000.png",
        image="x.png",
        rel=f"cable/test/{defect}/000.png",
        anomalous=True,
        category="cable",
        dataset="ds",
        defect=defect,
        mask="m.png",
        info=describe_mask(mask),
    )
    recs = TemplateWriter(TEMPLATE_TYPES, seed=seed).write(item, facts)
    by_type = {r.type: r for r in recs}
    assert list(by_type) == list(TEMPLATE_TYPES) and all(isinstance(r, Record) for r in recs)
    for r in recs:
        assert distinct(r.options) and r.question_source == "template" and r.defect == defect
    text = {t: r.options[r.answer] for t, r in by_type.items()}
    assert text["Anomaly Discrimination"] == "Yes"
    assert text["Defect Classification"] == shown(defect)
    assert set(by_type["Defect Classification"].options.values()) <= {
        "broken large",
        "hole",
        "scratch",
        "crack",
    }
    assert text["Defect Localization"] == expected_region(mask)
    form = "elongated" if max(rh, rw) / min(rh, rw) >= 3 else "compact"
    assert text["Defect Description"] == f"a {expected_size(mask)}, {form} {shown(defect)} defect"
    for t in by_type["Defect Description"].options.values():  # each distractor is false
        assert t == text["Defect Description"] or (
            expected_size(mask) not in t.split(", ")[0]
            or form not in t
            or shown(defect) + " defect" not in t
        )
    assert text["Object Classification"] == "cable"
    assert set(by_type["Object Classification"].options.values()) == {"cable", "bottle"}


def test_a_normal_image_gets_discrimination_and_object_questions_only():
    facts = DatasetFacts("ds", {"cable": ("cut",), "bottle": ("crack",)})
    item = ImageItem(
        image_id="mvtec:ds/bottle/test/good/000.png",
        image="x.png",
        rel="bottle/test/good/000.png",
        anomalous=False,
        category="bottle",
        dataset="ds",
    )
    recs = TemplateWriter(seed=0).write(item, facts)
    assert [(r.type, r.options[r.answer]) for r in recs] == [
        ("Anomaly Discrimination", "No"),
        ("Object Classification", "bottle"),
    ]
    assert recs[0].options == {"A": "Yes", "B": "No"}


def test_types_that_the_folders_cannot_answer_are_noted_with_the_reason(tree):
    root, _ = tree
    notes: list[dict] = []
    recs = _records(iter_mvtec(root, question_types=TEMPLATE_TYPES, notes=notes))
    assert notes == [
        {
            "dataset": "parts",
            "category": "screw",
            "type": "Defect Classification",
            "reason": "the category has 1 defect type (thread_side); it needs 2 or more defect "
            "folders",
        }
    ]
    classified = {r.image_id for r in recs if r.type == "Defect Classification"}
    assert not any("/screw/" in i for i in classified) and len(classified) == N_DEFECT_IMAGES - 1
    one = root / "screw"  # a single category folder: no Object Classification either
    notes = []
    recs = _records(iter_mvtec(one, question_types=TEMPLATE_TYPES, notes=notes))
    assert {n["type"] for n in notes} == {"Defect Classification", "Object Classification"}
    assert "it needs 2 or more" in notes[0]["reason"]
    assert {r.type for r in recs} == {
        "Anomaly Discrimination",
        "Defect Localization",
        "Defect Description",
    }


def test_the_same_seed_gives_the_same_records_and_another_seed_another_order(tree):
    root, _ = tree
    first = [r.model_dump() for r in iter_mvtec(root, question_types=TEMPLATE_TYPES, seed=3)]
    again = [r.model_dump() for r in iter_mvtec(root, question_types=TEMPLATE_TYPES, seed=3)]
    other = [r.model_dump() for r in iter_mvtec(root, question_types=TEMPLATE_TYPES, seed=4)]
    assert first == again
    assert [r["id"] for r in first] == [r["id"] for r in other]
    assert any(a["options"] != b["options"] for a, b in zip(first, other, strict=True))
    for a, b in zip(first, other, strict=True):  # the answer text never depends on the seed
        assert a["options"][a["answer"]] == b["options"][b["answer"]]


def test_the_reader_answers_every_type_from_the_files(tree):
    root, masks = tree
    recs = _records(iter_mvtec(root, question_types=TEMPLATE_TYPES))
    assert not [r for r in iter_mvtec(root) if isinstance(r, Reject)]
    for r in recs:
        cat, _, folder, _ = Path(r.image_id.removeprefix("mvtec:parts/")).parts
        text = r.options[r.answer]
        assert distinct(r.options)
        if r.type == "Anomaly Discrimination":
            assert text == ("No" if folder == "good" else "Yes")
        elif r.type == "Object Classification":
            assert text == shown(cat) and set(r.options.values()) <= {shown(c) for c in TREE}
        elif r.type == "Defect Classification":
            assert text == shown(folder)
        elif r.type == "Defect Localization":
            assert text == expected_region(masks[f"{cat}/{folder}"])
        else:
            form = TREE[cat][folder][1]
            size = expected_size(masks[f"{cat}/{folder}"])
            assert r.type == "Defect Description"
            assert text == f"a {size}, {form} {shown(folder)} defect"


# --------------------------------------------------------------------------- prepare
@pytest.fixture(scope="module")
def prepared(tree, tmp_path_factory):
    root, _ = tree
    out = tmp_path_factory.mktemp("tplout") / "out"
    return out, prepare(out, mvtec_root=root, image_size=IMG, verbose=False)


def test_prepare_writes_all_five_types_with_reasoning_that_agrees(prepared):
    out, res = prepared
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["question_types"] == list(TEMPLATE_TYPES)
    n_images = N_DEFECT_IMAGES + len(TREE)
    by_type = manifest["counts"]["sft"]["total"]["by_type"]
    assert by_type == {
        "Anomaly Discrimination": n_images,
        "Defect Classification": N_DEFECT_IMAGES - 1,
        "Defect Description": N_DEFECT_IMAGES,
        "Defect Localization": N_DEFECT_IMAGES,
        "Object Classification": n_images,
    }
    assert manifest["counts"]["sft"]["total"]["by_question_source"] == {"template": res.n_records}
    assert [n["category"] for n in manifest["skipped_questions"]] == ["screw"]
    (row,) = manifest["summary"]
    assert row["images"] == n_images and row["qa_pairs"] == res.n_records == sum(by_type.values())
    assert row["by_type"] == by_type and row["rejects"] == 0
    dd = datasets.load_from_disk(str(out / "sft"))["train"]
    for r in dd:
        target = r["completion"][0]["content"][0]["text"]
        parsed = parse_response(target, options=json.loads(r["options"]))
        assert parsed.format_ok and parsed.answer == r["answer"]
        mask = np.asarray(r["mask"]) > 0
        text = json.loads(r["options"])[r["answer"]]
        if mask.any():
            assert parsed.think.startswith(REGION_SENTENCE.format(expected_region(mask)))
        else:
            assert parsed.think.startswith(NORMAL_SENTENCE) and r["seg"] == ""
        if r["type"] in ("Defect Classification", "Defect Description", "Object Classification"):
            assert text in parsed.think and f"{r['answer']}" in parsed.think.split(". ")[-1]
        if r["type"] == "Defect Localization":
            assert f"in the {text}" in parsed.think


def test_question_types_option_and_the_no_location_alias(tree, tmp_path, capsys):
    root, _ = tree
    base = [str(root), "--image_size", str(IMG), "--quiet"]
    assert (
        prepare_main(
            [
                str(tmp_path / "a"),
                "--mvtec_root",
                *base,
                "--question_types",
                "Object Classification,anomaly detection",
            ]
        )
        == 0
    )
    m = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert m["question_types"] == ["Anomaly Discrimination", "Object Classification"]
    assert set(m["counts"]["sft"]["total"]["by_type"]) == set(m["question_types"])
    assert (
        prepare_main([str(tmp_path / "b"), "--mvtec_root", *base, "--no_location_questions"]) == 0
    )
    m = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert "Defect Localization" not in m["question_types"] and len(m["question_types"]) == 4
    assert m["location_questions"] is False
    assert "Defect Localization" not in m["counts"]["sft"]["total"]["by_type"]
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        prepare_main(
            [str(tmp_path / "c"), "--mvtec_root", *base, "--question_types", "Defect Analysis"]
        )
    assert exc.value.code == 2
    assert "need knowledge the folders do not hold" in capsys.readouterr().err


def test_max_per_category_keeps_one_defect_image_per_category(tree, tmp_path, capsys):
    root, _ = tree
    res = prepare(tmp_path / "one", mvtec_root=root, image_size=IMG, max_per_category=1)
    printed = capsys.readouterr().out
    m = json.loads((tmp_path / "one" / "manifest.json").read_text())
    assert m["n_images"] == len(TREE) and m["max_per_category"] == 1
    assert m["n_unselected_images"] == N_DEFECT_IMAGES + len(TREE) - len(TREE)
    rows = [r for s in datasets.load_from_disk(str(tmp_path / "one" / "sft")).values() for r in s]
    assert {r["category"] for r in rows} == set(TREE)
    assert all(np.asarray(r["mask"]).any() for r in rows)  # a defect image of each category
    assert res.table() in printed and "| **total** | 3 |" in printed
    again = prepare(
        tmp_path / "one2", mvtec_root=root, image_size=IMG, max_per_category=1, verbose=False
    )
    assert again.sources == res.sources  # the same images for the same seed
    four = prepare(
        tmp_path / "four", mvtec_root=root, image_size=IMG, max_per_category=4, verbose=False
    )
    assert four.n_images == len(TREE) + N_DEFECT_IMAGES  # every type + the normal image


class _Teacher:
    """A question writer with fixed answers, standing in for a teacher model."""

    name, version = "fake-teacher", "1"

    def write(self, item, facts):
        if not item.anomalous:
            return [Reject(source="teacher", record=item.rel, reason="no answer for normal images")]
        return [
            Record(
                id=f"{item.image_id}#analysis",
                image_id=item.image_id,
                image=item.image,
                mask=item.mask,
                anomalous=True,
                question="What could have caused the defect?",
                options={"A": "a collision", "B": "nothing"},
                answer="A",
                type="Defect Analysis",
                category=item.category,
                dataset=item.dataset,
                defect=item.defect,
                reasoning="The deformation suggests a collision.",
                reference=item.reference,
                source="mvtec",
                question_source="teacher",
            )
        ]

    def notes(self, facts):
        return [
            {
                "dataset": facts.dataset,
                "category": "",
                "type": "Object Analysis",
                "reason": "not asked",
            }
        ]


def test_a_question_writer_plugs_into_prepare(tree, tmp_path):
    root, _ = tree
    res = prepare(
        tmp_path / "t",
        mvtec_root=root,
        image_size=IMG,
        verbose=False,
        question_types=["Anomaly Discrimination"],
        question_writers=[_Teacher()],
    )
    m = json.loads((tmp_path / "t" / "manifest.json").read_text())
    assert m["question_writers"] == ["template/1", "fake-teacher/1"]
    total = m["counts"]["sft"]["total"]
    assert total["by_question_source"] == {
        "teacher": N_DEFECT_IMAGES,
        "template": N_DEFECT_IMAGES + len(TREE),
    }
    assert total["by_type"]["Defect Analysis"] == N_DEFECT_IMAGES
    assert res.n_rejects == len(TREE)  # the teacher's rejects of the normal images
    assert {n["type"] for n in m["skipped_questions"]} == {"Object Analysis"}
    rows = [r for s in datasets.load_from_disk(str(tmp_path / "t" / "sft")).values() for r in s]
    analysis = [r for r in rows if r["type"] == "Defect Analysis"]
    for r in analysis:
        target = r["completion"][0]["content"][0]["text"]
        assert "<think>The deformation suggests a collision.</think><answer>A</answer>" in target
    assert set(MMAD_TYPES) >= set(total["by_type"])


class _CountingTeacher(_Teacher):
    """The fake teacher, recording every image it is asked about (in prefetch and write)."""

    def __init__(self):
        self.prefetched: list[str] = []
        self.written: list[str] = []

    def prefetch(self, items, facts=None):
        self.prefetched += [it.rel for it in items]
        return len(self.prefetched)

    def write(self, item, facts):
        self.written.append(item.rel)
        return super().write(item, facts)


def test_the_teacher_is_asked_only_about_the_images_max_per_category_keeps(tree, tmp_path):
    """``--max_per_category 1`` keeps 3 of 9 images: the teacher hears of those 3 only, and
    the selection and the rows are the ones of the same run without a teacher."""
    root, _ = tree
    teacher = _CountingTeacher()
    kw = dict(mvtec_root=root, image_size=IMG, max_per_category=1, verbose=False)
    res = prepare(tmp_path / "t", question_writers=[teacher], **kw)
    prepare(tmp_path / "p", **kw)
    m = json.loads((tmp_path / "t" / "manifest.json").read_text())
    rows = [r for s in datasets.load_from_disk(str(tmp_path / "t" / "sft")).values() for r in s]
    kept = sorted({r["image_path"] for r in rows})
    assert len(kept) == len(TREE) == res.n_images  # one image per category
    assert m["n_unselected_images"] == N_DEFECT_IMAGES  # 9 test images, 3 kept, 6 left out
    assert len(teacher.prefetched) == len(teacher.written) == len(TREE)
    assert sorted(teacher.prefetched) == sorted(teacher.written)
    assert sorted(r["image_path"] for r in rows if r["type"] == "Defect Analysis") == kept
    plain_rows = [
        r for s in datasets.load_from_disk(str(tmp_path / "p" / "sft")).values() for r in s
    ]
    assert sorted({r["image_path"] for r in plain_rows}) == kept  # the same choice
    assert (
        m["n_unselected_images"]
        == json.loads((tmp_path / "p" / "manifest.json").read_text())["n_unselected_images"]
    )


def test_with_a_writer_the_choice_is_over_images_not_template_questions(tree, tmp_path):
    """Defect Localization only: normal images have no template question, yet a writer may
    write about them, so they stay candidates; the teacher still hears of the kept only."""
    root, _ = tree
    teacher = _CountingTeacher()
    kw = dict(
        mvtec_root=root, image_size=IMG, verbose=False, question_types=["Defect Localization"]
    )
    prepare(tmp_path / "t", question_writers=[teacher], max_per_category=4, **kw)
    m = json.loads((tmp_path / "t" / "manifest.json").read_text())
    # metal_nut: 3 defect types + normal = 4 (all kept); screw 2, pill 3: all kept
    assert len(teacher.prefetched) == len(teacher.written) == N_DEFECT_IMAGES + len(TREE)
    assert any("good" in rel for rel in teacher.written)  # a normal image was asked
    assert m["n_unselected_images"] == 0
    one = _CountingTeacher()
    prepare(tmp_path / "one", question_writers=[one], max_per_category=1, **kw)
    assert len(one.written) == len(TREE) and not any("good" in r for r in one.written)


def test_small_masks_count_their_regions_right():
    """A mask smaller than the 48-cell grid that counts regions was split by empty cells."""
    m = np.zeros((40, 40), bool)
    m[5:8, 2:38] = True
    info = describe_mask(m)
    assert info.components == 1 and info.shape == "a thin elongated region"
    two = np.zeros((20, 30), bool)
    two[2:6, 2:6] = two[12:18, 20:28] = True
    assert describe_mask(two).components == 2


def _mmad(root: Path, categories: list[str]) -> Path:
    yes_no = {"A": "Yes", "B": "No"}
    data = {}
    for k, cat in enumerate(categories):
        for j, folder in enumerate(("good", "broken")):
            key = f"DS/{cat}/image/{folder}/000.png"
            _image(root / key, 500 + 10 * k + j)
            entry = {
                "conversation": [
                    {
                        "Question": "Is there any defect?",
                        "Answer": "B" if j == 0 else "A",
                        "Options": yes_no,
                        "type": "Anomaly Detection",
                    },
                    {
                        "Question": "Which product?",
                        "Answer": "A",
                        "Options": {"A": cat, "B": "x"},
                        "type": "Object Classification",
                    },
                ]
            }
            if folder == "broken":
                _mask(root / f"DS/{cat}/mask/000.png", [(10, 30, 10, 30)])
                entry["mask_path"] = f"DS/{cat}/mask/000.png"
            data[key] = entry
    (root / "mmad.json").write_text(json.dumps(data))
    return root / "mmad.json"


def test_the_paper_mix_from_several_sources_with_a_summary_per_source_and_type(tree, tmp_path):
    root, _ = tree
    first = _mmad(tmp_path / "mmad_a", ["bottle", "cap"])
    second = _mmad(tmp_path / "mmad_b", ["zipper"])
    argv = [
        str(tmp_path / "mix"),
        "--mvtec_root",
        str(root),
        "--max_per_category",
        "1",
        "--mmad_json",
        str(first),
        "--mmad_json",
        str(second),
        "--mmad_max_per_category",
        "1",
        "--image_size",
        str(IMG),
        "--quiet",
    ]
    assert prepare_main(argv) == 0
    m = json.loads((tmp_path / "mix" / "manifest.json").read_text())
    assert [s["kind"] for s in m["summary"]] == ["mmad", "mmad", "mvtec"]
    a, b, mv = m["summary"]
    assert (a["input"], b["input"], mv["input"]) == (str(first), str(second), str(root))
    assert (a["images"], a["qa_pairs"], b["images"], b["qa_pairs"]) == (2, 4, 1, 2)
    assert a["by_question_source"] == {"dataset": 4}
    assert mv["images"] == len(TREE) and set(mv["by_type"]) == set(TEMPLATE_TYPES)
    assert m["n_unselected_images"] == 3 + N_DEFECT_IMAGES  # 3 MMAD normals, the rest of mvtec
    rows = [r for s in datasets.load_from_disk(str(tmp_path / "mix" / "sft")).values() for r in s]
    assert all(np.asarray(r["mask"]).any() for r in rows)  # one defect image per category


def test_a_rerun_with_all_types_reuses_the_work_folder(prepared, tree):
    out, first = prepared
    again = prepare(out, mvtec_root=tree[0], image_size=IMG, verbose=False)
    assert again.up_to_date and again.processed == 0 and again.images_read == 0
    assert again.reused == first.n_records and again.sources == first.sources
    fewer = prepare(
        out,
        mvtec_root=tree[0],
        image_size=IMG,
        verbose=False,
        question_types=["Defect Description"],
    )
    assert fewer.processed == 0 and fewer.n_records == N_DEFECT_IMAGES  # rows reused
