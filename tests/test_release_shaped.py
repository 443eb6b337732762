"""The release-shaped checkpoint fixture (``release_ckpt``) and ``benchmarks/gpu_check.py``.

The fixture must look like the hub's Qwen2.5-VL-7B-Instruct wherever a loader looks:
these tests read its files as JSON (what the release ships) and load it with the
``Auto*`` classes (what a user gets), and run the Inspector on it end to end.
"""

from __future__ import annotations

import importlib.resources
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
np = pytest.importorskip("numpy")
Image = pytest.importorskip("PIL.Image")

from omniad_train.tiny import QWEN_SPECIAL_TOKENS, build_release_shaped  # noqa: E402
from omniad_train.tiny_release import EXTRA_TOKENS  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
GPU_CHECK = ROOT / "benchmarks" / "gpu_check.py"


def _json(folder: Path, name: str) -> dict:
    return json.loads((folder / name).read_text(encoding="utf-8"))


def _release_template() -> str:
    return (
        importlib.resources.files("trl")
        .joinpath("chat_templates", "qwen2_5_vl.jinja")
        .read_text(encoding="utf-8")
    )


def _tensors(folder: Path) -> dict:
    from safetensors.torch import load_file

    out = {}
    for name in sorted(set(_json(folder, "model.safetensors.index.json")["weight_map"].values())):
        out.update(load_file(os.fspath(folder / name)))
    return out


@pytest.fixture(scope="module")
def loaded(release_ckpt):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(release_ckpt)
    return model.eval(), AutoProcessor.from_pretrained(release_ckpt)


# --------------------------------------------------------------------------- files


