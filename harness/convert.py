"""``python -m harness.convert`` (also ``harness convert``): runs :mod:`harness.commands.convert`, where
the command lives."""

import sys

from harness.commands.convert import main

if __name__ == "__main__":
    sys.exit(main())
