"""Slot-wise vector envs: only the slots that run an episode are stepped or reset.

:class:`SlotVectorEnv` is the rollout's vector env in this process: N guarded Gymnasium envs
(:func:`harness.world.envs.make_env` + :class:`harness.world.envs.GuardedEnv`) whose ``step`` and ``reset``
take a mask. Gymnasium's ``SyncVectorEnv`` steps every sub-env (with autoreset DISABLED it even
asserts that every one was reset), so a slot whose episode ended with nothing pending had to be
reset and stepped with zero actions until the batch finished: +44% simulated steps on a
48-episode sweep. Here an idle slot costs nothing.

:class:`ShardedVectorEnv` (``--env-workers N``) puts contiguous shards of slots in worker
processes, each a :class:`SlotVectorEnv`, and passes the masks on.

With the model on a GPU the simulator becomes the bottleneck: one process steps 17-DoF MuJoCo
models at some tens of thousands of steps per second at best. :class:`ShardedVectorEnv` splits
the slots into ``N`` contiguous shards, each the slots of :func:`make_slots` (the batched MuJoCo
stepper or a :class:`SlotVectorEnv`) in its own process, and steps the shards concurrently.
Gymnasium's ``AsyncVectorEnv`` would start one process per slot, which does not scale to
thousands of slots; this is the same protocol with one process per shard.

All three (and :class:`harness.world.mjbatch.MujocoBatch`) offer the part of the ``VectorEnv``
interface the rollout uses, :class:`Slots`: ``reset(seed=[...], options={"reset_mask": mask})``,
``step(actions, mask)``, ``num_envs``, the single spaces and ``close()``. Each slot still gets
its own episode seed, so episodes are the same as with one process (tested).
"""

from __future__ import annotations

import multiprocessing as mp
from typing import Any, Protocol, runtime_checkable

import numpy as np

from harness.world.envs import INFO_KEYS, GuardedEnv, make_env, slot_info
from harness.world.mjbatch import MujocoBatch, supports
from harness.world.shift import Shift


@runtime_checkable
class Slots(Protocol):
    """What the rollout needs of its slots: :class:`SlotVectorEnv`, :class:`ShardedVectorEnv` and
    :class:`harness.world.mjbatch.MujocoBatch` all are one.

    ``reset`` returns ``(obs (num_envs, obs_dim), info)`` with the rows of the slots in
    ``options["reset_mask"]`` (all when absent) fresh; ``step(actions (num_envs, act_dim), mask)``
    returns ``(obs, reward, terminated, truncated, info)``, each ``(num_envs, ...)``, and steps only
    the slots in ``mask`` (all when None).
    """

    num_envs: int
    single_observation_space: Any
    single_action_space: Any

    def reset(
        self, *, seed: list[int | None] | None = None, options: dict | None = None
    ) -> tuple[np.ndarray, dict]: ...

    def step(self, actions: np.ndarray, mask: np.ndarray | None = None) -> tuple[Any, ...]: ...

    def close(self) -> None: ...


