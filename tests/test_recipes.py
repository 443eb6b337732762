"""Issue 12, recipe side: the shipped recipes mean the paper's batch on 1, 2, 4 and 8
processes, need no flash-attn, size completions above 512 tokens, offer weights-only
checkpoints, and LoRA defaults to the language model's projections.

The world size reaches TRL the way it does under ``torchrun``: ``WORLD_SIZE`` and friends
in the environment and an initialised ``torch.distributed`` group, here torch's in-process
``fake`` backend (one process stands for N ranks; no collective runs).  TRL's own
``GRPOConfig.__post_init__`` then validates and derives the generation batch.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("trl")

from trl import GRPOConfig, ModelConfig, SFTConfig, get_peft_config

from omniad_train.config import RecipeError, parse_recipe
from omniad_train.recipe_checks import check_value
from omniad_train.recipe_yaml import read_recipe

ROOT = Path(__file__).resolve().parent.parent
RECIPES = ROOT / "omniad_train" / "recipes"
SHIPPED = [
    ("qwen2_5_vl_7b", "sft", 16),
    ("qwen2_5_vl_7b", "grpo", 16),
    ("tiny_cpu", "sft", 8),
    ("tiny_cpu", "grpo", 8),
]
ON_CPU = ["--use_cpu", "true", "--bf16", "false"]


@pytest.fixture
def world(monkeypatch):
    """``world(n)``: make this process rank 0 of ``n`` as torchrun would (fake backend)."""
    import torch.distributed as dist
    from accelerate.state import AcceleratorState
    from torch.testing._internal.distributed.fake_pg import FakeStore

    def start(n: int) -> None:
        if n > 1:
            env = {
                "WORLD_SIZE": str(n),
                "RANK": "0",
                "LOCAL_RANK": "0",
                "LOCAL_WORLD_SIZE": str(n),
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": "29591",
            }
            for k, v in env.items():
                monkeypatch.setenv(k, v)
            dist.init_process_group("fake", store=FakeStore(), rank=0, world_size=n)

    yield start
    if dist.is_initialized():
        dist.destroy_process_group()
    AcceleratorState._reset_state(reset_partial_state=True)


def _parse(folder: str, kind: str, *extra: str):
    cls = SFTConfig if kind == "sft" else GRPOConfig
    return parse_recipe(cls, ["--config", str(RECIPES / folder / f"{kind}.yaml"), *ON_CPU, *extra])


@pytest.mark.parametrize("n", [1, 2, 4, 8])
@pytest.mark.parametrize(("folder", "kind", "paper"), SHIPPED)
def test_every_shipped_recipe_realises_its_batch_on_1_2_4_8_processes(
    world, folder, kind, paper, n
):
    world(n)
    s, t, _ = _parse(folder, kind)
    assert t.world_size == n  # TRL sees the launcher's world size
    assert s.global_batch_size == paper
    assert t.per_device_train_batch_size * t.gradient_accumulation_steps * n == paper
    assert t.per_device_train_batch_size <= s.max_per_device_batch
    if kind == "grpo":
        # TRL's own derivation: one generation round per optimizer step, whole groups
        assert t.generation_batch_size == paper
        assert t.steps_per_generation == t.gradient_accumulation_steps
        assert t.generation_batch_size % t.num_generations == 0
    if folder == "qwen2_5_vl_7b" and kind == "grpo":
        assert paper // t.num_generations == 1  # the paper: one group of 16 per step


def test_a_world_size_that_cannot_realise_the_batch_is_refused(world):
    world(3)
    with pytest.raises(RecipeError, match=r"cannot be split evenly over 3 processes") as err:
        _parse("qwen2_5_vl_7b", "grpo")
    assert "run on 1, 2, 4 or 8 processes" in str(err.value)
    with pytest.raises(RecipeError, match=r"over 3 processes"):
        _parse("qwen2_5_vl_7b", "sft")


def test_explicit_per_device_batch_must_agree_with_the_global_batch():
    _, t, _ = _parse("qwen2_5_vl_7b", "sft", "--per_device_train_batch_size", "8")
    assert (t.per_device_train_batch_size, t.gradient_accumulation_steps) == (8, 2)
    with pytest.raises(RecipeError, match="does not make global_batch_size 16"):
        _parse("qwen2_5_vl_7b", "sft", "--per_device_train_batch_size", "3")
    with pytest.raises(RecipeError, match="does not make global_batch_size 16"):
        _parse(
            "qwen2_5_vl_7b",
            "grpo",
            "--per_device_train_batch_size",
            "4",
            "--gradient_accumulation_steps",
            "2",
        )
    with pytest.raises(RecipeError, match="not divisible by num_generations 16"):
        _parse("qwen2_5_vl_7b", "grpo", "--global_batch_size", "8")
    _, t, _ = _parse("qwen2_5_vl_7b", "sft", "--max_per_device_batch", "1")
    assert (t.per_device_train_batch_size, t.gradient_accumulation_steps) == (1, 16)


def test_an_explicit_world_size_is_used_as_given():
    _, t, _ = parse_recipe(
        SFTConfig,
        ["--config", str(RECIPES / "qwen2_5_vl_7b" / "sft.yaml"), *ON_CPU],
        world_size=8,
    )
    assert (t.per_device_train_batch_size, t.gradient_accumulation_steps) == (2, 1)


def test_recipes_need_no_flash_attn_and_the_check_accepts_every_choice():
    for folder, kind, _ in SHIPPED:
        attn = read_recipe(RECIPES / folder / f"{kind}.yaml").get("attn_implementation")
        assert attn in (None, "auto", "sdpa"), (folder, kind, attn)
    for value in ("auto", "sdpa", "eager", "flash_attention_2"):
        check_value("attn_implementation", value, "in recipe r.yaml")
    with pytest.raises(RecipeError, match="auto"):
        check_value("attn_implementation", "fast", "in recipe r.yaml")


def test_recipes_size_completions_well_above_512_and_mask_cut_ones():
    grpo = read_recipe(RECIPES / "qwen2_5_vl_7b" / "grpo.yaml")
    assert grpo["max_completion_length"] >= 1024
    assert grpo["mask_truncated_completions"] is True
    assert read_recipe(RECIPES / "qwen2_5_vl_7b" / "sft.yaml")["max_length"] >= 2048
    _, t, _ = _parse("tiny_cpu", "grpo")
    assert t.mask_truncated_completions is True and t.max_completion_length > 96


def test_recipes_offer_weights_only_checkpoints():
    for kind in ("sft", "grpo"):
        assert read_recipe(RECIPES / "qwen2_5_vl_7b" / f"{kind}.yaml")["save_only_model"] is False
        _, t, _ = _parse("qwen2_5_vl_7b", kind, "--save_only_model", "true")
        assert t.save_only_model is True


def test_default_lora_targets_wrap_only_the_language_models_linears(tmp_path):
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForImageTextToText

    from omniad_train.tiny import TinyConfig, build_tiny_qwen2_5_vl

    _, _, m = parse_recipe(SFTConfig, ["--model_name_or_path", "x", "--use_peft", "true", *ON_CPU])
    _, _, given = parse_recipe(
        SFTConfig,
        [
            "--model_name_or_path",
            "x",
            "--use_peft",
            "true",
            "--lora_target_modules",
            "q_proj",
            "v_proj",
            *ON_CPU,
        ],
    )
    assert given.lora_target_modules == ["q_proj", "v_proj"]  # the recipe's choice wins
    cfg = TinyConfig.test()
    model = AutoModelForImageTextToText.from_pretrained(build_tiny_qwen2_5_vl(tmp_path / "m", cfg))
    wrapped = [
        n
        for n, mod in get_peft_model(model, get_peft_config(m)).named_modules()
        if hasattr(mod, "lora_A") and isinstance(mod.base_layer, torch.nn.Linear)
    ]
    assert len(wrapped) == 7 * cfg.num_layers  # q, k, v, o, gate, up, down of every layer
    assert all(".language_model.layers." in n for n in wrapped)
    assert not [n for n in wrapped if ".visual." in n]  # the tower's gate/up/down stay plain
    assert get_peft_config(ModelConfig(model_name_or_path="x")) is None  # LoRA off: nothing
    from omniad_train.config import LANGUAGE_LORA_TARGETS

    assert m.lora_target_modules == LANGUAGE_LORA_TARGETS
