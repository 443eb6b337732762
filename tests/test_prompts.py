"""Prompts: the paper's system prompt, questions and options, chat messages.

The messages are rendered through the real Qwen2.5-VL chat template that TRL ships
(``trl/chat_templates/qwen2_5_vl.jinja``) with plain jinja2, configured as
transformers configures it (``trim_blocks``, ``lstrip_blocks``, sandboxed).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from qwen_template import qwen_template

from omniad_core import (
    DEFECT_QUESTION,
    REFERENCE_PREFIX,
    SYSTEM_PROMPT,
    Question,
    build_messages,
    format_question,
    split_images,
)
from omniad_core.prompts import normalize_options

# Copied by hand from the paper (docs/method.md quotes it too, in a code block).
PAPER_SYSTEM_PROMPT = r"""You are a special assistant for analysis image. The user asks a question, and you answer with the option's letter from the given choices directly. Firstly, you should detect anomalies in patches within <seg>/<\seg> tags. Then think about the reasoning process in the mind and then provide the user with the answer. The reasoning process and answer are enclosed within <think> /<\think> and <answer> /<\answer> tags, respectively, i.e., <seg>segmentation results here</seg><think> reasoning process here</think><answer> answer letter here</answer>"""

VISION = "<|vision_start|><|image_pad|><|vision_end|>"


# --------------------------------------------------------------------------- constants
def test_system_prompt_is_the_papers_text_verbatim():
    assert SYSTEM_PROMPT == PAPER_SYSTEM_PROMPT
    # the paper's backslash closers are kept as single backslashes
    assert "<\\seg>" in SYSTEM_PROMPT and "<\\\\seg>" not in SYSTEM_PROMPT
    assert SYSTEM_PROMPT.count("\\") == 3
    assert "\n" not in SYSTEM_PROMPT and SYSTEM_PROMPT.strip() == SYSTEM_PROMPT


def test_system_prompt_matches_the_method_page():
    text = (Path(__file__).resolve().parents[1] / "docs" / "method.md").read_text()
    block = text.split("system prompt, verbatim", 1)[1].split("```", 2)[1]
    assert block.strip("\n") == SYSTEM_PROMPT


def test_reference_prefix_and_default_question():
    assert REFERENCE_PREFIX == "This is an image of a normal object."
    assert DEFECT_QUESTION == "Is there any defect in the object?"


# --------------------------------------------------------------------------- options
def test_option_layout_lines():
    out = format_question("Is there any defect in the object?", ["Yes", "No"])
    assert out == "Is there any defect in the object?\nA: Yes\nB: No"


def test_option_layout_inline():
    out = format_question("Which defect?", {"A": "crack", "B": "hole", "C": "scratch"}, "inline")
    assert out == "Which defect? A: crack B: hole C: scratch"


def test_option_forms_are_equivalent():
    forms = [
        ["crack", "hole"],
        {"A": "crack", "B": "hole"},
        {"a": " crack ", "b": "hole\n"},
        [("A", "crack"), ("B", "hole")],
        (("a", "crack"), ["b", "hole"]),
    ]
    for f in forms:
        assert normalize_options(f) == {"A": "crack", "B": "hole"}
        assert list(normalize_options(f)) == ["A", "B"]


def test_option_order_is_kept_not_sorted():
    opts = {"C": "three", "A": "one", "B": "two"}
    assert format_question("Q?", opts) == "Q?\nC: three\nA: one\nB: two"


def test_question_without_options_is_just_the_text():
    assert format_question("  Describe the object.  ") == "Describe the object."


def test_unknown_layout_is_an_error():
    with pytest.raises(ValueError, match="layout"):
        format_question("Q?", ["x", "y"], layout="grid")


@settings(deadline=None, max_examples=60)
@given(
    texts=st.lists(
        st.text(st.characters(exclude_categories=("Cs", "Cc")), min_size=1, max_size=12).filter(
            lambda s: s.strip()
        ),
        min_size=1,
        max_size=26,
    ),
    layout=st.sampled_from(["lines", "inline"]),
)
def test_layouts_list_every_option_once_in_order(texts, layout):
    out = format_question("Q?", texts, layout)
    lines = [f"{chr(65 + k)}: {t.strip()}" for k, t in enumerate(texts)]
    assert out == ("\n" if layout == "lines" else " ").join(["Q?", *lines])
    assert Question(text="Q?", options=texts).prompt(layout) == out


