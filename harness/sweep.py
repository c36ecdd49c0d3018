"""The sweep: every env × checkpoint × target × episode, batched, into tidy CSV files.

``python -m harness.sweep --envs hopper walker2d halfcheetah`` evaluates each env's checkpoint at a
grid of target returns and writes, into ``--out`` (default ``results/<timestamp>``):

- ``episodes.csv``: one row per episode (see :data:`EPISODE_COLUMNS`);
- ``summary.csv``: one row per env × checkpoint × target (see :data:`SUMMARY_COLUMNS`);
- ``metadata.json``: arguments, package versions, git sha, machine, times, throughput;
- ``return_conditioning.png`` / ``.svg``: the figure, redrawn by ``python -m harness.plot``.

From Python (notebooks): :func:`evaluate` runs one checkpoint's episodes and returns the rows as
a DataFrame; :func:`run_sweep` runs a whole :class:`SweepConfig` and writes the folder.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from harness import stats
from harness.checkpoints import Checkpoint, embedded_names, load_checkpoint
from harness.envs import DEFAULT_VERSION, VERSIONS, EnvSpec, resolve_env
from harness.errors import HarnessError
from harness.policy import PRECISIONS, DTPolicy
from harness.rollout import EpisodeSpec, run_episodes

EPISODE_COLUMNS = [
    "env",
    "env_id",
    "checkpoint",
    "target",
    "episode",
    "seed",
    "return",
    "length",
    "terminated",
    "truncated",
    "normalized_score",
    "wall_time_s",
]
SUMMARY_COLUMNS = [
    "env",
    "env_id",
    "checkpoint",
    "target",
    "target_score",
    "n",
    "return_mean",
    "return_std",
    "return_ci_low",
    "return_ci_high",
    "return_iqm",
    "score_mean",
    "score_ci_low",
    "score_ci_high",
    "length_mean",
    "dataset_best_return",
    "dataset_best_score",
]
RESULT_FILES = ("episodes.csv", "summary.csv", "metadata.json")
MAX_EPISODES = 100_000
MAX_NUM_ENVS = 4096
DEFAULT_MAX_NUM_ENVS = 32


@dataclass
class SweepConfig:
    """Everything a sweep needs; the command line fills it field by field."""

    envs: list[str] = field(default_factory=lambda: ["hopper", "walker2d", "halfcheetah"])
    """Short env names (hopper, walker2d, halfcheetah) or full Gymnasium ids (Hopper-v4)."""
    checkpoints: list[str] = field(default_factory=list)
    """``ENV=FOLDER_OR_HUB_ID`` entries; an env without one uses its embedded checkpoint."""
    targets: list[float] | None = None
    """Raw target returns for every env; None: a grid from the checkpoint's data range."""
    num_targets: int = 10
    """Size of the default target grid."""
    episodes: int = 10
    """Episodes per target (the paper's protocol uses 100)."""
    num_envs: int | None = None
    """Vector-env slots per checkpoint; None: all its episodes at once, at most 32 (the fastest measured here)."""
    seed: int = 0
    """Episode k of every cell is reset with seed ``seed + k``."""
    env_version: str = DEFAULT_VERSION
    """Gymnasium version for short env names (v4 is closest to D4RL's -v3)."""
    device: str = "cpu"
    """Torch device of the model and context buffers."""
    precision: str = "fp32"
    """``fp32`` (exact: the tutorial loop's actions) or ``bf16`` (faster, not bit-exact)."""
    out: str | None = None
    """Output folder; None: ``results/<timestamp>``."""
    progress: bool = True
    """Show a progress bar on stderr."""


def _episode_rows(env: EnvSpec, ckpt: Checkpoint, results) -> list[dict[str, Any]]:
    return [
        {
            "env": env.name,
            "env_id": env.env_id,
            "checkpoint": ckpt.label,
            "target": r.spec.target,
            "episode": r.spec.index,
            "seed": r.spec.seed,
            "return": r.ret,
            "length": r.length,
            "terminated": r.terminated,
            "truncated": r.truncated,
            "normalized_score": env.normalized_score(r.ret),
            "wall_time_s": r.wall_time_s,
        }
        for r in results
    ]


def default_targets(env: EnvSpec, ckpt: Checkpoint, num_targets: int) -> list[float]:
    """Evenly spaced whole-number targets.

    From the lowest trajectory return of the checkpoint's dataset to 1.2x its best, when the
    dataset summary is known; else from the env's D4RL random return to 1.2x its expert return.
    """
    if ckpt.dataset is not None:
        lo, best = ckpt.dataset.return_min, ckpt.dataset.return_max
    else:
        lo, best = env.family.random_return, env.family.expert_return
    hi = 1.2 * best if best > 0 else best
    if num_targets == 1:
        return [float(round(hi))]
    return [float(x) for x in np.round(np.linspace(lo, hi, num_targets))]


