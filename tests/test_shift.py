"""Evaluation under shift: the grid, the model fields each dynamics shift touches (checked
against a fresh model, so a shift on the wrong body fails), bit-equality of the batched simulator and
Gymnasium under every shift, noise that follows the episode (not its batch, worker or a resume), the
unshifted cell equal to a plain sweep, robustness numbers, and bad input."""

import json
import shutil

import mujoco
import numpy as np
import pandas as pd
import pytest

from harness.analysis.robustness import robustness
from harness.commands import sweep
from harness.core.errors import HarnessError
from harness.engine.evaluate import evaluate
from harness.io.checkpoints import load_checkpoint
from harness.world.envs import make_env
from harness.world.mjbatch import MujocoBatch
from harness.world.shift import Shift, parse_shifts
from harness.world.vector import SlotVectorEnv

from .conftest import make_checkpoint

DYNAMIC = [Shift(mass=0.8), Shift(friction=1.3), Shift(gravity=0.9), Shift(reset_noise=3.0)]


def test_the_grid_is_every_combination_with_the_neutral_cell_first():
    grid = parse_shifts(["mass=0.8,1.0,1.2", "obs_noise=0,0.05"])
    assert len(grid) == 6 and grid[0] == Shift() and len(set(grid)) == 6
    assert {s.label for s in grid} >= {"none", "mass=0.8", "obs_noise=0.05,mass=1.2"}
    assert all(Shift.from_label(s.label) == s for s in grid)
    assert parse_shifts([]) == [Shift()]


def field_problems(shift: Shift) -> list[str]:
    """What of a shifted env's model differs from a fresh, unshifted model scaled as documented:
    every body (the world body has no mass), every geom's sliding friction only, gravity, the reset
    noise; nothing else."""
    base = make_env("Hopper-v4").unwrapped
    env = make_env("Hopper-v4", dynamics=shift).unwrapped
    m, b = env.model, base.model
    expect = {
        "body_mass": (m.body_mass, b.body_mass * shift.mass),
        "body_inertia": (m.body_inertia, b.body_inertia * shift.mass),
        "sliding friction": (m.geom_friction[:, 0], b.geom_friction[:, 0] * shift.friction),
        "other friction": (m.geom_friction[:, 1:], b.geom_friction[:, 1:]),
        "gravity": (m.opt.gravity, b.opt.gravity * shift.gravity),
        "reset noise": (env._reset_noise_scale, base._reset_noise_scale * shift.reset_noise),
        "gear": (m.actuator_gear, b.actuator_gear),
        "damping": (m.dof_damping, b.dof_damping),
    }
    return [name for name, (got, want) in expect.items() if not np.array_equal(got, want)]


def test_each_dynamics_shift_changes_exactly_its_model_fields():
    for shift in DYNAMIC:
        assert field_problems(shift) == [], shift.label


def test_a_shift_on_the_wrong_body_or_not_applied_fails(monkeypatch):
    """The mutations the checks above exist for: mass on the torso only, and no shift at all."""
    import harness.world.envs as envs

    def torso_only(env, shift):
        env.model.body_mass[1] *= shift.mass

    monkeypatch.setattr(envs, "apply_dynamics", torso_only)
    assert "body_mass" in field_problems(Shift(mass=0.8))
    monkeypatch.setattr(envs, "apply_dynamics", lambda env, shift: None)
    assert field_problems(Shift(mass=0.8)) == ["body_mass", "body_inertia"]
    assert field_problems(Shift(gravity=0.9)) == ["gravity"]


def _steps(envs, seeds, actions):
    obs, _ = envs.reset(seed=seeds)
    out = [obs.copy()]
    live = np.ones(len(seeds), dtype=bool)
    for a in actions:
        obs, r, term, trunc, _ = envs.step(a, live)
        out += [obs.copy(), r.copy(), term.copy()]
        live &= ~(term | trunc)
        if not live.any():
            break
    envs.close()
    return out


@pytest.mark.parametrize("env_id", ["Hopper-v4", "Walker2d-v5", "HalfCheetah-v4"])
def test_batched_and_gymnasium_agree_bit_for_bit_under_every_dynamics_shift(env_id):
    act_dim = make_env(env_id).action_space.shape[0]
    actions = np.random.default_rng(0).uniform(-1, 1, (150, 3, act_dim)).astype(np.float32)
    seeds = [5, 6, 7]
    plain = _steps(MujocoBatch(env_id, 3), seeds, actions)
    for shift in DYNAMIC:
        batched = _steps(MujocoBatch(env_id, 3, dynamics=shift), seeds, actions)
        gym = _steps(SlotVectorEnv(env_id, 3, dynamics=shift), seeds, actions)
        assert len(batched) == len(gym)
        for x, y in zip(batched, gym, strict=True):
            np.testing.assert_array_equal(x, y)
        # applied at all: the shifted episodes leave the unshifted ones
        assert any(not np.array_equal(x, y) for x, y in zip(batched, plain, strict=False)), shift.label


