"""Log a sweep folder to a tracker: ``harness log RUN --tracker mlflow --uri file:mlruns``.

``mlflow``: one run per folder (params: the sweep's arguments; metrics: every cell's score and CI,
the calibration numbers, the robustness ratios; artifacts: every file of the folder), into
``--uri`` (default ``file:mlruns``: a local store, offline). ``tensorboard``: the return-conditioning
curves as scalars (step = target return) into ``--uri`` (a log dir, default ``runs/<folder name>``).
``wandb``: one run (config: the arguments; summary: the same numbers as MLflow's metrics; history:
the curves against the target return; copies of the folder's files saved with it), offline unless
``WANDB_MODE`` says otherwise, under ``--uri`` (default ``.``: ``./wandb/offline-run-*``), project
``--experiment``; ``wandb sync`` uploads it. All need the ``track`` extra (:mod:`harness.analysis.publish`).

Exit codes: 0; 2 bad input (not a sweep folder, an unknown tracker, the tracker not installed).
"""

from __future__ import annotations

import sys
from pathlib import Path

from harness.analysis.publish import TRACKERS, log_mlflow, log_tensorboard, log_wandb, sweep_metrics
from harness.commands.cli import Parser, run
from harness.core.errors import HarnessError


def main(argv: list[str] | None = None) -> int:
    """Command line (exit 0, or 2 on bad input)."""
    p = Parser(prog="harness log", description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path, help="sweep folder")
    p.add_argument("--tracker", required=True, help=f"one of: {', '.join(TRACKERS)}")
    p.add_argument("--uri", default=None, help="MLflow tracking URI, TensorBoard log dir, or W&B directory")
    p.add_argument("--experiment", default="harness", help="MLflow experiment name, or W&B project")
    args = p.parse_args(argv)

    def body() -> int:
        if args.tracker not in TRACKERS:
            raise HarnessError(f"unknown --tracker {args.tracker!r}; use one of: {', '.join(TRACKERS)}")
        n = len(sweep_metrics(args.run))
        if args.tracker == "mlflow":
            uri = args.uri or "file:mlruns"
            run_id = log_mlflow(args.run, uri, args.experiment)
            print(f"logged {n} metrics and the folder's files to MLflow run {run_id} ({uri})")
        elif args.tracker == "wandb":
            run_id, run_dir = log_wandb(args.run, Path(args.uri or "."), args.experiment)
            print(f"logged {n} numbers and the folder's files to W&B run {run_id} ({run_dir}; wandb sync {run_dir})")
        else:
            logdir = Path(args.uri or Path("runs") / args.run.resolve().name)
            log_tensorboard(args.run, logdir)
            print(f"wrote TensorBoard scalars to {logdir} (tensorboard --logdir {logdir})")
        return 0

    return run(body)


if __name__ == "__main__":
    sys.exit(main())
