"""The batched rollout against the tutorial loop (the oracle) and against known answers."""

import threading

import numpy as np
import pytest
import torch

from harness.engine.policy import DTPolicy
from harness.engine.reference import run_reference_episode
from harness.engine.rollout import EpisodeSpec, run_episodes
from harness.io.checkpoints import load_checkpoint

from .conftest import make_checkpoint
from .fake_env import ENV_ID, FAULTY_ID, FaultyEnv, expected


@pytest.fixture(scope="module")
def counter_ckpt(tmp_path_factory):
    # K = 4 so the window slides; max_ep_len 6 so timesteps are clamped at 5 within an episode.
    folder = make_checkpoint(
        tmp_path_factory.mktemp("c") / "counter", ENV_ID, dims=(3, 2), context_length=4, max_ep_len=6, seed=3
    )
    return load_checkpoint(str(folder))


def episodes(targets, n_per_target, base_seed=0):
    return [EpisodeSpec(float(t), base_seed + k, k) for t in targets for k in range(n_per_target)]


@pytest.mark.parametrize("num_envs", [1, 3, 7, 64])
def test_known_returns_lengths_and_endings(counter_ckpt, num_envs):
    eps = episodes([100.0, 900.0], 12)
    results = run_episodes(DTPolicy(counter_ckpt), ENV_ID, eps, num_envs=num_envs, record_actions=True)
    assert [r.spec for r in results] == eps
    for r in results:
        ret, length, terminated = expected(r.spec.seed)
        assert r.ret == pytest.approx(ret, abs=1e-12)
        assert (r.length, r.terminated, r.truncated) == (length, terminated, not terminated)
        assert r.actions.shape == (length, 2)


def test_results_do_not_depend_on_num_envs(counter_ckpt):
    eps = episodes([0.0, 500.0, 2000.0], 5)
    runs = [run_episodes(DTPolicy(counter_ckpt), ENV_ID, eps, n, record_actions=True) for n in (1, 4, 15)]
    for other in runs[1:]:
        for a, b in zip(runs[0], other, strict=True):
            assert a.ret == b.ret and a.length == b.length
            # batch size changes the matmul blocking: float32 rounding only
            np.testing.assert_allclose(a.actions, b.actions, atol=1e-5, rtol=0)


def test_counter_matches_reference_loop(counter_ckpt):
    eps = episodes([50.0, 3000.0], 9)
    results = run_episodes(DTPolicy(counter_ckpt), ENV_ID, eps, num_envs=5, record_actions=True)
    for r in results:
        ref = run_reference_episode(counter_ckpt, ENV_ID, r.spec.target, r.spec.seed)
        assert ref.length == r.length and ref.ret == r.ret
        np.testing.assert_allclose(r.actions, ref.actions, atol=1e-5, rtol=0)


def test_target_changes_actions(counter_ckpt):
    """The return-to-go reaches the model: two targets give different actions."""
    lo, hi = run_episodes(
        DTPolicy(counter_ckpt), ENV_ID, [EpisodeSpec(0.0, 5), EpisodeSpec(5000.0, 5)], 2, record_actions=True
    )
    assert not np.allclose(lo.actions, hi.actions)


@pytest.mark.parametrize("pipelines", [2, 3])
def test_pipelines_give_the_same_episodes(tmp_path, pipelines):
    """Overlapped rollouts (threads, each with a share of the slots) return every episode bit for
    bit as one pipeline does, in the same order, and report each finished episode once."""
    ckpt = load_checkpoint(str(make_checkpoint(tmp_path / "p", "Hopper-v4", hidden=32, n_layer=2, context_length=8)))
    eps = [EpisodeSpec(t, 7 + k, k) for k, t in enumerate([100.0, 1800.0, 3600.0, 500.0, 2500.0, 7.0, 900.0])]
    policy = DTPolicy(ckpt)
    one = run_episodes(policy, "Hopper-v4", eps, num_envs=6, record_actions=True)
    seen, live, threads = [], [], set()
    act = policy.act

    def recording_act(*args, **kwargs):
        threads.add(threading.current_thread().name)
        return act(*args, **kwargs)

    policy.act = recording_act  # the instance attribute shadows the method: every forward is seen
    many = run_episodes(
        policy,
        "Hopper-v4",
        eps,
        num_envs=6,
        record_actions=True,
        pipelines=pipelines,
        on_finish=seen.extend,
        progress=lambda done, running: live.append(running),
    )
    assert [r.spec for r in many] == eps and sorted(id(r) for r in seen) == sorted(id(r) for r in many)
    for a, b in zip(one, many, strict=True):
        assert (a.ret, a.length) == (b.ret, b.length)
        np.testing.assert_array_equal(a.actions, b.actions)
    assert max(live) <= 6
    # the pipelines really ran side by side: one worker thread each (not the caller's thread)
    assert len(threads) == pipelines and all(t.startswith("harness-pipeline") for t in threads)