def _merged(values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-slot ``(n,)`` string arrays as a vector env's merged info (``key`` and ``_key`` mask)."""
    out: dict[str, np.ndarray] = {}
    for key, v in values.items():
        has = v != ""
        if has.any():
            out[key], out[f"_{key}"] = v, has
    return out


class SlotVectorEnv:
    """``num_envs`` guarded envs stepped and reset by mask, in this process.

    The interface the rollout uses: ``reset(seed=[...], options={"reset_mask": mask})``,
    ``step(actions, mask)``, ``single_observation_space``, ``single_action_space``, ``render()``
    and ``close()``; outputs are ``(num_envs, ...)`` arrays, rows of masked-out slots zero (and
    their info empty). Info is merged as Gymnasium merges it (``key`` plus ``_key`` mask).

    Args:
        env_id: Gymnasium id.
        num_envs: slots.
        max_episode_steps: time-limit override (benchmarks).
        render_kwargs: ``gym.make`` keywords for rendering (video), or None.
    """

    def __init__(
        self,
        env_id: str,
        num_envs: int,
        max_episode_steps: int | None = None,
        render_kwargs: dict | None = None,
        dynamics: Shift | None = None,
    ) -> None:
        self.num_envs = num_envs
        self.envs = [
            GuardedEnv(make_env(env_id, max_episode_steps, dynamics=dynamics, **(render_kwargs or {})), dynamics)
            for _ in range(num_envs)
        ]
        self.single_observation_space = self.envs[0].observation_space
        self.single_action_space = self.envs[0].action_space
        self.env_steps = 0
        """Env steps simulated so far (all slots): what idle slots no longer add to."""
        self.env_resets = 0

    def _obs(self) -> np.ndarray:
        space = self.single_observation_space
        return np.zeros((self.num_envs, *space.shape), dtype=space.dtype)

    def reset(self, *, seed: list[int | None] | None = None, options: dict | None = None):
        """Reset the slots in ``options["reset_mask"]`` (all when absent), slot i with ``seed[i]``."""
        mask = np.ones(self.num_envs, dtype=bool) if not options else np.asarray(options["reset_mask"], dtype=bool)
        seeds = list(seed) if seed is not None else [None] * self.num_envs
        obs = self._obs()
        info = {key: np.full(self.num_envs, "", dtype=object) for key in INFO_KEYS}
        self.env_resets += int(mask.sum())
        for i in np.flatnonzero(mask):
            obs[i], slot = self.envs[i].reset(seed=seeds[i])
            for key in INFO_KEYS:
                info[key][i] = slot.get(key, "")
        return obs, _merged(info)

    def step(self, actions: np.ndarray, mask: np.ndarray | None = None):
        """Step the slots in ``mask`` (all when None) with their rows of ``actions`` ``(num_envs, act_dim)``."""
        mask = np.ones(self.num_envs, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        obs = self._obs()
        reward = np.zeros(self.num_envs)
        term = np.zeros(self.num_envs, dtype=bool)
        trunc = np.zeros(self.num_envs, dtype=bool)
        info = {key: np.full(self.num_envs, "", dtype=object) for key in INFO_KEYS}
        for i in np.flatnonzero(mask):
            obs[i], reward[i], term[i], trunc[i], slot = self.envs[i].step(actions[i])
            for key in INFO_KEYS:
                info[key][i] = slot.get(key, "")
        self.env_steps += int(mask.sum())
        return obs, reward, term, trunc, _merged(info)

    def render(self) -> list[np.ndarray]:
        return [e.render() for e in self.envs]

    def close(self) -> None:
        for e in self.envs:
            e.close()


SIMULATORS = ("batched", "gymnasium")
"""``--simulator``: the batched exact MuJoCo stepper where it supports the id, or Gymnasium's envs."""


def make_slots(
    env_id: str,
    num_envs: int,
    max_episode_steps: int | None = None,
    simulator: str = "batched",
    render_kwargs: dict | None = None,
    threads: int = 1,
    dynamics: Shift | None = None,
) -> Slots:
    """The slots of one process: :class:`harness.world.mjbatch.MujocoBatch` for the locomotion tasks
    (bit-equal to Gymnasium's envs), else (another id, rendering, or ``simulator="gymnasium"``)
    :class:`SlotVectorEnv`. ``dynamics``: the shift of their simulator (:mod:`harness.world.shift`)."""
    if simulator not in SIMULATORS:
        raise ValueError(f"simulator must be one of {SIMULATORS}, got {simulator!r}")
    if simulator == "batched" and render_kwargs is None and supports(env_id):
        return MujocoBatch(env_id, num_envs, max_episode_steps, threads=threads, dynamics=dynamics)
    return SlotVectorEnv(env_id, num_envs, max_episode_steps, render_kwargs, dynamics)


def _worker(conn, env_id: str, n: int, max_episode_steps: int | None, simulator: str, dynamics: Shift | None) -> None:
    envs = make_slots(env_id, n, max_episode_steps, simulator, dynamics=dynamics)
    try:
        while True:
            cmd, payload = conn.recv()
            if cmd == "step":
                obs, reward, term, trunc, info = envs.step(*payload)
                conn.send(("ok", (obs, reward, term, trunc, slot_info(info, n))))
            elif cmd == "reset":
                seeds, mask = payload
                obs, info = envs.reset(seed=seeds, options={"reset_mask": mask})
                conn.send(("ok", (obs, slot_info(info, n))))
            elif cmd == "close":
                conn.send(("ok", None))
                return
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        envs.close()


class ShardedVectorEnv:
    """``num_envs`` slots in ``workers`` processes (contiguous shards, sizes differ by at most 1).

    Args:
        env_id: Gymnasium id.
        num_envs: slots in all.
        workers: processes (at most ``num_envs``).
        max_episode_steps: time-limit override, as for :func:`harness.world.envs.make_vector_env`.
    """

    def __init__(
        self,
        env_id: str,
        num_envs: int,
        workers: int,
        max_episode_steps: int | None = None,
        simulator: str = "batched",
        dynamics: Shift | None = None,
    ) -> None:
        workers = max(1, min(workers, num_envs))
        self.num_envs = num_envs
        sizes = [num_envs // workers + (1 if i < num_envs % workers else 0) for i in range(workers)]
        self.bounds = np.cumsum([0, *sizes])
        probe = make_env(env_id, max_episode_steps)
        self.single_observation_space = probe.observation_space
        self.single_action_space = probe.action_space
        probe.close()
        self.env_steps = 0
        ctx = mp.get_context("spawn")
        self._conns, self._procs = [], []
        for size in sizes:
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=_worker, args=(child, env_id, size, max_episode_steps, simulator, dynamics), daemon=True
            )
            proc.start()
            child.close()
            self._conns.append(parent)
            self._procs.append(proc)
        self._closed = False

    @staticmethod
    def _receive(conn) -> Any:
        status, payload = conn.recv()
        if status != "ok":
            raise RuntimeError(f"env worker failed: {payload}")
        return payload

    def _gather(self) -> list[Any]:
        return [self._receive(conn) for conn in self._conns]

    def _shards(self):
        return zip(self._conns, self.bounds[:-1], self.bounds[1:], strict=True)

    def reset(self, *, seed: list[int | None] | None = None, options: dict | None = None):
        """Reset the slots in ``options["reset_mask"]`` (all when absent) with per-slot ``seed``."""
        mask = (
            np.ones(self.num_envs, dtype=bool) if not options or "reset_mask" not in options else options["reset_mask"]
        )
        seeds = list(seed) if seed is not None else [None] * self.num_envs
        mask = np.asarray(mask, dtype=bool)
        asked = []
        for conn, lo, hi in self._shards():
            if mask[lo:hi].any():
                conn.send(("reset", (seeds[lo:hi], mask[lo:hi])))
                asked.append(conn)
        obs = np.zeros((self.num_envs, *self.single_observation_space.shape), self.single_observation_space.dtype)
        infos = []
        for conn, lo, hi in self._shards():
            if conn in asked:
                shard_obs, info = self._receive(conn)
                obs[lo:hi] = shard_obs
            else:
                info = {key: np.full(hi - lo, "", dtype=object) for key in INFO_KEYS}
            infos.append(info)
        return obs, self._merge(infos)  # rows outside the mask are zeros: the caller keeps its own

    def step(self, actions: np.ndarray, mask: np.ndarray | None = None):
        """Step the slots in ``mask`` (all when None); a shard with none of them is not asked."""
        mask = np.ones(self.num_envs, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        space = self.single_observation_space
        obs = np.zeros((self.num_envs, *space.shape), dtype=space.dtype)
        reward = np.zeros(self.num_envs)
        term = np.zeros(self.num_envs, dtype=bool)
        trunc = np.zeros(self.num_envs, dtype=bool)
        infos = []
        asked = [(conn, lo, hi) for conn, lo, hi in self._shards() if mask[lo:hi].any()]
        for conn, lo, hi in asked:
            conn.send(("step", (actions[lo:hi], mask[lo:hi])))
        for conn, lo, hi in self._shards():
            if (conn, lo, hi) in asked:
                obs[lo:hi], reward[lo:hi], term[lo:hi], trunc[lo:hi], info = self._receive(conn)
            else:
                info = {key: np.full(hi - lo, "", dtype=object) for key in INFO_KEYS}
            infos.append(info)
        self.env_steps += int(mask.sum())
        return obs, reward, term, trunc, self._merge(infos)

    @staticmethod
    def _merge(infos: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        return _merged({key: np.concatenate([i[key] for i in infos]) for key in INFO_KEYS})

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for conn in self._conns:
            try:
                conn.send(("close", None))
                conn.recv()
            except (OSError, EOFError):
                pass
        for proc in self._procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
