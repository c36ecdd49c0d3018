"""Roll out behaviour policies and write an offline dataset: ``python -m harness.collect``.

Two modes. ``--recipe agents`` (default): behaviour agents (see ``harness.offline.behavior``) at noise
levels, hand-over/take-over and action scales. ``--recipe d4rl``: D4RL's recipe, SAC trained from
scratch until one third of the expert's return, writing ``medium-replay`` and ``medium`` data
(see ``harness.offline.recipe``).

    python -m harness.collect --env hopper --agents ../shared/behavior --algos sac ppo tqc \\
        --noise 0 0.1 --transitions-per-source 40000 --random-transitions 20000 --out data/hopper.parquet
    python -m harness.collect --env hopper --recipe d4rl --out data/d4rl

Needs the ``collect`` extra (stable-baselines3, sb3-contrib, pyarrow).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from harness.commands.cli import Parser, run
from harness.core.errors import HarnessError
from harness.io.data import to_minari
from harness.offline.behavior import RANDOM, SB3_ALGOS, Source, collect, load_agent, rollout_source
from harness.offline.recipe import RecipeConfig, run_recipe
from harness.world.envs import resolve_env

__all__ = ["RANDOM", "SB3_ALGOS", "Source", "collect", "load_agent", "rollout_source", "main"]


def main(argv: list[str] | None = None) -> int:
    p = Parser(
        prog="harness collect",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--env", required=True, help="hopper, walker2d, halfcheetah or a full id")
    p.add_argument("--env-version", default="v4")
    p.add_argument("--agents", type=Path, default=Path("../shared/behavior"), help="folder of <env>/<algo>/model.zip")
    p.add_argument("--algos", nargs="*", default=["sac"], help="behaviour agents")
    p.add_argument("--noise", type=float, nargs="+", default=[0.0], help="Gaussian action-noise levels")
    p.add_argument("--transitions-per-source", type=int, default=20_000, help="per agent × noise level")
    p.add_argument(
        "--handover",
        type=float,
        default=0.0,
        help="fraction of agent episodes that switch to random actions at a uniform step",
    )
    p.add_argument(
        "--takeover",
        type=float,
        default=0.0,
        help="fraction of agent episodes that start random and switch to the agent at a uniform step",
    )
    p.add_argument(
        "--action-scale",
        type=float,
        nargs="+",
        default=[1.0],
        help="factors on the agent's action (graded strength of one gait); one source per agent x noise x scale",
    )
    p.add_argument(
        "--tilt",
        type=float,
        default=0.0,
        help="fraction of agent episodes that start tilted (root pitch from --tilt-range, at rest): recovery data",
    )
    p.add_argument(
        "--tilt-range",
        type=float,
        nargs=2,
        default=[0.6, 1.4],
        metavar=("LOW", "HIGH"),
        help="root pitch of a tilted start, radians (HalfCheetah: positive = nose up)",
    )
    p.add_argument("--random-transitions", type=int, default=0, help="steps of the uniform random policy")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-envs", type=int, default=8)
    p.add_argument("--name", default=None, help="dataset name in its summary; default: the file stem")
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="file to write: .parquet (the tutorial's schema) or .hdf5 (D4RL's layout, read by CORL, d3rlpy and "
        "the paper's code); with --recipe d4rl: a folder",
    )
    p.add_argument(
        "--minari",
        default=None,
        metavar="DATASET_ID",
        help="also write the data as a Minari dataset with this id into the local Minari root "
        "(MINARI_DATASETS_PATH; needs the minari extra); read back with --data minari:DATASET_ID",
    )
    r = p.add_argument_group("D4RL recipe (--recipe d4rl): SAC from scratch -> medium and medium-replay data")
    r.add_argument("--recipe", choices=["agents", "d4rl"], default="agents", help="agents or D4RL recipe")
    r.add_argument("--workdir", type=Path, default=None, help="SAC checkpoints and log; default OUT/sac-<env>")
    r.add_argument("--max-steps", type=int, default=RecipeConfig.max_steps, help="give up after this many env steps")
    r.add_argument("--eval-every", type=int, default=RecipeConfig.eval_every, help="env steps between evaluations")
    r.add_argument("--train-freq", type=int, default=RecipeConfig.train_freq, help="env steps per gradient step")
    r.add_argument("--learning-starts", type=int, default=RecipeConfig.learning_starts, help="random steps first")
    r.add_argument(
        "--medium-transitions", type=int, default=RecipeConfig.medium_transitions, help="size of the medium data"
    )
    r.add_argument("--threshold", type=float, default=None, help="eval return that stops SAC; default expert/3")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)  # the agents are small MLPs: more threads only contend with other jobs

    def body() -> int:
        env = resolve_env(args.env, args.env_version)
        if args.recipe == "d4rl":
            cfg = RecipeConfig(
                seed=args.seed,
                max_steps=args.max_steps,
                eval_every=args.eval_every,
                train_freq=args.train_freq,
                learning_starts=args.learning_starts,
                medium_transitions=args.medium_transitions,
                threshold=args.threshold,
            )
            run_recipe(env, cfg, args.workdir or args.out / f"sac-{env.name}", args.out)
            return 0
        if args.out.exists():
            raise HarnessError(f"--out {args.out} exists; pass a new file name so nothing is overwritten")
        if any(n < 0 for n in args.noise) or args.transitions_per_source < 1 or args.random_transitions < 0:
            raise HarnessError("--noise must be >= 0, --transitions-per-source >= 1, --random-transitions >= 0")
        if not (0.0 <= args.handover and 0.0 <= args.takeover and args.handover + args.takeover <= 1.0):
            raise HarnessError(
                f"--handover and --takeover must be fractions summing to at most 1, got {args.handover} and "
                f"{args.takeover}"
            )
        if not 0.0 <= args.tilt <= 1.0 or args.tilt_range[0] > args.tilt_range[1]:
            raise HarnessError(
                f"--tilt must be a fraction in [0, 1] and --tilt-range LOW HIGH with LOW <= HIGH, got {args.tilt} "
                f"and {args.tilt_range}"
            )
        if any(not 0.0 <= c <= 1.0 for c in args.action_scale):
            raise HarnessError(f"--action-scale factors must lie in [0, 1], got {args.action_scale}")
        sources = [
            Source(
                a, n, args.transitions_per_source, args.handover, args.takeover, c, args.tilt, tuple(args.tilt_range)
            )
            for a in args.algos
            for n in args.noise
            for c in args.action_scale
        ]
        if args.random_transitions:
            sources.append(Source(RANDOM, 0.0, args.random_transitions))
        if not sources:
            raise HarnessError("nothing to collect; pass --algos or --random-transitions")
        if args.out.suffix not in (".parquet", ".hdf5", ".h5"):
            raise HarnessError(f"--out {args.out}: name a .parquet or a .hdf5 (D4RL layout) file")
        data = collect(env, args.agents, sources, args.seed, args.num_envs)
        if args.out.suffix == ".parquet":
            data.to_parquet(args.out)
        else:
            data.to_d4rl_hdf5(args.out)
        if args.minari:
            print(f"wrote Minari dataset {args.minari} in {to_minari(data, args.minari, env.env_id)}")
        summary = data.summary(args.name or args.out.stem)
        meta = {
            "env_id": env.env_id,
            "sources": [asdict(s) for s in sources],
            "seed": args.seed,
            "summary": asdict(summary),
        }
        args.out.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
        print(json.dumps(asdict(summary), indent=2))
        return 0

    return run(body)


if __name__ == "__main__":
    sys.exit(main())