def test_default_runs_a_pipeline_per_thread_with_the_same_episodes(tmp_path):
    """By default (fixed-order products, 2 torch threads, 2 chunks of slots) the rollout runs two
    pipelines of one torch thread each, gives every episode bit for bit as one pipeline does,
    reports each env step once, and leaves torch's thread count as it found it."""
    from harness.engine.rollout import auto_pipelines

    ckpt = load_checkpoint(str(make_checkpoint(tmp_path / "p", "Hopper-v4", hidden=32, n_layer=2, context_length=8)))
    eps = [EpisodeSpec(float(t), 11 + k, k) for k, t in enumerate(np.linspace(0.0, 3600.0, 40))]
    policy = DTPolicy(ckpt)
    assert policy.fast.products == "fixed" and policy.fast.block == 16
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert auto_pipelines(policy, 32) == 2
        assert auto_pipelines(policy, 31) == 1  # one chunk of 16 each, at least
        assert auto_pipelines(policy, 32, env_workers=2) == 1  # the simulator is in other processes
        assert auto_pipelines(DTPolicy(ckpt, fast=False), 32) == 1  # stock forward: not batch invariant
        assert auto_pipelines(DTPolicy(ckpt, precision="bf16"), 128) == 1
        one = run_episodes(policy, "Hopper-v4", eps, num_envs=32, record_actions=True, pipelines=1)
        seen: dict[str, int] = {}
        act = policy.act

        def recording_act(*args, **kwargs):
            seen[threading.current_thread().name] = torch.get_num_threads()
            return act(*args, **kwargs)

        policy.act = recording_act
        steps: list[int] = []
        default = run_episodes(
            policy, "Hopper-v4", eps, num_envs=32, record_actions=True, progress=lambda d, s: steps.append(s)
        )
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    assert len(seen) == 2 and all(name.startswith("harness-pipeline") for name in seen)
    assert set(seen.values()) == {1}  # each pipeline's products on one thread
    assert [r.spec for r in default] == eps
    for a, b in zip(one, default, strict=True):
        assert (a.ret, a.length, a.status) == (b.ret, b.length, b.status)
        np.testing.assert_array_equal(a.actions, b.actions)
    assert sum(steps) == sum(r.length for r in default)  # every env step counted once


def test_ctrl_c_or_a_failing_pipeline_stops_every_pipeline_at_once(tmp_path):
    """Ctrl-C in the caller's thread (``interrupt_main``) while two pipelines run: KeyboardInterrupt
    comes back within a few steps, no pipeline thread is left running, torch's thread count is
    restored, and the episodes finished before it were handed to ``on_finish``. An exception in one
    pipeline stops the other at its next step and is raised as it is."""
    import signal
    import time

    ckpt = load_checkpoint(
        str(make_checkpoint(tmp_path / "p", "HalfCheetah-v4", hidden=32, n_layer=2, context_length=8))
    )
    eps = [EpisodeSpec(100.0, k, k) for k in range(8)]  # HalfCheetah: 1000 steps each, nothing ends early
    policy = DTPolicy(ckpt)
    steps: list[int] = []

    def interrupt_once(done: int, n: int) -> None:
        steps.append(n)
        if len(steps) == 20:  # SIGINT to the caller's thread, as a terminal's Ctrl-C
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    started = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        run_episodes(policy, "HalfCheetah-v4", eps, num_envs=8, pipelines=2, progress=interrupt_once)
    assert time.perf_counter() - started < 60 and len(steps) < 200  # not the 2,000 steps to the end
    assert not [t for t in threading.enumerate() if t.name.startswith("harness-pipeline")]
    assert torch.get_num_threads() == 1  # the suite's setting, restored

    calls = {"n": 0}
    act = policy.act

    def failing_act(*args, **kwargs):
        if threading.current_thread().name.endswith("_1"):
            calls["n"] += 1
            if calls["n"] == 5:
                raise RuntimeError("pipeline 1 broke")
        return act(*args, **kwargs)

    policy.act = failing_act
    steps.clear()
    with pytest.raises(RuntimeError, match="pipeline 1 broke"):
        run_episodes(policy, "HalfCheetah-v4", eps, num_envs=8, pipelines=2, progress=lambda d, n: steps.append(n))
    assert len(steps) < 200


@pytest.mark.parametrize("env_id", ["Hopper-v4", "Walker2d-v4"])
@pytest.mark.parametrize("num_envs", [1, 16])
def test_mujoco_matches_reference_loop(tmp_path, env_id, num_envs):
    """Same checkpoint, target and seed: every action within 1e-5 of the tutorial loop's, with
    other episodes at other targets sharing the batch (stock forward; the fast path is checked
    step by step against it in tests/test_fast.py)."""
    ckpt = load_checkpoint(str(make_checkpoint(tmp_path / "m", env_id, hidden=32, n_layer=2, context_length=8)))
    eps = [EpisodeSpec(t, 40 + k, k) for k, t in enumerate([100.0, 1800.0, 3600.0, 500.0, 2500.0, 7.0])]
    results = run_episodes(DTPolicy(ckpt, fast=False), env_id, eps, num_envs=num_envs, record_actions=True)
    for r in results[:4]:
        ref = run_reference_episode(ckpt, env_id, r.spec.target, r.spec.seed)
        assert ref.length == r.length > 8  # longer than the context: the window slides
        np.testing.assert_allclose(r.actions, ref.actions, atol=1e-5, rtol=0)
        assert r.ret == pytest.approx(ref.ret, abs=1e-6)


