"""``python -m harness.train`` (kept for scripts written before ``harness train``): runs
:mod:`harness.commands.train`, where the command lives."""

import sys

from harness.commands.train import main

if __name__ == "__main__":
    sys.exit(main())
