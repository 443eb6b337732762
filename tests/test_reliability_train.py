"""Issue 10, training side: resume past a checkpoint killed while saving, checkpoints that
record the dataset's prompt, recipe values checked before any model loads, recipes read
safely, and one-line CLI errors.

Real TRL trainers on the tiny offline Qwen2.5-VL (``omniad_train.tiny``), data from
``omniad_train.data.prepare`` with a custom system prompt.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("torch")
pytest.importorskip("trl")

from test_train import _args, _mvtec_tree
from trl import GRPOConfig, SFTConfig

import textmask
from omniad_core import Inspector
from omniad_train import cli, grpo, sft
from omniad_train.config import RecipeError, parse_recipe, read_recipe
from omniad_train.data.prepare import prepare
from omniad_train.modeling import checkpoint_problems, last_checkpoint

ROOT = Path(__file__).resolve().parent.parent
PROMPT = "You inspect parts. Reply as <seg>cells</seg><think>why</think><answer>letter</answer>."


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("data")
    out = base / "prepared"
    prepare(
        out,
        mvtec_root=_mvtec_tree(base / "mvtec"),
        image_size=56,
        grid=24,
        seed=0,
        system_prompt=PROMPT,
        verbose=False,
    )
    return out


def _sft(data: Path, model: Path, out: Path, *extra: str) -> list[str]:
    return _args(
        data,
        model,
        out,
        "--per_device_train_batch_size",
        "2",
        "--learning_rate",
        "5e-3",
        "--max_length",
        "1024",
        "--save_steps",
        "1",
        *extra,
    )


@pytest.fixture(scope="module")
def run(data, model, tmp_path_factory) -> Path:
    """A 2-step SFT run saving checkpoint-1 and checkpoint-2 (copy before changing it)."""
    out = tmp_path_factory.mktemp("run") / "sft"
    sft.main(*parse_recipe(SFTConfig, _sft(data, model, out, "--max_steps", "2")))
    return out


def _copy(run: Path, tmp_path: Path) -> Path:
    out = tmp_path / "sft"
    shutil.copytree(run, out)
    return out


def _kill_while_saving(ckpt: Path) -> None:
    """What a SIGKILL during transformers' in-place save left: only config.json."""
    for p in ckpt.iterdir():
        if p.name != "config.json":
            p.unlink()


