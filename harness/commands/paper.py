"""``harness paper``: the paper's Table 2 protocol in one command.

    harness paper d4rl/hopper_medium_replay-v2.hdf5 d4rl/walker2d_medium_replay-v2.hdf5 --out results/table2
    harness paper d4rl/ --device cuda                  # every D4RL .hdf5 file in a folder
    harness paper minari:mujoco/hopper/medium-v0        # a Minari dataset in the local root

For each dataset: train a DT with the paper's hyperparameters (K 20, batch 64, lr 1e-4, linear
warm-up over 10,000 steps, 100,000 steps; every one settable), evaluate it at the paper's two
targets for its env (hopper 3600/1800, walker2d 5000/2500, halfcheetah 12000/6000) with
``--episodes`` episodes each, and write Table 2 with the paper's and CORL's numbers beside ours
(``OUT/table.csv``, ``OUT/table.md``). ``OUT/<dataset>/checkpoint`` and ``OUT/<dataset>/sweep``
keep each checkpoint and its sweep folder; a rerun skips the finished ones.
"""

from __future__ import annotations

import re
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd

from harness.analysis.aggregate import select
from harness.analysis.comparison import read_sweep
from harness.analysis.paper import markdown, published, table
from harness.commands.cli import DefaultsFormatter, Parser, field_docs, quiet_hf_logs, run
from harness.core.errors import HarnessError
from harness.offline.training import ANCHORS, TrainConfig, train
from harness.running.runner import SweepConfig, run_sweep
from harness.world.envs import resolve_env


def dataset_name(spec: str) -> str:
    """``hopper_medium_replay-v2.hdf5`` → ``hopper-medium-replay``; ``minari:mujoco/hopper/medium-v0`` →
    ``hopper-medium`` (the names of the paper's table).

    >>> dataset_name("d4rl/walker2d_medium_replay-v2.hdf5"), dataset_name("minari:mujoco/hopper/medium-v0")
    ('walker2d-medium-replay', 'hopper-medium')
    """
    if spec.startswith("minari:"):
        parts = spec.split(":", 1)[1].split("/")
        stem = "-".join(parts[-2:]) if len(parts) >= 2 else parts[-1]
    else:
        stem = Path(spec).stem
    stem = re.sub(r"-v\d+$", "", stem.replace("_", "-"))
    return stem


def datasets(specs: list[str]) -> list[str]:
    """The dataset specs, a folder expanded into its ``.hdf5`` files (sorted)."""
    out: list[str] = []
    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            found = sorted(str(p) for p in path.glob("*.hdf5"))
            if not found:
                raise HarnessError(f"{spec} holds no .hdf5 file; pass D4RL files, a folder of them, or minari:ID")
            out += found
        else:
            out.append(spec)
    return out


