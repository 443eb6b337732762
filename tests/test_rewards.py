"""The three OmniAD rewards, called exactly as TRL 1.16's GRPOTrainer calls them.

TRL calls every reward function with keyword arguments only: ``prompts``,
``completions``, ``completion_ids``, ``trainer_state``, ``log_extra``, ``log_metric``
and every other dataset column, each a list with one entry per completion, in groups
of ``num_generations`` completions that share a prompt.
"""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import textmask
from omniad_core import (
    AnswerReward,
    DetectionReward,
    FormatReward,
    completion_text,
    make_rewards,
)

GOOD = "<seg>(1, 1)</seg><think>A spot.</think><answer>B</answer>"
EMPTY_SEG = "<seg></seg><think>Nothing wrong.</think><answer>A</answer>"


def _log(*args, **kwargs):
    return None


def trl_call(reward, completions, *, conversational=False, **columns):
    """Call ``reward`` the way TRL 1.16 does (keyword arguments only)."""
    n = len(completions)
    if conversational:
        completions = [[{"role": "assistant", "content": c}] for c in completions]
    prompts = [
        [
            {"role": "system", "content": [{"type": "text", "text": "sys"}]},
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Q?"}]},
        ]
    ] * n
    out = reward(
        prompts=prompts,
        completions=completions,
        completion_ids=[[11, 12, 13]] * n,
        trainer_state=None,
        log_extra=_log,
        log_metric=_log,
        **columns,
    )
    assert isinstance(out, list) and len(out) == n
    assert all(v is None or type(v) is float for v in out)
    return out


def seg_response(seg: str, answer: str = "A") -> str:
    return f"<seg>{seg}</seg><think>t</think><answer>{answer}</answer>"


# A 48 x 48 ground truth on the 24 x 24 grid: every cell is 2 x 2 pixels.
# Anomalous pixels: rows 0-1, columns 0-4 (10 pixels), i.e. cell (0, 0) fully (4 px),
# cell (0, 1) fully (4 px) and the left pixel column of cell (0, 2) (2 px).
def gt48() -> np.ndarray:
    m = np.zeros((48, 48), bool)
    m[0:2, 0:5] = True
    return m


# (seg, tp, fp, fn) counted by hand at pixel level
HAND = [
    ("(0, 1)-(0, 3)", 6, 6, 4),  # cells 1-3: 12 px predicted, 4 + 2 hit, cell 0 missed
    ("(0, 0)", 4, 0, 6),
    ("(0, 0)-(0, 2)", 10, 2, 0),  # the right column of cell 2 is a false positive
    ("(5, 5)", 0, 4, 10),
    ("", 0, 0, 10),
]


def f1(tp, fp, fn):
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


# --------------------------------------------------------------------------- names, shapes
def test_names_and_order():
    rewards = make_rewards()
    assert [r.__name__ for r in rewards] == ["format_reward", "detection_reward", "answer_reward"]
    assert FormatReward().__name__ == "format_reward"
    assert DetectionReward().__name__ == "detection_reward"
    assert AnswerReward().__name__ == "answer_reward"


@pytest.mark.parametrize("conversational", [False, True])
def test_trl_style_call_of_all_three(conversational):
    completions = [GOOD, EMPTY_SEG, "B", "<seg>(1, 1)</seg><think>x"]
    cols = dict(
        mask=["(1, 1)", "", "(1, 1)", None],
        answer=["B", "A", "A", "B"],
        options=[["No", "Yes"]] * 4,
        images=[[Image.new("RGB", (8, 8))]] * 4,
        type=["Anomaly Discrimination"] * 4,
    )
    fmt, det, ans = (
        trl_call(r, completions, conversational=conversational, **cols) for r in make_rewards()
    )
    assert fmt == [1.0, 1.0, 0.0, 0.0]
    assert det == [2.0, 1.0, 0.0, None]
    assert ans == [1.0, 1.0, 0.1, 0.1]


def test_completion_text_forms():
    assert completion_text("x") == "x"
    assert completion_text([{"role": "assistant", "content": "x"}]) == "x"
    assert completion_text({"role": "assistant", "content": "x"}) == "x"
    parts = [{"type": "text", "text": "a"}, {"type": "image"}, {"type": "text", "text": "b"}]
    assert completion_text([{"role": "assistant", "content": parts}]) == "ab"
    assert completion_text([]) == "" and completion_text(None) == ""


