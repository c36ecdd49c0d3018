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
from collections.abc import Callable, Sequence
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
from harness.checkpoints import Checkpoint, DatasetSummary, embedded_names, load_checkpoint
from harness.envs import DEFAULT_VERSION, VERSIONS, EnvSpec, resolve_env
from harness.errors import HarnessError
from harness.parallel import BACKENDS
from harness.policy import PRECISIONS, DTPolicy
from harness.results import (
    EPISODES,
    IDENTITY,
    EpisodeLog,
    canonical_order,
    identity_differences,
    read_episodes,
    write_atomic,
)
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
    "status",
    "normalized_score",
    "wall_time_s",
    "error",
    "video",
]
SUMMARY_COLUMNS = [
    "env",
    "env_id",
    "checkpoint",
    "target",
    "target_score",
    "n",
    "n_failed",
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
    "dataset_return_min",
    "dataset_return_p10",
    "dataset_return_median",
    "dataset_return_p90",
]
RESULT_FILES = ("episodes.csv", "summary.csv", "metadata.json", IDENTITY)
FIGURES = ("return_conditioning.png", "return_conditioning.svg")
EXIT_FAILED_EPISODES = 3
"""Exit code of a sweep that completed but recorded failed episodes (``status`` not ``ok``)."""
MAX_EPISODES = 100_000
MAX_NUM_ENVS = 4096
MAX_JOBS = 1024
DEFAULT_MAX_NUM_ENVS = 64


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
    """Vector-env slots per checkpoint; None: all its episodes at once, at most 64 (see README, Speed)."""
    seed: int = 0
    """Episode k of every cell is reset with seed ``seed + k``."""
    env_version: str = DEFAULT_VERSION
    """Gymnasium version for short env names (v4 is closest to D4RL's -v3)."""
    device: str = "auto"
    """Torch device of the model and context buffers; ``auto``: ``cuda`` when a GPU is visible."""
    precision: str = "fp32"
    """``fp32`` (exact: the tutorial loop's actions) or ``bf16`` (faster, not bit-exact)."""
    out: str | None = None
    """Output folder; None: ``results/<timestamp>``."""
    progress: bool = True
    """Show a progress bar on stderr."""
    overwrite: bool = False
    """Discard results already in ``out`` (otherwise a matching sweep resumes, another is refused)."""
    jobs: int = 1
    """Worker processes; above 1 the sweep's cells run on ``backend`` (see :mod:`harness.parallel`)."""
    backend: str = "loky"
    """joblib backend for ``jobs > 1``: ``loky``, ``dask`` or ``ray``."""
    scheduler: str | None = None
    """Address of a running Dask scheduler (``tcp://host:8786``); None starts a local cluster."""
    env_workers: int = 1
    """Processes that step each evaluator's slots (for a GPU-bound model, the simulator's share)."""
    video: int = 0
    """Record the first N episodes of every (env, checkpoint, target) cell as MP4 (``<out>/videos``)."""


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
            "status": r.status,
            "normalized_score": env.normalized_score(r.ret),
            "wall_time_s": r.wall_time_s,
            "error": r.error,
            "video": "",
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
    done: set[tuple[float, int]] | None = None,
    on_rows: Callable[[pd.DataFrame], None] | None = None,
    env_workers: int = 1,
) -> pd.DataFrame:
    """Run ``episodes`` episodes of one checkpoint at every target and return the episode rows.

    Args:
        checkpoint: a loaded checkpoint, or a spec for :func:`harness.checkpoints.load_checkpoint`.
        env: an EnvSpec or a name for :func:`harness.envs.resolve_env`.
        targets: raw target returns.
        episodes: episodes per target; episode k uses reset seed ``seed + k``.
        num_envs: vector-env slots (None: all episodes at once, at most 64).
        seed: base reset seed.
        device: torch device.
        progress: a tqdm bar to advance by episodes, or None.
        precision: ``fp32`` or ``bf16`` (see :class:`harness.policy.DTPolicy`).
        done: ``(target, episode index)`` pairs already recorded (a resumed sweep): not run.
        on_rows: called with the rows of the episodes that finish at each step (crash-safe logs).
        env_workers: processes that step the slots (see :mod:`harness.vector`).

    Returns:
        One row per episode run with the columns of :data:`EPISODE_COLUMNS`, in spec order.

    Example (needs a checkpoint)::

        df = evaluate("edbeeching/decision-transformer-gym-hopper-medium", "hopper", [1800, 3600])
    """
    env = resolve_env(env) if isinstance(env, str) else env
    ckpt = load_checkpoint(checkpoint, device=device) if isinstance(checkpoint, str) else checkpoint
    ckpt.check_env(env)
    done = done or set()
    specs = [EpisodeSpec(float(t), seed + k, k) for t in targets for k in range(episodes) if (float(t), k) not in done]
    if not specs:
        return pd.DataFrame(columns=EPISODE_COLUMNS)
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

    def on_finish(results) -> None:
        if on_rows is not None:
            on_rows(pd.DataFrame(_episode_rows(env, ckpt, results), columns=EPISODE_COLUMNS))

    results = run_episodes(
        policy, env.env_id, specs, slots, progress=on_step, on_finish=on_finish, env_workers=env_workers
    )
    return pd.DataFrame(_episode_rows(env, ckpt, results), columns=EPISODE_COLUMNS)


