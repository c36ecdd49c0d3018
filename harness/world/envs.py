"""Short env names, their Gymnasium ids and sizes, D4RL reference returns, the vector-env factory.

>>> spec = resolve_env("hopper")
>>> spec.env_id, spec.state_dim, spec.act_dim
('Hopper-v4', 11, 3)
>>> resolve_env("walker2d", version="v5").env_id
'Walker2d-v5'
>>> resolve_env("HalfCheetah-v5").name
'halfcheetah'
>>> round(spec.normalized_score(3234.3), 6)
100.0
"""

from __future__ import annotations

import re
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from harness.core.errors import HarnessError
from harness.core.schema import Status
from harness.world.shift import Shift, apply_dynamics

#: Env versions that Gymnasium ships for the MuJoCo locomotion tasks and that run on `mujoco`.
VERSIONS: tuple[str, ...] = ("v4", "v5")
DEFAULT_VERSION = "v4"


@dataclass(frozen=True)
class EnvFamily:
    """One locomotion task, whatever its version.

    Attributes:
        name: short name used on the command line (``hopper``).
        gym_name: Gymnasium id without the version (``Hopper``).
        state_dim: observation size.
        act_dim: action size.
        random_return: D4RL reference return of a random policy (``d4rl/infos.py``).
        expert_return: D4RL reference return of an expert policy.
    """

    name: str
    gym_name: str
    state_dim: int
    act_dim: int
    random_return: float
    expert_return: float


FAMILIES: dict[str, EnvFamily] = {
    f.name: f
    for f in (
        EnvFamily("hopper", "Hopper", 11, 3, -20.272305, 3234.3),
        EnvFamily("walker2d", "Walker2d", 17, 6, 1.629008, 4592.3),
        EnvFamily("halfcheetah", "HalfCheetah", 17, 6, -280.178953, 12135.0),
    )
}


@dataclass(frozen=True)
class EnvSpec:
    """A concrete env: a family at one Gymnasium version.

    Attributes:
        family: the task.
        version: ``v4`` or ``v5``.
    """

    family: EnvFamily
    version: str

    @property
    def name(self) -> str:
        return self.family.name

    @property
    def env_id(self) -> str:
        return f"{self.family.gym_name}-{self.version}"

    @property
    def state_dim(self) -> int:
        return self.family.state_dim

    @property
    def act_dim(self) -> int:
        return self.family.act_dim

    @property
    def max_episode_steps(self) -> int:
        steps = gym.spec(self.env_id).max_episode_steps
        return int(steps) if steps is not None else 1000

    def normalized_score(self, returns: float | np.ndarray) -> float | np.ndarray:
        """D4RL normalised score ``100 * (R - R_random) / (R_expert - R_random)``, any shape."""
        return normalized_score(self.family, returns)


def normalized_score(family: EnvFamily, returns: float | np.ndarray) -> float | np.ndarray:
    """D4RL normalised score of raw returns (scalar or array, same shape out)."""
    lo, hi = family.random_return, family.expert_return
    value = 100.0 * (np.asarray(returns, dtype=np.float64) - lo) / (hi - lo)
    return float(value) if value.ndim == 0 else value


_FULL_ID = re.compile(r"^(?P<base>[A-Za-z0-9]+)-(?P<version>v\d+)$")


def resolve_env(name: str, version: str = DEFAULT_VERSION) -> EnvSpec:
    """Turn a short name (``hopper``) or a full Gymnasium id (``Hopper-v5``) into an EnvSpec.

    A full id carries its own version and ignores ``version``.

    Raises:
        HarnessError: unknown name or version, with the known ones listed.
    """
    known = ", ".join(FAMILIES)
    if version not in VERSIONS:
        raise HarnessError(f"unknown env version {version!r}; use one of: {', '.join(VERSIONS)}")
    key = name.strip().lower()
    if key in FAMILIES:
        return EnvSpec(FAMILIES[key], version)
    match = _FULL_ID.match(name.strip())
    if match:
        base = match["base"].lower()
        if base in FAMILIES:
            if match["version"] not in VERSIONS:
                raise HarnessError(
                    f"env {name!r}: version {match['version']} is not supported; "
                    f"use one of: {', '.join(VERSIONS)} (e.g. {FAMILIES[base].gym_name}-v4)"
                )
            return EnvSpec(FAMILIES[base], match["version"])
    raise HarnessError(f"unknown env {name!r}; use one of: {known} (or a full id such as Hopper-v4)")


