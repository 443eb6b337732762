"""Issue 15, items 5, 6 and 8: one CLI style for ``omniad-train``, recipes by name, no noise.

Every command prints its real name in its usage, has a help string for every option,
accepts ``--flag_name`` and ``--flag-name``, prints no RST markup, and answers ``--help``
without loading torch, transformers, TRL or datasets.  Shipped recipes are addressable
by name.  The known library noise is filtered by exact message and nothing else is.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from omniad_core._quiet import KNOWN_NOISE, quiet_known_noise
from omniad_train import cli
from omniad_train.recipe_checks import RecipeError
from omniad_train.recipe_yaml import resolve_recipe, resolve_shipped, shipped_recipes

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "transformers", "trl", "datasets", "deepspeed")
COMMANDS = ("prepare", "synth", "sft", "grpo", "plan", "demo", "recipes")

_PROBE = """\
import json, sys
from omniad_train.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
heavy = sorted(m for m in {heavy!r} if m in sys.modules)
print(json.dumps({{"code": code, "heavy": heavy}}), file=sys.stderr)
"""


def _help(*args: str) -> tuple[str, dict]:
    run = subprocess.run(
        [sys.executable, "-c", _PROBE.format(heavy=HEAVY), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    return run.stdout, json.loads(run.stderr.strip().splitlines()[-1])


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_helps_under_its_own_name_without_loading_libraries(command):
    """``omniad-train sft --help`` built TRL's parser (5 s, torch and TRL loaded) and
    printed ``usage: omniad-train [-h] [--dataset_path ...`` without ``--config``."""
    out, probe = _help(command, "--help")
    assert probe["code"] in (0, None)
    assert out.startswith(f"usage: omniad-train {command}"), out[:200]
    assert probe["heavy"] == [], f"--help of {command} loaded {probe['heavy']}"
    assert "``" not in out
    if command in ("sft", "grpo", "plan"):
        assert "--config RECIPE" in out
    if command in ("sft", "grpo"):
        head, _, rest = out.partition("common TRL keys")
        assert "--config" in head and "--dataset_path" in head and "--alpha" in head
        assert "--learning_rate" in rest and "--help_all" in out
        assert out.count("\n") < 120  # not TRL's 870 lines


def test_top_level_help_lists_every_command_and_routes_eval_unchanged():
    out, probe = _help("--help")
    assert probe == {"code": 0, "heavy": []}
    assert out.startswith("usage: omniad-train [-h] COMMAND")
    for command in (*COMMANDS, "eval"):
        assert f"\n  {command} " in out
    out, probe = _help("eval", "--help")
    assert probe["code"] in (0, None) and "mmad" in out and "detection" in out


def test_an_unknown_command_is_one_error_line_with_a_hint(capsys):
    assert cli.main(["sfr"]) == 2
    err = capsys.readouterr().err
    assert "omniad-train: error: unknown command 'sfr' (did you mean 'sft'?)" in err


@pytest.mark.parametrize("kind", ["sft", "grpo"])
def test_training_without_a_recipe_asks_for_one(kind, capsys):
    """It said "Your setup doesn't support bf16/gpu" (TRL's check of an empty recipe)."""
    assert cli.main([kind]) == 2
    err = capsys.readouterr().err
    assert f"omniad-train {kind}: error: pass --config RECIPE (see `omniad-train recipes`)" in err
    assert "bf16" not in err and "gpu" not in err.lower()


def _parsers():
    from omniad_train.data.cli import build_parser as prepare_parser
    from omniad_train.demo.cli import build_parser as demo_parser
    from omniad_train.planner.cli import _parser as plan_parser
    from omniad_train.synthetic.writer import build_parser as synth_parser

    return {
        "prepare": prepare_parser(),
        "synth": synth_parser(),
        "plan": plan_parser(),
        "demo": demo_parser("omniad-train demo"),
        "sft": cli._training_parser("sft"),
        "grpo": cli._training_parser("grpo"),
        "recipes": cli._recipes_parser(),
    }


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_has_help_and_no_rst(command):
    parser = _parsers()[command]
    for action in parser._actions:
        assert action.help and action.help.strip(), f"{command}: {action.dest} has no help"
        assert "``" not in action.help
    assert "``" not in parser.format_help()


def test_both_spellings_of_every_option_parse_alike(tmp_path):
    prepare = _parsers()["prepare"]
    base = [str(tmp_path / "o"), "--jsonl", "x.jsonl"]
    underscored = prepare.parse_args([*base, "--max_records", "5", "--eval_fraction", "0.1"])
    dashed = prepare.parse_args([*base, "--max-records", "5", "--eval-fraction=0.1"])
    assert vars(underscored) == vars(dashed)
    synth = _parsers()["synth"]
    assert synth.parse_args(["o", "--n-train-good", "3", "--no-progress"]) == synth.parse_args(
        ["o", "--n_train_good", "3", "--no_progress"]
    )
    demo = _parsers()["demo"]
    assert demo.parse_args(["--seed", "4"]).seed == 4
    plan = _parsers()["plan"]
    opts, rest = plan.parse_known_args(["--config", "x", "--world-size", "2", "--gpu-gib", "8"])
    assert (opts.world_size, opts.gpu_gib, rest) == (2, 8.0, [])
    # every option of every parser: its dashed spelling reaches the same destination
    for command, parser in _parsers().items():
        known = parser._option_string_actions
        for opt, action in list(known.items()):
            if opt.startswith("--") and "_" in opt:
                (dashed,) = cli.normalize_flags(["--" + opt[2:].replace("_", "-")], known)
                assert known[dashed] is action, (command, opt)


def test_recipes_are_addressable_by_name_and_a_local_path_wins(tmp_path, monkeypatch):
    shipped = resolve_recipe("qwen2_5_vl_7b/sft")
    assert shipped.is_file() and shipped == resolve_recipe("qwen2_5_vl_7b/sft.yaml")
    assert resolve_recipe("omniad_train/recipes/qwen2_5_vl_7b/sft.yaml").is_file()
    monkeypatch.chdir(tmp_path)
    local = tmp_path / "tiny_cpu" / "sft.yaml"
    local.parent.mkdir()
    local.write_text("learning_rate: 0.5\n")
    assert resolve_recipe("tiny_cpu/sft.yaml") == Path("tiny_cpu/sft.yaml")  # the local file
    assert resolve_recipe("tiny_cpu/sft") != Path("tiny_cpu/sft.yaml")  # no such local path
    with pytest.raises(RecipeError) as info:
        resolve_recipe("qwen2_5_vl_7b/sfft")
    message = str(info.value)
    assert "recipe not found" in message and "tiny_cpu/grpo" in message
    assert "omniad-train recipes" in message
    assert resolve_shipped("deepspeed/zero3.json", ("deepspeed",)).name == "zero3.json"
    assert resolve_shipped("deepspeed/zero3", ("recipe",)) is None


def test_recipes_command_lists_names_descriptions_and_paths(capsys):
    assert cli.main(["recipes"]) == 0
    out = capsys.readouterr().out
    files = shipped_recipes()
    assert {f.kind for f in files} == {"recipe", "deepspeed", "accelerate"}
    for f in files:
        assert f.description and not f.description.startswith("accelerate launch")
        assert f"  {f.name} " in out and f.description in out
    assert cli.main(["recipes", "--path", "accelerate/zero3"]) == 0
    assert Path(capsys.readouterr().out.strip()).is_file()
    assert cli.main(["recipes", "--show", "tiny_cpu/sft"]) == 0
    assert "model_name_or_path:" in capsys.readouterr().out
    assert cli.main(["recipes", "--path", "nope"]) == 1
    assert "no shipped file named 'nope'" in capsys.readouterr().err


def test_shipped_recipes_and_docs_use_names_not_clone_paths():
    docs = (ROOT / "docs" / "training.md").read_text()
    assert "--config omniad_train/recipes/" not in docs
    assert "--config qwen2_5_vl_7b/sft" in docs
    for f in shipped_recipes():
        assert "--config omniad_train/recipes/" not in f.path.read_text()


# --------------------------------------------------------------------------- with TRL
def test_recipe_names_dashed_keys_and_both_checkpointing_names(tmp_path):
    """A recipe by name, ``--key-name`` overrides, and transformers' renamed
    ``gradient_checkpointing`` read without its FutureWarning (the shipped recipes and TRL's
    default both raised it on every run)."""
    pytest.importorskip("trl")
    from trl import SFTConfig

    from omniad_train.config import parse_recipe

    base = ["--config", "tiny_cpu/sft", "--model-name-or-path", "m", "--output_dir", str(tmp_path)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s, t, m = parse_recipe(SFTConfig, [*base, "--learning-rate", "0.25", "--max-steps=3"])
        _, t_old, _ = parse_recipe(SFTConfig, [*base, "--gradient_checkpointing", "true"])
        _, t_no, _ = parse_recipe(SFTConfig, [*base, "--no-gradient-checkpointing"])
        old = tmp_path / "old.yaml"
        old.write_text("model_name_or_path: m\nuse_cpu: true\nbf16: false\n")
        _, t_default, _ = parse_recipe(SFTConfig, ["--config", str(old)])
        old.write_text("model_name_or_path: m\nuse_cpu: true\ngradient_checkpointing: false\n")
        _, t_recipe_old, _ = parse_recipe(SFTConfig, ["--config", str(old)])
    assert (t.learning_rate, t.max_steps, m.model_name_or_path) == (0.25, 3, "m")
    assert s.image_size == 112  # from the shipped tiny recipe
    assert (t.activation_checkpointing, t.gradient_checkpointing) == (False, False)
    assert (t_old.activation_checkpointing, t_old.gradient_checkpointing) == (True, True)
    assert t_no.activation_checkpointing is False
    assert t_default.gradient_checkpointing is True  # TRL's default kept
    assert t_recipe_old.activation_checkpointing is False
    renamed = [w for w in caught if "checkpointing` is deprecated" in str(w.message)]
    assert renamed == []
    old.write_text("gradient_checkpointing: false\nactivation_checkpointing: true\n")
    with pytest.raises(RecipeError, match="disagree"):
        parse_recipe(SFTConfig, ["--config", str(old)])


def test_deepspeed_key_takes_a_shipped_name():
    from omniad_train.config import _deepspeed_override

    (path,) = _deepspeed_override("deepspeed/zero3")[1:]
    assert Path(path).is_file() and Path(path).name == "zero3.json"
    assert _deepspeed_override(path) == []  # an existing file is used as given
    with pytest.raises(RecipeError, match="deepspeed/zero2"):
        _deepspeed_override("deepspeed/zero9")


def test_help_all_lists_trl_keys_and_the_common_keys_exist():
    pytest.importorskip("trl")
    from trl import GRPOConfig, ModelConfig, SFTConfig

    from omniad_train.recipe_types import field_hints

    for kind, cls, extra in (
        ("sft", SFTConfig, cli.COMMON_SFT_KEYS),
        ("grpo", GRPOConfig, cli.COMMON_GRPO_KEYS),
    ):
        hints = field_hints((cls, ModelConfig))
        missing = [k for k in {**cli.COMMON_KEYS, **extra} if k not in hints]
        assert missing == [], f"{kind}: not fields of the installed TRL: {missing}"
        text = cli._help_all(kind)
        assert "--lr_scheduler_type" in text and "--lora_r" in text and "``" not in text


# --------------------------------------------------------------------------- noise
def test_known_noise_is_filtered_by_exact_message_and_nothing_else():
    quiet_known_noise()
    quiet_known_noise()  # idempotent
    for noise in KNOWN_NOISE:
        if noise.source == "log":
            logger = logging.getLogger(noise.where)
            assert len([f for f in logger.filters if type(f).__name__ == "_MessageFilter"]) == 1

            def rec(msg: str, logger=logger) -> logging.LogRecord:
                return logger.makeRecord(logger.name, logging.WARNING, "", 0, msg, None, None)

            assert not logger.filter(rec(noise.example))
            assert logger.filter(rec(noise.example + " and something that matters"))
            assert logger.filter(rec("Setting accelerator to CUDA"))
            other = logging.getLogger("omniad_train.test")
            assert other.filter(rec(noise.example))  # only on its own logger
        else:
            category = getattr(__builtins__, noise.where, None) or FutureWarning
            with warnings.catch_warnings(record=True) as caught:
                quiet_known_noise()
                warnings.warn(noise.example, category, stacklevel=1)
                warnings.warn(noise.example, UserWarning, stacklevel=1)  # another category
                warnings.warn("prefix " + noise.example, category, stacklevel=1)
                warnings.warn(noise.example + " more", category, stacklevel=1)
                warnings.warn("`learning_rate` is deprecated", category, stacklevel=1)
            assert [str(w.message) for w in caught] == [
                noise.example,
                "prefix " + noise.example,
                noise.example + " more",
                "`learning_rate` is deprecated",
            ]
    docs = (ROOT / "docs" / "training.md").read_text()
    for noise in KNOWN_NOISE:
        assert noise.example.split(".")[0] in docs, "docs/training.md must list the noise"


# --------------------------------------------------------------------------- eval
EVAL_COMMANDS = ("mmad", "detection", "merge")


def _eval_parsers():
    from omniad_train.evaluation.cli import (
        build_detection_parser,
        build_merge_parser,
        build_mmad_parser,
    )

    return {
        "mmad": build_mmad_parser(),
        "detection": build_detection_parser(),
        "merge": build_merge_parser(),
    }


def test_eval_and_its_commands_help_under_their_real_names_without_loading_libraries():
    """``omniad-train eval --help`` printed ``usage: python -m omniad_train.evaluation``
    and its commands ``usage: run_mmad`` / ``run_detection`` / ``merge``."""
    out, probe = _help("eval", "--help")
    assert probe["code"] == 0 and probe["heavy"] == []
    assert out.startswith("usage: omniad-train eval {mmad,detection,merge}")
    assert "python -m" not in out
    for command in EVAL_COMMANDS:
        out, probe = _help("eval", command, "--help")
        assert probe["code"] in (0, None)
        assert out.startswith(f"usage: omniad-train eval {command} "), out[:200]
        assert probe["heavy"] == [], f"eval {command} --help loaded {probe['heavy']}"
        assert "``" not in out


@pytest.mark.parametrize(
    ("argv", "usage"),
    [
        (
            ["-m", "omniad_train.evaluation", "detection", "--help"],
            "usage: python -m omniad_train.evaluation detection ",
        ),
        ([str(ROOT / "benchmarks" / "run_mmad.py"), "--help"], "usage: run_mmad.py "),
    ],
)
def test_eval_usage_names_the_command_as_it_was_called(argv, usage):
    run = subprocess.run(
        [sys.executable, *argv], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(usage), run.stdout[:200]


@pytest.mark.parametrize("command", EVAL_COMMANDS)
def test_every_eval_option_has_help_and_is_listed_once(command):
    """``--shots`` and ``--batch_size`` had no help; each option was registered as
    ``--flag_name`` and ``--flag-name``, so the help listed most of them twice."""
    parser = _eval_parsers()[command]
    for action in parser._actions:
        assert action.help and action.help.strip(), f"{command}: {action.dest} has no help"
        long = [o for o in action.option_strings if o.startswith("--")]
        assert len(long) == 1, f"{command}: {long} registered more than once"
    text = parser.format_help()
    assert "``" not in text
    for opt in parser._option_string_actions:
        if opt.startswith("--") and "_" in opt:
            assert "--" + opt[2:].replace("_", "-") not in text, opt


def test_eval_options_parse_in_both_spellings():
    mmad = _eval_parsers()["mmad"]
    base = ["--mmad_json", "m.json", "--model", "ckpt"]
    underscored = mmad.parse_args(
        [
            *base,
            "--batch_size",
            "2",
            "--limit_per_category",
            "3",
            "--max_new_tokens",
            "9",
            "--no_progress",
        ]
    )
    dashed = mmad.parse_args(
        [
            *base,
            "--batch-size",
            "2",
            "--limit-per-category=3",
            "--max-new-tokens",
            "9",
            "--no-progress",
        ]
    )
    assert vars(underscored) == vars(dashed)
    assert (dashed.batch_size, dashed.limit_per_category, dashed.no_progress) == (2, 3, True)
    merge = _eval_parsers()["merge"]
    assert merge.parse_args(["--out", "r", "--allow-partial"]).allow_partial
    for command, parser in _eval_parsers().items():
        known = parser._option_string_actions
        for opt, action in list(known.items()):
            if opt.startswith("--") and "_" in opt:
                (dashed_opt,) = cli.normalize_flags(["--" + opt[2:].replace("_", "-")], known)
                assert known[dashed_opt] is action, (command, opt)


@pytest.mark.parametrize("command", ["mmad", "detection"])
def test_eval_without_a_model_points_at_the_embedded_one(command, capsys):
    """It said only "--model or --endpoint URL --served_model NAME is required"."""
    from omniad_core.inspector import demo_model_path
    from omniad_train.evaluation.cli import main as eval_main

    needed = {"mmad": ["--mmad_json", "m.json"], "detection": ["--root", "data"]}[command]
    with pytest.raises(SystemExit) as info:
        eval_main([command, *needed])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"omniad-train eval {command}: error: no model: pass --model CHECKPOINT or " in err
    assert "--endpoint URL --served_model NAME" in err
    demo = demo_model_path()
    if demo is not None:
        assert f"the embedded demo model is at {demo}: --model {demo}" in err


def test_an_unknown_eval_command_is_one_error_line_with_a_hint(capsys):
    from omniad_train.evaluation.cli import main as eval_main

    assert eval_main(["detecton"]) == 2
    err = capsys.readouterr().err
    assert "omniad-train eval: error: unknown command 'detecton' (did you mean 'detection'?)" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["-m", "omniad_core", "--help"],
        ["-m", "omniad_train", "--help"],
        ["-m", "omniad_train", "sft", "--help"],
        ["-m", "omniad_train", "eval", "mmad", "--help"],
    ],
)
def test_a_reader_that_goes_away_gets_no_traceback(argv):
    """``omniad-train sft --help | head``: the pipe closes before the help is written."""
    proc = subprocess.Popen(
        [sys.executable, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    proc.stdout.close()  # the reader is gone before the program writes a byte
    err = proc.stderr.read()
    proc.wait(timeout=120)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert proc.returncode in (0, 141), (proc.returncode, err)
