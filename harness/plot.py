"""Redraw the figures of sweep folders from their CSV files: ``python -m harness.plot results/<run>``.

The figures themselves are in :mod:`harness.figures`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from harness.cli import Parser, run
from harness.figures import (
    checkpoint_colors,
    episode_length_figure,
    return_conditioning_figure,
    return_distributions_figure,
    save_figures,
)

__all__ = [
    "checkpoint_colors",
    "episode_length_figure",
    "return_conditioning_figure",
    "return_distributions_figure",
    "save_figures",
    "main",
]


def main(argv: list[str] | None = None) -> int:
    """Command line: redraw the figures of one or more result folders (exit 0, or 2 on bad input)."""
    parser = Parser(prog="python -m harness.plot", description="Redraw the figures of a sweep from its CSV files.")
    parser.add_argument("dirs", nargs="+", type=Path, help="result folders (results/<run>)")
    args = parser.parse_args(argv)

    def body() -> int:
        for d in args.dirs:
            for path in save_figures(d):
                print(path)
        return 0

    return run(body)


if __name__ == "__main__":
    sys.exit(main())
