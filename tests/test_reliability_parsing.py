"""Parsing untrusted model text in linear time, and agreeing with a plain oracle (issue 10, item 3).

The old tag pattern ``<\\s*([/\\\\]?)\\s*(seg|think|answer)\\s*>`` backtracked O(N**2) on
``<`` followed by N whitespace characters (16,000 of them: 13 s for one completion).
Growth is checked by counting work, never by timing: ``python_steps`` counts the
Python lines executed by a call (every loop of the tag scanner is Python code), and a
doubling of N may at most multiply that count by 2.5.  A regular expression's work in
C is invisible to such a counter, so the same hostile texts, large, also run in a
subprocess under a CPU-time rlimit that linear code stays far below.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from strategies import ex

from omniad_core import (
    AnswerReward,
    DetectionReward,
    FormatReward,
    extract_answer,
    parse_response,
)
from omniad_core.integrations import response_from_query
from omniad_core.parsing import block_text, read_answer
from omniad_core.tags import TAG_NAMES, has_tag, scan_tags

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- the oracle
def ref_tags(text: str) -> list[tuple[int, int, str, bool]]:
    """Tags by their definition, the slow obvious way.

    A tag holds no ``>`` before its end, so from each ``<`` the only candidate is the
    text up to the next ``>``: strip its whitespace, drop one leading closer mark and
    the whitespace after it, and what is left must be a name in ASCII letters.
    """
    out = []
    i = 0
    while (i := text.find("<", i)) >= 0:
        j = text.find(">", i)
        if j >= 0:
            inner = text[i + 1 : j].strip()
            closing = inner[:1] in ("/", "\\") and inner != ""
            if closing:
                inner = inner[1:].lstrip()
            if inner.isascii() and inner.lower() in TAG_NAMES:
                out.append((i, j + 1, inner.lower(), closing))
                i = j + 1
                continue
        i += 1
    return out


def ref_blocks(text: str) -> dict[str, tuple[str, bool] | None]:
    """The block each tag name means, as the parser documents it, from the oracle's tags.

    A block opened by ``<t>`` ends at the first ``</t>`` before any other opening tag
    (closers of other names in between are ignored); without one it is unclosed and
    ends at the next opening tag, or at the end.  A response means its first closed
    block of a name, else its first one.
    """
    tags = ref_tags(text)
    found: dict[str, list[tuple[str, bool]]] = {n: [] for n in TAG_NAMES}
    k = 0
    while k < len(tags):
        _, end, name, closing = tags[k]
        if closing:
            k += 1
            continue
        nxt = next((j for j in range(k + 1, len(tags)) if not tags[j][3]), len(tags))
        close = next((j for j in range(k + 1, nxt) if tags[j][2] == name), None)
        if close is not None:
            found[name].append((text[end : tags[close][0]], True))
            k = close + 1
        else:
            stop = tags[nxt][0] if nxt < len(tags) else len(text)
            found[name].append((text[end:stop], False))
            k = nxt
    return {
        n: (next((b for b in blocks if b[1]), blocks[0]) if blocks else None)
        for n, blocks in found.items()
    }


# unicode whitespace (str.isspace) and look-alike letters that are not ASCII
WHITESPACE = [
    " ",
    "\t",
    "\n",
    "\r",
    "\x0b",
    "\x0c",
    "\x1c",
    "\x1f",
    "\x85",
    "\xa0",
    "\u2028",
    "\u3000",
    "\u200b",
]  # (the last is not whitespace)
LOOKALIKES = ["\u212a", "\u017f", "\u0130", "\u0131"]  # Kelvin K, long s, dotted I, dotless i
PIECES = [
    "<",
    ">",
    "/",
    "\\",
    "seg",
    "SEG",
    "sEg",
    "think",
    "THINK",
    "Think",
    "answer",
    "ANSWER",
    "answeR",
    "thin",
    "se",
    "answe",
    "thinking",
    "segment",
    "x",
    "B",
    "(1, 1)",
    "(0, 2)-(0, 4)",
    "<seg>",
    "</seg>",
    "<\\seg>",
    "<think>",
    "</think>",
    "<answer>",
    "</answer>",
    "< / answer >",
    "<<",
    ">>",
    "</",
    "<\\",
    "th\u0130nk",
    "\u017feg",
    "thin\u212a",
]
tag_soup = st.lists(
    st.one_of(
        st.sampled_from(PIECES),
        st.sampled_from(WHITESPACE),
        st.sampled_from(LOOKALIKES),
        st.lists(st.sampled_from(WHITESPACE), max_size=6).map("".join),
        st.text(max_size=3),
    ),
    max_size=40,
).map("".join)


@settings(max_examples=ex(1500), deadline=None)
@given(text=tag_soup)
@example("<" + " " * 50 + "seg>")
@example("< \u3000/\x1c THINK\u2028>")
@example("<thin\u212a>x</\u017feg><th\u0130nk>")
@example("<<seg>>")
@example("< <seg")
def test_scan_tags_matches_the_oracle(text):
    got = [tuple(t) for t in scan_tags(text)]
    assert got == ref_tags(text)
    assert has_tag(text) == bool(got)
    assert [tuple(t) for t in scan_tags(text, limit=2)] == got[:2]


@settings(max_examples=ex(1000), deadline=None)
@given(text=tag_soup, options=st.sampled_from([None, ["Yes", "No"], {"A": "x", "B": "y"}, 5]))
@example("<seg>(1, 1)</think></seg><think>t<answer>B", None)
@example("<seg>a<seg>b</seg><think>c</seg></think><answer> B </answer>", ["Yes", "No"])
@example("<seg></seg><thin\u212a>x</thin\u212a><think>t</think><answer>A</answer>", None)
def test_parse_response_reads_the_blocks_the_oracle_finds(text, options):
    r = parse_response(text, options=options)  # never raises
    want = ref_blocks(text)
    assert (r.seg, r.think, r.answer_text) == tuple(
        None if want[n] is None else want[n][0] for n in TAG_NAMES
    )
    assert r.truncated == any(want[n] is not None and not want[n][1] for n in TAG_NAMES)
    for n in TAG_NAMES:
        assert block_text(text, n) == (None if want[n] is None else want[n][0])
    assert read_answer(text, options) == r.answer
    if r.format_ok:
        assert [(t[2], t[3]) for t in ref_tags(text)] == [
            (n, c) for n in TAG_NAMES for c in (False, True)
        ]


def test_unicode_lookalike_names_are_not_tags():
    text = "<seg>(1, 1)</seg><thin\u212a>x</thin\u212a><think>t</think><answer>A</answer>"
    r = parse_response(text)
    assert r.think == "t" and r.format_ok is False  # the Kelvin-sign block is prose
    assert not has_tag("<\u017feg>") and not has_tag("<th\u0130nk>")


# --------------------------------------------------------------------------- growth
def python_steps(fn: Callable[..., object], *args: object) -> int:
    """Python lines executed by ``fn(*args)``, in every frame it runs: a work count."""
    count = 0

    def local(frame, event, arg):
        nonlocal count
        if event == "line":
            count += 1
        return local

    previous = sys.gettrace()
    sys.settrace(lambda frame, event, arg: local)
    try:
        fn(*args)
    finally:
        sys.settrace(previous)
    return count


HOSTILE: dict[str, Callable[[int], str]] = {
    "< + spaces": lambda n: "<" + " " * n,
    "</ + spaces": lambda n: "</" + " " * n,
    "<\\ + tabs": lambda n: "<\\" + "\t" * n,
    "< spaces / spaces": lambda n: "<" + " " * n + "/" + "\n" * n + "x",
    "<seg + spaces": lambda n: "<seg" + " " * n,
    "many <": lambda n: "<" * n,
    "many < space": lambda n: "< " * n,
    "many </ think": lambda n: "</ think" * n,
    "unicode spaces": lambda n: "<" + "\u3000\u2028\x1c" * n + ">",
    "many tags": lambda n: "<seg>" * n,
    "many closers": lambda n: "</seg>" * n,
    "open tags alternate": lambda n: "<seg><think>" * n,
    "answer then spaces": lambda n: "<seg></seg><think>x</think><answer>The answer" + " " * n,
    "answer colons": lambda n: "<answer>answer" + ":" * n + "x",
    "answer is repeated": lambda n: "<answer>" + "answer is " * n,
    "option text": lambda n: "<answer>" + "Yes " * n,
}
PARSERS: dict[str, Callable[[str], object]] = {
    "scan_tags": scan_tags,
    "parse_response": lambda t: parse_response(t, options=["Yes", "No"]),
    "read_answer": lambda t: read_answer(t, ["Yes", "No"]),
    "block_text": lambda t: block_text(t, "answer"),
    "extract_answer": lambda t: extract_answer(t, ["Yes", "No"]),
    "format_reward": lambda t: FormatReward()([t], options=[["Yes", "No"]]),
    "answer_reward": lambda t: AnswerReward()([t], answer=["A"], options=[["Yes", "No"]]),
    "detection_reward": lambda t: DetectionReward()([t], mask=["(1, 1)"]),
}


@pytest.mark.parametrize("parser", list(PARSERS))
@pytest.mark.parametrize("family", list(HOSTILE))
def test_doubling_the_text_at_most_doubles_the_work(family, parser):
    make, fn = HOSTILE[family], PARSERS[parser]
    fn(make(8))  # first-call work (imports, caches) is not the text's
    counts = [python_steps(fn, make(n)) for n in (500, 1000, 2000, 4000)]
    for small, big in itertools.pairwise(counts):
        assert big <= 2.5 * small + 10, (family, parser, counts)


def test_the_step_counter_sees_quadratic_work():
    """The counter is a real measure: a quadratic scan grows 4x per doubling."""

    def quadratic(text):
        return sum(1 for i in range(len(text)) for _ in range(i))

    a, b = python_steps(quadratic, "x" * 100), python_steps(quadratic, "x" * 200)
    assert b > 3.5 * a


def test_hostile_texts_parse_under_a_cpu_time_limit():
    """C-level work (regular expressions) too: 200,000-character hostile texts, 60 s of CPU.

    Linear code needs well under a second per call; the old tag pattern needed about 13 s
    for 16,000 spaces and so some 40 minutes for these.
    """
    code = """
        import resource
        resource.setrlimit(resource.RLIMIT_CPU, (60, 70))
        from test_reliability_parsing import HOSTILE, PARSERS
        from omniad_core.integrations import response_from_query
        from omniad_core.tags import has_tag
        n = 200_000
        for family, make in HOSTILE.items():
            text = make(n)
            for name, fn in PARSERS.items():
                fn(text)
            has_tag(text)
        response_from_query("<|im_start|>assistan" * n + "<|im_end" * n, "<|im_start|>" * n)
        print("ok")
    """
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}",
    }
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
        env=env,
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", (
        f"return code {proc.returncode} (-24 SIGXCPU or -9 SIGKILL: the CPU-time limit was hit)",
        proc.stderr[-2000:],
    )


def test_response_from_query_on_near_miss_markers():
    q = "<|im_start|>assistan" * 1000 + "<|im_start|>assistant\nB<|im_end|>"
    assert response_from_query(q) == "B"
    counts = [python_steps(response_from_query, "<|im_start|>assistan" * n) for n in (1000, 2000)]
    assert counts[1] <= 2.5 * counts[0] + 10
