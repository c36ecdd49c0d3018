"""The batched simulator against Gymnasium's envs: bit-equal observations, rewards, terminations
and truncations over whole episodes, every task, v4 and v5, with slots at different points, on
MuJoCo's own batch (``mujoco.batch``, 1 and 2 threads) and on the mj_step loop."""

import numpy as np
import pytest

from harness.core.errors import HarnessError
from harness.core.schema import Status
from harness.running.runner import SweepConfig, validate
from harness.world import mjbatch
from harness.world.envs import make_env
from harness.world.mjbatch import SUPPORTED, MujocoBatch

STEPPERS = [s for s in mjbatch.STEPPERS if s != "mujoco.batch" or mjbatch.mjbatch is not None]


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
@pytest.mark.parametrize(("stepper", "threads"), [("mujoco.batch", 1), ("mujoco.batch", 2), ("loop", 2)])
def test_bit_equal_to_gymnasium(env_id, stepper, threads):
    if stepper not in STEPPERS:
        pytest.skip("this mujoco has no mujoco.batch")
    limit = 300 if env_id.startswith("HalfCheetah") else 1000
    rng = np.random.default_rng(0)
    seeds = [11, 12, 13, 14]
    scales = [1.0, 0.3, 0.05, 0.6]  # different strengths: the slots' episodes end at different steps
    probe = make_env(env_id)
    act_dim = probe.action_space.shape[0]
    probe.close()
    actions = [(s * rng.uniform(-1, 1, (limit, act_dim))).astype(np.float32) for s in scales]
    expected = [gym_episode(env_id, s, a, limit) for s, a in zip(seeds, actions, strict=True)]

    batch = MujocoBatch(env_id, len(seeds), max_episode_steps=limit, threads=threads, stepper=stepper)
    assert batch.stepper == stepper and stepper in batch.simulator
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


@pytest.mark.parametrize("stepper", STEPPERS)
def test_reset_by_mask_and_unstable_state(stepper):
    batch = MujocoBatch("Hopper-v4", 3, stepper=stepper)
    obs, _ = batch.reset(seed=[1, 2, 3])
    again, _ = batch.reset(seed=[None, 2, None], options={"reset_mask": np.array([False, True, False])})
    np.testing.assert_array_equal(again[1], obs[1])  # same seed, same start
    assert not again[0].any() and not again[2].any()  # not reset: zero rows, untouched slots
    acts = np.zeros((3, 3), dtype=np.float32)
    acts[2] = np.nan  # MuJoCo flags the bad control with a warning and resets that slot's data
    _, _, term, _, info = batch.step(acts, np.array([False, True, True]))
    assert list(info["harness_status"]) == ["", "", Status.UNSTABLE_STATE.value] and term[2] and not term[0]
    assert batch.env_steps == 2


def _inject(batch: MujocoBatch, monkeypatch, slot: int, kind: str) -> None:
    """Make slot ``slot``'s next physics step raise (``error``) or raise a MuJoCo warning (``warning``),
    the way each stepper reports it: the loop's ``mj_step`` raising or counting a warning in that
    slot's ``MjData``; ``mujoco.batch``'s step running the others and raising ``SimulationError``
    for that simulation (its state kept), or its warning counter rising."""
    import mujoco

    physics = batch.physics
    if batch.stepper == "loop":
        target, real = physics.data[slot], mujoco.mj_step

        def step(model, d, nstep=1):
            if d is target and kind == "error":
                raise RuntimeError("simulator crashed\nsecond line")
            real(model, d, nstep=nstep)
            if d is target:
                d.warning[mujoco.mjtWarning.mjWARN_BADQACC].number += 1

        monkeypatch.setattr(mjbatch.mujoco, "mj_step", step)
        return
    inner, real_step = physics.batch, physics.batch.step

    def batch_step(ids=None, nstep=1, stage=0):
        ids = np.arange(inner.nsim) if ids is None else np.asarray(ids)
        if kind == "error":
            real_step(ids[ids != slot], nstep, stage)
            monkeypatch.setattr(inner, "error", lambda i: "simulator crashed\nsecond line" if i == slot else "")
            raise mjbatch.mjbatch.SimulationError(np.array([slot]), "simulator crashed", len(ids))
        real_step(ids, nstep, stage)
        inner.warning[slot, mujoco.mjtWarning.mjWARN_BADQACC, 1] += 1

    monkeypatch.setattr(inner, "step", batch_step)


