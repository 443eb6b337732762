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

The package, by concept (each module imports only those above it):

- :mod:`~omniad_train.demo.plan`: :class:`DemoPlan` (the sizes of a run, two presets);
- :mod:`~omniad_train.demo.steps`: resumable :class:`Step` s, their records in the run
  folder and the skip / resume / redo decisions (:func:`decide_steps`, :func:`run_steps`,
  :func:`claim_folder`);
- :mod:`~omniad_train.demo.metrics`: the figures (:class:`MetricKey`) and their sources;
- :mod:`~omniad_train.demo.report`: ``report.md``, reward curves and overlays;
- :mod:`~omniad_train.demo.pipeline`: the demo's steps and :func:`run_demo`;
- :mod:`~omniad_train.demo.export`: :func:`export_model` (checkpoint and model card);
- :mod:`~omniad_train.demo.cli`: :func:`demo_main`, the command line.
"""

from omniad_train.demo.cli import demo_main
from omniad_train.demo.export import MODEL_FILES, export_model
from omniad_train.demo.metrics import MEAN_R_DET, MetricKey, Metrics, mean_detection_reward
from omniad_train.demo.pipeline import DemoResult, demo_steps, run_demo
from omniad_train.demo.plan import STAGES, DemoPlan
from omniad_train.demo.report import pick_overlays, plot_curves
from omniad_train.demo.steps import (
    DEMO_ENTRIES,
    DEMO_FILE,
    DEMO_FORMAT,
    DONE,
    DemoError,
    Step,
    StepDecision,
    claim_folder,
    decide_steps,
    is_demo_folder,
    run_steps,
)

__all__ = [
    "DEMO_ENTRIES",
    "DEMO_FILE",
    "DEMO_FORMAT",
    "DONE",
    "MEAN_R_DET",
    "MODEL_FILES",
    "STAGES",
    "DemoError",
    "DemoPlan",
    "DemoResult",
    "MetricKey",
    "Metrics",
    "Step",
    "StepDecision",
    "claim_folder",
    "decide_steps",
    "demo_main",
    "demo_steps",
    "export_model",
    "is_demo_folder",
    "mean_detection_reward",
    "pick_overlays",
    "plot_curves",
    "run_demo",
    "run_steps",
]
