"""The rewards behind the reward interfaces of veRL, OpenRLHF and EasyR1.

Each adapter is called exactly as its framework calls it:

- veRL's reward managers: ``compute_score(data_source=..., solution_str=...,
  ground_truth=..., extra_info=...)`` with ``custom_reward_function.reward_kwargs``
  merged in as keyword arguments; the batch manager uses the plural names.
- OpenRLHF: ``reward_func(queries, prompts, labels)``; a query is the decoded
  sequence with special tokens (left pads, chat-templated prompt, response,
  ``<|im_end|>``, right pads).
- EasyR1's batch reward manager: ``compute_score(reward_inputs)`` over dicts with
  ``response``, ``response_length`` and ``ground_truth``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import textmask
from omniad_core import (
    AnswerReward,
    DetectionReward,
    FormatReward,
    easyr1_compute_score,
    openrlhf_reward_func,
    verl_compute_score,
    verl_compute_score_batch,
)
from omniad_core.integrations import OmniADScorer, response_from_query

ROOT = Path(__file__).resolve().parent.parent
GOOD = "<seg>(1, 1)</seg><think>A spot.</think><answer>B</answer>"
GT = {"answer": "B", "mask": "(1, 1)", "options": ["No", "Yes"]}
KEYS = {"score", "format", "detection", "answer"}


def singles(response: str, gt: dict, alpha=2.0, grid=24, correct=1.0, wrong=0.1):
    """The three rewards computed one by one, as TRL would (None = not applicable)."""
    cols = dict(mask=[gt.get("mask")], answer=[gt.get("answer")], options=[gt.get("options")])
    return (
        FormatReward(grid)([response], **cols)[0],
        DetectionReward(alpha, grid)([response], **cols)[0],
        AnswerReward(correct, wrong)([response], **cols)[0],
    )


def weighted(values, weights=(1.0, 1.0, 1.0)) -> float:
    return sum(w * v for w, v in zip(weights, values, strict=True) if v is not None)


# --------------------------------------------------------------------------- veRL
def test_verl_positional_call():
    out = verl_compute_score("mvtec", GOOD, GT, {"index": 3, "split": "train"})
    assert out == {"score": 4.0, "format": 1.0, "detection": 2.0, "answer": 1.0}
    assert all(type(v) is float for v in out.values())


def test_verl_keyword_call_as_the_naive_reward_manager_does():
    out = verl_compute_score(
        data_source="mvtec", solution_str=GOOD, ground_truth=GT, extra_info=None
    )
    assert out["score"] == 4.0


def test_verl_ground_truth_as_json_text_and_bare_letter():
    assert verl_compute_score("mvtec", GOOD, json.dumps(GT), None) == verl_compute_score(
        "mvtec", GOOD, GT, None
    )
    out = verl_compute_score("mvtec", GOOD, "B", None)  # only a letter: no mask
    assert out == {"score": 2.0, "format": 1.0, "detection": 0.0, "answer": 1.0}
    out = verl_compute_score("mvtec", GOOD, " b ", None)
    assert out["answer"] == 1.0


def test_verl_reward_kwargs_are_forwarded():
    # veRL merges custom_reward_function.reward_kwargs into the call's keywords
    out = verl_compute_score(
        data_source="mvtec", solution_str=GOOD, ground_truth=GT, extra_info=None, alpha=1.0
    )
    assert out == {"score": 3.0, "format": 1.0, "detection": 1.0, "answer": 1.0}
    out = verl_compute_score("mvtec", GOOD, {**GT, "answer": "A"}, None, correct=2.0, wrong=-1.0)
    assert out["answer"] == -1.0 and out["score"] == 1.0 + 2.0 - 1.0
    out = verl_compute_score("mvtec", GOOD, GT, None, weights=[0.5, 0.25, 2.0])
    assert out["score"] == pytest.approx(0.5 * 1 + 0.25 * 2 + 2.0 * 1)
    c = "<seg>(5, 8)</seg><think>x</think><answer>B</answer>"
    out = verl_compute_score("mvtec", c, {"answer": "B", "mask": "(5, 8)"}, None, grid=[6, 9])
    assert out == {"score": 4.0, "format": 1.0, "detection": 2.0, "answer": 1.0}


def test_verl_grid_given_as_a_grid_object():
    """``grid`` may be a ``textmask.Grid`` (as everywhere else in the package)."""
    out = verl_compute_score("mvtec", GOOD, GT, None, grid=textmask.Grid(24, 24))
    assert out["score"] == 4.0
    # a 1-based checkpoint (docs/format.md: every convention is a parameter) can only be
    # described by a Grid object; a JSON-like grid has no index base
    one = "<seg>(24, 24)</seg><think>x</think><answer>B</answer>"
    gt = {"answer": "B", "mask": "(24, 24)"}
    out = verl_compute_score("mvtec", one, gt, None, grid=textmask.Grid(24, 24, index_base=1))
    assert out["score"] == 4.0


class ListConfigLike(Sequence):
    """A read-only sequence that is not a ``list``, like OmegaConf's ``ListConfig``.

    veRL builds reward kwargs with ``dict(config.custom_reward_function.reward_kwargs)``,
    a shallow copy: a YAML list such as ``weights: [1, 1, 0.5]`` arrives as a ListConfig.
    """

    def __init__(self, items):
        self._items = list(items)

    def __getitem__(self, k):
        return self._items[k]

    def __len__(self):
        return len(self._items)


def test_verl_weights_given_as_a_non_list_sequence():
    out = verl_compute_score("mvtec", GOOD, GT, None, weights=ListConfigLike([1.0, 1.0, 0.5]))
    assert out["score"] == pytest.approx(1.0 + 2.0 + 0.5)


def test_verl_mask_file_in_ground_truth(tmp_path):
    m = np.zeros((48, 48), np.uint8)
    m[0:2, 0:5] = 255  # hand-counted in test_rewards: "(0, 1)-(0, 3)" gives 2 * 6/11
    path = tmp_path / "m.png"
    Image.fromarray(m).save(path)
    gt = {"answer": "A", "mask": str(path)}
    out = verl_compute_score(
        "mvtec", "<seg>(0, 1)-(0, 3)</seg><think>x</think><answer>A</answer>", gt, None
    )
    assert out["detection"] == pytest.approx(12 / 11)
    assert out["score"] == pytest.approx(1.0 + 12 / 11 + 1.0)


def test_verl_normal_image_and_missing_mask():
    normal = {"answer": "A", "mask": ""}
    assert (
        verl_compute_score("x", "<seg></seg><think>t</think><answer>A</answer>", normal)[
            "detection"
        ]
        == 1.0
    )
    assert verl_compute_score("x", GOOD, normal)["detection"] == 0.0
    out = verl_compute_score("x", GOOD, {"answer": "B", "mask": None})
    assert out["detection"] == 0.0 and out["score"] == 2.0


@pytest.mark.parametrize("bad", ["not json at all", "[1, 2]", 5])
def test_verl_bad_ground_truth_is_a_value_error(bad):
    with pytest.raises(ValueError, match="ground truth"):
        verl_compute_score("x", GOOD, bad, None)


def test_verl_batch_plural_names():
    responses = [GOOD, "B", "<seg>(1, 1)</seg><think>x", ""]
    gts = [GT, json.dumps(GT), {"answer": "A", "mask": ""}, "C"]
    out = verl_compute_score_batch(
        data_sources=["mvtec"] * 4,
        solution_strs=responses,
        ground_truths=gts,
        extra_infos=[None, {"i": 1}, None, None],
    )
    assert isinstance(out, list) and len(out) == 4
    for r, g, o in zip(responses, gts, out, strict=True):
        assert set(o) == KEYS
        assert o == verl_compute_score("mvtec", r, g, None)
    out = verl_compute_score_batch(
        data_sources=["a"], solution_strs=[GOOD], ground_truths=[GT], extra_infos=[None], alpha=1.0
    )
    assert out[0]["score"] == 3.0


def test_verl_batch_length_mismatch():
    with pytest.raises(ValueError, match="lengths differ"):
        verl_compute_score_batch(
            data_sources=["a", "b"], solution_strs=[GOOD], ground_truths=[GT], extra_infos=[None]
        )


# --------------------------------------------------------------------------- totals
responses = st.sampled_from(
    [
        GOOD,
        "<seg></seg><think>ok</think><answer>A</answer>",
        "<seg>(0, 0)-(0, 3), (2, 2)</seg><think>x</think><answer>B</answer>",
        "<seg>[1, 1]</seg><think>x</think><answer>Yes</answer>",
        "<seg>(1, 1)</seg><think>unfinished",
        "B",
        "",
        "<answer>C</answer>",
    ]
)
ground_truths = st.fixed_dictionaries(
    {
        "answer": st.sampled_from(["A", "B", "C"]),
        "mask": st.sampled_from(["", "(1, 1)", "(0, 0)-(0, 2)", "(2, 2), (5, 5)", None]),
        "options": st.sampled_from([["No", "Yes"], {"A": "x", "B": "y", "C": "z"}, None]),
    }
)


@settings(deadline=None, max_examples=60)
@given(
    resp=responses,
    gt=ground_truths,
    weights=st.tuples(*[st.sampled_from([0.0, 0.5, 1.0, 2.0])] * 3),
    alpha=st.sampled_from([1.0, 2.0]),
)
def test_totals_are_weighted_sums_of_the_single_rewards(resp, gt, weights, alpha):
    vals = singles(resp, gt, alpha=alpha)
    want = weighted(vals, weights)
    as_zero = [0.0 if v is None else v for v in vals]
    kw = dict(weights=list(weights), alpha=alpha)

    v = verl_compute_score("src", resp, json.dumps(gt), None, **kw)
    assert v["score"] == pytest.approx(want)
    assert [v["format"], v["detection"], v["answer"]] == pytest.approx(as_zero)

    e = easyr1_compute_score(
        [{"response": resp, "response_length": len(resp), "ground_truth": json.dumps(gt)}], **kw
    )[0]
    assert e["overall"] == pytest.approx(want)

    q = qwen_query("Q?", resp)
    o = openrlhf_reward_func([q], [qwen_prompt("Q?")], [json.dumps(gt)], **kw)
    assert o["rewards"].tolist() == pytest.approx([want])


# --------------------------------------------------------------------------- OpenRLHF
def qwen_prompt(question: str) -> str:
    return (
        "<|im_start|>system\nYou are a special assistant.<|im_end|>\n"
        f"<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>{question}<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def qwen_query(question: str, response: str, left_pad: int = 0, right_pad: int = 3) -> str:
    return (
        "<|endoftext|>" * left_pad
        + qwen_prompt(question)
        + response
        + "<|im_end|>"
        + "<|endoftext|>" * right_pad
    )


def test_openrlhf_reward_func():
    responses = [GOOD, "<seg></seg><think>x</think><answer>A</answer>", "B", "<seg>(1, 1)</seg>"]
    labels = [json.dumps(GT), json.dumps({"answer": "A", "mask": ""}), json.dumps(GT), GT]
    prompts = [qwen_prompt(f"Question {k}?\nA: No\nB: Yes") for k in range(4)]
    queries = [
        "<|endoftext|>" * k + p + r + "<|im_end|>" + "<|endoftext|>" * (5 - k)
        for k, (p, r) in enumerate(zip(prompts, responses, strict=True))
    ]
    out = openrlhf_reward_func(queries, prompts, labels)
    assert set(out) >= {"rewards", "scores", "extra_logs"}
    for key in ("rewards", "scores"):
        assert isinstance(out[key], torch.Tensor)
        assert out[key].shape == (4,) and out[key].dtype.is_floating_point
    gt_dicts = [GT, {"answer": "A", "mask": ""}, GT, GT]
    expected = [weighted(singles(r, g)) for r, g in zip(responses, gt_dicts, strict=True)]
    assert out["rewards"].tolist() == pytest.approx(expected)
    assert out["scores"].tolist() == pytest.approx(expected)
    logs = out["extra_logs"]
    assert set(logs) == {"format", "detection", "answer"}
    for v in logs.values():
        assert isinstance(v, torch.Tensor) and v.shape == (4,)
    assert logs["format"].tolist() == [1.0, 1.0, 0.0, 0.0]
    assert logs["detection"].tolist() == [2.0, 1.0, 0.0, 2.0]
    assert logs["answer"].tolist() == pytest.approx([1.0, 1.0, 1.0, 0.1])
    # keyword form and reward options
    out2 = openrlhf_reward_func(queries=queries, prompts=prompts, labels=labels, alpha=1.0)
    assert out2["extra_logs"]["detection"].tolist() == [1.0, 1.0, 0.0, 1.0]


def test_openrlhf_response_extraction():
    q = qwen_query("Q?", GOOD, left_pad=2, right_pad=4)
    assert response_from_query(q) == GOOD
    assert response_from_query(q, qwen_prompt("Q?")) == GOOD
    # a truncated response has no <|im_end|>, only pads
    cut = qwen_prompt("Q?") + "<seg>(1, 1)</seg><think>abc" + "<|endoftext|>" * 3
    assert response_from_query(cut) == "<seg>(1, 1)</seg><think>abc"
    # without a chat template: the prompt prefix is removed
    assert response_from_query("Question: Q? " + GOOD, "Question: Q? ") == GOOD


def test_openrlhf_one_sample():
    out = openrlhf_reward_func([qwen_query("Q?", GOOD)], [qwen_prompt("Q?")], [json.dumps(GT)])
    assert out["rewards"].shape == (1,) and out["rewards"].item() == 4.0


# --------------------------------------------------------------------------- EasyR1
def test_easyr1_compute_score():
    inputs = [
        {"response": GOOD, "response_length": 17, "ground_truth": json.dumps(GT)},
        {"response": "B", "response_length": 1, "ground_truth": "B"},
        {"response": GOOD, "response_length": 17, "ground_truth": GT},
    ]
    out = easyr1_compute_score(inputs)
    assert isinstance(out, list) and len(out) == 3
    assert out[0] == {"overall": 4.0, "format": 1.0, "detection": 2.0, "answer": 1.0}
    assert out[1] == {"overall": 1.0, "format": 0.0, "detection": 0.0, "answer": 1.0}
    assert out[2] == out[0]
    assert all(type(v) is float for d in out for v in d.values())
    assert easyr1_compute_score(inputs[:1], alpha=1.0)[0]["overall"] == 3.0
    assert easyr1_compute_score([]) == []


def test_easyr1_rejects_a_single_dict():
    with pytest.raises(TypeError, match="list of dicts"):
        easyr1_compute_score({"response": GOOD, "response_length": 1, "ground_truth": "B"})


# --------------------------------------------------------------------------- options
def test_unknown_reward_options_raise_type_error():
    with pytest.raises(TypeError, match="foo"):
        verl_compute_score("x", GOOD, GT, None, foo=1)
    with pytest.raises(TypeError, match="bogus"):
        verl_compute_score_batch(
            data_sources=["x"],
            solution_strs=[GOOD],
            ground_truths=[GT],
            extra_infos=[None],
            bogus=2,
        )
    with pytest.raises(TypeError, match="temperature"):
        openrlhf_reward_func([qwen_query("Q", GOOD)], [qwen_prompt("Q")], [GT], temperature=1)
    with pytest.raises(TypeError, match="beta"):
        easyr1_compute_score([{"response": GOOD, "response_length": 1, "ground_truth": GT}], beta=1)


def test_scorer_weights_validation_and_direct_use():
    with pytest.raises(ValueError, match="weights"):
        OmniADScorer(weights=(1.0, 1.0))
    s = OmniADScorer(weights=(0.5, 1.0, 1.0))
    out = s.score_batch(
        ["<seg></seg><think>ok</think><answer>A</answer>"], [{"answer": "A", "mask": ""}]
    )
    assert out == [{"score": 2.5, "format": 1.0, "detection": 1.0, "answer": 1.0}]


# --------------------------------------------------------------------------- light import
def test_import_omniad_core_leaves_torch_and_transformers_out():
    code = (
        "import sys, omniad_core\n"
        "omniad_core.parse_response('<seg>(1, 1)</seg><think>x</think><answer>A</answer>')\n"
        "print(sorted(m for m in ('torch', 'transformers', 'trl') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ},
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
