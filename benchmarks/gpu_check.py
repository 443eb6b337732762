"""GPU check: a random Qwen2.5-VL-3B through SFT, GRPO and a batched Inspector pass.

    python benchmarks/gpu_check.py [--out runs/gpu-check] [--sft-steps 3] [--grpo-steps 2]
        [--no-vllm] [--keep]

On a machine with CUDA this builds a randomly initialised model with the published shapes
of ``Qwen/Qwen2.5-VL-3B-Instruct`` in bf16 (config only, nothing downloaded; the folder is
shaped like the hub release, see :mod:`omniad_train.tiny_release`), a small synthetic
dataset (:mod:`omniad_train.synthetic` then :func:`omniad_train.data.prepare.prepare`, 512-px
images, 24x24 grid), then runs, each in its own process so every peak is its own:

1. ``sft``: a few steps of :func:`omniad_train.sft.main` (full fine-tuning, gradient
   checkpointing, bf16);
2. ``grpo``: a few steps of :func:`omniad_train.grpo.main` with a per-device batch of two
   groups (vLLM in colocate mode when it is importable, unless ``--no-vllm``);
3. ``inspect``: :meth:`omniad_core.Inspector.analyze_batch` over a batch of images.

It prints one table: per phase the wall time, mean optimizer step time (the trainer's
``train_runtime`` over its steps), peak memory allocated by torch and peak memory in use
on the device (all allocators, vLLM included, sampled every 0.2 s). When
``omniad_train.planner`` exists (``omniad-train plan``), its prediction for the same
recipes is printed next to the measurement. Random weights write arbitrary text, so every
completion runs to its length limit: the times are worst cases. Designed to finish in
under 8 minutes on one large (80 GB) GPU; about 25 GB of disk for the model and the SFT
output, deleted at the end unless ``--keep``.

Each phase writes its output to ``OUT/PHASE.log`` and is stopped after ``--timeout``
seconds. Without CUDA it prints that it is skipped and why, and exits 0. ``--smoke`` runs
the same phases on the CPU with the scaled-down release-shaped model (to check this
script; its numbers mean nothing). Exit status: 0 when every phase ran, 1 when one failed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

PHASES = ("build", "sft", "grpo", "inspect")
RESULT = "GPU_CHECK_RESULT "
BUDGET_SECONDS = 8 * 60
GIB = 1024**3
#: The large folders a run writes under ``--out`` (only these, and its own inputs, are deleted).
OUTPUTS = ("model", "sft", "grpo")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    p = argparse.ArgumentParser(
        prog="python benchmarks/gpu_check.py",
        description="SFT, GRPO and Inspector on a random Qwen2.5-VL-3B (skipped without CUDA).",
    )
    p.add_argument("--out", type=Path, default=Path("runs/gpu-check"), help="work folder")
    p.add_argument("--sft-steps", type=_positive, default=3)
    p.add_argument("--sft-batch", type=_positive, default=4, help="per-device SFT batch")
    p.add_argument("--grpo-steps", type=_positive, default=2)
    p.add_argument("--num-generations", type=_positive, default=4)
    p.add_argument(
        "--grpo-batch",
        type=_positive,
        default=8,
        help="per-device GRPO batch (completions); default two groups of --num-generations",
    )
    p.add_argument("--max-completion-length", type=_positive, default=768)
    p.add_argument("--inspect-images", type=_positive, default=16)
    p.add_argument("--inspect-batch", type=_positive, default=8)
    p.add_argument("--inspect-tokens", type=_positive, default=128)
    p.add_argument(
        "--vllm",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="generate GRPO completions with vLLM (colocate) when it is importable",
    )
    p.add_argument("--vllm-gpu-memory-utilization", type=_fraction, default=0.25)
    p.add_argument("--keep", action="store_true", help="keep the model and run folders")
    p.add_argument("--timeout", type=_positive, default=900, help="seconds allowed per phase")
    p.add_argument(
        "--smoke",
        action="store_true",
        help="run on the CPU with the scaled-down model (checks the script, not the GPU)",
    )
    p.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)  # one child process
    args = p.parse_args(argv)
    if args.grpo_batch % args.num_generations:
        p.error(f"--grpo-batch {args.grpo_batch} is not a multiple of --num-generations")
    return args


def cuda_skip_reason() -> str | None:
    """Why the check cannot run here, or None when a CUDA device is usable."""
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if torch.version.cuda is None:
        return f"torch {torch.__version__} is a CPU-only build (no CUDA support)"
    if not torch.cuda.is_available():
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        note = f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else ""
        return f"torch {torch.__version__} sees no CUDA device{note}"
    return None


# --------------------------------------------------------------------------- recipes


def _attention() -> str:
    return "flash_attention_2" if importlib.util.find_spec("flash_attn") else "sdpa"


def _use_vllm(args: argparse.Namespace) -> tuple[bool, str]:
    """Whether GRPO generates with vLLM, and why (or why not)."""
    if args.smoke or not args.vllm:
        return False, "off (--no-vllm)" if not args.vllm else "off (--smoke)"
    if importlib.util.find_spec("vllm") is None:
        return False, "off (vllm is not installed)"
    from omniad_train.tiny import qwen_processor_available

    if not qwen_processor_available():  # vLLM needs the real Qwen2.5-VL processor
        return False, "off (no working torchvision: vLLM needs Qwen2_5_VLProcessor)"
    return True, "colocate"


def _yaml(value: Any) -> str:
    """A YAML scalar; floats keep a dot (YAML 1.1 reads ``1e-06`` as a string)."""
    if isinstance(value, float) and "e" in repr(value):
        return f"{value:.4e}"
    return json.dumps(value)


def write_recipes(args: argparse.Namespace, use_vllm: bool | None = None) -> dict[str, Path]:
    """Write the SFT and GRPO recipes the phases run (and ``plan`` reads); returns paths.

    ``use_vllm`` None: as :func:`_use_vllm` decides for this machine.
    """
    out = args.out.resolve()
    device = (
        {"dtype": "float32", "bf16": False, "use_cpu": True, "gradient_checkpointing": False}
        if args.smoke
        else {"dtype": "bfloat16", "bf16": True, "gradient_checkpointing": True}
    )
    common = {
        "model_name_or_path": str(out / "model"),
        "attn_implementation": "sdpa" if args.smoke else _attention(),
        "dataset_path": str(out / "data"),
        "grid": 24,
        "image_size": 512,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "dataloader_num_workers": 0,
        "seed": 0,
        **device,
    }
    sft = {
        **common,
        "learning_rate": 1.0e-5,
        "per_device_train_batch_size": args.sft_batch,
        "gradient_accumulation_steps": 1,
        "max_steps": args.sft_steps,
        "max_length": 2048,
        "output_dir": str(out / "sft"),
    }
    if use_vllm is None:
        use_vllm = _use_vllm(args)[0]
    grpo = {
        **common,
        "learning_rate": 1.0e-6,
        "num_generations": args.num_generations,
        "per_device_train_batch_size": args.grpo_batch,
        "gradient_accumulation_steps": 1,
        "max_completion_length": args.max_completion_length,
        "max_steps": args.grpo_steps,
        "beta": 0.0,
        "temperature": 1.0,
        "use_vllm": use_vllm,
        "output_dir": str(out / "grpo"),
    }
    if use_vllm:
        grpo.update(
            vllm_mode="colocate",
            vllm_gpu_memory_utilization=args.vllm_gpu_memory_utilization,
            vllm_max_model_length=2048,
        )
    paths = {}
    for name, recipe in (("sft", sft), ("grpo", grpo)):
        paths[name] = out / f"{name}.yaml"
        lines = [f"{key}: {_yaml(value)}" for key, value in recipe.items()]
        paths[name].write_text("\n".join(lines) + "\n", encoding="utf-8")
    return paths


# --------------------------------------------------------------------------- phases


class _DevicePeak:
    """Peak memory in use on the device (all allocators), sampled in a thread."""

    def __init__(self, enabled: bool) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True) if enabled else None

    def _run(self) -> None:
        import torch

        while not self._stop.is_set():
            free, total = torch.cuda.mem_get_info()
            self.peak = max(self.peak, total - free)
            self._stop.wait(0.2)

    def __enter__(self) -> _DevicePeak:
        if self._thread is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def _train(phase: str, recipe: Path) -> dict[str, Any]:
    from omniad_train.config import parse_recipe

    if phase == "sft":
        from trl import SFTConfig as Config

        from omniad_train.sft import main
    else:
        from trl import GRPOConfig as Config

        from omniad_train.grpo import main
    trainer = main(*parse_recipe(Config, ["--config", str(recipe)]))
    steps = trainer.state.global_step
    logs = trainer.state.log_history
    runtime = next((h["train_runtime"] for h in reversed(logs) if "train_runtime" in h), None)
    result: dict[str, Any] = {"steps": steps}
    if runtime is not None and steps:
        result["step_seconds"] = runtime / steps
    for key in ("completions/mean_length", "completions/clipped_ratio"):
        values = [h[key] for h in logs if key in h]
        if values:
            result[key.split("/")[1]] = sum(values) / len(values)
    return result


def _inspect(args: argparse.Namespace, device: str) -> dict[str, Any]:
    import torch

    from omniad_core import Inspector

    images = sorted((args.out / "synth").rglob("test/*/*.png"))[: args.inspect_images]
    if not images:
        raise RuntimeError(f"no test images under {args.out / 'synth'}")
    dtype = torch.float32 if args.smoke else torch.bfloat16
    inspector = Inspector.from_pretrained(
        args.out / "model", device=device, dtype=dtype, max_new_tokens=args.inspect_tokens
    )
    t0 = time.perf_counter()
    results = inspector.analyze_batch(images, batch_size=args.inspect_batch, progress=False)
    seconds = time.perf_counter() - t0
    return {"images": len(results), "seconds_per_image": seconds / len(results)}


def run_phase(args: argparse.Namespace) -> dict[str, Any]:
    """Run one phase in this process; returns its measurements."""
    cuda = not args.smoke
    device = "cuda" if cuda else "cpu"
    if cuda:
        import torch

        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    with _DevicePeak(cuda) as sampler:
        if args.phase == "build":
            from omniad_train.tiny_release import QWEN2_5_VL_3B, SCALED_7B, build_release_shaped

            # QWEN2_5_VL_3B are the release's published shapes: hidden 2048, 36 layers,
            # 16 heads / 2 KV heads, MLP 11008, vocabulary 151936, tied embeddings, a
            # 32-block vision tower (1280 wide, full attention in 7, 15, 23, 31);
            # 3,754,622,976 parameters (tests/test_release_shaped.py checks the count).
            sizes = SCALED_7B if args.smoke else QWEN2_5_VL_3B
            build_release_shaped(args.out / "model", seed=0, sizes=sizes, device=device)
            result: dict[str, Any] = {}
        elif args.phase == "inspect":
            result = _inspect(args, device)
        else:
            result = _train(args.phase, args.out / f"{args.phase}.yaml")
    result["wall_seconds"] = time.perf_counter() - t0
    if cuda:
        result["peak_allocated_gib"] = torch.cuda.max_memory_allocated() / GIB
        result["peak_device_gib"] = sampler.peak / GIB
    return result


def _child(args: argparse.Namespace, phase: str) -> dict[str, Any]:
    """Run ``phase`` in a fresh process (its own peak memory, no leftover vLLM engine).

    Its output goes to ``OUT/PHASE.log``; a phase over ``--timeout`` seconds is stopped.
    """
    cmd = [sys.executable, os.fspath(Path(__file__).resolve()), "--phase", phase]
    cmd += _forwarded(args)
    log = args.out / f"{phase}.log"
    with log.open("w", encoding="utf-8") as sink:
        try:
            done = subprocess.run(
                cmd, stdout=sink, stderr=subprocess.STDOUT, timeout=args.timeout, check=False
            )
            status = f"exit status {done.returncode}"
        except subprocess.TimeoutExpired:
            status = f"stopped after --timeout {args.timeout} s"
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    for line in reversed(lines):
        if line.startswith(RESULT):
            return json.loads(line[len(RESULT) :])
    detail = "\n    ".join(line for line in lines[-12:] if line.strip())
    return {"error": f"{status} (full output in {log}):\n    {detail}"}


def _forwarded(args: argparse.Namespace) -> list[str]:
    out = ["--out", os.fspath(args.out)]
    for name in (
        "sft_steps",
        "sft_batch",
        "grpo_steps",
        "num_generations",
        "grpo_batch",
        "max_completion_length",
        "inspect_images",
        "inspect_batch",
        "inspect_tokens",
        "vllm_gpu_memory_utilization",
        "timeout",
    ):
        out += ["--" + name.replace("_", "-"), str(getattr(args, name))]
    out.append("--vllm" if args.vllm else "--no-vllm")
    if args.smoke:
        out.append("--smoke")
    return out


# --------------------------------------------------------------------------- plan


def plan_predictions(recipes: dict[str, Path], data: Path) -> dict[str, dict[str, Any]]:
    """``omniad-train plan --json`` for each recipe, or a note when there is no planner."""
    if importlib.util.find_spec("omniad_train.planner") is None:
        note = "omniad_train.planner is not installed here: no prediction to compare"
        return {name: {"note": note} for name in recipes}
    out = {}
    for name, recipe in recipes.items():
        cmd = [sys.executable, "-m", "omniad_train", "plan", "--config", os.fspath(recipe)]
        cmd += ["--world_size", "1", "--dataset", os.fspath(data), "--json"]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        try:
            out[name] = json.loads(done.stdout)
        except json.JSONDecodeError:
            lines = [x for x in (done.stderr + done.stdout).splitlines() if x.strip()]
            last = lines[-1].strip() if lines else "no output"
            out[name] = {"note": f"plan gave no JSON (exit status {done.returncode}): {last}"}
    return out


def _predicted(plan: dict[str, Any]) -> str:
    """The planner's memory estimate per device, for the table.

    ``plan --json`` gives ``memory_gib`` with ``total``, ``model_states`` and
    ``activations`` (GiB per device); any other top-level number whose key names memory
    is shown as it is.
    """
    if "note" in plan:
        return "-"
    if plan.get("errors") and not plan.get("memory_gib"):
        return f"plan: {len(plan['errors'])} error(s)"
    mem = plan.get("memory_gib")
    if isinstance(mem, dict) and mem.get("total") is not None:
        parts = [f"{mem['total']:.1f} GiB"]
        if mem.get("model_states") is not None and mem.get("activations") is not None:
            parts.append(f"(states {mem['model_states']:.1f} + act. {mem['activations']:.1f})")
        return " ".join(parts)
    figures = [
        f"{k}={v:.1f}"
        for k, v in plan.items()
        if isinstance(v, (int, float))
        and not isinstance(v, bool)
        and any(w in k for w in ("memory", "gib", "gb"))
    ]
    return ", ".join(figures) or "(no memory figure)"


# --------------------------------------------------------------------------- report


def _cell(result: dict[str, Any], key: str, fmt: str = "{:.2f}") -> str:
    value = result.get(key)
    return "-" if value is None else fmt.format(value)


def print_table(results: dict[str, dict[str, Any]], plans: dict[str, dict[str, Any]]) -> None:
    """One row per phase: times, peaks, the planner's prediction."""
    head = (
        "phase",
        "wall s",
        "step s",
        "s/image",
        "peak alloc GiB",
        "peak device GiB",
        "plan: memory/device",
    )
    rows = [head]
    for phase, r in results.items():
        if "error" in r:
            rows.append((phase, "FAILED", "", "", "", "", ""))
            continue
        plan = _predicted(plans[phase]) if phase in plans else ""
        rows.append(
            (
                phase,
                _cell(r, "wall_seconds", "{:.1f}"),
                _cell(r, "step_seconds"),
                _cell(r, "seconds_per_image"),
                _cell(r, "peak_allocated_gib", "{:.1f}"),
                _cell(r, "peak_device_gib", "{:.1f}"),
                plan,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    for n, row in enumerate(rows):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))
    for phase, r in results.items():
        if "error" in r:
            print(f"\n{phase} failed: {r['error']}")
        extra = {k: v for k, v in r.items() if k in ("mean_length", "clipped_ratio")}
        if extra:
            print(f"{phase}: " + ", ".join(f"completion {k} {v:.2f}" for k, v in extra.items()))
    for phase, plan in plans.items():
        print(f"plan ({phase}): {_plan_summary(plan)}")


