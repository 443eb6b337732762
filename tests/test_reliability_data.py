"""Hostile and broken dataset files (issue 10, items 3, 6, 7, 9 masks, 11).

Every input is built in ``tmp_path`` with NumPy and PIL.  The readers must never raise
for a bad record: each becomes a :class:`Reject` naming the entry, the field, what was
expected and what came, and every other record still comes through.  No path from a
data file may lead outside its root, and masks are read from their raw values.
"""

from __future__ import annotations

import copy
import json
import os
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from omniad_core.images import ImageError
from omniad_train.data import (
    Record,
    Reject,
    iter_jsonl,
    iter_mmad,
    iter_mvtec,
    make_record,
    prepare,
    prepare_main,
    read_mask,
)

IMG = 32  # image_size of the prepare runs (small: fast)
YES_NO = {"A": "Yes", "B": "No"}


# --------------------------------------------------------------------------- builders
def _image(path: Path, h: int = 24, w: int = 24, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    Image.fromarray(arr).save(path)
    return path


def _mask(path: Path, h: int = 24, w: int = 24, box=(4, 12, 4, 12)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    m = np.zeros((h, w), np.uint8)
    y0, y1, x0, x1 = box
    m[y0:y1, x0:x1] = 255
    Image.fromarray(m).save(path)
    return path


def _png16(path: Path, values: np.ndarray, color_type: int) -> Path:
    """A 16-bit PNG written by hand (Pillow cannot write 16-bit colour PNGs)."""
    h, w = values.shape[:2]
    raw = b"".join(b"\x00" + values[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
    return path


def _records(items) -> dict[str, Record]:
    return {r.id: r for r in items if isinstance(r, Record)}


def _rejects(items) -> dict[str, str]:
    return {r.record: r.reason for r in items if isinstance(r, Reject)}


# --------------------------------------------------------------------------- item 3
def test_reasoning_of_a_lt_and_100k_spaces_is_scanned_linearly():
    # The old pattern <\s*[/\\]?\s*(seg|think|answer)\s*> backtracked O(N^2) here:
    # 16,000 spaces took 13 s, so 100,000 would take minutes.
    spaces = " " * 100_000
    fields = dict(
        id="a",
        image_id="a",
        image="x.png",
        question="Q?",
        options=["Yes", "No"],
        answer="A",
        type="Anomaly Discrimination",
    )
    ok = make_record("jsonl", "line 1", reasoning="<" + spaces + "x", **fields)
    assert isinstance(ok, Record) and ok.reasoning == "<" + spaces + "x"
    tagged = make_record(
        "jsonl", "line 2", reasoning="<" + spaces + "/ THINK" + spaces + ">", **fields
    )
    assert isinstance(tagged, Reject) and "tags" in tagged.reason


_OLD_TAG = re.compile(r"<\s*[/\\]?\s*(seg|think|answer)\s*>", re.IGNORECASE)
_FRAGMENTS = ["<", ">", "/", "\\", " ", "\n", "\t", "seg", "THINK", "Answer", "x", "<<"]


@settings(max_examples=300)
@given(st.lists(st.sampled_from(_FRAGMENTS), max_size=14).map("".join))
def test_reasoning_tags_are_rejected_exactly_as_before(text):
    rec = make_record(
        "jsonl",
        "l",
        id="a",
        image_id="a",
        image="x.png",
        question="Q?",
        options=["Yes", "No"],
        answer="A",
        type="Anomaly Discrimination",
        reasoning="r " + text + " r",
    )
    assert isinstance(rec, Reject) == bool(_OLD_TAG.search(text))


# --------------------------------------------------------------------------- item 6: MMAD
def _mmad_tree(root: Path) -> dict:
    cat = "DS/bottle"
    _image(root / cat / "image" / "good" / "000.png")
    _image(root / cat / "image" / "good" / "001.png", seed=1)
    _image(root / cat / "image" / "broken" / "000.png", seed=2)
    _mask(root / cat / "mask" / "broken" / "000.png")
    _image(root / cat / "template" / "t.png", seed=3)

    def q(text, answer, qtype="Anomaly Detection", options=YES_NO):
        return {"Question": text, "Answer": answer, "Options": dict(options), "type": qtype}

    tpl = {"similar_templates": [f"{cat}/template/t.png"], "random_templates": []}
    return {
        f"{cat}/image/good/000.png": {
            "conversation": [q("Is there any defect?", "B"), q("Round?", "A", "Object Structure")],
            "mask_path": "",
            **tpl,
        },
        f"{cat}/image/broken/000.png": {
            "conversation": [q("Is there any defect?", "A")],
            "mask_path": f"{cat}/mask/broken/000.png",
            **tpl,
        },
        f"{cat}/image/good/001.png": {"conversation": [q("Is there any defect?", "B")], **tpl},
    }


GOOD, BROKEN, OTHER = (
    "DS/bottle/image/good/000.png",
    "DS/bottle/image/broken/000.png",
    "DS/bottle/image/good/001.png",
)
#: (entry, question index or None for the entry, field, wrong values)
_MMAD_BAD = [
    (GOOD, None, None, [5, "x", [], True]),  # the entry itself
    (GOOD, None, "conversation", [5, "x", {}, True]),
    (BROKEN, None, "mask_path", [5, [], {}, True]),
    (GOOD, None, "similar_templates", [5, "x", [5], {}, True]),
    (GOOD, None, "random_templates", [5, "x", [None], {"a": 1}]),
    (GOOD, 0, None, [5, "x", []]),  # the question itself
    (GOOD, 0, "Question", [5, [], {}, True]),
    (GOOD, 0, "Answer", [5, [], True, 1.5]),
    (GOOD, 0, "Options", [5, True, "A: Yes B: No"]),
    (GOOD, 0, "type", [5, [], {}]),
    (GOOD, 0, "Reasoning", [5, [], {}, True]),
    (GOOD, 0, "reasoning", [5, ["a"], 2.5]),
]


@pytest.fixture(scope="module")
def mmad_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("mmad")
    return root, _mmad_tree(root)


def _cases():
    for key, k, field, values in _MMAD_BAD:
        for value in values:
            yield pytest.param(
                key, k, field, value, id=f"{key.split('/')[-2]}-{k}-{field}-{value!r}"
            )


@pytest.mark.parametrize(("key", "k", "field", "value"), list(_cases()))
def test_mmad_field_of_a_wrong_type_rejects_only_its_entry(mmad_root, key, k, field, value):
    root, data = mmad_root
    data = copy.deepcopy(data)
    if k is None:
        if field is None:
            data[key] = value
        else:
            data[key][field] = value
    elif field is None:
        data[key]["conversation"][k] = value
    else:
        data[key]["conversation"][k][field] = value
    path = root / f"mmad-{abs(hash((key, k, field, repr(value))))}.json"
    path.write_text(json.dumps(data))
    items = list(iter_mmad(path, root))  # never raises
    recs, rejects = _records(items), _rejects(items)
    hit = {r: why for r, why in rejects.items() if r == key or r.startswith(key + "#")}
    assert hit, rejects
    for reason in hit.values():
        if field is not None:
            assert field in reason, reason
        if field is None and k is None:
            assert "entry" in reason and "object" in reason
        if field is None and k is not None:
            assert "question must be an object" in reason
        if field not in (None, "conversation", "Options"):
            assert "must be" in reason and "got" in reason
    # everything else still comes through
    others = [
        f"mmad:{e}#{j}" for e in data if e != key for j in range(len(data[e]["conversation"]))
    ]
    assert all(o in recs for o in others), (others, list(recs))
    if k is not None:  # the other questions of the entry too
        assert f"mmad:{GOOD}#1" in recs


def test_eval_mmad_lists_bad_entries_instead_of_stopping(mmad_root):
    from omniad_train.evaluation.mmad import collect_mmad_items

    root, data = mmad_root
    data = copy.deepcopy(data)
    data[GOOD]["conversation"][0]["Reasoning"] = 5
    data[OTHER]["similar_templates"] = 5
    path = root / "eval.json"
    path.write_text(json.dumps(data))
    items = collect_mmad_items(path, root)
    skipped = {i.id: i.skip for i in items if i.skip is not None}
    assert set(skipped) == {f"mmad:{GOOD}#0", f"mmad:{OTHER}#0"}
    assert '"Reasoning" must be a text' in skipped[f"mmad:{GOOD}#0"][1]
    assert '"similar_templates" must be a list of texts' in skipped[f"mmad:{OTHER}#0"][1]
    assert {i.id for i in items if i.record is not None} == {f"mmad:{GOOD}#1", f"mmad:{BROKEN}#0"}


def test_mmad_keys_that_are_no_paths_are_rejects(mmad_root, tmp_path):
    root, data = mmad_root
    data = copy.deepcopy(data)
    odd = {
        "DS/bottle/image/good/nul\u0000.png": data[GOOD],
        "DS/bottle/image/good/" + "x" * 5000 + ".png": data[GOOD],  # too long a file name
        "DS/bottle/image/good/\udcff.png": data[GOOD],  # not UTF-8 (a JSON \udcff escape)
    }
    data.update(copy.deepcopy(odd))
    path = tmp_path / "mmad.json"
    path.write_text(json.dumps(data))  # \udcff is written as an ASCII escape
    items = list(iter_mmad(path, root))
    rejects = _rejects(items)
    assert len(_records(items)) == 4
    assert len(rejects) == 3 * 2  # two questions each
    for reason in rejects.values():
        assert "cannot be used as a path" in reason or "image file not found" in reason
    out = tmp_path / "out"
    res = prepare(out, mmad_json=path, image_root=root, image_size=IMG, verbose=False)
    assert res.n_records == 4 and res.n_rejects == 6
    lines = (out / "rejects.jsonl").read_bytes().decode("utf-8").splitlines()
    assert len(lines) == 6 and all(json.loads(x)["reason"] for x in lines)


# --------------------------------------------------------------------------- item 6: JSONL
def _jsonl_base(root: Path) -> dict:
    _image(root / "img" / "a.png")
    _mask(root / "img" / "a_mask.png")
    _image(root / "img" / "ref.png", seed=1)
    return {
        "id": "x",
        "image": "img/a.png",
        "mask": "img/a_mask.png",
        "anomalous": True,
        "question": "What is the defect?",
        "options": {"A": "a stain", "B": "a hole"},
        "answer": "A",
        "type": "Defect Classification",
        "category": "cable",
        "dataset": "custom",
        "reasoning": "A stain at the top left.",
        "reference": ["img/ref.png"],
        "image_id": "img-a",
    }


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 5)
    | st.floats(allow_nan=False)
    | st.text(max_size=4),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=6,
)
_KIND_OK = {
    "id": lambda v: isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool)),
    "image": lambda v: isinstance(v, str),
    "mask": lambda v: isinstance(v, str),
    "anomalous": lambda v: isinstance(v, bool),
    "question": lambda v: isinstance(v, str),
    "options": lambda v: isinstance(v, (dict, list)),
    "answer": lambda v: isinstance(v, str),
    "type": lambda v: isinstance(v, str),
    "category": lambda v: isinstance(v, str),
    "dataset": lambda v: isinstance(v, str),
    "reasoning": lambda v: isinstance(v, str),
    "reference": lambda v: (
        isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v))
    ),
    "image_id": lambda v: isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool)),
}