def test_mj_setconst_follows_a_mass_change():
    env = make_env("Hopper-v4", dynamics=Shift(mass=2.0)).unwrapped
    np.testing.assert_allclose(
        env.model.body_subtreemass[0], 2.0 * make_env("Hopper-v4").unwrapped.model.body_subtreemass[0]
    )
    assert isinstance(env.model, mujoco.MjModel)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("s") / "hopper", "Hopper-v4", hidden=32, n_layer=2, seed=4)


SHIFTS = [Shift(), Shift(obs_noise=0.1), Shift(act_noise=0.3), Shift(mass=0.9, obs_noise=0.05)]


def test_noise_follows_the_episode_not_its_batch(ckpt):
    c = load_checkpoint(str(ckpt))
    a = evaluate(c, "hopper", [200.0, 900.0], episodes=3, num_envs=6, shifts=SHIFTS).drop(columns="wall_time_s")
    b = evaluate(c, "hopper", [200.0, 900.0], episodes=3, num_envs=1, shifts=SHIFTS).drop(columns="wall_time_s")
    pd.testing.assert_frame_equal(a, b)
    by = a.set_index(["shift", "target", "episode"])["return"]
    for s in SHIFTS[1:]:  # every shift moves the episodes (noise and dynamics are applied)
        assert (by.loc[s.label] != by.loc["none"]).any(), s.label
    # part of the cells done (a resume): the rest equals the whole run's
    done = {(s.label, 200.0, k) for s in SHIFTS for k in range(3)}
    rest = evaluate(c, "hopper", [200.0, 900.0], episodes=3, num_envs=4, shifts=SHIFTS, done=done)
    pd.testing.assert_frame_equal(rest.drop(columns="wall_time_s"), a[a["target"] == 900.0].reset_index(drop=True))


def test_every_condition_runs_in_one_batch_with_the_rows_of_one_batch_per_condition(ckpt, monkeypatch):
    """On the batched simulator every shift condition of a cell grid shares one batch of slots (a slot
    takes the next pending episode whatever its condition); the rows equal those of one batch per
    condition (Gymnasium's envs, which cannot mix dynamics) in every float."""
    from harness.engine import rollout

    c = load_checkpoint(str(ckpt))
    shifts = SHIFTS + [Shift(friction=0.7), Shift(gravity=1.2, reset_noise=2.0)]
    made = []
    real = rollout.make_slots
    monkeypatch.setattr(rollout, "make_slots", lambda *a, **k: made.append(a) or real(*a, **k))
    one = evaluate(c, "hopper", [200.0, 900.0], episodes=2, num_envs=5, shifts=shifts)
    assert len(made) == 1  # one batch for all six conditions
    per = evaluate(c, "hopper", [200.0, 900.0], episodes=2, num_envs=5, shifts=shifts, simulator="gymnasium")
    assert len(made) == 1 + len(shifts)
    cols = ["shift", "target", "episode", "seed", "return", "length", "status"]
    pd.testing.assert_frame_equal(one[cols], per[cols])
    assert one["shift"].nunique() == len(shifts)


def sweep_args(ckpt, out, *extra):
    return [
        "--envs", "hopper", "--checkpoint", f"hopper={ckpt}", "--targets", "200", "900", "--episodes", "3",
        "--out", str(out), "--no-progress", *extra,
    ]  # fmt: skip


SHIFT_FLAGS = ["--shift", "mass=0.8,1.0,1.2", "--shift", "obs_noise=0,0.05"]


