"""How long ``omniad inspect`` takes a user, and which CPU thread count makes it fastest.

One run measures, in fresh processes and in one process:

1. start-up: ``python -c pass``, ``omniad --help``, the torch + transformers imports
   with the garbage collector running and paused (the Inspector pauses it), first run
   and warm repeats;
2. ``omniad inspect IMG`` end to end with the embedded demo model: ``--threads 1``,
   ``--threads 0`` (torch's own setting, the behaviour before the thread policy) and the
   default (the policy);
3. the floor: the same work without omniad, in fresh processes (importing torch and
   transformers' Qwen2.5-VL classes; then also loading the embedded checkpoint and
   answering one image with transformers alone, one thread, gc paused as omniad does),
   and the codec's own start-up (``import textmask`` and a first ``encode``), with
   ``omniad inspect``'s time as a ratio of each: what omniad adds on top; and, where
   ``transformers serve`` can run, ``omniad inspect --endpoint`` against the same model
   served (a client that imports no torch);
4. one answer in process (``Inspector.analyze`` after a warm-up) for models of several
   sizes at 1 .. N threads: the measurement behind
   :data:`omniad_core.backends.threads.SMALL_MODEL_PARAMS`.

``--busy`` keeps one extra process spinning on a core during sections 2 to 4: a shared
machine, where the issue's 10-27 s came from.  Times are medians of ``--repeats`` runs
(minimum in brackets), with CPU time (user + system) for the fresh processes, which a
busy machine inflates less than wall time.  Prints Markdown tables; ``docs/speed.md``
holds a run with its command line.

    python benchmarks/bench_inspect.py                     # ~3 minutes on 2 cores
    python benchmarks/bench_inspect.py --busy --sizes test,demo
    /path/to/user-venv/bin/python benchmarks/bench_inspect.py --sizes demo   # a [model] install

Run it with the Python of the install to measure: a ``.[model]`` install has no scipy,
which transformers imports (0.2 s) whenever it is installed, as the ``dev`` extra does.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: In-process model sizes (``omniad_train.tiny.TinyConfig`` presets and enlargements).
SIZES = {
    "test": {},
    "demo": None,  # the embedded checkpoint itself
    "31M": dict(
        hidden_size=512,
        intermediate_size=1536,
        num_layers=8,
        num_heads=8,
        num_kv_heads=4,
        vision_hidden_size=256,
        vision_intermediate_size=768,
    ),
    "167M": dict(
        hidden_size=1024,
        intermediate_size=3072,
        num_layers=12,
        num_heads=16,
        num_kv_heads=4,
        vision_hidden_size=512,
        vision_intermediate_size=1536,
        vision_num_heads=8,
    ),
}

_IMPORTS = (
    "import torch, transformers\n"
    "from transformers import AutoModelForImageTextToText, AutoProcessor\n"
    "AutoProcessor.register  # the auto modules are lazy: touch them\n"
)


#: The floor: what transformers alone needs to answer one image with the embedded model
#: (argv[1]: checkpoint, argv[2]: image, argv[3]: "load" to load and answer too).
_BARE = """
import gc, sys
gc.disable()
import torch
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLForConditionalGeneration
from transformers import AutoProcessor
if sys.argv[3] == "load":
    from PIL import Image
    torch.set_num_threads(1)
    processor = AutoProcessor.from_pretrained(sys.argv[1])
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(sys.argv[1], dtype=torch.float32)
    image = Image.open(sys.argv[2]).convert("RGB").resize((224, 224))
    turn = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Defect?"}]}]
    text = processor.apply_chat_template(turn, add_generation_prompt=True)
    batch = processor(text=[text], images=[image], return_tensors="pt")
    with torch.inference_mode():
        model.generate(**batch, max_new_tokens=200, do_sample=False)