@pytest.fixture(scope="module")
def jsonl_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("jsonl")
    return root, _jsonl_base(root)


@settings(max_examples=150)
@given(data=st.data())
def test_jsonl_field_of_a_wrong_type_rejects_only_its_line(jsonl_root, data):
    root, base = jsonl_root
    field = data.draw(st.sampled_from(sorted(_KIND_OK)))
    value = data.draw(_JSON.filter(lambda v: v is not None and not _KIND_OK[field](v)))
    bad = {**base, "id": "bad", field: value}
    lines = [{**base, "id": "first"}, bad, {**base, "id": "last"}]
    path = root / "records.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    items = list(iter_jsonl(path))  # never raises
    assert [type(i) for i in items] == [Record, Reject, Record]
    reason = items[1].reason
    assert f'"{field}" must be' in reason and "got" in reason, reason
    assert items[1].record.startswith("records.jsonl:2")


def test_jsonl_line_that_is_not_utf8_is_a_reject(jsonl_root, tmp_path):
    root, base = jsonl_root
    good = json.dumps({**base, "image": str(root / "img" / "a.png")}).encode()
    path = root / "latin1.jsonl"
    path.write_bytes(good + b"\n" + good.replace(b"stain", b"t\xe4che") + b"\n" + good + b"\n")
    items = list(iter_jsonl(path))
    assert [type(i) for i in items] == [Record, Reject, Record]
    assert (
        "not valid UTF-8" in items[1].reason and "save the JSONL file as UTF-8" in items[1].reason
    )


