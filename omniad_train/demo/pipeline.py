"""The demo's steps and :func:`run_demo`: synthetic data, datasets, the demo model,
vision stage 0, SFT, GRPO and the three evaluations, then the report.

:func:`demo_steps` describes the steps of a plan (:class:`~omniad_train.demo.steps.Step`);
:func:`run_demo` claims the folder, runs them with
:func:`~omniad_train.demo.steps.run_steps` and writes the report.
"""

from __future__ import annotations

import contextlib
import json
import random
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omniad_core.checkpoint import save_spec
from omniad_train import grpo, sft
from omniad_train.config import OmniADScriptArguments, checkpointing_args
from omniad_train.data import prepare
from omniad_train.demo.metrics import (
    BEST_RULE,
    BestChoice,
    Metrics,
    mean_detection_reward,
    metrics_from_json,
    metrics_to_json,
    pick_best,
    summarize_reports,
)
from omniad_train.demo.plan import STAGES, DemoPlan
from omniad_train.demo.report import write_report
from omniad_train.demo.steps import (
    DONE,
    Step,
    claim_folder,
    read_json,
    run_steps,
    say,
    write_json,
)
from omniad_train.evaluation import run_detection, run_mmad
from omniad_train.synthetic import generate
from omniad_train.tiny import TinyConfig, build_tiny_qwen2_5_vl
from omniad_train.vision_pretrain import pretrain_vision

__all__ = ["DemoResult", "demo_steps", "deterministic", "run_demo"]


@dataclass
class DemoResult:
    """Paths and figures of a demo run."""

    out_dir: Path
    report: Path
    best_model: Path
    best_stage: str
    plan: DemoPlan = field(default_factory=DemoPlan)
    metrics: dict[str, Metrics] = field(default_factory=dict)  # stage -> figures
    seconds: dict[str, float] = field(default_factory=dict)
    ran: list[str] = field(default_factory=list)  # names of the steps this call ran
    best: BestChoice = field(default_factory=lambda: BestChoice("sft", BEST_RULE))


def _train_args(cls: Any, out: Path, plan: DemoPlan, **kw: Any) -> Any:
    args = {
        "output_dir": str(out),
        "use_cpu": True,
        "bf16": False,
        **checkpointing_args(cls, False),
        "report_to": "none",
        "logging_steps": 5,
        "save_strategy": "no",
        "seed": plan.seed,
        "per_device_train_batch_size": plan.batch,
        "dataloader_num_workers": 0,
    }
    return cls(**{**args, **kw})


def _settings(plan: DemoPlan, *names: str) -> dict[str, Any]:
    return {n: getattr(plan, n) for n in names}


