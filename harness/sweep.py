"""The sweep's command line: ``python -m harness.sweep --envs hopper walker2d halfcheetah``.

Evaluates each env's checkpoint at a grid of target returns and writes, into ``--out`` (default
``results/<timestamp>``), the files named in :mod:`harness.schema`:

- ``episodes.csv``: one row per episode (:data:`harness.schema.EPISODE_COLUMNS`);
- ``summary.csv``: one row per env × checkpoint × target (:data:`harness.schema.SUMMARY_COLUMNS`);
- ``metadata.json``: arguments, package versions, git sha, machine, batch invariance, times;
- ``return_conditioning``, ``return_distributions``, ``episode_length`` figures (PNG and SVG),
  redrawn by ``python -m harness.plot``.

This module is the command line only: the parser (one flag per :class:`SweepConfig` field), the
printed table, and :func:`main`. The work is in :func:`harness.runner.run_sweep`; from Python
(notebooks) use :func:`evaluate` (one checkpoint's episodes as a DataFrame) or :func:`run_sweep`
(a whole :class:`SweepConfig`), both importable from here.
"""

from __future__ import annotations

import argparse
import math
import sys
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from harness.checkpoints import embedded_names
from harness.cli import Parser, quiet_hf_logs, run
from harness.envs import VERSIONS
from harness.evaluate import DEFAULT_MAX_NUM_ENVS, default_targets, evaluate
from harness.numerics import Numerics
from harness.parallel import BACKENDS
from harness.policy import PRECISIONS
from harness.runner import SweepConfig, run_sweep, validate
from harness.schema import (
    EPISODE_COLUMNS,
    EPISODES,
    EXIT_FAILED_EPISODES,
    EXIT_OK,
    SUMMARY,
    SUMMARY_COLUMNS,
    Status,
)
from harness.summary import summarize
from harness.vector import SIMULATORS

__all__ = [
    "EPISODE_COLUMNS",
    "SUMMARY_COLUMNS",
    "SweepConfig",
    "build_parser",
    "default_targets",
    "evaluate",
    "main",
    "run_sweep",
    "summarize",
    "validate",
]


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; pass target returns such as 1800 3600") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number; pass target returns such as 1800 3600")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def build_parser() -> argparse.ArgumentParser:
    d = SweepConfig()
    p = Parser(
        prog="python -m harness.sweep",
        description="Evaluate Decision Transformer checkpoints over a grid of target returns, batched.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--envs",
        nargs="+",
        default=d.envs,
        metavar="ENV",
        help="envs: hopper, walker2d, halfcheetah, or full ids such as Hopper-v5",
    )
    p.add_argument(
        "--checkpoint",
        dest="checkpoints",
        action="append",
        default=[],
        metavar="ENV=FOLDER_OR_HUB_ID",
        help="checkpoint for an env (repeatable; several per env allowed): a local folder, a Hugging "
        "Face Hub id or an embedded name; a quoted glob ('hopper=run/trainer/checkpoint-*') or a folder of "
        "Trainer checkpoint-N folders evaluates each (learning_curve figure); default: the embedded one "
        f"({', '.join(embedded_names()) or 'none shipped yet'})",
    )
    p.add_argument(
        "--data",
        action="append",
        default=[],
        metavar="ENV=DATASET",
        help="the training data of checkpoints saved without state statistics (the tutorial's Trainer "
        "output): a parquet file or a Hub dataset owner/name:subset "
        "(edbeeching/decision_transformer_gym_replay:halfcheetah-expert-v2); statistics computed as the "
        "tutorial's collator does",
    )
    p.add_argument(
        "--targets",
        nargs="+",
        type=_finite_float,
        default=None,
        metavar="R",
        help="raw target returns for every env; default: --num-targets evenly spaced from the "
        "checkpoint's dataset range (lowest to 1.2x best), else the D4RL range",
    )
    p.add_argument(
        "--num-targets", type=_int, default=d.num_targets, metavar="N", help="size of the default target grid"
    )
    p.add_argument(
        "--episodes", type=_int, default=d.episodes, metavar="N", help="episodes per target (the paper's protocol: 100)"
    )
    p.add_argument(
        "--num-envs",
        type=_int,
        default=d.num_envs,
        metavar="N",
        help=f"vector-env slots per checkpoint; default: all its episodes, at most {DEFAULT_MAX_NUM_ENVS}",
    )
    p.add_argument("--seed", type=_int, default=d.seed, help="episode k of every cell is reset with seed SEED + k")
    p.add_argument(
        "--env-version", default=d.env_version, metavar="|".join(VERSIONS), help="Gymnasium version for short env names"
    )
    p.add_argument(
        "--device",
        default=d.device,
        metavar="auto|cpu|cuda",
        help="torch device of the model and context buffers; auto: cuda when a GPU is visible",
    )
    p.add_argument(
        "--env-workers",
        type=_int,
        default=d.env_workers,
        metavar="N",
        help="processes that step the slots (the simulator's share, once the model is on a GPU)",
    )
    p.add_argument(
        "--simulator",
        choices=list(SIMULATORS),
        default=d.simulator,
        help="batched: all slots' MuJoCo stepped at once, bit-equal to Gymnasium's envs (Hopper, Walker2d, "
        "HalfCheetah v4/v5; other ids use Gymnasium's); gymnasium: Gymnasium's envs",
    )
    p.add_argument(
        "--precision",
        choices=list(PRECISIONS),
        default=d.precision,
        help="fp32: exact (the tutorial loop's actions); bf16: bf16 weights and matrix multiplies, faster on "
        "CPUs with bf16 units and GPUs, returns statistically the same (README, Speed); bf16 is outside the "
        "pinned-numerics guarantee (its rows may differ between CPUs)",
    )
    p.add_argument(
        "--numerics",
        choices=[m.value for m in Numerics],
        default=d.numerics,
        help="pinned: fp32 episodes bit-identical on every x86-64 CPU with AVX2 (MKL strict CNR on its SSE2 "
        "branch, torch's AVX2 kernels; costs speed: README, Reproducibility); local: identical whatever the batch, "
        "threads or workers on this kind of CPU only; native: nothing pinned (fastest)",
    )
    p.add_argument(
        "--allow-batch-dependence",
        action="store_true",
        help="resume or run on several workers even when the start-up self-check finds that an episode's "
        "actions depend on its batch on this machine",
    )
    p.add_argument("--out", default=None, metavar="DIR", help="output folder; default: results/<UTC timestamp>")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--jobs",
        type=_int,
        default=d.jobs,
        metavar="N",
        help="worker processes; above 1, (env, checkpoint, target) cells run in parallel on --backend, with "
        "torch threads per worker = cores / N",
    )
    p.add_argument(
        "--backend", choices=list(BACKENDS), default=d.backend, help="joblib backend for --jobs > 1 (README)"
    )
    p.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="a running Dask scheduler (tcp://host:8786) for --backend dask; default: a local cluster",
    )
    p.add_argument(
        "--video",
        type=_int,
        default=d.video,
        metavar="N",
        help="record the first N episodes of every (env, checkpoint, target) as MP4 under OUT/videos "
        "(replayed separately: the other episodes are not slowed); needs the video extra and EGL or OSMesa",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="discard the results already in --out (by default the same sweep resumes and another is refused)",
    )
    return p