# --------------------------------------------------------------------------- item 6: MVTec
def test_mvtec_file_names_that_are_not_utf8_are_rejects(tmp_path):
    root = tmp_path / "mv"
    cat = root / "widget"
    _image(cat / "train" / "good" / "000.png")
    _image(cat / "test" / "good" / "000.png", seed=1)
    bad = os.fsencode(cat / "test" / "good") + b"/caf\xe9.png"
    _image(Path(os.fsdecode(bad)), seed=2)
    items = list(iter_mvtec(root))
    rejects = _rejects(items)
    assert len(_records(items)) == 1 and len(rejects) == 1
    (reason,) = rejects.values()
    assert "not valid UTF-8" in reason and "rename the file" in reason
    res = prepare(tmp_path / "out", mvtec_root=root, image_size=IMG, verbose=False)
    assert res.n_records == 1 and res.n_rejects == 1
    (line,) = (tmp_path / "out" / "rejects.jsonl").read_bytes().decode("utf-8").splitlines()
    assert "caf\\udce9.png" in json.loads(line)["record"]


# --------------------------------------------------------------------------- item 7
@pytest.fixture
def secret(tmp_path):
    """A file outside every data root, and a data root beside it."""
    s = _image(tmp_path / "secret" / "private.png", seed=99)
    _mask(tmp_path / "secret" / "private_mask.png")
    return s


