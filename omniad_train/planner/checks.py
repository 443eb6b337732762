"""The plan's checks of the environment and of values that only clash at run time.

Each finding is an error (the run would fail or train something else than asked: the
plan exits non-zero and ``sft``/``grpo`` refuse to start), a warning (it would run, but
probably not as meant) or a note (worth knowing).

>>> from types import SimpleNamespace as NS
>>> f = Findings()
>>> environment_checks(None, NS(deepspeed=None, use_vllm=False), NS(
...     attn_implementation="flash_attention_2", use_peft=False), "sft",
...     zero_config(NS(deepspeed=None), None), f, flash=False)
'flash_attention_2'
>>> f.errors[0].split(",")[0]
'attn_implementation: flash_attention_2 needs the flash-attn package'
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omniad_train.config import DEEPSPEED_INSTALL, RecipeError
from omniad_train.modeling import resolve_attn_implementation

__all__ = ["Findings", "environment_checks", "zero_config"]


@dataclass
class Findings:
    """Errors, warnings and notes of a plan, in the order found."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def error(self, text: str) -> None:
        """The run would fail, or train something other than asked."""
        self.errors.append(text)

    def warn(self, text: str) -> None:
        """The run would work, probably not as meant."""
        self.warnings.append(text)

    def note(self, text: str) -> None:
        """Worth knowing."""
        self.notes.append(text)

    def processor_error(self, path: Path, exc: BaseException) -> None:
        """A processor that does not load: torchvision missing, or something else."""
        text = " ".join(str(exc).split())[:300]
        if "torchvision" in text.lower() or not _installed("torchvision"):
            self.error(
                f"the processor of {path} does not load without torchvision (Qwen2.5-VL's "
                "video processor needs it) and torchvision is not installed or does not "
                "import: install the torchvision build matching your torch "
                '(pip install -e ".[all,gpu]" after the CUDA torch; see docs/training.md)'
            )
        else:
            self.error(f"the processor of {path} does not load: {text}")


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _deepspeed_dict(value: Any) -> dict[str, Any] | None:
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value:
        try:
            data = json.loads(Path(value).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None
    return None


def zero_config(t: Any, override: int | None) -> dict[str, Any]:
    """The ZeRO stage and offloads of a run: ``override``, else the recipe's ``deepspeed``
    config, else accelerate's launcher environment, else none (stage 0)."""
    ds = _deepspeed_dict(getattr(t, "deepspeed", None))
    zero = (ds or {}).get("zero_optimization") or {}
    env = os.environ

    def offloaded(key: str, env_key: str) -> bool:
        dev = (zero.get(key) or {}).get("device") if ds else env.get(env_key)
        return str(dev or "none").lower() in ("cpu", "nvme")

    out = {
        "offload_optimizer": offloaded(
            "offload_optimizer", "ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE"
        ),
        "offload_params": offloaded("offload_param", "ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_DEVICE"),
        "deepspeed": ds is not None or env.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true",
    }
    if override is not None:
        return {**out, "stage": int(override), "source": "--zero_stage"}
    if ds is not None:
        return {**out, "stage": int(zero.get("stage", 0) or 0), "source": "deepspeed config"}
    stage = env.get("ACCELERATE_DEEPSPEED_ZERO_STAGE")
    if stage and stage.isdigit():
        return {**out, "stage": int(stage), "source": "accelerate launch"}
    return {**out, "stage": 0, "source": "none (no DeepSpeed config: plain data parallel)"}


def _attention(m: Any, f: Findings, flash: bool, cuda: bool) -> str:
    """The attention kernel the recipe means, by the loader's own rule.

    A plan may be made on a machine without the job's GPUs, so a missing CUDA is not an
    error here; a missing flash-attn package is (the job's environment is this one).
    """
    want = getattr(m, "attn_implementation", None)
    try:
        resolve_attn_implementation(want, flash_available=flash, cuda_available=True)
    except RecipeError as exc:
        f.error(str(exc))
        return str(want)
    got = resolve_attn_implementation(
        want, flash_available=flash, cuda_available=cuda or want != "auto"
    )
    if want == "auto":
        f.note(f"attn_implementation auto resolves to {got} here")
    return got


def _lora(m: Any, zero: dict[str, Any], f: Findings) -> None:
    if not getattr(m, "use_peft", False):
        return
    targets = getattr(m, "lora_target_modules", None)
    if targets == "all-linear" or (isinstance(targets, list) and "all-linear" in targets):
        f.warn(
            "lora_target_modules all-linear also wraps the vision tower's linears; leave it "
            "unset for the language model's projections only"
        )
    if zero["stage"] == 3:
        f.warn(
            "LoRA with ZeRO-3: the trained weights are partitioned across ranks, so the "
            "final merge must gather them or merge the saved adapter into the base in a "
            "separate step; check that the merged output_dir loads before relying on it"
        )


def _resume(t: Any, zero: dict[str, Any], f: Findings) -> None:
    r = getattr(t, "resume_from_checkpoint", None)
    if r in (None, False, "", "false", "False") or not getattr(t, "save_only_model", False):
        return
    if zero["deepspeed"]:
        f.error(
            "resume_from_checkpoint with save_only_model: true under DeepSpeed: the "
            "checkpoints hold no global_stepN/ optimizer states and transformers refuses to "
            "resume from them; start a new run from the weights instead "
            "(model_name_or_path: OUTPUT_DIR/checkpoint-N, no resume_from_checkpoint)"
        )
    else:
        f.warn(
            "resume_from_checkpoint with save_only_model: true: the checkpoints hold weights "
            "only, so the optimizer's moments start from zero and the learning-rate schedule "
            "from its start (the step count continues)"
        )


def environment_checks(
    s: Any,
    t: Any,
    m: Any,
    kind: str,
    zero: dict[str, Any],
    f: Findings,
    *,
    flash: bool | None = None,
    cuda: bool | None = None,
) -> str:
    """Packages the recipe needs, LoRA targets and ZeRO-3, weights-only resuming.

    Returns the attention implementation the run will use here.  ``flash`` / ``cuda``
    default to whether flash-attn imports and CUDA is present.
    """
    if flash is None:
        flash = _installed("flash_attn")
    if cuda is None:
        try:
            import torch

            cuda = bool(torch.cuda.is_available())
        except ImportError:
            cuda = False
    attn = _attention(m, f, flash, cuda)
    if kind == "grpo" and getattr(t, "use_vllm", False) and not _installed("vllm"):
        f.error(
            "use_vllm: true needs vLLM, which is not installed: pip install vllm (GPU "
            "machines), or set use_vllm: false"
        )
    if zero["deepspeed"] and not _installed("deepspeed"):
        f.error(
            "the run uses DeepSpeed, which is not installed on this machine (the memory "
            f"figures above still hold for the machine that trains): {DEEPSPEED_INSTALL}, "
            "after torch"
        )
    _lora(m, zero, f)
    _resume(t, zero, f)
    return attn
