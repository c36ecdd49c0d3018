"""``python -m harness.compare`` (kept for scripts written before ``harness compare``): runs
:mod:`harness.commands.compare`, where the command lives."""

import sys

from harness.commands.compare import main

if __name__ == "__main__":
    sys.exit(main())
