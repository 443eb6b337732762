"""``omniad-train COMMAND``: the training command line, and the conventions of its commands.

Commands: ``prepare`` (datasets), ``synth`` (synthetic defect images), ``sft`` and
``grpo`` (training from a recipe), ``plan`` (what a recipe means on N GPUs), ``eval``
(the evaluation runners), ``demo`` (the whole method on synthetic defects) and
``recipes`` (the shipped recipes, by name).  Under ``accelerate launch`` or ``torchrun``
run ``python -m omniad_train sft ...``.

Every command follows the same conventions (:class:`CommandParser`, defined in
:mod:`omniad_train._argparse` and re-exported here):

- its usage names it as typed (``omniad-train prepare``), its own options come first;
- every option is accepted as ``--flag_name`` and as ``--flag-name``;
- ``--help`` is fast: torch, transformers, TRL and datasets load only when work starts
  (``sft --help`` lists the OmniAD keys and the common TRL keys; ``--help-all`` builds
  TRL's parser for all of them);
- errors are one line, ``omniad-train COMMAND: error: ...``, exit status 1 (2 for
  wrong usage).

``sft`` and ``grpo`` take ``--config RECIPE`` (a YAML path or a shipped recipe's name)
plus ``--key value`` overrides (any field of the recipe's dataclasses).  A bad recipe
(unknown key, wrong type or range, a YAML tag, a missing file) is a one-line error
before any model loads.

>>> normalize_flags(["--max-records", "5", "--quiet", "--x-y"], {"--max_records", "--quiet"})
['--max_records', '5', '--quiet', '--x-y']
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Callable, Sequence
from typing import Any

from omniad_train._argparse import CommandParser, HelpFormatter, normalize_flags, plain_help

__all__ = [
    "COMMANDS",
    "CommandParser",
    "HelpFormatter",
    "main",
    "normalize_flags",
    "plain_help",
    "recipes_main",
]

#: The commands and their one-line summaries, in the order ``omniad-train --help`` lists them.
COMMANDS: dict[str, str] = {
    "prepare": "build SFT and GRPO datasets from MMAD, MVTec-style folders or JSONL",
    "synth": "write synthetic defect images (MVTec-style folders + mmad.json)",
    "sft": "supervised fine-tuning from a recipe: omniad-train sft --config RECIPE",
    "grpo": "GRPO with the three rewards: omniad-train grpo --config RECIPE",
    "plan": "what a recipe means on N GPUs (batch, lengths, memory), before it runs",
    "eval": "evaluate a model: omniad-train eval {mmad,detection,merge} ...",
    "demo": "the whole method on synthetic defects, end to end (also `omniad demo`)",
    "recipes": "list the shipped recipes and DeepSpeed / accelerate configs, by name",
}


# --------------------------------------------------------------------------- top level
def _top_help() -> str:
    width = max(len(c) for c in COMMANDS) + 2
    lines = [
        "usage: omniad-train [-h] COMMAND [options]",
        "",
        "Train and evaluate OmniAD models: data preparation, SFT and GRPO on TRL, the",
        "evaluation runners and the demo.",
        "",
        "commands:",
        *(f"  {name:<{width}}{text}" for name, text in COMMANDS.items()),
        "",
        "options:",
        "  -h, --help  show this help message and exit",
        "",
        "Run `omniad-train COMMAND --help` for a command's options. Every option is",
        "accepted as --flag_name and as --flag-name. Under accelerate launch or torchrun",
        "use `python -m omniad_train COMMAND ...`.",
    ]
    return "\n".join(lines)


def _unknown(command: str) -> int:
    close = difflib.get_close_matches(command, list(COMMANDS), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    print("usage: omniad-train [-h] COMMAND [options]", file=sys.stderr)
    print(
        f"omniad-train: error: unknown command {command!r}{hint}; choose from "
        + ", ".join(COMMANDS),
        file=sys.stderr,
    )
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch to a command; returns the exit status (141, quietly, when the reader of
    the output went away: ``omniad-train sft --help | head``)."""
    from omniad_core._cli_args import reader_gone

    try:
        return _dispatch(argv)
    except BrokenPipeError:
        return reader_gone()


