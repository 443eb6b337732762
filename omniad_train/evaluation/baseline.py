"""Asking a general model MMAD's way, so its rows sit next to an OmniAD checkpoint's.

MMAD scores general vision-language models (GPT-4o and its peers are the benchmark's
reference rows) by showing the image, the question with its lettered options as
``mmad.json`` words them, and asking for the letter alone: no system turn, no request
for a ``<seg>`` mask or ``<think>`` reasoning.  The ``mmad`` prompt of the runners does
the same (``--prompt mmad``); the answer is read by the same tolerant letter reader and
scored by the same :class:`~omniad_core.metrics.MMADMeter` as an OmniAD run, so both
can go in one table (the report and ``run.json`` record which prompt a run used).
In 1-shot mode the normal reference image comes first, with the sentence every
1-shot prompt of this package uses.

>>> print(mmad_question("Is there any defect in the object?", {"A": "Yes", "B": "No"}))
Is there any defect in the object?
A: Yes
B: No
Answer with the option's letter only.
"""

from __future__ import annotations

from typing import Any

from omniad_core.prompts import format_question

__all__ = ["MMAD_INSTRUCTION", "PROMPT_DESCRIPTIONS", "mmad_question"]

#: The last line of an MMAD-style user turn.
MMAD_INSTRUCTION = "Answer with the option's letter only."

#: What each ``--prompt`` value means, as the report prints it.
PROMPT_DESCRIPTIONS = {
    "omniad": "omniad: the checkpoint's system prompt (seg, think, answer in tags).",
    "mmad": (
        "mmad: MMAD's way for a general model: no system turn, the question and its "
        'options as mmad.json words them, then "Answer with the option\'s letter only."'
    ),
}


def mmad_question(question: str, options: Any, layout: str = "lines") -> str:
    """The user turn of an MMAD-style question: question, options, the instruction."""
    sep = "\n" if layout == "lines" else " "
    return format_question(question, options, layout) + sep + MMAD_INSTRUCTION  # type: ignore[arg-type]