def test_empty_batch():
    for r in make_rewards():
        assert trl_call(r, [], mask=[], answer=[], options=[]) == []


# --------------------------------------------------------------------------- format
@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        (GOOD, 1.0),
        (EMPTY_SEG, 1.0),
        ("\n<seg>\n(1, 1)-(1, 3)\n</seg>\n<think>\nok\n</think>\n<answer> B </answer>\n", 1.0),
        ("<seg>(1, 1)</seg><think>x</think><answer>B.</answer>", 0.0),
        ("<seg>(1, 1)</seg><think>x</think>", 0.0),
        ("<think>x</think><seg>(1, 1)</seg><answer>B</answer>", 0.0),
        ("<seg>[1, 1]</seg><think>x</think><answer>B</answer>", 0.0),
        ("<seg>(1, 1)</seg>so<think>x</think><answer>B</answer>", 0.0),
        ("B", 0.0),
        ("", 0.0),
    ],
)
def test_format_reward_values(completion, expected):
    assert trl_call(FormatReward(), [completion]) == [expected]
    assert trl_call(FormatReward(), [completion], conversational=True) == [expected]


def test_format_reward_checks_letters_against_the_options_column():
    c = "<seg></seg><think>x</think><answer>C</answer>"
    assert trl_call(FormatReward(), [c]) == [1.0]  # no options column: any letter
    assert trl_call(FormatReward(), [c], options=[["Yes", "No"]]) == [0.0]
    assert trl_call(FormatReward(), [c], options=['{"A": "Yes", "B": "No", "C": "?"}']) == [1.0]
    assert trl_call(FormatReward(options_column="choices"), [c], choices=[{"A": "x"}]) == [0.0]


def test_format_reward_uses_its_grid():
    c = "<seg>(10, 10)</seg><think>x</think><answer>A</answer>"
    assert trl_call(FormatReward(24), [c]) == [1.0]
    assert trl_call(FormatReward(8), [c]) == [0.0]  # outside an 8 x 8 grid


# --------------------------------------------------------------------------- detection
@pytest.mark.parametrize(("seg", "tp", "fp", "fn"), HAND)
def test_detection_reward_by_hand_pixel_level(seg, tp, fp, fn):
    got = trl_call(DetectionReward(), [seg_response(seg)], mask=[gt48()])
    assert got == [pytest.approx(2 * f1(tp, fp, fn), rel=1e-12)]
    s = textmask.score(seg, gt48())
    assert (s.tp, s.fp, s.fn) == (tp, fp, fn)


def test_detection_reward_hand_values_spelled_out():
    d = DetectionReward()
    got = trl_call(d, [seg_response(s) for s, *_ in HAND], mask=[gt48()] * len(HAND))
    assert got == pytest.approx([12 / 11, 8 / 7, 20 / 11, 0.0, 0.0], rel=1e-12)
    half = trl_call(DetectionReward(alpha=1.0), [seg_response("(0, 1)-(0, 3)")], mask=[gt48()])
    assert half == [pytest.approx(6 / 11, rel=1e-12)]


def test_detection_reward_cell_level_by_hand():
    # cells of the ground truth: (0, 0), (0, 1), (0, 2); predicted (0, 1)-(0, 3):
    # tp 2, fp 1, fn 1 -> F1 2/3 -> reward 4/3
    d = DetectionReward(level="cell")
    assert trl_call(d, [seg_response("(0, 1)-(0, 3)")], mask=[gt48()]) == [pytest.approx(4 / 3)]


@pytest.mark.parametrize(
    "empty_gt",
    ["", np.zeros((48, 48), bool), np.zeros((7, 9), np.uint8), "png"],
    ids=["empty-string", "bool-zeros", "uint8-zeros", "png-zeros"],
)
def test_detection_reward_normal_image(empty_gt, tmp_path):
    if isinstance(empty_gt, str) and empty_gt == "png":
        empty_gt = str(tmp_path / "good.png")
        Image.fromarray(np.zeros((30, 40), np.uint8)).save(empty_gt)
    preds = [
        seg_response(""),
        seg_response("   \n"),
        seg_response("none"),
        "<answer>A</answer>",  # no seg block predicts nothing
        seg_response("(0, 0)"),
        seg_response("(23, 23)"),
    ]
    got = trl_call(DetectionReward(), preds, mask=[empty_gt] * len(preds))
    assert got == [1.0, 1.0, 1.0, 1.0, 0.0, 0.0]


