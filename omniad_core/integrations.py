"""The OmniAD rewards behind the reward interfaces of veRL, OpenRLHF and EasyR1.

None of those frameworks is imported here; the functions have the names and shapes
each one calls (see ``docs/rewards.md``).  The ground truth of a sample is a dict, or
its JSON text, with keys ``answer`` (gold letter), ``mask`` (mask path, canonical seg
text, ``""`` for a normal image, or absent) and ``options`` (to read answers given as
option text).  A bare letter string is taken as ``{"answer": letter}``.

A malformed batch raises a ``TypeError`` or ``ValueError`` naming the argument, the
index, what was expected and what came (lists of different lengths, a response that is
not a str, a ground truth that is not a dict, its JSON text or a letter); a reward
that does not apply (no ``mask`` or no ``answer`` in the ground truth) counts 0.0.

The total score is the weighted sum of the rewards that apply (default weights 1, 1,
1, as TRL sums reward functions).  Configuration (``alpha``, ``grid``, ``weights``,
``correct``, ``wrong``) goes in as keyword arguments, which veRL forwards from
``custom_reward_function.reward_kwargs``.

>>> gt = {"answer": "B", "mask": "(1, 1)", "options": ["No", "Yes"]}
>>> out = verl_compute_score("mvtec", "<seg>(1, 1)</seg><think>.</think><answer>B</answer>", gt)
>>> out["score"], out["format"], out["detection"], out["answer"]
(4.0, 1.0, 2.0, 1.0)
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import textmask
from omniad_core.rewards import AnswerReward, DetectionReward, FormatReward

__all__ = [
    "OmniADScorer",
    "easyr1_compute_score",
    "openrlhf_reward_func",
    "response_from_query",
    "verl_compute_score",
    "verl_compute_score_batch",
]

_NAMES = ("format", "detection", "answer")


_GT_HINT = 'e.g. {"answer": "B", "mask": "path/or/seg text", "options": {...}}'


def _ground_truth(value: Any, k: int = 0) -> Mapping[str, Any]:
    if isinstance(value, Mapping):
        return value
    if isinstance(value, str):
        s = value.strip()
        if len(s) == 1 and s.isascii() and s.isalpha():
            return {"answer": s.upper()}
        try:
            obj = json.loads(s)
        except ValueError:
            raise ValueError(
                f"ground truth {k} ({value[:80]!r}) is neither a JSON object nor a letter; "
                f"store {_GT_HINT}"
            ) from None
        if isinstance(obj, dict):
            return obj
        raise ValueError(
            f"ground truth {k} is JSON text of a {type(obj).__name__}, not of an object; "
            f"store {_GT_HINT}"
        )
    raise ValueError(
        f"ground truth {k} must be a dict, its JSON text or a letter, got "
        f"{type(value).__name__} {repr(value)[:60]}; store {_GT_HINT}"
    )


def _batch(value: Any, name: str) -> list[Any]:
    """A per-sample argument as a list (not a str or dict, which are one sample)."""
    if isinstance(value, (str, bytes, bytearray, Mapping)) or not isinstance(value, Iterable):
        raise TypeError(
            f"{name} must be a list with one entry per sample, got {type(value).__name__} "
            f"{repr(value)[:60]}"
        )
    return list(value)


def _responses(values: list[Any], name: str) -> list[str]:
    for k, v in enumerate(values):
        if not isinstance(v, str):
            raise TypeError(
                f"{name}: entry {k} must be the response text (a str), got "
                f"{type(v).__name__} {repr(v)[:60]}"
            )
    return values


def _same_length(**columns: list[Any]) -> None:
    lengths = {name: len(v) for name, v in columns.items()}
    if len(set(lengths.values())) > 1:
        got = ", ".join(f"{n} {name}" for name, n in lengths.items())
        raise ValueError(f"batch lengths differ: {got}; pass one entry of each per sample")


class OmniADScorer:
    """The three rewards with weights, scoring plain response strings.

    >>> s = OmniADScorer(weights=(0.5, 1.0, 1.0))
    >>> s.score_batch(["<seg></seg><think>ok</think><answer>A</answer>"], [{"answer": "A", "mask": ""}])
    [{'score': 2.5, 'format': 1.0, 'detection': 1.0, 'answer': 1.0}]
    """

    def __init__(
        self,
        *,
        alpha: float = 2.0,
        grid: Any = 24,
        weights: Sequence[float] = (1.0, 1.0, 1.0),
        correct: float = 1.0,
        wrong: float = 0.1,
    ) -> None:
        w = tuple(float(x) for x in weights)
        if len(w) != 3:
            raise ValueError(f"weights are (format, detection, answer), got {list(w)}")
        self.weights = w
        self.rewards = (
            FormatReward(grid),
            DetectionReward(alpha, grid),
            AnswerReward(correct, wrong),
        )

    def score_batch(
        self, responses: Sequence[str], ground_truths: Sequence[Any]
    ) -> list[dict[str, float]]:
        """One dict per response: ``score`` (weighted sum) and each reward (0.0 if absent).

        Raises ``TypeError`` / ``ValueError`` for a malformed batch: arguments that are not
        lists of the same length, a response that is not a str, a ground truth that is not
        a dict, its JSON text or a letter, or a ground-truth value the rewards cannot use.
        """
        responses = _responses(_batch(responses, "responses"), "responses")
        ground_truths = _batch(ground_truths, "ground_truths")
        _same_length(responses=responses, ground_truths=ground_truths)
        gts = [_ground_truth(g, k) for k, g in enumerate(ground_truths)]
        cols = {
            "mask": [g.get("mask") for g in gts],
            "answer": [g.get("answer") for g in gts],
            "options": [g.get("options") for g in gts],
        }
        values = [r(responses, **cols) for r in self.rewards]
        out = []
        for k in range(len(responses)):
            row = {name: values[j][k] for j, name in enumerate(_NAMES)}
            total = sum(
                w * v for w, v in zip(self.weights, row.values(), strict=True) if v is not None
            )
            out.append(
                {
                    "score": float(total),
                    **{n: (0.0 if v is None else float(v)) for n, v in row.items()},
                }
            )
        return out


_SCORERS: dict[Any, OmniADScorer] = {}


def _freeze(value: Any) -> Any:
    """A hashable key for option values from configs (lists, ListConfigs, dicts, Grids)."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, textmask.Grid):
        return ("grid", value.rows, value.cols, value.threshold, value.index_base)
    if isinstance(value, Mapping):
        return ("map", tuple(sorted((str(k), _freeze(v)) for k, v in value.items())))
    if isinstance(value, Iterable):
        return ("seq", tuple(_freeze(v) for v in value))
    raise TypeError(
        f"reward option value {value!r} of type {type(value).__name__} is not supported"
    )


