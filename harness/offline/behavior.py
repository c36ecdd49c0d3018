"""Behaviour policies and their rollouts: Zoo agents, noise, hand-over/take-over, action scale.

The library under ``python -m harness.collect`` (the command line lives there). Behaviour agents
are Stable-Baselines3 zip files laid out as RL Zoo publishes them:
``<agents>/<env>/<algo>/model.zip`` plus ``vecnormalize.pkl`` where the agent was trained with
observation normalisation. Each source (an agent at one Gaussian action-noise level, or the
uniform random policy) contributes whole episodes until it has at least its share of
transitions. Episode j of source i is reset with seed ``seed + 100_000 * i + j``: the dataset is
reproducible.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from harness.core.errors import HarnessError
from harness.io.data import OfflineDataset
from harness.world.envs import EnvSpec, make_vector_env

SB3_ALGOS = {
    "sac": "stable_baselines3",
    "ppo": "stable_baselines3",
    "a2c": "stable_baselines3",
    "td3": "stable_baselines3",
    "tqc": "sb3_contrib",
    "trpo": "sb3_contrib",
    "ars": "sb3_contrib",
}
RANDOM = "random"

Policy = Callable[[np.ndarray], np.ndarray]
"""``(n, state_dim)`` float64 observations → ``(n, act_dim)`` actions in [-1, 1]."""


@dataclass(frozen=True)
class Source:
    """One behaviour source: an agent (or ``random``) at one action-noise level.

    ``handover`` is the fraction of its episodes in which the agent hands control to the uniform
    random policy at a step drawn uniformly from [0, time limit): graded degradation that the
    return-to-go reveals (the agent plays well until it "gives up"), so that low-return
    behaviour is as predictable from the return as high-return behaviour. ``takeover`` is the
    fraction in which the random policy plays first and the agent takes over at a uniform step:
    it shows the agent recovering from poor states in mid-episode (HalfCheetah never falls, so
    without it a slow cheetah in mid-episode is only ever seen with a spent return-to-go).
    ``scale`` multiplies the agent's action (before noise): one gait at graded strength, so that
    the return predicts how hard the agent pushes and the speed in the state reveals it.
    ``tilt`` is the fraction of its episodes that start tilted: the root's pitch (``qpos[2]``)
    drawn uniformly from ``tilt_range`` (radians, positive = nose up for HalfCheetah) at rest, so
    that the data shows the agent recovering from a pose a learned policy can get stuck in (the
    embedded halfcheetah holds itself reared up at about 1.2 rad, README "Why they get stuck").
    """

    algo: str
    noise: float
    transitions: int
    handover: float = 0.0
    takeover: float = 0.0
    scale: float = 1.0
    tilt: float = 0.0
    tilt_range: tuple[float, float] = (0.6, 1.4)


def _alias_gym() -> None:
    """The Zoo pickles reference the old ``gym`` package; gymnasium stands in for it."""
    import gymnasium

    sys.modules.setdefault("gym", gymnasium)


def load_agent(agents_dir: Path, env: EnvSpec, algo: str) -> Policy:
    """Load a Zoo agent as a deterministic batched policy (observation normalisation included).

    Raises:
        HarnessError: unknown algorithm, missing or unreadable files, or an agent for another env.
    """
    if algo not in SB3_ALGOS:
        raise HarnessError(f"unknown agent algorithm {algo!r}; use one of: {', '.join(SB3_ALGOS)}")
    folder = agents_dir / env.name / algo
    zip_path = folder / "model.zip"
    if not zip_path.is_file():
        raise HarnessError(f"no agent file {zip_path}; lay agents out as <agents>/<env>/<algo>/model.zip")
    try:
        module = __import__(SB3_ALGOS[algo], fromlist=[algo.upper()])
    except ImportError:
        raise HarnessError(f"loading {algo} agents needs {SB3_ALGOS[algo]}: pip install 'harness[collect]'") from None
    cls = getattr(module, algo.upper())
    _alias_gym()
    probe = make_vector_env(env.env_id, 1)
    custom = {
        "observation_space": probe.single_observation_space,
        "action_space": probe.single_action_space,
        "lr_schedule": lambda _: 0.0,
        "learning_rate": 0.0,
        "clip_range": lambda _: 0.0,
    }
    probe.close()
    try:
        model = cls.load(zip_path, device="cpu", custom_objects=custom)
    except Exception as exc:
        if "size mismatch" in str(exc):
            raise HarnessError(
                f"agent {zip_path} does not fit {env.env_id} (its layers expect other observation/action sizes); "
                f"use an agent trained on {env.name}"
            ) from None
        first = (str(exc).strip().splitlines() or [""])[0]
        raise HarnessError(f"could not load agent {zip_path} ({type(exc).__name__}: {first})") from None
    shape = getattr(model.policy.observation_space, "shape", None)
    if shape != (env.state_dim,) or model.policy.action_space.shape != (env.act_dim,):
        raise HarnessError(
            f"agent {zip_path} expects observations {shape} and actions {model.policy.action_space.shape}, "
            f"but {env.env_id} has ({env.state_dim},) and ({env.act_dim},); use an agent trained on {env.name}"
        )
    norm = None
    vecnorm = folder / "vecnormalize.pkl"
    if vecnorm.is_file():
        import pickle

        try:
            with open(vecnorm, "rb") as fh:
                vn = pickle.load(fh)  # noqa: S301 - the user's own behaviour files, as SB3 loads them
            norm = (vn.obs_rms.mean, np.sqrt(vn.obs_rms.var + vn.epsilon), vn.clip_obs)
        except Exception as exc:
            raise HarnessError(f"could not read {vecnorm} ({type(exc).__name__}: {exc})") from None
        if np.shape(norm[0]) != (env.state_dim,):
            raise HarnessError(f"{vecnorm} normalises {np.shape(norm[0])} observations, not ({env.state_dim},)")

    def act(obs: np.ndarray) -> np.ndarray:
        x = obs if norm is None else np.clip((obs - norm[0]) / norm[1], -norm[2], norm[2])
        action, _ = model.predict(x.astype(np.float32), deterministic=True)
        return np.asarray(action, dtype=np.float64)

    return act


def rollout_source(
    env: EnvSpec,
    policy: Policy | None,
    noise: float,
    transitions: int,
    seed: int,
    num_envs: int = 8,
    bar: tqdm | None = None,
    handover: float = 0.0,
    takeover: float = 0.0,
    scale: float = 1.0,
    tilt: float = 0.0,
    tilt_range: tuple[float, float] = (0.6, 1.4),
) -> list[dict[str, np.ndarray]]:
    """Whole episodes from one source until at least ``transitions`` steps are collected.

    ``policy`` None is the uniform random policy. Gaussian noise N(0, noise) is added to the
    agent's action and the result clipped to [-1, 1]. Episode j is reset with ``seed + j``. With
    probability ``handover`` an episode switches to uniform random actions at a uniform step;
    with probability ``takeover`` it starts with random actions and the agent takes over then.
    ``scale`` multiplies the agent's action before the noise is added. With probability ``tilt``
    an episode starts from its reset state with the root pitch set to a uniform draw from
    ``tilt_range`` and all velocities zero (:class:`Source`). With ``tilt`` 0 no extra random
    numbers are drawn: datasets collected before the option existed are reproduced exactly.
    """
    rng = np.random.default_rng(seed)
    envs = make_vector_env(env.env_id, num_envs)
    horizon = env.max_episode_steps

    def maybe_tilt(i: int, obs: np.ndarray) -> None:
        """Tilt slot ``i`` just after its reset with probability ``tilt``; ``obs`` row updated in place."""
        if tilt <= 0 or rng.random() >= tilt:
            return
        sim = envs.envs[i].unwrapped  # type: ignore[attr-defined]
        qpos = sim.data.qpos.copy()
        qpos[2] = rng.uniform(*tilt_range)
        sim.set_state(qpos, np.zeros_like(sim.data.qvel))
        obs[i] = sim._get_obs()

    def draw_switch() -> tuple[float, bool]:
        """(step of the switch, whether random plays first); no switch: (inf, False)."""
        u = rng.random()
        if u < handover + takeover:
            return float(rng.integers(0, horizon)), u >= handover
        return np.inf, False

    switch_at = np.full(num_envs, np.inf)
    random_first = np.zeros(num_envs, dtype=bool)
    for i in range(num_envs):
        switch_at[i], random_first[i] = draw_switch()
    next_episode = num_envs
    obs, _ = envs.reset(seed=[seed + j for j in range(num_envs)])
    for i in range(num_envs):
        maybe_tilt(i, obs)
    buffers: list[dict[str, list]] = [{"o": [], "a": [], "r": [], "d": []} for _ in range(num_envs)]
    out: list[dict[str, np.ndarray]] = []
    collected = 0
    active = np.ones(num_envs, dtype=bool)
    while active.any():
        if policy is None:
            action = rng.uniform(-1.0, 1.0, size=(num_envs, env.act_dim))
        else:
            action = scale * policy(obs)
            if noise > 0:
                action = action + rng.normal(0.0, noise, size=action.shape)
            steps = np.array([len(b["r"]) for b in buffers])
            gave_up = (steps >= switch_at) != random_first
            if gave_up.any():
                action[gave_up] = rng.uniform(-1.0, 1.0, size=(int(gave_up.sum()), env.act_dim))
        action = np.clip(action, -1.0, 1.0).astype(np.float32)
        next_obs, reward, term, trunc, _ = envs.step(action)
        for i in np.flatnonzero(active):
            b = buffers[i]
            b["o"].append(obs[i].astype(np.float32))
            b["a"].append(action[i])
            b["r"].append(float(reward[i]))
            b["d"].append(float(term[i]))
        done = term | trunc
        if done.any():
            seeds: list[int | None] = [None] * num_envs
            for i in np.flatnonzero(done):
                if active[i]:
                    b = buffers[i]
                    out.append(
                        {
                            "observations": np.stack(b["o"]),
                            "actions": np.stack(b["a"]),
                            "rewards": np.asarray(b["r"], np.float32),
                            "dones": np.asarray(b["d"], np.float32),
                        }
                    )
                    collected += len(b["r"])
                    if bar is not None:
                        bar.update(len(b["r"]))
                    buffers[i] = {"o": [], "a": [], "r": [], "d": []}
                # start another episode only while the budget is not met by finished + running ones
                running = sum(len(buffers[j]["r"]) for j in np.flatnonzero(active))
                if collected + running < transitions:
                    seeds[i] = seed + next_episode
                    next_episode += 1
                    switch_at[i], random_first[i] = draw_switch()
                else:
                    active[i] = False
                    seeds[i] = seed
            mask = done.copy()
            next_obs, _ = envs.reset(seed=seeds, options={"reset_mask": mask})
            for i in np.flatnonzero(done & active):
                maybe_tilt(i, next_obs)
        obs = next_obs
    envs.close()
    return out


def collect(
    env: EnvSpec, agents_dir: Path, sources: list[Source], seed: int = 0, num_envs: int = 8, progress: bool = True
) -> OfflineDataset:
    """Collect every source and concatenate the trajectories (source order)."""
    policies = {s.algo: (None if s.algo == RANDOM else load_agent(agents_dir, env, s.algo)) for s in sources}
    total = sum(s.transitions for s in sources)
    trajectories = []
    with tqdm(total=total, unit="step", desc=f"collect {env.name}", file=sys.stderr, disable=not progress) as bar:
        for i, s in enumerate(sources):
            trajectories += rollout_source(
                env,
                policies[s.algo],
                s.noise,
                s.transitions,
                seed + 100_000 * i,
                num_envs,
                bar,
                handover=s.handover,
                takeover=s.takeover,
                scale=s.scale,
                tilt=s.tilt,
                tilt_range=s.tilt_range,
            )
    return OfflineDataset.from_trajectories(trajectories)
