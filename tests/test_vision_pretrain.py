"""Stage 0 (vision pretraining) on a tiny model built offline: what trains, what is saved."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

from safetensors.torch import load_file  # noqa: E402

from omniad_core import Inspector  # noqa: E402
from omniad_train.data.prepare import prepare  # noqa: E402
from omniad_train.synthetic import generate  # noqa: E402
from omniad_train.tiny import TinyConfig, build_tiny_qwen2_5_vl  # noqa: E402
from omniad_train.vision_pretrain import pretrain_vision, token_labels  # noqa: E402


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    base = tmp_path_factory.mktemp("vp")
    generate(
        base / "data",
        split="train",
        n_train_good=2,
        n_test_good=3,
        n_test_defect_per_type=2,
        categories=("tile",),
        image_size=112,
        progress=False,
    )
    out = base / "prepared"
    prepare(
        out, mvtec_root=base / "data" / "synth_train", image_size=112, grid=8, seed=0, verbose=False
    )
    return out


def test_token_labels_match_a_pixel_loop():
    rng = np.random.default_rng(0)
    for _ in range(20):
        h, w = rng.integers(4, 40, size=2)
        rows, cols = rng.integers(1, 5, size=2)
        m = rng.random((h, w)) > 0.97
        got = token_labels(m, rows, cols)
        want = np.zeros((rows, cols), bool)
        for y, x in zip(*np.nonzero(m), strict=True):
            i = next(k for k in range(rows) if y < round((k + 1) * h / rows))
            j = next(k for k in range(cols) if x < round((k + 1) * w / cols))
            want[i, j] = True
        assert np.array_equal(got, want)


def test_trains_the_tower_only_and_saves_a_loadable_checkpoint(prepared, tmp_path):
    torch.set_num_threads(1)
    model = build_tiny_qwen2_5_vl(tmp_path / "m", TinyConfig.test(max_pixels=28 * 28 * 16))
    before = load_file(str(model / "model.safetensors"))
    result = pretrain_vision(
        model,
        prepared,
        tmp_path / "out",
        steps=30,
        learning_rate=3e-3,
        batch_size=4,
        progress=False,
    )
    after = load_file(str(tmp_path / "out" / "model.safetensors"))
    assert set(after) == set(before)  # the heads are not saved
    tower = [k for k in before if ".visual." in f".{k}"]
    assert tower and all(not torch.equal(before[k], after[k]) for k in tower if "weight" in k)
    assert all(torch.equal(before[k], after[k]) for k in before if k not in tower)
    info = json.loads((tmp_path / "out" / "vision_pretrain.json").read_text())
    assert info["steps"] == 30 and info["images"] == result.images > 0
    assert 0.0 <= info["position_accuracy"] <= 1.0
    Inspector.from_pretrained(tmp_path / "out", grid=8, image_size=112, max_new_tokens=4)


def test_bad_inputs_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="omniad-train prepare"):
        pretrain_vision(tmp_path, tmp_path / "nowhere", tmp_path / "out", steps=1)


@pytest.mark.slow
def test_the_demo_tower_learns_where_its_tokens_are(prepared, tmp_path):
    """With the demo preset, stage 0 teaches positions a rotary-only tower does not have."""
    torch.set_num_threads(1)
    model = build_tiny_qwen2_5_vl(tmp_path / "m", TinyConfig.demo())
    result = pretrain_vision(
        model,
        prepared,
        tmp_path / "out",
        steps=150,
        learning_rate=2e-3,
        batch_size=4,
        held_out=0.3,
        progress=False,
    )
    assert result.position_accuracy > 0.35  # 4x4 tokens at 112 px: chance is 0.25
