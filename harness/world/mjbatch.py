"""A batched, exact simulator for the Gymnasium MuJoCo locomotion tasks (the default slots).

N ``MjData`` of one ``MjModel``: physics is MuJoCo's own C code (``mj_step`` with the env's frame
skip, then ``mj_rnePostConstraint``, as Gymnasium's ``MujocoEnv`` steps), optionally spread over
threads; observations, rewards, terminations and truncations are computed for all stepped slots
at once in numpy, from the formulas of Gymnasium's env classes for that task and version
(``hopper_v4.py`` ... ``half_cheetah_v5.py``), with the constants read from a Gymnasium env of
the same id. Resets draw their noise from the episode's seeded generator exactly as Gymnasium
does (``seeding.np_random(seed)``, then ``uniform`` for qpos and ``uniform`` or
``standard_normal`` for qvel). The result is bit-equal to Gymnasium's env for the same seeds and
actions (``tests/test_mjbatch.py``: whole episodes of every task, v4 and v5), without its
per-env Python (wrappers, checker, info dicts).

Like :class:`harness.world.vector.SlotVectorEnv` it steps and resets slots by mask, and it keeps
:class:`harness.world.envs.GuardedEnv`'s protections per slot: a non-finite or exploding observation,
a non-finite reward or a new MuJoCo warning ends that slot's episode as ``unstable_state``; an
exception while stepping a slot ends it as ``env_error`` (the slot's data is rebuilt at its next
reset).

>>> sorted(SUPPORTED)[:2]
['HalfCheetah-v4', 'HalfCheetah-v5']
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import mujoco
import numpy as np
from gymnasium.utils import seeding

from harness.core.schema import Status
from harness.world.envs import INFO_KEYS, MAX_ABS_OBSERVATION, _one_line, make_env
from harness.world.shift import Shift

SUPPORTED = {f"{task}-{v}" for task in ("Hopper", "Walker2d", "HalfCheetah") for v in ("v4", "v5")}
"""Env ids the batched simulator reproduces exactly; any other id uses Gymnasium's envs."""


def supports(env_id: str) -> bool:
    return env_id in SUPPORTED


