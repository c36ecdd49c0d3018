"""Honest selection: ``harness select RUN --selection-episodes N``.

Splits a sweep's episodes by reset seed: episodes ``k < N`` (seeds SEED..SEED+N-1) choose each
env's best (checkpoint, target) cell; the rest, whose seeds are disjoint, report it. Prints the
score on both sides and the optimism gap (selected-on minus held-out, 95% bootstrap CI), beside
what picking and reporting on the same episodes would claim; writes ``select.csv`` into RUN
(:func:`harness.analysis.aggregate.select`). A sweep with ``--episodes 2N`` evaluates both seed
sets in one run.

Exit codes: 0; 2 bad input (not a sweep, a split that leaves a side empty).
"""

from __future__ import annotations

import sys
from pathlib import Path

from harness.analysis.aggregate import select
from harness.analysis.comparison import read_sweep
from harness.commands.cli import Parser, run
from harness.io.results import write_atomic


def main(argv: list[str] | None = None) -> int:
    """Command line (exit 0, or 2 on bad input)."""
    p = Parser(prog="harness select", description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path, help="sweep folder")
    p.add_argument(
        "--selection-episodes",
        type=int,
        default=None,
        metavar="N",
        help="episodes k < N select, the rest report (default: half of each cell's)",
    )
    p.add_argument("--reps", type=int, default=2000, help="bootstrap resamples")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    args = p.parse_args(argv)

    def body() -> int:
        episodes = read_sweep(args.run)
        n = (
            args.selection_episodes
            if args.selection_episodes is not None
            else (int(episodes["episode"].max()) + 1) // 2
        )
        table = select(episodes, n, args.reps, args.seed)
        write_atomic(args.run / "select.csv", table.to_csv(index=False))
        for r in table.itertuples():
            print(
                f"{r.env}: selected {r.checkpoint} at target {r.target:.0f} of {r.candidates} cells on seeds "
                f"{r.selection_seeds} ({r.selection_episodes} episodes): {r.selected_score:.1f} "
                f"[{r.selected_ci_low:.1f}, {r.selected_ci_high:.1f}]; held out, seeds {r.report_seeds} "
                f"({r.report_episodes}): {r.heldout_score:.1f} [{r.heldout_ci_low:.1f}, {r.heldout_ci_high:.1f}]; "
                f"optimism gap {r.optimism_gap:+.1f} [{r.gap_ci_low:+.1f}, {r.gap_ci_high:+.1f}]; "
                f"picked and reported on the same episodes: {r.same_episodes_best_score:.1f}"
            )
        print(f"wrote {args.run / 'select.csv'}")
        return 0

    return run(body)


if __name__ == "__main__":
    sys.exit(main())
