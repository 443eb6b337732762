"""omniad_core: prompts, response parsing, rewards, metrics and the Inspector.

Importing this package loads numpy, pydantic and textmask only; torch and
transformers load when an :class:`Inspector` is built.
"""

from omniad_core.backends import (
    Backend,
    EndpointBackend,
    EndpointError,
    Generation,
    TransformersBackend,
    VLLMBackend,
)
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
