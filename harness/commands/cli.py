"""What every command line shares: one-line argparse errors, ``HarnessError`` → exit 2, quiet logs.

Each ``python -m harness.<cmd>`` builds its parser with :class:`Parser` and ends with
``sys.exit(run(main_body, argv))``:

- bad arguments print ``error: <problem> (see python -m harness.<cmd> --help)``, exit 2;
- a :class:`harness.core.errors.HarnessError` prints ``error: <problem; fix>``, exit 2, no traceback;
- Ctrl-C exits 130 (a command that keeps partial results says where before it returns).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import math
import sys
import textwrap
from collections.abc import Callable

from harness.core.errors import HarnessError
from harness.core.schema import EXIT_BAD_INPUT, EXIT_INTERRUPTED


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
    ``harness.commands.train`` has one.
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


def finite_float(text: str) -> float:
    """argparse type: a finite number (target returns), with a one-line error otherwise."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; pass numbers such as 1800 3600") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number; pass numbers such as 1800 3600")
    return value


def whole(text: str) -> int:
    """argparse type: a whole number, with a one-line error otherwise."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


_TYPES = {"int": whole, "float": finite_float, "str": str}


def flag_of(f: dataclasses.Field) -> str:
    """The command-line flag of a config field: ``num_envs`` → ``--num-envs`` unless its metadata says."""
    return f.metadata.get("cli", {}).get("flag", "--" + f.name.replace("_", "-"))


def add_config_flags(parser: argparse.ArgumentParser, cls: type, suppress: bool = False) -> None:
    """One flag per field of the config dataclass ``cls``: the field's name, type and default, its
    docstring as the help, and ``metadata={"cli": {...}}`` for the rest (``flag``, ``metavar``,
    ``choices``, ``action="append"``, ``invert`` for a ``--no-x`` switch). Types are read from the
    annotation: ``int``, ``float``, ``str``, ``bool`` and ``list[...]`` (``nargs="+"``), each possibly
    ``| None``. ``suppress``: no defaults (only what the user typed lands in the namespace; for
    merging with ``--config``)."""
    docs = field_docs(cls)
    for f in dataclasses.fields(cls):
        cli = dict(f.metadata.get("cli", {}))
        flag, invert, action = flag_of(f), cli.pop("invert", False), cli.pop("action", None)
        cli.pop("flag", None)
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default  # type: ignore[misc]
        kw: dict[str, object] = {"dest": f.name, "help": docs.get(f.name, "")}
        kw["default"] = argparse.SUPPRESS if suppress else default
        annotation = str(f.type).replace(" ", "")
        if annotation == "bool":
            kw["action"] = "store_false" if invert else "store_true"
        elif action == "append":
            kw |= {"action": "append", "metavar": cli.get("metavar")}
            if not suppress:
                kw["default"] = []
        else:
            base = annotation.replace("|None", "")
            if base.startswith("list["):
                kw["nargs"] = "+"
                base = base[5:-1]
            kw["type"] = _TYPES[base]
            kw |= cli
        parser.add_argument(flag, **kw)  # type: ignore[arg-type]


def read_toml_config(path: str, cls: type) -> dict[str, object]:
    """The ``[section-less]`` keys of a TOML file as config values, checked against ``cls``'s fields
    (one-line :class:`HarnessError` naming the file and the key otherwise)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise HarnessError(f"--config {path}: cannot read it ({exc.strerror}); pass a TOML file") from None
    except tomllib.TOMLDecodeError as exc:
        raise HarnessError(f"--config {path} is not valid TOML ({exc}); fix the file") from None
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise HarnessError(
            f"--config {path}: unknown key {unknown[0]!r}; the keys are the option names with underscores "
            f"({', '.join(sorted(fields))})"
        )
    for key, value in data.items():
        annotation = str(fields[key].type).replace(" ", "")
        base = annotation.replace("|None", "")
        kinds = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,)}
        if base.startswith("list[") and isinstance(value, kinds[base[5:-1]]) and not isinstance(value, bool):
            data[key] = value = [value]  # one value where a list is taken: env_version = "v5"
        if base.startswith("list["):
            ok = isinstance(value, list) and all(
                isinstance(v, kinds[base[5:-1]]) and not isinstance(v, bool) for v in value
            )
        else:
            ok = isinstance(value, kinds[base]) and (base == "bool" or not isinstance(value, bool))
        if not ok:
            raise HarnessError(f"--config {path}: {key} = {value!r} is not a {base}; fix the file")
    return data


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