def _dispatch(argv: Sequence[str] | None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_top_help(), file=sys.stdout if args else sys.stderr)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    runners: dict[str, Callable[[list[str]], int]] = {
        "prepare": _prepare,
        "synth": _synth,
        "eval": _eval,
        "demo": _demo,
        "plan": _plan,
        "recipes": recipes_main,
        "sft": lambda a: _train("sft", a),
        "grpo": lambda a: _train("grpo", a),
    }
    if command not in runners:
        return _unknown(command)
    from omniad_core._quiet import quiet_known_noise

    quiet_known_noise()
    return int(runners[command](rest))  # argparse's --help and usage errors: SystemExit


def _prepare(rest: list[str]) -> int:
    from omniad_train.data.cli import prepare_main

    return prepare_main(rest)


def _synth(rest: list[str]) -> int:
    from omniad_train.synthetic.writer import synthetic_main

    return synthetic_main(rest)


def _eval(rest: list[str]) -> int:
    from omniad_train.evaluation.cli import main as eval_main

    return int(eval_main(rest))


def _demo(rest: list[str]) -> int:
    from omniad_train.demo.cli import demo_main

    return demo_main(rest, prog="omniad-train demo")


def _plan(rest: list[str]) -> int:
    from omniad_train.planner.cli import plan_main

    return plan_main(rest)


# --------------------------------------------------------------------------- sft / grpo
#: Common TRL / transformers keys of ``sft --help`` and ``grpo --help`` (``--help-all``
#: lists every key); the tests check that each is a field of the installed TRL classes.
COMMON_KEYS: dict[str, str] = {
    "model_name_or_path": "checkpoint folder or hub id to start from",
    "output_dir": "where checkpoints and the final model are written",
    "learning_rate": "peak learning rate",
    "num_train_epochs": "passes over the training split (max_steps wins when > 0)",
    "max_steps": "optimizer steps to run (-1: use num_train_epochs)",
    "per_device_train_batch_size": "samples (GRPO: completions) per device and micro-step; "
    "derived from global_batch_size when that is set",
    "gradient_accumulation_steps": "micro-steps per optimizer step; derived from "
    "global_batch_size when that is set",
    "use_peft": "LoRA instead of full fine-tuning (lora_r, lora_alpha, lora_target_modules)",
    "deepspeed": "a DeepSpeed JSON, or a shipped one's name: deepspeed/zero3",
    "resume_from_checkpoint": "true: the newest complete checkpoint in output_dir; or a path",
    "dtype": "weights' dtype: bfloat16, float16, float32 or auto",
    "attn_implementation": "auto (flash_attention_2 when installed with CUDA, else sdpa), "
    "sdpa, eager or flash_attention_2",
    "activation_checkpointing": "recompute activations in the backward pass to save "
    "memory (the old name gradient_checkpointing is read too)",
    "use_cpu": "train on CPU (the tiny recipes)",
    "bf16": "bf16 mixed precision (needs a GPU unless use_cpu)",
    "logging_steps": "log every N optimizer steps",
    "save_steps": "save a checkpoint every N optimizer steps",
    "report_to": "none, tensorboard, wandb, ...",
    "seed": "seed of the data order, initialisation and sampling",
}
COMMON_SFT_KEYS: dict[str, str] = {
    "max_length": "tokens of prompt (with its image tokens) + target; longer rows are cut",
}
COMMON_GRPO_KEYS: dict[str, str] = {
    "num_generations": "completions per prompt (one group)",
    "max_completion_length": "tokens a completion may have; longer ones are cut",
    "reward_weights": "weights of the format, detection and answer rewards",
    "beta": "KL weight against the reference model (0: none)",
    "temperature": "sampling temperature of the completions",
    "use_vllm": "generate with vLLM (vllm_mode: colocate or server)",
}
_TRL_CLASS = {"sft": "SFTConfig", "grpo": "GRPOConfig"}


