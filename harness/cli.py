"""What every command line shares: one-line argparse errors, ``HarnessError`` → exit 2, quiet logs.

Each ``python -m harness.<cmd>`` builds its parser with :class:`Parser` and ends with
``sys.exit(run(main_body, argv))``:

- bad arguments print ``error: <problem> (see python -m harness.<cmd> --help)``, exit 2;
- a :class:`harness.errors.HarnessError` prints ``error: <problem; fix>``, exit 2, no traceback;
- Ctrl-C exits 130 (a command that keeps partial results says where before it returns).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import sys
import textwrap
from collections.abc import Callable

from harness.errors import HarnessError
from harness.schema import EXIT_BAD_INPUT, EXIT_INTERRUPTED


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``error: ...``) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_BAD_INPUT, f"error: {message} (see {self.prog} --help)\n")


class DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``(default: X)`` after each option's help, except where there is none to show (None, required)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.required or isinstance(action.default, bool):
            return action.help
        return super()._get_help_string(action)


def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of a dataclass, one line each: the one source of a flag's help.

    Fields without a docstring are left out; ``tests/test_train.py`` checks that every option of
    ``harness.train`` has one.
    """
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)).body
    docs: dict[str, str] = {}
    for node, after in zip(body, body[1:], strict=False):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[node.target.id] = " ".join(after.value.value.split()).replace("``", "")
    return docs


def add_dataclass_flags(parser: argparse.ArgumentParser, cls: type, names: list[str]) -> None:
    """One ``--flag`` per named field of ``cls``: type and default from the field, help from its docstring.

    Booleans become ``store_true`` flags; ``int``/``float``/``str`` fields take one value.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    docs = field_docs(cls)
    for name in names:
        f = fields[name]
        flag = f"--{name.replace('_', '-')}"
        default = f.default if f.default is not dataclasses.MISSING else None
        help_text = docs.get(name, "")
        if isinstance(default, bool):
            parser.add_argument(flag, action="store_true", help=help_text)
        else:
            kind = type(default) if default is not None else str
            parser.add_argument(flag, type=kind, default=default, help=help_text)


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
