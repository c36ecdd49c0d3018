"""``python -m harness.regression`` (kept for scripts written before ``harness regression``): runs
:mod:`harness.commands.regression`, where the command lives."""

import sys

from harness.commands.regression import main

if __name__ == "__main__":
    sys.exit(main())