def test_failures_stay_inside_their_episode(counter_ckpt):
    """Unstable states, crashing steps and resets end only their own episode, with a status;
    a transient crash is retried once on a fresh env and then matches the clean episode."""
    FaultyEnv.crashed_once.clear()
    eps = episodes([100.0, 900.0], 10)  # seeds 0..9 twice
    results = run_episodes(DTPolicy(counter_ckpt), FAULTY_ID, eps, num_envs=3)
    assert [r.spec for r in results] == eps
    for r in results:
        kind = r.spec.seed % 10
        if kind == 1:
            assert (r.status, r.length) == ("unstable_state", 2)
        elif kind == 2:
            assert r.status == "env_error" and "simulator crashed" in r.error and r.length == 2
        elif kind == 4:
            assert r.status == "env_error" and "reset failed twice" in r.error and r.length == 0
        else:  # clean, or recovered after one transient crash
            ret, length, terminated = expected(r.spec.seed)
            assert (r.status, r.length, r.terminated) == ("ok", length, terminated)
            assert r.ret == pytest.approx(ret, abs=1e-12)
        assert not (r.status != "ok" and (r.terminated or r.truncated))


class _NaNAbove(DTPolicy):
    """Returns NaN actions for slots whose newest return-to-go is above a threshold."""

    def act(self, window, rows=None):
        acts = super().act(window, rows)
        rtg = window.returns_to_go[:, -1, 0] if rows is None else window.returns_to_go[rows, -1, 0]
        return torch.where((rtg > 0.5)[:, None], torch.full_like(acts, float("nan")), acts)


def test_nan_actions_end_only_their_episodes(counter_ckpt):
    eps = episodes([100.0, 900.0], 6)  # scale 1000: 0.1 and 0.9
    results = run_episodes(_NaNAbove(counter_ckpt), ENV_ID, eps, num_envs=4)
    for r in results:
        if r.spec.target > 500:
            assert (r.status, r.length, r.ret) == ("nan_action", 0, 0.0)
        else:
            assert (r.status, r.length) == ("ok", expected(r.spec.seed)[1])


def test_mujoco_instability_is_caught():
    """An exploding MuJoCo state (MuJoCo's instability warning) ends the episode as unstable_state."""
    from harness.world.envs import GuardedEnv, make_env

    env = GuardedEnv(make_env("HalfCheetah-v4"))
    env.reset(seed=0)
    env.unwrapped.data.qvel[:] = 1e12
    _, _, terminated, _, info = env.step(np.zeros(6, dtype=np.float32))
    assert terminated and info["harness_status"] == "unstable_state"
    env.reset(seed=1)
    _, _, terminated, _, info = env.step(np.zeros(6, dtype=np.float32))
    assert not terminated and "harness_status" not in info


@pytest.mark.parametrize("simulator", ["gymnasium", "batched"])
def test_idle_slots_are_neither_stepped_nor_reset(tmp_path, monkeypatch, simulator):
    """Episodes of very different lengths on 4 slots: the envs simulate exactly the episodes'
    steps and reset exactly once per episode (a slot with nothing pending costs nothing), with
    Gymnasium's envs (the fake env) and with the batched MuJoCo stepper (Hopper)."""
    from harness.engine import rollout

    made = []

    def keep(*args, **kwargs):
        made.append(rollout.make_slots.__wrapped__(*args, **kwargs))
        return made[-1]

    keep.__wrapped__ = rollout.make_slots
    monkeypatch.setattr(rollout, "make_slots", keep)
    if simulator == "gymnasium":
        ckpt = load_checkpoint(str(make_checkpoint(tmp_path / "m", "Hopper-v4", dims=(3, 2))))
        eps = [EpisodeSpec(100.0, seed, k) for k, seed in enumerate([0, 5, 1, 4, 0, 8])]  # lengths 3 + seed % 9
        results = run_episodes(DTPolicy(ckpt), ENV_ID, eps, num_envs=4, simulator=simulator)
        assert [r.length for r in results] == [3, 8, 4, 7, 3, 9]  # short episodes' slots go idle
    else:
        ckpt = load_checkpoint(str(make_checkpoint(tmp_path / "m", "Hopper-v4")))
        eps = [EpisodeSpec(t, k, k) for k, t in enumerate([100.0, 3600.0, 50.0, 2000.0, 10.0, 900.0])]
        results = run_episodes(DTPolicy(ckpt), "Hopper-v4", eps, num_envs=4, max_episode_steps=40)
    lengths = [r.length for r in results]
    assert type(made[0]).__name__ == {"gymnasium": "SlotVectorEnv", "batched": "MujocoBatch"}[simulator]
    assert (made[0].env_steps, made[0].env_resets) == (sum(lengths), len(eps))
