"""``harness sweep`` (also ``python -m harness.sweep``): the main job.

Evaluates each env's checkpoint at a grid of target returns and writes, into ``--out`` (default
``results/<timestamp>``), the files named in :mod:`harness.core.schema`: ``episodes.csv``,
``summary.csv``, ``metadata.json`` (arguments, the resolved config, versions, git sha, machine,
numerics, batch invariance, times), the figures (PNG and SVG) and ``report.html``.

This module is the command line only: the parser (one flag per :class:`harness.running.runner.SweepConfig`
field, plus ``--config FILE.toml``), the printed table and :func:`main`. The work is in
:func:`harness.running.runner.run_sweep`; from Python use ``harness.evaluate`` and ``harness.run_sweep``.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from harness.analysis.calibration import format_table
from harness.commands.cli import DefaultsFormatter, Parser, add_config_flags, quiet_hf_logs, read_toml_config, run
from harness.core.errors import HarnessError
from harness.core.schema import (
    CALIBRATION,
    EPISODES,
    EXIT_BAD_INPUT,
    EXIT_FAILED_EPISODES,
    EXIT_OK,
    NO_SHIFT,
    READ_OPTIONS,
    SUMMARY,
    Status,
)
from harness.io.checkpoints import embedded_names
from harness.running.runner import SweepConfig, run_sweep


def build_parser(suppress: bool = False) -> argparse.ArgumentParser:
    """The sweep's parser: one flag per :class:`SweepConfig` field (name, type, default and help from
    the field), plus ``--config``. ``suppress``: flags the user did not type stay out of the namespace."""
    p = Parser(
        prog="harness sweep",
        description="Evaluate Decision Transformer checkpoints over a grid of target returns, batched. "
        f"Embedded checkpoints: {', '.join(embedded_names())}.",
        formatter_class=DefaultsFormatter,
    )
    p.add_argument(
        "--config",
        default=argparse.SUPPRESS if suppress else None,
        metavar="FILE.toml",
        help="read options from a TOML file (keys: these options' names with underscores, e.g. num_envs = 8); "
        "flags on the command line override it; the resolved options go into metadata.json",
    )
    add_config_flags(p, SweepConfig, suppress=suppress)
    return p


def _print_summary(summary: pd.DataFrame, out: Path) -> None:
    versions = summary.groupby("env")["env_id"].nunique().max() > 1
    shifted = "shift" in summary and (summary["shift"].astype(str) != NO_SHIFT).any()
    table = pd.DataFrame(
        {
            ("env_id" if versions else "env"): summary["env_id" if versions else "env"],
            "checkpoint": summary["checkpoint"],
            **({"shift": summary["shift"]} if shifted else {}),
            "target": summary["target"].map("{:.0f}".format),
            "n": summary["n"],
            "return": [
                f"{m:.0f} [{lo:.0f}, {hi:.0f}]"
                for m, lo, hi in zip(
                    summary["return_mean"], summary["return_ci_low"], summary["return_ci_high"], strict=True
                )
            ],
            "score": summary["score_mean"].map("{:.1f}".format),
            "length": summary["length_mean"].map("{:.0f}".format),
            **({"retained": summary["retained"].map(lambda x: "" if pd.isna(x) else f"{x:.2f}")} if shifted else {}),
        }
    )
    print(table.to_string(index=False))
    print(f"\nwrote {out}/{EPISODES}, {SUMMARY}, metadata.json and figures")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code.

    0: done, every episode ``ok``; 2: bad input (one line on stderr, nothing written or lost);
    3: done, but some episodes failed (their ``status`` says why); 130: interrupted (the finished
    episodes are saved; rerunning the same command resumes).
    """
    quiet_hf_logs()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)  # full validation and --help, with the defaults shown
    typed = vars(build_parser(suppress=True).parse_args(argv))  # only what was typed

    def resolve() -> SweepConfig:
        values = read_toml_config(typed.pop("config"), SweepConfig) if "config" in typed else {}
        values |= typed
        values.setdefault("out", str(Path("results") / datetime.now(timezone.utc).strftime("%Y-%m-%dT%H-%M-%S")))
        return SweepConfig(**values)

    try:
        config = resolve()
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    del args
    command = " ".join(["harness sweep", *argv])
    log = Path(config.out) / EPISODES

    def interrupted() -> None:
        kept = max(sum(1 for _ in open(log, encoding="utf-8")) - 1, 0) if log.is_file() else 0
        print(
            f"\ninterrupted: {kept} finished episodes are saved in {log}; rerun the same command to resume",
            file=sys.stderr,
        )

    def body() -> int:
        episodes = run_sweep(config, command=command, flags=True)
        read = READ_OPTIONS
        _print_summary(pd.read_csv(Path(config.out) / SUMMARY, **read), Path(config.out))
        if (Path(config.out) / CALIBRATION).is_file():
            print("return conditioning (95% bootstrap CIs; calibration.csv):")
            print(format_table(pd.read_csv(Path(config.out) / CALIBRATION, **read)))
        failed = episodes[episodes["status"] != Status.OK.value]
        if len(failed):
            kinds = ", ".join(f"{n} {k}" for k, n in failed["status"].value_counts().items())
            print(f"warning: {len(failed)} episodes failed ({kinds}); see the status column", file=sys.stderr)
            return EXIT_FAILED_EPISODES
        return EXIT_OK

    return run(body, on_interrupt=interrupted)


if __name__ == "__main__":
    sys.exit(main())