def main(argv: list[str] | None = None) -> int:
    """Command line; exit 0, 2 on bad input (nothing trained)."""
    d = TrainConfig(data="", env="", out="")
    p = Parser(prog="harness paper", description=__doc__.split("\n\n")[0], formatter_class=DefaultsFormatter)
    p.add_argument("data", nargs="+", help="D4RL .hdf5 files, folders of them, or minari:DATASET_ID")
    p.add_argument("--out", type=Path, required=True, help="folder for the checkpoints, sweeps and table")
    p.add_argument("--steps", type=int, default=100_000, help="optimizer steps per dataset (the paper's: 100,000)")
    p.add_argument("--warmup-steps", type=int, default=10_000, help="linear warm-up steps (the paper's: 10,000)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="windows per step (the paper's: 64)")
    p.add_argument("--lr", type=float, default=d.lr, help="peak learning rate (the paper's: 1e-4)")
    p.add_argument("--context-length", type=int, default=d.context_length, help="K (the paper's: 20)")
    p.add_argument("--hidden-size", type=int, default=d.hidden_size, help="(the paper's: 128)")
    p.add_argument("--n-layer", type=int, default=d.n_layer, help="(the paper's: 3)")
    p.add_argument("--n-head", type=int, default=d.n_head, help="(the paper's: 1)")
    p.add_argument("--train-seed", type=int, default=0, help="seed of initialisation and sampling")
    docs = field_docs(TrainConfig)
    p.add_argument("--window", choices=ANCHORS, default=d.window, help=docs["window"] + " The paper's code: start.")
    p.add_argument("--bf16", action="store_true", help=docs["bf16"] + " Off: the paper trained in fp32.")
    p.add_argument("--episodes", type=int, default=100, help="evaluation episodes per target (the paper's: 100)")
    p.add_argument("--seed", type=int, default=0, help="episode k is reset with seed SEED + k")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads for training (0: all)")
    p.add_argument("--device", default="auto", help="evaluation device (auto, cpu, cuda)")
    p.add_argument(
        "--selection-episodes",
        type=int,
        default=None,
        metavar="N",
        help="also choose between the paper's two targets on episodes k < N and report the choice on the "
        "others (disjoint seeds; harness select): selected.csv and selected.md beside the table",
    )
    args = p.parse_args(argv)

    def body() -> int:
        specs = datasets(args.data)
        targets = published()["paper_targets"]
        if args.steps < 1 or args.warmup_steps < 0 or args.episodes < 1:
            raise HarnessError("--steps and --episodes must be >= 1 and --warmup-steps >= 0")
        if args.selection_episodes is not None and not 1 <= args.selection_episodes < args.episodes:
            raise HarnessError(
                f"--selection-episodes must lie between 1 and --episodes - 1 ({args.episodes - 1}), "
                f"got {args.selection_episodes}"
            )
        plan = []
        for spec in specs:
            name = dataset_name(spec)
            env = resolve_env(name.split("-")[0])
            if env.name not in targets:
                raise HarnessError(
                    f"{spec}: the paper has no targets for {env.name}; use hopper, walker2d or halfcheetah data"
                )
            plan.append((spec, name, env))
        folders = []
        for spec, name, env in plan:
            ckpt = args.out / name / "checkpoint"
            if not (ckpt / "config.json").is_file():
                print(f"training {name} ({args.steps:,} steps) -> {ckpt}", flush=True)
                cfg = TrainConfig(
                    data=spec,
                    env=env.name,
                    out=str(ckpt),
                    steps=args.steps,
                    batch_size=args.batch_size,
                    lr=args.lr,
                    warmup_ratio=min(1.0, args.warmup_steps / args.steps),
                    hidden_size=args.hidden_size,
                    n_layer=args.n_layer,
                    n_head=args.n_head,
                    context_length=args.context_length,
                    seed=args.train_seed,
                    threads=args.threads,
                    window=args.window,
                    bf16=args.bf16,
                    name=name,
                    save_steps=max(1, args.steps // 10),
                )
                train(replace(cfg))
            sweep = args.out / name / "sweep"
            print(f"evaluating {name} at {targets[env.name]} x {args.episodes} episodes -> {sweep}", flush=True)
            run_sweep(
                SweepConfig(
                    envs=[env.name],
                    checkpoints=[f"{env.name}={ckpt}"],
                    targets=[float(t) for t in targets[env.name]],
                    episodes=args.episodes,
                    seed=args.seed,
                    device=args.device,
                    out=str(sweep),
                    progress=False,
                ),
                command="harness paper " + " ".join(sys.argv[1:] if argv is None else argv),
                flags=True,
            )
            folders.append(sweep.resolve())
        df = table(folders, args.out.resolve())
        df.to_csv(args.out / "table.csv", index=False)
        (args.out / "table.md").write_text(markdown(df))
        print(markdown(df))
        if args.selection_episodes is not None:
            chosen = pd.concat(
                [select(read_sweep(folder), args.selection_episodes).assign(sweep=str(folder)) for folder in folders],
                ignore_index=True,
            )
            chosen.to_csv(args.out / "selected.csv", index=False)
            text = selected_markdown(chosen)
            (args.out / "selected.md").write_text(text)
            print(text)
        return 0

    quiet_hf_logs()
    return run(body)


def selected_markdown(chosen: pd.DataFrame) -> str:
    """``selected.md``: the target chosen on the selection seeds and its held-out score, per dataset."""
    lines = [
        "| env | chosen target | on seeds | selected-on score | held out on seeds | held-out score | optimism gap |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in chosen.itertuples():
        lines.append(
            f"| {r.env} | {r.target:.0f} | {r.selection_seeds} | {r.selected_score:.1f} | {r.report_seeds} | "
            f"{r.heldout_score:.1f} ({r.heldout_ci_low:.1f} … {r.heldout_ci_high:.1f}) | "
            f"{r.optimism_gap:+.1f} ({r.gap_ci_low:+.1f} … {r.gap_ci_high:+.1f}) |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