def test_folder_holds_the_release_files(release_ckpt):
    names = {p.name for p in release_ckpt.iterdir()}
    assert names == {
        "config.json",
        "generation_config.json",
        "preprocessor_config.json",
        "chat_template.json",
        "chat_template.jinja",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.json",
        "merges.txt",
        "model.safetensors.index.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    }


def test_tokenizer_config_pads_right_and_carries_the_release_template(release_ckpt):
    cfg = _json(release_ckpt, "tokenizer_config.json")
    assert cfg["padding_side"] == "right"
    assert cfg["tokenizer_class"] == "Qwen2Tokenizer"
    assert cfg["bos_token"] is None and cfg["unk_token"] is None
    assert (cfg["eos_token"], cfg["pad_token"]) == ("<|im_end|>", "<|endoftext|>")
    assert cfg["model_max_length"] == 131072 and cfg["errors"] == "replace"
    template = _release_template()
    assert cfg["chat_template"] == template
    assert (release_ckpt / "chat_template.jinja").read_text(encoding="utf-8") == template
    assert _json(release_ckpt, "chat_template.json") == {"chat_template": template}
    added = {v["content"]: v["special"] for v in cfg["added_tokens_decoder"].values()}
    assert len(added) == 22  # as the release: 14 special tokens, 8 tool-call / FIM tokens
    assert added == {
        **dict.fromkeys(QWEN_SPECIAL_TOKENS, True),
        **dict.fromkeys(EXTRA_TOKENS, False),
    }


def test_generation_config_samples_with_a_repetition_penalty(release_ckpt):
    gen = _json(release_ckpt, "generation_config.json")
    vocab = _json(release_ckpt, "tokenizer_config.json")["added_tokens_decoder"]
    ids = {v["content"]: int(k) for k, v in vocab.items()}
    assert gen["do_sample"] is True
    assert gen["repetition_penalty"] == 1.05
    assert (gen["temperature"], gen["top_p"], gen["top_k"]) == (0.1, 0.001, 1)
    assert gen["eos_token_id"] == [ids["<|im_end|>"], ids["<|endoftext|>"]]
    assert gen["pad_token_id"] == gen["bos_token_id"] == ids["<|endoftext|>"]


def test_preprocessor_has_the_release_pixel_budgets(release_ckpt):
    pre = _json(release_ckpt, "preprocessor_config.json")
    assert (pre["min_pixels"], pre["max_pixels"]) == (3136, 12845056)
    assert (pre["patch_size"], pre["merge_size"], pre["temporal_patch_size"]) == (14, 2, 2)
    assert pre["image_mean"] == [0.48145466, 0.4578275, 0.40821073]
    assert pre["image_std"] == [0.26862954, 0.26130258, 0.27577711]
    assert pre["image_processor_type"] == "Qwen2VLImageProcessor"


def test_config_has_the_release_layout_scaled_down(release_ckpt):
    cfg = _json(release_ckpt, "config.json")
    vocab = _json(release_ckpt, "tokenizer_config.json")["added_tokens_decoder"]
    ids = {v["content"]: int(k) for k, v in vocab.items()}
    assert cfg["architectures"] == ["Qwen2_5_VLForConditionalGeneration"]
    assert cfg["model_type"] == "qwen2_5_vl" and "text_config" not in cfg  # flat, as the release
    assert cfg["rope_scaling"]["type"] == "mrope" and cfg["rope_theta"] == 1e6
    head_dim = cfg["hidden_size"] // cfg["num_attention_heads"]
    assert sum(cfg["rope_scaling"]["mrope_section"]) == head_dim // 2
    assert cfg["rope_scaling"]["mrope_section"] == [2, 3, 3]  # the release's 16:24:24
    assert cfg["num_attention_heads"] // cfg["num_key_value_heads"] == 7  # 28 / 4 in the 7B
    assert cfg["tie_word_embeddings"] is False and cfg["torch_dtype"] == "bfloat16"
    vision = cfg["vision_config"]
    assert vision["out_hidden_size"] == cfg["hidden_size"]
    assert (vision["patch_size"], vision["spatial_merge_size"], vision["window_size"]) == (
        14,
        2,
        112,
    )
    full = vision["fullatt_block_indexes"]  # every k-th block global, the last included
    assert full[-1] == vision["depth"] - 1 and len(full) > 1
    assert all(b - a == full[0] + 1 for a, b in itertools.pairwise(full))
    for key, token in [
        ("image_token_id", "<|image_pad|>"),
        ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"),
        ("vision_end_token_id", "<|vision_end|>"),
        ("vision_token_id", "<|vision_pad|>"),
        ("eos_token_id", "<|im_end|>"),
        ("bos_token_id", "<|endoftext|>"),
    ]:
        assert cfg[key] == ids[token], key
    # the release's offsets: <|image_pad|> is 12 after <|endoftext|> (151655 - 151643)
    assert cfg["image_token_id"] - cfg["bos_token_id"] == 12
    assert cfg["vocab_size"] > max(ids.values()) + 1  # padded past the tokenizer, as 152064


def test_weights_are_sharded_bf16_under_the_release_names(release_ckpt):
    index = _json(release_ckpt, "model.safetensors.index.json")
    tensors = _tensors(release_ckpt)
    assert set(index["weight_map"]) == set(tensors)
    assert index["metadata"]["total_size"] == sum(t.numel() * 2 for t in tensors.values())
    assert all(t.dtype == torch.bfloat16 for t in tensors.values())
    assert "model.embed_tokens.weight" in tensors and "lm_head.weight" in tensors
    assert any(k.startswith("visual.blocks.") for k in tensors)
    assert not any(k.startswith("model.language_model.") for k in tensors)


# --------------------------------------------------------------------------- loading


def test_loads_with_auto_classes_and_every_weight_is_the_saved_one(release_ckpt, loaded):
    model, _ = loaded
    saved = _tensors(release_ckpt)
    assert model.dtype == torch.bfloat16  # the release's torch_dtype, as a user gets it
    text = model.config.text_config
    assert text.rope_parameters["mrope_section"] == [2, 3, 3]
    assert (text.num_attention_heads, text.num_key_value_heads) == (7, 1)
    assert model.config.vision_config.fullatt_block_indexes == [1, 3]
    state = model.state_dict()
    assert len(state) == len(saved)
    for key, value in state.items():
        old = key.replace("model.language_model.", "model.").replace("model.visual.", "visual.")
        assert torch.equal(value, saved[old]), key  # nothing freshly initialised
    assert model.generation_config.do_sample is True
    assert model.generation_config.repetition_penalty == 1.05


def test_processor_as_loaded_pads_right_with_the_release_budgets(loaded):
    _, processor = loaded
    tok = processor.tokenizer
    print(f"AutoProcessor(...).tokenizer.padding_side == {tok.padding_side!r}")
    assert tok.padding_side == "right"  # as the release; training and inference must left-pad
    assert type(tok).__name__ == "Qwen2Tokenizer"
    assert tok.bos_token is None and tok.eos_token == "<|im_end|>"
    size = processor.image_processor.size
    assert (size["shortest_edge"], size["longest_edge"]) == (3136, 12845056)
    assert processor.chat_template == _release_template()
    text = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Any?"}]}],
        add_generation_prompt=True,
    )
    image = Image.fromarray(np.zeros((512, 512, 3), dtype=np.uint8))
    inputs = processor(text=[text], images=[image], return_tensors="pt")
    assert inputs["image_grid_thw"].tolist() == [[1, 36, 36]]
    assert int((inputs["input_ids"] == tok.convert_tokens_to_ids("<|image_pad|>")).sum()) == 324


