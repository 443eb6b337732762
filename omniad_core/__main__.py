"""``python -m omniad_core``: the ``omniad`` command line."""

import sys

from omniad_core.cli import main

if __name__ == "__main__":
    sys.exit(main())
