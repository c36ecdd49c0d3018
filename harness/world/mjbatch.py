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

import os
from concurrent.futures import ThreadPoolExecutor

import mujoco
import numpy as np
from gymnasium.utils import seeding

try:  # MuJoCo's own closed-loop batch (mujoco >= 4.0)
    import mujoco.batch as mjbatch
except ImportError:  # pragma: no cover - older mujoco: the loop below steps the slots
    mjbatch = None

from harness.core.errors import HarnessError
from harness.core.schema import Status
from harness.world.envs import INFO_KEYS, MAX_ABS_OBSERVATION, _one_line, make_env
from harness.world.shift import Shift

SUPPORTED = {f"{task}-{v}" for task in ("Hopper", "Walker2d", "HalfCheetah") for v in ("v4", "v5")}
"""Env ids the batched simulator reproduces exactly; any other id uses Gymnasium's envs."""


def supports(env_id: str) -> bool:
    return env_id in SUPPORTED


STEPPERS = ("mujoco.batch", "loop")
"""How the slots' physics is stepped: MuJoCo's own batch (``mujoco.batch.Batch``, the default where
this mujoco has it) or a loop of ``mj_step`` over one ``MjData`` per slot (older mujoco)."""


STEPPER_ENV = "HARNESS_STEPPER"
"""Names the stepper for a whole process (``loop`` or ``mujoco.batch``): benchmarks measure the two
side by side, and a user can step back to the loop without a code change."""


def default_stepper() -> str:
    """``$HARNESS_STEPPER`` where set, else ``mujoco.batch`` where this mujoco ships it, else ``loop``.

    Raises:
        HarnessError: ``$HARNESS_STEPPER`` names no stepper of :data:`STEPPERS`.
    """
    named = os.environ.get(STEPPER_ENV)
    if named:
        if named not in STEPPERS:
            raise HarnessError(
                f"{STEPPER_ENV}={named!r} names no stepper; set it to one of {', '.join(STEPPERS)} or unset it"
            )
        return named
    return "mujoco.batch" if mjbatch is not None else "loop"


def describe_stepper(stepper: str | None = None, threads: int = 1) -> str:
    """One line for metadata: ``mujoco.batch (mujoco 4.0.1, 2 threads)`` or ``mj_step loop (mujoco 3.3.0, ...)``."""
    stepper = stepper or default_stepper()
    what = "mujoco.batch" if stepper == "mujoco.batch" else "mj_step loop"
    why = "" if stepper == "mujoco.batch" or mjbatch is not None else "; this mujoco has no mujoco.batch"
    return f"{what} (mujoco {mujoco.__version__}, {threads} thread{'s' if threads != 1 else ''}{why})"


def _dynamics_fields(model: mujoco.MjModel, shift: Shift) -> dict[str, np.ndarray]:
    """The model fields ``shift`` changes, with their shifted values: the same float operations as
    :func:`harness.world.shift.apply_dynamics` on a Gymnasium env's model (a scale of 1 leaves a
    field's bits as they are)."""
    friction = model.geom_friction.copy()
    friction[:, 0] = model.geom_friction[:, 0] * shift.friction
    return {
        "body_mass": model.body_mass * shift.mass,
        "body_inertia": model.body_inertia * shift.mass,
        "geom_friction": friction,
        "opt.gravity": model.opt.gravity * shift.gravity,
    }


def _shifted_model(model: mujoco.MjModel, shift: Shift) -> mujoco.MjModel:
    """A copy of ``model`` with ``shift``'s dynamics and its derived constants (``mj_setConst``)."""
    import copy

    out = copy.deepcopy(model)
    for name, value in _dynamics_fields(model, shift).items():
        target = out.opt.gravity if name == "opt.gravity" else getattr(out, name)
        target[...] = value
    mujoco.mj_setConst(out, mujoco.MjData(out))
    return out


