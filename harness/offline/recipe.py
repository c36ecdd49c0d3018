"""D4RL-recipe datasets made here: SAC from scratch, then ``medium`` and ``medium-replay`` data.

D4RL (Fu et al. 2020) built its locomotion datasets from one SAC run per task:

- ``medium-replay``: every transition in the replay buffer up to the moment the policy's
  evaluation return first reached about one third of the expert's;
- ``medium``: that policy rolled out with *sampled* actions for a fixed number of transitions;
- ``expert``: a fully trained policy (here: the caller's choice, e.g. RL Zoo's TQC).

This module reproduces the first two on the Gymnasium task with Stable-Baselines3's SAC. The
run is checkpointed every ``eval_every`` env steps (model, replay buffer and a JSON log in
``workdir``), so a killed run resumes where its last checkpoint stopped (the episode that was
running is cut there: resumed runs are reproducible from the checkpoint, not bit-equal to an
uninterrupted run). The threshold is one third of D4RL's expert reference return
(``envs.EnvFamily.expert_return``): hopper 1078, walker2d 1531, halfcheetah 4045.

Trajectories are cut from the buffer at every episode end; ``dones`` is 1 only where the env
terminated (a time-limit truncation is 0), as in the tutorial's schema. The episode still running
when training stopped is left out (it has no end). Needs the ``collect`` extra.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np

from harness.core.errors import HarnessError
from harness.io.data import OfflineDataset
from harness.world.envs import EnvSpec, quiet_construction

MEDIUM_FRACTION = 1.0 / 3.0
"""D4RL's ``medium``: the policy at about one third of the expert's return."""


@dataclass(frozen=True)
class RecipeConfig:
    """How the SAC run is made and when it stops.

    Attributes:
        seed: seed of SAC (networks, exploration) and of the env; evaluation episodes use
            ``eval_seed + i``.
        max_steps: env steps after which the run gives up if the threshold is not reached.
        eval_every: env steps between evaluations (and checkpoints).
        eval_episodes: deterministic evaluation episodes per evaluation.
        eval_seed: first reset seed of the evaluation episodes.
        train_freq: env steps per gradient step (1 is SAC's default; 2 halves the training cost).
        learning_starts: uniform-random env steps before the first gradient step.
        medium_transitions: transitions of the ``medium`` rollout (sampled actions).
        threshold: evaluation return that stops training; None: one third of D4RL's expert return.
    """

    seed: int = 0
    max_steps: int = 300_000
    eval_every: int = 5_000
    eval_episodes: int = 5
    eval_seed: int = 10_000
    train_freq: int = 2
    learning_starts: int = 5_000
    medium_transitions: int = 100_000
    threshold: float | None = None

    def target(self, env: EnvSpec) -> float:
        return self.threshold if self.threshold is not None else MEDIUM_FRACTION * env.family.expert_return


def _sac(env: EnvSpec, cfg: RecipeConfig, workdir: Path):  # noqa: ANN202 - SB3 type only when installed
    try:
        from stable_baselines3 import SAC
    except ImportError:
        raise HarnessError("the D4RL recipe needs stable-baselines3: pip install 'harness[collect]'") from None
    with quiet_construction():
        train_env = gym.make(env.env_id)
    model_path = workdir / "sac.zip"
    if model_path.is_file():
        model = SAC.load(model_path, env=train_env, device="cpu")
        model.load_replay_buffer(workdir / "replay.pkl")
        _grow(model.replay_buffer, cfg.max_steps + cfg.eval_every)  # a rerun may raise --max-steps
        return model
    train_env.reset(seed=cfg.seed)
    return SAC(
        "MlpPolicy",
        train_env,
        buffer_size=cfg.max_steps + cfg.eval_every,  # never full: the buffer is the medium-replay data
        learning_starts=cfg.learning_starts,
        train_freq=cfg.train_freq,
        gradient_steps=1,
        seed=cfg.seed,
        device="cpu",
        verbose=0,
    )


def _grow(buf, size: int) -> None:  # noqa: ANN001 - an SB3 ReplayBuffer
    """Enlarge a replay buffer that never wrapped to ``size`` rows, keeping its rows in order."""
    if size <= buf.buffer_size:
        return
    used = buf.buffer_size if buf.full else buf.pos  # full with pos 0: filled exactly, nothing overwritten
    for name in ("observations", "next_observations", "actions", "rewards", "dones", "timeouts"):
        old = getattr(buf, name, None)
        if old is None:
            continue
        new = np.zeros((size, *old.shape[1:]), dtype=old.dtype)
        new[: len(old)] = old
        setattr(buf, name, new)
    buf.buffer_size, buf.pos, buf.full = size, used, False


def evaluate_policy(model, env: EnvSpec, episodes: int, seed: int) -> list[float]:  # noqa: ANN001
    """Returns of ``episodes`` deterministic episodes with reset seeds ``seed .. seed + episodes - 1``."""
    out = []
    with quiet_construction():
        e = gym.make(env.env_id)
    for i in range(episodes):
        obs, _ = e.reset(seed=seed + i)
        total, done = 0.0, False
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, r, term, trunc, _ = e.step(action)
            total += float(r)
            done = term or trunc
        out.append(total)
    e.close()
    return out


def buffer_dataset(model) -> tuple[OfflineDataset, int]:  # noqa: ANN001
    """The replay buffer's finished episodes as a dataset, and how many transitions were left out.

    Uses the buffer rows ``0 .. pos`` of its single env in insertion order (the buffer is sized to
    the whole run, so nothing was overwritten).
    """
    buf = model.replay_buffer
    if buf.full:
        raise HarnessError("the replay buffer wrapped around; raise max_steps so that it holds the whole run")
    n = buf.pos
    obs = buf.observations[:n, 0]
    act = buf.actions[:n, 0]
    rew = buf.rewards[:n, 0]
    done = buf.dones[:n, 0] > 0
    timeout = buf.timeouts[:n, 0] > 0
    ends = np.flatnonzero(done) + 1
    trajectories = []
    start = 0
    for end in ends:
        trajectories.append(
            {
                "observations": obs[start:end],
                "actions": act[start:end],
                "rewards": rew[start:end],
                "dones": (done[start:end] & ~timeout[start:end]).astype(np.float32),
            }
        )
        start = end
    return OfflineDataset.from_trajectories(trajectories), int(n - start)


def sampled_rollout(model, env: EnvSpec, transitions: int, seed: int, num_envs: int = 8) -> OfflineDataset:  # noqa: ANN001
    """Whole episodes of the policy with sampled (stochastic) actions until ``transitions`` steps.

    Episode j is reset with seed ``seed + j``; the SAC sampling noise comes from torch's generator,
    seeded with ``seed`` here.
    """
    import torch

    from harness.offline.behavior import rollout_source

    torch.manual_seed(seed)

    def act(obs: np.ndarray) -> np.ndarray:
        action, _ = model.predict(obs.astype(np.float32), deterministic=False)
        return np.asarray(action, dtype=np.float64)

    return OfflineDataset.from_trajectories(rollout_source(env, act, 0.0, transitions, seed, num_envs))


def run_recipe(env: EnvSpec, cfg: RecipeConfig, workdir: Path, out_dir: Path, log=print) -> dict:  # noqa: ANN001
    """Train (or resume) SAC until the medium threshold, then write both datasets into ``out_dir``.

    Files: ``<env>-medium-replay.parquet`` / ``.json`` and ``<env>-medium.parquet`` / ``.json``;
    ``workdir/log.json`` holds every evaluation. Returns the run's record (also in each ``.json``).

    Raises:
        HarnessError: threshold not reached within ``max_steps`` (the checkpoint is kept).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "log.json"
    record = json.loads(log_path.read_text()) if log_path.is_file() else {"evals": [], "seconds": 0.0}
    record.update(env_id=env.env_id, config=asdict(cfg), threshold=cfg.target(env))
    model = _sac(env, cfg, workdir)
    target = cfg.target(env)
    reached = bool(record["evals"]) and record["evals"][-1]["mean"] >= target
    while not reached:
        if model.num_timesteps >= cfg.max_steps:
            raise HarnessError(
                f"SAC on {env.env_id} did not reach {target:.0f} within {cfg.max_steps} steps (last evaluation "
                f"{record['evals'][-1]['mean']:.0f}); raise --max-steps and rerun to resume"
            )
        t0 = time.perf_counter()
        model.learn(cfg.eval_every, reset_num_timesteps=False)
        returns = evaluate_policy(model, env, cfg.eval_episodes, cfg.eval_seed)
        record["seconds"] += time.perf_counter() - t0
        entry = {"steps": int(model.num_timesteps), "mean": float(np.mean(returns)), "returns": returns}
        record["evals"].append(entry)
        reached = entry["mean"] >= target
        model.save(workdir / "sac.zip")
        model.save_replay_buffer(workdir / "replay.pkl")
        tmp = log_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1))
        tmp.replace(log_path)
        log(f"{env.name}: {entry['steps']} steps, eval {entry['mean']:.0f} (target {target:.0f})")
    out_dir.mkdir(parents=True, exist_ok=True)
    replay, left_out = buffer_dataset(model)
    record["medium_replay_left_out"] = left_out
    medium = sampled_rollout(model, env, cfg.medium_transitions, cfg.seed + 1_000_000)
    for kind, data in (("medium-replay", replay), ("medium", medium)):
        name = f"{env.name}-{kind}"
        data.to_parquet(out_dir / f"{name}.parquet")
        meta = {"env_id": env.env_id, "recipe": record, "summary": asdict(data.summary(name))}
        (out_dir / f"{name}.json").write_text(json.dumps(meta, indent=2) + "\n")
        log(f"wrote {out_dir / name}.parquet: {data.num_trajectories} trajectories, {data.num_transitions} steps")
    return record
