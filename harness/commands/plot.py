"""Redraw the figures and report of sweep folders from their CSV files: ``harness plot results/<run>``.

The figures are drawn by :mod:`harness.analysis.figures`, the page by :mod:`harness.analysis.report`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from harness.analysis.calibration import write_calibration
from harness.analysis.figures import save_figures
from harness.analysis.report import write_report
from harness.commands.cli import Parser, run
from harness.core.schema import EPISODES, SUMMARY


def main(argv: list[str] | None = None) -> int:
    """Command line: redraw the figures and report.html of one or more result folders (exit 0, or 2 on bad input)."""
    parser = Parser(
        prog="harness plot", description="Redraw the figures and report.html of a sweep from its CSV files."
    )
    parser.add_argument("dirs", nargs="+", type=Path, help="result folders (results/<run>)")
    args = parser.parse_args(argv)

    def body() -> int:
        for d in args.dirs:
            if (d / EPISODES).is_file() and (d / SUMMARY).is_file():
                print(write_calibration(d))
            for path in save_figures(d):
                print(path)
            print(write_report(d))
        return 0

    return run(body)


if __name__ == "__main__":
    sys.exit(main())
