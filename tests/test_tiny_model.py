"""The tiny offline Qwen2.5-VL of omniad_train.tiny: build, save, load, chat, generate, train."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
np = pytest.importorskip("numpy")
Image = pytest.importorskip("PIL.Image")

from omniad_core.prompts import SYSTEM_PROMPT  # noqa: E402
from omniad_train.tiny import (  # noqa: E402
    QWEN_SPECIAL_TOKENS,
    TinyConfig,
    build_processor,
    build_tiny_qwen2_5_vl,
    build_tokenizer,
    load_tiny,
    qwen_processor_available,
)

RESPONSE = (
    "<seg>(3, 4)-(3, 6)</seg><think>According to the segmentation result, there is an "
    "anomaly in the object, which is located in the left top.</think><answer>A</answer>"
)
QUESTION = "Is there any defect in the object?\nA: Yes\nB: No"


def _image(size: tuple[int, int], seed: int = 0):
    """A random RGB PIL image of ``size`` = (width, height)."""
    w, h = size
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def _messages(question: str = QUESTION, response: str | None = None) -> list[dict]:
    messages = [
        {"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]},
    ]
    if response is not None:
        messages.append({"role": "assistant", "content": [{"type": "text", "text": response}]})
    return messages


def _state_dict(path) -> dict:
    from safetensors.torch import load_file

    return load_file(os.fspath(path / "model.safetensors"))


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    return build_tiny_qwen2_5_vl(tmp_path_factory.mktemp("tiny") / "model", TinyConfig.test())


@pytest.fixture(scope="session")
def tiny(tiny_dir):
    return load_tiny(tiny_dir)


@pytest.fixture
def no_network(monkeypatch):
    """Offline mode for the hub, and any attempt to open a connection fails the test."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


# --------------------------------------------------------------------------- build


def test_same_config_gives_identical_weights_and_seed_changes_them(tiny_dir, tmp_path):
    again = _state_dict(build_tiny_qwen2_5_vl(tmp_path / "again", TinyConfig.test()))
    first = _state_dict(tiny_dir)
    assert again.keys() == first.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)

    other = _state_dict(build_tiny_qwen2_5_vl(tmp_path / "seed1", TinyConfig.test(seed=1)))
    assert other.keys() == first.keys()
    assert not torch.equal(first["lm_head.weight"], other["lm_head.weight"])
    assert sum(not torch.equal(first[k], other[k]) for k in first) > len(first) // 3


def test_build_leaves_global_rng_alone(tmp_path):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_tiny_qwen2_5_vl(tmp_path / "m", TinyConfig.test(seed=7))
    assert torch.equal(torch.rand(3), expected)


def test_config_presets_and_validation():
    test, demo = TinyConfig.test(), TinyConfig.demo()
    assert test == TinyConfig()
    for cfg in (test, demo):
        cfg.validate()
        assert sum(cfg.mrope_section) == cfg.head_dim // 2
    assert demo.hidden_size > test.hidden_size and demo.num_layers >= 4
    assert TinyConfig.demo(seed=5).seed == 5
    with pytest.raises(ValueError, match="num_heads"):
        TinyConfig.test(num_heads=3).validate()


def test_saved_folder_is_safetensors_and_loads_offline(tiny_dir, no_network):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    names = {p.name for p in tiny_dir.iterdir()}
    assert {"model.safetensors", "config.json", "generation_config.json"} <= names
    assert {"tokenizer.json", "processor_config.json", "chat_template.jinja"} <= names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pth", ".pkl", ".pickle"))]

    model = AutoModelForImageTextToText.from_pretrained(tiny_dir, dtype=torch.float32)
    processor = AutoProcessor.from_pretrained(tiny_dir)
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert model.config.model_type == "qwen2_5_vl"
    n_params = sum(p.numel() for p in model.parameters())
    assert 50_000 < n_params < 300_000, n_params

    tok = processor.tokenizer
    ids = {t: tok.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}
    assert list(ids.values()) == list(range(ids["<|endoftext|>"], ids["<|endoftext|>"] + 14))
    assert model.config.image_token_id == ids["<|image_pad|>"]
    assert model.config.video_token_id == ids["<|video_pad|>"]
    assert model.config.vision_start_token_id == ids["<|vision_start|>"]
    assert model.config.vision_end_token_id == ids["<|vision_end|>"]
    assert model.config.text_config.vocab_size == len(tok)
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    assert tok.padding_side == "left"

    gen = model.generation_config
    assert gen.eos_token_id == ids["<|im_end|>"]
    assert gen.pad_token_id == ids["<|endoftext|>"]
    assert gen.do_sample is False
    saved = json.loads((tiny_dir / "generation_config.json").read_text())
    assert saved["do_sample"] is False and saved["eos_token_id"] == ids["<|im_end|>"]


