"""A whole sweep: check every input, load the checkpoints, run the episodes, write the folder.

:func:`run_sweep` is the sweep as a library call (the command line in :mod:`harness.commands.sweep` fills a
:class:`SweepConfig` and calls it). In order: :func:`validate` checks every argument that needs
nothing loaded; each checkpoint is loaded and checked against its env; the output folder is
resumed, refused or overwritten (:mod:`harness.io.results`); the missing episodes run in this
process (:func:`harness.engine.evaluate.evaluate`) or as cells on workers (:mod:`harness.running.parallel`),
each finished episode appended to ``episodes.csv``; then ``summary.csv``
(:func:`harness.analysis.summary.summarize`), ``metadata.json`` (:mod:`harness.core.provenance`), videos and
figures (:mod:`harness.commands.plot`).
"""

from __future__ import annotations

import json
import math
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm import tqdm

from harness.analysis.calibration import calibration
from harness.analysis.robustness import ROBUSTNESS, robustness
from harness.analysis.summary import summarize
from harness.core import numerics
from harness.core.errors import HarnessError
from harness.core.numerics import Numerics
from harness.core.provenance import git_state, machine, versions
from harness.core.schema import (
    CALIBRATION,
    EPISODE_COLUMNS,
    EPISODES,
    IDENTITY,
    METADATA,
    SUMMARY,
    VIDEO_DIR,
    Status,
)
from harness.engine.evaluate import default_targets, evaluate
from harness.engine.policy import PRECISIONS, DTPolicy, batch_invariance_check
from harness.engine.rollout import EpisodeSpec
from harness.io.checkpoints import Checkpoint, embedded_names, expand_spec, load_checkpoint
from harness.io.data import Statistics, statistics_from
from harness.io.results import (
    EpisodeLog,
    canonical_order,
    check_out,
    prepare_out,
    read_episodes,
    resume_or_refuse,
    write_atomic,
)
from harness.running.parallel import BACKENDS, Cell, engine, run_cells, threads_per_job
from harness.world.envs import DEFAULT_VERSION, VERSIONS, EnvSpec, resolve_env
from harness.world.mjbatch import default_stepper, describe_stepper
from harness.world.shift import parse_shifts
from harness.world.vector import SIMULATORS

MAX_EPISODES = 100_000
MAX_NUM_ENVS = 4096
MAX_JOBS = 1024


def _flag(**cli: Any) -> dict[str, Any]:
    """Command-line details of a :class:`SweepConfig` field (flag name, nargs, metavar, choices...);
    name, type, default and help come from the field itself (:func:`harness.commands.cli.add_config_flags`)."""
    return {"cli": cli}


