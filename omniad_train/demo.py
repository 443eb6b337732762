"""``omniad demo``: the whole method on synthetic defects, on a CPU, in minutes.

Steps (each resumable: a step finished with the same settings is skipped when the demo
runs again; a changed plan redoes the steps it affects and everything after them):

1. generate synthetic training and held-out test images with exact masks and questions;
2. prepare SFT and GRPO datasets from the training images;
3. build a small Qwen2.5-VL offline (:meth:`omniad_train.tiny.TinyConfig.demo`);
4. stage 0: pretrain its vision tower on positions and the training masks
   (:mod:`omniad_train.vision_pretrain`), standing in for the pretrained vision encoder
   a real Qwen2.5-VL starts from;
5. SFT, then GRPO with the three rewards, through TRL;
6. evaluate the model SFT starts from, the SFT model and the SFT+GRPO model on the
   held-out images with the detection and MMAD runners;
7. write ``report.md``: the tables side by side, GRPO reward curves and overlays.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

from omniad_train.plots import draw_line_chart

__all__ = [
    "MEAN_R_DET",
    "DemoError",
    "DemoPlan",
    "DemoResult",
    "MetricKey",
    "Step",
    "StepDecision",
    "claim_folder",
    "decide_steps",
    "demo_main",
    "demo_steps",
    "export_model",
    "is_demo_folder",
    "mean_detection_reward",
    "plot_curves",
    "run_demo",
    "run_steps",
]

STAGES = ("untrained", "sft", "sft+grpo")


class MetricKey(NamedTuple):
    """One figure of the demo's tables: a ``section`` (``"detection"`` or ``"MMAD"``) and
    the figure's ``name`` in it; :attr:`label` is how the report shows it.

    >>> MetricKey("detection", "pixel f1").label
    'detection: pixel f1'
    """

    section: str
    name: str

    @property
    def label(self) -> str:
        """``"section: name"``, as in the report's tables."""
        return f"{self.section}: {self.name}"


#: One stage's figures (percentages, except :data:`MEAN_R_DET`).
Metrics = dict[MetricKey, float]

#: GRPO's detection reward averaged over the held-out images (0 to 2, not a percentage).
MEAN_R_DET = MetricKey("detection", "mean R_det (0-2)")
_PIXEL_F1 = MetricKey("detection", "pixel f1")
_IMAGE_F1 = MetricKey("detection", "image f1")
_MMAD_AVERAGE = MetricKey("MMAD", "average")


@dataclass(frozen=True)
class DemoPlan:
    """Sizes of a demo run; :meth:`quick` and :meth:`full` are the two presets."""

    image_size: int = 224
    grid: int = 8
    train_good: int = 40
    train_defects: int = 15
    test_good: int = 5
    test_defects: int = 5
    vision_steps: int = 800
    vision_lr: float = 1e-3
    freeze_vision: bool = True
    sft_steps: int = 600
    sft_lr: float = 2e-3
    grpo_steps: int = 50
    grpo_lr: float = 2e-5
    generations: int = 8
    grpo_batch: int = 16
    temperature: float = 1.0
    kl_beta: float = 0.04
    batch: int = 8
    max_new_tokens: int = 200
    mmad_limit: int | None = 240
    seed: int = 0
    categories: tuple[str, ...] | None = ("fabric", "leather", "tile", "wood")

    @classmethod
    def full(cls, **kw: Any) -> DemoPlan:
        """The main demo: sized for about 15 minutes on 2 quiet CPU cores.

        224-px images give the demo model 8x8 image tokens, one per cell of the 8x8 grid.
        Four textured categories: on all nine, the from-scratch vision tower found defects
        far less often in the same budget (defect-cell F1 0.16 vs 0.41 after stage 0).
        """
        return cls(**kw)

    @classmethod
    def quick(cls, **kw: Any) -> DemoPlan:
        """About 2 minutes: fewer images and steps (the numbers mean little)."""
        base = {
            "train_good": 4, "train_defects": 3, "test_good": 1, "test_defects": 1,
            "vision_steps": 60, "sft_steps": 100, "sft_lr": 3e-3, "grpo_steps": 2, "generations": 4,
            "grpo_batch": 8,
            "max_new_tokens": 160, "mmad_limit": 24, "categories": ("fabric", "tile"),
        }  # fmt: skip
        base.update(kw)
        return cls(**base)


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


