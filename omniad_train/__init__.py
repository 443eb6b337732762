"""omniad_train: data preparation, SFT and GRPO on TRL with DeepSpeed.

Not built yet: this package is a placeholder for the layer described in issue 4 and
exports nothing so far.
"""

__all__: list[str] = []
