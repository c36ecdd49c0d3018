"""Offline datasets (schema, parquet, summary) and behaviour-policy collection."""

from pathlib import Path

import numpy as np
import pytest

from harness.commands import collect
from harness.core.errors import HarnessError
from harness.io.data import OfflineDataset
from harness.world.envs import resolve_env

BEHAVIOR = Path(__file__).resolve().parents[2] / "shared" / "behavior"


def toy(lengths=(3, 5, 2)):
    rng = np.random.default_rng(0)
    return OfflineDataset.from_trajectories(
        {
            "observations": rng.normal(size=(n, 4)),
            "actions": rng.normal(size=(n, 2)),
            "rewards": np.full(n, float(i + 1)),
            "dones": np.r_[np.zeros(n - 1), 1.0],
        }
        for i, n in enumerate(lengths)
    )


def test_parquet_round_trip_and_summary(tmp_path):
    ds = toy()
    back = OfflineDataset.from_parquet(ds.to_parquet(tmp_path / "d.parquet"))
    for name in ("observations", "actions", "rewards", "dones", "starts"):
        np.testing.assert_array_equal(getattr(back, name), getattr(ds, name))
    s = back.summary("toy")
    assert (s.trajectories, s.transitions) == (3, 10)
    assert (s.return_min, s.return_median, s.return_max) == (3.0, 6.0, 10.0)
    assert s.mean_length == pytest.approx(10 / 3)
    mean, std = ds.state_stats()
    np.testing.assert_allclose(std, ds.observations.std(0) + 1e-6, rtol=1e-6)


def test_bad_datasets(tmp_path):
    with pytest.raises(HarnessError, match="does not exist"):
        OfflineDataset.from_parquet(tmp_path / "none.parquet")
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(HarnessError, match="not a readable parquet"):
        OfflineDataset.from_parquet(tmp_path / "bad.parquet")
    with pytest.raises(HarnessError, match="must be equal"):
        OfflineDataset.from_trajectories(
            [
                {
                    "observations": np.zeros((3, 2)),
                    "actions": np.zeros((2, 1)),
                    "rewards": np.zeros(3),
                    "dones": np.zeros(3),
                }
            ]
        )


def test_random_source_is_reproducible_and_well_formed():
    env = resolve_env("hopper")
    a = collect.rollout_source(env, None, 0.0, 300, seed=5, num_envs=3)
    b = collect.rollout_source(env, None, 0.0, 300, seed=5, num_envs=3)
    assert sum(len(t["rewards"]) for t in a) >= 300
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x["observations"], y["observations"])
    for t in a:
        assert t["observations"].shape == (len(t["rewards"]), 11) and t["actions"].shape == (len(t["rewards"]), 3)
        assert t["dones"][:-1].sum() == 0 and np.abs(t["actions"]).max() <= 1.0
    ds = OfflineDataset.from_trajectories(a)
    assert ds.returns().max() < 200  # a random hopper falls at once


needs_behavior = pytest.mark.skipif(not BEHAVIOR.is_dir(), reason="shared/behavior agents not present")


@needs_behavior
def test_zoo_agent_walks(tmp_path):
    env = resolve_env("hopper")
    policy = collect.load_agent(BEHAVIOR, env, "ppo")  # ppo has a vecnormalize.pkl
    trajs = collect.rollout_source(env, policy, 0.0, 1000, seed=1000, num_envs=1)
    # the README of shared/behavior: hopper ppo reaches about 2438 with seed 1000
    assert trajs[0]["rewards"].sum() == pytest.approx(2438, abs=30)


