"""The lockstep design of today's batched DT evaluators (online-dt, torchrl), as a baseline.

N episodes are reset together; every step the full padded window of all N slots goes through
the stock ``transformers`` forward; a finished episode's slot idles (still computed) until the
whole wave of N is done, then the next wave starts. Context buffers are the harness's own ring
(so this baseline is not slowed by history concatenation: the comparison isolates slot refill
and the fast forward pass).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from harness.engine.context import ContextWindow
from harness.engine.policy import DTPolicy
from harness.engine.rollout import EpisodeSpec
from harness.world.envs import make_vector_env


def run_lockstep(
    policy: DTPolicy, env_id: str, episodes: Sequence[EpisodeSpec], num_envs: int, max_episode_steps: int | None
) -> list[int]:
    """Run ``episodes`` in waves of ``num_envs``; returns every episode's length (in order)."""
    ckpt = policy.checkpoint
    envs = make_vector_env(env_id, num_envs, max_episode_steps)
    lengths: list[int] = []
    try:
        for start in range(0, len(episodes), num_envs):
            wave = list(episodes[start : start + num_envs])
            m = len(wave)
            window = ContextWindow(num_envs, ckpt.context_length, ckpt.state_dim, ckpt.act_dim)
            seeds = [ep.seed for ep in wave] + [0] * (num_envs - m)
            obs, _ = envs.reset(seed=seeds)
            rtg = torch.tensor([ep.target / policy.scale for ep in wave] + [0.0] * (num_envs - m))
            steps = torch.zeros(num_envs, dtype=torch.long)
            alive = np.arange(num_envs) < m
            wave_len = np.zeros(num_envs, dtype=np.int64)
            while alive.any():
                window.append(policy.normalize(obs), rtg, steps)
                acts = policy.act(window.view())  # every slot, alive or not
                window.set_last_action(acts)
                obs, reward, term, trunc, _ = envs.step(acts.numpy())
                wave_len[alive] += 1
                rtg -= torch.as_tensor(reward / policy.scale, dtype=torch.float32)
                steps = torch.clamp(steps + 1, max=policy.max_timestep)
                done = term | trunc
                alive &= ~done
                if done.any():  # keep finished slots steppable; they stay idle until the wave ends
                    new_obs, _ = envs.reset(options={"reset_mask": done})
                    obs = np.where(done[:, None], new_obs, obs)
            lengths += [int(x) for x in wave_len[:m]]
    finally:
        envs.close()
    return lengths