# --------------------------------------------------------------------------- Question
def test_question_normalises_letters_text_and_answer():
    q = Question(text="  Is there any defect in the object? ", options=["Yes", "No"], answer=" b ")
    assert q.text == "Is there any defect in the object?"
    assert q.options == {"A": "Yes", "B": "No"}
    assert q.answer == "B"
    assert q.prompt() == "Is there any defect in the object?\nA: Yes\nB: No"
    assert q.prompt("inline") == "Is there any defect in the object? A: Yes B: No"


def test_question_is_frozen_and_rejects_unknown_fields():
    q = Question(text="Q?", options=["x", "y"])
    with pytest.raises(pydantic.ValidationError):
        q.answer = "A"
    with pytest.raises(pydantic.ValidationError, match="foo"):
        Question(text="Q?", options=["x", "y"], foo=1)


def _msg(excinfo) -> str:
    return " | ".join(e["msg"] for e in excinfo.value.errors())


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        (dict(text="Which?", options=["x", "y"], answer="C"), "answer 'C' is not one of"),
        (dict(text="Which?", options=["x", "y"], answer="AA"), "answer 'AA' is not one of"),
        (dict(text="Which?", options=[]), "options must not be empty"),
        (dict(text="Which?", options={}), "options must not be empty"),
        (dict(text="Which?", options=[("A", "x"), ("A", "y")]), "duplicate option letter 'A'"),
        (dict(text="Which?", options={"A": "x", "a": "y"}), "duplicate option letter 'A'"),
        (dict(text="   ", options=["x", "y"]), "blank"),
        (dict(text="Which?", options={"AA": "x", "B": "y"}), "single letters A-Z, got 'AA'"),
        (dict(text="Which?", options={"1": "x", "B": "y"}), "single letters A-Z, got '1'"),
        (dict(text="Which?", options={"A": "  ", "B": "y"}), "option A has no text"),
        (dict(text="Which?", options="AB"), "got the string 'AB'"),
    ],
)
def test_question_validation_errors_name_the_problem(kwargs, needle):
    with pytest.raises(pydantic.ValidationError) as excinfo:
        Question(**kwargs)
    assert isinstance(excinfo.value, ValueError)
    assert needle in _msg(excinfo)


def test_empty_question_text_is_rejected():
    with pytest.raises(pydantic.ValidationError) as excinfo:
        Question(text="", options=["x", "y"])
    assert excinfo.value.errors()[0]["loc"] == ("text",)


def test_answer_error_lists_the_valid_letters():
    with pytest.raises(pydantic.ValidationError) as excinfo:
        Question(text="Which?", options={"A": "x", "B": "y", "C": "z"}, answer="D")
    assert "['A', 'B', 'C']" in _msg(excinfo)


def test_format_question_rejects_blank_text_and_bad_options():
    with pytest.raises(ValueError, match="non-empty"):
        format_question("  ", ["x"])
    with pytest.raises(ValueError, match="duplicate"):
        format_question("Q?", [("B", "x"), ("b", "y")])
    with pytest.raises(ValueError, match="at most 26"):
        format_question("Q?", [str(k) for k in range(27)])


