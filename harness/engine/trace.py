"""One episode's floats, step by step: where two runs of the same episode part (``harness trace``).

:func:`trace_episode` plays one episode exactly as a sweep plays it (the same reset seed, the same
batched simulator and policy, one slot) and records, for every step, a fingerprint of each
stage's floats in the order they are computed:

    observation  the simulator's observation (float64)
    state        the normalised state the model reads (float32)
    embed        the embedded tokens after the embedding layer norm (the whole window)
    layer0 ..    each transformer block's output (the residual stream; the last block's for the newest state)
    final        the final layer norm of the newest state token
    logits       the action head's output before the tanh
    action       the action sent to the simulator
    reward       the reward it returned

A fingerprint is the first 16 hex digits of the SHA-256 of the floats' little-endian bytes, so two
traces agree on a component exactly when its floats are bit-identical. :func:`first_difference`
names the first step and the first component of it that differ: the earliest point at which two
machines, modes or versions computed something else (everything after it may differ as a
consequence). Actions and rewards are also kept as numbers, to be read.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from harness.engine.context import Window
from harness.engine.policy import DTPolicy
from harness.engine.rollout import EpisodeSpec, run_episodes
from harness.io.checkpoints import Checkpoint
from harness.world.envs import EnvSpec

FORMAT = 1
"""Version of the trace file's layout."""
INPUTS = ("observation", "state")
OUTPUTS = ("action", "reward")


def fingerprint(x: torch.Tensor | np.ndarray) -> str:
    """First 16 hex digits of the SHA-256 of ``x``'s floats (little-endian bytes of its own dtype).

    >>> fingerprint(np.zeros(3, np.float32)) == fingerprint(torch.zeros(3))
    True
    >>> fingerprint(np.zeros(3, np.float32)) == fingerprint(-np.zeros(3, np.float32))
    False
    """
    a = x.detach().cpu().contiguous().numpy() if isinstance(x, torch.Tensor) else np.ascontiguousarray(x)
    return hashlib.sha256(a.astype(a.dtype.newbyteorder("<")).tobytes()).hexdigest()[:16]


@dataclass
class _Recorder:
    """Collects one step's fingerprints from the policy, the head's taps and the rollout's rewards."""

    steps: list[dict[str, Any]]

    def begin(self, observation: np.ndarray, state: torch.Tensor) -> None:
        self.steps.append({"step": len(self.steps), "observation": fingerprint(observation[:1])})
        self.steps[-1]["state"] = fingerprint(state[:1])

    def tap(self, name: str, x: torch.Tensor) -> None:
        self.steps[-1][name] = fingerprint(x[:1])

    def action(self, action: torch.Tensor) -> None:
        a = action[:1].float()
        self.steps[-1] |= {"action": fingerprint(a), "action_values": [float(v) for v in a[0]]}

    def reward(self, reward: np.ndarray) -> None:
        r = np.asarray(reward[:1], dtype=np.float64)
        self.steps[-1] |= {"reward": fingerprint(r), "reward_value": float(r[0])}


class _TracedPolicy(DTPolicy):
    """A :class:`DTPolicy` that reports what it reads and computes to a :class:`_Recorder` (same floats)."""

    def __init__(self, policy: DTPolicy, recorder: _Recorder) -> None:
        self.__dict__.update(policy.__dict__)
        self._recorder = recorder

    def normalize(self, observations: np.ndarray) -> torch.Tensor:
        state = super().normalize(observations)
        self._recorder.begin(np.asarray(observations), state)
        return state

    def act(self, window: Window, rows: torch.Tensor | None = None, raw: bool = False) -> torch.Tensor:
        out = super().act(window, rows, raw)
        self._recorder.action(out)
        return out


def trace_episode(
    ckpt: Checkpoint,
    env: EnvSpec,
    target: float,
    seed: int,
    precision: str = "fp32",
    max_steps: int | None = None,
) -> dict[str, Any]:
    """Play one episode (reset seed ``seed``, conditioned on ``target``) and fingerprint every step.

    Returns ``{"format", "env", "env_id", "checkpoint", "fingerprint", "target", "seed", "precision",
    "return", "length", "status", "components", "steps"}``: ``steps`` one dict per step (keys:
    ``components`` in order, plus ``action_values`` and ``reward_value``). The episode is the
    sweep's: its return equals the sweep's row for the same seed and target, bit for bit.
    ``max_steps`` cuts the episode short (a prefix of the same steps).
    """
    recorder = _Recorder([])
    policy = _TracedPolicy(DTPolicy(ckpt, precision=precision), recorder)
    head = policy.fast
    if head is not None:
        head.tap = recorder.tap
    try:
        (result,) = run_episodes(
            policy,
            env.env_id,
            [EpisodeSpec(target=float(target), seed=int(seed), index=0)],
            num_envs=1,
            max_episode_steps=max_steps,
            on_step=recorder.reward,
            pipelines=1,
        )
    finally:
        if head is not None:
            head.tap = None
    steps = [s for s in recorder.steps if "reward" in s]  # a step the simulator took
    taps = [
        k for k in (steps[0] if steps else {}) if k not in ("step", *INPUTS, *OUTPUTS, "action_values", "reward_value")
    ]
    return {
        "format": FORMAT,
        "env": env.name,
        "env_id": env.env_id,
        "checkpoint": ckpt.label,
        "fingerprint": ckpt.fingerprint(),
        "target": float(target),
        "seed": int(seed),
        "precision": precision,
        "return": result.ret,
        "length": result.length,
        "status": str(result.status),
        "components": [*INPUTS, *taps, *OUTPUTS],
        "steps": steps,
    }


def first_difference(a: dict[str, Any], b: dict[str, Any]) -> tuple[int, str] | None:
    """``(step, component)`` of the first step, and its first component in computing order, whose
    fingerprints differ between traces ``a`` and ``b``; None when they are identical.

    A trace that ends earlier differs at the step after its last (component ``"length"``); a
    component one trace has and the other lacks (another model depth) counts as differing.
    """
    order = list(dict.fromkeys([*a.get("components", []), *b.get("components", [])]))
    for i, (sa, sb) in enumerate(zip(a["steps"], b["steps"], strict=False)):
        for name in order:
            if sa.get(name) != sb.get(name):
                return i, name
    if len(a["steps"]) != len(b["steps"]):
        return min(len(a["steps"]), len(b["steps"])), "length"
    return None


def describe_difference(a: dict[str, Any], b: dict[str, Any], names: Sequence[str] = ("A", "B")) -> str:
    """One line: where ``a`` and ``b`` first differ, or that they are identical."""
    found = first_difference(a, b)
    if found is None:
        return f"identical: {len(a['steps'])} steps, {len(a.get('components', []))} components each, bit for bit"
    step, name = found
    order = a.get("components", [])
    same = order[: order.index(name)] if name in order else []
    detail = f" ({', '.join(same)} equal)" if same else ""
    if name == "length":
        return f"first difference: {names[0]} has {len(a['steps'])} steps, {names[1]} {len(b['steps'])}"
    values = ""
    if name in ("action", "logits") and step < min(len(a["steps"]), len(b["steps"])):
        va, vb = a["steps"][step].get("action_values"), b["steps"][step].get("action_values")
        values = f"; actions {va} vs {vb}"
    return f"first difference: step {step}, component {name}{detail}{values}"