# --------------------------------------------------------------------------- item 4
def test_a_complete_checkpoint_has_no_problems_and_truncation_is_seen(run, tmp_path):
    out = _copy(run, tmp_path)
    ckpt = out / "checkpoint-2"
    assert checkpoint_problems(ckpt) == []
    assert {
        "model.safetensors",
        "optimizer.pt",
        "scheduler.pt",
        "rng_state.pth",
        "trainer_state.json",
    } <= {p.name for p in ckpt.iterdir()}
    weights = ckpt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    assert checkpoint_problems(ckpt) == ["model.safetensors is truncated"]
    opt = out / "checkpoint-1" / "optimizer.pt"
    opt.write_bytes(opt.read_bytes()[: opt.stat().st_size // 2])
    assert checkpoint_problems(out / "checkpoint-1") == ["optimizer.pt missing or truncated"]
    assert last_checkpoint(out) is None
    assert last_checkpoint(out, complete=False) == str(ckpt)
    (out / "checkpoint-1" / "trainer_state.json").write_text("{")
    assert "trainer_state.json missing or unreadable" in checkpoint_problems(out / "checkpoint-1")


def test_resume_true_skips_a_checkpoint_killed_while_saving(run, data, model, tmp_path, caplog):
    out = _copy(run, tmp_path)
    _kill_while_saving(out / "checkpoint-2")
    state = out / "checkpoint-1" / "trainer_state.json"  # mark the state resumed from
    saved = json.loads(state.read_text())
    saved["log_history"][0]["marker"] = "from checkpoint-1"
    state.write_text(json.dumps(saved))
    args = _sft(data, model, out, "--max_steps", "3", "--resume_from_checkpoint", "true")
    with caplog.at_level(logging.WARNING, logger="omniad_train.modeling"):
        trainer = sft.main(*parse_recipe(SFTConfig, args))
    assert "checkpoint-2" in caplog.text and "incomplete-checkpoint-2" in caplog.text
    assert "resuming from" in caplog.text and "checkpoint-1" in caplog.text
    history = [h for h in trainer.state.log_history if "loss" in h]
    assert history[0].get("marker") == "from checkpoint-1"  # the state of checkpoint-1 ...
    assert [h["step"] for h in history] == [1, 2, 3]  # ... then steps 2 and 3 trained
    assert trainer.state.global_step == 3
    assert (out / "incomplete-checkpoint-2" / "config.json").is_file()  # kept, renamed
    assert checkpoint_problems(out / "checkpoint-2") == []  # saved again, whole
    assert checkpoint_problems(out / "checkpoint-3") == []


def test_resume_true_with_no_complete_checkpoint_starts_fresh(data, model, tmp_path, caplog):
    out = tmp_path / "sft"
    (out / "checkpoint-5").mkdir(parents=True)
    (out / "checkpoint-5" / "config.json").write_text("{}")
    args = _sft(data, model, out, "--max_steps", "1", "--resume_from_checkpoint", "true")
    with caplog.at_level(logging.WARNING, logger="omniad_train.modeling"):
        trainer = sft.main(*parse_recipe(SFTConfig, args))
    assert "no complete checkpoint" in caplog.text and "checkpoint-5" in caplog.text
    assert trainer.state.global_step == 1
    assert [h["step"] for h in trainer.state.log_history if "loss" in h] == [1]


def test_resume_from_an_incomplete_checkpoint_path_is_a_clear_error(run, data, tmp_path):
    out = _copy(run, tmp_path)
    _kill_while_saving(out / "checkpoint-2")
    missing_model = tmp_path / "no-such-model"  # loading it would fail differently
    args = _sft(
        data,
        missing_model,
        out,
        "--max_steps",
        "3",
        "--resume_from_checkpoint",
        str(out / "checkpoint-2"),
    )
    with pytest.raises(
        RecipeError, match=r"checkpoint-2 is not a complete checkpoint \(no weights"
    ):
        sft.main(*parse_recipe(SFTConfig, args))
    args[-1] = str(out / "checkpoint-9")
    with pytest.raises(RecipeError, match="no checkpoint folder at"):
        sft.main(*parse_recipe(SFTConfig, args))


# --------------------------------------------------------------------------- item 8
def test_checkpoints_record_the_datasets_system_prompt(run):
    for folder in (run / "checkpoint-1", run / "checkpoint-2", run):
        spec = json.loads((folder / "omniad.json").read_text())
        assert spec["system_prompt"] == PROMPT
        assert spec["image_size"] == 56
        assert spec["shots"] == 0
        assert textmask.Grid.from_dict(spec["textmask"]) == textmask.Grid(24, 24)
    assert Inspector.from_pretrained(run / "checkpoint-1", max_new_tokens=4).system_prompt == PROMPT


def test_grpo_checkpoints_record_the_datasets_system_prompt(data, run, tmp_path):
    out = tmp_path / "grpo"
    args = _args(
        data,
        run,
        out,
        "--max_steps",
        "1",
        "--num_generations",
        "2",
        "--save_steps",
        "1",
        "--per_device_train_batch_size",
        "2",
        "--max_completion_length",
        "8",
    )
    grpo.main(*parse_recipe(GRPOConfig, args))
    for folder in (out / "checkpoint-1", out):
        assert json.loads((folder / "omniad.json").read_text())["system_prompt"] == PROMPT


def test_data_prepared_without_a_system_prompt_records_none(model, tmp_path):
    prepared = tmp_path / "plain"
    prepare(
        prepared,
        mvtec_root=_mvtec_tree(tmp_path / "mvtec"),
        image_size=56,
        grid=24,
        system_prompt=None,
        max_records=4,
        verbose=False,
    )
    out = tmp_path / "sft"
    sft.main(*parse_recipe(SFTConfig, _sft(prepared, model, out, "--max_steps", "1")))
    for folder in (out / "checkpoint-1", out):
        assert json.loads((folder / "omniad.json").read_text())["system_prompt"] is None


def test_a_recipe_contradicting_the_manifest_is_refused_before_loading(data, tmp_path):
    missing = tmp_path / "no-such-model"
    base = _args(data, missing, tmp_path / "o")
    with pytest.raises(RecipeError, match="prepared on a 24x24 grid but the recipe says grid: 8"):
        sft.main(*parse_recipe(SFTConfig, [*base, "--grid", "8"]))
    bad = tmp_path / "bad-manifest"
    shutil.copytree(data, bad)
    manifest = json.loads((bad / "manifest.json").read_text())
    manifest["system_prompt"] = 5
    (bad / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(RecipeError, match=r"manifest.json: system_prompt must be a string or null"):
        sft.main(*parse_recipe(SFTConfig, _args(bad, missing, tmp_path / "o")))
    (bad / "manifest.json").write_text("{not json")
    with pytest.raises(RecipeError, match=r"manifest\.json cannot be read"):
        sft.main(*parse_recipe(SFTConfig, _args(bad, missing, tmp_path / "o")))


# --------------------------------------------------------------------------- item 10
GRPO_BASE = "num_generations: 2\nper_device_train_batch_size: 2\n"

BAD_VALUES = [
    ("grpo", "reward_weights", "[1, .nan, 1]", "[1, nan, 1]"),
    ("grpo", "reward_weights", "[0, 0, 0]", "[0, 0, 0]"),
    ("grpo", "reward_weights", "'1 1 1'", "'1 1 1'"),
    ("grpo", "alpha", ".nan", "nan"),
    ("grpo", "num_generations", "0", "0"),
    ("grpo", "num_generations", "1", "1"),
    ("grpo", "temperature", "0", "0"),
    ("grpo", "beta", "-0.1", "-0.1"),
    ("grpo", "max_completion_length", "0", "0"),
    ("grpo", "top_p", "1.5", "1.5"),
    ("grpo", "steps_per_generation", "0", "0"),
    ("sft", "weight_decay", "[1, 2]", "[1, 2]"),
    ("sft", "learning_rate", "-0.5", "-0.5"),
    ("sft", "learning_rate", ".inf", "inf"),
    ("sft", "learning_rate", "abc", "'abc'"),
    ("sft", "learning_rate", "true", "True"),
    ("sft", "num_train_epochs", ".nan", "nan"),
    ("sft", "max_steps", "2.5", "2.5"),
    ("sft", "max_steps", "-3", "-3"),
    ("sft", "per_device_train_batch_size", "0", "0"),
    ("sft", "gradient_accumulation_steps", "0", "0"),
    ("sft", "warmup_steps", "-1", "-1"),
    ("sft", "warmup_steps", "[1]", "[1]"),
    ("sft", "max_length", "0", "0"),
    ("sft", "seed", "-1", "-1"),
    ("sft", "save_steps", "0", "0"),
    ("sft", "max_grad_norm", ".nan", "nan"),
    ("sft", "dtype", "float64", "'float64'"),
    ("sft", "attn_implementation", "flash_attention_9", "'flash_attention_9'"),
    ("sft", "trust_remote_code", "maybe", "'maybe'"),
    ("sft", "trust_remote_code", "1", "1"),
    ("sft", "lora_r", "0", "0"),
    ("sft", "lora_dropout", "1.5", "1.5"),
    ("sft", "grid", "0", "0"),
    ("sft", "grid", "abc", "'abc'"),
    ("sft", "image_size", "10", "10"),
    ("sft", "reward_level", "voxel", "'voxel'"),
    ("sft", "max_train_samples", "0", "0"),
    ("sft", "answer_correct", ".nan", "nan"),
    ("sft", "dataset_train_split", "''", "''"),
    ("sft", "output_dir", "5", "5"),
    ("sft", "logging_strategy", "7", "7"),
]


@pytest.mark.parametrize(("kind", "key", "text", "shown"), BAD_VALUES)
def test_a_bad_recipe_value_is_named_before_any_model_loads(data, tmp_path, kind, key, text, shown):
    recipe = tmp_path / f"{kind}.yaml"
    missing = tmp_path / "no-such-model"  # loading it would fail differently
    lines = {
        "model_name_or_path": str(missing),
        "dataset_path": str(data),
        "image_size": "56",
        "output_dir": str(tmp_path / "o"),
        "use_cpu": "true",
        "bf16": "false",
    }
    if kind == "grpo":
        lines.update(num_generations="2", per_device_train_batch_size="2")
    lines[key] = text
    recipe.write_text("".join(f"{k}: {v}\n" for k, v in lines.items()))
    cls, main = (GRPOConfig, grpo.main) if kind == "grpo" else (SFTConfig, sft.main)
    with pytest.raises(RecipeError) as err:
        main(*parse_recipe(cls, ["--config", str(recipe)]))
    msg = str(err.value)
    assert f"{key} = {shown} in recipe {recipe}" in msg and "expected" in msg
    assert "\n" not in msg


@pytest.mark.parametrize(
    ("option", "value", "shown"),
    [
        ("--learning_rate", "nan", "nan"),
        ("--num_generations", "0", "0"),
        ("--alpha=-inf", None, "-inf"),
        ("--temperature", "-1", "-1.0"),
    ],
)
def test_a_bad_command_line_value_is_named(data, tmp_path, option, value, shown):
    given = [option] if value is None else [option, value]  # --key=-inf: argparse needs "="
    args = _args(
        data,
        tmp_path / "none",
        tmp_path / "o",
        "--num_generations",
        "2",
        "--per_device_train_batch_size",
        "2",
        *given,
    )
    key = option[2:].split("=")[0]
    with pytest.raises(RecipeError, match=f"{key} = {shown} on the command line"):
        parse_recipe(GRPOConfig, args)


def test_values_set_in_code_are_checked_by_main(data, tmp_path):
    s, t, m = parse_recipe(SFTConfig, _args(data, tmp_path / "none", tmp_path / "o"))
    t.learning_rate = math.nan
    with pytest.raises(RecipeError, match="learning_rate = nan in the arguments"):
        sft.main(s, t, m)
    s, t, m = parse_recipe(
        GRPOConfig,
        _args(
            data,
            tmp_path / "none",
            tmp_path / "o",
            "--num_generations",
            "2",
            "--per_device_train_batch_size",
            "2",
        ),
    )
    t.reward_weights = [1.0, math.nan, 1.0]
    with pytest.raises(RecipeError, match=r"reward_weights = \[1\.0, nan, 1\.0\] in the arguments"):
        grpo.main(s, t, m)
    s.answer_correct = s.answer_wrong  # GRPO would reward wrong answers as much
    t.reward_weights = None
    with pytest.raises(RecipeError, match=r"answer_correct = 0\.1 must be larger"):
        grpo.main(s, t, m)
    with pytest.raises(RecipeError, match="alpha = nan in the arguments is invalid"):
        type(s)(alpha=math.nan)


def test_shipped_recipes_and_yaml_strings_still_parse(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model_name_or_path: x\nlearning_rate: 1e-4\nuse_cpu: true\nbf16: false\n")
    _, t, _ = parse_recipe(SFTConfig, ["--config", str(recipe)])  # PyYAML reads 1e-4 as text
    assert t.learning_rate == 1e-4
    for name in ("sft", "grpo"):
        args = ["--config", str(ROOT / "omniad_train/recipes/tiny_cpu" / f"{name}.yaml")]
        parse_recipe(SFTConfig if name == "sft" else GRPOConfig, args)


@settings(max_examples=25, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True))
def test_learning_rate_is_accepted_exactly_when_finite_and_positive(lr):
    args = [
        "--model_name_or_path",
        "x",
        "--use_cpu",
        "true",
        "--bf16",
        "false",
        f"--learning_rate={lr!r}",
    ]
    if math.isfinite(lr) and lr > 0:
        assert parse_recipe(SFTConfig, args)[1].learning_rate == lr
    else:
        with pytest.raises(RecipeError, match=r"learning_rate = .* expected a finite number > 0"):
            parse_recipe(SFTConfig, args)


def _yaml_float(x: float) -> str:
    if math.isnan(x):
        return ".nan"
    if math.isinf(x):
        return ".inf" if x > 0 else "-.inf"
    return f"{x:.17e}"  # PyYAML reads a float only with a dot and a signed exponent


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=3, max_size=3))
def test_reward_weights_are_accepted_exactly_when_finite_and_not_all_zero(weights):
    ok = all(math.isfinite(w) for w in weights) and any(w != 0 for w in weights)
    with tempfile.TemporaryDirectory() as tmp:
        recipe = Path(tmp) / "grpo.yaml"
        recipe.write_text(
            "model_name_or_path: x\nuse_cpu: true\nbf16: false\nnum_generations: 2\n"
            "per_device_train_batch_size: 2\n"
            f"reward_weights: [{', '.join(map(_yaml_float, weights))}]\n"
        )
        if ok:
            assert parse_recipe(GRPOConfig, ["--config", str(recipe)])[1].reward_weights == weights
        else:
            with pytest.raises(RecipeError, match=f"reward_weights = .* in recipe {recipe}"):
                parse_recipe(GRPOConfig, ["--config", str(recipe)])


def test_numbers_yaml_reads_as_text_in_a_list_get_a_hint(tmp_path):
    recipe = tmp_path / "grpo.yaml"
    recipe.write_text("model_name_or_path: x\nreward_weights: [1e-3, 1, 1]\n")
    with pytest.raises(RecipeError, match=r"YAML reads numbers like 1e-3 as text; write 1\.0e-3"):
        parse_recipe(GRPOConfig, ["--config", str(recipe)])


# --------------------------------------------------------------------------- item 15
PYTHON_TAGS = [
    'x: !!python/object/apply:os.system ["touch {marker}"]',
    'learning_rate: !!python/object/apply:os.system ["touch {marker}"]',
    "learning_rate: !!python/name:os.system",
    '!!python/object/apply:os.system ["touch {marker}"]: 1',
    'env: !!python/object/apply:os.system ["touch {marker}"]',
]


@pytest.mark.parametrize("line", PYTHON_TAGS)
def test_a_recipe_with_a_python_tag_is_refused_and_never_runs(tmp_path, line):
    marker = tmp_path / "pwned"
    recipe = tmp_path / "evil.yaml"
    recipe.write_text("use_cpu: true\n" + line.format(marker=marker) + "\n")
    with pytest.raises(RecipeError, match=r"evil.yaml, line 2: the tag !!python/") as err:
        parse_recipe(SFTConfig, ["--config", str(recipe)])
    assert "\n" not in str(err.value) and "not allowed" in str(err.value)
    assert not marker.exists()


def test_read_recipe_refuses_what_is_not_a_plain_mapping(tmp_path):
    recipe = tmp_path / "r.yaml"
    for text, match in [
        (
            "learning_rate: 1.0\nlearning_rate: 2.0\n",
            "line 2: duplicate key .learning_rate. .first on line 1.; keep one",
        ),
        ("learning_rate: [1, 2\n", r"r.yaml, line \d: not valid YAML"),
        ("- 1\n- 2\n", "must be a YAML mapping"),
        ("1: 2\n", "keys must be argument names"),
        ("a: !!binary aGk=\nb: !custom 1\n", "line 2: the tag !custom is not allowed"),
    ]:
        recipe.write_text(text)
        with pytest.raises(RecipeError, match=match):
            read_recipe(recipe)
    bomb = "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n"
        for p, c in zip("abcdefg", "bcdefgh", strict=True)
    )
    recipe.write_text(bomb)
    with pytest.raises(RecipeError, match="more than 100,000 values"):
        read_recipe(recipe)
    recipe.write_text("a: " + "[" * 50_000 + "]" * 50_000 + "\n")
    with pytest.raises(RecipeError, match="nested too deeply"):
        read_recipe(recipe)
    assert read_recipe(ROOT / "omniad_train/recipes/qwen2_5_vl_7b/grpo.yaml")["alpha"] == 2.0