def _get_scorer(kwargs: dict[str, Any]) -> OmniADScorer:
    allowed = {"alpha", "grid", "weights", "correct", "wrong"}
    unknown = set(kwargs) - allowed
    if unknown:
        raise TypeError(f"unknown reward options {sorted(unknown)}; allowed: {sorted(allowed)}")
    key = _freeze(kwargs)
    scorer = _SCORERS.get(key)
    if scorer is None:
        opts = dict(kwargs)
        if "weights" in opts:
            opts["weights"] = tuple(opts["weights"])
        if isinstance(opts.get("grid"), Mapping):
            opts["grid"] = dict(opts["grid"])
        if isinstance(opts.get("grid"), Iterable) and not isinstance(opts["grid"], (dict, str)):
            opts["grid"] = tuple(opts["grid"])
        if len(_SCORERS) >= 16:
            _SCORERS.clear()
        scorer = _SCORERS[key] = OmniADScorer(**opts)
    return scorer


def verl_compute_score(
    data_source: Any, solution_str: str, ground_truth: Any, extra_info: Any = None, **kwargs: Any
) -> dict[str, float]:
    """veRL's ``compute_score``: a dict with ``score`` and the three rewards."""
    _responses([solution_str], "solution_str")
    return _get_scorer(kwargs).score_batch([solution_str], [ground_truth])[0]