def test_ground_truth_forms_agree(tmp_path):
    m = gt48()
    png = tmp_path / "mask.png"
    Image.fromarray(m.astype(np.uint8) * 255).save(png)
    forms = [
        m,
        m.astype(np.uint8) * 255,
        m.astype(np.int64),
        str(png),
        png,  # a pathlib.Path
        Image.open(png),
    ]
    preds = [seg_response(s) for s, *_ in HAND]
    expected = [2 * f1(tp, fp, fn) for _, tp, fp, fn in HAND]
    for form in forms:
        got = trl_call(DetectionReward(), preds, mask=[form] * len(preds))
        assert got == pytest.approx(expected, rel=1e-12), type(form)


def test_ground_truth_as_canonical_seg_text_is_a_cell_mask():
    text = textmask.encode(gt48())
    assert text == "(0, 0)-(0, 2)"
    preds = [seg_response(s) for s in ["(0, 1)-(0, 3)", "(0, 0)-(0, 2)", "", "(4, 4)"]]
    got = trl_call(DetectionReward(), preds, mask=[text] * 4)
    assert got == pytest.approx([4 / 3, 2.0, 0.0, 0.0])
    # canonical text with extra whitespace, and on another grid
    assert trl_call(DetectionReward(), [GOOD], mask=["\n(1,\n 1)\n"]) == [2.0]
    got = trl_call(DetectionReward(grid=(4, 6)), [seg_response("(3, 5)")], mask=["(3, 4)-(3, 5)"])
    assert got == [pytest.approx(2 * 2 / 3)]


def test_none_ground_truth_excludes_the_sample():
    got = trl_call(DetectionReward(), [GOOD, GOOD, GOOD], mask=[None, "(1, 1)", None])
    assert got == [None, 2.0, None]
    assert trl_call(DetectionReward(), [GOOD], mask=[None]) == [None]


def test_missing_mask_column_is_a_clear_key_error():
    with pytest.raises(KeyError, match="'mask'") as excinfo:
        trl_call(DetectionReward(), [GOOD], answer=["B"])
    assert "detection_reward" in str(excinfo.value)
    with pytest.raises(KeyError, match="'gt_mask'"):
        trl_call(DetectionReward(mask_column="gt_mask"), [GOOD], mask=["(1, 1)"])


@pytest.mark.parametrize("garbage", ["hello", "no anomaly", "(1, 1), (1, 2)", "(99, 99)", "[1, 1]"])
def test_non_canonical_mask_text_is_a_value_error_naming_the_problem(garbage):
    with pytest.raises(ValueError) as excinfo:
        trl_call(DetectionReward(), [GOOD], mask=[garbage])
    msg = str(excinfo.value)
    assert "'mask'" in msg and "canonical" in msg and garbage[:20] in msg


def test_missing_mask_file_names_the_file(tmp_path):
    path = str(tmp_path / "nope.png")
    with pytest.raises(ValueError, match=r"nope\.png"):
        trl_call(DetectionReward(), [GOOD], mask=[path])


def test_column_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="2 entries for 3 completions"):
        DetectionReward()(completions=[GOOD] * 3, mask=["", ""])


def test_cache_does_not_change_values(tmp_path):
    d = DetectionReward(cache_size=1)
    texts = ["(1, 1)", "(2, 2)", "", "(1, 1)"]
    for _ in range(3):
        got = trl_call(d, [GOOD] * 4, mask=texts)
        assert got == [2.0, 0.0, 0.0, 2.0]