gc.freeze()
"""

_CODEC = """
import numpy as np
import textmask
mask = np.zeros((224, 224), bool)
mask[40:90, 100:150] = True
textmask.decode(textmask.encode(mask, 8), 8, shape=(224, 224))
"""


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMNIAD_NUM_THREADS")
    }
    env.update(extra)
    return env


def _run(argv: Sequence[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall, cpu) seconds of one fresh process; raises if it fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(list(argv), env=env, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def _stats(runs: list[tuple[float, float]]) -> tuple[float, float, float]:
    walls = [w for w, _ in runs]
    return statistics.median(walls), min(walls), statistics.median(c for _, c in runs)


def _omniad() -> list[str]:
    exe = Path(sys.executable).with_name("omniad")
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "omniad_core"]


def _table(title: str, header: list[str], rows: list[list[str]], note: str = "") -> str:
    lines = [f"### {title}", ""]
    if note:
        lines += [note, ""]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join([":---"] + ["---:"] * (len(header) - 1)) + "|")
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def startup(repeats: int) -> str:
    """Section 1: fresh-process start-up."""
    gc_off = "import gc; gc.disable()\n" + _IMPORTS + "gc.enable()\n"
    cases = [
        ("python -c pass", [sys.executable, "-c", "pass"]),
        ("omniad --help", [*_omniad(), "--help"]),
        ("omniad inspect --help", [*_omniad(), "inspect", "--help"]),
        ("import torch + transformers (gc running)", [sys.executable, "-c", _IMPORTS]),
        ("import torch + transformers (gc paused)", [sys.executable, "-c", gc_off]),
    ]
    rows = []
    base = None
    for label, argv in cases:
        first = _run(argv, _env())
        med, low, cpu = _stats([_run(argv, _env()) for _ in range(repeats)])
        if label.endswith("(gc running)"):
            base = med
        ratio = f"{base / med:.2f}x" if base and label.endswith("(gc paused)") else ""
        rows.append([label, f"{first[0]:.2f}", f"{med:.2f} ({low:.2f})", f"{cpu:.2f}", ratio])
    return _table(
        "Start-up (fresh processes)",
        ["command", "first run s", f"warm s, median of {repeats} (min)", "CPU s", "speed-up"],
        rows,
    )


def inspect_end_to_end(repeats: int, image: Path) -> str:
    """Section 2: ``omniad inspect IMG`` with the embedded model, per thread setting."""
    cases = [
        ("--threads 0 (torch's setting: before)", ["--threads", "0"]),
        ("--threads 1", ["--threads", "1"]),
        ("default (the policy)", []),
    ]
    argv0 = [*_omniad(), "inspect", str(image)]
    _run([*argv0, "--threads", "1"], _env())  # warm the page cache and the kernel cache
    runs: dict[str, list[tuple[float, float]]] = {label: [] for label, _ in cases}
    for _ in range(repeats):  # interleaved, so a change in machine load hits all cases
        for label, extra in cases:
            runs[label].append(_run([*argv0, *extra], _env()))
    before = _stats(runs[cases[0][0]])[0]
    rows = []
    for label, _ in cases:
        med, low, cpu = _stats(runs[label])
        rows.append([label, f"{med:.2f} ({low:.2f})", f"{cpu:.2f}", f"{before / med:.2f}x"])
    return _table(
        f"`omniad inspect {image.name}` (embedded 1.7M-parameter model), warm shell",
        ["threads", f"wall s, median of {repeats} (min)", "CPU s", "vs torch's setting"],
        rows,
    )


def floor(repeats: int, image: Path) -> str:
    """Section 3: the same work without omniad, and what omniad's time is on top of it."""
    from omniad_core import demo_model_path

    ckpt = str(demo_model_path())
    cases = [
        ("`omniad inspect` (default)", [*_omniad(), "inspect", str(image)]),
        (
            "transformers alone: import, load, answer",
            [sys.executable, "-c", _BARE, ckpt, str(image), "load"],
        ),
        (
            "transformers alone: import torch, the Qwen2.5-VL model class, AutoProcessor",
            [sys.executable, "-c", _BARE, ckpt, str(image), "import"],
        ),
        ("the codec: `import textmask`, first encode + decode", [sys.executable, "-c", _CODEC]),
        ("`python -c pass`", [sys.executable, "-c", "pass"]),
    ]
    server, note = None, ""
    if all(importlib.util.find_spec(m) for m in ("fastapi", "uvicorn")):
        from bench_serving import start_server  # this folder: run as a script

        server, url = start_server(Path(ckpt), image.parent / "serve.log")
        served = [*_omniad(), "inspect", str(image), "--endpoint", url, "--served-model", ckpt]
        cases.insert(
            1, ("`omniad inspect --endpoint` (the model under `transformers serve`)", served)
        )
    else:
        note = " No served row: `transformers serve` needs fastapi and uvicorn (the dev extra)."
    try:
        for _, argv in cases:
            _run(argv, _env())  # warm the page cache, the kernel cache and the server
        runs: dict[str, list[tuple[float, float]]] = {label: [] for label, _ in cases}
        for _ in range(repeats):  # interleaved
            for label, argv in cases:
                runs[label].append(_run(argv, _env()))
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=60)
    ours = _stats(runs[cases[0][0]])[0]
    rows = []
    for label, _ in cases:
        med, low, cpu = _stats(runs[label])
        ratio = f"{ours / med:.2f}x" if label != cases[0][0] else ""
        rows.append([label, f"{med:.2f} ({low:.2f})", f"{cpu:.2f}", ratio])
    return _table(
        "The floor: the same answer without omniad (fresh processes)",
        ["process", f"wall s, median of {repeats} (min)", "CPU s", "`omniad inspect` / this"],
        rows,
        note="transformers alone: the embedded checkpoint, float32, one thread, garbage "
        "collector paused, 224 px, greedy, at most 200 new tokens: what `omniad inspect` does, "
        "without the prompt, the codec and the report. The served row's server was started "
        "once, before the clock; its CPU time is not in the client's." + note,
    )