@pytest.mark.parametrize("stepper", STEPPERS)
def test_a_slot_that_raises_ends_alone_and_is_rebuilt(monkeypatch, stepper):
    """An exception in one slot's physics: that slot ends as env_error (zero row and reward), the
    others step exactly as without it (with physics on two threads), and its next reset starts it afresh."""
    acts = np.full((4, 6), 0.2, dtype=np.float32)
    clean = MujocoBatch("HalfCheetah-v4", 4, threads=2, stepper=stepper)
    clean.reset(seed=[1, 2, 3, 4])
    want = clean.step(acts)
    batch = MujocoBatch("HalfCheetah-v4", 4, threads=2, stepper=stepper)
    batch.reset(seed=[1, 2, 3, 4])
    with monkeypatch.context() as m:
        _inject(batch, m, 2, "error")
        obs, r, term, trunc, info = batch.step(acts)
    assert list(info["harness_status"]) == ["", "", Status.ENV_ERROR.value, ""]
    assert info["harness_error"][2] == "RuntimeError: simulator crashed"
    assert not obs[2].any() and r[2] == 0.0 and term[2] and not trunc[2]
    for i in (0, 1, 3):
        np.testing.assert_array_equal(obs[i], want[0][i])
        assert r[i] == want[1][i]
    assert batch.broken[2]
    again, _ = batch.reset(seed=[None, None, 3, None], options={"reset_mask": np.array([0, 0, 1, 0], bool)})
    assert not batch.broken[2]
    np.testing.assert_array_equal(again[2], clean.reset(seed=[1, 2, 3, 4])[0][2])
    np.testing.assert_array_equal(batch.step(acts)[0][2], clean.step(acts)[0][2])  # it steps as new


@pytest.mark.parametrize("stepper", STEPPERS)
def test_a_new_mujoco_warning_ends_that_slot_alone(monkeypatch, stepper):
    """A MuJoCo warning raised while stepping one slot (finite observation and reward) ends that
    slot's episode as unstable_state; the others step on."""
    batch = MujocoBatch("HalfCheetah-v4", 3, stepper=stepper)
    batch.reset(seed=[1, 2, 3])
    _inject(batch, monkeypatch, 1, "warning")
    obs, r, term, _, info = batch.step(np.full((3, 6), 0.1, dtype=np.float32))
    assert np.isfinite(obs).all() and np.isfinite(r).all()
    assert list(info["harness_status"]) == ["", Status.UNSTABLE_STATE.value, ""] and list(term) == [False, True, False]


def test_the_batchs_warning_counters_are_the_slots_own():
    """A NaN control in one simulation of mujoco.batch raises that simulation's warning counter only
    (what the unstable-state check reads), as MjData's counter does in the loop."""
    if "mujoco.batch" not in STEPPERS:
        pytest.skip("this mujoco has no mujoco.batch")
    batch = MujocoBatch("Hopper-v4", 3, stepper="mujoco.batch")
    batch.reset(seed=[1, 2, 3])
    acts = np.zeros((3, 3), dtype=np.float32)
    acts[1] = np.nan
    batch.step(acts)
    assert list(batch.physics.warnings(np.arange(3)) > 0) == [False, True, False]


def test_harness_stepper_names_the_default_and_a_bad_name_is_one_line(monkeypatch):
    monkeypatch.setenv("HARNESS_STEPPER", "loop")
    batch = MujocoBatch("Hopper-v4", 2)
    assert batch.stepper == "loop" and "mj_step loop" in batch.simulator
    monkeypatch.setenv("HARNESS_STEPPER", "mujoco.batch")
    assert MujocoBatch("Hopper-v4", 2).stepper == "mujoco.batch"
    monkeypatch.setenv("HARNESS_STEPPER", "threads")
    with pytest.raises(HarnessError, match="HARNESS_STEPPER='threads' names no stepper"):
        MujocoBatch("Hopper-v4", 2)
    config = SweepConfig(envs=["hopper"], out="unused")
    with pytest.raises(HarnessError, match="HARNESS_STEPPER"):
        validate(config)


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


