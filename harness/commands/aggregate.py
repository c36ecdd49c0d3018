"""Claims across tasks and runs: ``harness aggregate RUN... --group NAME=GLOB ...``.

Each RUN is a sweep folder (each of its checkpoints a run); ``--group`` puts the runs whose path
matches GLOB in group NAME (a method; its runs are training seeds or checkpoints). Scores are
taken at the target ``--at`` names (``best``, ``paper``, a target, or ``ENV=TARGET``), never an
implicit one. Writes, into ``--out``: ``aggregate.csv`` (IQM, median, mean, optimality gap per
group, stratified bootstrap CIs from ``rliable``), ``profiles.csv`` (performance profiles with
bands), ``improvement.csv`` (probability of improvement of every ordered pair of groups),
``scores.csv`` (the score matrix), ``aggregate.png``/``.svg`` and ``report.html``
(:mod:`harness.analysis.aggregate`).

Exit codes: 0; 2 bad input (one group, runs without shared tasks, a missing target).
"""

from __future__ import annotations

import sys
from pathlib import Path

from harness.analysis.aggregate import aggregate, group_runs, parse_at
from harness.commands.cli import Parser, run
from harness.core.errors import HarnessError
from harness.io.results import write_atomic


def main(argv: list[str] | None = None) -> int:
    """Command line (exit 0, or 2 on bad input)."""
    p = Parser(prog="harness aggregate", description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path, help="sweep folders (each checkpoint of each is a run)")
    p.add_argument(
        "--group", action="append", default=[], required=True, metavar="NAME=GLOB", help="a group and its runs' glob"
    )
    p.add_argument("--at", default="best", help="target scored: best (optimistic), paper, a target, or ENV=TARGET,...")
    p.add_argument("--reps", type=int, default=2000, help="bootstrap resamples")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (numpy RandomState)")
    p.add_argument("--out", type=Path, default=Path("results/aggregate"), help="output folder")
    args = p.parse_args(argv)

    def body() -> int:
        if args.reps < 100:
            raise HarnessError(f"--reps must be at least 100, got {args.reps}")
        for folder in args.runs:
            if not (folder / "episodes.csv").is_file():
                raise HarnessError(f"{folder} is not a sweep folder (no episodes.csv); pass folders of harness sweep")
        result = aggregate(group_runs([str(r) for r in args.runs], args.group), parse_at(args.at), args.reps, args.seed)
        out: Path = args.out
        out.mkdir(parents=True, exist_ok=True)
        for name, frame in (
            ("aggregate.csv", result.metrics),
            ("profiles.csv", result.profiles),
            ("improvement.csv", result.improvement),
            ("scores.csv", result.scores),
        ):
            write_atomic(out / name, frame.to_csv(index=False))
        from harness.analysis.figures import aggregate_figure, save_figure
        from harness.analysis.report import write_aggregate_report

        save_figure(aggregate_figure(result.metrics, result.profiles), out, "aggregate")
        write_aggregate_report(out, result, args.at)
        width = max(len(g) for g in result.metrics["group"])
        for r in result.metrics.itertuples():
            print(f"{r.group:<{width}}  {r.metric:<14} {r.value:6.1f} [{r.ci_low:6.1f}, {r.ci_high:6.1f}]")
        for r in result.improvement.itertuples():
            print(f"P({r.x} > {r.y}) = {r.probability:.2f} [{r.ci_low:.2f}, {r.ci_high:.2f}]")
        print(f"scored at: {args.at}; {result.scores['run'].nunique()} runs; wrote {out}/aggregate.csv ... report.html")
        return 0

    return run(body)


if __name__ == "__main__":
    sys.exit(main())