@dataclass
class SweepConfig:
    """Everything a sweep needs: the one source of the sweep's options.

    ``harness sweep`` has one flag per field (its help is the field's docstring below), and
    ``--config FILE.toml`` takes the same names as keys.
    """

    envs: list[str] = field(
        default_factory=lambda: ["hopper", "walker2d", "halfcheetah"], metadata=_flag(metavar="ENV")
    )
    """Envs: short names (hopper, walker2d, halfcheetah) or full Gymnasium ids (Hopper-v5)."""
    checkpoints: list[str] = field(
        default_factory=list, metadata=_flag(flag="--checkpoint", action="append", metavar="ENV=FOLDER_OR_HUB_ID")
    )
    """Checkpoint for an env (repeatable; several per env allowed): a local folder, a Hugging Face Hub
    id or an embedded name; a quoted glob ('hopper=run/trainer/checkpoint-*') or a folder of Trainer
    checkpoint-N folders evaluates each (learning_curve figure). An env without one uses its
    embedded checkpoint."""
    data: list[str] = field(default_factory=list, metadata=_flag(action="append", metavar="ENV=DATASET"))
    """The training data of checkpoints saved without state statistics (the tutorial's Trainer
    output): a parquet file or a Hub dataset owner/name:subset; statistics computed as the tutorial's
    collator does (a bare DATASET when one env is swept)."""
    targets: list[float] | None = field(default=None, metadata=_flag(metavar="R"))
    """Raw target returns for every env; default: --num-targets evenly spaced from the checkpoint's
    dataset range (lowest to 1.2x best), else the D4RL range."""
    num_targets: int = field(default=10, metadata=_flag(metavar="N"))
    """Size of the default target grid."""
    episodes: int = field(default=10, metadata=_flag(metavar="N"))
    """Episodes per target (the paper's protocol: 100)."""
    num_envs: int | None = field(default=None, metadata=_flag(metavar="N"))
    """Vector-env slots per checkpoint; default: all its episodes at once, at most 64."""
    seed: int = 0
    """Episode k of every cell is reset with seed SEED + k."""
    env_version: list[str] = field(default_factory=lambda: [DEFAULT_VERSION], metadata=_flag(choices=VERSIONS))
    """Gymnasium version(s) for short env names (v4 is closest to D4RL's -v3; Walker2d-v5 is another task);
    several (--env-version v4 v5) make the version an axis: every checkpoint runs on each, and
    summary.csv's retained column gives the later versions' score as a share of the first's."""
    shift: list[str] = field(default_factory=list, metadata=_flag(action="append", metavar="NAME=V1,V2"))
    """A shift axis (repeatable; cells are every combination): obs_noise (Gaussian, std in units of the
    checkpoint's state std), act_noise (Gaussian, std in units of half the action range, clipped),
    mass, friction, gravity, reset_noise (scales; 1 = none). Rows carry the cell in the shift column;
    summary.csv's retained column is the score kept relative to the unshifted cell, paired by seed."""
    device: str = "auto"
    """Torch device of the model and context buffers: auto (cuda when a GPU is visible), cpu, cuda, cuda:N."""
    precision: str = field(default="fp32", metadata=_flag(choices=list(PRECISIONS)))
    """fp32: exact (the tutorial loop's actions); bf16: bf16 weights and matrix multiplies, faster on CPUs
    with bf16 units and GPUs, statistically the same returns; bf16 (oneDNN) is outside the
    pinned-numerics guarantee: its rows may differ between CPUs."""
    allow_emulated_bf16: bool = False
    """Run --precision bf16 on a CPU without bf16 arithmetic (no AVX512-BF16/AMX-BF16): torch then
    emulates it, many times slower than fp32; refused without this flag."""
    numerics: str = field(default="pinned", metadata=_flag(choices=[m.value for m in Numerics]))
    """pinned: fp32 episodes bit-identical on every x86-64 CPU with AVX2, Intel or AMD, with or without
    AVX-512 (every product, layer norm, softmax and the action's tanh in the harness's fixed-order
    kernel; see the manual's Reproducibility page); local:
    identical whatever the batch, threads or workers on this kind of CPU only (faster); native:
    nothing pinned (fastest)."""
    allow_batch_dependence: bool = False
    """Resume, or run on several workers, even when the start-up self-check finds that an episode's
    actions depend on its batch on this machine (rows may then differ from an uninterrupted run's)."""
    out: str | None = field(default=None, metadata=_flag(metavar="DIR"))
    """Output folder; default: results/<UTC timestamp>."""
    progress: bool = field(default=True, metadata=_flag(flag="--no-progress", invert=True))
    """Show a progress bar on stderr (--no-progress: none)."""
    overwrite: bool = False
    """Discard the results already in --out (by default the same sweep resumes and another is refused)."""
    jobs: int = field(default=1, metadata=_flag(metavar="N"))
    """Worker processes; above 1, (env, checkpoint, target) cells run in parallel on --backend, with
    torch threads per worker = cores / N."""
    backend: str = field(default="loky", metadata=_flag(choices=list(BACKENDS)))
    """joblib backend for --jobs above 1: loky (local processes), dask or ray."""
    scheduler: str | None = field(default=None, metadata=_flag(metavar="ADDRESS"))
    """Address of a running Dask scheduler (tcp://host:8786) for --backend dask; default: a local cluster."""
    env_workers: int = field(default=1, metadata=_flag(metavar="N"))
    """Processes that step each evaluator's slots (for a GPU-bound model, the simulator's share)."""
    simulator: str = field(default="batched", metadata=_flag(choices=list(SIMULATORS)))
    """batched: all slots' MuJoCo stepped at once, bit-equal to Gymnasium's envs (Hopper, Walker2d,
    HalfCheetah v4/v5; other ids use Gymnasium's); gymnasium: Gymnasium's envs."""
    video: int = field(default=0, metadata=_flag(metavar="N"))
    """Record the first N episodes of every (env, checkpoint, target) cell as MP4 under OUT/videos
    (replayed separately, so the other episodes are not slowed); needs the video extra and EGL or OSMesa."""