def demo_steps(out: Path, plan: DemoPlan) -> list[Step]:
    """The demo's steps for ``plan`` in ``out`` (nothing runs until :func:`run_steps`)."""
    train_root, test_root = out / "data" / "train", out / "data" / "test"
    prepared, built = out / "prepared", out / "model-built"
    models = {"untrained": out / "model-start", "sft": out / "sft", "sft+grpo": out / "grpo"}
    shape = _settings(plan, "image_size", "grid", "seed")

    def script() -> Any:
        return OmniADScriptArguments(
            dataset_path=str(prepared),
            grid=plan.grid,
            image_size=plan.image_size,
            freeze_vision_tower=plan.freeze_vision,
        )

    def data(folder: Path) -> None:
        say("1/7 generating synthetic images")
        gen = {
            "image_size": plan.image_size,
            "seed": plan.seed,
            "categories": plan.categories,
            "progress": True,
        }
        generate(
            folder / "train",
            split="train",
            n_train_good=plan.train_good,
            n_test_good=plan.train_good,
            n_test_defect_per_type=plan.train_defects,
            **gen,
        )
        generate(
            folder / "test",
            split="test",
            n_train_good=2,
            n_test_good=plan.test_good,
            n_test_defect_per_type=plan.test_defects,
            **gen,
        )

    def prep(folder: Path) -> None:
        say("2/7 preparing SFT and GRPO datasets")
        prepare(
            folder,
            mmad_json=train_root / "mmad.json",
            image_root=train_root,
            mvtec_root=train_root / "synth_train",
            # the generator's mmad.json already asks every MMAD type; the folder adds the
            # two template types the embedded model and docs/demo.md were measured with
            question_types=["Anomaly Discrimination", "Defect Localization"],
            image_size=plan.image_size,
            grid=plan.grid,
            seed=plan.seed,
            verbose=False,
        )

    def build(folder: Path) -> None:
        say("3/7 building the demo model")
        build_tiny_qwen2_5_vl(folder, TinyConfig.demo(seed=plan.seed))

    def vision(folder: Path) -> None:
        if plan.vision_steps:
            say(f"4/7 vision stage 0, {plan.vision_steps} steps")
            pretrain_vision(
                built,
                prepared,
                folder,
                steps=plan.vision_steps,
                learning_rate=plan.vision_lr,
                seed=plan.seed,
            )
        else:
            shutil.copytree(built, folder, dirs_exist_ok=True, ignore=shutil.ignore_patterns(DONE))
        save_spec(folder, grid=plan.grid, image_size=plan.image_size)

    def train_sft(folder: Path) -> None:
        from trl import ModelConfig, SFTConfig

        say(f"5/7 SFT, {plan.sft_steps} steps")
        sft.main(
            script(),
            _train_args(
                SFTConfig,
                folder,
                plan,
                max_steps=plan.sft_steps,
                learning_rate=plan.sft_lr,
                weight_decay=0.03,
                lr_scheduler_type="cosine",
                warmup_steps=0.05,
                max_length=2048,
            ),
            ModelConfig(model_name_or_path=str(models["untrained"])),
        )

    def train_grpo(folder: Path) -> None:
        from trl import GRPOConfig, ModelConfig

        say(
            f"6/7 GRPO, {plan.grpo_steps} steps x {plan.grpo_batch // plan.generations} "
            f"prompts x {plan.generations} completions"
        )
        trainer = grpo.main(
            script(),
            _train_args(
                GRPOConfig,
                folder,
                plan,
                max_steps=plan.grpo_steps,
                learning_rate=plan.grpo_lr,
                weight_decay=0.1,
                num_generations=plan.generations,
                temperature=plan.temperature,
                beta=plan.kl_beta,
                per_device_train_batch_size=plan.grpo_batch,
                max_completion_length=plan.max_new_tokens,
                logging_steps=1,
            ),
            ModelConfig(model_name_or_path=str(models["sft"])),
        )
        history = [h for h in trainer.state.log_history if "reward" in h]
        (folder / "reward_history.json").write_text(json.dumps(history, indent=1))

    def evaluate(stage: str) -> Callable[[Path], None]:
        def run(folder: Path) -> None:
            say(f"7/7 evaluating the {stage} model")
            kw = {
                "batch_size": plan.batch,
                "max_new_tokens": plan.max_new_tokens,
                "image_size": plan.image_size,
                "grid": plan.grid,
                "progress": True,
            }
            path = models[stage]
            det = run_detection(path, test_root / "synth", folder / "detection", save_masks=8, **kw)
            mm = run_mmad(
                path,
                test_root / "mmad.json",
                test_root,
                folder / "mmad",
                limit=plan.mmad_limit,
                **kw,
            )
            metrics = summarize_reports(det.report or {}, mm.report or {})
            metrics.update(mean_detection_reward(det.results))
            write_json(folder / "metrics.json", metrics_to_json(metrics))

        return run

    data_keys = (
        "image_size",
        "seed",
        "categories",
        "train_good",
        "train_defects",
        "test_good",
        "test_defects",
    )
    vision_keys = ("vision_steps", "vision_lr")
    sft_keys = ("sft_steps", "sft_lr", "batch", "freeze_vision")
    grpo_keys = (
        "grpo_steps",
        "grpo_lr",
        "generations",
        "grpo_batch",
        "temperature",
        "kl_beta",
        "max_new_tokens",
        "freeze_vision",
    )
    eval_keys = ("batch", "max_new_tokens", "image_size", "grid", "mmad_limit")
    steps = [
        Step("data", "data", _settings(plan, *data_keys), data),
        Step("prepare", "prepared", shape, prep, ("data",), resumable=True),
        Step("build", "model-built", _settings(plan, "seed"), build),
        Step(
            "stage 0",
            "model-start",
            {**shape, **_settings(plan, *vision_keys)},
            vision,
            ("build", "prepare"),
        ),
        Step(
            "sft", "sft", {**shape, **_settings(plan, *sft_keys)}, train_sft, ("stage 0", "prepare")
        ),
        Step(
            "sft+grpo",
            "grpo",
            {**shape, **_settings(plan, *grpo_keys)},
            train_grpo,
            ("sft", "prepare"),
        ),
    ]
    upstream = {"untrained": "stage 0", "sft": "sft", "sft+grpo": "sft+grpo"}
    for stage in STAGES:
        folder = f"eval/{stage.replace('+', '_')}"
        steps.append(
            Step(
                f"eval {stage}",
                folder,
                _settings(plan, *eval_keys),
                evaluate(stage),
                (upstream[stage], "data"),
                resumable=True,
            )
        )
    return steps