def _say(msg: str) -> None:
    print(f"[omniad demo] {msg}", flush=True)


# --------------------------------------------------------------------------- step bookkeeping
DEMO_FILE = "omniad-demo.json"
DEMO_FORMAT = "omniad-demo/1"
DONE = "DONE"
# Everything a demo writes at the top of its folder (what ``overwrite`` deletes).
DEMO_ENTRIES = (
    "data", "prepared", "model-built", "model-start", "sft", "grpo", "eval", "overlays",
    "report.md", "report.json", "grpo_rewards.png", DEMO_FILE,
)  # fmt: skip

# Step folders of runs made before ``omniad-demo.json`` existed (each had a ``DONE``).
_LEGACY_STEP_FOLDERS = ("data", "model-start", "sft", "grpo")


class DemoError(RuntimeError):
    """The demo cannot use its output folder (a file, or a folder that is not a demo's)."""


@dataclass(frozen=True)
class Step:
    """One resumable step of a run: what it depends on and the function that does it.

    Parameters
    ----------
    name
        Shown in messages and used as the key of its record.
    folder
        Its output folder, relative to the run folder; the step owns it (a redo deletes it).
    settings
        The values its output depends on (JSON types); a change redoes the step.
    run
        Called with the (existing) step folder.
    upstream
        Names of earlier steps it reads from: a redone upstream step redoes this one.
    resumable
        ``run`` continues the work of an interrupted call with the same settings (the
        evaluation runners, ``prepare``), so an unfinished folder is kept, not cleaned.
    """

    name: str
    folder: str
    settings: Mapping[str, Any]
    run: Callable[[Path], object]
    upstream: tuple[str, ...] = ()
    resumable: bool = False


@dataclass(frozen=True)
class StepDecision:
    """What :func:`decide_steps` chose for a step.

    ``action`` is ``"skip"`` (finished with these settings), ``"resume"`` (unfinished with
    these settings, folder kept) or ``"run"`` (from a clean folder). ``reason`` says why an
    earlier output is not reused (empty for a first run or a skip).
    """

    name: str
    action: Literal["skip", "resume", "run"]
    record: dict[str, Any]
    reason: str = ""


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)


def _started(out: Path) -> dict[str, Any]:
    data = _read_json(out / DEMO_FILE)
    steps = data.get("steps") if isinstance(data, dict) else None
    return steps if isinstance(steps, dict) else {}


def _record(step: Step, hashes: dict[str, str]) -> dict[str, Any]:
    settings = _jsonable(dict(step.settings))
    upstream = {u: hashes[u] for u in step.upstream}
    key = json.dumps({"settings": settings, "upstream": upstream}, sort_keys=True)
    return {
        "step": step.name,
        "settings": settings,
        "upstream": upstream,
        "hash": hashlib.sha256(key.encode()).hexdigest()[:16],
    }


def _diff(old: Any, new: dict[str, Any]) -> str:
    old = old if isinstance(old, dict) else {}
    keys = list(new) + [k for k in old if k not in new]
    return ", ".join(
        f"{k} {json.dumps(old.get(k))} -> {json.dumps(new.get(k))}"
        for k in keys
        if old.get(k) != new.get(k)
    )


def _why(name: str, old: Any, rec: dict[str, Any], finished: bool) -> tuple[str, bool]:
    """Why the earlier output ``old`` (a record, or None) is not reused; and whether the
    step's own settings changed (then it is always announced)."""
    if not isinstance(old, dict) or not isinstance(old.get("hash"), str):
        return f"{name} has no recorded settings (an older demo run)", False
    diff = _diff(old.get("settings"), rec["settings"])
    if diff:
        return f"plan changed for {name} ({diff})", True
    ups = sorted(
        u for u in rec["upstream"] if (old.get("upstream") or {}).get(u) != rec["upstream"][u]
    )
    if ups:
        return f"{name} was made from an earlier {', '.join(ups)}", False
    return ("" if finished else f"{name} did not finish"), False