def parse_checkpoints(entries: Sequence[str], envs: Sequence[EnvSpec]) -> dict[str, list[str]]:
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
        by_env[env_name].extend(expand_spec(spec))
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


def parse_data(entries: Sequence[str], envs: Sequence[EnvSpec]) -> dict[str, str]:
    """``--data`` entries as ``{env name: dataset spec}``; a bare spec is allowed for one env."""
    out: dict[str, str] = {}
    names = [e.name for e in envs]
    for entry in entries:
        name, sep, spec = entry.partition("=")
        if not sep:
            if len(names) != 1:
                raise HarnessError(
                    f"--data {entry!r} lacks the env and the sweep has {len(names)} envs; write ENV=DATASET, "
                    f"e.g. {names[0]}={entry}"
                )
            name, spec = names[0], entry
        if not spec:
            raise HarnessError(
                f"--data {entry!r} names no dataset after '='; pass ENV=path.parquet or owner/name:subset"
            )
        env_name = resolve_env(name).name
        if env_name not in names:
            raise HarnessError(f"--data {entry!r} is for {env_name}, which is not in --envs ({', '.join(names)})")
        if env_name in out:
            raise HarnessError(f"--data names {env_name} twice; give each env one dataset")
        out[env_name] = spec
    return out


def resolve_device(name: str) -> str:
    """``auto`` → ``cuda`` when torch sees a GPU, else ``cpu``; other names unchanged."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def validate(config: SweepConfig) -> list[EnvSpec]:
    """Check every argument that can be checked without loading anything."""
    if not config.envs:
        raise HarnessError("--envs is empty; pass one or more of hopper, walker2d, halfcheetah")
    if isinstance(config.env_version, str):
        config.env_version = [config.env_version]
    if not config.env_version:
        raise HarnessError("--env-version is empty; pass one or more of: " + ", ".join(VERSIONS))
    for version in config.env_version:
        if version not in VERSIONS:
            raise HarnessError(f"unknown --env-version {version!r}; use one of: {', '.join(VERSIONS)}")
    if len(set(config.env_version)) != len(config.env_version):
        raise HarnessError("--env-version names a version twice; list each once")
    envs: list[EnvSpec] = []
    names: list[str] = []
    for name in config.envs:
        first = resolve_env(name, config.env_version[0])
        if first.name in names:
            raise HarnessError(f"--envs names {first.name} twice; list each env once")
        names.append(first.name)
        full_id = name.strip().lower() != first.name  # Hopper-v5 names its own version
        envs += [first] if full_id else [resolve_env(name, v) for v in config.env_version]
    parse_shifts(config.shift)  # one line on a bad --shift
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
    if config.simulator not in SIMULATORS:
        raise HarnessError(f"unknown --simulator {config.simulator!r}; use one of: {', '.join(SIMULATORS)}")
    if config.simulator == "batched":
        default_stepper()  # a bad $HARNESS_STEPPER fails here, before anything is written
    if config.precision not in PRECISIONS:
        raise HarnessError(f"unknown --precision {config.precision!r}; use one of: {', '.join(PRECISIONS)}")
    if config.precision == "bf16" and not config.allow_emulated_bf16 and resolve_device(config.device) == "cpu":
        if not numerics.cpu_has_bf16():
            raise HarnessError(
                "--precision bf16: this CPU has no bf16 arithmetic (no avx512_bf16 or amx_bf16 flag), so torch "
                "emulates it, far slower than fp32 (an AVX2-only EPYC finished no episode of a 96-episode sweep "
                "in 21 min that fp32 ran in 96 s); use --precision fp32, or pass --allow-emulated-bf16"
            )
    if config.numerics not in {m.value for m in Numerics}:
        raise HarnessError(
            f"unknown --numerics {config.numerics!r}; use one of: {', '.join(m.value for m in Numerics)}"
        )
    if config.device not in ("cpu", "cuda", "auto") and not config.device.startswith("cuda:"):
        raise HarnessError(f"unknown --device {config.device!r}; use auto, cpu or cuda")
    if not 0 <= config.video <= config.episodes:
        raise HarnessError(f"--video must be between 0 and --episodes ({config.episodes}), got {config.video}")
    if not 1 <= config.env_workers <= MAX_JOBS:
        raise HarnessError(f"--env-workers must be between 1 and {MAX_JOBS}, got {config.env_workers}")
    if config.device.startswith("cuda") and not torch.cuda.is_available():
        raise HarnessError("--device cuda was asked for but no CUDA GPU is visible to torch; use --device cpu")
    return envs


def _done(previous: pd.DataFrame, env_id: str, label: str) -> set[tuple[str, float, int]]:
    """``(shift, target, episode)`` triples of one (env id, checkpoint) already in ``previous``."""
    cell = previous[(previous["env_id"] == env_id) & (previous["checkpoint"] == label)]
    return {(str(s), float(t), int(k)) for s, t, k in zip(cell["shift"], cell["target"], cell["episode"], strict=True)}


def _run_parallel(
    config: SweepConfig,
    device: str,
    loaded: list[tuple[EnvSpec, Checkpoint, list[float]]],
    specs: dict[tuple[str, str], str],
    stats: dict[str, Statistics],
    previous: pd.DataFrame,
    log: EpisodeLog,
    bar: tqdm,
) -> None:
    """Run the sweep's missing episodes as (env, checkpoint, target) cells on ``config.backend``."""
    threads = threads_per_job(config.jobs)
    cells = []
    for (env, ckpt, targets), shift in ((x, s) for x in loaded for s in parse_shifts(config.shift)):
        done = _done(previous, env.env_id, ckpt.label)
        fingerprint = ckpt.fingerprint()
        for t in targets:
            todo = tuple(k for k in range(config.episodes) if (shift.label, t, k) not in done)
            if todo:
                cells.append(
                    Cell(
                        env_id=env.env_id,
                        checkpoint=specs[(env.env_id, ckpt.label)],
                        fingerprint=fingerprint,
                        statistics=stats.get(env.name),
                        shift=shift.label,
                        target=t,
                        episodes=todo,
                        seed=config.seed,
                        num_envs=config.num_envs,
                        precision=config.precision,
                        device=device,
                        threads=threads,
                        env_workers=config.env_workers,
                        simulator=config.simulator,
                        numerics=config.numerics,
                        allow_batch_dependence=config.allow_batch_dependence,
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
    """Replay and record the first ``config.video`` episodes of every cell (every shift and env
    version too: the replay runs under the episode's shift); fills ``video``."""
    from harness.running.recording import record, video_name

    episodes = episodes.copy()
    episodes["video"] = ["" if pd.isna(v) else str(v) for v in episodes["video"]]
    todo = []
    for env, ckpt, targets in loaded:
        for shift in parse_shifts(config.shift):
            for t in targets:
                for k in range(config.video):
                    todo.append((env, ckpt, shift, t, k))
    with tqdm(total=len(todo), unit="video", desc="videos", file=sys.stderr, disable=not bar_enabled) as bar:
        for env, ckpt, shift, t, k in todo:
            seed = config.seed + k
            name = video_name(env.name, ckpt.label, t, seed, ckpt.fingerprint(), config.precision, shift.label)
            rel = f"{VIDEO_DIR}/{name}"
            row = (
                (episodes["env_id"] == env.env_id)
                & (episodes["checkpoint"] == ckpt.label)
                & (episodes["shift"] == shift.label)
                & (episodes["target"] == t)
                & (episodes["episode"] == k)
            )
            if not (out / rel).is_file():
                spec = EpisodeSpec(t, seed, k)
                result = record(ckpt, env.env_id, spec, out / rel, config.precision, device, shift=shift)
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
            {"env": env.name, "env_id": env.env_id, "checkpoint": c.label, "fingerprint": c.fingerprint()}
            # statistics from --data are part of what the sweep ran (absent otherwise: older folders resume)
            | ({"statistics": c.statistics} if c.statistics.startswith("data:") else {})
            | {"targets": t}
            for env, c, t in loaded
        ],
        "episodes": config.episodes,
        "seed": config.seed,
        "precision": config.precision,
        "numerics": config.numerics,
    } | ({"shifts": [s.label for s in parse_shifts(config.shift)]} if config.shift else {})


