"""Counterfactual return probes: does a checkpoint read its return tokens? No environment needed.

Windows of K timesteps are cut from logged trajectories (a dataset, or episodes the checkpoint
played). Each is replayed with its return-to-go tokens set as if the episode had been run for
another target return (``(target - reward so far) / scale`` at every step), everything else
fixed, for a grid of targets, all in one batched forward. Two things are measured:

- **action change**: per window, the mean over neighbouring grid targets of the L2 distance
  between the two predicted actions, per 100 normalised points of target (the span from random
  to expert play); its mean over windows with a 95% bootstrap CI, and the share of windows whose
  action does not move at all (bit-equal at every target: a return-blind model);
- **attention to return tokens**: the share of attention the newest state token (whose output is
  the action) pays to the return tokens, per layer and head, from the stock ``transformers``
  forward with ``output_attentions`` (padding is masked, so it gets none).

A return-blind checkpoint (its return embedding zeroed) reads as exactly 0 change: its windows'
embeddings do not depend on the return tokens, so the forward sees bit-equal inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from harness.core import stats
from harness.core.errors import HarnessError
from harness.engine.context import Window
from harness.engine.policy import DTPolicy
from harness.engine.rollout import EpisodeSpec, run_episodes
from harness.io.data import OfflineDataset
from harness.world.envs import EnvSpec, make_env

PER = 100.0
"""Action change is reported per this many normalised points of target (random to expert)."""


@dataclass(frozen=True)
class ProbeWindows:
    """Windows cut from trajectories, raw (not normalised), left-padded with zeros.

    Attributes:
        states: ``(n, K, state_dim)`` float32 observations.
        actions: ``(n, K, act_dim)`` float32; the newest one is the 0 placeholder.
        reward_before: ``(n, K)`` float64 return collected before each step (within its trajectory).
        timesteps: ``(n, K)`` int64, clamped to ``max_ep_len - 1``.
        mask: ``(n, K)`` int64, 0 on padding.
    """

    states: np.ndarray
    actions: np.ndarray
    reward_before: np.ndarray
    timesteps: np.ndarray
    mask: np.ndarray

    def __len__(self) -> int:
        return len(self.states)


def windows_from_dataset(data: OfflineDataset, k: int, max_ep_len: int, n: int, seed: int = 0) -> ProbeWindows:
    """``n`` windows ending at timesteps drawn uniformly over every transition of ``data``.

    Raises:
        HarnessError: the dataset holds no transitions or ``n`` < 1.
    """
    if n < 1 or data.num_transitions == 0:
        raise HarnessError(f"no windows to probe ({n} asked for, {data.num_transitions} transitions in the data)")
    rng = np.random.default_rng(seed)
    ends = np.sort(rng.choice(data.num_transitions, size=min(n, data.num_transitions), replace=False))
    traj = np.searchsorted(data.starts, ends, side="right") - 1
    m = len(ends)
    states = np.zeros((m, k, data.state_dim), np.float32)
    actions = np.zeros((m, k, data.act_dim), np.float32)
    before = np.zeros((m, k), np.float64)
    steps = np.zeros((m, k), np.int64)
    mask = np.zeros((m, k), np.int64)
    for i, (end, j) in enumerate(zip(ends, traj, strict=True)):
        start = int(data.starts[j])
        first = max(start, int(end) - k + 1)
        width = int(end) - first + 1
        cum = np.concatenate([[0.0], np.cumsum(data.rewards[start:end].astype(np.float64))])  # before each step
        states[i, k - width :] = data.observations[first : end + 1]
        actions[i, k - width : k - 1] = data.actions[first:end]  # the newest action: the placeholder
        before[i, k - width :] = cum[first - start : end - start + 1]
        steps[i, k - width :] = np.minimum(np.arange(first - start, end - start + 1), max_ep_len - 1)
        mask[i, k - width :] = 1
    return ProbeWindows(states, actions, before, steps, mask)


def played_trajectories(policy: DTPolicy, env_id: str, target: float, episodes: int, seed: int = 0) -> OfflineDataset:
    """Episodes the checkpoint plays at ``target`` (reset seeds ``seed + k``), as a dataset: the
    batched rollout's actions replayed on Gymnasium's env for the observations and rewards."""
    specs = [EpisodeSpec(target, seed + k, k) for k in range(episodes)]
    results = run_episodes(policy, env_id, specs, num_envs=min(episodes, 64), record_actions=True)
    trajectories = []
    for res in results:
        env = make_env(env_id)
        obs, _ = env.reset(seed=res.spec.seed)
        rows: dict[str, list] = {"observations": [], "actions": [], "rewards": [], "dones": []}
        for a in res.actions:
            rows["observations"].append(obs)
            obs, reward, terminated, _, _ = env.step(a)
            rows["actions"].append(a)
            rows["rewards"].append(reward)
            rows["dones"].append(float(terminated))
        env.close()
        if rows["rewards"]:
            trajectories.append(rows)
    return OfflineDataset.from_trajectories(trajectories)


@dataclass(frozen=True)
class ProbeResult:
    """What :func:`probe` measured.

    Attributes:
        summary: one row: windows, targets, ``action_change`` mean and CI (per :data:`PER`
            normalised points), ``frozen_share`` (windows whose action never moves).
        curve: per grid target: its normalised score and the mean L2 distance of the action from
            the action at the lowest target, with CI.
        attention: per layer and head: the newest state token's attention to return tokens, mean and CI.
    """

    summary: pd.DataFrame
    curve: pd.DataFrame
    attention: pd.DataFrame


def probe(
    policy: DTPolicy, env: EnvSpec, windows: ProbeWindows, targets: Sequence[float], seed: int = 0
) -> ProbeResult:
    """Replay ``windows`` at every target of ``targets`` (raw returns, at least two, distinct).

    Raises:
        HarnessError: fewer than two distinct targets, or no windows.
    """
    grid = np.array(sorted(set(float(t) for t in targets)), dtype=np.float64)
    if len(grid) < 2:
        raise HarnessError(f"a probe needs at least two distinct targets, got {list(targets)}; pass --targets A B ...")
    if len(windows) == 0:
        raise HarnessError("no windows to probe; pass a dataset with --data or play episodes with --episodes N")
    ck = policy.checkpoint
    n, k = windows.mask.shape
    dev = policy.device
    states = policy.normalize(windows.states.reshape(-1, ck.state_dim)).reshape(n, k, ck.state_dim)
    mask3 = torch.as_tensor(windows.mask, device=dev)[..., None]
    states = states * mask3
    acts = torch.as_tensor(windows.actions, device=dev)
    steps = torch.as_tensor(windows.timesteps, device=dev)
    mask = torch.as_tensor(windows.mask, device=dev)
    rtg = [
        (torch.as_tensor((g - windows.reward_before) / ck.return_scale, dtype=torch.float32, device=dev) * mask)[
            ..., None
        ]
        for g in grid
    ]
    batch = Window(
        states.repeat(len(grid), 1, 1), acts.repeat(len(grid), 1, 1), torch.cat(rtg), steps.repeat(len(grid), 1),
        mask.repeat(len(grid), 1),
    )  # fmt: skip
    out = policy.act(batch).reshape(len(grid), n, ck.act_dim).double().cpu().numpy()  # (G, n, act_dim)
    scores = np.asarray(env.normalized_score(grid), dtype=np.float64)
    steps_l2 = np.linalg.norm(np.diff(out, axis=0), axis=2)  # (G-1, n)
    per_window = (steps_l2 / np.diff(scores)[:, None] * PER).mean(axis=0)  # (n,)
    frozen = np.all(out == out[:1], axis=(0, 2))  # (n,)
    lo, hi = stats.bootstrap_ci(per_window, seed=seed)
    summary = pd.DataFrame(
        [
            {
                "env": env.name, "checkpoint": ck.label, "windows": n, "targets": len(grid),
                "target_low": grid[0], "target_high": grid[-1], "action_change": float(per_window.mean()),
                "action_change_ci_low": lo, "action_change_ci_high": hi, "frozen_share": float(frozen.mean()),
            }
        ]
    )  # fmt: skip
    dist = np.linalg.norm(out - out[:1], axis=2)  # (G, n)
    curve = pd.DataFrame(
        [
            {"target": g, "target_score": s, "action_distance": float(d.mean())}
            | dict(
                zip(
                    ("action_distance_ci_low", "action_distance_ci_high"), stats.bootstrap_ci(d, seed=seed), strict=True
                )
            )
            for g, s, d in zip(grid, scores, dist, strict=True)
        ]
    )
    return ProbeResult(summary, curve, attention_to_returns(policy, windows, float(np.median(grid)), seed))


@torch.inference_mode()
def attention_to_returns(
    policy: DTPolicy, windows: ProbeWindows, target: float, seed: int = 0, chunk: int = 64
) -> pd.DataFrame:
    """Per layer and head: the share of the newest state token's attention on return tokens.

    Stock ``transformers`` forward with eager attention and ``output_attentions``, the windows'
    return tokens set for ``target`` (raw return); token ``3t`` is a return, ``3t+1`` a state,
    ``3t+2`` an action.
    """
    model, ck = policy.model, policy.checkpoint
    n, k = windows.mask.shape
    previous = getattr(model.config, "_attn_implementation", None)
    _set_attention(model, "eager")
    try:
        shares = []
        for i in range(0, n, chunk):
            sl = slice(i, i + chunk)
            m = torch.as_tensor(windows.mask[sl])
            states = policy.normalize(windows.states[sl].reshape(-1, ck.state_dim)).reshape(-1, k, ck.state_dim).float()
            rtg = torch.as_tensor((target - windows.reward_before[sl]) / ck.return_scale, dtype=torch.float32)
            out = model(
                states=(states * m[..., None]).to(policy.device),
                actions=torch.as_tensor(windows.actions[sl]).to(policy.device),
                returns_to_go=(rtg * m)[..., None].to(policy.device),
                timesteps=torch.as_tensor(windows.timesteps[sl]).to(policy.device),
                attention_mask=m.to(policy.device),
                output_attentions=True,
                return_dict=True,
            )
            newest = 3 * (k - 1) + 1
            layer_shares = [a[:, :, newest, 0::3].sum(-1).double().cpu() for a in out.attentions]  # (b, heads) each
            shares.append(torch.stack(layer_shares, dim=1))  # (b, layers, heads)
    finally:
        _set_attention(model, previous)
    share = torch.cat(shares).numpy()  # (n, layers, heads)
    rows = []
    for layer in range(share.shape[1]):
        for head in range(share.shape[2]):
            x = share[:, layer, head]
            lo, hi = stats.bootstrap_ci(x, seed=seed)
            rows.append(
                {"layer": layer, "head": head, "attention_to_returns": float(x.mean()), "ci_low": lo, "ci_high": hi}
            )
    return pd.DataFrame(rows)


def _set_attention(model: torch.nn.Module, impl: str | None) -> None:
    """Switch the attention implementation (eager exposes attention weights), across transformers versions."""
    if impl is None:
        return
    setter = getattr(model, "set_attn_implementation", None)
    if callable(setter):
        try:
            setter(impl)
            return
        except (ValueError, AttributeError, TypeError):
            pass
    for cfg in (model.config, getattr(model.encoder, "config", None)):
        if cfg is not None:
            cfg._attn_implementation = impl