@needs_behavior
def test_agent_errors(tmp_path, capsys):
    wrong = tmp_path / "agents" / "walker2d" / "sac"
    wrong.mkdir(parents=True)
    (wrong / "model.zip").write_bytes((BEHAVIOR / "hopper" / "sac" / "model.zip").read_bytes())
    with pytest.raises(HarnessError, match=r"use an agent trained on walker2d"):
        collect.load_agent(tmp_path / "agents", resolve_env("walker2d"), "sac")
    with pytest.raises(HarnessError, match="no agent file"):
        collect.load_agent(tmp_path / "agents", resolve_env("hopper"), "sac")
    (tmp_path / "agents" / "hopper" / "sac").mkdir(parents=True)
    (tmp_path / "agents" / "hopper" / "sac" / "model.zip").write_bytes(b"garbage")
    with pytest.raises(HarnessError, match="could not load agent"):
        collect.load_agent(tmp_path / "agents", resolve_env("hopper"), "sac")
    code = collect.main(["--env", "hopper", "--agents", str(tmp_path / "none"), "--out", str(tmp_path / "x.parquet")])
    assert code == 2 and capsys.readouterr().err.count("\n") == 1


def test_collect_cli_random_only(tmp_path):
    out = tmp_path / "r.parquet"
    assert (
        collect.main(
            ["--env", "hopper", "--algos", "--random-transitions", "200", "--num-envs", "2", "--out", str(out)]
        )
        == 0
    )
    ds = OfflineDataset.from_parquet(out)
    assert ds.num_transitions >= 200 and out.with_suffix(".json").exists()
    assert collect.main(["--env", "hopper", "--algos", "--random-transitions", "10", "--out", str(out)]) == 2


@pytest.mark.parametrize(("handover", "takeover"), [(1.0, 0.0), (0.0, 1.0)])
def test_handover_and_takeover_switch_once(handover, takeover):
    env = resolve_env("halfcheetah")  # never terminates: every episode reaches its switch

    def constant(obs):
        return np.full((len(obs), env.act_dim), 0.5)

    trajs = collect.rollout_source(env, constant, 0.0, 2000, seed=3, num_envs=2, handover=handover, takeover=takeover)
    for t in trajs:
        agent = np.all(t["actions"] == 0.5, axis=1)  # (T,) whether the agent acted at each step
        changes = np.flatnonzero(np.diff(agent.astype(int)))
        assert len(changes) <= 1
        if len(changes):
            assert agent[0] == (handover > 0)  # agent first for hand-over, random first for take-over
    assert any(0 < t["actions"].shape[0] and len(np.unique(np.all(t["actions"] == 0.5, axis=1))) == 2 for t in trajs)


def test_cli_flags_reach_the_rollout(tmp_path, monkeypatch):
    """--takeover and --action-scale change what is collected (they were once parsed and dropped)."""
    env = resolve_env("halfcheetah")
    monkeypatch.setattr(
        "harness.offline.behavior.load_agent", lambda *_: lambda obs: np.full((len(obs), env.act_dim), 0.8)
    )
    out = tmp_path / "d.parquet"
    argv = ["--env", "halfcheetah", "--algos", "sac", "--transitions-per-source", "2000", "--num-envs", "2"]
    assert collect.main([*argv, "--takeover", "1", "--action-scale", "0.5", "--out", str(out)]) == 0
    ds = OfflineDataset.from_parquet(out)
    agent = np.all(ds.actions == 0.4, axis=1)  # (N,) scaled agent steps: 0.5 * 0.8
    assert agent.any() and not agent.all() and not np.any(np.all(ds.actions == 0.8, axis=1))
    first = ds.actions[ds.starts[:-1]]  # (trajectories, act_dim) random plays first in every episode
    assert not np.any(np.all(first == 0.4, axis=1))
    assert collect.main([*argv, "--action-scale", "1.5", "--out", str(tmp_path / "e.parquet")]) == 2