@contextlib.contextmanager
def deterministic(seed: int) -> Iterator[None]:
    """Seed Python, NumPy and torch, and ask torch for deterministic kernels, for the
    duration of the block (torch's previous setting is restored afterwards).

    With one thread (which :func:`run_demo` sets), the same seed, the same kind of CPU
    and the same library versions, a demo run gives the same weights and figures. TRL
    and transformers seed their own generators from the recipe's ``seed`` too.  Other
    CPUs may take other vectorised code paths in torch's kernels (summation order), so
    figures differ between machine kinds: docs/demo.md gives them as a range over seeds.
    """
    import numpy as np
    import torch

    before = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - libraries that use the global generator
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=warn_only)


def run_demo(
    out: str | Path = "runs/demo", plan: DemoPlan | None = None, *, overwrite: bool = False
) -> DemoResult:
    """Run every step (skipping those finished with the same settings), write ``out/report.md``.

    Each step records the part of the plan it depends on; when the plan changed, the
    steps it invalidates and everything downstream of them are redone from clean folders,
    and one line per step says so. ``overwrite`` first deletes the folder's demo files.

    Raises
    ------
    DemoError
        ``out`` is a file, or a non-empty folder that is not a demo's (nothing is deleted).
    """
    out = Path(out)
    claim_folder(out, overwrite)
    import torch

    from omniad_core._quiet import quiet_known_noise

    quiet_known_noise()
    # The demo model is tiny: its matrices are too small for threads to pay off, and on a
    # 2-core machine two threads ran SFT 3x slower than one (8 steps: 38 s vs 12 s).
    # One thread also keeps the run deterministic (no thread-count-dependent reductions).
    torch.set_num_threads(1)
    plan = plan or DemoPlan.full()
    steps = demo_steps(out, plan)
    with deterministic(plan.seed):
        ran, took = run_steps(out, steps)
    seconds = {
        "data": took["data"],
        "prepare": took["prepare"],
        "build": took["build"],
        "vision": took["stage 0"],
        "sft": took["sft"],
        "grpo": took["sft+grpo"],
        "evaluate": sum(took[f"eval {s}"] for s in STAGES),
    }
    models = {"untrained": out / "model-start", "sft": out / "sft", "sft+grpo": out / "grpo"}
    metrics = {
        stage: metrics_from_json(read_json(out / "eval" / stage.replace("+", "_") / "metrics.json"))
        for stage in STAGES
    }
    best = pick_best(metrics)
    report = write_report(out, plan, metrics, seconds, models, best)
    say(f"report: {report}")
    return DemoResult(
        out, report, models[best.stage], best.stage, plan, metrics, seconds, ran, best
    )
