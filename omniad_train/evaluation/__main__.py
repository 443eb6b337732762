"""``python -m omniad_train.evaluation {mmad,detection,merge} ...``."""

import sys

from omniad_train.evaluation.cli import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m omniad_train.evaluation"))
