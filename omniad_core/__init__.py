"""omniad_core: prompts, response parsing, rewards, metrics and the Inspector.

Importing this package loads nothing: each public name is imported from its module on
first use (so ``omniad --help`` starts in a few hundredths of a second; ``docs/speed.md``).
numpy, pydantic and textmask load with the modules that use them; torch and transformers
when an :class:`Inspector` is built.

The embedded demo model (trained by ``omniad demo`` on synthetic defects only)::

    from omniad_core import Inspector, demo_model_path

    insp = Inspector.from_pretrained(demo_model_path())
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the names as static tools see them
    from omniad_core.backends import (
        Backend,
        EndpointBackend,
        EndpointError,
        Generation,
        TransformersBackend,
        VLLMBackend,
    )
    from omniad_core.checkpoint import demo_model_path
    from omniad_core.images import ImageError, load_image, load_mask, overlay, save_mask, to_uint8
    from omniad_core.inspector import (
        Analysis,
        CheckpointError,
        Inspector,
        check_model_location,
        load_spec,
        save_spec,
    )
    from omniad_core.integrations import (
        OmniADScorer,
        easyr1_compute_score,
        openrlhf_reward_func,
        verl_compute_score,
        verl_compute_score_batch,
    )
    from omniad_core.metrics import (
        MMAD_TYPES,
        Confusion,
        DetectionMeter,
        MMADMeter,
        normalize_question_type,
        optimal_threshold,
        pr_curve,
    )
    from omniad_core.parsing import ParsedResponse, extract_answer, parse_response
    from omniad_core.prompts import (
        DEFECT_QUESTION,
        REFERENCE_PREFIX,
        SYSTEM_PROMPT,
        Question,
        build_messages,
        format_question,
        split_images,
    )
    from omniad_core.rewards import (
        AnswerReward,
        DetectionReward,
        FormatReward,
        completion_text,
        make_rewards,
    )

#: Where each public name lives.
_LAZY: dict[str, str] = {
    "Analysis": "omniad_core.analysis",
    "AnswerReward": "omniad_core.rewards",
    "Backend": "omniad_core.backends",
    "CheckpointError": "omniad_core.inspector",
    "Confusion": "omniad_core.metrics",
    "DEFECT_QUESTION": "omniad_core.prompts",
    "DetectionMeter": "omniad_core.metrics",
    "DetectionReward": "omniad_core.rewards",
    "EndpointBackend": "omniad_core.backends",
    "EndpointError": "omniad_core.backends",
    "FormatReward": "omniad_core.rewards",
    "Generation": "omniad_core.backends",
    "ImageError": "omniad_core.images",
    "Inspector": "omniad_core.inspector",
    "MMADMeter": "omniad_core.metrics",
    "MMAD_TYPES": "omniad_core.metrics",
    "OmniADScorer": "omniad_core.integrations",
    "ParsedResponse": "omniad_core.parsing",
    "Question": "omniad_core.prompts",
    "REFERENCE_PREFIX": "omniad_core.prompts",
    "SYSTEM_PROMPT": "omniad_core.prompts",
    "TransformersBackend": "omniad_core.backends",
    "VLLMBackend": "omniad_core.backends",
    "build_messages": "omniad_core.prompts",
    "check_model_location": "omniad_core.inspector",
    "completion_text": "omniad_core.rewards",
    "demo_model_path": "omniad_core.checkpoint",
    "easyr1_compute_score": "omniad_core.integrations",
    "extract_answer": "omniad_core.parsing",
    "format_question": "omniad_core.prompts",
    "load_image": "omniad_core.images",
    "load_mask": "omniad_core.images",
    "load_spec": "omniad_core.inspector",
    "make_rewards": "omniad_core.rewards",
    "normalize_question_type": "omniad_core.metrics",
    "openrlhf_reward_func": "omniad_core.integrations",
    "optimal_threshold": "omniad_core.metrics",
    "overlay": "omniad_core.images",
    "parse_response": "omniad_core.parsing",
    "pr_curve": "omniad_core.metrics",
    "save_mask": "omniad_core.images",
    "save_spec": "omniad_core.inspector",
    "split_images": "omniad_core.prompts",
    "to_uint8": "omniad_core.images",
    "verl_compute_score": "omniad_core.integrations",
    "verl_compute_score_batch": "omniad_core.integrations",
}
__all__ = [
    "DEFECT_QUESTION",
    "MMAD_TYPES",
    "REFERENCE_PREFIX",
    "SYSTEM_PROMPT",
    "Analysis",
    "AnswerReward",
    "Backend",
    "CheckpointError",
    "Confusion",
    "DetectionMeter",
    "DetectionReward",
    "EndpointBackend",
    "EndpointError",
    "FormatReward",
    "Generation",
    "ImageError",
    "Inspector",
    "MMADMeter",
    "OmniADScorer",
    "ParsedResponse",
    "Question",
    "TransformersBackend",
    "VLLMBackend",
    "build_messages",
    "check_model_location",
    "completion_text",
    "demo_model_path",
    "easyr1_compute_score",
    "extract_answer",
    "format_question",
    "load_image",
    "load_mask",
    "load_spec",
    "make_rewards",
    "normalize_question_type",
    "openrlhf_reward_func",
    "optimal_threshold",
    "overlay",
    "parse_response",
    "pr_curve",
    "save_mask",
    "save_spec",
    "split_images",
    "to_uint8",
    "verl_compute_score",
    "verl_compute_score_batch",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        try:  # a submodule: omniad_core.images, ...
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
