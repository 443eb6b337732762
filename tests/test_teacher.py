"""Teacher annotation (issue 14 item 2): a model behind an endpoint writes the analysis questions.

Unit tests without a server cover the JSON scanner (hypothesis: never raises, linear,
finds the first object), each rule of the pydantic validation, the region check, the
prompt file and the cache keys.  The server tests run the real ``transformers serve`` on
127.0.0.1 with a tiny model taught two fixed replies, keyed by the category name in the
prompt: a valid JSON answer for ``bottle`` and an invalid one for ``cable``.  Requests are
counted from the server's own log (one ``POST /v1/chat/completions`` line per request).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from omniad_core.backends import EndpointBackend
from omniad_train.data import ImageItem, MaskInfo, prepare
from omniad_train.data.prepare import PrepareError
from omniad_train.data.teacher import (
    TeacherError,
    TeacherPrompt,
    TeacherWriter,
    add_teacher_args,
    default_prompt_path,
    teacher_from_args,
    teacher_image,
)
from omniad_train.data.teacher_json import (
    MAX_CANDIDATES,
    MAX_REPLY_CHARS,
    TeacherQuestion,
    allowed_regions,
    check_reply,
    find_json_object,
    region_problem,
)

OA = ("Object Analysis",)
BOTH = ("Defect Analysis", "Object Analysis")


# --------------------------------------------------------------------------- JSON scanner
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda kids: (
        st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=6), kids, max_size=3)
    ),
    max_leaves=12,
)


@given(
    prefix=st.text(alphabet=st.characters(blacklist_characters="{"), max_size=40),
    obj=st.dictionaries(st.text(max_size=8), _json, max_size=4),
    suffix=st.text(max_size=40),
)
def test_scanner_finds_the_first_object(prefix, obj, suffix):
    text = prefix + json.dumps(obj, ensure_ascii=False) + suffix
    scan = find_json_object(text)
    assert scan.value == obj
    assert scan.span[0] == len(prefix)


@given(st.text(alphabet='{}[]":,\\ab1 \n', max_size=300) | st.text(max_size=300))
def test_scanner_never_raises_and_is_linear(text):
    scan = find_json_object(text)
    assert (scan.value is None) == (scan.problem is not None)
    assert scan.steps <= (MAX_CANDIDATES + 1) * len(text) + 1
    if scan.value is not None:
        assert json.loads(text[slice(*scan.span)]) == scan.value


def test_scanner_hostile_inputs_stay_bounded():
    for text in (
        "{" * 200_000,  # nesting: stopped at MAX_DEPTH
        "[" * 5 + '{"a": ' + "[" * 100_000,
        '{"a": "' + "x{" * 50_000,  # an unclosed string full of braces
        "{}" * 100_000,  # many objects: the first wins at once
        "{x}" * 100_000,  # many balanced spans that are not JSON
    ):
        scan = find_json_object(text)
        assert scan.steps <= (MAX_CANDIDATES + 1) * MAX_REPLY_CHARS
    assert find_json_object("{}" * 10).value == {}
    assert "not valid JSON" in find_json_object("{x}" * 100_000).problem
    assert "not complete" in find_json_object("{" * 200_000).problem
    late = "x" * MAX_REPLY_CHARS + '{"a": 1}'
    scan = find_json_object(late)
    assert scan.value is None and f"first {MAX_REPLY_CHARS:,} characters" in scan.problem
    assert find_json_object(None).problem.startswith("the reply is not text")
    # a stray brace in prose before the answer: the next one is tried
    assert find_json_object('I use { here. {"a": [1, "}"]}').value == {"a": [1, "}"]}


# --------------------------------------------------------------------------- validation
def _question(**changes):
    q = {
        "type": "Object Analysis",
        "question": "What is the bottle made of?",
        "options": ["glass", "paper", "steel"],
        "answer": "A",
        "reasoning": "The bottle is clear and shiny, so it is made of glass: A.",
    }
    q.update(changes)
    return q


def test_a_valid_reply_passes_and_options_are_lettered():
    reply, problems = check_reply(
        {"questions": [_question()], "note": "extra keys are ignored"}, OA, None, False
    )
    assert problems == []
    q = reply.questions[0]
    assert q.options == {"A": "glass", "B": "paper", "C": "steel"} and q.answer == "A"
    assert (
        TeacherQuestion.model_validate(_question(type="Object Structure")).type == "Object Analysis"
    )
    ok = _question(options={"A": " glass ", "B": "paper"}, answer=" b ")
    assert TeacherQuestion.model_validate(ok).options == {"A": "glass", "B": "paper"}


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"options": ["glass"]}, "2 to 5 options, got 1"),
        ({"options": list("abcdef")}, "2 to 5 options, got 6"),
        ({"options": ["glass", " Glass  "]}, "option B repeats another option"),
        ({"options": ["glass", "  "]}, "option B is empty"),
        ({"options": ["glass", "x" * 201]}, "option B has 201 characters"),
        ({"options": {"A": "glass", "C": "paper"}}, "letters must be A, B in order"),
        ({"options": ["glass", 5]}, "options.B"),
        ({"options": "glass or paper"}, "must be a list of texts"),
        ({"answer": "D"}, "answer 'D' is not one of the option letters A, B, C"),
        ({"answer": "AB"}, "must be one option letter"),
        ({"answer": 1}, "answer"),
        ({"type": "Defect Localization"}, "must be one of Defect Analysis, Object Analysis"),
        ({"question": "Why?"}, "question: must have 10 to 400 characters, got 4"),
        ({"question": "W" * 401}, "got 401"),
        ({"reasoning": "short"}, "reasoning: must have 20 to 2000 characters, got 5"),
        ({"reasoning": "r" * 2001}, "got 2001"),
        ({"reasoning": "It is glass.</think><answer>A</answer> ok ok"}, "must not contain"),
        ({"question": None}, "question"),
        ({"question": "What is \udcff this made of?"}, "not valid UTF-8"),
        ({"options": ["glass", "<answer>B</answer>"]}, "option B must not contain"),
    ],
)
def test_each_validation_rule_rejects(changes, expected):
    reply, problems = check_reply({"questions": [_question(**changes)]}, OA, None, False)
    assert reply is None
    assert any(expected in p for p in problems), problems


def test_reply_shape_and_types_asked():
    assert check_reply([1], OA, None, False)[1] == ["the reply must be a JSON object, got a list"]
    assert "questions" in check_reply({"question": _question()}, OA, None, False)[1][0]
    assert check_reply({"questions": []}, OA, None, False)[0] is None
    _, problems = check_reply({"questions": [_question()]}, BOTH, _info("top"), True)
    assert problems == [
        "write exactly one question of each type Defect Analysis, Object Analysis; got Object Analysis"
    ]
    two = [_question(), _question()]
    assert (
        "got Object Analysis, Object Analysis"
        in check_reply({"questions": two}, OA, None, False)[1][0]
    )
    da = _question(type="Defect Analysis", reasoning="The scratch at the top is shallow, so A.")
    assert check_reply({"questions": [da, _question()]}, BOTH, _info("top"), True)[1] == []


# --------------------------------------------------------------------------- regions
def _info(region, components=1, bbox=None):
    return MaskInfo(
        height=90,
        width=90,
        area=0.05,
        centroid=(0.5, 0.5),
        region=region,
        components=components,
        bbox=bbox,
    )


@pytest.mark.parametrize(
    ("text", "region", "ok"),
    [
        ("A scratch is located in the left top of the object.", "left top", True),
        ("The crack lies in the upper-left corner.", "left top", True),
        ("The dent at the top edge is deep.", "left top", True),  # a part of the region
        ("A scratch is visible in the right bottom.", "left top", False),
        ("The defect is at the center.", "left", False),
        ("The bottom of the bottle is fine; the scratch at the top is deep.", "top", True),
        ("So the right answer is A; the scratch is in the left top.", "left top", True),
        ("No defect at the bottom; the scratch in the center is clear.", "center", True),
    ],
)
def test_reasoning_must_name_the_mask_region(text, region, ok):
    assert (region_problem(text, _info(region), True) is None) is ok


def test_normal_images_get_no_anomaly_location():
    assert region_problem("A crack is visible at the top.", None, False) is not None
    assert "the image is normal" in region_problem("The damage on the left side.", None, False)
    for fine in (
        "There is no defect at the top or anywhere else; the answer is B.",
        "The cap at the top is round and the label in the center is printed.",
        "The object is free of damage in the left corner.",
    ):
        assert region_problem(fine, None, False) is None, fine


def test_scattered_masks_allow_the_regions_of_their_box():
    spread = _info("center", components=3, bbox=(0.05, 0.05, 0.95, 0.6))
    assert {"left top", "top", "left bottom", "center"} <= allowed_regions(spread)
    assert "right" not in allowed_regions(spread)
    assert region_problem("Spots in the left top and the bottom.", spread, True) is None
    assert region_problem("A spot on the right side.", spread, True) is not None


# --------------------------------------------------------------------------- prompt, keys
PROMPT = "omniad-teacher-prompt version: t1\n[system]\nWrite JSON.\n[user]\n$category\n[retry]\nWrong: $problems\n"


def test_default_prompt_loads_with_its_version():
    p = TeacherPrompt.load()
    assert p.version == "1" and len(p.sha256) == 64
    assert p.path == os.path.abspath(default_prompt_path())
    assert "$problems" in p.retry and "JSON" in p.system


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[system]\nx\n[user]\ny\n", "must start with a line 'omniad-teacher-prompt version: 1'"),
        ("omniad-teacher-prompt version: 2\n[system]\nx\n", "no (or an empty) [user] section"),
        (
            "omniad-teacher-prompt version: 2\n[system]\nx\n[user]\n$colour\n",
            "unknown placeholder $colour in [user]",
        ),
        ("omniad-teacher-prompt version: 2\n[system]\nx\n[user]\ny\n[user]\nz\n", "[user] twice"),
        (
            "omniad-teacher-prompt version: 2\nhello\n[system]\nx\n[user]\ny\n",
            "before the first section",
        ),
        (
            "omniad-teacher-prompt version: 2\n[system]\n5 $\n[user]\ny\n",
            "bad placeholder in [system]",
        ),
    ],
)
def test_bad_prompt_files_are_one_line_errors(tmp_path, text, expected):
    f = tmp_path / "prompt.txt"
    f.write_text(text)
    with pytest.raises(TeacherError) as err:
        TeacherPrompt.load(f)
    assert expected in str(err.value) and str(f) in str(err.value)
    with pytest.raises(TeacherError, match="cannot read"):
        TeacherPrompt.load(tmp_path / "missing.txt")


def _item(folder: Path, name="000.png", category="bottle", anomalous=False):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    img = folder / name
    Image.fromarray(np.full((20, 30, 3), 100, np.uint8)).save(img)
    mask, info = None, None
    if anomalous:
        m = np.zeros((20, 30), np.uint8)
        m[2:6, 3:9] = 255
        mask = folder / f"m_{name}"
        Image.fromarray(m).save(mask)
        info = MaskInfo(height=20, width=30, area=24 / 600, centroid=(0.2, 0.2), region="left top")
    return ImageItem(
        f"mvtec:ds/{category}/{name}",
        str(img),
        f"{category}/{name}",
        anomalous,
        category,
        "ds",
        defect="scratch" if anomalous else "",
        mask=str(mask) if mask else None,
        info=info,
    )


def test_cache_keys_change_with_prompt_version_file_hash_model_and_image(tmp_path):
    base = tmp_path / "p1.txt"
    base.write_text(PROMPT)
    same_version = tmp_path / "p2.txt"
    same_version.write_text(PROMPT.replace("Write JSON.", "Write one JSON object."))
    new_version = tmp_path / "p3.txt"
    new_version.write_text(PROMPT.replace("version: t1", "version: t2"))
    item = _item(tmp_path / "img")

    def key(prompt=base, model="teacher-a", it=item):
        b = EndpointBackend("http://127.0.0.1:9/v1", model)
        return TeacherWriter(b, cache_dir=tmp_path / "c", prompt=prompt).cache_key(it)

    k = key()
    assert key() == k  # stable
    assert len({k, key(prompt=same_version), key(prompt=new_version), key(model="teacher-b")}) == 4
    os.utime(item.image, ns=(1, 1))
    assert key() != k  # an edited image is asked again
    w = TeacherWriter(
        EndpointBackend("http://127.0.0.1:9/v1", "m"), cache_dir=tmp_path, prompt=new_version
    )
    assert w.version.startswith("1+prompt-t2-")


def test_the_teacher_sees_the_mask_painted_over_the_image(tmp_path):
    item = _item(tmp_path / "img", anomalous=True)
    img = np.asarray(teacher_image(item, 15))
    assert img.shape == (10, 15, 3)  # fits 15 x 15, aspect kept
    inside, outside = img[2, 3], img[8, 12]
    assert inside[0] > inside[1] + 50  # red over the defect
    assert tuple(outside) == (100, 100, 100)


def test_teacher_options_and_their_errors(tmp_path, monkeypatch):
    from omniad_train.cli import CommandParser

    p = CommandParser(prog="prepare")
    p.add_argument("output_dir", type=Path)
    add_teacher_args(p)
    assert teacher_from_args(p.parse_args([str(tmp_path)])) is None
    with pytest.raises(TeacherError, match="needs --teacher_model"):
        teacher_from_args(p.parse_args([str(tmp_path), "--teacher_endpoint", "http://x:1"]))
    with pytest.raises(TeacherError, match="--teacher_model need --teacher_endpoint"):
        teacher_from_args(p.parse_args([str(tmp_path), "--teacher-model", "m"]))
    with pytest.raises(TeacherError, match="--teacher_concurrency must be >= 1"):
        teacher_from_args(
            p.parse_args(
                [
                    str(tmp_path),
                    "--teacher_endpoint",
                    "http://x:1",
                    "--teacher_model",
                    "m",
                    "--teacher_concurrency",
                    "0",
                ]
            )
        )
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    with pytest.raises(TeacherError, match="NO_SUCH_KEY_VAR is not set"):
        teacher_from_args(
            p.parse_args(
                [
                    str(tmp_path),
                    "--teacher_endpoint",
                    "http://x:1",
                    "--teacher_model",
                    "m",
                    "--teacher_api_key_env",
                    "NO_SUCH_KEY_VAR",
                ]
            )
        )
    f = tmp_path / "mine.txt"
    f.write_text(PROMPT)
    w = teacher_from_args(
        p.parse_args(
            [
                str(tmp_path),
                "--teacher-endpoint",
                "http://127.0.0.1:9",
                "--teacher_model",
                "m",
                "--teacher_concurrency",
                "3",
                "--teacher_retries",
                "1",
                "--teacher_prompt",
                str(f),
            ]
        )
    )
    assert w.backend.concurrency == 3 and w.retries == 1 and w.prompt.version == "t1"
    assert w.backend.base_url == "http://127.0.0.1:9/v1" and w.model == "m"
    assert w.cache_dir == tmp_path / ".work" / "teacher"


def _folders(root: Path, n_bottle: int) -> Path:
    """``root/ds/{bottle,cable}/test/good/*.png``: the same 56 x 56 image everywhere."""
    from PIL import Image

    img = Image.fromarray(_pixels())
    for cat, n in (("bottle", n_bottle), ("cable", 1)):
        d = root / "ds" / cat / "test" / "good"
        d.mkdir(parents=True)
        for k in range(n):
            img.save(d / f"{k:03d}.png")
    return root / "ds"


def _pixels():
    return (np.random.default_rng(0).random((56, 56, 3)) * 255).astype(np.uint8)


def test_an_unreachable_teacher_is_one_clear_error(tmp_path):
    ds = _folders(tmp_path / "data", 1)
    f = tmp_path / "p.txt"
    f.write_text(PROMPT)
    w = TeacherWriter(
        EndpointBackend("http://127.0.0.1:9/v1", "m", retries=0), cache_dir=tmp_path / "c", prompt=f
    )
    with pytest.raises(PrepareError, match=r"teacher endpoint: cannot reach http://127.0.0.1:9/v1"):
        prepare(tmp_path / "out", mvtec_root=ds, question_writers=[w], verbose=False)


class RecordingBackend:
    """A stand-in teacher for the retry logic: replies in turn, records each conversation."""

    name = "recorded"
    batch_size = 8

    def __init__(self, replies):
        self.replies = list(replies)
        self.seen = []

    def generate(self, conversations, images, *, max_new_tokens, on_result=None):
        from omniad_core.backends import Generation

        out = []
        for i, conv in enumerate(conversations):
            self.seen.append(conv)
            text = self.replies.pop(0)
            g = Generation(
                text, raw={"content": text}, prompt_tokens=10, completion_tokens=5, seconds=0.5
            )
            out.append(g)
            if on_result is not None:
                on_result(i, g)
        return out


def test_an_invalid_answer_is_asked_again_with_what_was_wrong(tmp_path):
    f = tmp_path / "p.txt"
    f.write_text(PROMPT)
    item = _item(tmp_path / "img", category="bottle")
    backend = RecordingBackend(["Here: " + INVALID, "Sorry. " + VALID])
    w = TeacherWriter(backend, cache_dir=tmp_path / "c", prompt=f, retries=1)
    (rec,) = w.write(item, None)
    assert rec.question_source == "teacher" and rec.reasoning.startswith("The bottle is clear")
    assert rec.id == "mvtec:ds/bottle/000.png#object_analysis" and rec.type == "Object Analysis"
    first, second = backend.seen
    assert (
        first[0]["content"][0]["text"] == "Write JSON."
        and first[1]["content"][1]["text"] == "bottle"
    )
    assert second[:2] == first and second[2]["content"][0]["text"] == "Here: " + INVALID
    feedback = second[3]["content"][0]["text"]
    assert feedback.startswith("Wrong: ") and "option B repeats another option" in feedback
    assert w.log[0] | {"image_id": 0} == {
        "image_id": 0,
        "cached": False,
        "outcome": "ok",
        "attempts": 2,
        "prompt_tokens": 20,
        "completion_tokens": 10,
        "seconds": 1.0,
        "records": 1,
    }
    # out of retries: a reject naming the problems; a normal image never gets Defect Analysis
    backend = RecordingBackend([INVALID, INVALID])
    w = TeacherWriter(backend, cache_dir=tmp_path / "c2", prompt=f, retries=1)
    (rej,) = w.write(item, None)
    assert rej.source == "teacher" and rej.record == "bottle/000.png#teacher"
    assert "invalid after 2 attempts" in rej.reason and "reasoning: must have 20" in rej.reason
    assert w.asked(item) == OA and w.asked(_item(tmp_path / "d", "1.png", anomalous=True)) == BOTH


def test_a_failed_request_is_a_reject_and_asked_again_next_run(tmp_path):
    from omniad_core.backends import Generation

    f = tmp_path / "p.txt"
    f.write_text(PROMPT)
    item = _item(tmp_path / "img")
    backend = RecordingBackend([])
    backend.generate = lambda convs, imgs, **kw: [
        Generation(None, error="HTTP 500 from /chat/completions: boom")
    ]
    w = TeacherWriter(backend, cache_dir=tmp_path / "c", prompt=f)
    (rej,) = w.write(item, None)
    assert (
        "the teacher endpoint failed: HTTP 500" in rej.reason
        and "asked again on the next run" in rej.reason
    )
    assert w.log[0]["outcome"] == "failed" and not list((tmp_path / "c").rglob("*.json"))
    again = TeacherWriter(RecordingBackend([VALID]), cache_dir=tmp_path / "c", prompt=f)
    assert len(again.write(item, None)) == 1 and again.requests == 1


def test_prefetch_asks_every_uncached_image_in_one_batch(tmp_path):
    f = tmp_path / "p.txt"
    f.write_text(PROMPT)
    items = [_item(tmp_path / "img", f"{k}.png") for k in range(3)]
    backend = RecordingBackend([VALID] * 3)
    w = TeacherWriter(backend, cache_dir=tmp_path / "c", prompt=f)
    assert w.prefetch(items) == 3 and w.requests == 3
    assert all(len(w.write(it, None)) == 1 for it in items)
    assert w.requests == 3 and w.cache_hits == 0  # written from the answers fetched
    assert TeacherWriter(backend, cache_dir=tmp_path / "c", prompt=f).prefetch(items) == 0


# --------------------------------------------------------------------------- served teacher
VALID = json.dumps(
    {
        "questions": [
            {
                "type": "Object Analysis",
                "question": "What is the bottle made of?",
                "options": ["glass", "paper"],
                "answer": "A",
                "reasoning": "The bottle is clear and shiny, so it is glass.",
            }
        ]
    }
)
INVALID = json.dumps(
    {
        "questions": [
            {
                "type": "Object Analysis",
                "question": "How many?",
                "options": ["two", "Two"],
                "answer": "C",
                "reasoning": "short",
            }
        ]
    }
)


def _teach(out: Path) -> Path:
    """The tiny model taught VALID for the prompt of a bottle image and INVALID for a
    cable, on the exact inputs `transformers serve` builds; saved with its processor."""
    import torch
    from PIL import Image

    from omniad_core.backends import image_data_url
    from omniad_train.tiny import TinyConfig, build_tiny_qwen2_5_vl, load_tiny

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model, processor = load_tiny(build_tiny_qwen2_5_vl(out / "model", TinyConfig.test()))
        url = image_data_url(Image.fromarray(_pixels()))
        eos = processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
        batches = []
        for category, target in (("bottle", VALID), ("cable", INVALID)):
            messages = [  # as the server turns our OpenAI messages into processor inputs
                {"role": "system", "content": [{"type": "text", "text": "Write JSON."}]},
                {
                    "role": "user",
                    "content": [{"type": "image", "url": url}, {"type": "text", "text": category}],
                },
            ]
            inputs = processor.apply_chat_template(
                messages,
                add_generation_prompt=True,
                tokenize=True,
                return_dict=True,
                return_tensors="pt",
            )
            tail = torch.tensor([processor.tokenizer(target)["input_ids"] + [eos]])
            batch = dict(inputs)
            batch["input_ids"] = torch.cat([inputs["input_ids"], tail], 1)
            batch["attention_mask"] = torch.ones_like(batch["input_ids"])
            if "mm_token_type_ids" in batch:
                pad = torch.zeros(tail.shape, dtype=batch["mm_token_type_ids"].dtype)
                batch["mm_token_type_ids"] = torch.cat([batch["mm_token_type_ids"], pad], 1)
            labels = batch["input_ids"].clone()
            labels[:, : inputs["input_ids"].shape[1]] = -100
            batch["labels"] = labels
            batches.append((inputs, batch, target))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        torch.manual_seed(0)
        for _ in range(8):
            model.train()
            for step in range(200):
                loss = model(**batches[step % 2][1]).loss
                opt.zero_grad()
                loss.backward()
                opt.step()
            model.eval()
            with torch.no_grad():
                got = [
                    processor.tokenizer.decode(
                        model.generate(**inp, max_new_tokens=160, do_sample=False)[
                            0, inp["input_ids"].shape[1] :
                        ],
                        skip_special_tokens=True,
                    ).strip()
                    for inp, _, _ in batches
                ]
            if got == [VALID, INVALID]:
                break
        else:
            pytest.fail("the tiny teacher did not learn its two replies")
        ckpt = out / "teacher"
        model.save_pretrained(ckpt)
        processor.save_pretrained(ckpt)
        return ckpt
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def served_teacher(tmp_path_factory):
    """A `transformers serve` process on 127.0.0.1 serving the taught tiny teacher."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from conftest import ServedModel

    ckpt = _teach(tmp_path_factory.mktemp("teach"))
    server = ServedModel(ckpt, tmp_path_factory.mktemp("teacher_serve") / "serve.log")
    try:
        yield server
    finally:
        server.stop()


def _requests(server) -> int:
    return Path(server.log).read_bytes().count(b'"POST /v1/chat/completions HTTP/1.1"')


def _writer(server, cache_dir: Path, prompt: Path, retries: int = 2) -> TeacherWriter:
    backend = EndpointBackend(server.base_url, server.model, concurrency=2, retries=0)
    return TeacherWriter(
        backend,
        cache_dir=cache_dir,
        prompt=prompt,
        retries=retries,
        image_size=56,
        max_new_tokens=160,
    )


@pytest.mark.slow
def test_teacher_answers_become_records_and_invalid_ones_rejects(served_teacher, tmp_path):
    import datasets

    ds = _folders(tmp_path / "data", 2)
    prompt = tmp_path / "prompt.txt"
    prompt.write_text(PROMPT)
    out = tmp_path / "out"
    w = _writer(served_teacher, out / ".work" / "teacher", prompt)
    before = _requests(served_teacher)
    result = prepare(out, mvtec_root=ds, question_writers=[w], verbose=False)
    # one request per bottle image; the cable's invalid answer is asked 1 + 2 times
    assert _requests(served_teacher) - before == w.requests == 2 + 3
    rows = datasets.load_from_disk(str(out / "sft"))["train"]
    teacher = [r for r in rows if r["id"].endswith("#object_analysis")]
    assert sorted(r["id"] for r in teacher) == [
        f"mvtec:ds/bottle/test/good/{k:03d}.png#object_analysis" for k in range(2)
    ]
    for r in teacher:
        assert r["type"] == "Object Analysis" and r["answer"] == "A"
        assert json.loads(r["options"]) == {"A": "glass", "B": "paper"}
        text = r["completion"][0]["content"][0]["text"]
        assert (
            text
            == "<seg></seg><think>The bottle is clear and shiny, so it is glass.</think><answer>A</answer>"
        )
        assert "What is the bottle made of?" in r["prompt"][-1]["content"][-1]["text"]
    manifest = json.loads(result.manifest_path.read_text())
    assert manifest["counts"]["sft"]["total"]["by_question_source"]["teacher"] == 2
    assert manifest["question_writers"] == ["template/1", f"teacher/{w.version}"]
    rejects = [json.loads(x) for x in result.rejects_path.read_text().splitlines()]
    (cable,) = [r for r in rejects if r["source"] == "teacher"]
    assert cable["record"] == "cable/test/good/000.png#teacher"
    assert (
        "invalid after 3 attempts" in cable["reason"]
        and "keeps its template questions" in cable["reason"]
    )
    cable_rows = [r for r in rows if "/cable/" in r["id"]]
    assert {r["type"] for r in cable_rows} >= {"Anomaly Discrimination", "Object Classification"}
    report = w.report()
    assert (report["asked"], report["cached"], report["records"], report["rejected"]) == (
        3,
        0,
        2,
        1,
    )
    assert report["this_run"]["prompt_tokens"] > 0 and report["this_run"]["completion_tokens"] > 0
    per = {e["image_id"]: e for e in report["per_image"]}
    assert per["mvtec:ds/cable/test/good/000.png"]["attempts"] == 3
    assert "3 asked in 5 requests" in w.summary()

    # a repeated run asks nothing: every outcome (the reject too) comes from the cache
    again = _writer(served_teacher, out / ".work" / "teacher", prompt)
    before = _requests(served_teacher)
    result2 = prepare(out, mvtec_root=ds, question_writers=[again], verbose=False)
    assert _requests(served_teacher) == before and again.requests == 0 and again.cache_hits == 3
    assert result2.n_records == result.n_records and result2.n_rejects == result.n_rejects
    assert again.report()["this_run"]["prompt_tokens"] == 0
    assert again.report()["all"]["prompt_tokens"] == report["this_run"]["prompt_tokens"]


_RUN = """
import sys
from omniad_core.backends import EndpointBackend
from omniad_train.data import prepare
from omniad_train.data.teacher import TeacherWriter
url, model, ds, out, prompt = sys.argv[1:]
w = TeacherWriter(EndpointBackend(url, model, concurrency=1, retries=0), cache_dir=out + "/.work/teacher",
                  prompt=prompt, retries=0, image_size=56, max_new_tokens=160)
prepare(out, mvtec_root=ds, question_writers=[w], verbose=False)
"""


@pytest.mark.slow
def test_a_killed_run_restarted_asks_no_answered_image_again(served_teacher, tmp_path):
    ds = _folders(tmp_path / "data", 12)
    prompt = tmp_path / "prompt.txt"
    prompt.write_text(PROMPT)
    out = tmp_path / "out"
    cache = out / ".work" / "teacher"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(_RUN),
            served_teacher.base_url,
            served_teacher.model,
            str(ds),
            str(out),
            str(prompt),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while not list(cache.glob("*/*.json")):
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "the first run wrote no answer"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stderr.close()
    answered = {json.loads(f.read_text())["image_id"] for f in cache.glob("*/*.json")}
    assert 1 <= len(answered) < 13, "the run was not killed half-way"

    w = _writer(served_teacher, cache, prompt, retries=0)
    before = _requests(served_teacher)
    prepare(out, mvtec_root=ds, question_writers=[w], verbose=False)
    asked = {e["image_id"] for e in w.log if not e["cached"]}
    everything = {e["image_id"] for e in w.log}
    assert len(everything) == 13
    assert asked.isdisjoint(answered) and asked | answered == everything
    assert _requests(served_teacher) - before == w.requests == len(asked)
    assert w.cache_hits == len(answered)
    assert len(list(cache.glob("*/*.json"))) == 13  # one outcome per image