def _metavar(tp: Any) -> str:
    """``N``, ``X``, ``TEXT`` or ``BOOL`` for a field's type (``None`` left out).

    >>> _metavar("int | None"), _metavar(float), _metavar("str")
    ('N', 'X', 'TEXT')
    """
    text = tp if isinstance(tp, str) else getattr(tp, "__name__", str(tp))
    base = [t.strip() for t in text.split("|") if t.strip() not in ("None", "NoneType")]
    names = {"int": "N", "float": "X", "str": "TEXT", "bool": "BOOL"}
    return names.get(base[0], "VALUE") if len(base) == 1 else "VALUE"


def _training_parser(kind: str) -> CommandParser:
    """The short ``--help`` of ``sft`` / ``grpo``: built without TRL (fast)."""
    from dataclasses import MISSING, fields

    from omniad_train.script_args import OmniADScriptArguments

    p = CommandParser(
        prog=f"omniad-train {kind}",
        usage=f"omniad-train {kind} --config RECIPE [--key value ...]",
        description=(
            "Supervised fine-tuning on prepared OmniAD data with TRL's SFTTrainer."
            if kind == "sft"
            else "GRPO with the three OmniAD rewards (format, detection, answer) on TRL's "
            "GRPOTrainer."
        )
        + " A recipe's keys are fields of OmniADScriptArguments, TRL's "
        f"{_TRL_CLASS[kind]} and ModelConfig; any key can be overridden on the command line "
        "(--learning_rate 5e-5). Every value is checked before a model loads.",
        epilog=f"examples:\n  omniad-train {kind} --config tiny_cpu/{kind}\n"
        f"  omniad-train {kind} --config qwen2_5_vl_7b/{kind} --output_dir runs/mine\n"
        f'  accelerate launch --config_file "$(omniad-train recipes --path accelerate/zero3)" '
        f"\\\n      -m omniad_train {kind} --config qwen2_5_vl_7b/{kind}\n\n"
        "Shipped recipes: omniad-train recipes. Docs: docs/training.md.",
        add_help=False,
    )
    own = p.add_argument_group("options")
    own.add_argument("-h", "--help", action="store_true", help="show this help and exit")
    own.add_argument(
        "--help_all",
        action="store_true",
        help=f"also list every key of TRL's {_TRL_CLASS[kind]} and ModelConfig (hundreds; "
        "builds TRL's parser, a few seconds)",
    )
    own.add_argument(
        "--config",
        metavar="RECIPE",
        help=f"a recipe YAML, or a shipped recipe's name (e.g. qwen2_5_vl_7b/{kind}; a local "
        "path wins); `omniad-train recipes` lists them",
    )
    script = p.add_argument_group("OmniAD keys (OmniADScriptArguments)")
    for f in fields(OmniADScriptArguments):
        default = None if f.default is MISSING else f.default
        script.add_argument(
            f"--{f.name}",
            metavar=_metavar(f.type),
            help=f"{f.metadata.get('help', '')} (default: {default!r})",
        )
    common = p.add_argument_group(
        f"common TRL keys ({_TRL_CLASS[kind]}, ModelConfig; every key: --help_all)"
    )
    extra = COMMON_SFT_KEYS if kind == "sft" else COMMON_GRPO_KEYS
    for name, text in {**COMMON_KEYS, **extra}.items():
        common.add_argument(f"--{name}", metavar="VALUE", help=text)
    return p


def _help_all(kind: str) -> str:
    """Every key, from TRL's own parser (slow: builds its dataclass parser)."""
    from trl import GRPOConfig, ModelConfig, SFTConfig, TrlParser

    from omniad_train.script_args import OmniADScriptArguments

    classes = (OmniADScriptArguments, SFTConfig if kind == "sft" else GRPOConfig, ModelConfig)
    parser = TrlParser(
        classes,
        prog=f"omniad-train {kind}",
        usage=f"omniad-train {kind} --config RECIPE [--key value ...]",
        add_help=False,
    )
    text = parser.format_help().split("\n", 2)[-1]  # past the usage line
    return plain_help(text)


