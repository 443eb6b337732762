"""A served model as a backend: OpenAI-compatible endpoint, rebuilt replies, retries.

The server tests run the real `transformers serve` with the embedded demo model
(``served_demo`` in conftest.py, started once per session on 127.0.0.1).  Retry-policy
tests use a small stdlib HTTP server in this file that answers with set status codes: it
stands in for an overloaded server, the client under test is the real one.
"""

from __future__ import annotations

import base64
import io
import json
import random
import threading
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from omniad_core.backends import (
    SEG_STRIPPED,
    EndpointBackend,
    EndpointError,
    backoff_delays,
    image_data_url,
    is_retryable,
    normalize_base_url,
    rebuild_response,
    to_openai_messages,
)
from omniad_core.prompts import REFERENCE_PREFIX, build_messages, split_images

# Non-streamed replies of `transformers serve` (transformers 5.24, the embedded demo model,
# synthetic leather images, greedy), recorded from the real server: the <think> text is in
# reasoning_content, content keeps <answer> only, and the <seg> block is gone.  In process
# the same model wrote "<seg>(1, 1)-(1, 2), (2, 1)-(2, 2)</seg><think>...</think><answer>A</answer>".
RECORDED_SPLIT = [
    {
        "content": "<answer>A</answer>",
        "reasoning_content": "According to the segmentation result, there is an anomaly in "
        "the object, which is located in the left top. The anomalous area is a compact region, "
        "covering about 2% of the image. So the object has a defect: the answer is A.",
        "finish_reason": "stop",
    },
    {
        "content": "<answer>B</answer>",
        "reasoning_content": "According to the segmentation result, there is no anomaly in "
        "the object. Therefore the object is free of defects, and the answer is B.",
        "finish_reason": "stop",
    },
]
# The same request streamed: the seg survives in the content deltas.
RECORDED_STREAMED = {
    "content": "<seg>(1, 1)-(1, 2), (2, 1)-(2, 2)</seg><answer>A</answer>",
    "reasoning_content": RECORDED_SPLIT[0]["reasoning_content"],
}


# --------------------------------------------------------------------------- rebuild
def test_recorded_split_replies_are_detected_as_seg_stripped():
    for reply in RECORDED_SPLIT:
        text, stripped = rebuild_response(reply["content"], reply["reasoning_content"])
        assert stripped
        assert text == f"<think>{reply['reasoning_content']}</think>{reply['content']}"


def test_recorded_streamed_reply_is_rebuilt_in_order():
    text, stripped = rebuild_response(
        RECORDED_STREAMED["content"], RECORDED_STREAMED["reasoning_content"]
    )
    assert not stripped
    assert text == (
        "<seg>(1, 1)-(1, 2), (2, 1)-(2, 2)</seg><think>"
        + RECORDED_STREAMED["reasoning_content"]
        + "</think><answer>A</answer>"
    )


_plain = st.text(alphabet=st.characters(blacklist_characters="<>\\"), max_size=40)


@given(seg=_plain, think=_plain.filter(lambda t: t.strip() == t and t), answer=_plain)
def test_rebuild_restores_any_split(seg, think, answer):
    full = f"<seg>{seg}</seg><think>{think}</think><answer>{answer}</answer>"
    # a reasoning parser may keep the seg in content or move it into the reasoning
    for content, reasoning in (
        (f"<seg>{seg}</seg><answer>{answer}</answer>", think),
        (f"<answer>{answer}</answer>", f"<seg>{seg}</seg>{think}"),
        (f"<answer>{answer}</answer>", f"<think><seg>{seg}</seg>{think}</think>"),
    ):
        assert rebuild_response(content, reasoning) == (full, False)
    assert rebuild_response(full, None) == (full, False)  # untouched text stays as it is
    assert rebuild_response(full, "") == (full, False)


def test_rebuild_of_a_truncated_reply_stays_truncated():
    from omniad_core.parsing import parse_response

    text, _ = rebuild_response("<seg>(1, 1)</seg>", "the defect is", truncated=True)
    assert text == "<seg>(1, 1)</seg><think>the defect is"
    assert parse_response(text).truncated


# --------------------------------------------------------------------------- messages
def test_image_data_url_is_lossless_png():
    from PIL import Image

    arr = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    url = image_data_url(Image.fromarray(arr))
    head, data = url.split(",", 1)
    assert head == "data:image/png;base64"
    back = Image.open(io.BytesIO(base64.b64decode(data)))
    assert back.format == "PNG" and np.array_equal(np.asarray(back.convert("RGB")), arr)


