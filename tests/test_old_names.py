"""Every public name ``textmask`` and ``omniad_core.metrics`` offered before issue 11
still imports from where it did, and the one confusion-count type is one object."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: The ``__all__`` of each module before issue 11 (omniad_core.metrics: before the split).
OLD_NAMES = {
    "textmask": [
        "FORMAT_VERSION",
        "MAX_SIDE",
        "REGIONS",
        "DecodeReport",
        "Grid",
        "GroundTruth",
        "Scores",
        "TextMaskError",
        "area",
        "cells_to_runs",
        "codec_fidelity",
        "decode",
        "decode_batch",
        "defect_masks",
        "detection_reward",
        "detection_rewards",
        "encode",
        "encode_batch",
        "f1",
        "iou",
        "is_canonical",
        "max_pixels",
        "patchify",
        "precision",
        "recall",
        "region",
        "region_of",
        "runs_to_cells",
        "runs_to_text",
        "score",
        "set_max_pixels",
        "text_to_runs",
        "unpatchify",
        "warmup",
    ],
    "textmask.codec": [
        "DecodeReport",
        "cells_to_runs",
        "decode",
        "decode_batch",
        "encode",
        "encode_batch",
        "is_canonical",
        "patchify",
        "runs_to_cells",
        "runs_to_text",
        "text_to_runs",
        "unpatchify",
    ],
    "textmask.metrics": [
        "GroundTruth",
        "Level",
        "Scores",
        "area",
        "f1",
        "iou",
        "precision",
        "recall",
        "score",
    ],
    "textmask.reward": ["detection_reward", "detection_rewards"],
    "textmask.grid": ["MAX_CELLS", "Grid", "GridLike"],
    "textmask.fidelity": ["DEFECT_KINDS", "MAX_DEFECT_PIXELS", "codec_fidelity", "defect_masks"],
    "textmask.regions": ["REGIONS", "region", "region_of"],
    "textmask.warmup": ["warmup"],
    "omniad_core.metrics": [
        "MMAD_TYPES",
        "Confusion",
        "DetectionMeter",
        "DetectionReport",
        "DetectionRow",
        "MMADMeter",
        "MMADReport",
        "MMADRow",
        "ThresholdResult",
        "Unanswerable",
        "apply_threshold",
        "confusion_at_threshold",
        "f1_at_threshold",
        "normalize_question_type",
        "optimal_threshold",
        "pr_curve",
    ],
    "omniad_core.metrics.confusion": ["Confusion"],
}


@pytest.mark.parametrize("module", sorted(OLD_NAMES))
def test_old_public_names_still_import(module):
    mod = importlib.import_module(module)
    missing = [n for n in OLD_NAMES[module] if not hasattr(mod, n)]
    assert not missing, f"{module} lost {missing}"
    assert set(OLD_NAMES[module]) <= set(mod.__all__), module


def test_one_confusion_type_and_one_ground_truth_home():
    import textmask
    from omniad_core import metrics
    from omniad_core.metrics import confusion, detection, thresholds
    from textmask import metrics as tm_metrics
    from textmask import reward

    assert metrics.Confusion is confusion.Confusion is textmask.Scores is tm_metrics.Scores
    assert detection.Confusion is thresholds.Confusion is textmask.Scores
    assert textmask.GroundTruth is reward.GroundTruth is tm_metrics.GroundTruth


def test_private_modules_list_what_other_modules_use():
    """Names used across modules are public in their (private) module's ``__all__``."""
    from textmask import _cells, _geometry, _kernels, _validate

    assert {"runs_text", "reward_many", "reward_of", "OK", "E_TRAILING"} <= set(_kernels.__all__)
    assert {"join_texts", "as_alpha", "char_offset", "edges"} <= set(_validate.__all__)
    assert set(_cells.__all__) == {"label_cells", "mask_words"}
    assert _geometry.__all__ == ["cell_edges"]
    for mod in (_cells, _geometry, _kernels, _validate):
        assert all(hasattr(mod, n) for n in mod.__all__), mod.__name__


def _private_imports(path: Path) -> list[str]:
    """``from M import _name`` and ``alias._name`` uses of another module's private name."""
    tree = ast.parse(path.read_text())
    modules: set[str] = set()
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            package = ROOT.joinpath(*(node.module or "").split("."))
            for a in node.names:
                is_module = (package / f"{a.name}.py").exists()  # a private module is fine
                if a.name.startswith("_") and not a.name.startswith("__") and not is_module:
                    found.append(f"{path.name}:{node.lineno}: from {node.module} import {a.name}")
                modules.add(a.asname or a.name)
        elif isinstance(node, ast.Import):
            modules |= {(a.asname or a.name).split(".")[0] for a in node.names}
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and isinstance(node.value, ast.Name)
            and node.value.id in modules
        ):
            found.append(f"{path.name}:{node.lineno}: {node.value.id}.{node.attr}")
    return found


@pytest.mark.parametrize("package", ["textmask", "omniad_core/metrics"])
def test_no_private_name_is_used_across_modules(package):
    """A helper another module needs has a public name (in a private module if it is
    internal): no ``codec._join``, ``grid._edges`` or ``metrics._alpha`` any more."""
    found = [f for path in sorted((ROOT / package).glob("*.py")) for f in _private_imports(path)]
    assert not found, found
