"""Export of the demo's best checkpoint: its model files, the plan and a model card."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from omniad_train.demo.pipeline import DemoResult
from omniad_train.demo.report import format_figure, rows_with_values
from omniad_train.synthetic import CATEGORIES

__all__ = ["MODEL_FILES", "export_model"]

#: The files of a checkpoint :func:`export_model` copies (those that exist).
MODEL_FILES = (
    "model.safetensors",
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "processor_config.json",
    "preprocessor_config.json",
    "special_tokens_map.json",
    "omniad.json",
)


def export_model(result: DemoResult, dest: str | Path) -> Path:
    """Copy the demo's best checkpoint (weights, processor, spec) to ``dest`` with a card.

    ``dest`` is replaced. The card (``README.md``) says what the model is, what it was
    trained on and what it measured; :func:`omniad_core.inspector.demo_model_path`
    finds a model exported to ``omniad_core/demo_model``.
    """
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
        f"| {k.label} | {format_figure(k, result.metrics[stage][k])} |"
        for k in rows_with_values(result.metrics, [stage])
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