def evaluate(
    checkpoint: Checkpoint | str,
    env: EnvSpec | str,
    targets: Sequence[float],
    episodes: int = 10,
    num_envs: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    progress: tqdm | None = None,
    precision: str = "fp32",
) -> pd.DataFrame:
    """Run ``episodes`` episodes of one checkpoint at every target and return the episode rows.

    Args:
        checkpoint: a loaded checkpoint, or a spec for :func:`harness.checkpoints.load_checkpoint`.
        env: an EnvSpec or a name for :func:`harness.envs.resolve_env`.
        targets: raw target returns.
        episodes: episodes per target; episode k uses reset seed ``seed + k``.
        num_envs: vector-env slots (None: all episodes at once, at most 32).
        seed: base reset seed.
        device: torch device.
        progress: a tqdm bar to advance by episodes, or None.
        precision: ``fp32`` or ``bf16`` (see :class:`harness.policy.DTPolicy`).

    Returns:
        One row per episode with the columns of :data:`EPISODE_COLUMNS`.

    Example (needs a checkpoint)::

        df = evaluate("edbeeching/decision-transformer-gym-hopper-medium", "hopper", [1800, 3600])
    """
    env = resolve_env(env) if isinstance(env, str) else env
    ckpt = load_checkpoint(checkpoint, device=device) if isinstance(checkpoint, str) else checkpoint
    ckpt.check_env(env)
    specs = [EpisodeSpec(float(t), seed + k, k) for t in targets for k in range(episodes)]
    slots = num_envs or min(len(specs), DEFAULT_MAX_NUM_ENVS)
    policy = DTPolicy(ckpt, device=device, precision=precision)
    steps_done = 0
    last_post = time.perf_counter()
    started = last_post

    def on_step(finished: int, steps: int) -> None:
        nonlocal steps_done, last_post
        steps_done += steps
        if progress is None:
            return
        if finished:
            progress.update(finished)
        now = time.perf_counter()
        if now - last_post > 0.5:
            progress.set_postfix_str(f"{steps_done / (now - started):,.0f} env-steps/s", refresh=False)
            last_post = now

    results = run_episodes(policy, env.env_id, specs, slots, progress=on_step)
    return pd.DataFrame(_episode_rows(env, ckpt, results), columns=EPISODE_COLUMNS)


def summarize(episodes: pd.DataFrame, best_returns: dict[tuple[str, str], float] | None = None) -> pd.DataFrame:
    """One row per env × checkpoint × target: n, mean, std, 95% bootstrap CI, IQM, scores.

    Args:
        episodes: rows with the columns of :data:`EPISODE_COLUMNS`.
        best_returns: best trajectory return of each (env, checkpoint)'s dataset, if known.
    """
    best_returns = best_returns or {}
    rows = []
    for (env_name, env_id, label, target), cell in episodes.groupby(
        ["env", "env_id", "checkpoint", "target"], sort=True
    ):
        env = resolve_env(env_id)
        d = stats.describe(cell["return"].to_numpy())
        best = best_returns.get((env_name, label), float("nan"))
        rows.append(
            {
                "env": env_name,
                "env_id": env_id,
                "checkpoint": label,
                "target": target,
                "target_score": env.normalized_score(target),
                "n": d["n"],
                "return_mean": d["mean"],
                "return_std": d["std"],
                "return_ci_low": d["ci_low"],
                "return_ci_high": d["ci_high"],
                "return_iqm": d["iqm"],
                # the score is an increasing affine map of the return: its CI maps the same way
                "score_mean": env.normalized_score(d["mean"]),
                "score_ci_low": env.normalized_score(d["ci_low"]),
                "score_ci_high": env.normalized_score(d["ci_high"]),
                "length_mean": float(cell["length"].mean()),
                "dataset_best_return": best,
                "dataset_best_score": env.normalized_score(best),
            }
        )
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


# ----------------------------------------------------------------------------- provenance


def _git_state() -> dict[str, Any]:
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        return {"sha": sha, "dirty": bool(dirty)}
    except (OSError, subprocess.SubprocessError):
        return {"sha": None, "dirty": None}


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for pkg in ("harness", "torch", "transformers", "gymnasium", "mujoco", "numpy", "pandas", "scipy"):
        try:
            out[pkg] = importlib_metadata.version(pkg)
        except importlib_metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def _machine() -> dict[str, Any]:
    cpu = platform.processor() or None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


