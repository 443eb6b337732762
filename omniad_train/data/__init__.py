"""Data preparation for OmniAD training: readers, records, templates and ``prepare``.

- Readers (reusable on their own, e.g. by evaluation runners): :func:`iter_mmad`,
  :func:`iter_mvtec`, :func:`iter_jsonl` yield :class:`Record` or :class:`Reject`.
- :func:`prepare` builds the SFT and GRPO datasets; :func:`prepare_main` is the
  ``omniad-train prepare`` command line.

The dataset schema and the output layout are documented in ``docs/data.md``.
"""

from omniad_train.data.cli import build_parser, prepare_main
from omniad_train.data.jsonl import JSONL_FIELDS, iter_jsonl
from omniad_train.data.output import features
from omniad_train.data.prepare import PrepareError, PrepareResult, prepare
from omniad_train.data.reasoning import (
    LOCATION_QUESTION,
    REGIONS,
    describe_mask,
    location_question,
    region_of,
    sft_target,
    template_reasoning,
)
from omniad_train.data.records import MaskInfo, Record, Reject, make_record
from omniad_train.data.sources import (
    IMAGE_SUFFIXES,
    defect_mask_problem,
    find_mvtec_mask,
    iter_mmad,
    iter_mvtec,
    mask_from_array,
    read_mask,
)

__all__ = [
    "IMAGE_SUFFIXES",
    "JSONL_FIELDS",
    "LOCATION_QUESTION",
    "REGIONS",
    "MaskInfo",
    "PrepareError",
    "PrepareResult",
    "Record",
    "Reject",
    "build_parser",
    "defect_mask_problem",
    "describe_mask",
    "features",
    "find_mvtec_mask",
    "iter_jsonl",
    "iter_mmad",
    "iter_mvtec",
    "location_question",
    "make_record",
    "mask_from_array",
    "prepare",
    "prepare_main",
    "read_mask",
    "region_of",
    "sft_target",
    "template_reasoning",
]