def test_mmad_paths_must_stay_inside_the_image_root(tmp_path, secret):
    root = tmp_path / "mmad"
    data = _mmad_tree(root)
    entry = data[GOOD]
    os.symlink(secret, root / "DS" / "bottle" / "image" / "good" / "link.png")
    data.update(
        {
            "../secret/private.png": copy.deepcopy(entry),
            str(secret): copy.deepcopy(entry),  # an absolute key
            "DS/bottle/image/good/link.png": copy.deepcopy(entry),  # a symlink leading out
            "DS/bottle/image/good/001.png": {
                **copy.deepcopy(entry),
                "similar_templates": ["../../../../secret/private.png"],
            },
        }
    )
    data[BROKEN]["mask_path"] = "../secret/private_mask.png"
    (root / "mmad.json").write_text(json.dumps(data))
    items = list(iter_mmad(root / "mmad.json"))
    recs, rejects = _records(items), _rejects(items)
    assert set(recs) == {f"mmad:{GOOD}#0", f"mmad:{GOOD}#1"}
    for key in ("../secret/private.png", str(secret), "DS/bottle/image/good/link.png"):
        assert "leads outside the data root" in rejects[f"{key}#0"]
        assert str(secret) in rejects[f"{key}#0"]  # where it leads
    assert "the template '../../../../secret/private.png' leads outside" in rejects[f"{OTHER}#0"]
    assert "the mask_path '../secret/private_mask.png' leads outside" in rejects[f"{BROKEN}#0"]
    out = tmp_path / "out"
    res = prepare(out, mmad_json=root / "mmad.json", shots=1, image_size=IMG, verbose=False)
    assert res.n_records == 2
    import datasets

    real = os.path.realpath(root)
    for split in (ds := datasets.load_from_disk(str(out / "grpo"))):
        for path in ds[split]["image_path"]:
            assert os.path.realpath(path).startswith(real + os.sep)


