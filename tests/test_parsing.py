"""Parsing model responses: never raises, strict format flag, runs, answers, truncation."""

from __future__ import annotations

import itertools
import re
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import textmask
from omniad_core import ParsedResponse, extract_answer, parse_response

WS_ALPHABET = " \t\n\r"
# what the parser treats as a tag (any case, inner spaces, / or \ closers)
TAG_LIKE = re.compile(r"<\s*[/\\]?\s*(seg|think|answer)\s*>", re.IGNORECASE)
YES_NO = {"A": "Yes", "B": "No"}


def ws(min_size=0, max_size=3):
    return st.text(alphabet=WS_ALPHABET, min_size=min_size, max_size=max_size)


def _runs(seg: str | None, grid=24) -> list[tuple[int, int, int]]:
    if seg is None:
        return []
    return [tuple(int(v) for v in r) for r in textmask.text_to_runs(seg, grid).tolist()]


# --------------------------------------------------------------------------- strategies
GRIDS = st.sampled_from(
    [24, 24, 24, (24, 24), (6, 9), (1, 30), (13, 1), 3, textmask.Grid(5, 7, index_base=1)]
)


@st.composite
def cell_grids(draw):
    grid = draw(GRIDS)
    rows, cols = textmask.Grid.of(grid).shape
    p = draw(st.sampled_from([0.0, 0.03, 0.2, 0.6, 1.0]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return grid, rng.random((rows, cols)) < p


WS_CHOICES = ["", "", " ", "  ", "\n", "\t", "\r\n", " \n "]


@st.composite
def spaced_canonical(draw, canon: str) -> str:
    """The canonical text with any ASCII whitespace between tokens (and around)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))

    def gap(at_least_one: bool = False) -> str:
        g = WS_CHOICES[int(rng.integers(len(WS_CHOICES)))]
        return g or (" " if at_least_one else "")

    tokens = re.findall(r"\d+|[(),\-]", canon)
    out = [gap()]
    for k, tok in enumerate(tokens):
        out.append(tok)
        if k + 1 < len(tokens):
            out.append(gap(tok == ","))  # the canonical ", " keeps some whitespace
    out.append(gap())
    return "".join(out)


think_texts = st.text(max_size=40).filter(lambda t: not TAG_LIKE.search(t))


@st.composite
def valid_responses(draw):
    """(response, parts) for a response that keeps the strict format."""
    grid, cells = draw(cell_grids())
    canon = textmask.encode(cells, grid)
    seg = draw(spaced_canonical(canon)) if draw(st.booleans()) else canon
    think = draw(think_texts)
    n_opts = draw(st.integers(1, 6))
    texts = [f"option {k}" for k in range(n_opts)]
    letter = chr(65 + draw(st.integers(0, n_opts - 1)))
    options = draw(st.sampled_from(["list", "dict", "none"]))
    options = {
        "list": texts,
        "dict": {chr(65 + k): t for k, t in enumerate(texts)},
        "none": None,
    }[options]
    gaps = [draw(ws(max_size=4)) for _ in range(6)]
    response = (
        f"{gaps[0]}<seg>{seg}</seg>{gaps[1]}<think>{think}</think>{gaps[2]}"
        f"<answer>{gaps[3]}{letter}{gaps[4]}</answer>{gaps[5]}"
    )
    return response, dict(
        grid=grid, cells=cells, seg=seg, think=think, letter=letter, options=options, n=n_opts
    )


# --------------------------------------------------------------------------- never raises
FRAGMENTS = [
    "<seg>",
    "</seg>",
    "<\\seg>",
    "< /SEG >",
    "<SEG>",
    "<think>",
    "</think>",
    "<\\think>",
    "<answer>",
    "</answer>",
    "<\\answer>",
    "</ Answer>",
    "(3, 4)",
    "(3, 4)-(3, 6)",
    "(14,\n12)",
    "[5, 7]",
    "(0, 0)-(0, 99999999999)",
    "(-1, 2)",
    "(",
    ")",
    "-",
    ",",
    "to",
    "A",
    "B",
    "b",
    "(B)",
    "B.",
    "B: Yes.",
    "Yes",
    "The answer is",
    "answer",
    "option",
    "According to the segmentation result, there is an anomaly in the object.",
    "none",
    "\n",
    " ",
    "\t",
    "<",
    ">",
    "/",
    "\\",
    "<|im_end|>",
    "é",
    "\x00",
]
fragment_texts = st.lists(
    st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=4)), max_size=25
).map("".join)
any_options = st.sampled_from(
    [None, ["Yes", "No"], YES_NO, ["crack", "hole", "scratch", "none"], "AB", 5, [1, 2], {}]
)


def _check_invariants(r: ParsedResponse, text: str, options, grid=24) -> None:
    assert isinstance(r, ParsedResponse)
    assert r.raw == text
    assert r.runs == _runs(r.seg, grid)
    assert isinstance(r.problems, list) and all(isinstance(p, str) for p in r.problems)
    if r.format_ok:
        assert not r.truncated
        assert r.seg is not None and r.think is not None and r.answer is not None
        assert r.answer_text is not None and r.answer_text.strip() == r.answer
    if r.answer is not None:
        assert re.fullmatch("[A-Z]", r.answer)
        if options in (["Yes", "No"], YES_NO):
            assert r.answer in "AB"
    if r.truncated:
        assert any("unclosed" in p for p in r.problems)


@settings(deadline=None, max_examples=300)
@given(text=st.text(), options=any_options)
def test_never_raises_on_any_text(text, options):
    r = parse_response(text, options=options)
    _check_invariants(r, text, options)
    extract_answer(text, options)


@settings(deadline=None, max_examples=400)
@given(text=fragment_texts, options=any_options, grid=st.sampled_from([24, (6, 9), 2]))
def test_never_raises_on_tag_and_coordinate_soup(text, options, grid):
    r = parse_response(text, options=options, grid=grid)
    _check_invariants(r, text, options, grid)
    rows, cols = (grid, grid) if isinstance(grid, int) else grid
    assert r.grid == (rows, cols)
    assert r.cells.shape == (rows, cols)
    assert r.is_anomalous == bool(r.runs)


@pytest.mark.parametrize("value", [None, b"<answer>B</answer>", 5, ["B"], {"content": "B"}])
def test_non_text_input_gives_an_empty_result_with_a_problem(value):
    r = parse_response(value)
    assert r.answer is None and not r.format_ok and r.runs == []
    assert r.problems and "not text" in r.problems[0]


def test_invalid_grid_does_not_raise():
    r = parse_response("<seg>(1, 1)</seg><think>x</think><answer>A</answer>", grid=0)
    assert not r.format_ok and r.problems and "grid" in r.problems[0]


# --------------------------------------------------------------------------- strict format
@settings(deadline=None, max_examples=250)
@given(case=valid_responses())
def test_valid_responses_keep_the_format(case):
    response, p = case
    r = parse_response(response, options=p["options"], grid=p["grid"])
    assert r.format_ok, (response, r.problems)
    assert r.problems == []
    assert not r.truncated
    assert r.answer == p["letter"]
    assert r.seg == p["seg"] and r.think == p["think"]
    assert r.runs == _runs(p["seg"], p["grid"])
    assert np.array_equal(r.cells, p["cells"])
    if textmask.Grid.of(p["grid"]).index_base == 0:  # 1-based: see test_one_based_grid_*
        assert r.seg_canonical == textmask.encode(p["cells"], p["grid"])


NON_CANONICAL_SEGS = [
    "none",
    "no anomaly",
    "[3, 4]",
    "(3, 6)-(3, 4)",
    "(3, 4), (3, 5)",
    "(3, 4)-(3, 4)",
    "(4, 5), (3, 4)",
    "(3, 4),",
    "(3, 4); (4, 5)",
    "(3, 4) (4, 5)",
    "(3, 4)-(4, 5)",
    "(24, 0)",
    "(03, 4)",
    "(-1, 2)",
    "(3 4)",
    "(3, 4) to (3, 6)",
]


@st.composite
def broken_responses(draw):
    """A valid response with exactly one thing broken, and what was broken."""
    _, p = draw(valid_responses())
    blocks = {
        "seg": f"<seg>{p['seg']}</seg>",
        "think": f"<think>{p['think']}</think>",
        "answer": f"<answer>{p['letter']}</answer>",
    }
    order = ["seg", "think", "answer"]
    kind = draw(
        st.sampled_from(
            ["missing", "order", "duplicate", "between", "seg", "answer", "unclosed", "extra_open"]
        )
    )
    if kind == "missing":
        order.remove(draw(st.sampled_from(order)))
    elif kind == "order":
        perms = [list(q) for q in itertools.permutations(order) if list(q) != order]
        order = draw(st.sampled_from(perms))
    elif kind == "duplicate":
        tag = draw(st.sampled_from(order))
        order.insert(draw(st.integers(0, 3)), tag)
    elif kind == "seg":
        blocks["seg"] = f"<seg>{draw(st.sampled_from(NON_CANONICAL_SEGS))}</seg>"
    elif kind == "answer":
        letter, text = p["letter"], f"option {ord(p['letter']) - 65}"
        bad = [f"{letter}.", f"({letter})", f"{letter}: {text}", f"Answer: {letter}", "", "AB"]
        bad += ["1", f"{letter} {letter}", f"{letter}\n{text}"]
        if p["options"] is not None:
            bad.append(chr(65 + p["n"]))  # a letter after the last option
        blocks["answer"] = f"<answer>{draw(st.sampled_from(bad))}</answer>"
    elif kind == "unclosed":
        tag = draw(st.sampled_from(order))
        blocks[tag] = blocks[tag].replace(f"</{tag}>", "")
    elif kind == "extra_open":
        tag = draw(st.sampled_from(order))
        blocks[tag] = blocks[tag] + f"<{tag}>"
    parts = [blocks[t] for t in order]
    if kind == "between":
        junk = draw(
            st.text(min_size=1, max_size=10).filter(lambda t: t.strip() and not TAG_LIKE.search(t))
        )
        parts.insert(draw(st.integers(0, len(parts))), junk)
    gap = draw(ws(max_size=2))
    return gap.join(parts), kind, p


@settings(deadline=None, max_examples=300)
@given(case=broken_responses())
def test_broken_responses_fail_the_format(case):
    response, kind, p = case
    r = parse_response(response, options=p["options"], grid=p["grid"])
    assert not r.format_ok, (kind, response)
    assert r.runs == _runs(r.seg, p["grid"])


@pytest.mark.parametrize(
    "response",
    [
        "<seg>(3, 4)</seg><think>x</think><answer>B</answer>",
        "<seg></seg><think>x</think><answer>B</answer>",
        "\n <seg>\n(3, 4)-(3, 6),\n(5, 7)\n</seg>\n\n<think>A scratch.\n</think>\n<answer>\n B \n</answer>\n",
        "<seg>(14,\n12)</seg><think>x</think><answer>A</answer>",
    ],
)
def test_strict_examples(response):
    assert parse_response(response, options=YES_NO).format_ok


@pytest.mark.parametrize(
    "response",
    [
        "<seg>(3, 4)</seg><think>x</think><answer>B.</answer>",
        "<seg>(3, 4)</seg><think>x</think><answer>(B)</answer>",
        "<seg>(3, 4)</seg><think>x</think><answer>C</answer>",  # not an option
        "<seg>(3, 4)</seg><think>x</think>",
        "<seg>(3, 4)</seg> so <think>x</think><answer>B</answer>",
        "<think>x</think><seg>(3, 4)</seg><answer>B</answer>",
        "<seg>(3, 4)</seg><think>x</think><answer>B</answer><answer>B</answer>",
        "<seg>[3, 4]</seg><think>x</think><answer>B</answer>",
        "<seg>(3, 4)</seg><think>x</think><answer>B</answer> done",
        "<seg>(3, 4)</seg><think>x</think><answer>B",
    ],
)
def test_non_strict_examples(response):
    assert not parse_response(response, options=YES_NO).format_ok


def test_format_failure_is_explained_in_problems_for_wrong_order():
    """Everything the parser tolerated must be listed in ``problems`` (module docstring)."""
    r = parse_response("<answer>B</answer><think>x</think><seg>(1, 1)</seg>", options=YES_NO)
    assert not r.format_ok
    assert r.answer == "B" and r.runs == [(1, 1, 1)]
    assert r.problems, "blocks in the wrong order were tolerated silently"


def test_format_failure_is_explained_in_problems_for_text_between_blocks():
    r = parse_response("<seg>(1, 1)</seg>hi<think>x</think><answer>B</answer>", options=YES_NO)
    assert not r.format_ok
    assert r.problems, "text between blocks was tolerated silently"


# --------------------------------------------------------------------------- runs and masks
@settings(deadline=None, max_examples=200)
@given(
    seg=fragment_texts.filter(lambda t: not TAG_LIKE.search(t)),
    grid=st.sampled_from([24, (6, 9), (30, 2), textmask.Grid(6, 9, index_base=1)]),
    shape=st.tuples(st.integers(1, 70), st.integers(1, 70)),
)
def test_runs_cells_and_mask_match_textmask(seg, grid, shape):
    r = parse_response(f"<seg>{seg}</seg><think>t</think><answer>A</answer>", grid=grid)
    assert r.seg == seg
    assert r.runs == _runs(seg, grid)
    assert np.array_equal(r.cells, textmask.decode(seg, grid))
    mask = r.mask(shape)
    assert mask.dtype == bool and mask.shape == shape
    assert np.array_equal(mask, textmask.decode(seg, grid, shape=shape))


def test_runs_are_canonical_zero_based_tuples():
    r = parse_response("<seg>(3, 6)-(3, 4); [3, 5] and (4,5)</seg>")
    assert r.runs == [(3, 4, 6), (4, 5, 5)]
    assert r.seg_canonical == "(3, 4)-(3, 6), (4, 5)"
    assert r.is_anomalous
    assert r.cells.sum() == 4


def test_one_based_grid():
    g = textmask.Grid(24, 24, index_base=1)
    r = parse_response(
        "<seg>(1, 1)-(1, 3), (24, 24)</seg><think>x</think><answer>A</answer>", grid=g
    )
    assert r.format_ok and r.runs == [(0, 0, 2), (23, 23, 23)]
    assert np.array_equal(r.mask((50, 50)), textmask.decode(r.seg, g, shape=(50, 50)))
    assert not parse_response(
        "<seg>(0, 0)</seg><think>x</think><answer>A</answer>", grid=g
    ).format_ok


def test_one_based_grid_seg_canonical_uses_the_grids_convention():
    """``seg_canonical`` is "the decoded seg written canonically"; on a 1-based grid the
    canonical text is 1-based (docs/format.md: ``index_base`` is a parameter of the format)."""
    g = textmask.Grid(24, 24, index_base=1)
    r = parse_response(
        "<seg>(1, 1)-(1, 3), (24, 24)</seg><think>x</think><answer>A</answer>", grid=g
    )
    assert r.seg_canonical == "(1, 1)-(1, 3), (24, 24)"


def test_mask_of_the_papers_example_shape():
    r = parse_response("<seg>(3, 4)-(3, 6), (4, 5), (5, 4)-(5, 7)</seg>")
    for shape in [(512, 512), (1024, 1024), (900, 1200), (24, 24)]:
        assert np.array_equal(r.mask(shape), textmask.decode(r.seg, shape=shape))
    assert r.cells.sum() == 3 + 1 + 4


def test_empty_and_missing_seg_predict_nothing():
    for text in ["<seg></seg><think>x</think><answer>A</answer>", "<answer>A</answer>", "A"]:
        r = parse_response(text)
        assert r.runs == [] and not r.is_anomalous and not r.mask((10, 10)).any()


# --------------------------------------------------------------------------- answers
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("B", "B"),
        ("B.", "B"),
        ("(B)", "B"),
        ("B: Yes.", "B"),
        ("B: No", "B"),
        ("b", "B"),
        (" b. ", "B"),
        ("\nB\n", "B"),
        ("[B]", "B"),
        ("B)", "B"),
        ("No", "B"),
        ("no", "B"),
        ("NO.", "B"),
        ("Yes", "A"),
        ("yes", "A"),
        ("The answer is B", "B"),
        ("The answer is B.", "B"),
        ("the answer is (b)", "B"),
        ("Answer: B", "B"),
        ("Option A", "A"),
        ("C", None),
        ("(C)", None),
        ("The answer is C", None),
        ("I am not sure", None),
        ("", None),
        ("   ", None),
        (None, None),
    ],
)
def test_extract_answer_with_options(text, expected):
    assert extract_answer(text, YES_NO) == expected
    assert extract_answer(text, ["Yes", "No"]) == expected


def test_extract_answer_without_options_accepts_any_letter():
    assert extract_answer("C") == "C"
    assert extract_answer("(d)") == "D"
    assert extract_answer("The answer is Z") == "Z"
    assert extract_answer("Yes") is None  # option text needs the options


def test_extract_answer_option_text_of_many_options():
    opts = {"A": "crack", "B": "hole", "C": "scratch", "D": "contamination"}
    assert extract_answer("scratch", opts) == "C"
    assert extract_answer("Contamination.", opts) == "D"
    assert extract_answer("D: contamination", opts) == "D"


def test_option_text_that_starts_with_a_capital_article_is_that_option():
    """The answer written exactly as an option's text must give that option's letter.

    Module docstring: answers written "as the option's text" are recognised.  Here the
    text of option B begins with the article "A", which is read as letter A.
    """
    opts = {"A": "Scratch", "B": "A hole in the surface"}
    assert extract_answer("A hole in the surface", opts) == "B"


def test_answer_in_response_uses_the_options():
    r = parse_response("<seg></seg><think>x</think><answer>Yes</answer>", options=["Yes", "No"])
    assert r.answer == "A" and not r.format_ok
    assert "the answer is not a single letter" in r.problems
    r = parse_response("<seg></seg><think>x</think><answer>C</answer>", options=["Yes", "No"])
    assert r.answer is None and not r.format_ok
    assert "no option letter in the answer" in r.problems


@pytest.mark.parametrize(
    ("text", "expected"),
    [("B", "B"), (" b ", "B"), ("(B)", "B"), ("B. The object is damaged.", "B"), ("C", None)],
)
def test_untagged_response_is_read_as_a_plain_answer(text, expected):
    r = parse_response(text, options=YES_NO)
    assert r.answer == expected
    assert r.seg is None and r.think is None and r.answer_text is None
    assert not r.format_ok and not r.truncated
    assert "no <seg> block" in r.problems


def test_tagged_response_without_answer_block_has_no_answer():
    # the think text mentions a letter; only the answer block counts once tags are used
    r = parse_response("<seg></seg><think>B is right</think>", options=YES_NO)
    assert r.answer is None and "no <answer> block" in r.problems


# --------------------------------------------------------------------------- tolerance
def test_paper_backslash_closers():
    text = "<seg>(1, 2)-(1, 4)<\\seg><think>According to the segmentation result, there is an anomaly in the object, which is located in the left top.<\\think><answer>B<\\answer>"
    r = parse_response(text, options=YES_NO)
    assert r.seg == "(1, 2)-(1, 4)"
    assert r.think.startswith("According to the segmentation result")
    assert r.answer == "B" and r.runs == [(1, 2, 4)]
    assert not r.truncated


def test_tags_in_any_case_and_with_inner_spaces():
    r = parse_response("< SEG >(2, 2)< /seg ><Think>x</ THINK><ANSWER>a</Answer >", options=YES_NO)
    assert r.seg == "(2, 2)" and r.think == "x" and r.answer == "A"
    assert not r.truncated


@pytest.mark.parametrize(
    ("text", "seg", "think", "answer", "problem"),
    [
        ("<seg>(1, 1)", "(1, 1)", None, None, "unclosed <seg> block"),
        (
            "<seg>(1, 1)</seg><think>the defect is",
            "(1, 1)",
            "the defect is",
            None,
            "unclosed <think>",
        ),
        ("<seg>(1, 1)</seg><think>x</think><answer>B", "(1, 1)", "x", "B", "unclosed <answer>"),
        ("<seg>(1, 1)</seg><think>x</think><answer>", "(1, 1)", "x", None, "unclosed <answer>"),
        ("<seg>(1, 1)<think>x</think><answer>B</answer>", "(1, 1)", "x", "B", "unclosed <seg>"),
    ],
)
def test_truncated_output_is_flagged(text, seg, think, answer, problem):
    r = parse_response(text, options=YES_NO)
    assert r.truncated and not r.format_ok
    assert r.seg == seg and r.think == think and r.answer == answer
    assert any(problem in p for p in r.problems)


def test_repeated_blocks_use_the_first_complete_one():
    r = parse_response(
        "<seg>(1, 1)</seg><seg>(2, 2)</seg><think>one</think><think>two</think>"
        "<answer>B</answer><answer>A</answer>",
        options=YES_NO,
    )
    assert r.seg == "(1, 1)" and r.runs == [(1, 1, 1)]
    assert r.think == "one" and r.answer == "B"
    assert not r.format_ok and not r.truncated
    assert sum("blocks; the first complete one is used" in p for p in r.problems) == 3


def test_first_complete_block_wins_over_an_earlier_unclosed_one():
    r = parse_response("<answer>A<answer>B</answer>", options=YES_NO)
    assert r.answer == "B"


def test_problems_of_a_tolerant_seg_are_reported():
    r = parse_response("<seg>(1, 1); (99, 99) hmm</seg><think>x</think><answer>A</answer>")
    assert r.runs == [(1, 1, 1)] and not r.format_ok
    assert any("seg text" in p for p in r.problems)
    r = parse_response("<seg>[1, 1]</seg><think>x</think><answer>A</answer>")
    assert "seg text is not canonical" in r.problems


# --------------------------------------------------------------------------- value object
def test_parsed_response_is_a_frozen_value():
    r = parse_response("<seg>(3, 4)</seg><think>x</think><answer>B</answer>")
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen error type
        r.answer = "A"
    assert r == parse_response(r.raw)
    d = r.model_dump()
    assert d["runs"] == [(3, 4, 4)] and d["format_ok"] is True


def test_parsed_responses_compare_equal_after_using_cells():
    """Two equal parses stay comparable after ``.cells`` / ``.mask()`` were used."""
    a = parse_response("<seg>(3, 4)-(3, 6)</seg><think>x</think><answer>B</answer>")
    b = parse_response(a.raw)
    a.mask((24, 24))
    b.mask((24, 24))
    assert a == b


# --------------------------------------------------------------------------- speed
def test_answer_parsing_is_not_cubic_in_whitespace():
    """A degenerate answer ("The answer" then hundreds of spaces) must parse quickly.

    Reward functions parse untrusted generations inside the RL loop; a few KB of
    whitespace (a model stuck emitting blank tokens) must not stall a training step.
    """
    text = "<seg></seg><think>x</think><answer>The answer" + " " * 700 + "?</answer>"
    t0 = time.perf_counter()
    parse_response(text, options=YES_NO)
    assert time.perf_counter() - t0 < 0.5


def test_long_junk_parses_quickly():
    junk = "<seg>" + "(1, 1)-(1, 99999999999), " * 2000 + "</seg><think>" + "why " * 5000
    t0 = time.perf_counter()
    r = parse_response(junk + "</think><answer>B</answer>")
    assert time.perf_counter() - t0 < 2.0
    assert r.runs == [(1, 1, 23)] and r.answer == "B"