class MujocoBatch:
    """``num_envs`` slots of one locomotion task, stepped and reset by mask.

    Args:
        env_id: one of :data:`SUPPORTED`.
        num_envs: slots.
        max_episode_steps: time-limit override (default: the registered limit).
        threads: threads stepping the physics (MuJoCo releases the GIL in ``mj_step``); 1 steps
            in this thread.
        dynamics: a :class:`harness.world.shift.Shift` of the simulator (mass, friction, gravity,
            reset noise), applied exactly as to Gymnasium's envs.
    """

    def __init__(
        self,
        env_id: str,
        num_envs: int,
        max_episode_steps: int | None = None,
        threads: int = 1,
        dynamics: Shift | None = None,
    ) -> None:
        if not supports(env_id):
            raise ValueError(f"no batched simulator for {env_id}; use one of {sorted(SUPPORTED)}")
        # the model and reset noise of a Gymnasium env, shifted as Gymnasium's slots are
        probe = make_env(env_id, max_episode_steps, dynamics=dynamics)
        env = probe.unwrapped
        self.env_id = env_id
        self.num_envs = num_envs
        self.single_observation_space = probe.observation_space
        self.single_action_space = probe.action_space
        self.max_steps = int(probe.spec.max_episode_steps) if probe.spec.max_episode_steps else None
        self.task = env_id.split("-")[0]
        self.version = env_id.split("-")[1]
        self.model = env.model
        self.frame_skip = int(env.frame_skip)
        self.dt = env.dt
        self.init_qpos = env.init_qpos.copy()
        self.init_qvel = env.init_qvel.copy()
        self.forward_weight = env._forward_reward_weight
        self.ctrl_weight = env._ctrl_cost_weight
        self.noise = env._reset_noise_scale
        if not env._exclude_current_positions_from_observation:
            raise ValueError("the batched simulator reproduces the default observation (x position excluded)")
        if self.task != "HalfCheetah":
            self.healthy_reward = env._healthy_reward
            self.terminate = env._terminate_when_unhealthy
            self.z_range = env._healthy_z_range
            self.angle_range = env._healthy_angle_range
            self.state_range = env._healthy_state_range if self.task == "Hopper" else None
        probe.close()  # the model stays alive: this object holds it
        self.data = [mujoco.MjData(self.model) for _ in range(num_envs)]
        self.rng: list[np.random.Generator | None] = [None] * num_envs
        self.elapsed = np.zeros(num_envs, dtype=np.int64)
        self.warnings = np.zeros(num_envs, dtype=np.int64)
        self.broken = np.zeros(num_envs, dtype=bool)
        self.threads = max(1, threads)
        self._pool = ThreadPoolExecutor(self.threads) if self.threads > 1 else None
        self.env_steps = 0
        self.env_resets = 0

    # ----------------------------------------------------------------------------------- helpers
    def _warnings(self, i: int) -> int:
        return int(np.sum(self.data[i].warning.number))

    def _state(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``qpos`` ``(len(rows), nq)`` and ``qvel`` ``(len(rows), nv)`` of slots ``rows`` (copies)."""
        qpos = np.empty((len(rows), self.model.nq))
        qvel = np.empty((len(rows), self.model.nv))
        for j, i in enumerate(rows):
            d = self.data[i]
            qpos[j], qvel[j] = d.qpos, d.qvel
        return qpos, qvel

    def _observations(self, qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
        """``(rows, obs_dim)`` float64: ``qpos[1:]`` and ``qvel`` (clipped to ±10 but HalfCheetah's)."""
        if self.task != "HalfCheetah":
            qvel = np.clip(qvel, -10, 10)
        return np.concatenate((qpos[:, 1:], qvel), axis=1)

    def _healthy(self, qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
        z, angle = qpos[:, 1], qpos[:, 2]
        ok = (self.z_range[0] < z) & (z < self.z_range[1])
        ok &= (self.angle_range[0] < angle) & (angle < self.angle_range[1])
        if self.state_range is not None:  # Hopper: every state entry but x and z inside the range
            state = np.concatenate((qpos, qvel), axis=1)[:, 2:]
            ok &= np.all((self.state_range[0] < state) & (state < self.state_range[1]), axis=1)
        return ok

    def _physics(
        self, rows: np.ndarray, actions: np.ndarray
    ) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Step slots ``rows`` with ``actions`` ``(len(rows), act_dim)``.

        Returns an error text per row ("" if none), ``x`` before the step ``(rows,)``, ``qpos``
        ``(rows, nq)`` and ``qvel`` ``(rows, nv)`` after it, and each slot's MuJoCo warning count
        ``(rows,)``: everything the step reads from a slot's ``MjData``, gathered in one pass per slot
        (in the thread that stepped it).
        """
        n = len(rows)
        x_before = np.empty(n)
        qpos = np.zeros((n, self.model.nq))
        qvel = np.zeros((n, self.model.nv))
        warn = np.zeros(n, dtype=np.int64)
        errors = [""] * n

        def run(part: range) -> None:
            for j in part:
                d = self.data[rows[j]]
                try:
                    x_before[j] = d.qpos[0]
                    d.ctrl[:] = actions[j]
                    mujoco.mj_step(self.model, d, nstep=self.frame_skip)
                    mujoco.mj_rnePostConstraint(self.model, d)
                    qpos[j], qvel[j] = d.qpos, d.qvel
                    warn[j] = int(np.sum(d.warning.number))
                except Exception as exc:  # noqa: BLE001 - one slot's failure stays in its episode
                    errors[j] = _one_line(exc)

        if self._pool is None or n < 2 * self.threads:
            run(range(n))
        else:
            bounds = np.linspace(0, n, self.threads + 1).astype(int)
            list(self._pool.map(run, [range(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]))
        return errors, x_before, qpos, qvel, warn

    def _info(self, status: np.ndarray, error: np.ndarray) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for key, values in zip(INFO_KEYS, (status, error), strict=True):
            has = values != ""
            if has.any():
                out[key], out[f"_{key}"] = values, has
        return out

    # ------------------------------------------------------------------------------ vector API
    def reset(self, *, seed: list[int | None] | None = None, options: dict | None = None):
        """Reset the slots in ``options["reset_mask"]`` (all when absent), slot i with ``seed[i]``."""
        mask = np.ones(self.num_envs, dtype=bool) if not options else np.asarray(options["reset_mask"], dtype=bool)
        seeds = list(seed) if seed is not None else [None] * self.num_envs
        rows = np.flatnonzero(mask)
        self.env_resets += len(rows)
        for i in rows:
            if seeds[i] is not None or self.rng[i] is None:
                self.rng[i], _ = seeding.np_random(seeds[i])
            if self.broken[i]:
                self.data[i] = mujoco.MjData(self.model)
                self.broken[i] = False
            d, rng = self.data[i], self.rng[i]
            mujoco.mj_resetData(self.model, d)
            qpos = self.init_qpos + rng.uniform(low=-self.noise, high=self.noise, size=self.model.nq)
            if self.task == "HalfCheetah":
                qvel = self.init_qvel + self.noise * rng.standard_normal(self.model.nv)
            else:
                qvel = self.init_qvel + rng.uniform(low=-self.noise, high=self.noise, size=self.model.nv)
            d.qpos[:] = np.copy(qpos)
            d.qvel[:] = np.copy(qvel)
            if self.model.na == 0:
                d.act[:] = None
            mujoco.mj_forward(self.model, d)
            self.elapsed[i] = 0
            self.warnings[i] = self._warnings(i)
        obs = np.zeros((self.num_envs, *self.single_observation_space.shape))
        if len(rows):
            obs[rows] = self._observations(*self._state(rows))
        return obs, {}

    def step(self, actions: np.ndarray, mask: np.ndarray | None = None):
        """Step the slots in ``mask`` (all when None); ``actions`` ``(num_envs, act_dim)`` float32.

        Returns ``(obs, reward, terminated, truncated, info)`` over all slots (rows of slots not
        stepped are zero); info as Gymnasium merges it, with :data:`harness.world.envs.INFO_KEYS`.
        """
        mask = np.ones(self.num_envs, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        n = self.num_envs
        obs = np.zeros((n, *self.single_observation_space.shape))
        reward = np.zeros(n)
        term = np.zeros(n, dtype=bool)
        trunc = np.zeros(n, dtype=bool)
        status = np.full(n, "", dtype=object)
        error = np.full(n, "", dtype=object)
        rows = np.flatnonzero(mask)
        if not len(rows):
            return obs, reward, term, trunc, {}
        act = actions[rows]
        errors, x_before, qpos, qvel, now = self._physics(rows, act)
        x_velocity = (qpos[:, 0] - x_before) / self.dt
        ctrl_cost = self.ctrl_weight * np.sum(np.square(act), axis=1)
        forward = self.forward_weight * x_velocity
        if self.task == "HalfCheetah":
            r = forward - ctrl_cost
            done = np.zeros(len(rows), dtype=bool)
        else:
            healthy = self._healthy(qpos, qvel)
            if self.version == "v4":
                bonus = (healthy | self.terminate).astype(np.float64) * self.healthy_reward
            else:
                bonus = healthy * self.healthy_reward
            r = (forward + bonus) - ctrl_cost
            done = ~healthy & self.terminate
        o = self._observations(qpos, qvel)
        self.elapsed[rows] += 1
        tr = self.elapsed[rows] >= self.max_steps if self.max_steps is not None else np.zeros(len(rows), dtype=bool)
        # GuardedEnv's protections, per slot: the checks for all rows at once, then the rare ones
        with np.errstate(invalid="ignore", over="ignore"):
            finite = np.all(np.isfinite(o), axis=1)
            bad_reward = ~np.isfinite(r)
            unstable = ~finite | bad_reward | np.any(np.abs(o) > MAX_ABS_OBSERVATION, axis=1)
        unstable |= now > self.warnings[rows]
        failed = np.array([bool(e) for e in errors])
        for j in np.flatnonzero(unstable | failed):
            i = rows[j]
            if errors[j]:
                self.broken[i] = True
                o[j], r[j], done[j], tr[j] = 0.0, 0.0, True, False
                status[i], error[i] = Status.ENV_ERROR.value, errors[j]
                continue
            self.warnings[i] = now[j]
            status[i] = Status.UNSTABLE_STATE.value
            done[j] = True
            if not finite[j]:
                o[j] = 0.0
            if bad_reward[j]:
                r[j] = 0.0
        obs[rows], reward[rows], term[rows], trunc[rows] = o, r, done, tr
        self.env_steps += len(rows)
        return obs, reward, term, trunc, self._info(status, error)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