def test_mvtec_symlinks_leading_outside_are_rejects(tmp_path, secret):
    root = tmp_path / "mv"
    cat = root / "widget"
    _image(cat / "train" / "good" / "000.png")
    os.symlink(secret, cat / "train" / "good" / "001.png")  # never a reference
    _image(cat / "test" / "good" / "000.png", seed=1)
    os.symlink(secret, cat / "test" / "good" / "001.png")
    _image(cat / "test" / "crack" / "000.png", seed=2)
    (cat / "ground_truth" / "crack").mkdir(parents=True)
    os.symlink(
        secret.with_name("private_mask.png"), cat / "ground_truth" / "crack" / "000_mask.png"
    )
    _image(cat / "test" / "hole" / "000.png", seed=3)
    loco = cat / "ground_truth" / "hole" / "000"
    _mask(loco / "000.png")
    os.symlink(secret.with_name("private_mask.png"), loco / "001.png")
    _image(cat / "test" / "hole" / "001.png", seed=4)
    _mask(cat / "ground_truth" / "hole" / "001_mask.png")
    for flag in (False, True):
        items = list(iter_mvtec(root, location_questions=flag, include_train_good=True))
        recs, rejects = _records(items), _rejects(items)
        assert set(rejects) == {
            "widget/train/good/001.png",
            "widget/test/good/001.png",
            "widget/test/crack/000.png",
            "widget/test/hole/000.png",
        }
        assert all("leads outside the data root" in why for why in rejects.values())
        assert (
            "mask 'widget/ground_truth/crack/000_mask.png'" in rejects["widget/test/crack/000.png"]
        )
        assert (
            "'001.png' in the mask 'widget/ground_truth/hole/000'"
            in rejects["widget/test/hole/000.png"]
        )
        assert len(recs) == 3 + flag  # train/good 000, test/good 000, hole 001 (+ location)
        for r in recs.values():
            assert r.reference == [str(cat / "train" / "good" / "000.png")] or r.image.endswith(
                "train/good/000.png"
            )


def test_jsonl_paths_outside_need_allow_outside_root(tmp_path, secret):
    root = tmp_path / "data"
    _image(root / "img" / "a.png")
    _mask(root / "img" / "a_mask.png")
    os.symlink(secret, root / "img" / "link.png")
    base = {"question": "Is there any defect?", "options": ["Yes", "No"], "answer": "A"}
    mask = str(tmp_path / "secret" / "private_mask.png")
    lines = [
        {**base, "image": "img/a.png", "mask": "../secret/private_mask.png"},
        {**base, "image": "../secret/private.png", "mask": mask},
        {**base, "image": str(secret), "mask": mask},
        {**base, "image": "img/link.png", "mask": mask},
        {**base, "image": "img/a.png", "mask": "img/a_mask.png", "reference": str(secret)},
        {**base, "image": "img/a.png", "answer": "B"},
    ]
    path = root / "r.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    items = list(iter_jsonl(path))
    assert [type(i) for i in items] == [Reject] * 5 + [Record]
    for rej, field in zip(items[:5], ["mask", "image", "image", "image", "reference"], strict=True):
        assert f'the "{field}" path' in rej.reason and "leads outside the data root" in rej.reason
        assert "allow_outside_root=True" in rej.reason and "--allow_outside_root" in rej.reason
    allowed = list(iter_jsonl(path, allow_outside_root=True))
    assert [type(i) for i in allowed] == [Record] * 6
    assert allowed[2].image == str(secret)
    # the same through the command line
    argv = [str(tmp_path / "o1"), "--jsonl", str(path), "--image_size", str(IMG), "--quiet"]
    assert prepare_main(argv) == 0
    rejects = (tmp_path / "o1" / "rejects.jsonl").read_text().splitlines()
    assert len(rejects) == 5
    argv = [
        str(tmp_path / "o2"),
        "--jsonl",
        str(path),
        "--image_size",
        str(IMG),
        "--quiet",
        "--allow_outside_root",
    ]
    assert prepare_main(argv) == 0
    assert (tmp_path / "o2" / "rejects.jsonl").read_text() == ""
    manifest = json.loads((tmp_path / "o2" / "manifest.json").read_text())
    assert manifest["sources"][0]["allow_outside_root"] is True


