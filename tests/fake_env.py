"""A tiny deterministic env with known returns, lengths and endings, for exact rollout tests."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

ENV_ID = "HarnessTest/Counter-v0"
TIME_LIMIT = 9


class CounterEnv(gym.Env):
    """Observation ``(3,)``: [t / 10, seed mod 3, sum of the last action]; action ``(2,)``.

    Reward at step t (0-based) is ``0.5 + 0.1 * (seed % 3) + 0.01 * t``; the episode terminates
    after ``3 + seed % 9`` steps unless the time limit (9) truncates it first.
    """

    observation_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float64)
    action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.s = int(seed) if seed is not None else int(self.np_random.integers(1000))
        self.t = 0
        return np.array([0.0, self.s % 3, 0.0]), {}

    def step(self, action):
        reward = 0.5 + 0.1 * (self.s % 3) + 0.01 * self.t
        self.t += 1
        obs = np.array([self.t / 10, self.s % 3, float(np.sum(action))])
        return obs, reward, self.t >= expected_length(self.s), False, {}


def expected_length(seed: int) -> int:
    return 3 + seed % 9


def expected(seed: int) -> tuple[float, int, bool]:
    """(return, length, terminated) of the episode reset with ``seed``."""
    length = min(expected_length(seed), TIME_LIMIT)
    ret = sum(0.5 + 0.1 * (seed % 3) + 0.01 * t for t in range(length))
    return ret, length, expected_length(seed) <= TIME_LIMIT


if ENV_ID not in gym.registry:
    gym.register(ENV_ID, entry_point=CounterEnv, max_episode_steps=TIME_LIMIT)


FAULTY_ID = "HarnessTest/Faulty-v0"


class FaultyEnv(CounterEnv):
    """CounterEnv with failures chosen by the reset seed (checked by the rollout tests).

    - ``seed % 10 == 1``: non-finite observation at step 2 (an unstable simulation);
    - ``seed % 10 == 2``: ``step`` raises at step 2, every time (fails again on the fresh env);
    - ``seed % 10 == 3``: ``step`` raises at step 2 the first time only (the retry succeeds);
    - ``seed % 10 == 4``: ``reset`` raises every time.
    """

    crashed_once: set[int] = set()

    def reset(self, *, seed=None, options=None):
        if seed is not None and seed % 10 == 4:
            raise RuntimeError(f"reset exploded for seed {seed}")
        return super().reset(seed=seed, options=options)

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        if self.t == 2:
            if self.s % 10 == 1:
                obs = obs * np.nan
            elif self.s % 10 == 2:
                raise RuntimeError("simulator crashed")
            elif self.s % 10 == 3 and self.s not in FaultyEnv.crashed_once:
                FaultyEnv.crashed_once.add(self.s)
                raise RuntimeError("transient crash")
        return obs, reward, terminated, truncated, info


if FAULTY_ID not in gym.registry:
    gym.register(FAULTY_ID, entry_point=FaultyEnv, max_episode_steps=TIME_LIMIT)
