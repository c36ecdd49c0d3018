"""``python -m harness.sweep`` (kept for scripts written before ``harness sweep``): runs
:mod:`harness.commands.sweep`, where the command lives."""

import sys

from harness.commands.sweep import main

if __name__ == "__main__":
    sys.exit(main())
