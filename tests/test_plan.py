"""``omniad-train plan`` and the same checks at SFT/GRPO start-up (issue 12).

The model is the release-shaped tiny checkpoint (``release_ckpt``: right-padding
tokenizer, the release's unpinned pixel budget); the data come from
``omniad_train.data.prepare`` over a small synthetic MVTec-style tree.  Nothing here
loads weights except where a test says so to compare against them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("trl")

from test_train import _mvtec_tree

from omniad_train import cli, grpo, sft
from omniad_train.config import RecipeError, parse_recipe
from omniad_train.data.prepare import prepare
from omniad_train.planner import memory
from omniad_train.planner.cli import plan_main, plan_recipe

ROOT = Path(__file__).resolve().parent.parent
RECIPES = ROOT / "omniad_train" / "recipes"
SHIPPED = {  # recipe -> (paper batch, image size)
    "qwen2_5_vl_7b/sft.yaml": (16, 512),
    "qwen2_5_vl_7b/grpo.yaml": (16, 512),
    "tiny_cpu/sft.yaml": (8, 112),
    "tiny_cpu/grpo.yaml": (8, 112),
}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> dict[int, Path]:
    """Prepared datasets at the shipped recipes' image sizes (112 and 512 px)."""
    base = tmp_path_factory.mktemp("plan-data")
    tree = _mvtec_tree(base / "mvtec")
    out = {}
    for size in (112, 512):
        out[size] = base / f"prepared-{size}"
        prepare(out[size], mvtec_root=tree, image_size=size, grid=24, seed=0, verbose=False)
    return out


def _plan(recipe: str, release_ckpt: Path, data: Path, *extra: str) -> dict:
    return plan_recipe(
        [
            "--config",
            str(RECIPES / recipe),
            "--model_name_or_path",
            str(release_ckpt),
            "--dataset",
            str(data),
            *extra,
        ]
    )