def test_loaded_tokenizer_is_the_saved_tokenizer_json(release_ckpt, loaded):
    from tokenizers import Tokenizer

    raw = Tokenizer.from_file(os.fspath(release_ckpt / "tokenizer.json"))
    tok = loaded[1].tokenizer
    text = "<|im_start|>assistant\n<seg>(14, 8)-(14, 9), </seg><think>a crack</think><|im_end|>"
    assert tok(text)["input_ids"] == raw.encode(text).ids
    assert tok.decode(tok(text)["input_ids"]) == text


def test_same_seed_same_weights_other_seed_other_weights(release_ckpt, tmp_path):
    first = _tensors(release_ckpt)
    again = _tensors(build_release_shaped(tmp_path / "again", seed=0))
    other = _tensors(build_release_shaped(tmp_path / "other", seed=1))
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert sum(not torch.equal(first[k], other[k]) for k in first) > len(first) // 3


def test_build_leaves_the_global_rng_alone(tmp_path):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_release_shaped(tmp_path / "m", seed=7)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize(
    ("name", "published"),
    [("QWEN2_5_VL_3B", 3_754_622_976), ("QWEN2_5_VL_7B", 8_292_166_656)],
)
def test_release_sizes_give_the_published_parameter_counts(tmp_path, name, published):
    """The full-size configs (the GPU check's 3B) build the releases' exact models."""
    from transformers import AutoConfig, Qwen2_5_VLForConditionalGeneration

    from omniad_train import tiny_release

    sizes = getattr(tiny_release, name)
    ids = {t: 151643 + i for i, t in enumerate(QWEN_SPECIAL_TOKENS)}  # the release's ids
    config = tiny_release.release_config(sizes, ids, sizes.vocab_size)
    (tmp_path / "config.json").write_text(json.dumps(config), encoding="utf-8")
    with torch.device("meta"):  # shapes only, no memory
        model = Qwen2_5_VLForConditionalGeneration(AutoConfig.from_pretrained(tmp_path))
    assert sum(p.numel() for p in model.parameters()) == published
    assert sum(config["rope_scaling"]["mrope_section"]) == sizes.head_dim // 2 == 64


def test_inspector_runs_end_to_end_on_one_image(release_ckpt):
    from omniad_core import Inspector

    inspector = Inspector.from_pretrained(release_ckpt, max_new_tokens=12)
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8))
    result = inspector.analyze(image)
    assert isinstance(result.response, str)
    assert result.mask.shape == (96, 128)
    assert result.parsed is not None


# --------------------------------------------------------------------------- gpu check