# random ground truths and random completions
@st.composite
def detection_cases(draw):
    grid = draw(st.sampled_from([24, 24, (6, 9), 4, textmask.Grid(7, 5, index_base=1)]))
    rows, cols = textmask.Grid.of(grid).shape
    h, w = draw(st.integers(1, 64)), draw(st.integers(1, 64))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    p = draw(st.sampled_from([0.0, 0.0005, 0.01, 0.1, 0.5]))
    mask = rng.random((h, w)) < p
    kind = draw(st.sampled_from(["encode", "cells", "soup", "none"]))
    if kind == "encode":
        seg = textmask.encode(rng.random((h, w)) < p, grid)
    elif kind == "cells":
        seg = textmask.encode(rng.random((rows, cols)) < draw(st.sampled_from([0.05, 0.3])), grid)
    elif kind == "soup":
        seg = draw(
            st.lists(
                st.sampled_from(["(1, 2)", "(0, 0)-(0, 5)", "[3,3]", "(2, 9)", "x", ", ", "\n"]),
                max_size=6,
            ).map("".join)
        )
    else:
        seg = None
    completion = "<answer>A</answer>" if seg is None else seg_response(seg)
    return grid, mask, seg or "", completion


@settings(deadline=None, max_examples=150)
@given(
    case=detection_cases(), conversational=st.booleans(), level=st.sampled_from(["pixel", "cell"])
)
def test_detection_reward_matches_textmask(case, conversational, level):
    grid, mask, seg, completion = case
    got = trl_call(
        DetectionReward(grid=grid, level=level),
        [completion],
        conversational=conversational,
        mask=[mask],
    )
    want = textmask.detection_reward(seg, mask, grid, level=level)
    assert got == [pytest.approx(want, rel=1e-12, abs=1e-15)]


@settings(deadline=None, max_examples=25)
@given(cases=st.lists(detection_cases(), min_size=1, max_size=12))
def test_detection_reward_batch_matches_single_calls(cases):
    cases = [c for c in cases if c[0] == cases[0][0]]  # one grid per reward
    grid = cases[0][0]
    d = DetectionReward(grid=grid)
    completions = [c[3] for c in cases]
    masks = [c[1] for c in cases]
    batch = trl_call(d, completions, mask=masks)
    single = [trl_call(d, [c], mask=[m])[0] for c, m in zip(completions, masks, strict=True)]
    assert batch == pytest.approx(single, rel=1e-12, abs=1e-15)


def test_grpo_batch_of_16_completions_times_4_prompts(tmp_path):
    rng = np.random.default_rng(7)
    gts: list = []
    m0 = np.zeros((100, 80), np.uint8)
    m0[10:30, 5:40] = 255
    gts.append(m0)  # array, the same object repeated
    m1 = np.zeros((512, 512), bool)
    m1[200:260, 300:310] = True
    path = tmp_path / "m1.png"
    Image.fromarray(m1.astype(np.uint8) * 255).save(path)
    gts.append(str(path))  # a mask file
    gts.append("")  # a normal image
    gts.append("(5, 3)-(5, 8), (6, 4)")  # a canonical seg text
    answers = ["A", "B", "A", "C"]
    options = [["Yes", "No"], ["Yes", "No"], {"A": "Yes", "B": "No"}, ["crack", "hole", "scratch"]]

    completions, mask_col, answer_col, options_col = [], [], [], []
    for k in range(4):
        for _ in range(16):
            cells = rng.random((24, 24)) < rng.choice([0.0, 0.01, 0.05])
            seg = textmask.encode(cells)
            letter = "ABC"[int(rng.integers(3))]
            style = int(rng.integers(4))
            completions.append(
                [
                    seg_response(seg, letter),
                    f"<seg>{seg}</seg><think>t</think><answer>{letter}.</answer>",
                    f"<seg>{seg}</seg><think>t",
                    letter,
                ][style]
            )
            # TRL repeats a prompt's columns; arrays may arrive as equal copies too
            mask_col.append(gts[k].copy() if k == 0 and style == 3 else gts[k])
            answer_col.append(answers[k])
            options_col.append(options[k])
    cols = dict(mask=mask_col, answer=answer_col, options=options_col)
    for reward in make_rewards():
        batch = trl_call(reward, completions, conversational=True, **cols)
        single = [
            trl_call(
                reward,
                [completions[i]],
                conversational=True,
                mask=[mask_col[i]],
                answer=[answer_col[i]],
                options=[options_col[i]],
            )[0]
            for i in range(64)
        ]
        assert batch == pytest.approx(single, rel=1e-12, abs=1e-15), reward.__name__
    # and the detection values against textmask directly
    det = trl_call(DetectionReward(), completions, **cols)
    for i, c in enumerate(completions):
        seg = c.split("<seg>")[1].split("</seg>")[0].split("<think>")[0] if "<seg>" in c else ""
        gt = mask_col[i]
        if isinstance(gt, str) and gt.endswith(".png"):
            gt = np.asarray(Image.open(gt))
        elif isinstance(gt, str):
            gt = textmask.decode(gt)
        assert det[i] == pytest.approx(textmask.detection_reward(seg, gt), rel=1e-12)