def decide_steps(out: Path, steps: Sequence[Step]) -> tuple[list[StepDecision], list[str]]:
    """Decide, from the records in ``out``, which steps to skip, resume or redo.

    A step is skipped when its folder holds ``DONE`` with the same settings hash, which
    covers its own settings and the hashes of its upstream steps, and no upstream step
    runs. Any other step runs, from a clean folder unless it is resumable and was
    interrupted with the same settings. Returns the decisions in order and one message
    per step whose earlier output is discarded, naming it and everything redone with it.

    >>> import tempfile
    >>> a = Step("a", "a", {"n": 1}, run=lambda f: None)
    >>> b = Step("b", "b", {}, run=lambda f: None, upstream=("a",))
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = run_steps(Path(tmp), [a, b], say=lambda m: None)
    ...     a2 = Step("a", "a", {"n": 2}, run=lambda f: None)
    ...     decisions, lines = decide_steps(Path(tmp), [a2, b])
    >>> [d.action for d in decisions], lines
    (['run', 'run'], ['plan changed for a (n 1 -> 2): redoing a, b'])
    """
    names = [s.name for s in steps]
    if len(set(names)) != len(names):
        raise ValueError(f"step names repeat: {names}")
    hashes: dict[str, str] = {}
    started = _started(out)
    decisions: list[StepDecision] = []
    running: set[str] = set()
    reasons: list[tuple[str, str, bool]] = []
    for step in steps:
        missing = [u for u in step.upstream if u not in hashes]
        if missing:
            raise ValueError(f"step {step.name!r}: upstream {missing} must come before it")
        rec = _record(step, hashes)
        hashes[step.name] = rec["hash"]
        folder = out / step.folder
        # an unreadable DONE counts as one without settings
        done = (_read_json(folder / DONE) or {}) if (folder / DONE).is_file() else None
        forced = any(u in running for u in step.upstream)
        old = started.get(step.name)
        same_start = isinstance(old, dict) and old.get("hash") == rec["hash"]
        if done is not None:
            finished = isinstance(done, dict) and done.get("hash") == rec["hash"]
            action = "skip" if finished and not forced else "run"
            reason, own = _why(step.name, done, rec, True)
        elif same_start:
            action = "resume" if step.resumable else "run"
            reason, own = f"{step.name} did not finish", False
        elif old is not None or (folder.is_dir() and any(folder.iterdir())):
            action = "run"
            reason, own = _why(step.name, old, rec, False)
        else:
            action, reason, own = "run", "", False
        if action != "skip":
            running.add(step.name)
            if reason:
                reasons.append((step.name, reason, own))
        decisions.append(StepDecision(step.name, action, rec, reason if action != "skip" else ""))
    lines: list[str] = []
    covered: set[str] = set()
    for name, reason, own in reasons:
        if name in covered and not own:
            continue
        chain = _downstream(steps, name)
        covered.update(chain)
        if next(d for d in decisions if d.name == name).action == "resume":
            rest = chain[1:]
            lines.append(
                f"{reason}: resuming {name}" + (f", redoing {', '.join(rest)}" if rest else "")
            )
        else:
            lines.append(f"{reason}: redoing {', '.join(chain)}")
    return decisions, lines


def _downstream(steps: Sequence[Step], name: str) -> list[str]:
    """``name`` and every step that depends on it, directly or not, in step order."""
    chain = [name]
    for s in steps:
        if any(u in chain for u in s.upstream) and s.name not in chain:
            chain.append(s.name)
    return chain


def _clean(folder: Path) -> None:
    if folder.is_dir() and not folder.is_symlink():
        shutil.rmtree(folder)
    elif folder.exists() or folder.is_symlink():
        folder.unlink()


def run_steps(
    out: Path, steps: Sequence[Step], say: Callable[[str], None] = _say
) -> tuple[list[str], dict[str, float]]:
    """Run ``steps`` in order in ``out``, skipping those finished with the same settings.

    Says why earlier outputs are redone (see :func:`decide_steps`). A step that runs first
    loses the ``DONE`` of everything downstream of it and, unless resumed, its folder; its
    settings are recorded in ``out/omniad-demo.json`` when it starts and in its
    ``DONE`` when it finishes, so an interrupted step is redone (or resumed) next time.
    Returns the names of the steps that ran and the seconds each step took.
    """
    decisions, lines = decide_steps(out, steps)
    for line in lines:
        say(line)
    ran: list[str] = []
    seconds: dict[str, float] = {}
    by_name = {s.name: s for s in steps}
    for step, d in zip(steps, decisions, strict=True):
        t = time.perf_counter()
        if d.action != "skip":
            folder = out / step.folder
            for name in _downstream(steps, step.name)[1:]:
                (out / by_name[name].folder / DONE).unlink(missing_ok=True)
            if d.action == "run":
                _clean(folder)
            else:
                (folder / DONE).unlink(missing_ok=True)
            data = _read_json(out / DEMO_FILE)
            data = data if isinstance(data, dict) else {"format": DEMO_FORMAT}
            data["steps"] = {**_started(out), step.name: d.record}
            _write_json(out / DEMO_FILE, data)
            folder.mkdir(parents=True, exist_ok=True)
            step.run(folder)
            _write_json(folder / DONE, {**d.record, "finished": time.time()})
            ran.append(step.name)
        seconds[step.name] = time.perf_counter() - t
    return ran, seconds


