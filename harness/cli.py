"""What every command line shares: one-line argparse errors, ``HarnessError`` → exit 2, quiet logs.

Each ``python -m harness.<cmd>`` builds its parser with :class:`Parser` and ends with
``sys.exit(run(main_body, argv))``:

- bad arguments print ``error: <problem> (see python -m harness.<cmd> --help)``, exit 2;
- a :class:`harness.errors.HarnessError` prints ``error: <problem; fix>``, exit 2, no traceback;
- Ctrl-C exits 130 (a command that keeps partial results says where before it returns).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from harness.errors import HarnessError
from harness.schema import EXIT_BAD_INPUT, EXIT_INTERRUPTED


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``error: ...``) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_BAD_INPUT, f"error: {message} (see {self.prog} --help)\n")


def quiet_hf_logs() -> None:
    """transformers' warnings and progress bars off (a sweep prints its own)."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def run(body: Callable[[], int], on_interrupt: Callable[[], None] | None = None) -> int:
    """Run a command's body; returns its exit code, 2 for a HarnessError, 130 for Ctrl-C."""
    try:
        return body()
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        if on_interrupt is not None:
            on_interrupt()
        return EXIT_INTERRUPTED