def verl_compute_score_batch(
    data_sources: Sequence[Any],
    solution_strs: Sequence[str],
    ground_truths: Sequence[Any],
    extra_infos: Sequence[Any] | None = None,
    **kwargs: Any,
) -> list[dict[str, float]]:
    """veRL's batch reward manager form (plural argument names)."""
    solutions = _responses(_batch(solution_strs, "solution_strs"), "solution_strs")
    gts = _batch(ground_truths, "ground_truths")
    cols = {
        "data_sources": _batch(data_sources, "data_sources"),
        "solution_strs": solutions,
        "ground_truths": gts,
    }
    if extra_infos is not None:
        cols["extra_infos"] = _batch(extra_infos, "extra_infos")
    _same_length(**cols)
    return _get_scorer(kwargs).score_batch(solutions, gts)


def easyr1_compute_score(
    reward_inputs: Sequence[dict[str, Any]], **kwargs: Any
) -> list[dict[str, float]]:
    """EasyR1's batch ``compute_score``: dicts with ``response`` and ``ground_truth`` in,
    dicts with ``overall`` and each reward out."""
    if isinstance(reward_inputs, Mapping):
        raise TypeError("easyr1_compute_score takes a list of dicts (EasyR1's batch reward type)")
    inputs = _batch(reward_inputs, "reward_inputs")
    for k, r in enumerate(inputs):
        if not isinstance(r, Mapping) or "response" not in r or "ground_truth" not in r:
            have = sorted(r) if isinstance(r, Mapping) else type(r).__name__
            raise TypeError(
                f"reward_inputs[{k}] must be a dict with 'response' and 'ground_truth' "
                f"(EasyR1's reward input), got {have}"
            )
        if not isinstance(r["response"], str):
            raise TypeError(
                f"reward_inputs[{k}]['response'] must be the response text (a str), got "
                f"{type(r['response']).__name__} {repr(r['response'])[:60]}"
            )
    scores = _get_scorer(kwargs).score_batch(
        [r["response"] for r in inputs], [r["ground_truth"] for r in inputs]
    )
    return [{"overall": s["score"], **{n: s[n] for n in _NAMES}} for s in scores]


def response_from_query(query: str, prompt: str | None = None) -> str:
    """The response part of an OpenRLHF query (prompt + response with special tokens).

    >>> response_from_query("<|im_start|>user\\nQ<|im_end|>\\n<|im_start|>assistant\\n<answer>A</answer><|im_end|><|endoftext|>")
    '<answer>A</answer>'
    """
    marker = "<|im_start|>assistant"
    k = query.rfind(marker)
    if k >= 0:
        resp = query[k + len(marker) :]
        resp = resp[1:] if resp.startswith("\n") else resp
    elif prompt is not None and query.startswith(prompt):
        resp = query[len(prompt) :]
    else:
        resp = query
    end = resp.find("<|im_end|>")
    if end >= 0:
        resp = resp[:end]
    return resp.replace("<|endoftext|>", "")


def openrlhf_reward_func(
    queries: Sequence[str], prompts: Sequence[str], labels: Sequence[Any], **kwargs: Any
) -> dict[str, Any]:
    """OpenRLHF's ``reward_func``: tensors ``rewards`` and ``scores`` plus ``extra_logs``."""
    import torch

    queries = _responses(_batch(queries, "queries"), "queries")
    prompts = _batch(prompts, "prompts")
    labels = _batch(labels, "labels")
    _same_length(queries=queries, prompts=prompts, labels=labels)
    for k, p in enumerate(prompts):
        if p is not None and not isinstance(p, str):
            raise TypeError(f"prompts: entry {k} must be a str or None, got {type(p).__name__}")
    responses = [response_from_query(q, p) for q, p in zip(queries, prompts, strict=True)]
    scores = _get_scorer(kwargs).score_batch(responses, labels)
    total = torch.tensor([s["score"] for s in scores], dtype=torch.float32)
    return {
        "rewards": total,
        "scores": total.clone(),
        "extra_logs": {
            n: torch.tensor([s[n] for s in scores], dtype=torch.float32) for n in _NAMES
        },
    }