def is_demo_folder(out: Path) -> bool:
    """Whether ``out`` holds a demo run: its ``omniad-demo.json``, or (runs made before
    that file existed) a step folder with a ``DONE`` marker."""
    if (out / DEMO_FILE).is_file():
        return True
    return any((out / name / DONE).is_file() for name in _LEGACY_STEP_FOLDERS)


def claim_folder(out: Path, overwrite: bool = False) -> None:
    """Make ``out`` ready for a demo run, or raise :class:`DemoError`.

    A new or empty folder, or a demo folder, is accepted; ``overwrite`` first deletes the
    demo's own files (:data:`DEMO_ENTRIES`; anything else in the folder stays). A file,
    or a non-empty folder that is not a demo's, is refused and nothing is deleted.
    """
    if out.exists() and not out.is_dir():
        raise DemoError(f"the output {str(out)!r} is a file; give a folder with --out")
    if out.is_dir() and any(out.iterdir()) and not is_demo_folder(out):
        raise DemoError(
            f"{str(out)!r} is not empty and is not an omniad demo folder (no {DEMO_FILE}); "
            "give a new or empty folder with --out"
            + ("; --overwrite deletes only a demo folder's files, nothing was deleted"
               if overwrite else "")
        )  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    if overwrite:
        for name in DEMO_ENTRIES:
            _clean(out / name)
    if not (out / DEMO_FILE).is_file():
        _write_json(out / DEMO_FILE, {"format": DEMO_FORMAT, "steps": {}})


def _train_args(cls: Any, out: Path, plan: DemoPlan, **kw: Any) -> Any:
    args = {"output_dir": str(out), "use_cpu": True, "bf16": False, "gradient_checkpointing": False,
            "report_to": "none", "logging_steps": 5, "save_strategy": "no", "seed": plan.seed,
            "per_device_train_batch_size": plan.batch, "dataloader_num_workers": 0}  # fmt: skip
    return cls(**{**args, **kw})


def _settings(plan: DemoPlan, *names: str) -> dict[str, Any]:
    return {n: getattr(plan, n) for n in names}


