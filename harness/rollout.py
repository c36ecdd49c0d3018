"""Run a list of episodes on a vector env of N slots with one batched forward pass per step.

Each episode is a (target return, reset seed) pair. Slots start on the first N episodes; a slot
whose episode ends records it and takes the next pending episode (reset with ``reset_mask`` and
that episode's own seed), so every episode runs to its end, whatever its length, and results do
not depend on N. Autoreset is DISABLED: no step of a reset ever leaks into a return. When no
episode is pending, a finished slot idles (reset, zero actions, ignored) and the model runs on
the live slots only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from harness.context import ContextWindow
from harness.envs import make_vector_env
from harness.policy import DTPolicy


@dataclass(frozen=True)
class EpisodeSpec:
    """One episode to run.

    Attributes:
        target: target return, raw (the model sees ``target / return_scale``).
        seed: reset seed.
        index: the episode's index k within its cell (seed = base seed + k in a sweep).
    """

    target: float
    seed: int
    index: int = 0


@dataclass(frozen=True)
class EpisodeResult:
    """What one episode did.

    Attributes:
        spec: the episode that was run.
        ret: undiscounted return.
        length: env steps.
        terminated: ended by the env's termination condition.
        truncated: ended by the time limit.
        wall_time_s: seconds from its reset to its end (shared batch time).
        actions: ``(length, act_dim)`` actions taken, only when asked for.
    """

    spec: EpisodeSpec
    ret: float
    length: int
    terminated: bool
    truncated: bool
    wall_time_s: float
    actions: np.ndarray | None = field(default=None, repr=False, compare=False)


ProgressFn = Callable[[int, int], None]
"""Called after every step with (episodes finished in this step, env steps in this step)."""


def run_episodes(
    policy: DTPolicy,
    env_id: str,
    episodes: Sequence[EpisodeSpec],
    num_envs: int,
    progress: ProgressFn | None = None,
    record_actions: bool = False,
    max_episode_steps: int | None = None,
) -> list[EpisodeResult]:
    """Run ``episodes`` with ``policy`` on ``min(num_envs, len(episodes))`` slots.

    Args:
        policy: the batched policy.
        env_id: Gymnasium id of the env.
        episodes: what to run, in order of assignment to slots.
        num_envs: slots of the vector env.
        progress: optional per-step callback.
        record_actions: keep every episode's actions (for tests and debugging).
        max_episode_steps: override of the env's time limit (benchmarks).

    Returns:
        One result per episode, in the order of ``episodes``.
    """
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    if not episodes:
        return []
    n = min(num_envs, len(episodes))
    ckpt = policy.checkpoint
    device = policy.device
    envs = make_vector_env(env_id, n, max_episode_steps)
    try:
        return _run(policy, envs, episodes, n, device, ckpt.context_length, progress, record_actions)
    finally:
        envs.close()


def _run(
    policy: DTPolicy,
    envs,
    episodes: Sequence[EpisodeSpec],
    n: int,
    device: torch.device,
    context_length: int,
    progress: ProgressFn | None,
    record_actions: bool,
) -> list[EpisodeResult]:
    ckpt = policy.checkpoint
    scale = policy.scale
    window = ContextWindow(n, context_length, ckpt.state_dim, ckpt.act_dim, device=device)

    slot_episode = np.arange(n)  # index into `episodes` of each slot's episode; -1 when idle
    next_pending = n
    returns = np.zeros(n, dtype=np.float64)
    lengths = np.zeros(n, dtype=np.int64)
    started = np.full(n, time.perf_counter())
    rtg = torch.tensor([ep.target / scale for ep in episodes[:n]], dtype=torch.float32, device=device)
    steps = torch.zeros(n, dtype=torch.long, device=device)
    traces: list[list[np.ndarray]] = [[] for _ in range(n)]
    results: list[EpisodeResult | None] = [None] * len(episodes)

    obs, _ = envs.reset(seed=[ep.seed for ep in episodes[:n]])
    window.append(policy.normalize(obs), rtg, steps)
    live_rows: torch.Tensor | None = None  # None: every slot is live
    actions_np = np.zeros((n, ckpt.act_dim), dtype=np.float32)

    while True:
        acts = policy.act(window.view(), live_rows)
        window.set_last_action(acts, live_rows)
        if live_rows is None:
            actions_np = acts.cpu().numpy()
        else:
            actions_np[:] = 0.0
            actions_np[live_rows.cpu().numpy()] = acts.cpu().numpy()
        obs, reward, terminated, truncated, _ = envs.step(actions_np)

        live = slot_episode >= 0
        returns[live] += reward[live]
        lengths[live] += 1
        if record_actions:
            for i in np.flatnonzero(live):
                traces[i].append(actions_np[i].copy())
        rtg -= torch.as_tensor(reward / scale, dtype=torch.float32, device=device)
        steps = torch.clamp(steps + 1, max=policy.max_timestep)

        done = terminated | truncated
        finished = np.flatnonzero(done & live)
        now = time.perf_counter()
        for i in finished:
            k = int(slot_episode[i])
            results[k] = EpisodeResult(
                spec=episodes[k],
                ret=float(returns[i]),
                length=int(lengths[i]),
                terminated=bool(terminated[i]),
                truncated=bool(truncated[i]) and not bool(terminated[i]),
                wall_time_s=float(now - started[i]),
                actions=np.stack(traces[i]) if record_actions else None,
            )
        if progress is not None:
            progress(len(finished), int(live.sum()))

        if done.any():
            reset_slots = np.flatnonzero(done)
            seeds: list[int | None] = [None] * n
            for i in reset_slots:
                if next_pending < len(episodes):
                    slot_episode[i] = next_pending
                    seeds[i] = episodes[next_pending].seed
                    rtg[i] = episodes[next_pending].target / scale
                    next_pending += 1
                else:
                    slot_episode[i] = -1  # idle: reset only to keep the vector env steppable
                returns[i], lengths[i], started[i] = 0.0, 0, now
                traces[i] = []
            if not (slot_episode >= 0).any():
                break
            mask = np.zeros(n, dtype=bool)
            mask[reset_slots] = True
            new_obs, _ = envs.reset(seed=seeds, options={"reset_mask": mask})
            obs = np.where(mask[:, None], new_obs, obs)
            rows = torch.as_tensor(reset_slots, device=device)
            window.clear(rows)
            steps[rows] = 0
            live_now = slot_episode >= 0
            live_rows = None if live_now.all() else torch.as_tensor(np.flatnonzero(live_now), device=device)
        window.append(policy.normalize(obs), rtg, steps)

    return [r for r in results if r is not None]
