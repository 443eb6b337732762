"""``python -m omniad_core.folder``: the folder-inspection command line."""

import sys

from omniad_core.folder.cli import folder_main

if __name__ == "__main__":
    sys.exit(folder_main())
