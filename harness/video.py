"""``python -m harness.video`` (kept for scripts written before ``harness video``): runs
:mod:`harness.commands.video`, where the command lives."""

import sys

from harness.commands.video import main

if __name__ == "__main__":
    sys.exit(main())
