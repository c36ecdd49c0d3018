"""One checkpoint's episodes at a list of targets, as episode rows: what workers and scripts call.

:func:`evaluate` is the library function behind a sweep: it loads (or takes) a checkpoint, builds
the batched policy and runs the episodes through :func:`harness.engine.rollout.run_episodes`, returning
one row per episode with the columns of :data:`harness.core.schema.EPISODE_COLUMNS`. The command line
(:mod:`harness.commands.sweep`), the parallel workers (:mod:`harness.running.parallel`) and the regression gate
call it; it imports none of them.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from harness.core import numerics
from harness.core.schema import EPISODE_COLUMNS
from harness.engine.policy import DTPolicy
from harness.engine.rollout import EpisodeResult, EpisodeSpec, run_episodes
from harness.io.checkpoints import Checkpoint, load_checkpoint
from harness.world.envs import EnvSpec, resolve_env
from harness.world.mjbatch import supports
from harness.world.shift import Shift

DEFAULT_MAX_NUM_ENVS = 64
"""Slots per checkpoint when ``num_envs`` is not given: all its episodes, at most this many."""


def episode_rows(
    env: EnvSpec, ckpt: Checkpoint, results: Sequence[EpisodeResult], shift: Shift | None = None
) -> list[dict[str, Any]]:
    """One ``episodes.csv`` row per result (columns of :data:`harness.core.schema.EPISODE_COLUMNS`)."""
    return [
        {
            "env": env.name,
            "env_id": env.env_id,
            "checkpoint": ckpt.label,
            "shift": (r.spec.shift or shift or Shift()).label,
            "target": r.spec.target,
            "episode": r.spec.index,
            "seed": r.spec.seed,
            "return": r.ret,
            "length": r.length,
            "terminated": r.terminated,
            "truncated": r.truncated,
            "status": str(r.status),
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
    simulator: str = "batched",
    shifts: Sequence[Shift] = (),
) -> pd.DataFrame:
    """Run ``episodes`` episodes of one checkpoint at every target (under every shift) and return the rows.

    Args:
        checkpoint: a loaded checkpoint, or a spec for :func:`harness.io.checkpoints.load_checkpoint`.
        env: an EnvSpec or a name for :func:`harness.world.envs.resolve_env`.
        targets: raw target returns.
        episodes: episodes per target; episode k uses reset seed ``seed + k``.
        num_envs: vector-env slots (None: all episodes at once, at most 64).
        seed: base reset seed.
        device: torch device.
        progress: a tqdm bar to advance by episodes, or None.
        precision: ``fp32`` or ``bf16`` (see :class:`harness.engine.policy.DTPolicy`).
        done: ``(target, episode index)`` pairs already recorded (a resumed sweep): not run; with
            ``shifts``, ``(shift label, target, episode index)`` triples.
        on_rows: called with the rows of the episodes that finish at each step (crash-safe logs).
        env_workers: processes that step the slots (see :mod:`harness.world.vector`).
        simulator: ``batched`` or ``gymnasium`` (see :func:`harness.engine.rollout.run_episodes`).
        shifts: :class:`harness.world.shift.Shift` cells (default: none); each runs every target's
            episodes with the same reset seeds. On the batched simulator every cell shares one batch
            of slots (each slot simulates its episode's dynamics: ``MujocoBatch.set_dynamics``); on
            Gymnasium's envs or env workers each cell runs on its own slots. Same rows either way.

    Returns:
        One row per episode run with the columns of :data:`EPISODE_COLUMNS`, in spec order.

    Example (needs a checkpoint)::

        df = evaluate("edbeeching/decision-transformer-gym-hopper-medium", "hopper", [1800, 3600])
    """
    env = resolve_env(env) if isinstance(env, str) else env
    ckpt = load_checkpoint(checkpoint, device=device) if isinstance(checkpoint, str) else checkpoint
    state = numerics_in_force()
    ckpt.check_env(env)
    done = done or set()
    cells = list(shifts) or [Shift()]
    todo = {
        s.label: [
            EpisodeSpec(float(t), seed + k, k)
            for t in targets
            for k in range(episodes)
            if ((s.label, float(t), k) if shifts else (float(t), k)) not in done
        ]
        for s in cells
    }
    if not any(todo.values()):
        return pd.DataFrame(columns=EPISODE_COLUMNS)
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

    rows: list[dict[str, Any]] = []
    # every condition in one batch of slots where the simulator takes per-slot dynamics (a slot takes
    # the next pending episode whatever its condition); else one batch per condition
    together = len(cells) > 1 and simulator == "batched" and env_workers == 1 and supports(env.env_id)
    groups = (
        [(Shift(), [replace(e, shift=s) for s in cells for e in todo[s.label]])]
        if together
        else [(s, todo[s.label]) for s in cells]
    )
    for shift, specs in groups:
        if not specs:
            continue

        def on_finish(results, shift=shift) -> None:  # noqa: ANN001
            if on_rows is not None:
                on_rows(pd.DataFrame(episode_rows(env, ckpt, results, shift), columns=EPISODE_COLUMNS))

        results = run_episodes(
            policy,
            env.env_id,
            specs,
            num_envs or min(len(specs), DEFAULT_MAX_NUM_ENVS),
            progress=on_step,
            on_finish=on_finish,
            env_workers=env_workers,
            simulator=simulator,
            shift=shift,
        )
        rows += episode_rows(env, ckpt, results, shift)
    df = pd.DataFrame(rows, columns=EPISODE_COLUMNS)
    df.attrs["numerics"] = state
    return df


_SAID: list[str] = []


def numerics_in_force() -> dict:
    """:func:`harness.core.numerics.state`, with its one-line warning on stderr the first time a
    requested mode does not hold in this process (a Python caller who used torch before importing
    harness: too late to pin); results record the state (``DataFrame.attrs["numerics"]``)."""
    state = numerics.state()
    if not state["in_force"] and state["why_not"] not in _SAID:
        _SAID.append(state["why_not"])
        print(numerics.describe(state), file=sys.stderr)
    return state
