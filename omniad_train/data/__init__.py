"""Data preparation for OmniAD training: readers, records, templates and ``prepare``.

- Readers (reusable on their own, e.g. by evaluation runners): :func:`iter_mmad`,
  :func:`iter_mvtec` (image folders in the layouts of :data:`LAYOUTS`), :func:`iter_jsonl`
  yield :class:`Record` or :class:`Reject`; :func:`iter_images` lists folder images.
- Question writers: :class:`TemplateWriter` writes the :data:`TEMPLATE_TYPES` questions;
  other writers (a teacher model) implement :class:`QuestionWriter`.
- :func:`prepare` builds the SFT and GRPO datasets; :func:`prepare_main` is the
  ``omniad-train prepare`` command line.

The dataset schema and the output layout are documented in ``docs/data.md``.
"""

from omniad_train.data.cli import build_parser, prepare_main
from omniad_train.data.jsonl import JSONL_FIELDS, iter_jsonl
from omniad_train.data.layouts import LAYOUTS, ImageItem, iter_images
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
from omniad_train.data.records import QUESTION_SOURCES, MaskInfo, Record, Reject, make_record
from omniad_train.data.sources import (
    IMAGE_SUFFIXES,
    defect_mask_problem,
    find_mvtec_mask,
    iter_mmad,
    iter_mvtec,
    mask_from_array,
    read_mask,
)
from omniad_train.data.templates import (
    TEMPLATE_TYPES,
    DatasetFacts,
    QuestionWriter,
    TemplateWriter,
    parse_question_types,
)

__all__ = [
    "IMAGE_SUFFIXES",
    "JSONL_FIELDS",
    "LAYOUTS",
    "LOCATION_QUESTION",
    "QUESTION_SOURCES",
    "REGIONS",
    "TEMPLATE_TYPES",
    "DatasetFacts",
    "ImageItem",
    "MaskInfo",
    "PrepareError",
    "PrepareResult",
    "QuestionWriter",
    "Record",
    "Reject",
    "TemplateWriter",
    "build_parser",
    "defect_mask_problem",
    "describe_mask",
    "features",
    "find_mvtec_mask",
    "iter_images",
    "iter_jsonl",
    "iter_mmad",
    "iter_mvtec",
    "location_question",
    "make_record",
    "mask_from_array",
    "parse_question_types",
    "prepare",
    "prepare_main",
    "read_mask",
    "region_of",
    "sft_target",
    "template_reasoning",
]