class _LoopPhysics:
    """One ``MjData`` per slot, stepped by ``mj_step`` from Python (a thread pool over slots)."""

    def __init__(self, model: mujoco.MjModel, num_envs: int, threads: int) -> None:
        self.model = model
        self.models = [model] * num_envs  # each slot's model (its shift's, see set_dynamics)
        self._shifted: dict[str, mujoco.MjModel] = {}
        self.data = [mujoco.MjData(model) for _ in range(num_envs)]
        self.threads = max(1, threads)
        self._pool = ThreadPoolExecutor(self.threads) if self.threads > 1 else None

    def set_dynamics(self, rows: np.ndarray, shift: Shift) -> None:
        """Slots ``rows`` run on a copy of the model with ``shift``'s dynamics (one copy per shift)."""
        if shift.dynamics.neutral:
            model = self.model
        else:
            if shift.label not in self._shifted:
                self._shifted[shift.label] = _shifted_model(self.model, shift)
            model = self._shifted[shift.label]
        for i in rows:
            self.models[i] = model

    def warnings(self, rows: np.ndarray) -> np.ndarray:
        return np.array([int(np.sum(self.data[i].warning.number)) for i in rows], dtype=np.int64)

    def state(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        qpos = np.empty((len(rows), self.model.nq))
        qvel = np.empty((len(rows), self.model.nv))
        for j, i in enumerate(rows):
            qpos[j], qvel[j] = self.data[i].qpos, self.data[i].qvel
        return qpos, qvel

    def reset(self, rows: np.ndarray, qpos: np.ndarray, qvel: np.ndarray, broken: np.ndarray) -> None:
        for j, i in enumerate(rows):
            model = self.models[i]
            if broken[i]:
                self.data[i] = mujoco.MjData(model)
            d = self.data[i]
            mujoco.mj_resetData(model, d)
            d.qpos[:] = qpos[j]
            d.qvel[:] = qvel[j]
            mujoco.mj_forward(model, d)

    def step(self, rows: np.ndarray, actions: np.ndarray, frame_skip: int):
        n = len(rows)
        x_before = np.empty(n)
        qpos = np.zeros((n, self.model.nq))
        qvel = np.zeros((n, self.model.nv))
        warn = np.zeros(n, dtype=np.int64)
        errors = [""] * n

        def run(part: range) -> None:
            for j in part:
                d, model = self.data[rows[j]], self.models[rows[j]]
                try:
                    x_before[j] = d.qpos[0]
                    d.ctrl[:] = actions[j]
                    mujoco.mj_step(model, d, nstep=frame_skip)
                    mujoco.mj_rnePostConstraint(model, d)
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

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


class _BatchPhysics:
    """MuJoCo's own batch: the slots are the simulations of one ``mujoco.batch.Batch``, stepped on its
    C thread pool (bit-identical to a loop of ``mj_step`` at any thread count); qpos, qvel and ctrl
    are live ``(num_envs, ...)`` views of its state rows, so nothing is gathered slot by slot."""

    def __init__(self, model: mujoco.MjModel, num_envs: int, threads: int) -> None:
        if mjbatch is None:
            raise RuntimeError(f"mujoco {mujoco.__version__} has no mujoco.batch; use the loop stepper")
        self.model = model
        self.batch = mjbatch.Batch(model, num_envs, max(1, threads))
        self.qpos, self.qvel, self.ctrl = (self.batch.bind(f) for f in ("qpos", "qvel", "ctrl"))

    def set_dynamics(self, rows: np.ndarray, shift: Shift) -> None:
        """Slots ``rows`` simulate ``shift``'s dynamics: the shifted fields as per-simulation values
        (``Batch.expand``, computed from the model's as :func:`harness.world.shift.apply_dynamics`
        computes them), then MuJoCo's derived constants per simulation (``set_const``: what
        ``mj_setConst`` gives; on unshifted values it gives the compiled model's own)."""
        for name, value in _dynamics_fields(self.model, shift).items():
            self.batch.expand(name)[rows] = value
        self.batch.set_const(rows)

    def warnings(self, rows: np.ndarray) -> np.ndarray:
        return self.batch.warning[rows, :, 1].sum(axis=1).astype(np.int64)  # (lastinfo, number) per kind

    def state(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.qpos[rows], self.qvel[rows]

    def reset(self, rows: np.ndarray, qpos: np.ndarray, qvel: np.ndarray, broken: np.ndarray) -> None:
        self.batch.reset(rows, stage=mujoco.mjtStage.mjSTAGE_NONE)  # mj_resetData of each row
        self.qpos[rows] = qpos
        self.qvel[rows] = qvel
        self.batch.forward(rows)  # mj_forward

    def step(self, rows: np.ndarray, actions: np.ndarray, frame_skip: int):
        errors = [""] * len(rows)
        x_before = self.qpos[rows, 0]
        self.ctrl[rows] = actions
        try:
            self.batch.step(rows, nstep=frame_skip)
        except mjbatch.SimulationError as exc:  # those simulations kept their state; the others ran
            where = {int(i): j for j, i in enumerate(rows)}
            for i in exc.ids:
                errors[where[int(i)]] = _one_line(RuntimeError(self.batch.error(int(i))))
        # (mj_rnePostConstraint, which Gymnasium runs after each step, fills only cacc/cfrc_*: no
        # observation, reward or later state of these tasks reads them)
        return errors, x_before, self.qpos[rows], self.qvel[rows], self.warnings(rows)

    def close(self) -> None:
        pass


class MujocoBatch:
    """``num_envs`` slots of one locomotion task, stepped and reset by mask.

    Args:
        env_id: one of :data:`SUPPORTED`.
        num_envs: slots.
        max_episode_steps: time-limit override (default: the registered limit).
        threads: threads stepping the physics (``mujoco.batch``'s C thread pool, or a Python pool
            over ``mj_step`` for the loop stepper); 1 steps in this thread.
        dynamics: a :class:`harness.world.shift.Shift` of the simulator (mass, friction, gravity,
            reset noise), applied exactly as to Gymnasium's envs.
        stepper: ``mujoco.batch`` or ``loop`` (:data:`STEPPERS`); default :func:`default_stepper`.
    """

    def __init__(
        self,
        env_id: str,
        num_envs: int,
        max_episode_steps: int | None = None,
        threads: int = 1,
        dynamics: Shift | None = None,
        stepper: str | None = None,
    ) -> None:
        stepper = stepper or default_stepper()
        if stepper not in STEPPERS:
            raise ValueError(f"stepper must be one of {', '.join(STEPPERS)}, got {stepper!r}")
        if not supports(env_id):
            raise ValueError(f"no batched simulator for {env_id}; use one of {sorted(SUPPORTED)}")
        # the model and reset noise of a Gymnasium env; a shift's dynamics are per slot (set_dynamics)
        probe = make_env(env_id, max_episode_steps)
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
        self.base_noise = float(env._reset_noise_scale)
        self.noise = np.full(num_envs, self.base_noise)  # each slot's reset noise scale (its shift's)
        if not env._exclude_current_positions_from_observation:
            raise ValueError("the batched simulator reproduces the default observation (x position excluded)")
        if self.task != "HalfCheetah":
            self.healthy_reward = env._healthy_reward
            self.terminate = env._terminate_when_unhealthy
            self.z_range = env._healthy_z_range
            self.angle_range = env._healthy_angle_range
            self.state_range = env._healthy_state_range if self.task == "Hopper" else None
        probe.close()  # the model stays alive: this object holds it
        self.threads = max(1, threads)
        self.stepper = stepper
        self.physics = (_BatchPhysics if stepper == "mujoco.batch" else _LoopPhysics)(
            self.model, num_envs, self.threads
        )
        self.rng: list[np.random.Generator | None] = [None] * num_envs
        self.elapsed = np.zeros(num_envs, dtype=np.int64)
        self.warnings = np.zeros(num_envs, dtype=np.int64)
        self.broken = np.zeros(num_envs, dtype=bool)
        self.env_steps = 0
        self.env_resets = 0
        self.default_dynamics = (dynamics or Shift()).dynamics
        self.slot_dynamics: list[Shift] = [Shift()] * num_envs
        if not self.default_dynamics.neutral:
            self.set_dynamics(np.arange(num_envs), self.default_dynamics)

    def set_dynamics(self, rows: np.ndarray, shift: Shift | None) -> None:
        """Slots ``rows`` simulate ``shift``'s dynamics (mass, friction, gravity, reset noise) from their
        next reset on; None: the batch's default (``dynamics``). One batch can so hold slots of every
        shift condition of a sweep, each bit-equal to a Gymnasium env under that shift."""
        shift = self.default_dynamics if shift is None else shift.dynamics
        rows = np.asarray([i for i in rows if self.slot_dynamics[i] != shift], dtype=np.int64)
        if not len(rows):
            return
        self.physics.set_dynamics(rows, shift)
        scale = shift.reset_noise
        self.noise[rows] = self.base_noise * scale if scale != 1.0 else self.base_noise
        for i in rows:
            self.slot_dynamics[i] = shift

    @property
    def simulator(self) -> str:
        """What steps the physics, for metadata (:func:`describe_stepper`)."""
        return describe_stepper(self.stepper, self.threads)

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

    def _info(self, status: np.ndarray, error: np.ndarray) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for key, values in zip(INFO_KEYS, (status, error), strict=True):
            has = values != ""
            if has.any():
                out[key], out[f"_{key}"] = values, has
        return out

    # ------------------------------------------------------------------------------ vector API
    def reset(self, *, seed: list[int | None] | None = None, options: dict | None = None):
        """Reset the slots in ``options["reset_mask"]`` (all when absent), slot i with ``seed[i]``;
        ``options["dynamics"]`` (optional): each slot's :class:`harness.world.shift.Shift` (None: the
        default) for the episode it starts."""
        options = options or {}
        mask = np.asarray(options.get("reset_mask", np.ones(self.num_envs, dtype=bool)), dtype=bool)
        seeds = list(seed) if seed is not None else [None] * self.num_envs
        rows = np.flatnonzero(mask)
        per_slot = options.get("dynamics")
        if per_slot is not None:
            for shift in {s for s in (per_slot[i] for i in rows)}:
                self.set_dynamics(np.asarray([i for i in rows if per_slot[i] == shift]), shift)
        self.env_resets += len(rows)
        qpos = np.empty((len(rows), self.model.nq))
        qvel = np.empty((len(rows), self.model.nv))
        for j, i in enumerate(rows):  # each slot's noise from its episode's generator, as Gymnasium draws it
            if seeds[i] is not None or self.rng[i] is None:
                self.rng[i], _ = seeding.np_random(seeds[i])
            rng, noise = self.rng[i], self.noise[i]
            qpos[j] = self.init_qpos + rng.uniform(low=-noise, high=noise, size=self.model.nq)
            if self.task == "HalfCheetah":
                qvel[j] = self.init_qvel + noise * rng.standard_normal(self.model.nv)
            else:
                qvel[j] = self.init_qvel + rng.uniform(low=-noise, high=noise, size=self.model.nv)
        obs = np.zeros((self.num_envs, *self.single_observation_space.shape))
        if len(rows):
            self.physics.reset(rows, qpos, qvel, self.broken)  # mj_resetData, the state, mj_forward
            self.broken[rows] = False
            self.elapsed[rows] = 0
            self.warnings[rows] = self.physics.warnings(rows)
            obs[rows] = self._observations(*self.physics.state(rows))
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
        errors, x_before, qpos, qvel, now = self.physics.step(rows, act, self.frame_skip)
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
        self.physics.close()
