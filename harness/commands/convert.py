"""``harness convert``: a CORL or paper-code Decision Transformer checkpoint → a checkpoint folder.

    harness convert corl runs/dt/dt_checkpoint.pt --env hopper --out ckpt/hopper-corl
    harness convert paper dt_hopper.pt --env hopper --data hopper_medium-v2.hdf5 --out ckpt/hopper-paper

The conversion is exact (:mod:`harness.io.convert`); the folder then evaluates like any other:
``harness sweep --envs hopper --checkpoint hopper=ckpt/hopper-corl``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from harness.commands.cli import DefaultsFormatter, Parser, run
from harness.core.errors import HarnessError
from harness.io.convert import SOURCES, convert
from harness.io.data import statistics_from
from harness.world.envs import resolve_env


def main(argv: list[str] | None = None) -> int:
    """Command line; exit 0, or 2 on bad input (nothing written)."""
    p = Parser(prog="harness convert", description=__doc__.split("\n\n")[0], formatter_class=DefaultsFormatter)
    p.add_argument("source", choices=SOURCES, help="corl: CORL's dt_checkpoint.pt; paper: the paper code's state dict")
    p.add_argument("path", type=Path, help="the checkpoint file (CORL's config.yaml is read from beside it)")
    p.add_argument("--env", required=True, help="env the checkpoint was trained for (hopper, Hopper-v4, ...)")
    p.add_argument("--out", type=Path, required=True, help="checkpoint folder to write (must not exist)")
    p.add_argument("--heads", type=int, default=None, help="attention heads (CORL: from config.yaml; paper: 1)")
    p.add_argument("--context-length", type=int, default=20, help="K the paper-code model was trained with")
    p.add_argument("--activation", default="relu", help="the paper-code model's MLP activation (its default: relu)")
    p.add_argument("--return-scale", type=float, default=1000.0, help="returns-to-go are divided by it")
    p.add_argument(
        "--data",
        default=None,
        metavar="DATASET",
        help="training data (parquet, D4RL .hdf5, minari:ID or owner/name:subset): the state statistics the "
        "paper-code checkpoint lacks, and the data summary for either source",
    )
    args = p.parse_args(argv)

    def body() -> int:
        if args.out.exists():
            raise HarnessError(f"--out {args.out} exists; pass a new folder so nothing is overwritten")
        env = resolve_env(args.env)
        stats = statistics_from(args.data) if args.data else None
        folder = convert(
            args.source,
            args.path,
            args.out,
            env.env_id,
            heads=args.heads,
            context_length=args.context_length,
            activation=args.activation,
            return_scale=args.return_scale,
            statistics=(stats.state_mean, stats.state_std) if stats else None,
            dataset=stats.dataset if stats else None,
        )
        print(folder)
        return 0

    return run(body)


if __name__ == "__main__":
    sys.exit(main())