# --------------------------------------------------------------------------- chat + processor


def test_chat_template_has_qwen2_5_vl_structure(tiny):
    _, processor = tiny
    text = processor.apply_chat_template(_messages(), add_generation_prompt=True, tokenize=False)
    assert text.startswith("<|im_start|>system\n" + SYSTEM_PROMPT + "<|im_end|>\n")
    assert "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>" + QUESTION in text
    assert text.endswith("<|im_end|>\n<|im_start|>assistant\n")

    default = processor.apply_chat_template(_messages()[1:], tokenize=False)
    assert default.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n")


def test_processor_kind(tiny):
    _, processor = tiny
    expected = "Qwen2_5_VLProcessor" if qwen_processor_available() else "PaddleOCRVLProcessor"
    assert type(processor).__name__ == expected
    assert type(processor.image_processor).__name__.startswith("Qwen2VLImageProcessor")
    with pytest.raises(ValueError, match="kind"):
        build_processor(processor.tokenizer, kind="video")


def test_processor_expands_image_tokens(tiny):
    _, processor = tiny
    text = processor.apply_chat_template(_messages(), add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[text], images=[_image((64, 64))], return_tensors="pt")
    assert {"input_ids", "attention_mask", "pixel_values", "image_grid_thw"} <= set(inputs)
    grid = inputs["image_grid_thw"]
    assert grid.shape == (1, 3) and grid[0, 0] == 1
    # 64 px is resized to a multiple of 28 within [min_pixels, max_pixels].
    assert inputs["pixel_values"].shape == (int(grid.prod()), 3 * 2 * 14 * 14)
    image_pad = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert int((inputs["input_ids"] == image_pad).sum()) == int(grid.prod()) // 4


# --------------------------------------------------------------------------- generate


def test_generate_is_deterministic(tiny):
    model, processor = tiny
    text = processor.apply_chat_template(_messages(), add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[text], images=[_image((64, 64))], return_tensors="pt")
    with torch.no_grad():
        a = model.generate(**inputs, max_new_tokens=8, do_sample=False)
        b = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    n_prompt = inputs["input_ids"].shape[1]
    assert torch.equal(a, b)
    assert torch.equal(a[:, :n_prompt], inputs["input_ids"])
    assert 1 <= a.shape[1] - n_prompt <= 8
    new = a[0, n_prompt:].tolist()
    vision = {processor.tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS[9:]}
    assert not vision & set(new)  # suppressed by the generation config
    assert isinstance(processor.batch_decode(a[:, n_prompt:])[0], str)


def test_batched_generation_with_left_padding_and_two_image_sizes(tiny):
    model, processor = tiny
    texts = [
        processor.apply_chat_template(_messages(q), add_generation_prompt=True, tokenize=False)
        for q in ("Is there any defect in the object?", "Where is the defect?\nA: left\nB: top")
    ]
    images = [_image((64, 64), seed=1), _image((120, 56), seed=2)]
    batch = processor(text=texts, images=images, return_tensors="pt", padding=True)
    grids = batch["image_grid_thw"]
    assert not torch.equal(grids[0], grids[1])
    mask = batch["attention_mask"]
    assert mask[:, -1].all() and not mask[:, 0].all()  # padded on the left
    pad = processor.tokenizer.pad_token_id
    assert (batch["input_ids"][mask == 0] == pad).all()

    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=8, do_sample=False)
        logits = model(**batch).logits[:, -1]
    assert out.shape[0] == 2 and out.shape[1] <= batch["input_ids"].shape[1] + 8

    # Left padding must not change what each prompt sees: the next-token logits of each
    # row equal those of the same prompt run alone.
    for i in range(2):
        alone = processor(text=[texts[i]], images=[images[i]], return_tensors="pt")
        with torch.no_grad():
            single = model(**alone).logits[:, -1]
        torch.testing.assert_close(logits[i : i + 1], single, atol=1e-5, rtol=1e-4)


