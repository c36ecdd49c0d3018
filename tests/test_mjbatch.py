"""The batched simulator against Gymnasium's envs: bit-equal observations, rewards, terminations
and truncations over whole episodes, every task, v4 and v5, with slots at different points."""

import numpy as np
import pytest

from harness.core.schema import Status
from harness.world.envs import make_env
from harness.world.mjbatch import SUPPORTED, MujocoBatch


def gym_episode(env_id: str, seed: int, actions: np.ndarray, limit: int):
    env = make_env(env_id, limit)
    obs, _ = env.reset(seed=seed)
    out = [(obs, 0.0, False, False)]
    for a in actions:
        obs, r, term, trunc, _ = env.step(a)
        out.append((obs, r, term, trunc))
        if term or trunc:
            break
    env.close()
    return out


@pytest.mark.parametrize("env_id", sorted(SUPPORTED))
def test_bit_equal_to_gymnasium(env_id):
    limit = 300 if env_id.startswith("HalfCheetah") else 1000
    rng = np.random.default_rng(0)
    seeds = [11, 12, 13, 14]
    scales = [1.0, 0.3, 0.05, 0.6]  # different strengths: the slots' episodes end at different steps
    probe = make_env(env_id)
    act_dim = probe.action_space.shape[0]
    probe.close()
    actions = [(s * rng.uniform(-1, 1, (limit, act_dim))).astype(np.float32) for s in scales]
    expected = [gym_episode(env_id, s, a, limit) for s, a in zip(seeds, actions, strict=True)]

    batch = MujocoBatch(env_id, len(seeds), max_episode_steps=limit, threads=2)
    obs, _ = batch.reset(seed=seeds)
    live = np.ones(len(seeds), dtype=bool)
    got = [[(obs[i], 0.0, False, False)] for i in range(len(seeds))]
    t = 0
    while live.any():
        step = np.stack([a[min(t, limit - 1)] for a in actions])
        obs, r, term, trunc, info = batch.step(step, live)
        assert info == {}
        for i in np.flatnonzero(live):
            got[i].append((obs[i], r[i], term[i], trunc[i]))
        live &= ~(term | trunc)
        t += 1
    for e, g in zip(expected, got, strict=True):
        assert len(e) == len(g)
        for (eo, er, et, etr), (go, gr, gt, gtr) in zip(e, g, strict=True):
            np.testing.assert_array_equal(go, eo)
            assert (gr, gt, gtr) == (er, et, etr)
    lengths = {len(g) for g in got}
    assert len(lengths) > 1 or env_id.startswith("HalfCheetah")  # slots ended at different steps


def test_reset_by_mask_and_unstable_state():
    batch = MujocoBatch("Hopper-v4", 3)
    obs, _ = batch.reset(seed=[1, 2, 3])
    again, _ = batch.reset(seed=[None, 2, None], options={"reset_mask": np.array([False, True, False])})
    np.testing.assert_array_equal(again[1], obs[1])  # same seed, same start
    assert not again[0].any() and not again[2].any()  # not reset: zero rows, untouched slots
    acts = np.zeros((3, 3), dtype=np.float32)
    acts[2] = np.nan  # MuJoCo flags the bad control with a warning and resets that slot's data
    _, _, term, _, info = batch.step(acts, np.array([False, True, True]))
    assert list(info["harness_status"]) == ["", "", Status.UNSTABLE_STATE.value] and term[2] and not term[0]
    assert batch.env_steps == 2


def test_a_slot_that_raises_ends_alone_and_is_rebuilt(monkeypatch):
    """An exception in one slot's physics: that slot ends as env_error (zero row and reward), the
    others step exactly as without it (with physics on two threads), and its data is rebuilt at reset."""
    import mujoco

    from harness.world import mjbatch

    acts = np.full((4, 6), 0.2, dtype=np.float32)
    clean = MujocoBatch("HalfCheetah-v4", 4, threads=2)
    clean.reset(seed=[1, 2, 3, 4])
    want = clean.step(acts)
    batch = MujocoBatch("HalfCheetah-v4", 4, threads=2)
    batch.reset(seed=[1, 2, 3, 4])
    bad = batch.data[2]
    real = mujoco.mj_step

    def step(model, d, nstep=1):
        if d is bad:
            raise RuntimeError("simulator crashed\nsecond line")
        return real(model, d, nstep=nstep)

    monkeypatch.setattr(mjbatch.mujoco, "mj_step", step)
    obs, r, term, trunc, info = batch.step(acts)
    assert list(info["harness_status"]) == ["", "", Status.ENV_ERROR.value, ""]
    assert info["harness_error"][2] == "RuntimeError: simulator crashed"
    assert not obs[2].any() and r[2] == 0.0 and term[2] and not trunc[2]
    for i in (0, 1, 3):
        np.testing.assert_array_equal(obs[i], want[0][i])
        assert r[i] == want[1][i]
    monkeypatch.setattr(mjbatch.mujoco, "mj_step", real)
    again, _ = batch.reset(seed=[None, None, 3, None], options={"reset_mask": np.array([0, 0, 1, 0], bool)})
    assert batch.data[2] is not bad
    np.testing.assert_array_equal(again[2], clean.reset(seed=[1, 2, 3, 4])[0][2])


def test_a_new_mujoco_warning_ends_that_slot_alone(monkeypatch):
    """A MuJoCo warning raised while stepping one slot (finite observation and reward) ends that
    slot's episode as unstable_state; the others step on."""
    import mujoco

    from harness.world import mjbatch

    batch = MujocoBatch("HalfCheetah-v4", 3)
    batch.reset(seed=[1, 2, 3])
    flagged = batch.data[1]
    real = mujoco.mj_step

    def step(model, d, nstep=1):
        real(model, d, nstep=nstep)
        if d is flagged:
            d.warning[mujoco.mjtWarning.mjWARN_BADQACC].number += 1

    monkeypatch.setattr(mjbatch.mujoco, "mj_step", step)
    obs, r, term, _, info = batch.step(np.full((3, 6), 0.1, dtype=np.float32))
    assert np.isfinite(obs).all() and np.isfinite(r).all()
    assert list(info["harness_status"]) == ["", Status.UNSTABLE_STATE.value, ""] and list(term) == [False, True, False]


def test_unsupported_id():
    with pytest.raises(ValueError, match="no batched simulator"):
        MujocoBatch("Ant-v4", 2)


@pytest.mark.parametrize("env_id", ["Hopper-v4", "Walker2d-v5", "HalfCheetah-v4"])
def test_rollouts_equal_with_either_simulator(tmp_path, env_id):
    """Whole rollouts of a tiny model (slot refills, idle slots): same actions and returns."""
    from harness.engine.policy import DTPolicy
    from harness.engine.rollout import EpisodeSpec, run_episodes
    from harness.io.checkpoints import load_checkpoint

    from .conftest import make_checkpoint

    ckpt = load_checkpoint(str(make_checkpoint(tmp_path / "m", env_id.split("-")[0] + "-v4", hidden=32)))
    eps = [EpisodeSpec(t, 5 + k, k) for k, t in enumerate([100.0, 1800.0, 3600.0, 500.0, 2500.0])]
    runs = [
        run_episodes(DTPolicy(ckpt), env_id, eps, 3, record_actions=True, max_episode_steps=120, simulator=sim)
        for sim in ("gymnasium", "batched")
    ]
    for a, b in zip(*runs, strict=True):
        np.testing.assert_array_equal(a.actions, b.actions)
        assert (a.ret, a.length, a.terminated, a.truncated, a.status) == (
            b.ret,
            b.length,
            b.terminated,
            b.truncated,
            b.status,
        )