def summarize(
    episodes: pd.DataFrame,
    best_returns: dict[tuple[str, str], float] | None = None,
    datasets: dict[tuple[str, str], DatasetSummary] | None = None,
) -> pd.DataFrame:
    """One row per env × checkpoint × target: n, mean, std, 95% bootstrap CI, IQM, scores.

    Statistics are over the episodes whose ``status`` is ``ok`` (``n`` of them); ``n_failed``
    counts the others (their partial returns are in episodes.csv, not in the means).

    Args:
        episodes: rows with the columns of :data:`EPISODE_COLUMNS`.
        best_returns: best trajectory return of each (env, checkpoint)'s dataset, if known.
        datasets: each (env, checkpoint)'s training-data summary, if known (its return
            quantiles go into the table, for figures drawn from the CSV files alone).
    """
    datasets = datasets or {}
    best_returns = (best_returns or {}) | {k: d.return_max for k, d in datasets.items()}
    rows = []
    for (env_name, env_id, label, target), cell in episodes.groupby(
        ["env", "env_id", "checkpoint", "target"], sort=True
    ):
        env = resolve_env(env_id)
        ok = cell["status"] == "ok" if "status" in cell else np.ones(len(cell), dtype=bool)
        d = stats.describe(cell.loc[ok, "return"].to_numpy())
        best = best_returns.get((env_name, label), float("nan"))
        data = datasets.get((env_name, label))
        rows.append(
            {
                "env": env_name,
                "env_id": env_id,
                "checkpoint": label,
                "target": target,
                "target_score": env.normalized_score(target),
                "n": d["n"],
                "n_failed": int((~ok).sum()),
                "return_mean": d["mean"],
                "return_std": d["std"],
                "return_ci_low": d["ci_low"],
                "return_ci_high": d["ci_high"],
                "return_iqm": d["iqm"],
                # the score is an increasing affine map of the return: its CI maps the same way
                "score_mean": env.normalized_score(d["mean"]),
                "score_ci_low": env.normalized_score(d["ci_low"]),
                "score_ci_high": env.normalized_score(d["ci_high"]),
                "length_mean": float(cell.loc[ok, "length"].mean()) if ok.any() else float("nan"),
                "dataset_best_return": best,
                "dataset_best_score": env.normalized_score(best),
            }
            | {
                f"dataset_return_{q}": float(getattr(data, f"return_{q}")) if data is not None else float("nan")
                for q in ("min", "p10", "median", "p90")
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
    """Refuse an output path that is a file or lies under a file."""
    if out.exists() and not out.is_dir():
        raise HarnessError(f"--out {out} is a file; pass a folder path")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise HarnessError(f"--out {out}: {parent} is a file; pass a folder path")
            break


def _held(out: Path) -> list[str]:
    return [name for name in (*RESULT_FILES, *FIGURES) if (out / name).exists()] if out.is_dir() else []


def _resume_or_refuse(out: Path, identity: dict[str, Any], overwrite: bool) -> bool:
    """Decide what to do with an existing ``out``: True when a matching sweep is resumed.

    Raises:
        HarnessError: ``out`` holds results of another sweep (or of no known sweep) and
            ``overwrite`` is not set.
    """
    held = _held(out)
    if not held:
        return False
    if overwrite:
        for name in held:
            (out / name).unlink()
        return False
    if IDENTITY not in held:
        raise HarnessError(
            f"--out {out} already holds results ({', '.join(held)}) of no resumable sweep; pass a new --out "
            "folder, or --overwrite to replace them"
        )
    try:
        old = json.loads((out / IDENTITY).read_text())
    except (OSError, ValueError) as exc:
        raise HarnessError(f"{out / IDENTITY} is unreadable ({exc}); pass --overwrite to start again") from None
    diff = identity_differences(old, identity)
    if diff:
        raise HarnessError(
            f"--out {out} holds a sweep with other arguments ({'; '.join(diff[:3])}); rerun its command to "
            "resume it, pass a new --out, or --overwrite to replace it"
        )
    return True


def _prepare_out(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise HarnessError(f"--out {out} is not writable ({exc.strerror}); pass a folder you can write to") from None


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


def resolve_device(name: str) -> str:
    """``auto`` → ``cuda`` when torch sees a GPU, else ``cpu``; other names unchanged."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


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
    if not 1 <= config.jobs <= MAX_JOBS:
        raise HarnessError(f"--jobs must be between 1 and {MAX_JOBS}, got {config.jobs}")
    if config.backend not in BACKENDS:
        raise HarnessError(f"unknown --backend {config.backend!r}; use one of: {', '.join(BACKENDS)}")
    if config.scheduler is not None and config.backend != "dask":
        raise HarnessError("--scheduler is the address of a Dask cluster; pass it with --backend dask")
    if config.precision not in PRECISIONS:
        raise HarnessError(f"unknown --precision {config.precision!r}; use one of: {', '.join(PRECISIONS)}")
    if config.device not in ("cpu", "cuda", "auto") and not config.device.startswith("cuda:"):
        raise HarnessError(f"unknown --device {config.device!r}; use auto, cpu or cuda")
    if not 0 <= config.video <= config.episodes:
        raise HarnessError(f"--video must be between 0 and --episodes ({config.episodes}), got {config.video}")
    if not 1 <= config.env_workers <= MAX_JOBS:
        raise HarnessError(f"--env-workers must be between 1 and {MAX_JOBS}, got {config.env_workers}")
    if config.device.startswith("cuda") and not torch.cuda.is_available():
        raise HarnessError("--device cuda was asked for but no CUDA GPU is visible to torch; use --device cpu")
    return envs


def _done(previous: pd.DataFrame, env_name: str, label: str) -> set[tuple[float, int]]:
    """``(target, episode)`` pairs of one (env, checkpoint) already in ``previous``."""
    cell = previous[(previous["env"] == env_name) & (previous["checkpoint"] == label)]
    return {(float(t), int(k)) for t, k in zip(cell["target"], cell["episode"], strict=True)}


def _run_parallel(
    config: SweepConfig,
    device: str,
    loaded: list[tuple[EnvSpec, Checkpoint, list[float]]],
    specs: dict[tuple[str, str], str],
    previous: pd.DataFrame,
    log: EpisodeLog,
    bar: tqdm,
) -> None:
    """Run the sweep's missing episodes as (env, checkpoint, target) cells on ``config.backend``."""
    from harness.parallel import Cell, engine, run_cells, threads_per_job

    threads = threads_per_job(config.jobs)
    cells = []
    for env, ckpt, targets in loaded:
        done = _done(previous, env.name, ckpt.label)
        fingerprint = ckpt.fingerprint()
        for t in targets:
            todo = tuple(k for k in range(config.episodes) if (t, k) not in done)
            if todo:
                cells.append(
                    Cell(
                        env.env_id,
                        specs[(env.name, ckpt.label)],
                        fingerprint,
                        t,
                        todo,
                        config.seed,
                        config.num_envs,
                        config.precision,
                        device,
                        threads,
                        config.env_workers,
                    )
                )
    bar.set_description(f"{len(cells)} cells on {config.jobs} {config.backend} workers")

    def on_cell(rows: pd.DataFrame) -> None:
        log.append(rows)
        bar.update(len(rows))

    with engine(config.backend, config.jobs, config.scheduler):
        run_cells(cells, on_cell)


def _record_videos(
    config: SweepConfig,
    device: str,
    loaded: list[tuple[EnvSpec, Checkpoint, list[float]]],
    episodes: pd.DataFrame,
    out: Path,
    bar_enabled: bool,
) -> pd.DataFrame:
    """Replay and record the first ``config.video`` episodes of every cell; fills ``video``."""
    from harness.video import VIDEO_DIR, record, video_name

    episodes = episodes.copy()
    episodes["video"] = ["" if pd.isna(v) else str(v) for v in episodes["video"]]
    todo = []
    for env, ckpt, targets in loaded:
        for t in targets:
            for k in range(config.video):
                todo.append((env, ckpt, t, k))
    with tqdm(total=len(todo), unit="video", desc="videos", file=sys.stderr, disable=not bar_enabled) as bar:
        for env, ckpt, t, k in todo:
            seed = config.seed + k
            rel = f"{VIDEO_DIR}/{video_name(env.name, ckpt.label, t, seed)}"
            row = (
                (episodes["env"] == env.name)
                & (episodes["checkpoint"] == ckpt.label)
                & (episodes["target"] == t)
                & (episodes["episode"] == k)
            )
            if not (out / rel).is_file():
                result = record(ckpt, env.env_id, EpisodeSpec(t, seed, k), out / rel, config.precision, device)
                logged = float(episodes.loc[row, "return"].iloc[0])
                if result.ret != logged:
                    tqdm.write(
                        f"warning: the recorded replay of {rel} returned {result.ret:.6f}, the sweep {logged:.6f}",
                        file=sys.stderr,
                    )
            episodes.loc[row, "video"] = rel
            bar.update(1)
    return episodes


def _identity(config: SweepConfig, loaded: list[tuple[EnvSpec, Checkpoint, list[float]]]) -> dict[str, Any]:
    """What determines a sweep's rows (what a resume must match)."""
    return {
        "format": 1,
        "cells": [
            {"env": env.name, "env_id": env.env_id, "checkpoint": c.label, "fingerprint": c.fingerprint(), "targets": t}
            for env, c, t in loaded
        ],
        "episodes": config.episodes,
        "seed": config.seed,
        "precision": config.precision,
    }


def run_sweep(config: SweepConfig, command: str | None = None) -> pd.DataFrame:
    """Run a whole sweep and write its folder; returns the episode rows.

    Every argument and every checkpoint is checked before anything is written. Episodes are
    appended to ``episodes.csv`` as they finish; rerunning the same sweep into the same folder
    runs only the missing episodes (see :mod:`harness.results`); another sweep's folder is
    refused unless ``config.overwrite``.

    Raises:
        HarnessError: bad input, with the fix in the message.
        KeyboardInterrupt: after the finished episodes are safely on disk.

    ``command`` is recorded in metadata.json (the command line, when run from it).
    """
    started_at = datetime.now(timezone.utc)
    envs = validate(config)
    device = resolve_device(config.device)
    by_env = _parse_checkpoints(config.checkpoints, envs)
    out = Path(config.out) if config.out else Path("results") / started_at.strftime("%Y-%m-%dT%H-%M-%S")
    _check_out(out)

    loaded: list[tuple[EnvSpec, Checkpoint, list[float]]] = []
    specs: dict[tuple[str, str], str] = {}
    for env in envs:
        for spec in by_env[env.name]:
            ckpt = load_checkpoint(spec, device=device)
            ckpt.check_env(env)
            targets = config.targets if config.targets is not None else default_targets(env, ckpt, config.num_targets)
            loaded.append((env, ckpt, [float(t) for t in targets]))
            specs[(env.name, ckpt.label)] = spec
    labels = [(env.name, c.label) for env, c, _ in loaded]
    if len(set(labels)) != len(labels):
        dup = next(x for x in labels if labels.count(x) > 1)
        raise HarnessError(f"--checkpoint names {dup[0]}={dup[1]} twice; list each checkpoint once")
    if config.video:
        from harness.video import check_renderer, require_encoder

        require_encoder()
        check_renderer(loaded[0][0].env_id)
    identity = _identity(config, loaded)
    resuming = _resume_or_refuse(out, identity, config.overwrite)
    cells = {(env.name, c.label): t for env, c, t in loaded}
    previous = (
        read_episodes(out / EPISODES, EPISODE_COLUMNS, cells, config.episodes)
        if resuming
        else pd.DataFrame(columns=EPISODE_COLUMNS)
    )
    _prepare_out(out)
    if not resuming:
        write_atomic(out / IDENTITY, json.dumps(identity, indent=2) + "\n")

    total = sum(len(t) * config.episodes for _, _, t in loaded)
    bar = tqdm(
        total=total,
        initial=len(previous),
        unit="ep",
        desc="episodes",
        file=sys.stderr,
        disable=not config.progress,
        dynamic_ncols=True,
    )
    if resuming and len(previous):
        tqdm.write(f"resuming: {len(previous)} of {total} episodes already in {out / EPISODES}", file=sys.stderr)
    log = EpisodeLog(out / EPISODES, EPISODE_COLUMNS)
    log.open()
    t0 = time.perf_counter()
    try:
        with bar:
            if config.jobs > 1:
                _run_parallel(config, device, loaded, specs, previous, log, bar)
            else:
                for env, ckpt, targets in loaded:
                    done = _done(previous, env.name, ckpt.label)
                    bar.set_description(f"{env.name} {ckpt.label}")
                    evaluate(
                        ckpt,
                        env,
                        targets,
                        config.episodes,
                        config.num_envs,
                        config.seed,
                        device,
                        bar,
                        precision=config.precision,
                        done=done,
                        on_rows=log.append,
                        env_workers=config.env_workers,
                    )
    finally:
        log.close()
    elapsed = time.perf_counter() - t0

    all_rows = read_episodes(out / EPISODES, EPISODE_COLUMNS, cells, config.episodes)
    if len(all_rows) != total:  # cannot happen unless the file was edited during the run
        raise HarnessError(
            f"{out / EPISODES} holds {len(all_rows)} of {total} episodes after the sweep; rerun to resume"
        )
    episodes = canonical_order(all_rows, labels)
    if config.video:
        episodes = _record_videos(config, device, loaded, episodes, out, bar_enabled=config.progress)
    write_atomic(out / EPISODES, episodes.to_csv(index=False, lineterminator="\n"))
    data = {(env.name, c.label): c.dataset for env, c, _ in loaded if c.dataset is not None}
    summary = summarize(episodes, datasets=data)
    write_atomic(out / "summary.csv", summary.to_csv(index=False))
    run_steps = int(episodes["length"].sum() - (previous["length"].sum() if len(previous) else 0))
    meta = {
        "command": command,
        "arguments": asdict(config) | {"out": str(out), "device_used": device},
        "checkpoints": [
            c.describe() | {"env": env.name, "targets": t, "fingerprint": c.fingerprint()} for env, c, t in loaded
        ],
        "versions": _versions(),
        "git": _git_state(),
        "machine": _machine(),
        "started_at": started_at.isoformat(),
        "ended_at": datetime.now(timezone.utc).isoformat(),
        "episodes": len(episodes),
        "failed_episodes": int((episodes["status"] != "ok").sum()),
        "resumed_episodes": len(previous),
        "env_steps": int(episodes["length"].sum()),
        "elapsed_s": elapsed,
        "env_steps_per_s": run_steps / elapsed if elapsed > 0 else None,
    }
    write_atomic(out / "metadata.json", json.dumps(meta, indent=2, default=str) + "\n")
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
        "--precision",
        choices=list(PRECISIONS),
        default=d.precision,
        help="fp32: exact (the tutorial loop's actions); bf16: bf16 weights and matrix multiplies, faster on "
        "CPUs with bf16 units and GPUs, returns statistically the same (README, Speed)",
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
        overwrite=args.overwrite,
        jobs=args.jobs,
        env_workers=args.env_workers,
        video=args.video,
        backend=args.backend,
        scheduler=args.scheduler,
    )
    if config.out is None:
        config.out = str(Path("results") / datetime.now(timezone.utc).strftime("%Y-%m-%dT%H-%M-%S"))
    command = " ".join(["python -m harness.sweep", *(sys.argv[1:] if argv is None else argv)])
    try:
        episodes = run_sweep(config, command=command)
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        log = Path(config.out) / EPISODES
        kept = max(sum(1 for _ in open(log, encoding="utf-8")) - 1, 0) if log.is_file() else 0
        print(
            f"\ninterrupted: {kept} finished episodes are saved in {log}; rerun the same command to resume",
            file=sys.stderr,
        )
        return 130
    _print_summary(pd.read_csv(Path(config.out) / "summary.csv"), Path(config.out))
    failed = episodes[episodes["status"] != "ok"]
    if len(failed):
        kinds = ", ".join(f"{n} {k}" for k, n in failed["status"].value_counts().items())
        print(f"warning: {len(failed)} episodes failed ({kinds}); see the status column", file=sys.stderr)
        return EXIT_FAILED_EPISODES
    return 0


if __name__ == "__main__":
    sys.exit(main())