CONDITIONS = [
    None,  # the batch's default (unshifted)
    "mass=1.5",
    "friction=0.6,gravity=1.2",
    "reset_noise=3",
    "mass=0.7,reset_noise=0",
]


def mixed_mismatches(stepper: str, threads: int, env_id: str = "Hopper-v4", steps: int = 60) -> list[str]:
    """Three episodes per slot of one batch, each slot changing its shift condition at every reset,
    against a Gymnasium env under that episode's shift: the episodes that differ."""
    from harness.world.shift import Shift

    shifts = [Shift.from_label(c) if c else None for c in CONDITIONS]
    n = 4
    batch = MujocoBatch(env_id, n, max_episode_steps=steps, threads=threads, stepper=stepper)
    act_dim = batch.single_action_space.shape[0]
    rng = np.random.default_rng(3)
    bad = []
    for round_ in range(3):
        cond = [shifts[(i + 2 * round_) % len(shifts)] for i in range(n)]
        seeds = [100 * round_ + i for i in range(n)]
        obs, _ = batch.reset(seed=seeds, options={"reset_mask": np.ones(n, bool), "dynamics": cond})
        actions = rng.uniform(-1, 1, (steps, n, act_dim)).astype(np.float32)
        got = [[obs[i].copy()] for i in range(n)]
        live = np.ones(n, bool)
        for a in actions:
            obs, r, term, trunc, _ = batch.step(a, live)
            for i in np.flatnonzero(live):
                got[i] += [obs[i].copy(), np.array([r[i], term[i], trunc[i]])]
            live &= ~(term | trunc)
            if not live.any():
                break
        for i in range(n):
            env = make_env(env_id, steps, dynamics=cond[i])
            want = [env.reset(seed=seeds[i])[0]]
            for a in actions:
                o, r, term, trunc, _ = env.step(a[i])
                want += [o, np.array([r, term, trunc])]
                if term or trunc:
                    break
            env.close()
            if len(want) != len(got[i]) or any(not np.array_equal(x, y) for x, y in zip(want, got[i], strict=False)):
                bad.append(f"round {round_} slot {i} ({cond[i].label if cond[i] else 'default'})")
    return bad


@pytest.mark.parametrize(("stepper", "threads"), [("mujoco.batch", 1), ("mujoco.batch", 2), ("loop", 1)])
def test_one_batch_holds_every_shift_condition_bit_for_bit(stepper, threads):
    """Slots of one batch under different shifts (mass, friction, gravity, reset noise), each slot
    changing its condition at each reset: every episode equals Gymnasium's env under its shift."""
    if stepper not in STEPPERS:
        pytest.skip("this mujoco has no mujoco.batch")
    assert mixed_mismatches(stepper, threads) == []


@pytest.mark.parametrize("mutation", ["mass-not-expanded", "noise-of-the-slot"])
def test_a_slot_on_the_wrong_dynamics_is_caught(monkeypatch, mutation):
    """Mutations the test above must see: one field's per-slot values not written (the slots keep the
    model's masses), or a slot's reset noise left at its previous condition's scale."""
    stepper = STEPPERS[0]
    if mutation == "mass-not-expanded":
        real = mjbatch._dynamics_fields
        monkeypatch.setattr(
            mjbatch,
            "_dynamics_fields",
            lambda model, shift: {k: v for k, v in real(model, shift).items() if k != "body_mass"},
        )
    else:
        real_set = MujocoBatch.set_dynamics

        def keep_noise(self, rows, shift):
            before = self.noise.copy()
            real_set(self, rows, shift)
            self.noise[:] = before

        monkeypatch.setattr(MujocoBatch, "set_dynamics", keep_noise)
    assert mixed_mismatches(stepper, 1) != []


def test_the_three_kinds_of_slots_are_one_protocol():
    from harness.world.vector import ShardedVectorEnv, Slots, SlotVectorEnv, make_slots

    kinds = [MujocoBatch("Hopper-v4", 2), SlotVectorEnv("Hopper-v4", 2), ShardedVectorEnv("Hopper-v4", 2, 2)]
    try:
        assert all(isinstance(k, Slots) for k in kinds)
        assert isinstance(make_slots("Hopper-v4", 2), MujocoBatch)
        assert not isinstance(object(), Slots)
    finally:
        for k in kinds:
            k.close()