def test_one_shot_sends_reference_then_query():
    from PIL import Image

    ref, query = Image.new("RGB", (4, 4), (0, 0, 0)), Image.new("RGB", (4, 4), (255, 255, 255))
    msgs, imgs = split_images(build_messages("Q?", query, options=["x", "y"], reference=ref))
    out = to_openai_messages(msgs, imgs)
    assert out[0]["role"] == "system" and isinstance(out[0]["content"], str)
    parts = out[1]["content"]
    assert [p["type"] for p in parts] == ["image_url", "text", "image_url", "text"]
    assert parts[1]["text"] == REFERENCE_PREFIX
    assert parts[0]["image_url"]["url"] == image_data_url(ref)
    assert parts[2]["image_url"]["url"] == image_data_url(query)
    with pytest.raises(ValueError, match="images"):
        to_openai_messages(msgs, imgs[:1])


# --------------------------------------------------------------------------- retries
def test_backoff_schedule_is_exponential_with_seeded_jitter():
    a = backoff_delays(6, 0.5, random.Random(7))
    assert a == backoff_delays(6, 0.5, random.Random(7))  # deterministic for a seed
    assert a != backoff_delays(6, 0.5, random.Random(8))  # jittered
    for k, d in enumerate(a):
        full = 0.5 * 2**k
        assert full / 2 <= d <= full + 1e-4
    assert max(backoff_delays(20, 1.0, random.Random(0), cap=10.0)) <= 10.0


def test_retry_policy():
    assert all(is_retryable(s) for s in (None, 408, 429, 500, 502, 503, 504))
    assert not any(is_retryable(s) for s in (400, 401, 403, 404, 413, 422))


def test_base_url_forms():
    assert normalize_base_url("http://h:1") == "http://h:1/v1"
    assert normalize_base_url("http://h:1/v1/") == "http://h:1/v1"
    assert normalize_base_url("https://x.org/openai/v1") == "https://x.org/openai/v1"
    for bad in ("", "localhost:8000", "ftp://h/v1"):
        with pytest.raises(EndpointError):
            normalize_base_url(bad)


