"""Hostile input to ``omniad_core`` (issue 10, items 9, 13, 14, 15): no saturated 16-bit
image, no memory blow-up from a small file, no hub retries for a mistyped path, no
traceback from the ``omniad`` command line.

Checkpoints are real tiny Qwen2.5-VL models (``omniad_train.tiny``), damaged on purpose.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

import textmask
from omniad_core.cli import main
from omniad_core.images import (
    ImageError,
    load_image,
    load_mask,
    max_image_pixels,
    overlay,
    save_mask,
    to_uint8,
)

ROOT = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- helpers
def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(path: Path, width: int, height: int, depth: int, color: int, rows: bytes | None) -> Path:
    """A PNG written byte by byte (``rows``: filtered scanlines, None for no pixel data)."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0)
    idat = _chunk(b"IDAT", zlib.compress(rows, 9)) if rows is not None else b""
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + idat + _chunk(b"IEND", b""))
    return path


def _png16(path: Path, arr: np.ndarray) -> Path:
    """A 16-bit PNG of an ``(H, W)`` (gray), ``(H, W, 2)`` (LA) or ``(H, W, 3)`` array."""
    color = 0 if arr.ndim == 2 else {2: 4, 3: 2, 4: 6}[arr.shape[2]]
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in arr)
    return _png(path, arr.shape[1], arr.shape[0], 16, color, rows)