def demo_steps(out: Path, plan: DemoPlan) -> list[Step]:
    """The demo's steps for ``plan`` in ``out`` (nothing runs until :func:`run_steps`)."""
    from omniad_core.inspector import save_spec
    from omniad_train.tiny import TinyConfig, build_tiny_qwen2_5_vl

    train_root, test_root = out / "data" / "train", out / "data" / "test"
    prepared, built = out / "prepared", out / "model-built"
    models = {"untrained": out / "model-start", "sft": out / "sft", "sft+grpo": out / "grpo"}
    shape = _settings(plan, "image_size", "grid", "seed")

    def script() -> Any:
        from omniad_train.config import OmniADScriptArguments

        return OmniADScriptArguments(
            dataset_path=str(prepared), grid=plan.grid, image_size=plan.image_size,
            freeze_vision_tower=plan.freeze_vision,
        )  # fmt: skip

    def data(folder: Path) -> None:
        from omniad_train.synthetic import generate

        _say("1/7 generating synthetic images")
        gen = {"image_size": plan.image_size, "seed": plan.seed, "categories": plan.categories,
               "progress": True}  # fmt: skip
        generate(folder / "train", split="train", n_train_good=plan.train_good,
                 n_test_good=plan.train_good, n_test_defect_per_type=plan.train_defects,
                 **gen)  # fmt: skip
        generate(folder / "test", split="test", n_train_good=2, n_test_good=plan.test_good,
                 n_test_defect_per_type=plan.test_defects, **gen)  # fmt: skip

    def prep(folder: Path) -> None:
        from omniad_train.data import prepare

        _say("2/7 preparing SFT and GRPO datasets")
        prepare(folder, mmad_json=train_root / "mmad.json", image_root=train_root,
                mvtec_root=train_root / "synth_train", image_size=plan.image_size,
                grid=plan.grid, seed=plan.seed, verbose=False)  # fmt: skip

    def build(folder: Path) -> None:
        _say("3/7 building the demo model")
        build_tiny_qwen2_5_vl(folder, TinyConfig.demo(seed=plan.seed))

    def vision(folder: Path) -> None:
        if plan.vision_steps:
            from omniad_train.vision_pretrain import pretrain_vision

            _say(f"4/7 vision stage 0, {plan.vision_steps} steps")
            pretrain_vision(built, prepared, folder, steps=plan.vision_steps,
                            learning_rate=plan.vision_lr, seed=plan.seed)  # fmt: skip
        else:
            shutil.copytree(built, folder, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns(DONE))  # fmt: skip
        save_spec(folder, grid=plan.grid, image_size=plan.image_size)

    def train_sft(folder: Path) -> None:
        from trl import ModelConfig, SFTConfig

        from omniad_train import sft

        _say(f"5/7 SFT, {plan.sft_steps} steps")
        sft.main(script(), _train_args(SFTConfig, folder, plan, max_steps=plan.sft_steps,
                                       learning_rate=plan.sft_lr, weight_decay=0.03,
                                       lr_scheduler_type="cosine", warmup_steps=0.05,
                                       max_length=2048),
                 ModelConfig(model_name_or_path=str(models["untrained"])))  # fmt: skip

    def train_grpo(folder: Path) -> None:
        from trl import GRPOConfig, ModelConfig

        from omniad_train import grpo

        _say(
            f"6/7 GRPO, {plan.grpo_steps} steps x {plan.grpo_batch // plan.generations} "
            f"prompts x {plan.generations} completions"
        )
        trainer = grpo.main(
            script(),
            _train_args(GRPOConfig, folder, plan, max_steps=plan.grpo_steps,
                        learning_rate=plan.grpo_lr, weight_decay=0.1,
                        num_generations=plan.generations, temperature=plan.temperature,
                        beta=plan.kl_beta,
                        per_device_train_batch_size=plan.grpo_batch,
                        max_completion_length=plan.max_new_tokens, logging_steps=1),
            ModelConfig(model_name_or_path=str(models["sft"])),
        )  # fmt: skip
        history = [h for h in trainer.state.log_history if "reward" in h]
        (folder / "reward_history.json").write_text(json.dumps(history, indent=1))

    def evaluate(stage: str) -> Callable[[Path], None]:
        def run(folder: Path) -> None:
            from omniad_train.evaluation import run_detection, run_mmad

            _say(f"7/7 evaluating the {stage} model")
            kw = {"batch_size": plan.batch, "max_new_tokens": plan.max_new_tokens,
                  "image_size": plan.image_size, "grid": plan.grid, "progress": True}  # fmt: skip
            path = models[stage]
            det = run_detection(path, test_root / "synth", folder / "detection", save_masks=8,
                                **kw)  # fmt: skip
            mm = run_mmad(path, test_root / "mmad.json", test_root, folder / "mmad",
                          limit=plan.mmad_limit, **kw)  # fmt: skip
            metrics = _summary(det.report or {}, mm.report or {})
            metrics.update(mean_detection_reward(det.results))
            _write_json(folder / "metrics.json", _metrics_to_json(metrics))

        return run

    data_keys = ("image_size", "seed", "categories", "train_good", "train_defects",
                 "test_good", "test_defects")  # fmt: skip
    vision_keys = ("vision_steps", "vision_lr")
    sft_keys = ("sft_steps", "sft_lr", "batch", "freeze_vision")
    grpo_keys = ("grpo_steps", "grpo_lr", "generations", "grpo_batch", "temperature",
                 "kl_beta", "max_new_tokens", "freeze_vision")  # fmt: skip
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
        steps.append(Step(f"eval {stage}", folder, _settings(plan, *eval_keys),
                          evaluate(stage), (upstream[stage], "data"), resumable=True))  # fmt: skip
    return steps


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

    # The demo model is tiny: its matrices are too small for threads to pay off, and on a
    # 2-core machine two threads ran SFT 3x slower than one (8 steps: 38 s vs 12 s).
    torch.set_num_threads(1)
    plan = plan or DemoPlan.full()
    steps = demo_steps(out, plan)
    ran, took = run_steps(out, steps)
    seconds = {"data": took["data"], "prepare": took["prepare"], "build": took["build"],
               "vision": took["stage 0"], "sft": took["sft"], "grpo": took["sft+grpo"],
               "evaluate": sum(took[f"eval {s}"] for s in STAGES)}  # fmt: skip
    models = {"untrained": out / "model-start", "sft": out / "sft", "sft+grpo": out / "grpo"}
    metrics = {
        stage: _metrics_from_json(
            _read_json(out / "eval" / stage.replace("+", "_") / "metrics.json")
        )
        for stage in STAGES
    }
    report = _write_report(out, plan, metrics, seconds, models)
    best = max(("sft", "sft+grpo"), key=lambda s: _score(metrics[s]))
    _say(f"report: {report}")
    return DemoResult(out, report, models[best], best, plan, metrics, seconds, ran)