#: The figures of ``plan --json`` repeated under the table (the rest is in its output).
PLAN_KEYS = (
    "global_batch_size",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "prompts_per_step",
    "num_generations",
    "image_tokens",
    "max_length_limit",
    "truncated_fraction",
)


def _plan_summary(plan: dict[str, Any]) -> str:
    if "note" in plan:
        return plan["note"]
    shown = {k: plan[k] for k in PLAN_KEYS if plan.get(k) is not None}
    text = ", ".join(f"{k} {json.dumps(v)}" for k, v in shown.items())
    for kind in ("errors", "warnings"):
        text += "".join(f"\n  {kind[:-1]}: {m}" for m in plan.get(kind) or [])
    return text


def _prepare_data(args: argparse.Namespace) -> None:
    from omniad_train.data.prepare import prepare
    from omniad_train.synthetic import generate

    synth = generate(
        args.out / "synth",
        n_train_good=2,
        n_test_good=2,
        n_test_defect_per_type=1,
        image_size=256,
        seed=0,
        split="train",
        progress=False,
    )
    prepare(
        args.out / "data",
        mvtec_root=synth.mvtec_root,
        image_size=512,
        grid=24,
        seed=0,
        verbose=False,
        overwrite=True,
    )


def _clean(out: Path, names: tuple[str, ...]) -> None:
    """Delete the folders of an earlier run under ``out``; nothing else there."""
    for name in names:
        shutil.rmtree(out / name, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """Run the check (or one phase of it); 0 when everything ran or it was skipped."""
    args = parse_args(argv)
    if args.phase:
        print(RESULT + json.dumps(run_phase(args)), flush=True)
        return 0
    reason = None if args.smoke else cuda_skip_reason()
    if reason is not None:
        print(
            f"gpu_check: skipped: {reason}. It needs one CUDA GPU (about 80 GB for the "
            "defaults) and the CUDA build of torch; see docs/training.md."
        )
        return 0
    start = time.perf_counter()
    _clean(args.out, ("synth", "data", *OUTPUTS))
    args.out.mkdir(parents=True, exist_ok=True)
    _prepare_data(args)
    recipes = write_recipes(args)
    print(
        f"gpu_check: {'smoke run on the CPU' if args.smoke else 'Qwen2.5-VL-3B shapes, bf16'}"
        f"; GRPO generation: {_use_vllm(args)[1]}; attention: {_attention()}",
        flush=True,
    )
    results: dict[str, dict[str, Any]] = {}
    plans: dict[str, dict[str, Any]] = {}
    for phase in PHASES:
        results[phase] = _child(args, phase)
        print(f"gpu_check: {phase} done in {time.perf_counter() - start:.0f} s", flush=True)
        if phase == "build" and "error" in results[phase]:
            break  # nothing else can run without the model
        if phase == "build":  # plan reads the built model's config, tokenizer, processor
            plans = plan_predictions(recipes, args.out / "data")
    print()
    print_table(results, plans)
    total = time.perf_counter() - start
    over = " (over the 8-minute budget)" if total > BUDGET_SECONDS else ""
    print(f"\ntotal {total:.0f} s{over}")
    if not args.keep:
        _clean(args.out, OUTPUTS)
    return 1 if any("error" in r for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
