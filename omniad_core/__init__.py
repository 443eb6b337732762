"""omniad_core: prompts, response parsing, rewards, metrics and the Inspector.

Not built yet: this package is a placeholder for the layer described in issue 3 and
exports nothing so far.
"""

__all__: list[str] = []