# --------------------------------------------------------------------------- answer
@pytest.mark.parametrize(
    ("completion", "gold", "expected"),
    [
        (GOOD, "B", 1.0),
        (GOOD, "A", 0.1),
        (GOOD, "b", 1.0),
        ("<seg></seg><think>x</think><answer>(B)</answer>", "B", 1.0),
        ("<seg></seg><think>x</think><answer>The answer is B</answer>", "B", 1.0),
        ("<seg></seg><think>x</think><answer>Yes</answer>", "B", 1.0),  # option B's text
        ("<seg></seg><think>x</think><answer>No</answer>", "B", 0.1),
        ("<seg></seg><think>x</think><answer>C</answer>", "C", 0.1),  # not an option
        ("<seg></seg><think>x</think><answer>hmm</answer>", "A", 0.1),
        ("<seg></seg><think>x</think>", "A", 0.1),
        ("B", "B", 1.0),  # untrained model: a bare letter
        ("", "A", 0.1),
    ],
)
def test_answer_reward_values(completion, gold, expected):
    got = trl_call(AnswerReward(), [completion], answer=[gold], options=[["No", "Yes"]])
    assert got == [expected]
    got = trl_call(
        AnswerReward(), [completion], conversational=True, answer=[gold], options=[["No", "Yes"]]
    )
    assert got == [expected]


def test_answer_reward_configurable_values():
    r = AnswerReward(correct=2.0, wrong=-1.0, invalid=-3.0)
    completions = [GOOD, GOOD, "<seg></seg><think>x</think><answer>?</answer>"]
    assert trl_call(r, completions, answer=["B", "A", "A"]) == [2.0, -1.0, -3.0]
    r = AnswerReward(correct=1.0, wrong=0.0)  # invalid defaults to wrong
    assert trl_call(r, completions, answer=["B", "A", "A"]) == [1.0, 0.0, 0.0]
    rs = make_rewards(correct=3.0, wrong=0.5)
    assert trl_call(rs[2], completions, answer=["B", "A", "A"]) == [3.0, 0.5, 0.5]


def test_answer_reward_none_gold_excludes_and_missing_column_raises():
    assert trl_call(AnswerReward(), [GOOD, GOOD], answer=[None, "B"]) == [None, 1.0]
    with pytest.raises(KeyError, match="'answer'"):
        trl_call(AnswerReward(), [GOOD], mask=["(1, 1)"])
    with pytest.raises(KeyError, match="'gold'"):
        trl_call(AnswerReward(answer_column="gold"), [GOOD], answer=["B"])


def test_answer_reward_options_as_json_text():
    c = "<seg></seg><think>x</think><answer>scratch</answer>"
    got = trl_call(AnswerReward(), [c], answer=["C"], options=['["crack", "hole", "scratch"]'])
    assert got == [1.0]


def test_rewards_read_options_padded_by_hugging_face_datasets():
    """A dict ``options`` column comes back from ``datasets`` with the union of keys,
    missing ones set to None.  The real options must still be used: "Yes" is A, and
    "C" (only a padding key) is not an option of this question."""
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list(
        [
            {"answer": "A", "options": {"A": "Yes", "B": "No"}},
            {"answer": "C", "options": {"A": "crack", "B": "hole", "C": "scratch"}},
        ]
    )
    padded = ds[0]["options"]
    assert padded == {"A": "Yes", "B": "No", "C": None}
    said_yes = "<seg></seg><think>x</think><answer>Yes</answer>"
    said_c = "<seg></seg><think>x</think><answer>C</answer>"
    assert trl_call(AnswerReward(), [said_yes], answer=["A"], options=[padded]) == [1.0]
    assert trl_call(FormatReward(), [said_c], options=[padded]) == [0.0]