def _field_names(message: str) -> str:
    """A message written for the command line, for a Python caller: ``--num-envs`` → ``num_envs``."""
    names = {
        f.metadata.get("cli", {}).get("flag", "--" + f.name.replace("_", "-")): f.name for f in fields(SweepConfig)
    }  # noqa: E501
    return re.sub(r"--[a-z][a-z0-9-]*", lambda m: names.get(m.group(0), m.group(0)), message)


def run_sweep(config: SweepConfig, command: str | None = None, flags: bool = False) -> pd.DataFrame:
    """Run a whole sweep and write its folder; returns the episode rows (see :func:`_run_sweep`).

    ``flags``: errors name command-line flags (``--num-envs``), as ``harness sweep`` wants; by
    default they name :class:`SweepConfig` fields (``num_envs``), for Python callers.
    """
    try:
        return _run_sweep(config, command)
    except HarnessError as exc:
        if flags:
            raise
        raise HarnessError(_field_names(str(exc))) from None


def _run_sweep(config: SweepConfig, command: str | None = None) -> pd.DataFrame:
    """Run a whole sweep and write its folder; returns the episode rows.

    Every argument and every checkpoint is checked before anything is written. Episodes are
    appended to ``episodes.csv`` as they finish; rerunning the same sweep into the same folder
    runs only the missing episodes (see :mod:`harness.io.results`); another sweep's folder is
    refused unless ``config.overwrite``.

    Raises:
        HarnessError: bad input, with the fix in the message.
        KeyboardInterrupt: after the finished episodes are safely on disk.

    ``command`` is recorded in metadata.json (the command line, when run from it).
    """
    started_at = datetime.now(timezone.utc)
    envs = validate(config)
    numerics_state = numerics.apply(config.numerics)  # before any kernel runs: loading included
    device = resolve_device(config.device)
    if config.precision == "bf16":
        hardware = numerics.cpu_has_bf16() if device == "cpu" else None
        note = "bf16 (oneDNN) is outside the guarantee" + (
            "; emulated: this CPU has no bf16 arithmetic (--allow-emulated-bf16)" if hardware is False else ""
        )
        numerics_state = numerics_state | {"portable": False, "note": note, "bf16_hardware": hardware}
    by_env = parse_checkpoints(config.checkpoints, envs)
    data_specs = parse_data(config.data, envs)
    out = Path(config.out) if config.out else Path("results") / started_at.strftime("%Y-%m-%dT%H-%M-%S")
    check_out(out)

    loaded: list[tuple[EnvSpec, Checkpoint, list[float]]] = []
    specs: dict[tuple[str, str], str] = {}
    stats = {name: statistics_from(spec) for name, spec in data_specs.items()}
    for env in envs:
        for spec in by_env[env.name]:
            ckpt = load_checkpoint(spec, device=device, statistics=stats.get(env.name))
            ckpt.check_env(env)
            targets = config.targets if config.targets is not None else default_targets(env, ckpt, config.num_targets)
            loaded.append((env, ckpt, [float(t) for t in targets]))
            specs[(env.env_id, ckpt.label)] = spec
    labels = [(env.env_id, c.label) for env, c, _ in loaded]
    if len(set(labels)) != len(labels):
        dup = next(x for x in labels if labels.count(x) > 1)
        name = resolve_env(dup[0]).name
        raise HarnessError(f"--checkpoint names {name}={dup[1]} twice; list each checkpoint once")
    shifts = parse_shifts(config.shift)
    shift_labels = [s.label for s in shifts]
    if config.video:
        from harness.running.recording import check_renderer, require_encoder

        require_encoder()
        check_renderer(loaded[0][0].env_id)
    identity = _identity(config, loaded)
    resuming = resume_or_refuse(out, identity, config.overwrite)
    checks = {
        f"{env.name}:{c.label}": batch_invariance_check(DTPolicy(c, device=device, precision=config.precision))
        for env, c, _ in loaded
    }
    invariance = {k: bool(v) for k, v in checks.items()}
    warning = None
    if not all(invariance.values()):
        bad = "; ".join(
            f"{k}: {v.differing} of {v.checked} probe outputs differ (block positions {list(v.positions)})"
            for k, v in checks.items()
            if not v
        )
        risky = "a resumed sweep" if resuming else ("a sweep on several workers" if config.jobs > 1 else None)
        if risky and not config.allow_batch_dependence:
            raise HarnessError(
                f"this machine fails the batch-invariance self-check ({bad}), so {risky} would give other rows "
                "than one uninterrupted run; use --numerics pinned, or pass --allow-batch-dependence to run anyway"
            )
        warning = (
            f"warning: batch_invariant: false: an episode's actions depend on its batch here ({bad}); rows may change "
            "with --num-envs, --jobs or a resume (use --numerics pinned; see metadata.json, batch_invariance)"
        )
    cells = {(env.name, env.env_id, c.label): t for env, c, t in loaded}
    previous = (
        read_episodes(out / EPISODES, EPISODE_COLUMNS, cells, config.episodes, shift_labels)
        if resuming
        else pd.DataFrame(columns=EPISODE_COLUMNS)
    )
    print(numerics.describe(numerics_state), file=sys.stderr)  # after the input checks: errors stay one line
    if warning:
        print(warning, file=sys.stderr)
    prepare_out(out)
    if not resuming:
        write_atomic(out / IDENTITY, json.dumps(identity, indent=2) + "\n")

    total = sum(len(t) * config.episodes for _, _, t in loaded) * len(shifts)
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
                _run_parallel(config, device, loaded, specs, stats, previous, log, bar)
            else:
                for env, ckpt, targets in loaded:
                    done = _done(previous, env.env_id, ckpt.label)
                    bar.set_description(f"{env.env_id if len(config.env_version) > 1 else env.name} {ckpt.label}")
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
                        simulator=config.simulator,
                        shifts=shifts,
                    )
    finally:
        log.close()
    elapsed = time.perf_counter() - t0

    all_rows = read_episodes(out / EPISODES, EPISODE_COLUMNS, cells, config.episodes, shift_labels)
    if len(all_rows) != total:  # cannot happen unless the file was edited during the run
        raise HarnessError(
            f"{out / EPISODES} holds {len(all_rows)} of {total} episodes after the sweep; rerun to resume"
        )
    episodes = canonical_order(all_rows, labels, shift_labels)
    if config.video:
        episodes = _record_videos(config, device, loaded, episodes, out, bar_enabled=config.progress)
    write_atomic(out / EPISODES, episodes.to_csv(index=False, lineterminator="\n"))
    data = {(env.name, c.label): c.dataset for env, c, _ in loaded if c.dataset is not None}
    summary = summarize(episodes, datasets=data)
    write_atomic(out / SUMMARY, summary.to_csv(index=False))
    write_atomic(out / CALIBRATION, calibration(episodes, summary).to_csv(index=False))
    robust = robustness(episodes)
    if len(robust):
        write_atomic(out / ROBUSTNESS, robust.to_csv(index=False))
    run_steps = int(episodes["length"].sum() - (previous["length"].sum() if len(previous) else 0))
    meta = {
        "command": command,
        "arguments": asdict(config) | {"out": str(out), "device_used": device},  # the resolved SweepConfig
        "checkpoints": [
            c.describe() | {"env": env.name, "targets": t, "fingerprint": c.fingerprint()} for env, c, t in loaded
        ],
        "versions": versions(),
        "git": git_state(),
        "machine": machine(),
        "numerics": numerics_state,
        "simulator": describe_stepper() if config.simulator == "batched" else "gymnasium envs",
        "batch_invariant": all(invariance.values()),
        "batch_invariance": invariance,
        "batch_invariance_check": {k: asdict(v) for k, v in checks.items()},
        "started_at": started_at.isoformat(),
        "ended_at": datetime.now(timezone.utc).isoformat(),
        "episodes": len(episodes),
        "failed_episodes": int((episodes["status"] != Status.OK.value).sum()),
        "resumed_episodes": len(previous),
        "env_steps": int(episodes["length"].sum()),
        "elapsed_s": elapsed,
        "env_steps_per_s": run_steps / elapsed if elapsed > 0 else None,
    }
    write_atomic(out / METADATA, json.dumps(meta, indent=2, default=str) + "\n")
    from harness.analysis.figures import save_figures  # matplotlib only when figures are drawn
    from harness.analysis.report import write_report

    save_figures(out)
    write_report(out)
    return episodes
