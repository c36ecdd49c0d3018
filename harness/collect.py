"""``python -m harness.collect`` (kept for scripts written before ``harness collect``): runs
:mod:`harness.commands.collect`, where the command lives."""

import sys

from harness.commands.collect import main

if __name__ == "__main__":
    sys.exit(main())