_CONSTRUCTION = threading.RLock()
"""Held while envs are built: MuJoCo's warning handler and Python's warning filters are process-wide."""


@contextmanager
def quiet_construction() -> Iterator[None]:
    """Silence Gymnasium's out-of-date notice for -v4 and MuJoCo's model-compiler notices.

    -v4 is deliberate (closest to the D4RL -v3 envs). MuJoCo 4 prints a deprecation notice
    for ``settotalmass`` in HalfCheetah's XML once per env built; it says nothing about the
    simulation, so it is dropped while the envs are built and the previous handler restored.

    One thread at a time (re-entrant): MuJoCo's user warning handler is one process-wide slot.
    Two threads building envs at once (``run_episodes(pipelines=2)``) swapped it under each other:
    one restored the handler while the other's model compiler was calling the silencing callback,
    and MuJoCo aborted the process (``libc++abi: terminating`` in ``mju_warning``, 2 runs in 8 of
    ``benchmarks/speed/overlap.py``).
    """
    import mujoco

    with _CONSTRUCTION:
        previous = mujoco.get_mju_user_warning()
        mujoco.set_mju_user_warning(lambda msg: None)
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*is out of date.*")
                yield
        finally:
            mujoco.set_mju_user_warning(previous)


STATUS_KEY = "harness_status"
"""Info key through which :class:`GuardedEnv` reports why it ended an episode."""
INFO_KEYS = (STATUS_KEY, "harness_error")
"""The info entries through which :class:`GuardedEnv` reports a failed episode."""
MAX_ABS_OBSERVATION = 1e5
"""An observation entry beyond this magnitude counts as an exploded simulation."""


class GuardedEnv(gym.Wrapper):
    """Keeps one sub-env's failure inside its episode.

    - ``step`` raising: the episode ends (``terminated``) with ``info[STATUS_KEY] = "env_error"``
      and the inner env is replaced by a fresh one (``gym.make(spec)``) at the next reset;
    - ``reset`` raising: retried once on a fresh env; a second failure returns a zero
      observation with ``info[STATUS_KEY] = "env_error"``;
    - a non-finite observation or reward, an entry beyond :data:`MAX_ABS_OBSERVATION`, or a
      new MuJoCo warning (MuJoCo resets an unstable simulation and counts a warning): the
      episode ends with ``info[STATUS_KEY] = Status.UNSTABLE_STATE.value``.

    ``info["harness_error"]`` carries the exception text, one line.
    """

    def __init__(self, env: gym.Env, dynamics: Shift | None = None) -> None:
        super().__init__(env)
        self._dynamics = dynamics  # re-applied to a replacement env
        self._broken = False
        self._warnings = 0

    def _mujoco_warnings(self) -> int:
        data = getattr(self.env.unwrapped, "data", None)
        warning = getattr(data, "warning", None)
        number = getattr(warning, "number", None)
        return int(np.sum(number)) if number is not None else 0

    def _replace(self) -> None:
        spec = self.env.spec
        try:
            self.env.close()
        except Exception:  # noqa: BLE001 - a broken env may fail to close too
            pass
        with quiet_construction():
            self.env = gym.make(spec)
        if self._dynamics is not None:
            apply_dynamics(self.env.unwrapped, self._dynamics)
        self._broken = False

    def _zeros(self) -> np.ndarray:
        return np.zeros(self.observation_space.shape, dtype=self.observation_space.dtype)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if self._broken:
            self._replace()
        for attempt in (0, 1):
            try:
                obs, info = self.env.reset(seed=seed, options=options)
                self._warnings = self._mujoco_warnings()
                return obs, info
            except Exception as exc:  # noqa: BLE001 - any env failure is recorded, not raised
                error = _one_line(exc)
                if attempt == 0:
                    self._replace()
        self._broken = True
        return self._zeros(), {STATUS_KEY: Status.ENV_ERROR.value, "harness_error": f"reset failed twice: {error}"}

    def step(self, action):
        try:
            obs, reward, terminated, truncated, info = self.env.step(action)
        except Exception as exc:  # noqa: BLE001
            self._broken = True
            return (
                self._zeros(),
                0.0,
                True,
                False,
                {STATUS_KEY: Status.ENV_ERROR.value, "harness_error": _one_line(exc)},
            )
        warnings_now = self._mujoco_warnings()
        obs_arr = np.asarray(obs)
        if (
            not np.all(np.isfinite(obs_arr))
            or not np.isfinite(reward)
            or np.any(np.abs(obs_arr) > MAX_ABS_OBSERVATION)
            or warnings_now > self._warnings
        ):
            self._warnings = warnings_now
            info = dict(info)
            info[STATUS_KEY] = Status.UNSTABLE_STATE.value
            if not np.all(np.isfinite(obs_arr)):
                obs = self._zeros()
            return obs, reward if np.isfinite(reward) else 0.0, True, truncated, info
        return obs, reward, terminated, truncated, info