class _Scripted(BaseHTTPRequestHandler):
    """Answers POSTs with the statuses in ``server.script`` (then 200 with a reply)."""

    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):
        self._send(200, {"object": "list", "data": [{"id": "m", "object": "model"}]})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        with self.server.lock:
            self.server.bodies.append(body)
            self.server.posts += 1
            self.server.auth.append(self.headers.get("Authorization"))
            status = self.server.script.pop(0) if self.server.script else 200
        if status != 200:
            self._send(status, {"error": {"message": f"scripted {status}"}})
            return
        text = "<seg></seg><think>ok</think><answer>B</answer>"
        self._send(
            200,
            {
                "model": "m",
                "choices": [
                    {"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                ],
                "usage": {"prompt_tokens": 3, "completion_tokens": 5},
            },
        )

    def _send(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def scripted():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Scripted)
    server.script, server.posts, server.auth, server.bodies = [], 0, [], []
    server.lock = threading.Lock()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def _conversation():
    from PIL import Image

    msgs, imgs = split_images(build_messages("Q?", Image.new("RGB", (4, 4)), options=["x", "y"]))
    return msgs, imgs


def test_retries_429_and_5xx_then_succeeds(scripted):
    server, url = scripted
    server.script = [429, 503, 500]
    backend = EndpointBackend(
        url, "m", concurrency=1, retries=4, backoff=0.001, seed=0, stream=False
    )
    msgs, imgs = _conversation()
    (gen,) = backend.generate([msgs], [imgs], max_new_tokens=8)
    assert gen.ok and gen.raw["attempts"] == 4 and server.posts == 4
    assert gen.completion_tokens == 5 and gen.text.endswith("<answer>B</answer>")


def test_no_retry_on_a_client_error_and_a_failure_is_a_result(scripted):
    server, url = scripted
    server.script = [400, 503, 503]
    backend = EndpointBackend(
        url, "m", concurrency=1, retries=1, backoff=0.001, seed=0, stream=False
    )
    msgs, imgs = _conversation()
    first, second = backend.generate([msgs, msgs], [imgs, imgs], max_new_tokens=8)
    assert first.error is not None and "HTTP 400" in first.error and first.raw["attempts"] == 1
    assert second.error is not None and "HTTP 503" in second.error and second.raw["attempts"] == 2
    assert server.posts == 3 and "\n" not in first.error + second.error


def test_the_key_comes_from_the_named_variable_and_is_never_shown(scripted, monkeypatch):
    server, url = scripted
    secret = "sk-test-very-secret-123"
    monkeypatch.setenv("OMNIAD_TEST_KEY", secret)
    server.script = [500, 500]
    backend = EndpointBackend(url, "m", api_key_env="OMNIAD_TEST_KEY", retries=0, stream=False)
    backend.check()
    msgs, imgs = _conversation()
    (gen,) = backend.generate([msgs], [imgs], max_new_tokens=8)
    assert server.auth == [f"Bearer {secret}"]  # sent as a bearer token
    shown = repr(backend) + str(gen) + json.dumps(gen.raw) + str(vars(gen))
    assert secret not in shown and "OMNIAD_TEST_KEY" in repr(backend)


def test_an_unreachable_server_fails_every_item_and_gives_up_early():
    port = _closed_port()
    backend = EndpointBackend(
        f"http://127.0.0.1:{port}",
        "m",
        concurrency=1,
        retries=1,
        backoff=0.001,
        seed=0,
        give_up_after=2,
    )
    msgs, imgs = _conversation()
    gens = backend.generate([msgs] * 5, [imgs] * 5, max_new_tokens=8)
    assert all(g.error is not None and g.text is None for g in gens)
    assert [g.raw["attempts"] for g in gens] == [2, 2, 0, 0, 0]  # the rest were not sent
    assert "not sent" in gens[-1].error and "cannot reach" in gens[0].error


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- the real server
@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Synthetic images the demo model never saw: defective and normal, one reference."""
    pytest.importorskip("trl")
    from omniad_core.checkpoint import demo_model_path, load_spec
    from omniad_train.synthetic import generate

    model = demo_model_path()
    spec = load_spec(model)
    cats = json.loads((model / "demo_plan.json").read_text())["categories"]
    root = tmp_path_factory.mktemp("endpoint_images")
    generate(
        root,
        split="test",
        seed=4242,
        n_train_good=1,
        n_test_good=1,
        n_test_defect_per_type=1,
        image_size=spec["image_size"],
        categories=cats[:2],
        progress=False,
    )
    synth = root / "synth"
    test = sorted(p for p in synth.glob("*/test/*/*.png"))
    good = sorted(synth.glob("*/train/good/*.png"))
    return [str(p) for p in test[:4]], str(good[0])


@pytest.fixture(scope="module")
def local():
    import torch

    from omniad_core import Inspector
    from omniad_core.checkpoint import demo_model_path

    torch.set_num_threads(1)
    return Inspector.from_pretrained(demo_model_path(), max_new_tokens=256)


def _endpoint(served, **kw):
    from omniad_core import Inspector

    base_url, model = served
    return Inspector.from_endpoint(base_url, model, max_new_tokens=256, **kw)


def test_endpoint_answers_as_in_process(served_demo, local, images):
    paths, reference = images
    remote = _endpoint(served_demo, concurrency=2)
    assert remote.settings.grid == local.settings.grid  # read from the served folder's spec
    assert remote.image_size == local.image_size == 224
    refs = [None, None, reference, reference]
    got = remote.analyze_batch(paths, references=refs, progress=False)
    want = local.analyze_batch(paths, references=refs, progress=False)
    for g, w in zip(got, want, strict=True):
        assert g.error is None and not g.seg_stripped, (g.error, g.raw)
        assert g.response == w.response  # rebuilt exactly: seg, think, answer
        assert g.answer == w.answer and g.parsed.seg_canonical == w.parsed.seg_canonical
        assert np.array_equal(g.mask, w.mask)
        assert g.raw["reasoning_content"]  # the server did split it
        assert g.completion_tokens and g.prompt_tokens
    assert any(w.is_anomalous for w in want)  # the comparison covers a non-empty mask


def test_the_non_streamed_reply_of_transformers_serve_loses_the_seg(served_demo, images):
    from omniad_core.backends import EndpointBackend

    paths, _ = images
    remote = _endpoint(served_demo)
    remote.backend = EndpointBackend(*served_demo, stream=False)
    result = remote.analyze(paths[0])
    assert result.seg_stripped and result.error is None
    assert result.parsed.problems[0] == SEG_STRIPPED
    assert "--reasoning-parser" in SEG_STRIPPED and "streaming" in SEG_STRIPPED
    assert result.raw["content"].startswith("<answer>") and "<seg>" not in result.raw["content"]
    assert result.answer in {"A", "B"} and not result.parsed.format_ok


@pytest.mark.parametrize("case", ["unset key variable", "unreachable URL", "wrong model name"])
def test_bad_endpoint_settings_fail_before_any_work(served_demo, case, monkeypatch, tmp_path):
    import subprocess
    import sys

    from PIL import Image

    base_url, model = served_demo
    args = {"endpoint": base_url, "served-model": model}
    if case == "unset key variable":
        monkeypatch.delenv("OMNIAD_NO_SUCH_KEY", raising=False)
        args["api-key-env"] = "OMNIAD_NO_SUCH_KEY"
        expect = "OMNIAD_NO_SUCH_KEY is not set"
    elif case == "unreachable URL":
        args["endpoint"] = f"http://127.0.0.1:{_closed_port()}/v1"
        expect = "cannot reach"
    else:
        args["served-model"] = "no-such-model"
        expect = f"does not serve a model named 'no-such-model'; it lists '{model}'"
    with pytest.raises(EndpointError, match=expect.split(";")[0].replace("'", ".")):
        _endpoint((args["endpoint"], args["served-model"]), api_key_env=args.get("api-key-env"))
    # the command line: one line, exit 1, no overlay written (no work done)
    img = tmp_path / "part.png"
    Image.new("RGB", (32, 32)).save(img)
    cli = [
        sys.executable,
        "-m",
        "omniad_core",
        "inspect",
        str(img),
        "--overlay",
        str(tmp_path / "o.png"),
    ] + [x for k, v in args.items() for x in (f"--{k}", v)]
    proc = subprocess.run(cli, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("omniad inspect: error: ") and expect in lines[0]
    assert not (tmp_path / "o.png").exists()


def test_omniad_inspect_via_the_endpoint(served_demo, local, images, tmp_path):
    import subprocess
    import sys

    base_url, model = served_demo
    paths, _ = images
    want = local.analyze(paths[0])
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "omniad_core",
            "inspect",
            paths[0],
            "--json",
            "--endpoint",
            base_url,
            "--served_model",
            model,
            "--concurrency",
            "2",
            "--max_new_tokens",
            "256",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["response"] == want.response and out["seg"] == want.parsed.seg_canonical
    assert out["error"] is None and out["raw"]["reasoning_content"]


def test_a_server_stopped_mid_batch_gives_per_item_errors(
    demo_server_factory, served_demo, local, images
):
    from omniad_core import Inspector

    paths, _ = images
    server = demo_server_factory()
    insp = Inspector.from_endpoint(
        server.base_url, server.model, concurrency=1, retries=1, backoff=0.01, max_new_tokens=256
    )
    prepared = [insp._prepare_messages(p, None, None, None) for p in paths]
    finished = []

    def stop_after_first(i, gen):
        finished.append(i)
        if len(finished) == 1:
            server.stop()  # the server goes away while the batch is running

    gens = insp.backend.generate(
        [p[0] for p in prepared],
        [p[1] for p in prepared],
        max_new_tokens=256,
        on_result=stop_after_first,
    )
    assert len(gens) == len(paths) and gens[0].ok
    assert all(g.error is not None and "cannot reach" in g.error for g in gens[1:])
    # through the Inspector: failures are results with the reason, not an exception
    results = insp.analyze_batch(paths, progress=False)
    assert all(r.error and not r.ok and not r.mask.any() for r in results)
    assert "request failed" in results[0].parsed.problems[0]
    # a re-run of the failed items against a live server completes them
    again = _endpoint(served_demo).analyze_batch(paths[1:], progress=False)
    want = local.analyze_batch(paths[1:], progress=False)
    assert [r.response for r in again] == [w.response for w in want]


def test_from_endpoint_warns_when_settings_are_defaults(served_demo):
    from omniad_core import Inspector

    base_url, _ = served_demo
    with pytest.warns(UserWarning, match="grid, image_size, system_prompt take the paper's"):
        insp = Inspector.from_endpoint(base_url, "served-name", check=False)
    assert insp.grid.shape == (24, 24) and insp.image_size == 512
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _endpoint(served_demo)  # a served folder with omniad.json: its settings, no warning
        Inspector.from_endpoint(
            base_url, "x", check=False, grid=8, image_size=224, system_prompt=None
        )


def test_the_request_is_greedy_with_the_budget_and_extra_fields(scripted):
    server, url = scripted
    extra = {"repetition_penalty": 1.0, "model": "not-this-one"}
    backend = EndpointBackend(url, "m", extra_body=extra, stream=False)
    msgs, imgs = _conversation()
    backend.generate([msgs], [imgs], max_new_tokens=77)
    (body,) = server.bodies
    assert body["temperature"] == 0.0 and body["max_tokens"] == 77 and body["model"] == "m"
    assert body["repetition_penalty"] == 1.0 and body["stream"] is False
    assert [p["type"] for p in body["messages"][1]["content"]] == ["image_url", "text"]


def test_the_vllm_backend_names_its_install_when_vllm_is_missing():
    import importlib.util

    from omniad_core.backends import VLLMBackend
    from omniad_core.checkpoint import MissingPackageError

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed: the GPU check exercises this backend")
    with pytest.raises(MissingPackageError, match="pip install vllm"):
        VLLMBackend("runs/omniad-7b")
