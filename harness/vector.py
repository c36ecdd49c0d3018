"""Slots stepped in several worker processes (``--env-workers N``).

With the model on a GPU the simulator becomes the bottleneck: one process steps 17-DoF MuJoCo
models at some tens of thousands of steps per second at best. :class:`ShardedVectorEnv` splits
the slots into ``N`` contiguous shards, each a Gymnasium ``SyncVectorEnv`` of guarded envs
(:func:`harness.envs.make_vector_env`) in its own process, and steps the shards concurrently.
Gymnasium's ``AsyncVectorEnv`` would start one process per slot, which does not scale to
thousands of slots; this is the same protocol with one process per shard.

It offers the part of the ``VectorEnv`` interface the rollout uses: ``reset(seed=[...],
options={"reset_mask": mask})``, ``step(actions)``, ``single_observation_space`` and
``close()``. Each slot still gets its own episode seed, so episodes are the same as with one
process (tested).
"""

from __future__ import annotations

import multiprocessing as mp
from typing import Any

import numpy as np

from harness.envs import INFO_KEYS, make_vector_env, slot_info


def _worker(conn, env_id: str, n: int, max_episode_steps: int | None) -> None:
    envs = make_vector_env(env_id, n, max_episode_steps)
    try:
        while True:
            cmd, payload = conn.recv()
            if cmd == "step":
                obs, reward, term, trunc, info = envs.step(payload)
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
        max_episode_steps: time-limit override, as for :func:`harness.envs.make_vector_env`.
    """

    def __init__(self, env_id: str, num_envs: int, workers: int, max_episode_steps: int | None = None) -> None:
        workers = max(1, min(workers, num_envs))
        self.num_envs = num_envs
        sizes = [num_envs // workers + (1 if i < num_envs % workers else 0) for i in range(workers)]
        self.bounds = np.cumsum([0, *sizes])
        probe = make_vector_env(env_id, 1, max_episode_steps)
        self.single_observation_space = probe.single_observation_space
        self.single_action_space = probe.single_action_space
        probe.close()
        ctx = mp.get_context("spawn")
        self._conns, self._procs = [], []
        for size in sizes:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(child, env_id, size, max_episode_steps), daemon=True)
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
            if mask[lo:hi].any():  # Gymnasium refuses an all-False reset mask
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

    def step(self, actions: np.ndarray):
        """Step every slot; returns (obs, reward, terminated, truncated, info) over all slots."""
        for conn, lo, hi in self._shards():
            conn.send(("step", actions[lo:hi]))
        parts = self._gather()
        obs, reward, term, trunc = (np.concatenate([p[i] for p in parts]) for i in range(4))
        return obs, reward, term, trunc, self._merge([p[4] for p in parts])

    @staticmethod
    def _merge(infos: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for key in INFO_KEYS:
            values = np.concatenate([i[key] for i in infos])
            has = values != ""
            if has.any():
                out[key], out[f"_{key}"] = values, has
        return out

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