def _huge_bilevel_png(path: Path, width: int, height: int) -> Path:
    """A real, valid 1-bit PNG of ``width x height`` that compresses to a few KB."""
    row = b"\x00" + bytes((width + 7) // 8)
    return _png(path, width, height, 1, 0, row * height)


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse usage errors
        code = int(exc.code)
    got = capsys.readouterr()
    return code, got.out, got.err


def _one_line_error(err: str, command: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"omniad {command}: error: "), err
    assert "Traceback" not in err
    return lines[0]


# ----------------------------------------------------------------- item 9: bit depth
def test_16_bit_png_is_scaled_not_saturated(tmp_path):
    ramp = (np.arange(64 * 64, dtype=np.int64).reshape(64, 64) * 16).astype(np.uint16)
    assert ramp.max() == 65520
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode == "I;16"
    rgb = np.asarray(load_image(tmp_path / "g16.png"))
    assert rgb.shape == (64, 64, 3) and rgb.dtype == np.uint8
    gray = rgb[..., 0]
    assert (gray == 255).mean() < 0.01  # was 99.6 % white through .convert("RGB")
    assert gray.min() == 0 and gray.max() == 255
    assert (np.diff(gray.ravel().astype(int)) >= 0).all()  # order kept
    np.testing.assert_array_equal(gray, to_uint8(ramp))
    # the same through a PIL image and an array
    np.testing.assert_array_equal(np.asarray(load_image(Image.fromarray(ramp))), rgb)
    np.testing.assert_array_equal(np.asarray(load_image(ramp)), rgb)


@pytest.mark.parametrize(
    ("values", "mode"),
    [
        (np.linspace(0, 1e6, 100).reshape(10, 10).astype(np.int32), "I"),
        (np.linspace(0, 3000.0, 100).reshape(10, 10).astype(np.float32), "F"),
        (np.linspace(-50.0, 50.0, 100).reshape(10, 10).astype(np.float32), "F"),
    ],
)
def test_32_bit_and_float_files_are_scaled_by_their_range(tmp_path, values, mode):
    Image.fromarray(values).save(tmp_path / "x.tif")
    assert Image.open(tmp_path / "x.tif").mode == mode
    gray = np.asarray(load_image(tmp_path / "x.tif"))[..., 0]
    assert gray.min() == 0 and gray.max() == 255
    assert 100 <= gray.mean() <= 155  # a linear ramp stays a ramp


def test_16_bit_colour_arrays_keep_their_colours():
    arr = np.zeros((4, 4, 3), np.uint16)
    arr[..., 0] = 60000
    arr[..., 2] = 30000
    got = np.asarray(load_image(arr))
    assert got[0, 0].tolist() == [255, 0, 128]  # one scale for all channels


@pytest.mark.parametrize(
    ("arr", "value"),
    [
        (np.full((3, 5), 65535, np.uint16), 255),  # a white 16-bit frame stays white
        (np.full((3, 5), -7.0), 0),  # constant with negatives: no division by zero
        (np.zeros((3, 5), np.int32), 0),
        (np.full((3, 5), 1e30), 255),
    ],
)
def test_constant_images_do_not_divide_by_zero(arr, value):
    got = np.asarray(load_image(arr))
    assert (got == value).all()


_BOUNDS = {
    np.uint16: (0, 65535),
    np.int32: (-(10**6), 10**7),
    np.int64: (-5, 10**9),
    np.float32: (-1e6, 1e7),
    np.float64: (-2.0, 2.0),
}


@given(
    st.sampled_from(sorted(_BOUNDS, key=str)).flatmap(
        lambda dt: hnp.arrays(
            dt,
            hnp.array_shapes(min_dims=2, max_dims=2, max_side=12),
            elements=st.integers(*_BOUNDS[dt])
            if np.dtype(dt).kind != "f"
            else st.floats(*_BOUNDS[dt], width=np.dtype(dt).itemsize * 8),
        )
    )
)
def test_to_uint8_keeps_order_and_uses_the_range(arr):
    out = to_uint8(arr)
    assert out.dtype == np.uint8 and out.shape == arr.shape
    flat, got = arr.ravel().astype(np.float64), out.ravel().astype(int)
    order = np.argsort(flat, kind="stable")
    assert (np.diff(got[order]) >= 0).all()  # monotone: brighter stays brighter
    lo, hi = flat.min(), flat.max()
    if lo >= 0 and hi > 255:
        assert got.max() == 255  # the brightest pixel is white
    if lo < 0 and hi > lo:
        assert got.min() == 0 and got.max() == 255
    if lo >= 0 and hi <= 255 and arr.dtype.kind != "f":
        np.testing.assert_array_equal(got, flat.astype(int))  # 8-bit values kept


def test_nan_images_and_masks_are_refused():
    bad = np.array([[0.0, np.nan]])
    with pytest.raises(ImageError, match="NaN"):
        load_image(bad)
    with pytest.raises(ImageError, match="NaN"):
        load_mask(bad)


def test_16_bit_masks_are_any_non_zero_on_raw_values(tmp_path, capsys):
    m = np.zeros((48, 48), np.uint16)
    m[8:16, 20:40] = 1  # 1 of 65535: anomalous all the same
    Image.fromarray(m).save(tmp_path / "m16.png")
    np.testing.assert_array_equal(load_mask(tmp_path / "m16.png"), m != 0)
    code, out, _ = _run(["encode", str(tmp_path / "m16.png")], capsys)
    assert code == 0 and out.strip() == textmask.encode(m != 0)


def test_16_bit_colour_masks_are_refused_not_read_wrongly(tmp_path, capsys):
    """Pillow reads 16-bit RGB / LA PNGs by their high bytes: a value of 1 would vanish."""
    m = np.zeros((16, 16, 3), np.uint16)
    m[2:5, 3:9] = 1
    _png16(tmp_path / "rgb16.png", m)
    with pytest.raises(ImageError, match="16-bit"):
        load_mask(tmp_path / "rgb16.png")
    code, _, err = _run(["encode", str(tmp_path / "rgb16.png")], capsys)
    assert code == 1 and "grayscale" in _one_line_error(err, "encode")
    _png16(tmp_path / "la16.png", np.stack([m[..., 0], m[..., 0]], axis=-1))
    with pytest.raises(ImageError, match="16-bit"):
        load_mask(tmp_path / "la16.png")
    # as an image it is fine: Pillow's high byte is the full 16-bit range
    assert load_image(tmp_path / "rgb16.png").size == (16, 16)


# ----------------------------------------------------------- item 13: pixel budget
def test_a_small_file_declaring_a_huge_image_is_refused(tmp_path, capsys):
    path = _huge_bilevel_png(tmp_path / "bomb.png", 12000, 12000)
    assert path.stat().st_size < 200_000  # a few KB on disk, 144 Mpx declared
    for read in (load_image, load_mask):
        with pytest.raises(ImageError, match=r"12000x12000 = 144,000,000 pixels.*limit"):
            read(path)
    code, _, err = _run(["encode", str(path)], capsys)
    assert code == 1 and "OMNIAD_MAX_IMAGE_PIXELS" in _one_line_error(err, "encode")
    code, _, err = _run(["inspect", str(path), "--overlay", str(tmp_path / "o.png")], capsys)
    assert code == 1 and "144,000,000 pixels" in _one_line_error(err, "inspect")
    assert not (tmp_path / "o.png").exists()


def test_the_limit_is_checked_from_the_header_before_decoding(tmp_path):
    """A header with no pixel data at all: only a check before decoding names the limit."""
    path = _png(tmp_path / "header_only.png", 12000, 9000, 8, 0, None)
    with pytest.raises(ImageError, match="more than the limit"):
        load_image(path)


def test_the_limit_is_configurable(tmp_path, monkeypatch):
    path = _huge_bilevel_png(tmp_path / "big.png", 3000, 2000)  # 6 Mpx
    assert load_image(path).size == (3000, 2000)  # under the default
    with pytest.raises(ImageError, match="limit of 1,000,000"):
        load_image(path, max_pixels=1_000_000)
    monkeypatch.setenv("OMNIAD_MAX_IMAGE_PIXELS", "5_000_000")
    assert max_image_pixels() == 5_000_000
    with pytest.raises(ImageError, match="limit of 5,000,000"):
        load_mask(path)
    assert load_mask(path, max_pixels=6_000_000).shape == (2000, 3000)  # the call wins
    monkeypatch.setenv("OMNIAD_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(ImageError, match="OMNIAD_MAX_IMAGE_PIXELS must be a whole number"):
        load_image(path)
    monkeypatch.delenv("OMNIAD_MAX_IMAGE_PIXELS")
    monkeypatch.setattr("omniad_core.images.MAX_IMAGE_PIXELS", 100)
    with pytest.raises(ImageError, match="limit of 100"):
        load_image(np.zeros((20, 20), np.uint8))


def _reference_overlay(image, mask, color=(255, 40, 40), alpha=0.45):
    """The previous float implementation, as the expected picture."""
    base = np.asarray(image, np.float64)
    out = base.copy()
    out[mask] = (1 - alpha) * out[mask] + alpha * np.array(color, np.float64)
    p = np.pad(mask, 1)
    edge = mask & ~(p[2:, 1:-1] & p[:-2, 1:-1] & p[1:-1, 2:] & p[1:-1, :-2])
    out[edge] = color
    return out, edge


def test_overlay_stays_in_uint8_and_small_memory():
    h, w = 900, 1300
    rng = np.random.default_rng(0)
    image = (rng.random((h, w, 3)) * 255).astype(np.uint8)
    mask = np.zeros((h, w), bool)
    mask[100:800, 200:1100] = True
    mask[850:, :50] = True  # touches the border
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        got = overlay(image, mask)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # the float version held two float32 copies of the image (24 bytes a pixel and more)
    assert (peak - before) / (h * w) < 10
    arr = np.asarray(got)
    assert arr.dtype == np.uint8 and arr.shape == (h, w, 3)
    expected, edge = _reference_overlay(image, mask)
    assert np.abs(arr.astype(int) - expected).max() <= 1  # rounding only
    assert (arr[edge] == (255, 40, 40)).all()
    np.testing.assert_array_equal(arr[~mask], image[~mask])


# ------------------------------------------------------- item 14: model locations
@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    for name in ("omniad-7b-sft", "omniad-3b-grpo", "old"):
        (tmp_path / "runs" / name).mkdir(parents=True)
    return tmp_path


@pytest.mark.parametrize(
    "arg",
    [
        "runs/omniad-7b",
        "./omniad-7b",
        "~/surely-no-such-folder-omniad",
        "/no/such/ckpt",
        "a/b/c",
        "name/",
        "runs\\omniad",
        "my model",
        "../x",
    ],
)
def test_path_like_missing_models_fail_at_once(runs_dir, arg):
    from omniad_core.inspector import check_model_location

    with pytest.raises(FileNotFoundError) as info:
        check_model_location(arg)
    msg = str(info.value)
    assert "\n" not in msg and "does not exist" in msg


def test_the_message_names_close_matches(runs_dir):
    from omniad_core.inspector import check_model_location

    with pytest.raises(FileNotFoundError, match=r"close matches: 'omniad-7b-sft'"):
        check_model_location("runs/omniad-7b")
    with pytest.raises(FileNotFoundError, match="runs has no 'omniad-7b'"):
        check_model_location(Path("runs/omniad-7b/checkpoint-4"))


def test_hub_ids_and_existing_paths_pass(runs_dir, monkeypatch, tmp_path):
    from omniad_core.inspector import check_model_location

    for arg in ("Qwen/Qwen2.5-VL-7B-Instruct", "gpt2", "runs/old", str(runs_dir / "runs")):
        assert check_model_location(arg) is None
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no hub: an uncached hub id is missing too
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(FileNotFoundError, match="HF_HUB_OFFLINE"):
        check_model_location("org/not-cached-model")


def test_from_pretrained_and_cli_refuse_a_mistyped_path(runs_dir, capsys):
    from omniad_core import Inspector

    with pytest.raises(FileNotFoundError, match="close matches: 'omniad-7b-sft'"):
        Inspector.from_pretrained("runs/omniad-7b")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save("img.png")
    code, _, err = _run(["inspect", "img.png", "--model", "runs/omniad-7b"], capsys)
    assert code == 1 and "omniad-7b-sft" in _one_line_error(err, "inspect")


# ------------------------------------------------------- item 15: no tracebacks
@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    pytest.importorskip("torch")
    from omniad_train.tiny import TinyConfig, build_tiny_qwen2_5_vl

    return build_tiny_qwen2_5_vl(tmp_path_factory.mktemp("tiny") / "ckpt", TinyConfig.test())


@pytest.fixture
def ckpt(tiny_ckpt, tmp_path):
    copy = tmp_path / "ckpt"
    shutil.copytree(tiny_ckpt, copy)
    return copy


def _inspect(model: Path, tmp_path: Path, capsys) -> tuple[int, str]:
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "img.png")
    code, _, err = _run(
        ["inspect", str(tmp_path / "img.png"), "--model", str(model), "--max-new-tokens", "4"],
        capsys,
    )
    return code, _one_line_error(err, "inspect") if code else err


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda f: os.truncate(f, f.stat().st_size // 2), "is truncated"),
        (lambda f: os.truncate(f, 100), "is truncated"),
        (lambda f: os.truncate(f, 3), "is truncated"),
        (lambda f: f.write_bytes(f.read_bytes() + b"junk"), "unexpected bytes"),
        (lambda f: f.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00" + b"{" * 40), "header"),
    ],
)
def test_a_damaged_safetensors_file_is_named(ckpt, tmp_path, capsys, damage, message):
    from omniad_core import Inspector
    from omniad_core.inspector import CheckpointError

    damage(ckpt / "model.safetensors")
    with pytest.raises(CheckpointError, match=message) as info:
        Inspector.from_pretrained(ckpt)
    assert "model.safetensors" in str(info.value) and "again" in str(info.value)
    code, line = _inspect(ckpt, tmp_path, capsys)
    assert code == 1 and "model.safetensors" in line and message in line


def test_a_missing_shard_is_named(ckpt):
    from omniad_core import Inspector

    index = {"metadata": {}, "weight_map": {"a": "model-00002-of-00002.safetensors"}}
    (ckpt / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(FileNotFoundError, match=r"model-00002-of-00002\.safetensors"):
        Inspector.from_pretrained(ckpt)


@pytest.mark.parametrize(
    ("remove", "message"),
    [
        (["tokenizer.json", "tokenizer_config.json"], "no tokenizer files"),
        (["processor_config.json"], "no image processor config"),
        (["chat_template.jinja"], "no chat template"),
    ],
)
def test_missing_processor_files_are_named(ckpt, tmp_path, capsys, remove, message):
    from omniad_core import Inspector

    for name in remove:
        (ckpt / name).unlink()
    with pytest.raises(FileNotFoundError, match=message) as info:
        Inspector.from_pretrained(ckpt)
    assert "save_pretrained" in str(info.value)
    code, line = _inspect(ckpt, tmp_path, capsys)
    assert code == 1 and message in line


@pytest.mark.parametrize(
    ("spec", "key"),
    [
        ({"image_size": "512"}, "image_size"),
        ({"image_size": 0}, "image_size"),
        ({"image_size": 10**9}, "image_size"),
        ({"image_size": True}, "image_size"),
        ({"image_size": 512.5}, "image_size"),
        ({"system_prompt": 5}, "system_prompt"),
        ({"system_prompt": ["a"]}, "system_prompt"),
        ({"textmask": 24}, "textmask"),
        ({"textmask": {"rows": 0, "cols": 24}}, "textmask"),
        ({"textmask": {"rows": "24", "cols": 24}}, "textmask"),
        ({"textmask": {"rows": 24, "cols": 24, "colour": 1}}, "textmask"),
        ({"image_sise": 512}, "image_sise"),
        ({"shots": 2}, "shots"),
        ({"shots": True}, "shots"),
        ({"shots": "1"}, "shots"),
        ([1, 2], "JSON object"),
    ],
)
def test_bad_spec_values_name_the_file_and_key(ckpt, tmp_path, capsys, spec, key):
    from omniad_core import Inspector, load_spec

    (ckpt / "omniad.json").write_text(json.dumps(spec))
    with pytest.raises(ValueError, match=key) as info:
        load_spec(ckpt)
    assert str(ckpt / "omniad.json") in str(info.value)
    with pytest.raises(ValueError, match=key):
        Inspector.from_pretrained(ckpt)
    code, line = _inspect(ckpt, tmp_path, capsys)
    assert code == 1 and "omniad.json" in line and key in line


def test_good_specs_load_and_save_spec_refuses_bad_values(tmp_path):
    from omniad_core import load_spec, save_spec

    save_spec(tmp_path, grid=(12, 16), image_size=112, system_prompt="Look.")
    spec = load_spec(tmp_path)
    assert spec["image_size"] == 112 and spec["system_prompt"] == "Look."
    assert textmask.Grid.from_dict(spec["textmask"]) == textmask.Grid(12, 16)
    (tmp_path / "omniad.json").write_text('{"image_size": null, "system_prompt": null}')
    assert load_spec(tmp_path) == {"image_size": None, "system_prompt": None}
    with pytest.raises(ValueError, match="image_size"):
        save_spec(tmp_path, image_size=0)


@pytest.mark.parametrize(
    ("out", "message"),
    [
        ("mask.xyz", "not a lossless image format"),
        ("mask.jpg", "not a lossless image format"),
        ("mask", "not a lossless image format"),
        ("blocker/mask.png", "is a file, not a folder"),
        (".", "not a lossless image format"),
    ],
)
def test_decode_out_errors_are_one_line(tmp_path, monkeypatch, capsys, out, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "blocker").write_text("a file where a folder should be")
    code, _, err = _run(["decode", "(0, 0)", "--shape", "4", "4", "--out", out], capsys)
    assert code == 1 and message in _one_line_error(err, "decode")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker"]  # nothing written


def test_save_mask_refuses_before_writing(tmp_path):
    with pytest.raises(ImageError, match="lossless"):
        save_mask(np.ones((2, 2), bool), tmp_path / "m.jpeg")
    assert save_mask(np.ones((2, 2), bool), tmp_path / "sub" / "m.png").is_file()


def test_inspect_overlay_bad_suffix_fails_before_the_model_loads(ckpt, tmp_path, capsys):
    (ckpt / "model.safetensors").unlink()  # loading would fail differently
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "img.png")
    code, _, err = _run(
        [
            "inspect",
            str(tmp_path / "img.png"),
            "--model",
            str(ckpt),
            "--overlay",
            str(tmp_path / "o.notanimage"),
        ],
        capsys,
    )
    assert code == 1 and "not an image format" in _one_line_error(err, "inspect")


def test_huge_decode_shape_is_one_line_in_a_real_process(tmp_path):
    """It was a segfault: ``--shape 4611686018427387904 2``."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "omniad_core",
            "decode",
            "(0, 0)",
            "--shape",
            "4611686018427387904",
            "2",
            "--out",
            str(tmp_path / "m.png"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert "pixels" in _one_line_error(proc.stderr, "decode")
    assert not (tmp_path / "m.png").exists()


def test_ctrl_c_in_inspect_is_a_short_message_and_130(tmp_path):
    """SIGINT while the model loads (after the first line on stderr, inside main)."""
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "img.png")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "omniad_core", "inspect", str(tmp_path / "img.png")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        # a pytest started in the background (`cmd &`) ignores SIGINT, and its children
        # would inherit that: give the child the default, as a terminal's Ctrl-C finds it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        first = proc.stderr.readline()  # "using the embedded demo model ..." then torch loads
        assert "demo model" in first
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, rest
    lines = [ln for ln in rest.splitlines() if ln.strip()]
    assert lines[-1] == "omniad inspect: interrupted (Ctrl-C)"
    assert "Traceback" not in rest
