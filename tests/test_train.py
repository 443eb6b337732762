"""SFT and GRPO through TRL on the tiny offline Qwen2.5-VL, end to end on CPU.

Data come from ``omniad_train.data.prepare`` over a synthetic MVTec-style tree written
here; the model is the tiny Qwen2.5-VL of ``omniad_train.tiny``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

from PIL import Image  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from trl import GRPOConfig, SFTConfig  # noqa: E402

import textmask  # noqa: E402
from omniad_core import Inspector  # noqa: E402
from omniad_core.rewards import make_rewards  # noqa: E402
from omniad_train import grpo, sft  # noqa: E402
from omniad_train.config import RecipeError, parse_recipe  # noqa: E402
from omniad_train.data.prepare import prepare  # noqa: E402
from omniad_train.modeling import freeze_vision_tower  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RECIPES = ROOT / "omniad_train" / "recipes"
pytestmark = pytest.mark.slow

CPU = [
    "--use_cpu",
    "true",
    "--bf16",
    "false",
    "--gradient_checkpointing",
    "false",
    "--report_to",
    "none",
    "--logging_steps",
    "1",
    "--dataloader_num_workers",
    "0",
]


def _mvtec_tree(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for cat in ("bottle", "tile"):
        for k in range(3):
            p = root / cat / "train" / "good" / f"{k:03d}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray((rng.random((64, 64, 3)) * 255).astype(np.uint8)).save(p)
        for defect in ("good", "scratch"):
            for k in range(3):
                p = root / cat / "test" / defect / f"{k:03d}.png"
                p.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray((rng.random((64, 64, 3)) * 255).astype(np.uint8)).save(p)
                if defect != "good":
                    m = np.zeros((64, 64), np.uint8)
                    y, x = rng.integers(0, 48, 2)
                    m[y : y + 12, x : x + 5] = 255
                    mp = root / cat / "ground_truth" / defect / f"{k:03d}_mask.png"
                    mp.parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(m).save(mp)
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("data")
    out = base / "prepared"
    prepare(out, mvtec_root=_mvtec_tree(base / "mvtec"), image_size=56, grid=24, seed=0)
    return out


def _args(data: Path, model: Path, out: Path, *extra: str) -> list[str]:
    """Recipe arguments every training test shares, then ``extra``."""
    return [
        "--model_name_or_path",
        str(model),
        "--dataset_path",
        str(data),
        "--image_size",
        "56",
        "--output_dir",
        str(out),
        *CPU,
        *extra,
    ]


def _sft_args(data: Path, model: Path, out: Path, *extra: str) -> list[str]:
    sft_only = ["--per_device_train_batch_size", "2", "--learning_rate", "5e-3"]
    return _args(data, model, out, *sft_only, "--max_length", "1024", *extra)


def test_sft_trains_saves_and_loads_in_the_inspector(data, model, tmp_path):
    out = tmp_path / "sft"
    before = load_file(str(model / "model.safetensors"))
    trainer = sft.main(*parse_recipe(SFTConfig, _sft_args(data, model, out, "--max_steps", "4")))
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 4 and all(np.isfinite(losses))
    after = load_file(str(out / "model.safetensors"))
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert len(changed) > len(before) // 2  # full fine-tuning touched most tensors
    spec = json.loads((out / "omniad.json").read_text())
    assert textmask.Grid.from_dict(spec["textmask"]) == textmask.Grid(24, 24)
    assert not list(out.glob("*.bin")) or {p.name for p in out.glob("*.bin")} == {
        "training_args.bin"
    }
    insp = Inspector.from_pretrained(out, max_new_tokens=8)
    assert insp.image_size == 56
    result = insp.analyze(np.zeros((40, 50, 3), np.uint8))
    assert result.mask.shape == (40, 50)


def test_a_tiny_sft_run_prints_no_known_noise_but_its_own_warnings(data, model, tmp_path, capsys):
    """Issue 15, item 8: every run printed transformers' PaddleOCRVLProcessor deprecation,
    DeepSpeed's accelerator line and the gradient_checkpointing FutureWarning.  They are
    gone; a warning of our own (the plan's, for a max_length that cuts targets) is not."""
    from omniad_core._quiet import KNOWN_NOISE
    from omniad_train.planner.cli import plan_main

    plan_args = ["--config", "tiny_cpu/sft", "--model_name_or_path", str(model)]
    plan_args += ["--dataset", str(data), "--image_size", "56", "--json"]
    assert plan_main(plan_args) == 0
    longest_prompt = json.loads(capsys.readouterr().out)["prompt_tokens"]["max"]
    cut = str(longest_prompt + 1)  # keeps every prompt whole, cuts every target: a warning
    args = _sft_args(data, model, tmp_path / "sft", "--max_steps", "1", "--max-length", cut)
    run = subprocess.run(
        [sys.executable, "-m", "omniad_train", "sft", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=600,
    )
    printed = run.stdout + run.stderr
    assert run.returncode == 0, run.stderr[-3000:]
    assert (tmp_path / "sft" / "model.safetensors").is_file()
    for noise in KNOWN_NOISE:
        assert noise.example not in printed, noise.example
    assert "is deprecated and will be removed in v6" not in printed
    assert f"omniad-train sft: warning: max_length {cut} cuts" in run.stderr


def test_freeze_vision_tower_trains_only_the_merger_of_the_tower(data, model, tmp_path):
    out = tmp_path / "frozen"
    before = load_file(str(model / "model.safetensors"))
    args = _sft_args(data, model, out, "--max_steps", "2", "--freeze_vision_tower", "true")
    sft.main(*parse_recipe(SFTConfig, args))
    after = load_file(str(out / "model.safetensors"))
    tower = [k for k in before if ".visual." in f".{k}"]
    fixed = [k for k in tower if ".merger." not in k]
    assert fixed and all(torch.equal(before[k], after[k]) for k in fixed)
    assert any(not torch.equal(before[k], after[k]) for k in tower if ".merger." in k)
    text = [k for k in before if k not in tower]
    assert any(not torch.equal(before[k], after[k]) for k in text)


def test_freeze_vision_tower_names_a_model_without_a_tower():
    with pytest.raises(ValueError, match="no `visual` tower"):
        freeze_vision_tower(torch.nn.Linear(2, 2))


def test_sft_with_lora_saves_adapter_and_merged_model(data, model, tmp_path):
    out = tmp_path / "lora"
    extra = [
        "--max_steps",
        "2",
        "--use_peft",
        "true",
        "--lora_r",
        "4",
        "--lora_alpha",
        "8",
        "--lora_target_modules",
        "q_proj",
        "v_proj",
    ]
    trainer = sft.main(*parse_recipe(SFTConfig, _sft_args(data, model, out, *extra)))
    assert trainer.state.global_step == 2
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    merged = load_file(str(out / "model.safetensors"))
    base = load_file(str(model / "model.safetensors"))
    assert not any("lora" in k for k in merged)  # merged: plain weights, loadable anywhere
    changed = [k for k in base if k in merged and not torch.equal(base[k], merged[k])]
    assert changed and all("q_proj" in k or "v_proj" in k for k in changed)
    Inspector.from_pretrained(out, max_new_tokens=4).analyze(np.zeros((30, 30, 3), np.uint8))


def test_sft_resumes_from_its_last_checkpoint(data, model, tmp_path):
    out = tmp_path / "sft"
    first = sft.main(
        *parse_recipe(
            SFTConfig, _sft_args(data, model, out, "--max_steps", "2", "--save_steps", "2")
        )
    )
    assert first.state.global_step == 2 and (out / "checkpoint-2" / "omniad.json").is_file()
    Inspector.from_pretrained(out / "checkpoint-2", max_new_tokens=4)  # checkpoints load too
    again = sft.main(
        *parse_recipe(
            SFTConfig,
            _sft_args(
                data,
                model,
                out,
                "--max_steps",
                "4",
                "--save_steps",
                "2",
                "--resume_from_checkpoint",
                "true",
            ),
        )
    )
    steps = [h["step"] for h in again.state.log_history if "loss" in h]
    assert again.state.global_step == 4 and steps[-2:] == [3, 4]
    assert 1 not in steps[-2:]  # training went on from step 2, not from scratch


def test_grpo_calls_every_reward_with_its_columns_and_logs_them(data, model, tmp_path):
    seen: dict[str, set[str]] = {}

    def recording(reward):
        def call(completions, **kwargs):
            seen.setdefault(reward.__name__, set()).update(kwargs)
            values = reward(completions, **kwargs)
            assert len(values) == len(completions)
            return values

        call.__name__ = reward.__name__
        return call

    funcs = [recording(r) for r in make_rewards(alpha=2.0, grid=24)]
    args = _args(
        data,
        model,
        tmp_path / "grpo",
        "--max_steps",
        "2",
        "--num_generations",
        "2",
        "--per_device_train_batch_size",
        "4",
        "--max_completion_length",
        "16",
    )
    trainer = grpo.main(*parse_recipe(GRPOConfig, args), reward_funcs=funcs)
    assert set(seen) == {"format_reward", "detection_reward", "answer_reward"}
    for cols in seen.values():
        assert {"prompts", "completion_ids", "mask", "answer", "options"} <= cols
    logged = {k for h in trainer.state.log_history for k in h}
    for name in seen:
        assert f"rewards/{name}/mean" in logged
    assert (tmp_path / "grpo" / "omniad.json").is_file()


# the paper recipes assume 4 GPUs; here one process stands in for them
ONE_PROCESS = {"qwen2_5_vl_7b": ["--per_device_train_batch_size", "16"], "tiny_cpu": []}


def test_shipped_recipes_parse(tmp_path):
    for kind, cls in (("sft", SFTConfig), ("grpo", GRPOConfig)):
        for recipe in ("qwen2_5_vl_7b", "tiny_cpu"):
            s, t, m = parse_recipe(
                cls,
                [
                    "--config",
                    str(RECIPES / recipe / f"{kind}.yaml"),
                    "--use_cpu",
                    "true",
                    "--bf16",
                    "false",
                    *ONE_PROCESS[recipe],
                ],
            )
            assert s.grid == 24 and m.model_name_or_path
    s, t, m = parse_recipe(
        GRPOConfig,
        [
            "--config",
            str(RECIPES / "qwen2_5_vl_7b" / "grpo.yaml"),
            "--use_cpu",
            "true",
            "--bf16",
            "false",
            *ONE_PROCESS["qwen2_5_vl_7b"],
        ],
    )
    assert (t.learning_rate, t.weight_decay, t.num_generations, s.alpha) == (1e-6, 0.1, 16, 2.0)
    s, t, m = parse_recipe(
        SFTConfig,
        [
            "--config",
            str(RECIPES / "qwen2_5_vl_7b" / "sft.yaml"),
            "--use_cpu",
            "true",
            "--bf16",
            "false",
        ],
    )
    assert (t.learning_rate, t.weight_decay) == (1e-4, 0.03)


def test_bad_recipes_fail_before_any_model_loads(data, tmp_path):
    missing_model = str(tmp_path / "no-such-model")  # loading it would fail differently
    bad = tmp_path / "bad.yaml"
    bad.write_text("learning_rat: 1.0e-4\n")
    with pytest.raises(RecipeError, match="did you mean 'learning_rate'"):
        parse_recipe(SFTConfig, ["--config", str(bad)])
    with pytest.raises(RecipeError, match="divisible by num_generations"):
        parse_recipe(
            GRPOConfig, ["--num_generations", "3", "--per_device_train_batch_size", "4", *CPU]
        )
    base = [
        "--model_name_or_path",
        missing_model,
        "--dataset_path",
        str(data),
        "--output_dir",
        str(tmp_path / "o"),
        *CPU,
    ]
    with pytest.raises(RecipeError, match="grid"):
        sft.main(*parse_recipe(SFTConfig, [*base, "--grid", "16", "--image_size", "56"]))
    with pytest.raises(RecipeError, match="image_size"):
        sft.main(*parse_recipe(SFTConfig, [*base, "--image_size", "512"]))
    with pytest.raises(RecipeError, match="manifest"):
        sft.main(*parse_recipe(SFTConfig, [*base[:2], "--dataset_path", str(tmp_path), *base[4:]]))
    with pytest.raises(RecipeError, match="reward_weights"):
        grpo.main(
            *parse_recipe(
                GRPOConfig,
                [
                    *base,
                    "--image_size",
                    "56",
                    "--reward_weights",
                    "1",
                    "1",
                    "--num_generations",
                    "2",
                    "--per_device_train_batch_size",
                    "2",
                ],
            )
        )


def test_missing_reward_column_is_named(data, tmp_path):
    from datasets import load_from_disk

    broken = tmp_path / "broken"
    for f in ("manifest.json",):
        (broken).mkdir(exist_ok=True)
        (broken / f).write_text((data / f).read_text())
    ds = load_from_disk(str(data / "grpo"))
    ds.remove_columns(["mask"]).save_to_disk(str(broken / "grpo"))
    args = _args(
        broken,
        tmp_path / "none",
        tmp_path / "o",
        "--num_generations",
        "2",
        "--per_device_train_batch_size",
        "2",
    )
    with pytest.raises(RecipeError, match=r"\['mask'\]"):
        grpo.main(*parse_recipe(GRPOConfig, args))


def test_torchrun_deepspeed_zero2_completes_a_step(data, model, tmp_path):
    pytest.importorskip("deepspeed")
    out = tmp_path / "ds"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29531",
        "-m",
        "omniad_train",
        "sft",
        *_sft_args(data, model, out, "--max_steps", "1", "--save_strategy", "no"),
        "--deepspeed",
        str(RECIPES / "deepspeed" / "zero2.json"),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
    assert (out / "model.safetensors").is_file() and (out / "omniad.json").is_file()
    assert "train_loss" in run.stdout + run.stderr


_NO_DEEPSPEED = (
    "import sys\n"
    "sys.modules['deepspeed'] = None  # the train extra without the deepspeed extra\n"
    "from omniad_train.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def _without_deepspeed(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``omniad-train ARGV`` in a process that cannot import DeepSpeed."""
    return subprocess.run(
        [sys.executable, "-c", _NO_DEEPSPEED, *argv],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        cwd=cwd,
    )


def test_sft_runs_without_deepspeed_installed(data, model, tmp_path):
    """The ``train`` extra does not bring DeepSpeed (it builds against torch); one GPU or a
    CPU trains without it."""
    out = tmp_path / "plain"
    argv = ["sft", *_sft_args(data, model, out, "--max_steps", "1", "--save_strategy", "no")]
    run = _without_deepspeed(argv, tmp_path)
    assert run.returncode == 0, run.stderr[-4000:]
    assert (out / "model.safetensors").is_file() and (out / "omniad.json").is_file()


def test_a_deepspeed_recipe_without_deepspeed_names_the_install(data, model, tmp_path):
    out = tmp_path / "ds-missing"
    argv = ["sft", *_sft_args(data, model, out, "--max_steps", "1")]
    argv += ["--deepspeed", str(RECIPES / "deepspeed" / "zero2.json")]
    run = _without_deepspeed(argv, tmp_path)
    lines = [ln for ln in run.stderr.splitlines() if ln.strip()]
    assert run.returncode != 0
    assert "deepspeed" in lines[-1].lower() and "pip install" in lines[-1], run.stderr[-3000:]
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    assert not (out / "model.safetensors").exists()
    from omniad_train.config import DEEPSPEED_INSTALL

    assert DEEPSPEED_INSTALL in lines[-1]
    assert DEEPSPEED_INSTALL.replace("pip", "python -m pip") in (ROOT / "README.md").read_text()
