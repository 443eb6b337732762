"""Folder inspection (omniad_core.folder): broken files listed not fatal, resumable runs,
settings fingerprint, references, outputs inside the results folder, the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import write_test_image
from PIL import Image

from omniad_core.folder import (
    RESULTS_FILE,
    SUMMARY_FILE,
    FolderInterrupted,
    FolderRunError,
    collect_images,
    folder_main,
    inspect_folder,
    is_folder_request,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _lines(out):
    return [json.loads(x) for x in (out / RESULTS_FILE).read_text().splitlines()]


def _stable(lines):
    """JSONL lines without their timings (the only field a re-run may change)."""
    return [{k: v for k, v in d.items() if k != "seconds"} for d in lines]


def _pngs(out):
    found = {}
    for sub in ("overlays", "masks"):
        for p in sorted((out / sub).rglob("*.png")) if (out / sub).is_dir() else []:
            found[p.relative_to(out).as_posix()] = np.asarray(Image.open(p)).copy()
    return found


# ----------------------------------------------------------------------- listing
def test_collect_lists_folders_named_like_images_and_skips_hidden(tmp_path):
    write_test_image(tmp_path / "d" / "a.png", 0)
    write_test_image(tmp_path / "d" / ".hidden.png", 1)
    write_test_image(tmp_path / "d" / "x.png" / "inner.png", 2)
    (tmp_path / "d" / "readme.txt").write_text("x")
    root, items = collect_images(tmp_path / "d")
    assert root == tmp_path / "d"
    assert [(i.id, i.problem is None) for i in items] == [("a.png", True), ("x.png", False)]
    # a glob: the root is the pattern's literal folder
    root, items = collect_images(str(tmp_path / "d" / "*.png"))
    assert root == tmp_path / "d" and [i.id for i in items] == ["a.png", "x.png"]
    with pytest.raises(FolderRunError, match="no file matches"):
        collect_images(str(tmp_path / "none" / "*.png"))
    with pytest.raises(FolderRunError, match="no such file or folder"):
        collect_images(tmp_path / "missing")


# --------------------------------------------------------- broken files, not fatal
def test_broken_files_are_listed_not_fatal(demo_inspector, broken_image_folder, tmp_path):
    folder, good, broken = broken_image_folder
    big = write_test_image(folder / "big.png", 5, size=(120, 120))  # over max_pixels below
    out = tmp_path / "res"
    result = inspect_folder(
        demo_inspector, folder, out, save_masks=True, progress=False, max_pixels=10_000
    )
    by_id = {d["id"]: d for d in result.lines}
    assert sorted(by_id) == sorted([*good, *broken, "big.png"])  # inside.png not walked
    for i in good:
        assert by_id[i]["status"] == "ok", by_id[i]
        assert by_id[i]["error"] is None and by_id[i]["grid"] == "8x8"
        assert 0.0 <= by_id[i]["mask_area"] <= 1.0
    reasons = {i: by_id[i]["error"] for i in [*broken, "big.png"]}
    assert all(by_id[i]["status"] == "unreadable" for i in reasons)
    assert "truncated" in reasons["trunc.png"]
    assert "cannot identify" in reasons["notes.png"]
    assert "folder" in reasons["x.png"]
    assert "limit" in reasons["big.png"] and str(big) in reasons["big.png"]
    assert result.n_unreadable == 4 and sorted(p for p, _ in result.unreadable) == sorted(
        str(folder / i) for i in [*broken, "big.png"]
    )

    # each answered line agrees with Inspector.analyze of the same image
    for i in good[:2]:
        a = demo_inspector.analyze(folder / i)
        assert (by_id[i]["seg"], by_id[i]["answer"]) == (a.parsed.seg_canonical, a.answer)
        assert by_id[i]["anomalous"] == a.is_anomalous
        assert by_id[i]["mask_area"] == round(a.mask.sum() / a.mask.size, 6)

    # masks at the image's own size, overlays for the anomalous ones only
    for i in good:
        d = by_id[i]
        m = np.asarray(Image.open(out / d["mask"]))
        with Image.open(folder / i) as im:
            assert m.shape == (im.size[1], im.size[0])
        assert round((m > 0).mean(), 6) == d["mask_area"]
        assert (d["overlay"] is not None) == d["anomalous"]
        if d["overlay"]:
            assert (out / d["overlay"]).is_file()

    # the table: anomalous first (by mask area), then normal, then unreadable
    rows = (out / SUMMARY_FILE).read_text().splitlines()
    assert rows[0].startswith("rank,image,status,anomalous")
    statuses = [r.split(",")[2] for r in rows[1:]]
    assert statuses == ["ok"] * len(good) + ["unreadable"] * 4
    table = result.rows()
    flags = [r["anomalous"] for r in table[: len(good)]]
    assert flags == sorted(flags, reverse=True)
    areas = [float(r["mask_area"]) for r in table if r["anomalous"]]
    assert areas == sorted(areas, reverse=True)


# ------------------------------------------------------------------- resumable
def test_interrupted_run_resumes_to_the_same_results(demo_inspector, broken_image_folder, tmp_path):
    folder, good, _ = broken_image_folder
    kw = dict(batch_size=3, overlays="all", save_masks=True, progress=False)
    full = inspect_folder(demo_inspector, folder, tmp_path / "full", **kw)

    out = tmp_path / "resumed"
    seen = []

    def stop_after_four(line):
        seen.append(line["id"])
        if len(seen) == 4:  # a real Ctrl-C, in the middle of the second batch
            raise KeyboardInterrupt

    with pytest.raises(FolderInterrupted, match="4 of 9 images finished") as info:
        inspect_folder(demo_inspector, folder, out, on_line=stop_after_four, **kw)
    assert isinstance(info.value, KeyboardInterrupt)
    assert [d["id"] for d in _lines(out)] == seen
    first_ok = {d["id"] for d in _lines(out) if d["status"] == "ok"}
    assert first_ok  # some images were finished before the interrupt

    redone = []
    resumed = inspect_folder(demo_inspector, folder, out, on_line=lambda d: redone.append(d), **kw)
    # nothing finished is redone (unreadable lines are tried again: a file may be fixed)
    assert not first_ok & {d["id"] for d in redone}
    assert {d["id"] for d in redone} == {d["id"] for d in full.lines} - first_ok
    assert resumed.n_new == len(redone)
    assert _stable(_lines(out)) == _stable(_lines(tmp_path / "full"))
    assert (out / SUMMARY_FILE).read_bytes() == (tmp_path / "full" / SUMMARY_FILE).read_bytes()
    a, b = _pngs(out), _pngs(tmp_path / "full")
    assert sorted(a) == sorted(b) and len(a) == 2 * len(good)
    assert all(np.array_equal(a[k], b[k]) for k in a)

    # a third run does nothing
    again = []
    inspect_folder(demo_inspector, folder, out, on_line=again.append, **kw)
    assert all(d["status"] == "unreadable" for d in again)


def test_partial_last_line_is_dropped_and_redone(demo_inspector, tmp_path):
    folder = tmp_path / "imgs"
    for k in range(3):
        write_test_image(folder / f"i{k}.png", k)
    out = tmp_path / "res"
    inspect_folder(demo_inspector, folder, out, progress=False)
    whole = (out / RESULTS_FILE).read_bytes()
    lines = whole.splitlines(keepends=True)
    (out / RESULTS_FILE).write_bytes(b"".join(lines[:2]) + lines[2][:30])  # killed mid-write
    redone = []
    inspect_folder(demo_inspector, folder, out, progress=False, on_line=redone.append)
    assert [d["id"] for d in redone] == ["i2.png"]
    assert _stable(_lines(out)) == _stable([json.loads(x) for x in whole.splitlines()])


def test_other_settings_are_refused_until_overwrite(demo_inspector, tmp_path):
    folder = tmp_path / "imgs"
    for k in range(2):
        write_test_image(folder / f"i{k}.png", k)
    out = tmp_path / "res"
    inspect_folder(demo_inspector, folder, out, progress=False)
    with pytest.raises(
        FolderRunError, match=r"other settings \(options: .*question: .*--overwrite"
    ):
        inspect_folder(
            demo_inspector, folder, out, question="Which?", options=["x", "y"], progress=False
        )
    assert len(_lines(out)) == 2  # nothing was touched
    new = inspect_folder(
        demo_inspector,
        folder,
        out,
        question="Which?",
        options=["x", "y"],
        progress=False,
        overwrite=True,
    )
    assert new.n_new == 2 and all(d["answer_text"] in (None, "x", "y") for d in new.lines)
    # a folder holding other files is not a results folder
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(FolderRunError, match=r"holds no run\.json"):
        inspect_folder(demo_inspector, folder, other, progress=False, overwrite=True)
    assert (other / "keep.txt").read_text() == "mine"


def test_overlays_asked_for_later_come_from_the_lines(demo_inspector, tmp_path):
    folder = tmp_path / "imgs"
    for k in range(3):
        write_test_image(folder / f"i{k}.png", k, kind="smooth" if k else "noise")
    ref = inspect_folder(
        demo_inspector, folder, tmp_path / "ref", overlays="all", save_masks=True, progress=False
    )
    out = tmp_path / "res"
    inspect_folder(demo_inspector, folder, out, overlays="none", progress=False)
    assert not (out / "overlays").exists()
    calls = []
    later = inspect_folder(
        demo_inspector,
        folder,
        out,
        overlays="all",
        save_masks=True,
        progress=False,
        on_line=calls.append,
    )
    assert calls == [] and later.n_new == 0  # no model call
    a, b = _pngs(out), _pngs(tmp_path / "ref")
    assert sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a)
    assert _stable(later.lines) == _stable(ref.lines)


def test_two_runs_cannot_write_one_results_folder(demo_inspector, tmp_path):
    import fcntl

    folder = tmp_path / "imgs"
    write_test_image(folder / "i0.png", 0)
    out = tmp_path / "res"
    inspect_folder(demo_inspector, folder, out, progress=False)
    with open(out / ".omniad-folder.lock", "a+b") as held:  # as another live run holds it
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(FolderRunError, match="another process is writing"):
            inspect_folder(demo_inspector, folder, out, progress=False, overwrite=True)
    assert len(_lines(out)) == 1  # --overwrite did not touch the live run's results


# ------------------------------------------------------------------- references
def test_per_folder_references(demo_inspector, tmp_path):
    root = tmp_path / "parts"
    write_test_image(root / "top.png", 0)
    write_test_image(root / "screws" / "good.png", 1, kind="smooth")
    write_test_image(root / "screws" / "s0.png", 2)
    write_test_image(root / "screws" / "deep" / "s1.png", 3)
    write_test_image(root / "nuts" / "reference.jpg", 4, kind="smooth")
    write_test_image(root / "nuts" / "n0.png", 5)
    result = inspect_folder(
        demo_inspector, root, tmp_path / "res", reference="per-folder", batch_size=1, progress=False
    )
    refs = {d["id"]: d["reference"] for d in result.lines}
    assert refs == {
        "nuts/n0.png": str(root / "nuts" / "reference.jpg"),
        "screws/deep/s1.png": str(root / "screws" / "good.png"),
        "screws/s0.png": str(root / "screws" / "good.png"),
        "top.png": None,
    }  # references are not inspected themselves
    one = demo_inspector.analyze(root / "screws" / "s0.png", reference=root / "screws" / "good.png")
    line = next(d for d in result.lines if d["id"] == "screws/s0.png")
    assert (line["seg"], line["answer"]) == (one.parsed.seg_canonical, one.answer)
    # a mapping: relative folders name folders of the run (or of the current directory)
    mapped = inspect_folder(
        demo_inspector,
        root,
        tmp_path / "map",
        batch_size=1,
        progress=False,
        reference={"screws": root / "nuts" / "reference.jpg"},
    )
    refs = {d["id"]: d["reference"] for d in mapped.lines}
    assert refs["screws/deep/s1.png"] == str(root / "nuts" / "reference.jpg")
    assert refs["top.png"] is None and refs["nuts/n0.png"] is None
    assert "screws/good.png" in refs  # not per-folder: good.png is an image like any other
    with pytest.raises(FolderRunError, match="no such folder 'bolts'"):
        inspect_folder(demo_inspector, root, tmp_path / "x", reference={"bolts": root / "top.png"})
    # one reference for all, and a broken one is an error before any work
    all_one = inspect_folder(
        demo_inspector,
        root / "screws",
        tmp_path / "one",
        reference=root / "nuts" / "reference.jpg",
        progress=False,
    )
    assert {d["reference"] for d in all_one.lines} == {str(root / "nuts" / "reference.jpg")}
    (tmp_path / "bad.png").write_text("x")
    with pytest.raises(FolderRunError, match="reference image cannot be used"):
        inspect_folder(demo_inspector, root, tmp_path / "bad", reference=tmp_path / "bad.png")


# ------------------------------------------------------------- outputs stay inside
def test_outputs_never_leave_the_results_folder(demo_inspector, tmp_path):
    folder = tmp_path / "imgs"
    write_test_image(folder / "a b=(1).png", 0)
    write_test_image(folder / "ü" / "..strange.jpg", 1)
    out = tmp_path / "res"
    result = inspect_folder(demo_inspector, folder, out, overlays="all", progress=False)
    for d in result.lines:
        target = (out / d["overlay"]).resolve()
        assert target.is_file() and target.is_relative_to(out.resolve())
    # a symbolic link planted in the results folder is refused, nothing written through it
    outside = tmp_path / "outside"
    outside.mkdir()
    out2 = tmp_path / "res2"
    out2.mkdir()
    os.symlink(outside, out2 / "overlays")
    with pytest.raises(FolderRunError, match="outside"):
        inspect_folder(demo_inspector, folder, out2, overlays="all", progress=False)
    assert list(outside.iterdir()) == []


# ------------------------------------------------------------------ command line
def test_is_folder_request(tmp_path):
    (tmp_path / "d").mkdir()
    assert is_folder_request([str(tmp_path / "d")])
    assert is_folder_request(["x.png", "--out", "r"])
    assert is_folder_request(["imgs/*.png", "--model", "m"])
    assert not is_folder_request(["part.png", "--overlay", "o.png"])


def test_folder_help_names_the_command_and_loads_no_model_library():
    code = (
        "import sys\n"
        "from omniad_core.folder import folder_main, folder_parser\n"
        "try:\n    folder_main(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
        "undocumented = [a.option_strings for a in folder_parser()._actions if not a.help]\n"
        "assert not undocumented, undocumented\n"
        "print(sorted(m for m in ('torch', 'transformers', 'gradio') if m in sys.modules))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: omniad inspect") and r.stdout.strip().endswith("[]")
    for flag in ("--out", "--reference", "--overlays", "--masks", "--batch-size", "--overwrite"):
        assert flag in r.stdout


def test_folder_main_one_line_errors(tmp_path, capsys):
    assert folder_main([str(tmp_path / "missing"), "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("omniad inspect: error: no such file or folder")
    write_test_image(tmp_path / "d" / "a.png", 0)
    assert (
        folder_main([str(tmp_path / "d"), "--out", str(tmp_path / "r"), "--options", "x", "y"]) == 1
    )
    assert "--options needs --question" in capsys.readouterr().err
    code = folder_main(
        [str(tmp_path / "d"), "--out", str(tmp_path / "r"), "--model", str(tmp_path / "nope")]
    )
    assert code == 1 and "--model" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # nothing written before the checks


def test_folder_command_runs_and_resumes(broken_image_folder, tmp_path, capsys):
    folder, good, broken = broken_image_folder
    out = tmp_path / "res"
    argv = [
        str(folder / "*.png"),
        str(folder / "sub"),
        "--out",
        str(out),
        "--overlays",
        "all",
        "--masks",
        "--batch-size",
        "2",
        "--no-progress",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        [sys.executable, "-m", "omniad_core.folder", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert "the embedded demo model is loaded" in r.stderr and "synthetic textures" in r.stderr
    assert "3 unreadable" in r.stderr and "skipped" in r.stderr
    ids = sorted(d["id"] for d in _lines(out))
    assert ids == sorted([*good, *broken])
    assert all((out / d["overlay"]).is_file() for d in _lines(out) if d["status"] == "ok")
    # again, in this process: only the unreadable files are tried again
    assert folder_main(argv) == 0
    assert f"{len(ids)} images (3 new)" in capsys.readouterr().err
    assert folder_main([*argv, "--question", "Other?"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("omniad inspect: error: ") and "--overwrite" in err[-1]


@pytest.mark.slow
def test_folder_through_a_served_model(served_demo, demo_inspector, tmp_path):
    from omniad_core.inspector import Inspector

    base_url, name = served_demo
    folder = tmp_path / "imgs"
    for k in range(3):
        write_test_image(folder / f"i{k}.png", k)
    (folder / "bad.png").write_text("x")
    served = Inspector.from_endpoint(base_url, name, concurrency=2)
    result = inspect_folder(served, folder, tmp_path / "res", progress=False)
    local = inspect_folder(demo_inspector, folder, tmp_path / "local", progress=False)
    assert [d["status"] for d in result.lines] == ["unreadable", "ok", "ok", "ok"]
    assert [(d["seg"], d["answer"]) for d in result.lines] == [
        (d["seg"], d["answer"]) for d in local.lines
    ]
    assert result.lines[1]["model"] == f"{name} @ {base_url}"


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_results_and_pictures_get_the_umask_mode_not_0600(tmp_path, umask):
    """Atomic writers create through mkstemp (0600); the files must read like open()'s."""
    import os

    from PIL import Image

    from omniad_core.folder import common

    old = os.umask(umask)
    try:
        common._atomic_text(tmp_path / "summary.csv", "path,answer\n")
        common._save_png(Image.new("RGB", (4, 4)), tmp_path / "overlays" / "a.png")
    finally:
        os.umask(old)
    for path in (tmp_path / "summary.csv", tmp_path / "overlays" / "a.png"):
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path


def test_omniad_inspect_routes_a_folder_and_omniad_ui_is_listed(tmp_path, capsys):
    """`omniad inspect DIR --out OUT` is folder mode; `omniad ui` is a command of `omniad`."""
    import numpy as np
    from PIL import Image

    from omniad_core.cli import main

    folder = tmp_path / "parts"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for k in range(2):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(folder / f"{k}.png")
    out = tmp_path / "results"
    assert main(["inspect", str(folder), "--out", str(out), "--no-progress"]) == 0
    lines = (out / "results.jsonl").read_text().splitlines()
    assert len(lines) == 2
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "ui " in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        main(["ui", "--help"])
    assert info.value.code == 0
    assert "usage: omniad ui" in capsys.readouterr().out