def _checkpoint(name: str, folder: Path) -> Path:
    from omniad_core import demo_model_path

    if SIZES[name] is None:
        path = demo_model_path()
        assert path is not None, "the embedded demo model is missing"
        return path
    from omniad_train.tiny import TinyConfig, build_tiny_qwen2_5_vl

    base = TinyConfig.test() if name == "test" else TinyConfig.demo(**SIZES[name])
    return build_tiny_qwen2_5_vl(folder / name, base)


def in_process(names: list[str], repeats: int) -> str:
    """Section 4: one answer per thread count, per model size."""
    import numpy as np
    import torch

    from omniad_core import Inspector
    from omniad_core.backends.threads import count_parameters, thread_policy

    cores = torch.get_num_threads()
    image = np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    counts = sorted({1, *range(2, cores + 1)})
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            path = _checkpoint(name, Path(tmp))
            # a fixed answer length: random weights stop anywhere, so 32 tokens exactly
            fixed = {"min_new_tokens": 32} if SIZES[name] is not None else {}
            insp = Inspector.from_pretrained(
                path, max_new_tokens=32 if fixed else 1024, generation_kwargs=fixed, num_threads=0
            )
            n = count_parameters(insp.model)
            times = {}
            for k in counts:
                torch.set_num_threads(k)
                insp.analyze(image)  # warm-up
                ts = []
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    insp.analyze(image)
                    ts.append(time.perf_counter() - t0)
                times[k] = statistics.median(ts)
            torch.set_num_threads(cores)
            best = min(times, key=times.__getitem__)
            rows.append(
                [f"{name} ({n / 1e6:.1f}M)"]
                + [f"{times[k]:.3f}" for k in counts]
                + [f"{times[cores] / times[1]:.2f}", str(best), str(thread_policy(n, cores))]
            )
    return _table(
        "One answer in process (`Inspector.analyze`, warm)",
        ["model"]
        + [f"{k} thread{'s' if k > 1 else ''} s" for k in counts]
        + [f"{cores} / 1 thread", "fastest", "policy"],
        rows,
        note=f"Median of {repeats} answers after a warm-up; {cores} = torch's default here.",
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/bench_inspect.py", description=__doc__)
    p.add_argument("--repeats", type=int, default=5, help="runs per measurement (default 5)")
    p.add_argument(
        "--sizes",
        default="test,demo,31M,167M",
        help=f"in-process model sizes, comma-separated from {', '.join(SIZES)}",
    )
    p.add_argument("--busy", action="store_true", help="keep one core busy during 2 to 4")
    p.add_argument("--skip-startup", "--skip_startup", action="store_true", help="no section 1")
    args = p.parse_args(argv)
    names = [s for s in args.sizes.split(",") if s]
    unknown = [s for s in names if s not in SIZES]
    if unknown:
        p.error(f"unknown size {unknown[0]!r}; choose from {', '.join(SIZES)}")
    import numpy as np
    from PIL import Image

    print(
        f"command: python benchmarks/bench_inspect.py {' '.join(sys.argv[1:] if argv is None else argv)}"
    )
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} logical CPUs, Python "
        f"{platform.python_version()}, load average {os.getloadavg()[0]:.2f} at start\n"
    )
    tmp = Path(tempfile.mkdtemp())
    image = tmp / "part.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)).save(image)
    burner = None
    try:
        if not args.skip_startup:
            print(startup(args.repeats))
        if args.busy:
            burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            print("(one core kept busy by a spinning process from here on)\n")
        print(inspect_end_to_end(args.repeats, image))
        print(floor(args.repeats, image))
        print(in_process(names, args.repeats))
    finally:
        if burner is not None:
            burner.kill()
            burner.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
