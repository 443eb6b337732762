"""``omniad encode`` / ``omniad decode`` and the README's Inspector example."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import textmask
from omniad_core.cli import main

ROOT = Path(__file__).resolve().parent.parent


def _mask_png(path: Path, h: int = 100, w: int = 120) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[10:30, 40:80] = 255
    Image.fromarray(m).save(path)
    return m


def test_encode_prints_the_canonical_text(tmp_path, capsys):
    m = _mask_png(tmp_path / "m.png")
    assert main(["encode", str(tmp_path / "m.png")]) == 0
    assert capsys.readouterr().out.strip() == textmask.encode(m)
    assert main(["encode", str(tmp_path / "m.png"), "--grid", "12x16", "--index-base", "1"]) == 0
    assert capsys.readouterr().out.strip() == textmask.encode(
        m, textmask.Grid(12, 16, index_base=1)
    )


def test_decode_writes_the_mask(tmp_path, capsys):
    out = tmp_path / "sub" / "mask.png"
    assert main(["decode", "(2, 8)-(2, 15) junk", "--shape", "100", "120", "--out", str(out)]) == 0
    got = np.asarray(Image.open(out)) > 0
    np.testing.assert_array_equal(got, textmask.decode("(2, 8)-(2, 15)", shape=(100, 120)))
    assert "4 characters skipped" in capsys.readouterr().err


def test_round_trip_through_the_shell(tmp_path):
    m = _mask_png(tmp_path / "m.png", 64, 64)
    run = [sys.executable, "-m", "omniad_core"]
    text = subprocess.run(
        [*run, "encode", str(tmp_path / "m.png")], capture_output=True, text=True, check=True
    ).stdout
    subprocess.run(
        [*run, "decode", "-", "--shape", "64", "64", "--out", str(tmp_path / "d.png")],
        input=text,
        capture_output=True,
        text=True,
        check=True,
    )
    got = np.asarray(Image.open(tmp_path / "d.png")) > 0
    np.testing.assert_array_equal(got, textmask.unpatchify(textmask.patchify(m), (64, 64)))


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["encode", "nope.png"], 1, "no image file"),
        (
            ["decode", "(0, 0)x", "--strict", "--shape", "4", "4", "--out", "x.png"],
            1,
            "strict decoding failed",
        ),
        (["decode", "(0, 0)", "--shape", "0", "4", "--out", "x.png"], 1, "shape"),
        (["encode", "m.png", "--grid", "0"], 2, "grid rows"),
        (["encode", "m.png", "--grid", "16,32"], 2, "ROWSxCOLS, e.g. 24 or 16x32"),
        (["encode", "m.png", "--grid", "16", "32"], 2, "unrecognized arguments: 32"),
        (["decode", "(0, 0)", "--out", "x.png"], 2, "--shape"),
        (["frobnicate"], 2, "invalid choice"),
    ],
)
def test_errors_have_exit_codes_and_messages(tmp_path, monkeypatch, capsys, argv, code, message):
    monkeypatch.chdir(tmp_path)
    _mask_png(tmp_path / "m.png")
    try:
        got = main(argv)
    except SystemExit as exc:  # argparse usage errors
        got = exc.code
    assert got == code
    assert message in capsys.readouterr().err


def test_unreadable_mask_file(tmp_path, capsys):
    (tmp_path / "bad.png").write_bytes(b"\\x89PNG broken")
    assert main(["encode", str(tmp_path / "bad.png")]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_readme_inspector_example_runs(tmp_path, monkeypatch):
    """The README's Inspector snippet, run as written on the tiny offline model."""
    pytest.importorskip("torch")
    from omniad_train.tiny import TinyConfig, build_tiny_qwen2_5_vl

    readme = (ROOT / "README.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "Inspector" in b)
    ckpt = build_tiny_qwen2_5_vl(tmp_path / "ckpt", TinyConfig.test())
    monkeypatch.chdir(tmp_path)
    Image.fromarray((np.random.default_rng(0).random((60, 80, 3)) * 255).astype(np.uint8)).save(
        "part.png"
    )
    code = block.replace('"path/to/checkpoint"', repr(str(ckpt)))
    code = code.replace(
        "Inspector.from_pretrained(", "Inspector.from_pretrained(max_new_tokens=16, path_or_id="
    )
    exec(compile(code, "README.md", "exec"), {})
    assert Image.open("part_overlay.png").size == (80, 60)


def test_demo_is_a_plugin_of_the_training_layer(capsys):
    """`omniad demo` reaches omniad_train through the entry point, never by an import."""
    from importlib.metadata import entry_points

    (ep,) = [e for e in entry_points(group="omniad.commands") if e.name == "demo"]
    assert ep.value == "omniad_train.demo:demo_main"
    with pytest.raises(SystemExit) as info:
        main(["demo", "--help"])
    assert info.value.code == 0
    assert "--quick" in capsys.readouterr().out
    from omniad_train.cli import main as train_main

    with pytest.raises(SystemExit):
        train_main(["demo", "--help"])
    assert "--overwrite" in capsys.readouterr().out


def test_one_grid_syntax_in_every_command_line():
    from omniad_train.data.cli import build_parser as prepare_parser

    base = ["o", "--jsonl", "x.jsonl"]
    assert prepare_parser().parse_args([*base, "--grid", "16x32"]).grid.shape == (16, 32)
    assert prepare_parser().parse_args([*base, "--grid", "8"]).grid.shape == (8, 8)
    with pytest.raises(SystemExit):
        prepare_parser().parse_args([*base, "--grid", "16,32"])
    from omniad_train.evaluation.cli import build_detection_parser, build_mmad_parser

    args = ["--model", "m", "--out", "o", "--grid"]
    mmad = build_mmad_parser().parse_args([*args, "16x32", "--mmad_json", "x.json"])
    assert mmad.grid.shape == (16, 32)
    det = build_detection_parser().parse_args([*args, "12", "--root", "r"])
    assert det.grid.shape == (12, 12)
    with pytest.raises(SystemExit):
        build_mmad_parser().parse_args([*args, "16 32", "--mmad_json", "x.json"])