def _score(m: Metrics) -> float:
    """One number to pick the demo's best checkpoint: detection and QA together."""
    return m.get(_PIXEL_F1, 0.0) + m.get(_IMAGE_F1, 0.0) + m.get(_MMAD_AVERAGE, 0.0)


def _metrics_to_json(metrics: Metrics) -> dict[str, dict[str, float]]:
    """``{section: {name: value}}``, as a stage's ``metrics.json`` holds them.

    >>> _metrics_to_json({MetricKey("MMAD", "average"): 50.0})
    {'MMAD': {'average': 50.0}}
    """
    out: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        out.setdefault(key.section, {})[key.name] = value
    return out


def _metrics_from_json(data: Any) -> Metrics:
    """A stage's figures from its ``metrics.json`` (anything else reads as none).

    Folders of earlier demo versions hold ``{"section: name": value}``; they are read too.

    >>> _metrics_from_json({"MMAD": {"average": 50.0}})
    {MetricKey(section='MMAD', name='average'): 50.0}
    >>> _metrics_from_json({"detection: pixel f1": 12.5})
    {MetricKey(section='detection', name='pixel f1'): 12.5}
    """
    out: Metrics = {}
    if not isinstance(data, dict):
        return out
    for section, value in data.items():
        if isinstance(value, dict):
            for name, v in value.items():
                if isinstance(v, (int, float)):
                    out[MetricKey(str(section), str(name))] = float(v)
        elif isinstance(value, (int, float)) and ": " in section:  # an earlier version's file
            head, _, name = section.partition(": ")
            out[MetricKey(head, name)] = float(value)
    return out


