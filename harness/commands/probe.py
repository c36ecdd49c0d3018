"""Does a checkpoint read its return tokens? ``harness probe CHECKPOINT --env hopper``.

Windows from logged trajectories (``--data``: a dataset in any format ``harness train`` reads; or
``--episodes N``: episodes the checkpoint plays at ``--play-target``, replayed on Gymnasium's env)
are replayed with their return-to-go tokens set for every target of a grid, everything else
fixed, in one batched forward (:mod:`harness.engine.probe`). Prints and writes ``probe.csv``
(action change per 100 normalised points with a 95% bootstrap CI; the share of windows whose
action never moves), ``probe_curve.csv``, ``probe_attention.csv`` (the newest state token's
attention to return tokens, per layer and head) and ``probe.png``/``.svg``.

Exit codes: 0; 2 bad input (a checkpoint without statistics and no ``--data``, no windows, a
target grid of one).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from harness.analysis.figures import probe_figure, save_figure
from harness.commands.cli import Parser, quiet_hf_logs, run
from harness.core.errors import HarnessError
from harness.engine.evaluate import default_targets
from harness.engine.policy import DTPolicy
from harness.engine.probe import PER, played_trajectories, probe, windows_from_dataset
from harness.io.checkpoints import load_checkpoint
from harness.io.data import load_source, statistics_from
from harness.io.results import write_atomic
from harness.world.envs import resolve_env


def main(argv: list[str] | None = None) -> int:
    """Command line (exit 0, or 2 on bad input)."""
    p = Parser(prog="harness probe", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="embedded name, checkpoint folder or Hub id")
    p.add_argument("--env", required=True, help="short env name or Gymnasium id of the checkpoint's env")
    p.add_argument("--data", default=None, help="dataset to cut windows from (parquet, D4RL HDF5, minari:ID, Hub)")
    p.add_argument("--episodes", type=int, default=4, help="without --data: episodes the checkpoint plays")
    p.add_argument("--play-target", type=float, default=None, help="their target (default: the grid's middle)")
    p.add_argument("--windows", type=int, default=256, help="windows to probe")
    p.add_argument("--targets", type=float, nargs="+", default=None, help="counterfactual targets (raw returns)")
    p.add_argument("--num-targets", type=int, default=8, help="grid size without --targets (the sweep's default range)")
    p.add_argument("--seed", type=int, default=0, help="window sampling, reset and bootstrap seed")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: results/probe-<checkpoint>)")
    args = p.parse_args(argv)

    def body() -> int:
        quiet_hf_logs()
        if args.targets is not None and len(set(args.targets)) < 2:
            raise HarnessError(f"--targets needs at least two distinct returns, got {args.targets}")
        if args.num_targets < 2:
            raise HarnessError(f"--num-targets must be at least 2, got {args.num_targets}")
        if args.windows < 1 or args.episodes < 1:
            raise HarnessError(f"--windows and --episodes must be at least 1, got {args.windows}, {args.episodes}")
        env = resolve_env(args.env)
        try:
            ckpt = load_checkpoint(args.checkpoint)
        except HarnessError as exc:
            if not args.data or "statistic" not in str(exc):
                raise
            ckpt = load_checkpoint(args.checkpoint, statistics=statistics_from(args.data))  # the tutorial's output
        ckpt.check_env(env)
        policy = DTPolicy(ckpt)
        targets = args.targets if args.targets is not None else default_targets(env, ckpt, args.num_targets)
        grid = np.array(sorted(set(targets)), dtype=np.float64)
        if args.data:
            data = load_source(args.data)
            source = f"{args.data}"
        else:
            play = args.play_target if args.play_target is not None else float(np.median(grid))
            data = played_trajectories(policy, env.env_id, play, args.episodes, args.seed)
            source = f"{args.episodes} episodes played at target {play:.0f} (seeds {args.seed}..)"
        windows = windows_from_dataset(data, ckpt.context_length, ckpt.max_ep_len, args.windows, args.seed)
        result = probe(policy, env, windows, grid, args.seed)
        out = args.out or Path("results") / f"probe-{Path(ckpt.label).name}"
        out.mkdir(parents=True, exist_ok=True)
        summary = result.summary.assign(source=source)
        write_atomic(out / "probe.csv", summary.to_csv(index=False))
        write_atomic(out / "probe_curve.csv", result.curve.assign(checkpoint=ckpt.label).to_csv(index=False))
        write_atomic(out / "probe_attention.csv", result.attention.assign(checkpoint=ckpt.label).to_csv(index=False))
        save_figure(
            probe_figure(result.curve.assign(checkpoint=ckpt.label), result.attention.assign(checkpoint=ckpt.label)),
            out,
            "probe",
        )
        r = summary.iloc[0]
        print(
            f"{env.name}/{ckpt.label}: action change {r['action_change']:.4f} "
            f"[{r['action_change_ci_low']:.4f}, {r['action_change_ci_high']:.4f}] per {PER:.0f} normalised points "
            f"of target over {int(r['windows'])} windows ({source}); {r['frozen_share']:.0%} of windows never move"
        )
        print(pd.DataFrame(result.attention).to_string(index=False, float_format=lambda x: f"{x:.3f}"))
        print(f"wrote {out}/probe.csv, probe_curve.csv, probe_attention.csv, probe.png/.svg")
        return 0

    return run(body)


if __name__ == "__main__":
    sys.exit(main())