# --------------------------------------------------------------------------- pickling
def test_rewards_pickle_and_give_the_same_values(tmp_path):
    png = tmp_path / "m.png"
    Image.fromarray(gt48().astype(np.uint8) * 255).save(png)
    completions = [seg_response(s, a) for (s, *_), a in zip(HAND, "ABABA", strict=True)]
    cols = dict(
        mask=[str(png), gt48(), "", "(0, 0)-(0, 2)", None],
        answer=["A", "A", "B", None, "B"],
        options=[["Yes", "No"]] * 5,
    )
    rewards = [*make_rewards(), *make_rewards(alpha=1.0, grid=(24, 24), level="cell", wrong=0.0)]
    for r in rewards:
        before = trl_call(r, completions, **cols)  # also fills the detection cache
        clone = pickle.loads(pickle.dumps(r))
        assert clone.__name__ == r.__name__
        assert trl_call(clone, completions, **cols) == before
        assert trl_call(clone, completions, conversational=True, **cols) == before


def test_make_rewards_forwards_configuration():
    fmt, det, ans = make_rewards(
        alpha=1.0, grid=(6, 9), mask_column="m", answer_column="a", options_column="o"
    )
    c = "<seg>(5, 8)</seg><think>x</think><answer>B</answer>"
    assert trl_call(fmt, [c], o=[["x", "y"]]) == [1.0]
    assert trl_call(det, [c], m=["(5, 8)"]) == [1.0]
    assert trl_call(ans, [c], a=["B"], o=[["x", "y"]]) == [1.0]


# --------------------------------------------------------------------------- malformed batches
# (issue 10, item 12: a None completion used to score as empty text, 1.0 on a normal image)
NORMAL = {"mask": [""], "answer": ["A"], "options": [["Yes", "No"]]}
BAD_COMPLETIONS = [
    (None, TypeError, "got NoneType"),
    (5, TypeError, "got int 5"),
    ({"role": "assistant", "content": EMPTY_SEG}, TypeError, "got dict"),
    (b"<seg></seg>", TypeError, "got bytes"),
    ([], ValueError, "no assistant message"),
    ([{"role": "user", "content": "Q?"}], ValueError, "no assistant message"),
    ([{"role": "assistant", "content": None}], TypeError, "content must be a str"),
    ([{"role": "assistant"}], TypeError, "content must be a str"),
    ([{"role": "assistant", "content": [{"type": "text", "text": 5}]}], TypeError, "parts"),
    (["<seg></seg>"], TypeError, "not a dict"),
]


@pytest.mark.parametrize("reward", make_rewards(), ids=lambda r: r.__name__)
@pytest.mark.parametrize(("bad", "error", "says"), BAD_COMPLETIONS)
def test_a_malformed_completion_raises_naming_reward_index_and_type(reward, bad, error, says):
    completions = [EMPTY_SEG, bad]
    cols = {k: v * 2 for k, v in NORMAL.items()}
    with pytest.raises(error) as excinfo:
        trl_call(reward, completions, **cols)
    msg = str(excinfo.value)
    assert reward.__name__ in msg and "completion 1" in msg and says in msg, msg


def test_a_none_completion_no_longer_earns_the_normal_image_reward():
    with pytest.raises(TypeError, match="detection_reward: completion 0"):
        DetectionReward()([None], mask=[""])
    assert DetectionReward()([EMPTY_SEG], mask=[""]) == [1.0]  # the real empty prediction


@pytest.mark.parametrize("completions", ["<seg></seg>", {"content": "x"}, 5, None])
def test_completions_must_be_a_list(completions):
    for r in make_rewards():
        with pytest.raises(TypeError, match="completions must be a list"):
            r(completions, mask=[""], answer=["A"])


@pytest.mark.parametrize("column", ["options", "mask", "answer"])
@pytest.mark.parametrize("length", [0, 2, 4])
def test_a_column_of_the_wrong_length_names_the_column(column, length):
    cols = {"mask": ["", "", ""], "answer": ["A", "A", "A"], "options": [["Yes", "No"]] * 3}
    cols[column] = cols[column][:1] * length
    for r in make_rewards():
        uses = {
            "format_reward": {"options"},
            "detection_reward": {"mask"},
            "answer_reward": {"answer", "options"},
        }[r.__name__]
        if column not in uses:
            continue
        with pytest.raises(ValueError) as excinfo:
            trl_call(r, [EMPTY_SEG] * 3, **cols)
        msg = str(excinfo.value)
        assert f"column {column!r} has {length} entries for 3 completions" in msg
        assert r.__name__ in msg and "zip()" not in msg