def test_tilt_starts_episodes_pitched_at_rest(tmp_path, monkeypatch):
    """--tilt: that fraction of episodes starts with the root pitch in --tilt-range, velocities 0."""
    env = resolve_env("halfcheetah")  # observation: qpos[1:] (rootz, rooty=pitch, joints), then qvel

    def constant(obs):
        return np.full((len(obs), env.act_dim), 0.3)

    trajs = collect.rollout_source(env, constant, 0.0, 1000, seed=1, num_envs=2, tilt=1.0, tilt_range=(0.9, 1.1))
    first = np.stack([t["observations"][0] for t in trajs])  # (episodes, 17)
    assert len(first) >= 2 and np.all((first[:, 1] >= 0.9) & (first[:, 1] <= 1.1))
    np.testing.assert_array_equal(first[:, 8:], 0.0)
    plain = collect.rollout_source(env, constant, 0.0, 1000, seed=1, num_envs=2)
    assert np.all(np.abs(np.stack([t["observations"][0] for t in plain])[:, 1]) < 0.2)  # reset noise only
    mixed = collect.rollout_source(env, constant, 0.0, 6000, seed=1, num_envs=2, tilt=0.5)
    pitched = [abs(t["observations"][0, 1]) >= 0.6 for t in mixed]
    assert any(pitched) and not all(pitched)
    again = collect.rollout_source(env, constant, 0.0, 6000, seed=1, num_envs=2, tilt=0.5)
    assert all(np.array_equal(a["observations"], b["observations"]) for a, b in zip(mixed, again, strict=True))
    # the CLI passes it through and checks it
    monkeypatch.setattr("harness.offline.behavior.load_agent", lambda *_: constant)
    argv = ["--env", "halfcheetah", "--algos", "sac", "--transitions-per-source", "1000", "--num-envs", "2"]
    assert collect.main([*argv, "--tilt", "1", "--tilt-range", "0.7", "0.8", "--out", str(tmp_path / "t.parquet")]) == 0
    ds = OfflineDataset.from_parquet(tmp_path / "t.parquet")
    assert np.all((ds.observations[ds.starts[:-1], 1] >= 0.7) & (ds.observations[ds.starts[:-1], 1] <= 0.8))
    assert collect.main([*argv, "--tilt", "1.5", "--out", str(tmp_path / "u.parquet")]) == 2
    assert collect.main([*argv, "--tilt-range", "1", "0", "--out", str(tmp_path / "v.parquet")]) == 2


@pytest.mark.slow
def test_d4rl_recipe_tiny_scale_and_resume(tmp_path, capsys):
    """The D4RL recipe end to end at a tiny scale: SAC stops at the threshold, medium-replay is
    the replay buffer's finished episodes, medium is a sampled rollout; an unreachable threshold
    is one line (exit 2) and a rerun with more steps resumes from the checkpoint."""
    import json

    out = tmp_path / "d4rl"
    tiny = ["--env", "hopper", "--recipe", "d4rl", "--out", str(out), "--eval-every", "300", "--learning-starts", "100"]
    assert collect.main([*tiny, "--max-steps", "300", "--threshold", "1e9"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: SAC on Hopper-v4 did not reach") and "\n" not in err and "--max-steps" in err
    log = json.loads((out / "sac-hopper" / "log.json").read_text())
    assert [e["steps"] for e in log["evals"]] == [300]
    assert collect.main([*tiny, "--max-steps", "600", "--threshold", "1e9"]) == 2
    log = json.loads((out / "sac-hopper" / "log.json").read_text())
    assert [e["steps"] for e in log["evals"]] == [300, 600]  # resumed: 300 more steps, not 600
    # a threshold the last evaluation meets: no more training, the datasets are written
    assert collect.main([*tiny, "--max-steps", "600", "--threshold=-1e9", "--medium-transitions", "200"]) == 0
    replay = OfflineDataset.from_parquet(out / "hopper-medium-replay.parquet")
    meta = json.loads((out / "hopper-medium-replay.json").read_text())
    assert replay.num_transitions + meta["recipe"]["medium_replay_left_out"] == 600
    assert np.all(replay.dones[replay.starts[1:] - 1] == 1)  # hopper's early episodes all fall
    medium = OfflineDataset.from_parquet(out / "hopper-medium.parquet")
    assert medium.num_transitions >= 200
    assert json.loads((out / "hopper-medium.json").read_text())["summary"]["name"] == "hopper-medium"
