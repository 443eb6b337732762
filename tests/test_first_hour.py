"""Issue 15, items 1-5 and 7 on the core side: a newcomer's first hour with ``omniad``.

Speed (the thread policy, light imports, ``--help`` without torch), settings that no longer
mislead (the checkpoint's grid is authoritative, the JSON says what produced it),
questions and options, photos given as masks, folders given as images, one question for
a whole batch, and ``demo_model_path`` at the top of the package.  No wall-clock asserts:
the policy is a pure function, threads are observed inside the model's forward pass.
"""

from __future__ import annotations

import gc
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from omniad_core.backends.threads import (
    ENV_THREADS,
    SMALL_MODEL_PARAMS,
    parse_threads,
    resolve_num_threads,
    thread_policy,
)
from omniad_core.batch_inputs import options_per_image, references_per_image
from omniad_core.cli import main
from omniad_core.overrides import resolve_grid

ROOT = Path(__file__).resolve().parent.parent
DEMO_SPEC = {"textmask": {"rows": 8, "cols": 8, "threshold": 0.0, "index_base": 0}}


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse usage errors and --help
        code = int(exc.code or 0)
    got = capsys.readouterr()
    return code, got.out, got.err


def _photo(path: Path, h: int = 48, w: int = 64, seed: int = 0) -> Path:
    arr = (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)
    Image.fromarray(arr).save(path)
    return path


def _error_line(err: str, command: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"omniad {command}: error: "), err
    return lines[0]


# ------------------------------------------------------------------ item 1: threads
@pytest.mark.parametrize(
    ("params", "cores", "threads"),
    [
        (130_000, 2, 1),  # the unit-test model
        (1_710_944, 2, 1),  # the embedded demo model
        (1_710_944, 64, 1),  # many cores do not help a small model
        (SMALL_MODEL_PARAMS - 1, 8, 1),
        (SMALL_MODEL_PARAMS, 8, 8),
        (3_000_000_000, 16, 16),  # a 3B on a CPU: every core
        (7_000_000_000, 2, 2),
        (7_000_000_000, 0, 1),  # an unknown core count
    ],
)
def test_thread_policy_is_one_thread_for_small_models_all_cores_for_large(params, cores, threads):
    assert thread_policy(params, cores) == threads


def test_thread_overrides_come_in_order():
    small, big = 1_700_000, 7_000_000_000
    assert resolve_num_threads(None, small, cores=2, environ={})[0] == 1
    # a large model or a GPU model keeps torch's setting (None: nothing is changed)
    assert resolve_num_threads(None, big, cores=8, environ={})[0] is None
    assert resolve_num_threads(None, small, cores=2, on_cpu=False, environ={})[0] is None
    # OMP_NUM_THREADS set by the user: torch followed it, the policy leaves it
    assert resolve_num_threads(None, small, cores=2, environ={"OMP_NUM_THREADS": "2"})[0] is None
    env = {ENV_THREADS: "2", "OMP_NUM_THREADS": "1"}
    assert resolve_num_threads(None, small, cores=2, environ=env) == (2, f"{ENV_THREADS}=2")
    assert resolve_num_threads(3, small, cores=2, environ=env)[0] == 3  # the argument wins
    assert resolve_num_threads(0, small, cores=2, environ={})[0] is None  # 0: torch's setting
    assert resolve_num_threads("auto", small, cores=2, environ={"OMP_NUM_THREADS": "2"})[0] == 1
    with pytest.raises(ValueError, match="OMNIAD_NUM_THREADS must be a whole number"):
        resolve_num_threads(None, small, cores=2, environ={ENV_THREADS: "-1"})
    assert parse_threads(" AUTO ") == "auto"