def _train(kind: str, rest: list[str]) -> int:
    """``omniad-train sft|grpo``: help without TRL, then the recipe and the run."""
    names = {"--" + t[2:].split("=", 1)[0].replace("-", "_") for t in rest if t.startswith("--")}
    names |= {"-h"} & set(rest)
    if not {"--config", "--model_name_or_path", "-h", "--help", "--help_all"} & names:
        print(f"usage: omniad-train {kind} --config RECIPE [--key value ...]", file=sys.stderr)
        print(
            f"omniad-train {kind}: error: pass --config RECIPE (see `omniad-train recipes`), "
            f"e.g. omniad-train {kind} --config tiny_cpu/{kind}",
            file=sys.stderr,
        )
        return 2
    if {"-h", "--help", "--help_all"} & names:
        parser = _training_parser(kind)
        print(parser.format_help())
        if "--help_all" in names:
            print(f"every key ({_TRL_CLASS[kind]}, ModelConfig, OmniADScriptArguments):")
            print(_help_all(kind))
        return 0
    from omniad_core.checkpoint import MissingPackageError
    from omniad_train.config import RecipeError

    try:
        if kind == "sft":
            from omniad_train.sft import cli
        else:
            from omniad_train.grpo import cli
        cli(rest)
    except (RecipeError, FileNotFoundError, MissingPackageError) as exc:
        message = " ".join(str(exc).split())  # one line, whatever the library wrote
        print(f"omniad-train {kind}: error: {message}", file=sys.stderr)
        return 1
    return 0


# --------------------------------------------------------------------------- recipes
def _recipes_parser() -> CommandParser:
    return CommandParser(
        prog="omniad-train recipes",
        description="The recipes, DeepSpeed and accelerate configs shipped with omniad_train, "
        "by name. Pass a recipe's name to --config (a local file of the same path wins) and a "
        "DeepSpeed config's name to the deepspeed key.",
        epilog="examples:\n"
        "  omniad-train sft --config tiny_cpu/sft\n"
        "  omniad-train recipes --show qwen2_5_vl_7b/sft > my_sft.yaml   # a copy to edit\n"
        '  accelerate launch --config_file "$(omniad-train recipes --path accelerate/zero3)" '
        "\\\n      -m omniad_train sft --config qwen2_5_vl_7b/sft",
    )


def recipes_main(argv: Sequence[str] | None = None) -> int:
    """``omniad-train recipes [--path NAME | --show NAME]``; returns the exit status."""
    from omniad_train.recipe_yaml import recipes_folder, resolve_shipped, shipped_recipes

    p = _recipes_parser()
    g = p.add_mutually_exclusive_group()
    g.add_argument("--path", metavar="NAME", help="print the absolute path of one shipped file")
    g.add_argument("--show", metavar="NAME", help="print one shipped file's contents")
    a = p.parse_args(argv)
    shipped = shipped_recipes()
    name = a.path or a.show
    if name is not None:
        path = resolve_shipped(name, ("recipe", "deepspeed", "accelerate"))
        if path is None:
            print(
                f"omniad-train recipes: error: no shipped file named {name!r}; the names are "
                + ", ".join(f.name for f in shipped),
                file=sys.stderr,
            )
            return 1
        print(path if a.path else path.read_text(encoding="utf-8"), end="\n" if a.path else "")
        return 0
    width = max(len(f.name) for f in shipped) + 2
    titles = {
        "recipe": "recipes (omniad-train sft|grpo|plan --config NAME):",
        "deepspeed": "DeepSpeed configs (recipe key deepspeed: NAME, or --deepspeed NAME):",
        "accelerate": 'accelerate configs (accelerate launch --config_file "$(omniad-train '
        'recipes --path NAME)" -m omniad_train ...):',
    }
    for kind, title in titles.items():
        print(title)
        for f in shipped:
            if f.kind == kind:
                print(f"  {f.name:<{width}}{f.description}")
        print()
    print(f"folder: {recipes_folder()}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