# --------------------------------------------------------------------------- training


def test_forward_with_labels_and_backward_give_finite_loss_and_gradients(tiny_dir):
    model, processor = load_tiny(tiny_dir)  # a fresh copy: this test changes .grad
    model.train()
    texts = [
        processor.apply_chat_template(_messages(response=RESPONSE), tokenize=False),
        processor.apply_chat_template(
            _messages("Any anomaly?", "<seg></seg><think>Normal.</think><answer>B</answer>"),
            tokenize=False,
        ),
    ]
    batch = processor(
        text=texts,
        images=[_image((64, 64)), _image((84, 112), 3)],
        return_tensors="pt",
        padding=True,
    )
    labels = batch["input_ids"].clone()
    labels[batch["attention_mask"] == 0] = -100
    labels[labels == model.config.image_token_id] = -100
    out = model(**batch, labels=labels)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    assert out.loss.item() > 1.0  # random weights: close to log(vocab size)
    out.loss.backward()

    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    assert any(g.abs().sum() > 0 for n, g in grads.items() if "visual" in n)
    assert grads["lm_head.weight"].abs().sum() > 0


# --------------------------------------------------------------------------- tokenizer


def test_tokenizer_round_trips_omniad_text_compactly(tiny):
    tok = tiny[1].tokenizer
    for text in (
        RESPONSE,
        SYSTEM_PROMPT,
        "<seg>(14,\n12)-(14, 15),  (47, 0)</seg>\n<think> x </think>\n<answer> B </answer>",
        "<seg>(0, 0)<\\seg><think>crack, hole; stain!</think><answer>C</answer>",
    ):
        ids = tok.encode(text, add_special_tokens=False)
        assert tok.decode(ids) == text
        assert tok.decode(ids, skip_special_tokens=True) == text
        assert len(ids) < len(text)
    assert len(tok.encode(RESPONSE, add_special_tokens=False)) <= len(RESPONSE) // 2
    # Digits are single tokens, so every coordinate 0..47 is one or two tokens.
    for n in range(48):
        pieces = tok.convert_ids_to_tokens(tok.encode(str(n), add_special_tokens=False))
        assert pieces == list(str(n))
    # Special tokens are atomic.
    for special in QWEN_SPECIAL_TOKENS:
        assert tok.encode(special, add_special_tokens=False) == [tok.convert_tokens_to_ids(special)]


def test_tokenizer_is_deterministic_and_corpus_dependent():
    a, b = build_tokenizer(), build_tokenizer()
    assert a.backend_tokenizer.to_str() == b.backend_tokenizer.to_str()
    other = build_tokenizer(["a tiny different corpus, with 1 2 3"] * 3)
    assert other.backend_tokenizer.to_str() != a.backend_tokenizer.to_str()
    assert other.decode(other.encode(RESPONSE, add_special_tokens=False)) == RESPONSE


def test_bpe_training_is_deterministic_across_processes():
    import hashlib

    from omniad_train.tiny import train_bpe

    code = (
        "import hashlib\n"
        "from omniad_train.tiny import train_bpe\n"
        "print(hashlib.sha256(train_bpe().to_str().encode()).hexdigest())\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    other = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout.strip()
    assert other == hashlib.sha256(train_bpe().to_str().encode()).hexdigest()


def test_import_does_not_import_torch_or_transformers():
    code = (
        "import sys\n"
        "import omniad_train.tiny\n"
        "heavy = [m for m in ('torch', 'transformers', 'tokenizers') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