def slot_info(info: dict, n: int) -> dict[str, np.ndarray]:
    """:data:`INFO_KEYS` of a vector env's merged info as ``(n,)`` object arrays (``""`` where absent)."""
    out = {}
    for key in INFO_KEYS:
        values = np.full(n, "", dtype=object)
        if key in info:
            has = info.get(f"_{key}", np.ones(n, dtype=bool))
            values[has] = info[key][has]
        out[key] = values
    return out


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def make_vector_env(
    env_id: str, num_envs: int, max_episode_steps: int | None = None, render_size: tuple[int, int] | None = None
) -> gym.vector.VectorEnv:
    """A synchronous vector env of ``num_envs`` :class:`GuardedEnv` slots with autoreset DISABLED.

    Finished slots must be reset by the caller with ``reset(seed=[...],
    options={"reset_mask": mask})``; stepping a finished slot is an error in Gymnasium.
    ``max_episode_steps`` overrides the env's time limit (benchmarks use shorter or longer
    episodes; evaluation keeps the registered limit). ``render_size`` ``(width, height)`` builds
    the envs with ``render_mode="rgb_array"`` (video recording).
    """
    extra: dict = {} if max_episode_steps is None else {"max_episode_steps": max_episode_steps}
    if render_size is not None:
        extra |= render_kwargs(env_id, render_size)
    with quiet_construction():
        return gym.make_vec(
            env_id,
            num_envs=num_envs,
            vectorization_mode="sync",
            vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.DISABLED},
            wrappers=[GuardedEnv],
            **extra,
        )


def render_kwargs(env_id: str, size: tuple[int, int]) -> dict:
    """``gym.make`` keywords for ``(width, height)`` RGB frames (the tracking camera where it exists)."""
    extra = {"render_mode": "rgb_array", "width": size[0], "height": size[1]}
    if env_id.split("/")[-1].split("-")[0] in {f.gym_name for f in FAMILIES.values()}:
        extra["camera_name"] = "track"  # the models' side camera that follows the body
    return extra


def make_env(
    env_id: str, max_episode_steps: int | None = None, *, dynamics: Shift | None = None, **kwargs: object
) -> gym.Env:
    """One env, as the tutorial makes it (``gym.make``), without construction notices; ``dynamics``:
    a :class:`harness.world.shift.Shift` applied to its model (:func:`harness.world.shift.apply_dynamics`)."""
    with quiet_construction():
        env = gym.make(env_id, max_episode_steps=max_episode_steps, **kwargs)
    if dynamics is not None:
        apply_dynamics(env.unwrapped, dynamics)
    return env