def _overall(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return next((r for r in rows if r.get("scope") == "overall"), {})


def mean_detection_reward(results: Path, alpha: float = 2.0) -> Metrics:
    """GRPO's detection reward R_det averaged over the images of a detection run.

    Per image, from the pixel counts the runner stores: 1 when the truth and the
    prediction are both empty, 0 when only the truth is, else ``alpha * F1`` (so 0 to 2).
    An unreadable seg counts as an empty prediction, as in training. Computed with
    :meth:`textmask.Scores.reward`, exact for images at least as large as the grid.
    """
    from textmask import Scores

    values = []
    for line in Path(results).read_text().splitlines():
        rec = json.loads(line)
        if rec.get("status") == "ok" and rec.get("pixel") is not None:
            values.append(Scores(*rec["pixel"]).reward(alpha))
    return {MEAN_R_DET: sum(values) / len(values)} if values else {}


def _summary(det: dict[str, Any], mm: dict[str, Any]) -> Metrics:
    """The demo's table rows from the runners' ``report.json`` dicts (percentages)."""
    out: Metrics = {}
    d = _overall(det.get("rows", []))
    for key in ("pixel_f1", "pixel_acc", "image_f1", "image_acc"):
        if d.get(key) is not None:
            out[MetricKey("detection", key.replace("_", " "))] = float(d[key])
    counts = det.get("counts", {})
    if counts.get("evaluated"):
        unanswered = 100.0 * counts.get("unanswerable", 0) / counts["evaluated"]
        out[MetricKey("detection", "unreadable answers %")] = unanswered
    m = _overall(mm.get("accuracy", {}).get("rows", []))
    for key, value in m.items():
        if key in ("scope", "dataset", "n_questions", "n_unanswerable") or value is None:
            continue
        out[MetricKey("MMAD", key.replace("_", " "))] = float(value)
    if m.get("n_questions"):
        unanswered = 100.0 * m["n_unanswerable"] / m["n_questions"]
        out[MetricKey("MMAD", "unreadable answers %")] = unanswered
    return out


def plot_curves(series: dict[str, list[tuple[float, float]]], path: Path, title: str) -> Path:
    """A line chart (PIL only) of named ``[(x, y), ...]`` series against the training
    step (:func:`omniad_train.plots.draw_line_chart`)."""
    return draw_line_chart(
        series, path, title=title, xlabel="step", ylabel="reward", integer_x=True
    )


def pick_overlays(paths: Sequence[Path], n: int = 6) -> list[Path]:
    """Up to ``n`` overlays (``<category>/<defect>_<i>_overlay.png``), as many defect
    types and categories as possible: round-robin over categories, each time the first
    overlay of a defect type not shown yet (then any not shown yet).

    >>> ps = [Path(f"{c}/{d}_00{i}_overlay.png") for c in "ab" for d in ("hole", "stain")
    ...       for i in (0, 1)]
    >>> [f"{p.parent}/{p.name[:-12]}" for p in pick_overlays(ps, 3)]
    ['a/hole_000', 'b/stain_000', 'a/hole_001']
    """
    by_cat: dict[str, list[Path]] = {}
    for p in paths:
        by_cat.setdefault(p.parent.name, []).append(p)
    chosen: list[Path] = []
    types: set[str] = set()
    while len(chosen) < n and any(by_cat.values()):
        for cat in list(by_cat):
            left = by_cat[cat]
            if not left or len(chosen) == n:
                continue
            new = [p for p in left if p.name.rsplit("_", 2)[0] not in types]
            p = (new or left)[0]
            left.remove(p)
            types.add(p.name.rsplit("_", 2)[0])
            chosen.append(p)
    return chosen


def _rows_with_values(metrics: dict[str, Metrics], stages: Sequence[str]) -> list[MetricKey]:
    """Metric keys in first-seen order, leaving out those no stage has a value for (a
    question type with no questions in the run)."""
    names = dict.fromkeys(k for st in stages for k in metrics.get(st, {}))
    return [k for k in names if any(_fmt(k, metrics.get(st, {}).get(k)) != "-" for st in stages)]


def _fmt(key: MetricKey, v: float | None) -> str:
    if v is None or v != v:  # missing, or NaN (no question of that type)
        return "-"
    return f"{v:.3f}" if key == MEAN_R_DET else f"{v:.1f}"


def _write_report(
    out: Path,
    plan: DemoPlan,
    metrics: dict[str, Metrics],
    seconds: dict[str, float],
    models: dict[str, Path],
) -> Path:
    rows = _rows_with_values(metrics, STAGES)
    lines = [
        "# OmniAD demo on synthetic defects",
        "",
        "Everything below was produced by `omniad demo` on this machine: synthetic images, a "
        "small Qwen2.5-VL built offline, a vision stage 0 standing in for a pretrained "
        "vision encoder, SFT then GRPO through TRL, and the detection and MMAD runners on "
        "held-out images. `untrained` is the model SFT starts from (random language model, "
        "vision tower after stage 0). Percentages, except mean R_det (0 to 2, GRPO's "
        "detection reward averaged over the held-out images); higher is better.",
        "",
        "| metric | " + " | ".join(STAGES) + " |",
        "|---|" + "---:|" * len(STAGES),
    ]
    for r in rows:
        vals = [metrics.get(s, {}).get(r) for s in STAGES]
        lines.append(f"| {r.label} | " + " | ".join(_fmt(r, v) for v in vals) + " |")
    for stale in ("grpo_rewards.png", "overlays"):  # from a run with another plan
        _clean(out / stale)
    hist_path = models["sft+grpo"] / "reward_history.json"
    if hist_path.is_file():
        hist = json.loads(hist_path.read_text())
        series = {
            name: [
                (h["step"], h[f"rewards/{name}/mean"]) for h in hist if f"rewards/{name}/mean" in h
            ]
            for name in ("format_reward", "detection_reward", "answer_reward")
        }
        series["total"] = [(h["step"], h["reward"]) for h in hist if "reward" in h]
        plot_curves(series, out / "grpo_rewards.png", "GRPO rewards (mean over completions)")
        lines += ["", "## GRPO rewards during training", "", "![GRPO rewards](grpo_rewards.png)"]
    overlays = pick_overlays(
        sorted((out / "eval" / "sft_grpo" / "detection").rglob("*_overlay.png"))
    )
    if overlays:
        (out / "overlays").mkdir(exist_ok=True)
        lines += ["", "## Predicted masks of the SFT+GRPO model (held-out images)", ""]
        for p in overlays:
            dst = out / "overlays" / f"{p.parent.name}_{p.name}"
            shutil.copyfile(p, dst)
            lines.append(f"![{p.stem}](overlays/{dst.name})")
    lines += ["", "## Run", "", "```json", json.dumps({"plan": plan.__dict__, "seconds":
              {k: round(v, 1) for k, v in seconds.items()}}, indent=1), "```", ""]  # fmt: skip
    path = out / "report.md"
    path.write_text("\n".join(lines))
    shown = {stage: {k.label: v for k, v in m.items()} for stage, m in metrics.items()}
    (out / "report.json").write_text(json.dumps({"metrics": shown, "seconds": seconds}, indent=1))
    return path


MODEL_FILES = (
    "model.safetensors", "config.json", "generation_config.json", "tokenizer.json",
    "tokenizer_config.json", "chat_template.jinja", "processor_config.json",
    "preprocessor_config.json", "special_tokens_map.json", "omniad.json",
)  # fmt: skip


def export_model(result: DemoResult, dest: str | Path) -> Path:
    """Copy the demo's best checkpoint (weights, processor, spec) to ``dest`` with a card.

    ``dest`` is replaced. The card (``README.md``) says what the model is, what it was
    trained on and what it measured; :func:`omniad_core.inspector.demo_model_path`
    finds a model exported to ``omniad_core/demo_model``.
    """
    from omniad_train.synthetic import CATEGORIES

    dest = Path(dest)
    src = result.best_model
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for name in MODEL_FILES:
        if (src / name).is_file():
            shutil.copyfile(src / name, dest / name)
    plan = dict(result.plan.__dict__)
    plan["categories"] = list(plan["categories"] or CATEGORIES)
    (dest / "demo_plan.json").write_text(json.dumps(plan, indent=1) + "\n")
    stage = result.best_stage
    rows = "\n".join(
        f"| {k.label} | {_fmt(k, result.metrics[stage][k])} |"
        for k in _rows_with_values(result.metrics, [stage])
    )
    (dest / "README.md").write_text(
        "# OmniAD demo model\n\n"
        "A 1.7M-parameter Qwen2.5-VL built offline and trained by `omniad demo` on "
        "synthetic defects only (a vision stage 0, SFT, GRPO; CPU, minutes). It shows the "
        "method working end to end; it is not a model for real inspection. Pass "
        "`--model PATH` (or `Inspector.from_pretrained(PATH)`) to use real weights.\n\n"
        f"Checkpoint: `{stage}`. Held-out synthetic images "
        f"(categories: {', '.join(plan['categories'])}):\n\n"
        "| metric | value |\n|---|---:|\n" + rows + "\n\n"
        "Reproduce: `omniad demo --out runs/demo --export omniad_core/demo_model` "
        "(see docs/demo.md).\n"
    )
    return dest


def demo_main(argv: Sequence[str] | None = None) -> int:
    """``omniad demo [--quick] [--out DIR] [--seed N] [--overwrite] [--export DIR]``."""
    import argparse
    import sys

    p = argparse.ArgumentParser(prog="omniad demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a ~2-minute version with tiny sizes")
    p.add_argument(
        "--out",
        default="runs/demo",
        help="output folder (re-running resumes; steps whose settings changed are redone)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="first delete the demo files of an earlier run in --out (refused for a "
        "folder that is not a demo's)",
    )
    p.add_argument(
        "--export",
        metavar="DIR",
        help="copy the best checkpoint here with a model card "
        "(omniad_core/demo_model is the embedded model `omniad inspect` uses)",
    )
    a = p.parse_args(argv)
    plan = (DemoPlan.quick if a.quick else DemoPlan.full)(seed=a.seed)
    t0 = time.perf_counter()
    try:
        result = run_demo(a.out, plan, overwrite=a.overwrite)
    except DemoError as exc:
        print(f"omniad demo: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            "omniad demo: interrupted; finished steps are kept, run the same command again "
            "to go on from the step that was interrupted",
            file=sys.stderr,
        )
        return 130
    _say(f"finished in {time.perf_counter() - t0:.0f} s; best model: {result.best_model}")
    if a.export:
        _say(f"exported the best model to {export_model(result, a.export)}")
    return 0