def test_cli_prints_one_line_for_a_python_tag_and_a_missing_recipe(tmp_path, capsys):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.yaml"
    evil.write_text(f'model_name_or_path: !!python/object/apply:os.system ["touch {marker}"]\n')
    for command, recipe, match in [
        ("sft", evil, "the tag !!python/object/apply:os.system is not allowed"),
        ("grpo", tmp_path / "nope.yaml", "recipe not found"),
        ("sft", tmp_path, "recipe not found"),
    ]:
        assert cli.main([command, "--config", str(recipe)]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"omniad-train {command}: error: ") and match in err
        assert err.count("\n") == 1 and "Traceback" not in err
    assert cli.main(["sft", "--model_name_or_path", "x", "--learning_rate", "-1"]) == 1
    assert "learning_rate = -1.0 on the command line" in capsys.readouterr().err
    assert not marker.exists()


def test_cli_subprocess_shows_no_traceback_for_a_python_tag(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.yaml"
    evil.write_text(f'learning_rate: !!python/object/apply:os.system ["touch {marker}"]\n')
    run = subprocess.run(
        [sys.executable, "-m", "omniad_train", "sft", "--config", str(evil)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert run.returncode == 1
    lines = [line for line in run.stderr.splitlines() if "error:" in line]
    assert lines == [
        f"omniad-train sft: error: recipe {evil}, line 1: the tag !!python/object/apply:os.system "
        "is not allowed; recipes are plain YAML (numbers, strings, lists, mappings) and nothing "
        "in them is executed: remove the tag"
    ]
    assert "Traceback" not in run.stderr and not marker.exists()