# --------------------------------------------------------------------------- messages
def test_zero_shot_messages():
    q = Question(text=DEFECT_QUESTION, options=["Yes", "No"], answer="A")
    msgs = build_messages(q, "query.png")
    assert msgs == [
        {"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]},
        {
            "role": "user",
            "content": [
                {"type": "image", "image": "query.png"},
                {"type": "text", "text": "Is there any defect in the object?\nA: Yes\nB: No"},
            ],
        },
    ]


def test_one_shot_messages_reference_first_then_prefix_then_query_then_question():
    ref, query = np.zeros((4, 4, 3), np.uint8), np.ones((4, 4, 3), np.uint8)
    msgs = build_messages("Which defect?", query, options=["crack", "hole"], reference=ref)
    assert [m["role"] for m in msgs] == ["system", "user"]
    content = msgs[1]["content"]
    assert [c["type"] for c in content] == ["image", "text", "image", "text"]
    assert content[0]["image"] is ref
    assert content[1]["text"] == REFERENCE_PREFIX
    assert content[2]["image"] is query
    assert content[3]["text"] == "Which defect?\nA: crack\nB: hole"


def test_one_shot_with_placeholders_and_inline_layout():
    msgs = build_messages(
        "Q?", None, options=["x", "y"], reference="ref.png", layout="inline", system_prompt=None
    )
    assert msgs == [
        {
            "role": "user",
            "content": [
                {"type": "image", "image": "ref.png"},
                {"type": "text", "text": REFERENCE_PREFIX},
                {"type": "image"},
                {"type": "text", "text": "Q? A: x B: y"},
            ],
        }
    ]


def test_falsy_reference_means_zero_shot():
    for ref in (None, False):
        msgs = build_messages("Q?", "q.png", options=["x", "y"], reference=ref)
        assert [c["type"] for c in msgs[1]["content"]] == ["image", "text"]


def test_custom_system_prompt_and_options_override():
    q = Question(text="Q?", options=["x", "y"])
    msgs = build_messages(q, "q.png", options={"A": "p", "B": "q", "C": "r"}, system_prompt="Hi")
    assert msgs[0]["content"][0]["text"] == "Hi"
    assert msgs[1]["content"][1]["text"] == "Q?\nA: p\nB: q\nC: r"


def test_split_images_moves_images_out_in_order():
    msgs = build_messages("Q?", "query.png", options=["x", "y"], reference="ref.png")
    before = repr(msgs)
    stripped, images = split_images(msgs)
    assert images == ["ref.png", "query.png"]
    assert [c for c in stripped[1]["content"] if c["type"] == "image"] == [
        {"type": "image"},
        {"type": "image"},
    ]
    assert stripped[0] == msgs[0]
    assert stripped[1]["content"][1] == {"type": "text", "text": REFERENCE_PREFIX}
    assert repr(msgs) == before  # the input is not modified
    # idempotent: placeholders stay, no images found
    again, none = split_images(stripped)
    assert again == stripped and none == []


def test_split_images_keeps_string_content_and_placeholders():
    msgs = [
        {"role": "system", "content": "plain text"},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Q"}]},
    ]
    out, images = split_images(msgs)
    assert out == msgs and images == []


# --------------------------------------------------------------------------- chat template


def test_zero_shot_renders_through_the_qwen25vl_template():
    tpl = qwen_template()
    msgs = build_messages(DEFECT_QUESTION, "q.png", options=["Yes", "No"])
    out = tpl.render(messages=msgs, add_generation_prompt=True)
    assert out == (
        f"<|im_start|>system\n{PAPER_SYSTEM_PROMPT}<|im_end|>\n"
        f"<|im_start|>user\n{VISION}Is there any defect in the object?\nA: Yes\nB: No<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert "You are a helpful assistant." not in out


def test_one_shot_renders_reference_image_first():
    tpl = qwen_template()
    msgs = build_messages("Which defect?", "q.png", options=["crack", "hole"], reference="r.png")
    out = tpl.render(messages=msgs, add_generation_prompt=True)
    user = out.split("<|im_start|>user\n", 1)[1].split("<|im_end|>", 1)[0]
    assert user == f"{VISION}{REFERENCE_PREFIX}{VISION}Which defect?\nA: crack\nB: hole"
    assert out.count("<|image_pad|>") == 2
    assert out.index(REFERENCE_PREFIX) < out.rindex("<|vision_start|>") < out.index("Which")
    assert out.startswith(f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n")


def test_split_messages_render_identically():
    tpl = qwen_template()
    msgs = build_messages("Q?", "q.png", options=["x", "y"], reference="r.png")
    stripped, images = split_images(msgs)
    assert len(images) == 2
    assert tpl.render(messages=stripped, add_generation_prompt=True) == tpl.render(
        messages=msgs, add_generation_prompt=True
    )


def test_no_system_prompt_falls_back_to_the_templates_default():
    tpl = qwen_template()
    msgs = build_messages("Q?", "q.png", options=["x", "y"], system_prompt=None)
    out = tpl.render(messages=msgs, add_generation_prompt=False)
    assert out.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n")
    assert SYSTEM_PROMPT not in out
    assert out.endswith("<|im_end|>\n")


def test_rendered_prompt_with_a_completion_parses():
    from omniad_core import parse_response

    tpl = qwen_template()
    msgs = build_messages(DEFECT_QUESTION, None, options=["Yes", "No"])
    msgs.append(
        {
            "role": "assistant",
            "content": "<seg>(3, 4)</seg><think>A dent.</think><answer>A</answer>",
        }
    )
    out = tpl.render(messages=msgs, add_generation_prompt=False)
    assistant = out.rsplit("<|im_start|>assistant\n", 1)[1].removesuffix("<|im_end|>\n")
    r = parse_response(assistant, options=["Yes", "No"])
    assert r.format_ok and r.answer == "A" and r.runs == [(3, 4, 4)]
