"""One resolver of a checkpoint's settings (grid, image size, system prompt).

``Inspector(path)``, ``Inspector.from_pretrained(path)``, ``Inspector(loaded_model)`` and
the evaluation runners must prompt a checkpoint the same way: before the resolver,
``Inspector(path)`` kept only the checkpoint's grid and ran the embedded demo model
(trained at 224 px) at 512 px.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from omniad_core.checkpoint import (
    DEFAULT_GRID,
    DEFAULT_IMAGE_SIZE,
    FROM_CHECKPOINT,
    resolve_settings,
    save_spec,
)
from omniad_core.inspector import demo_model_path
from omniad_core.prompts import SYSTEM_PROMPT

MODEL = demo_model_path()

_SPECS = st.fixed_dictionaries(
    {},
    optional={
        "textmask": st.integers(1, 40).map(lambda n: {"rows": n, "cols": n + 1}),
        "image_size": st.one_of(st.none(), st.integers(28, 1024)),
        "system_prompt": st.one_of(st.none(), st.text(max_size=20)),
    },
)
_GIVEN = st.one_of(st.just(FROM_CHECKPOINT), st.none())


@given(
    _SPECS,
    st.one_of(st.just(FROM_CHECKPOINT), st.integers(1, 30)),
    st.one_of(_GIVEN, st.integers(28, 1024)),
    st.one_of(_GIVEN, st.text(max_size=20)),
)
def test_given_beats_the_checkpoint_which_beats_the_default(spec, grid, size, prompt):
    s = resolve_settings(spec, grid=grid, image_size=size, system_prompt=prompt)
    if grid is not FROM_CHECKPOINT:
        assert s.grid.shape == (grid, grid) and s.source["grid"] == "given"
    elif "textmask" in spec:
        assert s.grid.shape == (spec["textmask"]["rows"], spec["textmask"]["cols"])
        assert s.source["grid"] == "omniad.json"
    else:
        assert s.grid.shape == (DEFAULT_GRID, DEFAULT_GRID) and s.source["grid"] == "default"
    want_size = size if size is not FROM_CHECKPOINT else spec.get("image_size", DEFAULT_IMAGE_SIZE)
    assert s.image_size == want_size
    want_prompt = (
        prompt if prompt is not FROM_CHECKPOINT else spec.get("system_prompt", SYSTEM_PROMPT)
    )
    assert s.system_prompt == want_prompt


def test_bad_given_values_are_refused():
    with pytest.raises(ValueError, match="image_size"):
        resolve_settings({}, image_size=5)
    with pytest.raises(ValueError, match="system_prompt"):
        resolve_settings({}, system_prompt=3)


@pytest.fixture(scope="module")
def part_image():
    rng = np.random.default_rng(0)
    img = rng.integers(60, 200, (300, 260, 3), dtype=np.uint8)
    img[100:130, 80:150] = 20  # a dark scratch
    return img


def test_every_way_of_building_an_inspector_resolves_the_same(part_image, tmp_path):
    pytest.importorskip("torch")
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from omniad_core import Inspector
    from omniad_train.evaluation.model import load_inspector, model_settings

    assert MODEL is not None
    torch.set_num_threads(1)
    spec = json.loads((MODEL / "omniad.json").read_text())
    loaded = AutoModelForImageTextToText.from_pretrained(str(MODEL), dtype=torch.float32).eval()
    ways = {
        "Inspector(path)": Inspector(MODEL, max_new_tokens=40),
        "from_pretrained": Inspector.from_pretrained(MODEL, max_new_tokens=40),
        "Inspector(model)": Inspector(
            loaded, AutoProcessor.from_pretrained(str(MODEL)), max_new_tokens=40
        ),
        "evaluation": load_inspector(str(MODEL), {"max_new_tokens": 40}),
    }
    for name, insp in ways.items():
        assert insp.image_size == spec["image_size"] == 224, name
        assert insp.grid.shape == (8, 8), name
        assert insp.system_prompt == spec["system_prompt"], name
    fingerprint = model_settings(str(MODEL), {})
    assert (
        fingerprint["image_size"] == 224
        and fingerprint["grid"] == ways["evaluation"].grid.to_dict()
    )
    same = model_settings(ways["from_pretrained"], {})
    assert {k: same[k] for k in ("grid", "image_size", "system_prompt_sha256")} == {
        k: fingerprint[k] for k in ("grid", "image_size", "system_prompt_sha256")
    }
    responses = {name: insp.analyze(part_image).response for name, insp in ways.items()}
    assert len(set(responses.values())) == 1, responses


def test_an_override_wins_and_a_spec_is_read_from_a_loaded_models_folder(tmp_path):
    pytest.importorskip("torch")
    from omniad_core import Inspector
    from omniad_train.tiny import TinyConfig, build_tiny_qwen2_5_vl

    path = build_tiny_qwen2_5_vl(tmp_path / "m", TinyConfig.test())
    save_spec(path, grid=(6, 4), image_size=56, system_prompt=None)
    insp = Inspector(path)
    assert (insp.grid.shape, insp.image_size, insp.system_prompt) == ((6, 4), 56, None)
    assert insp.settings.source == {
        "grid": "omniad.json",
        "image_size": "omniad.json",
        "system_prompt": "omniad.json",
    }
    again = Inspector(insp.model, insp.processor, image_size=None, system_prompt="Look.")
    assert (again.grid.shape, again.image_size, again.system_prompt) == ((6, 4), None, "Look.")


def test_the_default_generation_budget_fits_two_crossing_cracks(release_ckpt):
    """512 new tokens cut large masks; the default leaves room for the seg and a reasoning."""
    import inspect

    from transformers import AutoTokenizer

    import textmask
    from omniad_core import Inspector
    from omniad_train.evaluation.model import DEFAULT_SETTINGS

    mask = np.zeros((24, 24), bool)
    mask[11:13, :] = mask[:, 11:13] = True  # two cracks, 2 cells wide, crossing the part
    seg = textmask.encode(mask, 24)
    tok = AutoTokenizer.from_pretrained(release_ckpt)
    seg_tokens = len(tok(f"<seg>{seg}</seg>", add_special_tokens=False)["input_ids"])
    budget = inspect.signature(Inspector).parameters["max_new_tokens"].default
    assert budget == DEFAULT_SETTINGS["max_new_tokens"] >= 1024
    assert seg_tokens > 512 - 200  # the old budget left almost nothing for the reasoning
    assert budget - seg_tokens >= 400