@pytest.fixture
def no_thread_env(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv(ENV_THREADS, raising=False)


def _threads_in_forward(insp) -> list[int]:
    """Run one answer and return torch's thread count seen inside each forward pass."""
    import torch

    seen: list[int] = []
    hook = insp.model.register_forward_pre_hook(lambda *_: seen.append(torch.get_num_threads()))
    try:
        insp.analyze(np.zeros((32, 32, 3), np.uint8))
    finally:
        hook.remove()
    return seen


def test_the_demo_model_generates_on_one_thread_and_restores_the_setting(no_thread_env):
    torch = pytest.importorskip("torch")
    from omniad_core import Inspector, demo_model_path

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        insp = Inspector.from_pretrained(demo_model_path(), max_new_tokens=8)
        assert insp.num_threads == 1 and "policy" in insp.threads_reason
        seen = _threads_in_forward(insp)
        assert seen and set(seen) == {1}
        assert torch.get_num_threads() == 2  # the rest of the program keeps its setting
        assert insp.describe()["num_threads"] == 1
    finally:
        torch.set_num_threads(before)


def test_num_threads_argument_and_environment_override_the_policy(no_thread_env, monkeypatch):
    torch = pytest.importorskip("torch")
    from omniad_core import Inspector, demo_model_path

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        monkeypatch.setenv(ENV_THREADS, "2")
        insp = Inspector.from_pretrained(demo_model_path(), max_new_tokens=4)
        assert insp.num_threads == 2 and set(_threads_in_forward(insp)) == {2}
        insp = Inspector.from_pretrained(demo_model_path(), max_new_tokens=4, num_threads=0)
        assert insp.num_threads is None and set(_threads_in_forward(insp)) == {1}
    finally:
        torch.set_num_threads(before)


def test_threads_flag_is_checked_before_any_work(tmp_path, capsys):
    img = _photo(tmp_path / "part.png")
    code, _, err = _run(["inspect", str(img), "--threads", "many"], capsys)
    assert code == 1 and "--threads must be a whole number" in _error_line(err, "inspect")


_PROBE = """\
import json, sys
from omniad_core.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
heavy = ("torch", "transformers", "textmask", "numba", "pydantic", "PIL")
print(json.dumps(sorted(m for m in heavy if m in sys.modules)), file=sys.stderr)
"""


@pytest.mark.parametrize(
    "argv", [["--help"], ["inspect", "--help"], ["encode", "--help"], ["decode", "--help"]]
)
def test_help_loads_neither_torch_nor_the_codec(argv):
    run = subprocess.run(
        [sys.executable, "-c", _PROBE, *argv],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert "usage: omniad" in run.stdout
    assert json.loads(run.stderr.strip().splitlines()[-1]) == []


def test_importing_omniad_core_loads_nothing_until_a_name_is_used():
    code = (
        "import sys, omniad_core\n"
        "light = sorted(m for m in ('numpy', 'pydantic', 'textmask') if m in sys.modules)\n"
        "from omniad_core import demo_model_path, parse_response\n"
        "print(light, 'pydantic' in sys.modules, callable(demo_model_path))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[] True True"


def test_the_program_freezes_its_objects_before_exit_and_the_api_does_not(tmp_path):
    m = np.zeros((16, 16), np.uint8)
    m[2:5, 3:9] = 255
    Image.fromarray(m).save(tmp_path / "m.png")
    code = (
        "import gc, sys\n"
        "from omniad_core.cli import main\n"
        f"sys.argv = ['omniad', 'encode', {str(tmp_path / 'm.png')!r}]\n"
        "main()\n"
        "print(gc.get_freeze_count() > 0)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0 and run.stdout.strip().endswith("True"), run.stderr
    frozen = gc.get_freeze_count()
    assert main(["encode", str(tmp_path / "m.png")]) == 0  # in process: nothing frozen
    assert gc.get_freeze_count() == frozen


def test_the_collector_is_paused_only_while_loading():
    from omniad_core.backends.local import collector_paused

    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()  # a caller's own choice is kept
    finally:
        gc.enable()


# ------------------------------------------------------------------ item 2: the grid
def test_grid_flags_resolve_against_the_checkpoint():
    assert resolve_grid(DEMO_SPEC) == (None, None, "omniad.json")
    assert resolve_grid({}) == (None, None, "default")
    g, warn, src = resolve_grid(DEMO_SPEC, grid=8)
    assert g.shape == (8, 8) and warn is None and src == "given: --grid; rest from omniad.json"
    g, warn, _ = resolve_grid({}, grid=16)  # nothing to contradict
    assert g.shape == (16, 16) and warn is None
    g, warn, _ = resolve_grid(DEMO_SPEC, grid=24)
    assert g.shape == (24, 24)
    assert "omniad.json says grid 8x8" in warn and "--grid 24x24" in warn and "wrong" in warn
    g, warn, _ = resolve_grid(DEMO_SPEC, threshold=0.5)
    assert (g.shape, g.threshold, g.index_base) == ((8, 8), 0.5, 0)
    assert "--threshold 0.5" in warn and "does not change how a seg is read" in warn
    g, _, src = resolve_grid(DEMO_SPEC, grid=8, threshold=0.0, index_base=0)
    assert src == "given"
    with pytest.raises(ValueError, match="index_base"):
        resolve_grid(DEMO_SPEC, index_base=2)


@pytest.fixture
def part(tmp_path):
    return _photo(tmp_path / "part.png", 60, 90, seed=3)


def _inspect_json(argv: list[str], capsys) -> tuple[dict, str]:
    code, out, err = _run(["inspect", *argv, "--json", "--max-new-tokens", "96"], capsys)
    assert code == 0, err
    return json.loads(out), err


def test_inspect_json_says_which_grid_model_and_size_made_it(part, capsys):
    pytest.importorskip("torch")
    from omniad_core import demo_model_path

    d, err = _inspect_json([str(part)], capsys)
    assert d["grid"] == {"rows": 8, "cols": 8, "threshold": 0.0, "index_base": 0}
    assert d["model"] == str(demo_model_path())
    assert d["image_size_hw"] == [60, 90] == d["image_size"]
    assert d["settings_source"]["grid"] == "omniad.json"
    assert "WARNING" not in err


def test_a_grid_that_contradicts_the_checkpoint_warns_and_is_recorded(part, capsys):
    pytest.importorskip("torch")
    d, err = _inspect_json([str(part), "--grid", "24"], capsys)
    warnings = [ln for ln in err.splitlines() if "WARNING" in ln]
    assert len(warnings) == 1
    assert "omniad.json says grid 8x8" in warnings[0] and "wrong" in warnings[0]
    assert (d["grid"]["rows"], d["grid"]["cols"]) == (24, 24)
    assert d["settings_source"]["grid"].startswith("given")


def test_threshold_and_index_base_alone_override_only_their_field(part, capsys):
    pytest.importorskip("torch")
    d, err = _inspect_json([str(part), "--index-base", "1"], capsys)
    assert d["grid"] == {"rows": 8, "cols": 8, "threshold": 0.0, "index_base": 1}
    assert "--index-base 1" in err
    d, err = _inspect_json([str(part), "--threshold", "0.25", "--index_base", "0"], capsys)
    assert d["grid"] == {"rows": 8, "cols": 8, "threshold": 0.25, "index_base": 0}
    assert "--threshold 0.25" in err


def test_help_states_the_real_defaults(capsys):
    _, out, _ = _run(["inspect", "--help"], capsys)
    flat = " ".join(out.split())
    assert "default: the checkpoint's omniad.json, 24 if it has none" in flat
    assert "overriding only that field of the checkpoint's grid" in flat
    assert "``" not in out
    _, out, _ = _run(["encode", "--help"], capsys)
    assert "(default 24)" in " ".join(out.split())


# ------------------------------------------------------------------ item 3
def test_a_question_without_options_gets_yes_no_and_says_so(part, capsys):
    pytest.importorskip("torch")
    code, out, _ = _run(
        ["inspect", str(part), "--question", "Is the cap scratched?", "--max-new-tokens", "96"],
        capsys,
    )
    assert code == 0
    assert "options  : A. Yes / B. No (the default: pass --options to change them)" in out
    d, _ = _inspect_json([str(part), "--question", "Is the cap scratched?"], capsys)
    assert d["options"] == {"A": "Yes", "B": "No"} and d["options_source"] == "default"
    assert "A: Yes" in d["question"] and "Is the cap scratched?" in d["question"]


def test_options_go_with_the_default_question(part, capsys):
    pytest.importorskip("torch")
    d, _ = _inspect_json([str(part), "--options", "Defective", "Fine"], capsys)
    assert d["options"] == {"A": "Defective", "B": "Fine"} and d["options_source"] == "given"
    assert "Is there any defect in the object?" in d["question"]


def test_encode_refuses_a_photo_unless_told(tmp_path, capsys):
    photo = _photo(tmp_path / "photo.png")
    code, out, err = _run(["encode", str(photo)], capsys)
    line = _error_line(err, "encode")
    assert code == 1 and out == ""
    assert "looks like a photo, not a mask" in line and "--any-nonzero" in line
    code, out, _ = _run(["encode", str(photo), "--any-nonzero", "--grid", "2"], capsys)
    assert code == 0 and out.strip() == "(0, 0)-(0, 1), (1, 0)-(1, 1)"


def test_encode_still_reads_colour_and_grey_masks(tmp_path, capsys):
    red = np.zeros((24, 24, 3), np.uint8)
    red[0:3, 0:3, 0] = 255  # a red-on-black mask: colour, but 2 values a channel
    Image.fromarray(red).save(tmp_path / "red.png")
    code, out, _ = _run(["encode", str(tmp_path / "red.png")], capsys)
    assert code == 0 and out.strip() == "(0, 0)-(0, 2), (1, 0)-(1, 2), (2, 0)-(2, 2)"
    soft = (np.random.default_rng(1).random((24, 24)) * 255).astype(np.uint8)
    Image.fromarray(soft).convert("RGB").save(tmp_path / "grey_rgb.png")  # grey stored as RGB
    assert _run(["encode", str(tmp_path / "grey_rgb.png")], capsys)[0] == 0


def test_a_folder_given_as_an_image_is_named_a_folder(tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    code, _, err = _run(["inspect", str(folder)], capsys)
    line = _error_line(err, "inspect")
    assert code == 1 and "is a folder" in line and "not found" not in line
    assert "omniad inspect DIR --out DIR" in line
    code, _, err = _run(["encode", str(folder)], capsys)
    assert code == 1 and "is a folder" in _error_line(err, "encode")
    from omniad_core.images import ImageError, load_image

    with pytest.raises(ImageError, match="is a folder; pass an image file"):
        load_image(folder)


# ------------------------------------------------------------------ item 4: one question
def test_one_option_set_is_shared_and_a_list_of_sets_is_per_image():
    assert options_per_image(["Yes", "No"], 16) == [["Yes", "No"]] * 16
    assert options_per_image(("Yes", "No"), 2) == [("Yes", "No")] * 2
    assert options_per_image({"A": "Yes", "B": "No"}, 2) == [{"A": "Yes", "B": "No"}] * 2
    per = [["Yes", "No"], {"A": "x", "B": "y", "C": "z"}, None]
    assert options_per_image(per, 3) == per
    assert options_per_image(None, 2) == [None, None]
    with pytest.raises(ValueError, match=r"mixes kinds: entry 0 is .Yes."):
        options_per_image(["Yes", ["No"]], 2)
    with pytest.raises(ValueError, match="2 option sets for 3 images"):
        options_per_image([["Yes", "No"], ["a", "b"]], 3)
    with pytest.raises(ValueError, match="got the string 'Yes'"):
        options_per_image("Yes", 2)
    with pytest.raises(ValueError, match="empty"):
        options_per_image([], 2)
    ref = np.zeros((4, 4, 3), np.uint8)
    assert references_per_image(ref, 3) == [ref] * 3
    assert references_per_image("good.png", 2) == ["good.png"] * 2
    with pytest.raises(ValueError, match="references must have one entry per image"):
        references_per_image(["a.png"], 2)


def test_analyze_batch_broadcasts_one_question_and_options(demo_inspector):
    images = [np.full((40, 40, 3), v, np.uint8) for v in (0, 90, 180)]
    results = demo_inspector.analyze_batch(
        images, "Is the cap scratched?", ["Yes", "No"], progress=False
    )
    assert len(results) == 3
    for r in results:
        assert r.question.startswith("Is the cap scratched?") and "A: Yes" in r.question


# ------------------------------------------------------------------ item 7
def test_demo_model_path_is_importable_from_the_package_and_in_the_readme():
    from omniad_core import demo_model_path

    path = demo_model_path()
    assert path is not None and (path / "omniad.json").is_file()
    readme = (ROOT / "README.md").read_text()
    assert re.search(r"from omniad_core import .*demo_model_path", readme)


def test_cli_flags_have_help_and_both_spellings(capsys):
    for command in ("inspect", "encode", "decode"):
        _, out, _ = _run([command, "--help"], capsys)
        assert out.startswith(f"usage: omniad {command}")
        assert "``" not in out
    from omniad_core.cli import _parser

    parser = _parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name in ("inspect", "encode", "decode"):
        for action in sub.choices[name]._actions:
            assert action.help, f"omniad {name} {action.option_strings or action.dest}"
            long = [s for s in action.option_strings if s.startswith("--") and "-" in s[2:]]
            for flag in long:
                assert "--" + flag[2:].replace("-", "_") in action.option_strings, flag


def test_omniad_inspect_prints_none_of_the_known_library_noise(tmp_path):
    """The core CLI filters the same exact-message noise list as the training CLIs."""
    import subprocess
    import sys

    import numpy as np
    from PIL import Image

    from omniad_core._quiet import KNOWN_NOISE

    image = tmp_path / "part.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(
        image
    )
    run = subprocess.run(
        [sys.executable, "-m", "omniad_core", "inspect", str(image)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    noisy = [n.pattern for n in KNOWN_NOISE if "PaddleOCRVLProcessor" in n.pattern]
    assert noisy, "the PaddleOCRVLProcessor deprecation line is on the noise list"
    assert "PaddleOCRVLProcessor" not in run.stderr + run.stdout
    assert "Loading weights" not in run.stderr  # a 7 MB checkpoint: no bar flashing by
    assert "embedded demo model" in run.stderr  # our own notice still shows


def test_small_local_checkpoints_load_without_a_bar_large_ones_keep_it(tmp_path):
    pytest.importorskip("transformers")
    from transformers.utils import logging as hf_logging

    from omniad_core.backends.local import QUIET_LOAD_BYTES, weights_bar_for

    small, large = tmp_path / "small", tmp_path / "large"
    for folder, size in ((small, 7 * 2**20), (large, QUIET_LOAD_BYTES)):
        folder.mkdir()
        with open(folder / "model-00001-of-00002.safetensors", "wb") as f:
            f.truncate(size // 2)  # sparse: the size counts, not the bytes on disk
        with open(folder / "model-00002-of-00002.safetensors", "wb") as f:
            f.truncate(size - size // 2)

    def shown(desc: str) -> bool:  # a bar as transformers makes them
        with hf_logging.tqdm(range(1), desc=desc) as bar:
            return not getattr(bar, "disable", True)

    assert shown("Loading weights") and shown("something else")
    with weights_bar_for(small):
        assert not shown("Loading weights")
        assert shown("something else")  # only the weights bar is hidden
    assert shown("Loading weights")  # restored
    with weights_bar_for(large):  # exactly the limit: a load that takes long enough
        assert shown("Loading weights")
    with weights_bar_for(tmp_path / "org/hub-id"):  # not a folder: a download keeps its bar
        assert shown("Loading weights")
    with pytest.raises(OSError), weights_bar_for(small):
        raise OSError("a load that fails")
    assert shown("Loading weights")  # restored after a failure too
    hf_logging.disable_progress_bar()
    try:  # a user who turned bars off keeps them off, and gets them off after
        with weights_bar_for(small):
            assert not shown("something else")
        assert not hf_logging.is_progress_bar_enabled()
    finally:
        hf_logging.enable_progress_bar()


# ----------------------------------- an install without accelerate (device_map needs it)
_NO_ACCELERATE = (
    "import sys\n"
    "sys.modules['accelerate'] = None  # an install without it: find_spec says None\n"
    "from omniad_core.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def test_inspect_runs_on_the_cpu_without_accelerate(tmp_path):
    """``device_map`` needs accelerate; on the CPU, where weights load anyway, none is passed."""
    image = _photo(tmp_path / "part.png")
    run = subprocess.run(
        [sys.executable, "-c", _NO_ACCELERATE, "inspect", str(image), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["answer"] in {"A", "B"}


def test_a_gpu_load_without_accelerate_names_the_install(release_ckpt):
    code = (
        "import sys\n"
        "sys.modules['accelerate'] = None\n"
        "from omniad_core.backends.local import load_pretrained\n"
        "load_pretrained(sys.argv[1], False, 'cuda:0', 'bfloat16')\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code, str(release_ckpt)], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 1
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("omniad_core.packages.MissingPackageError: loading "), last
    assert "onto cuda:0 needs accelerate" in last and "pip install accelerate" in last


# ------------------------------------------- an extra that is not installed: which one
def _without(modules: tuple[str, ...], *argv: str) -> subprocess.CompletedProcess[str]:
    code = (
        "import sys\n"
        f"for m in {modules!r}: sys.modules[m] = None  # an install without them\n"
        "from omniad_core.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize(
    ("missing", "command", "install"),
    [
        (("PIL",), "encode", "pip install 'omniad[core]'"),  # the codec alone: no Pillow
        (("pydantic",), "inspect", "pip install 'omniad[core]'"),
        (("torch", "transformers"), "inspect", "then pip install 'omniad[model]'"),
        (("torch", "transformers"), "inspect --out", "then pip install 'omniad[model]'"),
    ],
)
def test_a_missing_extra_is_one_line_naming_the_install(tmp_path, missing, command, install):
    image = _photo(tmp_path / "part.png")
    argv = {
        "encode": ["encode", str(image), "--any-nonzero"],
        "inspect": ["inspect", str(image)],
        "inspect --out": ["inspect", str(tmp_path), "--out", str(tmp_path / "res")],
    }[command]
    run = _without(missing, *argv)
    lines = [ln for ln in run.stderr.splitlines() if ln.strip() and "embedded demo" not in ln]
    assert run.returncode == 1, run.stderr
    assert len(lines) == 1 and install in lines[0], run.stderr
    assert "unexpected" not in lines[0] and "Traceback" not in run.stderr
