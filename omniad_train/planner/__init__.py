"""Plan a run before it starts: ``omniad-train plan`` and the start-up checks of SFT/GRPO.

Only configs, the tokenizer and the processor are loaded, never weights:

- :mod:`~omniad_train.planner.batch`: the global batch of a recipe realised on a world
  size (used by :func:`omniad_train.config.parse_recipe` too);
- :mod:`~omniad_train.planner.tokens`: image tokens per prompt and target lengths in
  the checkpoint's own tokens;
- :mod:`~omniad_train.planner.memory`: parameter counts from ``config.json`` and the
  memory per device under the chosen ZeRO stage;
- :mod:`~omniad_train.planner.report`: the plan itself, its checks (errors and
  warnings), its table and JSON, and :func:`startup_checks`;
- :mod:`~omniad_train.planner.cli`: ``omniad-train plan``.

This package's ``__init__`` imports only :mod:`~omniad_train.planner.batch`, which
depends on nothing but the recipe checks, so the recipe layer can use it.
"""

from omniad_train.planner.batch import BatchPlan, resolve_batch, world_size_from_env

__all__ = ["BatchPlan", "resolve_batch", "world_size_from_env"]