# --------------------------------------------------------------------------- item 11
@pytest.fixture
def empty_mask_tree(tmp_path):
    root = tmp_path / "mv"
    cat = root / "widget"
    _image(cat / "train" / "good" / "000.png")
    _image(cat / "test" / "good" / "000.png", seed=1)
    _image(cat / "test" / "crack" / "000.png", seed=2)
    _mask(cat / "ground_truth" / "crack" / "000_mask.png")
    _image(cat / "test" / "crack" / "001.png", seed=3)
    _mask(cat / "ground_truth" / "crack" / "001_mask.png", box=(0, 0, 0, 0))  # all zero
    return root


EMPTY = "widget/test/crack/001.png"


@pytest.mark.parametrize("location_questions", [False, True])
def test_an_empty_mask_rejects_its_defect_image_in_the_reader(empty_mask_tree, location_questions):
    items = list(iter_mvtec(empty_mask_tree, location_questions=location_questions))
    rejects = _rejects(items)
    assert list(rejects) == [EMPTY]
    assert (
        "is empty (all zero)" in rejects[EMPTY] and "move the image to test/good" in rejects[EMPTY]
    )
    assert not any(r.image.endswith(EMPTY) for r in _records(items).values())
    assert len(_records(items)) == 2 + location_questions


def test_prepare_and_the_detection_runner_apply_the_same_rule(empty_mask_tree, tmp_path):
    from omniad_train.evaluation.detection import collect_detection_items

    (reason,) = _rejects(iter_mvtec(empty_mask_tree, location_questions=False)).values()
    items = collect_detection_items({"mv": empty_mask_tree})
    skipped = {i.id: i.skip for i in items if i.skip is not None}
    assert skipped == {f"mvtec:mv/{EMPTY}#defect": ("mask", reason)}
    assert sum(i.record is not None for i in items) == 2
    for flag in (False, True):
        out = tmp_path / f"out{flag}"
        prepare(
            out, mvtec_root=empty_mask_tree, image_size=IMG, location_questions=flag, verbose=False
        )
        (line,) = (out / "rejects.jsonl").read_text().splitlines()
        assert json.loads(line) == {"source": "mvtec", "record": EMPTY, "reason": reason}


# --------------------------------------------------------------------------- item 9 (masks)
def test_16_and_32_bit_and_float_masks_keep_every_pixel(tmp_path):
    v16 = np.zeros((6, 7), np.uint16)
    v16[0, 0], v16[1, 2], v16[5, 6] = 1, 256, 65535
    want = v16 != 0
    for suffix in ("png", "tif"):
        p = tmp_path / f"m16.{suffix}"
        Image.fromarray(v16).save(p)
        assert Image.open(p).mode == "I;16"
        assert np.array_equal(read_mask(p), want)
    v32 = v16.astype(np.int32)
    v32[3, 3], v32[4, 4] = -7, 2**31 - 1
    Image.fromarray(v32).save(tmp_path / "m32.tif")
    assert Image.open(tmp_path / "m32.tif").mode == "I"
    assert np.array_equal(read_mask(tmp_path / "m32.tif"), v32 != 0)
    f = np.zeros((6, 7), np.float32)
    f[0, 0], f[1, 1], f[2, 2], f[3, 3] = 1e-6, 0.5, -0.5, 3e38
    Image.fromarray(f).save(tmp_path / "mf.tif")
    assert Image.open(tmp_path / "mf.tif").mode == "F"
    assert np.argwhere(read_mask(tmp_path / "mf.tif")).tolist() == [[0, 0], [1, 1], [3, 3]]


def test_a_nan_mask_is_an_error_naming_the_file(tmp_path):
    f = np.zeros((4, 4), np.float32)
    f[1, 1] = np.nan
    p = tmp_path / "nan_mask.tif"
    Image.fromarray(f).save(p)
    with pytest.raises(ImageError, match=r"nan_mask\.tif.*NaN or infinite values \(1 pixels\)"):
        read_mask(p)


