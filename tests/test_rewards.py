"""The three OmniAD rewards, called exactly as TRL 1.16's GRPOTrainer calls them.

TRL calls every reward function with keyword arguments only: ``prompts``,
``completions``, ``completion_ids``, ``trainer_state``, ``log_extra``, ``log_metric``
and every other dataset column, each a list with one entry per completion, in groups
of ``num_generations`` completions that share a prompt.
"""

from __future__ import annotations

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
