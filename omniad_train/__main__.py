"""``python -m omniad_train``: the ``omniad-train`` command line (works under torchrun)."""

import sys

from omniad_train.cli import main

if __name__ == "__main__":
    sys.exit(main())
