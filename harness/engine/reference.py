"""The tutorial's sequential evaluation loop, kept as the correctness oracle and speed baseline.

Written after the Hugging Face "Train your first Decision Transformer" evaluation loop: one
episode, histories grown with ``torch.cat`` every step, the whole state history normalised
every step, the last K timesteps left-padded with zeros and masked, and the action read at the
last position. The one addition is the timestep clamp at ``max_ep_len - 1`` that DESIGN.md
asks for (without it an episode longer than the embedding table would fail).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from harness.io.checkpoints import Checkpoint
from harness.world.envs import make_env


@dataclass(frozen=True)
class ReferenceEpisode:
    """One episode of the reference loop.

    Attributes:
        ret: undiscounted return.
        length: steps.
        terminated: ended by the env's termination (not the time limit).
        actions: ``(length, act_dim)`` float32 actions taken.
        wall_time_s: seconds.
    """

    ret: float
    length: int
    terminated: bool
    actions: np.ndarray
    wall_time_s: float


def get_action(
    model: torch.nn.Module,
    states: torch.Tensor,
    actions: torch.Tensor,
    rewards: torch.Tensor,
    returns_to_go: torch.Tensor,
    timesteps: torch.Tensor,
    context_length: int,
) -> torch.Tensor:
    """The tutorial's ``get_action``: pad the last K timesteps on the left and predict.

    Args:
        states: ``(t, state_dim)`` normalised history.
        actions: ``(t, act_dim)`` with a zero placeholder last.
        rewards: ``(t,)`` (ignored by the model, passed as the tutorial does).
        returns_to_go: ``(1, t)``.
        timesteps: ``(1, t)`` long.

    Returns:
        ``(act_dim,)`` the action predicted at the last state token.
    """
    cfg = model.config
    states = states.reshape(1, -1, cfg.state_dim)[:, -context_length:]
    actions = actions.reshape(1, -1, cfg.act_dim)[:, -context_length:]
    returns_to_go = returns_to_go.reshape(1, -1, 1)[:, -context_length:]
    timesteps = timesteps.reshape(1, -1)[:, -context_length:]
    padding = context_length - states.shape[1]
    attention_mask = torch.cat([torch.zeros(padding), torch.ones(states.shape[1])])
    attention_mask = attention_mask.to(dtype=torch.long).reshape(1, -1)
    states = torch.cat([torch.zeros((1, padding, cfg.state_dim)), states], dim=1).float()
    actions = torch.cat([torch.zeros((1, padding, cfg.act_dim)), actions], dim=1).float()
    returns_to_go = torch.cat([torch.zeros((1, padding, 1)), returns_to_go], dim=1).float()
    timesteps = torch.cat([torch.zeros((1, padding), dtype=torch.long), timesteps], dim=1)
    out = model(
        states=states,
        actions=actions,
        rewards=rewards,
        returns_to_go=returns_to_go,
        timesteps=timesteps,
        attention_mask=attention_mask,
        return_dict=True,
    )
    return out.action_preds[0, -1]


@torch.no_grad()
def run_reference_episode(
    checkpoint: Checkpoint, env_id: str, target: float, seed: int, max_episode_steps: int | None = None
) -> ReferenceEpisode:
    """Run one episode the tutorial's way on CPU.

    Args:
        checkpoint: loaded checkpoint.
        env_id: Gymnasium id.
        target: target return (raw, unscaled).
        seed: reset seed.
        max_episode_steps: override of the env's time limit (benchmarks).
    """
    start = time.perf_counter()
    model = checkpoint.model.to("cpu").eval()
    state_dim, act_dim = checkpoint.state_dim, checkpoint.act_dim
    scale, max_t = checkpoint.return_scale, checkpoint.max_ep_len - 1
    state_mean = torch.from_numpy(np.asarray(checkpoint.state_mean, dtype=np.float64))
    state_std = torch.from_numpy(np.asarray(checkpoint.state_std, dtype=np.float64))

    env = make_env(env_id, max_episode_steps)
    state, _ = env.reset(seed=seed)
    target_return = torch.tensor(target / scale, dtype=torch.float32).reshape(1, 1)
    states = torch.from_numpy(state).reshape(1, state_dim).to(dtype=torch.float32)
    actions = torch.zeros((0, act_dim), dtype=torch.float32)
    rewards = torch.zeros(0, dtype=torch.float32)
    timesteps = torch.tensor(0, dtype=torch.long).reshape(1, 1)
    episode_return, length, terminated = 0.0, 0, False
    while True:
        actions = torch.cat([actions, torch.zeros((1, act_dim))], dim=0)
        rewards = torch.cat([rewards, torch.zeros(1)])
        action = get_action(
            model,
            (states - state_mean) / state_std,
            actions,
            rewards,
            target_return,
            timesteps,
            checkpoint.context_length,
        )
        actions[-1] = action
        state, reward, terminated, truncated, _ = env.step(action.detach().cpu().numpy())
        cur_state = torch.from_numpy(state).reshape(1, state_dim).to(dtype=torch.float32)
        states = torch.cat([states, cur_state], dim=0)
        rewards[-1] = reward
        pred_return = target_return[0, -1] - (reward / scale)
        target_return = torch.cat([target_return, pred_return.reshape(1, 1)], dim=1)
        next_t = min(length + 1, max_t)
        timesteps = torch.cat([timesteps, torch.ones((1, 1), dtype=torch.long) * next_t], dim=1)
        episode_return += float(reward)
        length += 1
        if terminated or truncated:
            break
    env.close()
    return ReferenceEpisode(
        ret=episode_return,
        length=length,
        terminated=bool(terminated),
        actions=actions.numpy().copy(),
        wall_time_s=time.perf_counter() - start,
    )