@pytest.mark.parametrize("value", ["(1, 1)", {"A": "Yes"}, 5])
def test_a_column_that_is_not_a_list_is_a_type_error(value):
    with pytest.raises(TypeError, match="column 'mask' must be a list"):
        trl_call(DetectionReward(), [GOOD], mask=value)
    with pytest.raises(TypeError, match="column 'options' must be a list"):
        trl_call(FormatReward(), [GOOD], options=value)


@pytest.mark.parametrize(
    ("entry", "error", "says"),
    [
        (5, TypeError, "got int 5"),
        (True, TypeError, "got bool"),
        ({"path": "m.png"}, TypeError, "got dict"),
        (b"(1, 1)", TypeError, "got bytes"),
        ("no such thing", ValueError, "canonical"),
    ],
)
def test_a_bad_mask_entry_names_its_index(entry, error, says):
    with pytest.raises(error) as excinfo:
        trl_call(DetectionReward(), [GOOD, GOOD], mask=["(1, 1)", entry])
    msg = str(excinfo.value)
    assert "detection_reward: 'mask' entry 1" in msg and says in msg, msg


@pytest.mark.parametrize(
    ("gold", "error"),
    [
        (1, TypeError),
        (["B"], TypeError),
        ("AB", ValueError),
        ("", ValueError),
        ("Yes", ValueError),
        ("é", ValueError),
    ],
)
def test_a_bad_gold_letter_names_its_index(gold, error):
    with pytest.raises(error, match=r"answer_reward: 'answer' entry 1 must be an option letter"):
        trl_call(AnswerReward(), [GOOD, GOOD], answer=["B", gold])


@pytest.mark.parametrize(
    ("options", "error", "says"),
    [
        (5, TypeError, "got int 5"),
        ("A: Yes, B: No", ValueError, "not the JSON"),
        ("5", ValueError, "not the JSON"),
        (b"[]", TypeError, "got bytes"),
    ],
)
def test_a_bad_options_entry_names_its_index(options, error, says):
    for r in (FormatReward(), AnswerReward()):
        with pytest.raises(error) as excinfo:
            trl_call(r, [GOOD, GOOD], answer=["B", "B"], options=[["No", "Yes"], options])
        msg = str(excinfo.value)
        assert f"{r.__name__}: 'options' entry 1" in msg and says in msg, msg


def test_documented_skips_and_optional_columns_still_work():
    fmt, det, ans = make_rewards()
    c = [GOOD, GOOD]
    assert trl_call(det, c, mask=[None, "(1, 1)"]) == [None, 2.0]
    assert trl_call(ans, c, answer=["B", None]) == [1.0, None]
    assert trl_call(ans, c, answer=[" b ", "B"], options=[None, '{"A": "No", "B": "Yes"}']) == [
        1.0,
        1.0,
    ]
    assert trl_call(fmt, c) == [1.0, 1.0]  # no options column
    assert trl_call(fmt, c, options=None) == [1.0, 1.0]  # an explicit None column: absent
    assert trl_call(fmt, c, options=[None, ["No", "Yes"]]) == [1.0, 1.0]


def test_array_columns_and_typed_content_parts_are_accepted():
    parts = [
        {"type": "text", "text": "<seg>(0, 0)</seg><think>t</think>"},
        {"type": "image"},
        {"type": "text", "text": "<answer>A</answer>"},
    ]
    completions = [[{"role": "assistant", "content": parts}], "<seg></seg><think>t</think>"]
    masks = np.zeros((2, 48, 48), bool)
    masks[0, :2, :2] = True
    fmt, det, ans = make_rewards()
    assert trl_call(fmt, completions) == [1.0, 0.0]
    assert trl_call(det, completions, mask=masks) == [2.0, 1.0]
    assert trl_call(ans, completions, answer=np.array(["A", "B"])) == [1.0, 0.1]
    # a conversation: the last assistant message counts, other roles are skipped
    convo = [{"role": "assistant", "content": "B"}, {"role": "tool", "content": "ok"}]
    assert trl_call(ans, [convo], answer=["B"]) == [1.0]


