"""Inspector and ``omniad inspect`` end to end, with real transformers classes.

A tiny Qwen2.5-VL is built offline and briefly trained to answer every prompt with one
known response, so the whole path (prompt, processor, generate, parse, mask at the
input size, overlay) is checked against exact expectations.  An untrained copy checks
that garbage output is handled.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from memorize import memorized_checkpoint  # noqa: E402

import textmask  # noqa: E402
from omniad_core import Inspector, save_spec  # noqa: E402
from omniad_core.cli import main as cli_main  # noqa: E402
from omniad_train.tiny import TinyConfig, build_tiny_qwen2_5_vl  # noqa: E402

TARGET = "<seg>(1, 1)-(1, 2), (3, 0)</seg><think>A spot at the left top.</think><answer>A</answer>"
RUNS = [(1, 1, 2), (3, 0, 0)]
PROMPT = "Find defects."  # short, so memorizing is quick; stored in the checkpoint's spec


def _image(h: int, w: int, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A checkpoint answering TARGET to our prompts."""
    prompts = [
        (_image(h, w, seed), None, None, None)
        for seed, (h, w) in enumerate([(40, 60), (64, 64), (90, 50)])
    ]
    # the 1-shot prompt with a custom question is trained too, so the test stays in distribution
    prompts.append((_image(50, 50, 1), "Which defect is it?", ["spot", "crack"], _image(50, 50, 2)))
    return memorized_checkpoint(tmp_path_factory, TARGET, prompts, system_prompt=PROMPT)


@pytest.fixture(scope="module")
def inspector(trained):
    return Inspector.from_pretrained(trained, max_new_tokens=64)


def test_analyze_end_to_end(inspector, tmp_path):
    from PIL import Image

    img = _image(90, 120, 7)
    path = tmp_path / "part.png"
    Image.fromarray(img).save(path)
    result = inspector.analyze(path)
    assert result.response.strip() == TARGET
    assert result.parsed.format_ok and result.parsed.problems == []
    assert result.answer == "A" and result.is_anomalous
    assert result.parsed.runs == RUNS
    assert result.mask.shape == (90, 120)
    expected = textmask.decode("(1, 1)-(1, 2), (3, 0)", 24, shape=(90, 120))
    np.testing.assert_array_equal(result.mask, expected)
    ov = result.overlay()
    assert ov.size == (120, 90)
    d = result.to_dict()
    assert json.loads(json.dumps(d))["seg"] == "(1, 1)-(1, 2), (3, 0)"
    assert d["anomalous_pixels"] == int(expected.sum()) > 0


def test_image_kinds_give_the_same_answer(inspector, tmp_path):
    from PIL import Image

    arr = _image(64, 80, 3)
    Image.fromarray(arr).save(tmp_path / "a.png")
    responses = {
        inspector.analyze(x).response for x in (arr, Image.fromarray(arr), tmp_path / "a.png")
    }
    assert responses == {TARGET}


def test_batch_matches_single(inspector):
    images = [_image(40, 60, 11), _image(100, 70, 12), _image(64, 64, 13)]
    single = [inspector.analyze(im) for im in images]
    batch = inspector.analyze_batch(images, batch_size=3, progress=False)
    assert [b.response for b in batch] == [s.response for s in single]
    assert [b.mask.shape for b in batch] == [(40, 60), (100, 70), (64, 64)]
    for b, s in zip(batch, single, strict=True):
        np.testing.assert_array_equal(b.mask, s.mask)


def test_one_shot_and_custom_question(inspector):
    result = inspector.analyze(
        _image(50, 50, 1), "Which defect is it?", ["spot", "crack"], reference=_image(50, 50, 2)
    )
    assert result.question == "Which defect is it?\nA: spot\nB: crack"
    assert result.answer == "A"


def test_garbage_output_is_handled(tmp_path):
    path = build_tiny_qwen2_5_vl(tmp_path / "raw", TinyConfig.test(seed=5))
    insp = Inspector.from_pretrained(path, max_new_tokens=24)
    result = insp.analyze(_image(33, 47, 0))
    assert not result.parsed.format_ok
    assert result.parsed.problems  # says what was missing
    assert result.mask.shape == (33, 47) and result.mask.dtype == bool
    json.dumps(result.to_dict())


def test_from_pretrained_reads_spec_and_refuses_pickles(trained, tmp_path):
    copy = tmp_path / "ckpt"
    shutil.copytree(trained, copy)
    save_spec(copy, grid=(12, 16), image_size=112, system_prompt="Look.")
    insp = Inspector.from_pretrained(copy)
    assert insp.grid == textmask.Grid(12, 16) and insp.image_size == 112
    assert insp.system_prompt == "Look."
    for f in copy.glob("*.safetensors"):
        f.rename(f.with_suffix(".bin"))
    with pytest.raises(FileNotFoundError, match="safetensors"):
        Inspector.from_pretrained(copy)


def test_cli_inspect(trained, tmp_path, capsys):
    from PIL import Image

    Image.fromarray(_image(70, 90, 4)).save(tmp_path / "img.png")
    out = tmp_path / "overlay.png"
    code = cli_main(
        [
            "inspect",
            str(tmp_path / "img.png"),
            "--model",
            str(trained),
            "--json",
            "--overlay",
            str(out),
            "--max-new-tokens",
            "64",
        ]
    )
    assert code == 0
    d = json.loads(capsys.readouterr().out)
    assert (
        d["answer"] == "A" and d["seg"] == "(1, 1)-(1, 2), (3, 0)" and d["image_size"] == [70, 90]
    )
    assert Image.open(out).size == (90, 70)


def test_cli_inspect_errors(trained, tmp_path, capsys):
    assert cli_main(["inspect", str(tmp_path / "missing.png"), "--model", str(trained)]) == 1
    assert "not found" in capsys.readouterr().err
    (tmp_path / "img.png").write_bytes(b"not a png")
    assert cli_main(["inspect", str(tmp_path / "img.png"), "--model", str(trained)]) == 1
    assert "cannot read" in capsys.readouterr().err
    from PIL import Image

    Image.fromarray(_image(8, 8, 0)).save(tmp_path / "ok.png")
    (tmp_path / "empty").mkdir()
    assert cli_main(["inspect", str(tmp_path / "ok.png"), "--model", str(tmp_path / "empty")]) == 1
    assert "safetensors" in capsys.readouterr().err