def _gpu_check_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_check", GPU_CHECK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_check_parses_its_arguments():
    gpu_check = _gpu_check_module()
    args = gpu_check.parse_args([])
    assert args.sft_steps >= 1 and args.grpo_steps >= 1 and args.inspect_images >= 1
    args = gpu_check.parse_args(["--sft-steps", "2", "--no-vllm", "--out", "/tmp/x"])
    assert (args.sft_steps, args.vllm, args.out) == (2, False, Path("/tmp/x"))
    with pytest.raises(SystemExit):
        gpu_check.parse_args(["--sft-steps", "0"])
    with pytest.raises(SystemExit):  # a device batch of whole groups only
        gpu_check.parse_args(["--grpo-batch", "6", "--num-generations", "4"])


def test_gpu_check_recipes_parse_as_the_project_reads_them(tmp_path):
    from trl import GRPOConfig, SFTConfig

    from omniad_train.config import parse_recipe

    gpu_check = _gpu_check_module()
    args = gpu_check.parse_args(["--out", str(tmp_path)])
    recipes = gpu_check.write_recipes(args, use_vllm=True)
    cpu = ["--bf16", "false", "--use_cpu", "true"]  # bf16 needs the GPU the check runs on
    _, sft, model = parse_recipe(SFTConfig, ["--config", str(recipes["sft"]), *cpu])
    assert (sft.max_steps, sft.per_device_train_batch_size, sft.learning_rate) == (3, 4, 1e-5)
    assert (model.dtype, sft.gradient_checkpointing) == ("bfloat16", True)
    script, grpo, _ = parse_recipe(GRPOConfig, ["--config", str(recipes["grpo"]), *cpu])
    assert (grpo.per_device_train_batch_size, grpo.num_generations) == (8, 4)  # two groups
    assert (grpo.use_vllm, grpo.vllm_mode, grpo.vllm_max_model_length) == (True, "colocate", 2048)
    assert (grpo.learning_rate, script.image_size, script.grid) == (1e-6, 512, 24)


def test_gpu_check_table_shows_failures_and_the_plan(capsys):
    gpu_check = _gpu_check_module()
    results = {
        "sft": {"wall_seconds": 61.0, "step_seconds": 2.5, "peak_allocated_gib": 31.2},
        "grpo": {"error": "exit status 1 (full output in x.log):\n    CUDA out of memory"},
    }
    plans = {
        "sft": {"memory_gib": {"total": 30.04, "model_states": 27.9, "activations": 2.1}},
        "grpo": {"note": "n/a"},
    }
    gpu_check.print_table(results, plans)
    out = capsys.readouterr().out
    sft_row = next(line for line in out.splitlines() if line.startswith("sft "))
    assert "61.0" in sft_row and "2.50" in sft_row and "31.2" in sft_row
    assert "30.0 GiB (states 27.9 + act. 2.1)" in sft_row  # prediction next to measurement
    assert "FAILED" in next(line for line in out.splitlines() if line.startswith("grpo "))
    assert "grpo failed: exit status 1" in out and "CUDA out of memory" in out
    assert "plan (grpo): n/a" in out


@pytest.mark.slow
def test_gpu_check_smoke_runs_every_phase_on_the_cpu(tmp_path):
    small = ["--sft-steps", "1", "--sft-batch", "2", "--grpo-steps", "1", "--grpo-batch", "4"]
    small += ["--num-generations", "2", "--max-completion-length", "8"]
    small += ["--inspect-images", "2", "--inspect-tokens", "4"]
    done = subprocess.run(
        [sys.executable, os.fspath(GPU_CHECK), "--smoke", "--out", str(tmp_path), *small],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    table = done.stdout.split("phase ", 1)[1]
    for phase in ("build", "sft", "grpo", "inspect"):
        assert f"\n{phase} " in table
    assert "FAILED" not in table
    assert not (tmp_path / "model").exists()  # the large folders go unless --keep


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the check would run")
def test_gpu_check_without_cuda_says_it_is_skipped_and_exits_0():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(
        [sys.executable, os.fspath(GPU_CHECK)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "skipped" in done.stdout and "CUDA" in done.stdout
