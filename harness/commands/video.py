"""Tile one env's recorded episodes into a grid video: ``python -m harness.video RUN --env hopper``.

Recording and tiling live in :mod:`harness.running.recording`; the sweep records with ``--video N``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from harness.commands.cli import Parser, run
from harness.running.recording import (
    check_renderer,
    grid_for_env,
    read_frames,
    record,
    require_encoder,
    tile,
    video_name,
)

__all__ = ["check_renderer", "grid_for_env", "read_frames", "record", "require_encoder", "tile", "video_name", "main"]


def main(argv: list[str] | None = None) -> int:
    """Command line (exit 0, or 2 on bad input)."""
    p = Parser(
        prog="harness video",
        description="Tile one env's recorded episodes into a grid video (a column per target, a row per episode).",
    )
    p.add_argument("run", type=Path, help="a sweep folder made with --video N")
    p.add_argument("--env", required=True, help="short env name (hopper, walker2d, halfcheetah)")
    p.add_argument("--checkpoint", default=None, help="checkpoint label (default: the first recorded)")
    p.add_argument("--out", type=Path, default=None, help="MP4 to write (default: RUN/videos/<env>_grid.mp4)")
    p.add_argument("--shift", default="none", help="the condition's shift label, e.g. mass=0.8 (default: none)")
    p.add_argument("--env-version", default=None, help="v4 or v5 (default: the first recorded)")
    args = p.parse_args(argv)

    def body() -> int:
        print(grid_for_env(args.run, args.env, args.checkpoint, args.out, args.shift, args.env_version))
        return 0

    return run(body)


if __name__ == "__main__":
    sys.exit(main())