@pytest.mark.parametrize("recipe", sorted(SHIPPED))
def test_plan_reports_the_paper_batch_for_every_recipe_on_1_2_4_8_gpus(
    recipe, release_ckpt, prepared
):
    paper, size = SHIPPED[recipe]
    for n in (1, 2, 4, 8):
        plan = _plan(recipe, release_ckpt, prepared[size], "--world_size", str(n))
        assert plan["errors"] == [], plan["errors"]
        assert plan["world_size"] == n and plan["global_batch_size"] == paper
        p, a = plan["per_device_train_batch_size"], plan["gradient_accumulation_steps"]
        assert p * a * n == paper
        if "grpo" in recipe:
            assert plan["prompts_per_step"] * plan["num_generations"] == paper
            assert plan["generation_batch_size"] == paper
        assert plan["optimizer_steps_per_epoch"] >= 1
        assert plan["image_tokens"]["zero_shot"] == (size // 28) ** 2  # 512 px: 324
        assert plan["image_tokens"]["one_shot"] == 2 * plan["image_tokens"]["zero_shot"]
        assert plan["completion_tokens"]["rows"] == plan["train_rows"] > 0
        assert plan["truncated_fraction"] is not None
        assert plan["memory_gib"]["total"] > 0
        # the release folder's own budget is unpinned: up to 16384 tokens per image
        assert plan["image_tokens"]["saved_max_tokens_per_image"] == 16384
        assert any("unpinned" in w for w in plan["warnings"])


def test_plan_json_has_the_named_keys_and_exit_status(release_ckpt, prepared, capsys):
    args = [
        "--config",
        str(RECIPES / "qwen2_5_vl_7b/grpo.yaml"),
        "--world_size",
        "4",
        "--model_name_or_path",
        str(release_ckpt),
        "--dataset",
        str(prepared[512]),
    ]
    assert cli.main(["plan", *args, "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    for key in (
        "global_batch_size",
        "prompts_per_step",
        "num_generations",
        "per_device_train_batch_size",
        "gradient_accumulation_steps",
        "optimizer_steps_per_epoch",
        "image_tokens",
        "completion_tokens",
        "truncated_fraction",
        "memory_gib",
        "warnings",
        "errors",
    ):
        assert key in plan
    assert (plan["prompts_per_step"], plan["num_generations"]) == (1, 16)
    assert (plan["per_device_train_batch_size"], plan["gradient_accumulation_steps"]) == (4, 1)
    run = subprocess.run(
        [sys.executable, "-m", "omniad_train", "plan", *args, "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0 and json.loads(run.stdout) == plan  # stdout: the object only
    assert cli.main(["plan", *args]) == 0
    table = capsys.readouterr().out
    assert "prompts x generations / step      1 x 16" in table


def test_plan_refuses_a_world_size_that_cannot_realise_the_batch(release_ckpt, capsys):
    code = plan_main(
        [
            "--config",
            str(RECIPES / "qwen2_5_vl_7b/sft.yaml"),
            "--world_size",
            "3",
            "--model_name_or_path",
            str(release_ckpt),
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err[-1].startswith("omniad-train plan: error: global_batch_size 16 cannot be split")


def test_plan_needs_a_local_folder_for_a_hub_id(capsys):
    code = plan_main(["--config", str(RECIPES / "qwen2_5_vl_7b/sft.yaml"), "--json"])
    plan = json.loads(capsys.readouterr().out)
    assert code == 1
    assert any("is not a local folder" in e and "downloads nothing" in e for e in plan["errors"])


def test_target_lengths_are_counted_in_the_checkpoints_tokens(release_ckpt, prepared):
    from datasets import load_from_disk
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(release_ckpt)
    rows = load_from_disk(str(prepared[512] / "sft"))["train"]
    want = sorted(len(tok(r["completion"][0]["content"][0]["text"])["input_ids"]) + 1 for r in rows)
    plan = _plan("qwen2_5_vl_7b/sft.yaml", release_ckpt, prepared[512])
    assert plan["completion_tokens"]["max"] == want[-1]
    assert plan["completion_tokens"]["p50"] == want[(len(want) + 1) // 2 - 1]
    # GRPO: canonical seg + answer + the reasoning allowance; a short limit cuts some
    g = load_from_disk(str(prepared[512] / "grpo"))["train"]
    seg = [
        len(tok(f"<seg>{r['seg']}</seg><think></think><answer>{r['answer']}</answer>")["input_ids"])
        + 1
        + 256
        for r in g
    ]
    limit = sorted(seg)[len(seg) // 2]
    plan = _plan(
        "qwen2_5_vl_7b/grpo.yaml",
        release_ckpt,
        prepared[512],
        "--max_completion_length",
        str(limit),
    )
    assert plan["completion_tokens"]["max"] == max(seg)
    assert plan["truncated_fraction"] == pytest.approx(sum(x > limit for x in seg) / len(seg))
    assert plan["truncated_fraction"] > 0
    assert any(f"max_completion_length {limit} cuts" in w for w in plan["warnings"])
    # SFT: a max_length shorter than a prompt with its 324 image tokens would cut images
    plan = _plan("qwen2_5_vl_7b/sft.yaml", release_ckpt, prepared[512], "--max_length", "300")
    assert any("would cut image tokens" in e for e in plan["errors"])


def test_parameter_counts_come_from_config_json_exactly(release_ckpt):
    from transformers import AutoModelForImageTextToText

    counted = memory.param_counts(memory.read_model_config(release_ckpt))
    model = AutoModelForImageTextToText.from_pretrained(release_ckpt)  # only to compare
    assert counted["total"] == sum(p.numel() for p in model.parameters())
    assert counted["vision"] == sum(p.numel() for p in model.model.visual.parameters())
    seven_b = {
        "hidden_size": 3584,
        "intermediate_size": 18944,
        "num_hidden_layers": 28,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "vocab_size": 152064,
        "vision_config": {
            "depth": 32,
            "hidden_size": 1280,
            "intermediate_size": 3420,
            "out_hidden_size": 3584,
        },
    }
    assert memory.param_counts(seven_b)["total"] == 8_292_166_656  # the hub's 7B figure


def test_memory_follows_the_zero_stage_and_world_size():
    p = 8_292_166_656
    big = 152064 * 3584
    one = memory.model_states_bytes(p, big, stage=3, world_size=1)
    eight = memory.model_states_bytes(p, big, stage=3, world_size=8)
    assert eight < one / 4  # ZeRO-3 partitions the 18 bytes per parameter
    assert memory.model_states_bytes(p, big, stage=0, world_size=8) == 20 * p  # DDP: all
    off = memory.model_states_bytes(
        p, big, stage=3, world_size=8, offload_optimizer=True, offload_params=True
    )
    assert off == 4 * big


def test_plan_flags_missing_packages_lora_with_zero3_and_weights_only_resume(
    release_ckpt, prepared
):
    def plan(*extra):
        return _plan("qwen2_5_vl_7b/grpo.yaml", release_ckpt, prepared[512], *extra)

    p = plan("--attn_implementation", "flash_attention_2")
    assert any("needs the flash-attn package" in e for e in p["errors"])  # not installed here
    p = plan("--use_vllm", "true")
    assert any("use_vllm: true needs vLLM" in e for e in p["errors"])
    p = plan("--use_peft", "true", "--zero_stage", "3")
    assert p["errors"] == [] and any("LoRA with ZeRO-3" in w for w in p["warnings"])
    assert p["memory_gib"]["params_trainable"] < p["memory_gib"]["params_total"]
    p = plan(
        "--save_only_model",
        "true",
        "--resume_from_checkpoint",
        "true",
        "--deepspeed",
        str(RECIPES / "deepspeed/zero3.json"),
    )
    assert any("transformers refuses to resume" in e for e in p["errors"])
    assert p["memory_gib"]["zero_stage"] == 3  # read from the recipe's DeepSpeed config
    p = plan("--save_only_model", "true", "--resume_from_checkpoint", "true")
    assert any("optimizer's moments start from zero" in w for w in p["warnings"])


def test_a_machine_without_deepspeed_plans_a_zero3_run(release_ckpt, prepared):
    """Plan on a laptop, train on the cluster: the plan reads the DeepSpeed config and
    builds nothing from it, so it needs no DeepSpeed; sft / grpo still do."""
    import subprocess
    import sys

    code = (
        "import json, sys\n"
        "sys.modules['deepspeed'] = None\n"
        "from omniad_train.planner.cli import plan_recipe\n"
        "p = plan_recipe(sys.argv[1:])\n"
        "m = p['memory_gib']\n"
        "print(json.dumps([m['zero_stage'], m['zero_source'], p['errors']]))\n"
    )
    argv = ["--config", "qwen2_5_vl_7b/sft", "--model_name_or_path", str(release_ckpt)]
    argv += ["--dataset", str(prepared[512]), "--deepspeed", "deepspeed/zero3"]
    run = subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr[-3000:]
    stage, source, errors = json.loads(run.stdout.strip().splitlines()[-1])
    assert (stage, source) == (3, "deepspeed config")
    from omniad_train.config import DEEPSPEED_INSTALL

    # this machine cannot run it: one error, with the install line the README gives
    assert (
        [e for e in errors if "DeepSpeed" in e]
        == [e for e in errors if DEEPSPEED_INSTALL in e and "not installed on this machine" in e]
        != []
    )


def _weightless(release_ckpt: Path, tmp_path: Path) -> Path:
    """The release folder without its weights: loading them would fail differently."""
    out = tmp_path / "no-weights"
    shutil.copytree(release_ckpt, out, ignore=shutil.ignore_patterns("*.safetensors*"))
    return out


def _run_args(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--model_name_or_path",
        str(model),
        "--dataset_path",
        str(data),
        "--output_dir",
        str(out),
        "--use_cpu",
        "true",
        "--bf16",
        "false",
        "--report_to",
        "none",
        *extra,
    ]


def test_sft_and_grpo_run_the_plans_checks_before_any_weight_loads(
    release_ckpt, prepared, tmp_path, capsys
):
    from trl import GRPOConfig, SFTConfig

    model = _weightless(release_ckpt, tmp_path)
    args = _run_args(
        model,
        prepared[512],
        tmp_path / "o",
        "--attn_implementation",
        "flash_attention_2",
        "--max_length",
        "2048",
    )
    with pytest.raises(RecipeError, match="needs the flash-attn package"):
        sft.main(*parse_recipe(SFTConfig, args))
    code = cli.main(["sft", *args])
    assert code == 1
    lines = capsys.readouterr().err.splitlines()
    assert [x for x in lines if "error" in x] == [lines[-1]]  # one line, after the warnings
    assert lines[-1].startswith("omniad-train sft: error: attn_implementation: flash_attention_2")
    args = _run_args(
        model,
        prepared[512],
        tmp_path / "g",
        "--num_generations",
        "2",
        "--global_batch_size",
        "2",
        "--max_completion_length",
        "8",
    )
    with pytest.raises(FileNotFoundError, match="safetensors"):  # the checks passed; loading
        grpo.main(*parse_recipe(GRPOConfig, args))
    err = capsys.readouterr().err
    assert "omniad-train grpo: warning: max_completion_length 8 cuts 100.0%" in err


def test_a_plan_warning_is_printed_once(release_ckpt, prepared, tmp_path, capsys, monkeypatch):
    """Issue 15: each start-up warning came twice, once from ``log.warning`` through
    Python's last-resort handler (nothing configures logging in ``omniad-train``) and once
    from ``print``.  Root handlers are cleared here as in a plain ``omniad-train`` process
    (pytest's own capture handler would otherwise swallow the log record)."""
    import logging

    from trl import GRPOConfig

    monkeypatch.setattr(logging.root, "handlers", [])
    model = _weightless(release_ckpt, tmp_path)
    args = _run_args(
        model,
        prepared[512],
        tmp_path / "g",
        "--num_generations",
        "2",
        "--global_batch_size",
        "2",
        "--max_completion_length",
        "8",
    )
    with pytest.raises(FileNotFoundError, match="safetensors"):  # the checks passed; loading
        grpo.main(*parse_recipe(GRPOConfig, args))
    err = capsys.readouterr().err
    assert err.count("max_completion_length 8 cuts 100.0%") == 1, err
    assert "omniad-train grpo: warning: max_completion_length 8 cuts 100.0%" in err
