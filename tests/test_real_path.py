"""A release-shaped checkpoint through every loader: the first-run defects of issue 12.

The fixture ``release_ckpt`` (tests/conftest.py) is a tiny checkpoint saved the way the hub's
Qwen2.5-VL-7B-Instruct is: a tokenizer that pads on the right, a generation config with
sampling defaults and a repetition penalty of 1.05, the processor's 12.8 M-pixel budget.
Each test here fails on the loaders that trusted those files (or lacked the function).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("trl")

from PIL import Image  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def _copy(ckpt: Path, tmp_path: Path) -> Path:
    out = tmp_path / ckpt.name
    shutil.copytree(ckpt, out)
    return out


def _edit_json(path: Path, **changes: object) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data, indent=2))


def _model_args(path: Path, **kw: object):
    from trl import ModelConfig

    return ModelConfig(model_name_or_path=str(path), dtype="float32", **kw)


_CPU_ARGS = SimpleNamespace(bf16=False)


def _image_tokens(processor, input_ids) -> list[int]:
    image_id = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    return (input_ids == image_id).sum(dim=-1).tolist()


# ------------------------------------------------------------------ 1: torchvision
def test_processor_needing_torchvision_says_what_to_install(release_ckpt, tmp_path):
    from omniad_core.checkpoint import MissingPackageError, torchvision_hint
    from omniad_core.inspector import Inspector
    from omniad_train.evaluation.model import load_inspector
    from omniad_train.modeling import load_model_and_processor
    from omniad_train.tiny import qwen_processor_available

    if qwen_processor_available():
        pytest.skip("torchvision works here: the release's processor loads")
    ckpt = _copy(release_ckpt, tmp_path)  # the release's own processor class
    _edit_json(ckpt / "preprocessor_config.json", processor_class="Qwen2_5_VLProcessor")
    hint = torchvision_hint()
    assert "torchvision==0." in hint and "omniad[gpu]" in hint
    for load in (
        lambda: Inspector.from_pretrained(ckpt),
        lambda: load_inspector(str(ckpt), {}),
        lambda: load_model_and_processor(_model_args(ckpt), _CPU_ARGS),
    ):
        with pytest.raises(MissingPackageError) as info:
            load()
        message = str(info.value)
        assert "needs torchvision" in message and hint in message and str(ckpt) in message
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "omniad_core",
            "inspect",
            str(_rgb_file(tmp_path)),
            "--model",
            str(ckpt),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMNIAD_TRACEBACK": ""},
    )
    errors = [line for line in run.stderr.splitlines() if "error:" in line]
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert len(errors) == 1 and "needs torchvision" in errors[0] and hint in errors[0]


def _rgb_file(tmp_path: Path) -> Path:
    path = tmp_path / "part.png"
    Image.new("RGB", (40, 30), (90, 120, 30)).save(path)
    return path


def test_gpu_extra_installs_torchvision_and_stays_out_of_cpu_ci():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert any(r.startswith("torchvision") for r in extras["gpu"])
    assert not any(
        r.split("[")[0].startswith("torch") for r in extras["gpu"] if "torchvision" not in r
    )

    def closure(name: str, seen: set[str]) -> set[str]:
        reqs = set()
        for r in extras[name]:
            if r.startswith("omniad["):
                for sub in r[len("omniad[") : -1].split(","):
                    if sub not in seen:
                        reqs |= closure(sub, seen | {sub})
            else:
                reqs.add(r)
        return reqs

    ci = closure("all", {"all"}) | closure("dev", {"dev"})  # .ci/run installs .[all,dev]
    assert not any(r.startswith(("torchvision", "vllm", "flash")) for r in ci)
    readme = (ROOT / "README.md").read_text()
    setup = readme.split("## Set up and test", 1)[1].split("\n## ", 1)[0]
    for needed in (
        "--index-url https://download.pytorch.org/whl/cu",
        "torchvision==",
        "'.[all,gpu]'",
        "vllm",
        "flash-attn",
    ):
        assert needed in setup, needed


# ------------------------------------------------------------------ 2: left padding
def _trl_batch(processor, questions: list[str], image: Image.Image):
    """What TRL 1.16's GRPO builds for one generation batch: prompt ids from the chat
    template, left-padded by TRL itself, and ``mm_token_type_ids`` from the processor's
    own ``padding=True`` output (grpo_trainer.py, ``_tokenize_prompts`` and the
    ``prompt_inputs = self.processing_class(...)`` call)."""
    from trl.data_utils import apply_chat_template, prepare_multimodal_messages
    from trl.trainer.utils import pad

    prompts = [
        prepare_multimodal_messages(
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": q}]}],
            images=[image],
        )
        for q in questions
    ]
    tokenized = processor.apply_chat_template(
        conversation=prompts, add_generation_prompt=True, tokenize=True, return_dict=True
    )
    ids = [torch.tensor(x) for x in tokenized["input_ids"]]
    prompt_ids = pad(ids, padding_value=processor.tokenizer.pad_token_id, padding_side="left")
    prompt_mask = pad([torch.ones_like(t) for t in ids], padding_value=0, padding_side="left")
    texts = [apply_chat_template({"prompt": p}, processor)["prompt"] for p in prompts]
    inputs = processor(images=[[image]] * len(texts), text=texts, padding=True, return_tensors="pt")
    forward = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask")}
    return ids, prompt_ids, prompt_mask, forward


def test_processor_left_pads_so_trl_rows_match_their_unbatched_logits(release_ckpt):
    from omniad_train.modeling import load_model_and_processor

    model, processor = load_model_and_processor(_model_args(release_ckpt), _CPU_ARGS)
    assert processor.tokenizer.padding_side == "left"  # the checkpoint says "right"
    image = Image.new("RGB", (56, 56), (120, 30, 200))
    questions = ["Is there any defect in the object? Look at every edge and corner.", "Defect?"]
    ids, prompt_ids, prompt_mask, forward = _trl_batch(processor, questions, image)
    image_id = model.config.image_token_id
    # the image positions TRL passes are those of the image tokens in the ids it pads
    assert torch.equal(forward["mm_token_type_ids"] == 1, prompt_ids == image_id)
    with torch.no_grad():
        batched = model(input_ids=prompt_ids, attention_mask=prompt_mask, **forward).logits
        short = ids[1].unsqueeze(0)
        alone = model(
            input_ids=short,
            attention_mask=torch.ones_like(short),
            pixel_values=forward["pixel_values"][forward["pixel_values"].shape[0] // 2 :],
            image_grid_thw=forward["image_grid_thw"][1:],
            mm_token_type_ids=(short == image_id).long(),
        ).logits
    diff = (batched[1, -short.shape[1] :] - alone[0]).abs().max().item()
    assert diff < 1e-4, diff


def _grpo_trainer_cls():
    from trl import GRPOTrainer

    class CheckedGRPO(GRPOTrainer):
        """GRPO that checks, on every generation batch it builds, that the image positions
        match the image tokens and each row's log-probs equal its unpadded forward's."""

        checked: list[float] = []  # noqa: RUF012

        def _generate_and_score_completions(self, inputs):
            out = super()._generate_and_score_completions(inputs)
            prompt, mm = out["prompt_ids"], out["mm_token_type_ids"]
            image_id = self.model.config.image_token_id
            assert torch.equal(mm[:, : prompt.shape[1]] == 1, prompt == image_id)
            ids = torch.cat([prompt, out["completion_ids"]], dim=1)
            mask = torch.cat([out["prompt_mask"], out["completion_mask"]], dim=1)
            keep = out["completion_ids"].shape[1]
            kw = {
                "pixel_values": out["pixel_values"],
                "image_grid_thw": out["image_grid_thw"],
                "num_images": out["num_images"],
                "mm_token_type_ids": mm,
            }
            with torch.no_grad():
                batched, _, _ = self._get_per_token_logps_and_entropies(
                    self.model, ids, mask, keep, **kw
                )
                per_image = out["image_grid_thw"].prod(-1).tolist()
                start = 0
                for row in range(ids.shape[0]):
                    keep_cols = mask[row].bool()
                    keep_cols[-keep:] = True  # completion columns stay (padding masked in loss)
                    one = ids[row : row + 1, keep_cols]
                    pv = out["pixel_values"][start : start + per_image[row]]
                    start += per_image[row]
                    alone, _, _ = self._get_per_token_logps_and_entropies(
                        self.model,
                        one,
                        mask[row : row + 1, keep_cols],
                        keep,
                        pixel_values=pv,
                        image_grid_thw=out["image_grid_thw"][row : row + 1],
                        num_images=[1],
                        mm_token_type_ids=mm[row : row + 1, keep_cols],
                    )
                    valid = out["completion_mask"][row].bool()
                    diff = (batched[row, valid] - alone[0, valid]).abs().max().item()
                    type(self).checked.append(diff)
            return out

    return CheckedGRPO


def test_grpo_batch_of_several_prompts_keeps_image_positions(release_ckpt, tmp_path):
    """per_device_train_batch_size (4) x steps_per_generation (1) > num_generations (2):
    two prompts of different length share each generation batch."""
    from datasets import Dataset
    from trl import GRPOConfig

    from omniad_core.inspector import image_pixel_budget
    from omniad_train.modeling import train_and_save

    rng = np.random.default_rng(0)
    questions = [
        "Defect?",
        "Is there any defect in the object? Check every edge and corner, please.",
        "Any scratch?",
        "Describe the surface of this part and say whether it is damaged.",
    ]
    data = Dataset.from_dict(
        {
            "prompt": [
                [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": q}]}]
                for q in questions
            ],
            "image": [
                Image.fromarray((rng.random((56, 56, 3)) * 255).astype(np.uint8)) for _ in questions
            ],
        }
    )
    args = GRPOConfig(
        output_dir=str(tmp_path / "grpo"),
        use_cpu=True,
        bf16=False,
        report_to="none",
        gradient_checkpointing=False,
        per_device_train_batch_size=4,
        num_generations=2,
        steps_per_generation=1,
        max_completion_length=8,
        max_steps=2,
        save_steps=1,
        save_strategy="steps",
        logging_steps=1,
        dataloader_num_workers=0,
        learning_rate=1e-3,
        remove_unused_columns=False,
        seed=0,
    )
    script = SimpleNamespace(grid=24, image_size=56, freeze_vision_tower=False)
    trainer_cls = _grpo_trainer_cls()
    trainer_cls.checked.clear()

    def length(completions, **kwargs):
        return [float(len(c[0]["content"])) for c in completions]

    train_and_save(
        trainer_cls,
        script,
        args,
        _model_args(release_ckpt),
        data,
        None,
        None,
        reward_funcs=[length],
    )
    assert len(trainer_cls.checked) == 2 * 4 and max(trainer_cls.checked) < 1e-4, (
        trainer_cls.checked
    )
    # 7: every saved checkpoint carries the pinned image budget (56 px: one 2 x 2 merge)
    for folder in (tmp_path / "grpo", tmp_path / "grpo" / "checkpoint-1"):
        size = json.loads((folder / "processor_config.json").read_text())["image_processor"]["size"]
        budget = image_pixel_budget(56)
        assert size == {"shortest_edge": budget, "longest_edge": budget} and budget == 3136, folder


# ------------------------------------------------------------------ 3: attention
def test_attention_defaults_to_sdpa_and_flash_attn_is_asked_for_by_name(release_ckpt):
    from omniad_train.config import RecipeError
    from omniad_train.modeling import load_model_and_processor, resolve_attn_implementation

    resolve = resolve_attn_implementation
    assert resolve(None, flash_available=True, cuda_available=True) == "sdpa"
    assert resolve("auto", flash_available=True, cuda_available=True) == "flash_attention_2"
    assert resolve("auto", flash_available=False, cuda_available=True) == "sdpa"
    assert resolve("auto", flash_available=True, cuda_available=False) == "sdpa"
    assert resolve("eager", flash_available=False, cuda_available=False) == "eager"
    assert (
        resolve("flash_attention_2", flash_available=True, cuda_available=True)
        == "flash_attention_2"
    )
    with pytest.raises(RecipeError, match=r"pip install flash-attn.*attn_implementation: sdpa"):
        resolve("flash_attention_2", flash_available=False, cuda_available=True)
    with pytest.raises(RecipeError, match="CUDA"):
        resolve("flash_attention_2", flash_available=True, cuda_available=False)
    model, _ = load_model_and_processor(_model_args(release_ckpt), _CPU_ARGS)
    assert model.config._attn_implementation == "sdpa"
    model, _ = load_model_and_processor(
        _model_args(release_ckpt, attn_implementation="auto"), _CPU_ARGS
    )
    assert model.config._attn_implementation == "sdpa"  # no flash-attn, no CUDA here
    with pytest.raises(RecipeError, match="flash-attn package, which is not installed"):
        load_model_and_processor(
            _model_args(release_ckpt, attn_implementation="flash_attention_2"), _CPU_ARGS
        )


# ------------------------------------------------------------------ 6: inference defaults
def test_default_placement_picks_cuda_and_bf16_when_present():
    from omniad_core.inspector import default_placement

    assert default_placement(cuda_available=False) == ("cpu", "float32")
    assert default_placement(cuda_available=True) == ("cuda:0", "bfloat16")
    assert default_placement(cuda_available=True, local_rank=5) == ("cuda:5", "bfloat16")
    assert default_placement(cuda_available=True, bf16_supported=False) == ("cuda:0", "float16")
    assert default_placement("cuda:1", torch.float32, cuda_available=True) == ("cuda:1", "float32")
    assert default_placement("cpu", cuda_available=True) == ("cpu", "float32")
    assert default_placement("auto", cuda_available=True) == ("auto", "bfloat16")


def test_loaders_default_to_this_machine_without_cuda(release_ckpt):
    from omniad_train.evaluation.model import default_device, load_inspector

    assert not torch.cuda.is_available()  # these machines: the CPU branch
    assert default_device() == "cpu"
    insp = load_inspector(str(release_ckpt), {"max_new_tokens": 4})
    weights = {p.dtype for p in insp.model.parameters()} | {
        p.device.type for p in insp.model.parameters()
    }
    assert weights == {torch.float32, "cpu"}  # saved as bfloat16; float32 on the CPU


def _greedy_reference(model, inputs, steps: int, eos: set[int]) -> list[int]:
    """Plain argmax decoding with no logits processor at all (no cache, full forwards)."""
    ids, mm = inputs["input_ids"], inputs["mm_token_type_ids"]
    new: list[int] = []
    for _ in range(steps):
        with torch.no_grad():
            logits = model(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                mm_token_type_ids=mm,
                pixel_values=inputs["pixel_values"],
                image_grid_thw=inputs["image_grid_thw"],
            ).logits
        token = int(logits[0, -1].argmax())
        new.append(token)
        if token in eos:
            break
        ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
        mm = torch.cat([mm, torch.zeros((1, 1), dtype=mm.dtype)], dim=1)
    return new


def test_greedy_inspector_ignores_the_checkpoints_sampling_and_penalty(release_ckpt, tmp_path):
    from omniad_core.inspector import Inspector

    ckpt = _copy(release_ckpt, tmp_path)
    gen = json.loads((ckpt / "generation_config.json").read_text())
    assert gen["do_sample"] is True and gen["repetition_penalty"] == 1.05  # as released
    # a penalty strong enough to change this random model's argmax path (1.05 rarely does)
    _edit_json(ckpt / "generation_config.json", repetition_penalty=3.0)
    insp = Inspector.from_pretrained(ckpt, max_new_tokens=24)
    effective, _ = insp.model._prepare_generation_config(None, **insp.generation_kwargs)
    assert effective.do_sample is False and effective.num_beams == 1
    assert (effective.temperature, effective.top_p, effective.top_k) == (None, None, None)
    assert effective.repetition_penalty == 1.0
    image = (np.random.default_rng(0).random((64, 80, 3)) * 255).astype(np.uint8)
    first, second = insp.analyze(image), insp.analyze(image)
    assert first.response == second.response
    text, images, *_ = insp._prepare(image, None, None, None)
    inputs = insp.processor(text=[text], images=images, return_tensors="pt", padding=True)
    want = _greedy_reference(insp.model, inputs, 24, set(gen["eos_token_id"]))
    assert first.response == insp.processor.decode(want, skip_special_tokens=True)
    asked = Inspector(insp.model, insp.processor, generation_kwargs={"repetition_penalty": 1.05})
    assert asked.generation_kwargs["repetition_penalty"] == 1.05  # unless asked


# ------------------------------------------------------------------ 7: image budget
def test_inspector_pins_the_image_budget_to_its_image_size(release_ckpt):
    from omniad_core.inspector import Inspector, image_token_count

    insp = Inspector.from_pretrained(release_ckpt, max_new_tokens=2)  # image_size 512
    assert insp.image_size == 512
    assert image_token_count(insp.processor, 512, 512) == 324
    assert image_token_count(insp.processor, 1500, 2000) <= 324  # the release: 3888
    big = Image.new("RGB", (2000, 1500), (10, 200, 90))
    text, images, *_ = insp._prepare(big, None, None, None)
    inputs = insp.processor(text=[text], images=images, return_tensors="pt")
    assert _image_tokens(insp.processor, inputs["input_ids"]) == [324]


def test_training_processor_pins_the_budget_in_the_collate_path(release_ckpt):
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    from omniad_train.modeling import load_model_and_processor

    _, processor = load_model_and_processor(_model_args(release_ckpt), _CPU_ARGS, image_size=512)
    collate = DataCollatorForVisionLanguageModeling(processor, completion_only_loss=True)

    def example(w: int, h: int) -> dict:
        return {
            "prompt": [
                {
                    "role": "user",
                    "content": [{"type": "image"}, {"type": "text", "text": "Defect?"}],
                }
            ],
            "completion": [{"role": "assistant", "content": [{"type": "text", "text": "No."}]}],
            "images": [Image.new("RGB", (w, h), (40, 40, 40))],
        }

    batch = collate([example(2000, 1500), example(2000, 2000), example(512, 512)])
    # 2000 x 1500 keeps its aspect within the 512 x 512 budget (15 x 20 tokens); the
    # release's budget gave it 54 x 72 = 3888
    assert _image_tokens(processor, batch["input_ids"]) == [300, 324, 324]


# ------------------------------------------------------------------ 8: LoRA merge
def _lora_model(base: Path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(base, dtype=torch.float32)
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # a trained adapter: B is no longer zero
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    return peft.eval()


def _logits(model, processor) -> torch.Tensor:
    text = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Defect?"}]}],
        add_generation_prompt=True,
        tokenize=False,
    )
    inputs = processor(
        text=[text], images=[Image.new("RGB", (56, 56), (9, 99, 199))], return_tensors="pt"
    )
    with torch.no_grad():
        return model(**inputs).logits


def test_lora_merges_equal_the_unmerged_forward(release_ckpt, tmp_path):
    from transformers import AutoModelForImageTextToText, Trainer, TrainingArguments

    from omniad_core.inspector import load_processor
    from omniad_train.modeling import merge_lora, save_final

    processor = load_processor(release_ckpt)
    peft = _lora_model(release_ckpt)
    want = _logits(peft, processor)
    out = tmp_path / "final"
    trainer = Trainer(model=peft, args=TrainingArguments(str(out), use_cpu=True, report_to="none"))
    save_final(trainer, processor, SimpleNamespace(grid=24, image_size=56), None)  # in memory
    separate = merge_lora(release_ckpt, out / "adapter", tmp_path / "merged", dtype=torch.float32)
    for folder in (out, separate):
        merged = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32).eval()
        assert not any("lora" in n for n, _ in merged.named_parameters())
        diff = (_logits(merged, processor) - want).abs().max().item()
        assert diff < 1e-4, (folder, diff)


def _mvtec(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for cat in ("bottle", "tile"):
        for split, kinds in (("train", ("good",)), ("test", ("good", "scratch"))):
            for kind in kinds:
                for k in range(3):
                    p = root / cat / split / kind / f"{k:03d}.png"
                    p.parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray((rng.random((64, 64, 3)) * 255).astype(np.uint8)).save(p)
                    if kind != "good":
                        m = np.zeros((64, 64), np.uint8)
                        m[10:30, 20:26] = 255
                        mp = root / cat / "ground_truth" / kind / f"{k:03d}_mask.png"
                        mp.parent.mkdir(parents=True, exist_ok=True)
                        Image.fromarray(m).save(mp)
    return root


@pytest.mark.slow
def test_zero3_lora_run_merges_the_whole_weights(tmp_path):
    """Two processes under DeepSpeed ZeRO-3: the merged model is the saved (gathered)
    adapter merged into the whole base weights, not into rank 0's partitions."""
    pytest.importorskip("deepspeed")
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForImageTextToText

    from omniad_train.data.prepare import prepare
    from omniad_train.tiny import TinyConfig, build_tiny_qwen2_5_vl

    base = build_tiny_qwen2_5_vl(tmp_path / "tiny", TinyConfig.test())
    data = tmp_path / "prepared"
    prepare(data, mvtec_root=_mvtec(tmp_path / "mvtec"), image_size=56, grid=24, seed=0)
    out = tmp_path / "lora"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29547",
        "-m",
        "omniad_train",
        "sft",
        "--model_name_or_path",
        str(base),
        "--dataset_path",
        str(data),
        "--image_size",
        "56",
        "--output_dir",
        str(out),
        "--use_cpu",
        "true",
        "--bf16",
        "false",
        "--gradient_checkpointing",
        "false",
        "--report_to",
        "none",
        "--dataloader_num_workers",
        "0",
        "--per_device_train_batch_size",
        "1",
        "--learning_rate",
        "5e-2",
        "--max_length",
        "1024",
        "--max_steps",
        "1",
        "--save_strategy",
        "no",
        "--use_peft",
        "true",
        "--lora_r",
        "4",
        "--lora_alpha",
        "8",
        "--lora_target_modules",
        "q_proj",
        "v_proj",
        "--deepspeed",
        str(ROOT / "omniad_train" / "recipes" / "deepspeed" / "zero3.json"),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
    assert "merged in a separate step" in run.stderr
    adapter = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in adapter.items())  # it trained
    whole = AutoModelForImageTextToText.from_pretrained(base, dtype=torch.float32)
    merged_here = PeftModel.from_pretrained(whole, str(out / "adapter")).merge_and_unload()
    merged_here.save_pretrained(tmp_path / "expected")  # the whole weights, merged on one process
    expected = load_file(str(tmp_path / "expected" / "model.safetensors"))
    merged = load_file(str(out / "model.safetensors"))
    base_weights = load_file(str(base / "model.safetensors"))
    assert set(merged) == set(base_weights) == set(expected)
    changed = [k for k in merged if not torch.equal(merged[k], base_weights[k])]
    assert changed and all("q_proj" in k or "v_proj" in k for k in changed)
    for key, value in merged.items():
        assert value.shape == base_weights[key].shape, key  # no partition fragments
        assert torch.allclose(value.float(), expected[key].float(), atol=1e-6), key
