"""Test configuration: make the oracle importable, set hypothesis defaults, shared fixtures.

Set TEXTMASK_EXAMPLES_SCALE (e.g. 10) to run every property test with more examples.
"""

import os
import sys

import pytest
from hypothesis import HealthCheck, settings

sys.path.insert(0, os.path.dirname(__file__))

settings.register_profile(
    "textmask",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# NUMBA_DISABLE_JIT=1 runs the kernels as plain Python: fewer examples keep it quick
settings.register_profile(
    "nojit",
    deadline=None,
    max_examples=12,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("TEXTMASK_HYPOTHESIS_PROFILE", "textmask"))


@pytest.fixture(scope="session")
def release_ckpt(tmp_path_factory):
    """A tiny checkpoint folder shaped like the hub's Qwen2.5-VL-7B-Instruct, built once.

    Right-padding tokenizer, sampling generation config with repetition penalty 1.05, the
    release's pixel budgets, flat config and sharded bf16 weights: see
    :mod:`omniad_train.tiny_release`. Read-only: copy it before changing any file in it.
    """
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from omniad_train.tiny import build_release_shaped

    return build_release_shaped(tmp_path_factory.mktemp("release") / "Qwen2.5-VL-7B-Instruct")


# --------------------------------------------------------------------- a served model
#: Seconds a `transformers serve` process gets to answer GET /v1/models.
SERVE_STARTUP_TIMEOUT = 180.0


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServedModel:
    """A `transformers serve` process on 127.0.0.1 serving one checkpoint folder.

    ``base_url`` is the API root (``http://127.0.0.1:PORT/v1``), ``model`` the name the
    server lists (``transformers serve`` names a model by the folder it was given),
    ``log`` the file holding the server's output.
    """

    def __init__(self, model_dir, log_path, extra_args=()):
        import subprocess
        import time
        import urllib.request

        for mod in ("fastapi", "uvicorn", "starlette", "openai"):
            try:
                __import__(mod)
            except ImportError:
                pytest.fail(
                    f"`transformers serve` needs {mod}: install the dev extra "
                    "(pip install -e '.[all,dev]')"
                )
        port = _free_port()
        self.model = str(model_dir)
        self.base_url = f"http://127.0.0.1:{port}/v1"
        self.log = log_path
        exe = os.path.join(os.path.dirname(sys.executable), "transformers")
        cmd = (
            [exe]
            if os.path.exists(exe)
            else [sys.executable, "-m", "transformers.cli.transformers"]
        )
        cmd += ["serve", self.model, "--device", "cpu", "--host", "127.0.0.1", "--port", str(port)]
        cmd += list(extra_args)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
        self._out = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=self._out, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + SERVE_STARTUP_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                self.stop()
                pytest.fail(f"transformers serve exited with {self.proc.returncode}: {self.tail()}")
            try:
                with urllib.request.urlopen(self.base_url + "/models", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(
                    f"transformers serve did not answer {self.base_url}/models within "
                    f"{SERVE_STARTUP_TIMEOUT:.0f} s: {self.tail()}"
                )
            time.sleep(0.5)

    def tail(self, n: int = 1500) -> str:
        try:
            return open(self.log, "rb").read()[-n:].decode("utf-8", "replace")
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s); idempotent."""
        import subprocess

        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._out.close()


@pytest.fixture(scope="session")
def served_demo(tmp_path_factory):
    """``(base_url, model_name)`` of `transformers serve` running the embedded demo model.

    Started once per session on a free port of 127.0.0.1 (on the CPU), waited for until
    GET /v1/models answers (a clear failure after :data:`SERVE_STARTUP_TIMEOUT`), stopped
    at the end of the session.
    """
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from omniad_core.checkpoint import demo_model_path

    model = demo_model_path()
    if model is None:
        pytest.fail("omniad_core/demo_model has no model.safetensors")
    server = ServedModel(model, tmp_path_factory.mktemp("serve") / "serve.log")
    try:
        yield server.base_url, server.model
    finally:
        server.stop()


@pytest.fixture
def demo_server_factory(tmp_path):
    """Start further short-lived demo servers (``factory() -> ServedModel``; ``.stop()``
    ends one early); every one still running is stopped when the test ends."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from omniad_core.checkpoint import demo_model_path

    started = []

    def factory(extra_args=()):
        server = ServedModel(
            demo_model_path(), tmp_path / f"serve{len(started)}.log", extra_args=extra_args
        )
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


# --------------------------------------------------------------- folder inspection and UI
@pytest.fixture(scope="session")
def demo_inspector():
    """The embedded demo model in this process (an Inspector), loaded once per session."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from omniad_core.checkpoint import demo_model_path
    from omniad_core.inspector import Inspector

    path = demo_model_path()
    if path is None:
        pytest.fail("omniad_core/demo_model has no model.safetensors")
    return Inspector.from_pretrained(path)


def write_test_image(path, seed, size=(48, 64), kind="noise"):
    """Write a generated RGB image (PIL) to ``path`` and return the path.

    ``kind``: "noise" (uniform noise) or "smooth" (a soft gradient with a little noise).
    """
    import numpy as np
    from PIL import Image

    h, w = size
    rng = np.random.default_rng(seed)
    if kind == "smooth":
        yy, xx = np.mgrid[0:h, 0:w]
        base = (96 + 40 * np.sin(xx / 7.0 + seed) + 30 * np.cos(yy / 9.0))[..., None]
        arr = np.clip(base + rng.normal(0, 4, (h, w, 3)), 0, 255).astype(np.uint8)
    else:
        arr = (rng.random((h, w, 3)) * 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


@pytest.fixture
def broken_image_folder(tmp_path):
    """A folder of generated images with broken files among them.

    Good: ``a0..a3.png`` (48x64), ``sub/b0.jpg``, ``sub/b1.png`` (40x40).  Broken: ``trunc.png``
    (a PNG cut in half), ``notes.png`` (a text file), ``x.png/`` (a folder named like an
    image, holding an image that must not be walked).  Returns ``(folder, good_ids,
    broken_ids)``.
    """
    root = tmp_path / "images"
    good = []
    for k in range(4):
        write_test_image(root / f"a{k}.png", k, kind="smooth" if k % 2 else "noise")
        good.append(f"a{k}.png")
    write_test_image(root / "sub" / "b0.jpg", 10, size=(40, 40))
    write_test_image(root / "sub" / "b1.png", 11, size=(40, 40), kind="smooth")
    good += ["sub/b0.jpg", "sub/b1.png"]
    data = (root / "a0.png").read_bytes()
    (root / "trunc.png").write_bytes(data[: len(data) // 2])
    (root / "notes.png").write_text("not an image\n")
    write_test_image(root / "x.png" / "inside.png", 99)
    return root, sorted(good), ["notes.png", "trunc.png", "x.png"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A tiny offline Qwen2.5-VL saved to a folder: the model of the training tests."""
    from omniad_train.tiny import TinyConfig, build_tiny_qwen2_5_vl

    return build_tiny_qwen2_5_vl(tmp_path_factory.mktemp("model") / "tiny", TinyConfig.test())
