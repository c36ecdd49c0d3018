"""``python -m harness.plot`` (kept for scripts written before ``harness plot``): runs
:mod:`harness.commands.plot`, where the command lives."""

import sys

from harness.commands.plot import main

if __name__ == "__main__":
    sys.exit(main())