# ----------------------------------------------------------------------------- output folder


def _check_out(out: Path) -> None:
    """Refuse an output path that is a file, lies under a file, or already holds results."""
    if out.exists() and not out.is_dir():
        raise HarnessError(f"--out {out} is a file; pass a folder path")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise HarnessError(f"--out {out}: {parent} is a file; pass a folder path")
            break
    if out.is_dir():
        held = [name for name in RESULT_FILES if (out / name).exists()]
        if held:
            raise HarnessError(
                f"--out {out} already holds results ({', '.join(held)}); pass a new --out folder "
                "so that nothing is overwritten"
            )


def _prepare_out(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise HarnessError(f"--out {out} is not writable ({exc.strerror}); pass a folder you can write to") from None


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


# ----------------------------------------------------------------------------- the sweep


def _parse_checkpoints(entries: Sequence[str], envs: Sequence[EnvSpec]) -> dict[str, list[str]]:
    by_env: dict[str, list[str]] = {e.name: [] for e in envs}
    for entry in entries:
        if "=" not in entry:
            raise HarnessError(
                f"--checkpoint {entry!r} lacks the env; write it as ENV=FOLDER_OR_HUB_ID, e.g. hopper={entry}"
            )
        name, spec = entry.split("=", 1)
        if not spec:
            raise HarnessError(f"--checkpoint {entry!r} names no folder or Hub id after '='")
        env_name = resolve_env(name).name
        if env_name not in by_env:
            raise HarnessError(
                f"--checkpoint {entry!r} is for {env_name}, which is not in --envs "
                f"({', '.join(by_env)}); add it to --envs or drop the checkpoint"
            )
        by_env[env_name].append(spec)
    embedded = embedded_names()
    for env_name, specs in by_env.items():
        if not specs:
            if env_name not in embedded:
                raise HarnessError(
                    f"no checkpoint for {env_name}: pass --checkpoint {env_name}=FOLDER_OR_HUB_ID "
                    f"(e.g. {env_name}=edbeeching/decision-transformer-gym-{env_name}-medium)"
                )
            specs.append(env_name)
    return by_env


def validate(config: SweepConfig) -> list[EnvSpec]:
    """Check every argument that can be checked without loading anything."""
    if not config.envs:
        raise HarnessError("--envs is empty; pass one or more of hopper, walker2d, halfcheetah")
    if config.env_version not in VERSIONS:
        raise HarnessError(f"unknown --env-version {config.env_version!r}; use one of: {', '.join(VERSIONS)}")
    envs = []
    for name in config.envs:
        env = resolve_env(name, config.env_version)
        if any(e.name == env.name for e in envs):
            raise HarnessError(f"--envs names {env.name} twice; list each env once")
        envs.append(env)
    if config.targets is not None:
        if not config.targets:
            raise HarnessError("--targets is empty; pass one or more target returns, e.g. --targets 1800 3600")
        bad = [t for t in config.targets if not math.isfinite(t)]
        if bad:
            raise HarnessError(f"--targets must be finite numbers, got {bad[0]}; pass returns such as 1800 3600")
    for name, value, top in (
        ("--episodes", config.episodes, MAX_EPISODES),
        ("--num-targets", config.num_targets, 1000),
    ):
        if not 1 <= value <= top:
            raise HarnessError(f"{name} must be between 1 and {top:,}, got {value}")
    if not 0 <= config.seed <= 2**31 - 1 - MAX_EPISODES:
        raise HarnessError(f"--seed must be between 0 and {2**31 - 1 - MAX_EPISODES}, got {config.seed}")
    if config.num_envs is not None and not 1 <= config.num_envs <= MAX_NUM_ENVS:
        raise HarnessError(f"--num-envs must be between 1 and {MAX_NUM_ENVS}, got {config.num_envs}")
    if config.precision not in PRECISIONS:
        raise HarnessError(f"unknown --precision {config.precision!r}; use one of: {', '.join(PRECISIONS)}")
    if config.device not in ("cpu", "cuda") and not config.device.startswith("cuda:"):
        raise HarnessError(f"unknown --device {config.device!r}; use cpu or cuda")
    if config.device.startswith("cuda") and not torch.cuda.is_available():
        raise HarnessError("--device cuda was asked for but no CUDA GPU is visible to torch; use --device cpu")
    return envs


def run_sweep(config: SweepConfig, command: str | None = None) -> pd.DataFrame:
    """Run a whole sweep and write its folder; returns the episode rows.

    Every argument and every checkpoint is checked before anything is written; an output
    folder that already holds results is refused.

    Raises:
        HarnessError: bad input, with the fix in the message.

    ``command`` is recorded in metadata.json (the command line, when run from it).
    """
    started_at = datetime.now(timezone.utc)
    envs = validate(config)
    by_env = _parse_checkpoints(config.checkpoints, envs)
    out = Path(config.out) if config.out else Path("results") / started_at.strftime("%Y-%m-%dT%H-%M-%S")
    _check_out(out)

    loaded: list[tuple[EnvSpec, Checkpoint, list[float]]] = []
    for env in envs:
        for spec in by_env[env.name]:
            ckpt = load_checkpoint(spec, device=config.device)
            ckpt.check_env(env)
            targets = config.targets if config.targets is not None else default_targets(env, ckpt, config.num_targets)
            loaded.append((env, ckpt, [float(t) for t in targets]))
    _prepare_out(out)

    total = sum(len(t) * config.episodes for _, _, t in loaded)
    bar = tqdm(
        total=total, unit="ep", desc="episodes", file=sys.stderr, disable=not config.progress, dynamic_ncols=True
    )
    frames = []
    t0 = time.perf_counter()
    with bar:
        for env, ckpt, targets in loaded:
            bar.set_description(f"{env.name} {ckpt.label}")
            frames.append(
                evaluate(
                    ckpt,
                    env,
                    targets,
                    config.episodes,
                    config.num_envs,
                    config.seed,
                    config.device,
                    bar,
                    precision=config.precision,
                )
            )
    elapsed = time.perf_counter() - t0
    episodes = pd.concat(frames, ignore_index=True)
    best = {(env.name, c.label): c.dataset.return_max for env, c, _ in loaded if c.dataset is not None}
    summary = summarize(episodes, best_returns=best)

    _write_atomic(out / "episodes.csv", episodes.to_csv(index=False))
    _write_atomic(out / "summary.csv", summary.to_csv(index=False))
    env_steps = int(episodes["length"].sum())
    meta = {
        "command": command,
        "arguments": asdict(config) | {"out": str(out)},
        "checkpoints": [c.describe() | {"env": env.name, "targets": t} for env, c, t in loaded],
        "versions": _versions(),
        "git": _git_state(),
        "machine": _machine(),
        "started_at": started_at.isoformat(),
        "ended_at": datetime.now(timezone.utc).isoformat(),
        "episodes": len(episodes),
        "env_steps": env_steps,
        "elapsed_s": elapsed,
        "env_steps_per_s": env_steps / elapsed if elapsed > 0 else None,
    }
    _write_atomic(out / "metadata.json", json.dumps(meta, indent=2, default=str) + "\n")
    from harness.plot import save_figures

    save_figures(out)
    return episodes


# ----------------------------------------------------------------------------- command line


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``error: ...``) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {message} (see python -m harness.sweep --help)\n")


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
    p = _Parser(
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
        f"Face Hub id or an embedded name; default: the embedded one "
        f"({', '.join(embedded_names()) or 'none shipped yet'})",
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
    p.add_argument("--device", default=d.device, metavar="cpu|cuda", help="torch device for the model")
    p.add_argument(
        "--precision",
        choices=list(PRECISIONS),
        default=d.precision,
        help="fp32: exact (the tutorial loop's actions); bf16: bf16 weights and matrix multiplies, faster on "
        "CPUs with bf16 units and GPUs, returns statistically the same (README, Speed)",
    )
    p.add_argument("--out", default=None, metavar="DIR", help="output folder; default: results/<UTC timestamp>")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
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
    print(f"\nwrote {out}/episodes.csv, summary.csv, metadata.json, return_conditioning.png/.svg")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (0 ok, 2 bad input)."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    args = build_parser().parse_args(argv)
    config = SweepConfig(
        envs=args.envs,
        checkpoints=args.checkpoints,
        targets=args.targets,
        num_targets=args.num_targets,
        episodes=args.episodes,
        num_envs=args.num_envs,
        seed=args.seed,
        env_version=args.env_version,
        device=args.device,
        precision=args.precision,
        out=args.out,
        progress=not args.no_progress,
    )
    if config.out is None:
        config.out = str(Path("results") / datetime.now(timezone.utc).strftime("%Y-%m-%dT%H-%M-%S"))
    try:
        run_sweep(config, command=" ".join(["python -m harness.sweep", *(sys.argv[1:] if argv is None else argv)]))
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\ninterrupted: no results were written to {config.out}", file=sys.stderr)
        return 130
    _print_summary(pd.read_csv(Path(config.out) / "summary.csv"), Path(config.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