def test_16_bit_colour_masks_are_refused_not_truncated(tmp_path):
    rgb = np.zeros((4, 4, 3), np.uint16)
    rgb[0, 0, 0] = 1  # Pillow keeps the high byte: this pixel would vanish
    la = np.zeros((4, 4, 2), np.uint16)
    la[1, 1, 0], la[..., 1] = 200, 65535
    for path in (_png16(tmp_path / "rgb16.png", rgb, 2), _png16(tmp_path / "la16.png", la, 4)):
        with pytest.raises(
            ImageError, match=rf"{path.name}.*16-bit .* file.*high bytes.*grayscale"
        ):
            read_mask(path)


def test_prepare_keeps_the_low_values_of_a_16_bit_mask(tmp_path):
    _image(tmp_path / "a.png", 8, 10)
    m = np.zeros((8, 10), np.uint16)
    m[2:4, 3:6] = 1  # dark in an 8-bit view, anomalous all the same
    Image.fromarray(m).save(tmp_path / "a_mask.png")
    f = np.zeros((8, 10), np.float32)
    f[0, 0] = np.nan
    Image.fromarray(f).save(tmp_path / "b_mask.tif")
    base = {"question": "Is there any defect?", "options": ["Yes", "No"], "answer": "A"}
    lines = [
        {**base, "image": "a.png", "mask": "a_mask.png"},
        {**base, "image": "a.png", "mask": "b_mask.tif", "id": "nan"},
    ]
    (tmp_path / "r.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    out = tmp_path / "out"
    res = prepare(out, jsonl=tmp_path / "r.jsonl", image_size=IMG, verbose=False)
    assert res.n_records == 1 and res.n_rejects == 1
    assert "NaN or infinite values" in (out / "rejects.jsonl").read_text()
    import datasets

    row = datasets.load_from_disk(str(out / "grpo"))["train"][0]
    assert np.array_equal(np.asarray(row["mask"]) > 0, m != 0)


def test_masks_cached_by_the_old_reader_are_read_again(tmp_path):
    """A work folder of an earlier version holds masks read the old way (a negative float
    counted as anomalous): they must not be reused, whatever is cached under the old key."""
    from omniad_train.data import cache as cache_module
    from omniad_train.data.records import MaskInfo

    f = np.zeros((4, 4), np.float32)
    f[0, 0], f[1, 1] = -1.0, 1.0
    src = tmp_path / "m.tif"
    Image.fromarray(f).save(src)
    old_key = cache_module.digest("mask", cache_module.fingerprint(src))  # the key before
    masks = tmp_path / "work" / "masks"
    masks.mkdir(parents=True)
    (masks / f"{old_key}.png").write_bytes(cache_module.png_bytes(np.full((4, 4), 255, np.uint8)))
    stale = MaskInfo(height=4, width=4, area=2 / 16)
    (masks / f"{old_key}.json").write_text(stale.model_dump_json())
    cache = cache_module.WorkCache(tmp_path / "work", IMG)
    entry = cache.mask(str(src))
    assert cache.reads["mask"] == 1 and entry.info.area == 1 / 16
    assert np.argwhere(cache.mask_array(entry.key)).tolist() == [[1, 1]]


def test_a_file_refused_by_the_pixel_limit_is_read_again_once_the_limit_is_raised(
    tmp_path, monkeypatch
):
    """Errors are remembered per file, but not across pixel limits (item 13 with resume)."""
    from omniad_train.data.cache import WorkCache

    src = tmp_path / "big.png"
    Image.fromarray(np.full((40, 50, 3), 120, np.uint8)).save(src)
    cache = WorkCache(tmp_path / "work", 16)
    monkeypatch.setenv("OMNIAD_MAX_IMAGE_PIXELS", "1000")
    with pytest.raises(ImageError, match=r"2,000|2000"):
        cache.image(str(src))
    with pytest.raises(ImageError):  # remembered: not decoded again under the same limit
        cache.image(str(src))
    assert cache.reads["image"] == 1
    monkeypatch.setenv("OMNIAD_MAX_IMAGE_PIXELS", "5000")
    entry = cache.image(str(src))
    assert (entry.width, entry.height) == (50, 40)
    assert cache.reads["image"] == 2