def _print_summary(summary: pd.DataFrame, out: Path) -> None:
    table = pd.DataFrame(
        {
            "env": summary["env"],
            "checkpoint": summary["checkpoint"],
            "target": summary["target"].map("{:.0f}".format),
            "n": summary["n"],
            "return": [
                f"{m:.0f} [{lo:.0f}, {hi:.0f}]"
                for m, lo, hi in zip(
                    summary["return_mean"], summary["return_ci_low"], summary["return_ci_high"], strict=True
                )
            ],
            "score": summary["score_mean"].map("{:.1f}".format),
            "length": summary["length_mean"].map("{:.0f}".format),
        }
    )
    print(table.to_string(index=False))
    print(f"\nwrote {out}/{EPISODES}, {SUMMARY}, metadata.json and figures")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code.

    0: done, every episode ``ok``; 2: bad input (one line on stderr, nothing written or lost);
    3: done, but some episodes failed (their ``status`` says why); 130: interrupted (the finished
    episodes are saved; rerunning the same command resumes).
    """
    quiet_hf_logs()
    args = build_parser().parse_args(argv)
    config = SweepConfig(
        envs=args.envs,
        checkpoints=args.checkpoints,
        data=args.data,
        targets=args.targets,
        num_targets=args.num_targets,
        episodes=args.episodes,
        num_envs=args.num_envs,
        seed=args.seed,
        env_version=args.env_version,
        device=args.device,
        precision=args.precision,
        numerics=args.numerics,
        allow_batch_dependence=args.allow_batch_dependence,
        out=args.out or str(Path("results") / datetime.now(timezone.utc).strftime("%Y-%m-%dT%H-%M-%S")),
        progress=not args.no_progress,
        overwrite=args.overwrite,
        jobs=args.jobs,
        env_workers=args.env_workers,
        simulator=args.simulator,
        video=args.video,
        backend=args.backend,
        scheduler=args.scheduler,
    )
    command = " ".join(["python -m harness.sweep", *(sys.argv[1:] if argv is None else argv)])
    log = Path(config.out) / EPISODES

    def interrupted() -> None:
        kept = max(sum(1 for _ in open(log, encoding="utf-8")) - 1, 0) if log.is_file() else 0
        print(
            f"\ninterrupted: {kept} finished episodes are saved in {log}; rerun the same command to resume",
            file=sys.stderr,
        )

    def body() -> int:
        episodes = run_sweep(config, command=command)
        _print_summary(pd.read_csv(Path(config.out) / SUMMARY), Path(config.out))
        failed = episodes[episodes["status"] != Status.OK.value]
        if len(failed):
            kinds = ", ".join(f"{n} {k}" for k, n in failed["status"].value_counts().items())
            print(f"warning: {len(failed)} episodes failed ({kinds}); see the status column", file=sys.stderr)
            return EXIT_FAILED_EPISODES
        return EXIT_OK

    return run(body, on_interrupt=interrupted)


if __name__ == "__main__":
    sys.exit(main())