@pytest.fixture(scope="module")
def shifted(ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("sh") / "run"
    assert sweep.main(sweep_args(ckpt, out, *SHIFT_FLAGS)) == 0
    return out


def rows(out):
    return pd.read_csv(out / "episodes.csv", keep_default_na=False).drop(columns="wall_time_s")


@pytest.mark.slow
def test_six_cells_per_target_and_the_unshifted_cell_equals_a_plain_sweep(ckpt, shifted, tmp_path):
    df = rows(shifted)
    assert df.groupby("target")["shift"].nunique().tolist() == [6, 6] and len(df) == 36
    plain = tmp_path / "plain"
    assert sweep.main(sweep_args(ckpt, plain)) == 0
    pd.testing.assert_frame_equal(df[df["shift"] == "none"].reset_index(drop=True), rows(plain))
    summary = pd.read_csv(shifted / "summary.csv", keep_default_na=False, na_values=[""])
    assert len(summary) == 12 and summary.loc[summary["shift"] == "none", "retained"].isna().all()
    assert summary.loc[summary["shift"] != "none", "retained"].notna().all()
    cal = pd.read_csv(shifted / "calibration.csv", keep_default_na=False)
    assert sorted(cal["shift"]) == sorted(df["shift"].unique())
    rob = pd.read_csv(shifted / "robustness.csv", keep_default_na=False)
    assert len(rob) == 5 and "none" not in set(rob["shift"])
    assert "robustness" in (shifted / "report.html").read_text().lower()
    assert (shifted / "return_conditioning_shift.png").is_file()


@pytest.mark.slow
def test_jobs_give_the_same_shifted_rows(ckpt, shifted, tmp_path):
    two = tmp_path / "jobs"
    assert sweep.main(sweep_args(ckpt, two, *SHIFT_FLAGS, "--jobs", "2", "--num-envs", "2")) == 0
    pd.testing.assert_frame_equal(rows(two), rows(shifted))


@pytest.mark.slow
def test_a_resume_gives_the_same_shifted_rows(ckpt, shifted, tmp_path):
    """Half the rows dropped, the same command rerun: the missing half runs, the rows equal."""
    part = tmp_path / "part"
    assert sweep.main(sweep_args(ckpt, part, *SHIFT_FLAGS)) == 0
    full = pd.read_csv(part / "episodes.csv", keep_default_na=False)
    full.iloc[::2].to_csv(part / "episodes.csv", index=False)
    (part / "summary.csv").unlink()
    assert sweep.main(sweep_args(ckpt, part, *SHIFT_FLAGS)) == 0
    pd.testing.assert_frame_equal(rows(part), rows(shifted))


@pytest.mark.slow
def test_retained_equals_a_direct_paired_computation(shifted):
    df = pd.read_csv(shifted / "episodes.csv", keep_default_na=False)
    rob = robustness(df).set_index("shift")
    base = df[df["shift"] == "none"].set_index(["target", "seed"])["normalized_score"]
    for label in ("mass=0.8", "obs_noise=0.05,mass=1.2"):
        cell = df[df["shift"] == label].set_index(["target", "seed"])["normalized_score"]
        assert rob.loc[label, "retained"] == pytest.approx(cell.mean() / base.loc[cell.index].mean(), rel=1e-12)
        assert rob.loc[label, "retained_ci_low"] <= rob.loc[label, "retained"] <= rob.loc[label, "retained_ci_high"]


@pytest.mark.slow
def test_compare_pairs_by_shift(shifted, tmp_path, capsys):
    from harness.analysis.comparison import compare_folders
    from harness.commands import compare as compare_command

    table = compare_folders(shifted, shifted)
    assert set(table["shift"]) == set(rows(shifted)["shift"]) and (table["diff"] == 0).all()
    assert len(table[table["level"] == "env"]) == 6
    plain = tmp_path / "plain"
    shutil.copytree(shifted, plain)
    df = pd.read_csv(plain / "episodes.csv", keep_default_na=False)
    df[df["shift"] == "none"].to_csv(plain / "episodes.csv", index=False)
    assert compare_command.main([str(shifted), str(plain), "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip()
    assert "same versions and shifts" in err and "\n" not in err


def test_env_versions_as_an_axis(ckpt, tmp_path):
    out = tmp_path / "v"
    assert sweep.main(sweep_args(ckpt, out, "--env-version", "v4", "v5")) == 0
    df = rows(out)
    assert sorted(df["env_id"].unique()) == ["Hopper-v4", "Hopper-v5"] and len(df) == 12
    rob = pd.read_csv(out / "robustness.csv", keep_default_na=False)
    assert list(rob["env_id"]) == ["Hopper-v5"] and list(rob["base_env_id"]) == ["Hopper-v4"]
    assert json.loads((out / "metadata.json").read_text())["arguments"]["env_version"] == ["v4", "v5"]


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--shift", "wind=1"], "unknown --shift 'wind'"),
        (["--shift", "mass=-0.5"], "not a valid scale"),
        (["--shift", "obs_noise=-0.1"], "not a valid noise std"),
        (["--shift", "mass=0.8", "--shift", "mass=1.2"], "names mass twice"),
        (["--shift", "friction=abc"], "not a number"),
        (["--shift", "gravity="], "has no values"),
        (["--env-version", "v3"], "invalid choice"),
    ],
)
def test_bad_shift_input_is_one_line_exit_2_nothing_written(ckpt, tmp_path, capsys, extra, needle):
    out = tmp_path / "bad"
    try:
        code = sweep.main(sweep_args(ckpt, out, *extra))
    except SystemExit as exc:  # argparse's choices: the project's parser exits 2 with one line
        code = exc.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and needle in err and "\n" not in err and not out.exists()


def test_parse_errors_are_harness_errors():
    with pytest.raises(HarnessError, match="mass: 0 would make"):
        parse_shifts(["mass=0"])


def test_shift_and_version_from_a_config_file(ckpt, tmp_path):
    cfg = tmp_path / "s.toml"
    cfg.write_text('shift = ["friction=1,1.3"]\nenv_version = "v5"\nepisodes = 2\n')
    out = tmp_path / "cfg"
    args = ["--config", str(cfg), "--envs", "hopper", "--checkpoint", f"hopper={ckpt}", "--targets", "200"]
    assert sweep.main([*args, "--out", str(out), "--no-progress"]) == 0
    df = rows(out)
    assert set(df["shift"]) == {"none", "friction=1.3"} and set(df["env_id"]) == {"Hopper-v5"}
    assert json.loads((out / "sweep.json").read_text())["shifts"] == ["none", "friction=1.3"]
