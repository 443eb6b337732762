"""The embedded demo model: packaged, found by ``omniad inspect``, and better than chance.

The model in ``omniad_core/demo_model`` was trained by ``omniad demo`` (docs/demo.md has
the command); these tests run it as a user would, on synthetic images it never saw.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("torch")

from omniad_core.inspector import demo_model_path

MODEL = demo_model_path()
REBUILD = "omniad demo --out runs/demo --export omniad_core/demo_model"


def test_the_embedded_model_is_packaged():
    assert MODEL is not None, f"omniad_core/demo_model has no model.safetensors; run {REBUILD}"


@pytest.fixture(scope="module")
def held_out(tmp_path_factory):
    """Images from a seed the demo never trained or evaluated on, in the demo's categories."""
    assert MODEL is not None, f"no embedded demo model; run {REBUILD}"
    pytest.importorskip("trl")
    from omniad_train.synthetic import generate

    spec = json.loads((MODEL / "omniad.json").read_text())
    card = json.loads((MODEL / "demo_plan.json").read_text())
    root = tmp_path_factory.mktemp("heldout")
    generate(
        root,
        split="test",
        seed=12345,
        n_train_good=1,
        n_test_good=3,
        n_test_defect_per_type=2,
        image_size=spec["image_size"],
        categories=card["categories"],
        progress=False,
    )
    return root / "synth"


def test_the_embedded_model_is_small_safetensors_with_a_card():
    assert MODEL is not None, f"no embedded demo model; run {REBUILD}"
    assert (MODEL / "model.safetensors").stat().st_size < 10_000_000
    assert not list(MODEL.glob("*.bin")) and not list(MODEL.glob("*.pt"))
    card = (MODEL / "README.md").read_text()
    assert "synthetic" in card and "omniad demo" in card


def test_omniad_inspect_without_model_uses_it(held_out, tmp_path):
    image = next(held_out.glob("*/test/hole/*.png"))
    overlay = tmp_path / "overlay.png"
    proc = subprocess.run(
        [sys.executable, "-m", "omniad_core", "inspect", str(image), "--overlay", str(overlay)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "embedded demo model" in proc.stderr and "synthetic defects" in proc.stderr
    assert "--model" in proc.stderr  # says how to use real weights
    lines = dict(line.split(":", 1) for line in proc.stdout.splitlines() if ":" in line)
    assert lines["answer   "].strip() in {"A", "B"}
    assert lines["anomalous"].strip().split()[0] in {"yes", "no"}
    assert "seg      " in lines and "think    " in lines
    from PIL import Image

    assert Image.open(overlay).size == Image.open(image).size


def test_it_tells_defective_from_normal_better_than_chance(held_out):
    import torch

    from omniad_core import Inspector

    torch.set_num_threads(1)
    insp = Inspector.from_pretrained(MODEL, max_new_tokens=200)
    paths = sorted(held_out.glob("*/test/*/*.png"))
    truth = np.array([p.parent.name != "good" for p in paths])
    results = insp.analyze_batch([str(p) for p in paths], batch_size=8, progress=False)
    said = np.array([r.answer == "A" for r in results])  # A: "Yes", there is a defect
    assert all(r.answer in {"A", "B"} for r in results)  # every answer readable
    # balanced accuracy: the mean of the hit rates on defective and on normal images
    balanced = (said[truth].mean() + (~said[~truth]).mean()) / 2
    assert balanced > 0.6, (balanced, said.tolist(), truth.tolist())