completion_values = st.one_of(
    st.sampled_from([GOOD, EMPTY_SEG, "", "B"]),
    st.sampled_from([GOOD, EMPTY_SEG]).map(lambda t: [{"role": "assistant", "content": t}]),
    st.sampled_from([None, 0, 1.5, {"content": "B"}, [], [None], [{"role": "user"}], b"x"]),
)


@settings(deadline=None, max_examples=300)
@given(completions=st.lists(completion_values, max_size=6))
def test_rewards_raise_exactly_when_a_completion_is_malformed(completions):
    n = len(completions)
    valid = all(
        isinstance(c, str)
        or (isinstance(c, list) and c and isinstance(c[0], dict) and "content" in c[0])
        for c in completions
    )
    cols = dict(mask=["(1, 1)"] * n, answer=["B"] * n, options=[["No", "Yes"]] * n)
    for r in make_rewards():
        try:
            out = trl_call(r, completions, **cols)
        except (TypeError, ValueError) as exc:
            assert not valid, exc
            assert r.__name__ in str(exc) and "completion " in str(exc)
        else:
            assert valid and all(type(v) is float for v in out)  # no sample is skipped


# --------------------------------------------------------------------------- adapters
def test_adapters_check_their_batches():
    from omniad_core import easyr1_compute_score, verl_compute_score, verl_compute_score_batch
    from omniad_core.integrations import OmniADScorer

    gt = {"answer": "B", "mask": "(1, 1)"}
    with pytest.raises(TypeError, match="solution_str: entry 0 must be the response text"):
        verl_compute_score("x", None, gt)
    with pytest.raises(TypeError, match="solution_strs must be a list"):
        verl_compute_score_batch(["x"], GOOD, [gt])
    with pytest.raises(ValueError, match="batch lengths differ: 2 data_sources, 1 solution_strs"):
        verl_compute_score_batch(["x", "y"], [GOOD], [gt], [None])
    with pytest.raises(ValueError, match="1 ground_truths, 2 extra_infos"):
        verl_compute_score_batch(["x"], [GOOD], [gt], [None, None])
    scorer = OmniADScorer()
    with pytest.raises(ValueError, match="batch lengths differ: 2 responses, 1 ground_truths"):
        scorer.score_batch([GOOD, GOOD], [gt])
    with pytest.raises(TypeError, match="responses: entry 1 must be the response text"):
        scorer.score_batch([GOOD, 5], [gt, gt])
    with pytest.raises(ValueError, match="ground truth 1 is JSON text of a list"):
        scorer.score_batch([GOOD, GOOD], [gt, "[1, 2]"])
    with pytest.raises(TypeError, match="answer_reward: 'answer' entry 0"):
        scorer.score_batch([GOOD], [{"answer": 2, "mask": ""}])
    with pytest.raises(TypeError, match=r"reward_inputs\[1\] must be a dict with 'response'"):
        easyr1_compute_score([{"response": GOOD, "ground_truth": gt}, {"response": GOOD}])
    with pytest.raises(
        TypeError, match=r"reward_inputs\[0\]\['response'\] must be the response text"
    ):
        easyr1_compute_score([{"response": None, "ground_truth": gt}])
    # well-formed batches are unchanged; a ground truth without a mask scores 0.0 there
    assert scorer.score_batch([GOOD], [{"answer": "B"}])[0]["detection"] == 0.0


def test_openrlhf_adapter_checks_lengths_and_types():
    pytest.importorskip("torch")
    from omniad_core import openrlhf_reward_func

    label = json.dumps({"answer": "B", "mask": "(1, 1)"})
    with pytest.raises(ValueError, match="batch lengths differ: 2 queries, 1 prompts, 2 labels"):
        openrlhf_reward_func([GOOD, GOOD], [""], [label, label])
    with pytest.raises(TypeError, match="queries: entry 0"):
        openrlhf_reward_func([None], [""], [label])
    with pytest.raises(TypeError, match="prompts: entry 0 must be a str or None"):
        openrlhf_reward_func([GOOD], [5], [label])
    out = openrlhf_reward_func([GOOD], [None], [label])
    assert out["rewards"].tolist() == [4.0]
