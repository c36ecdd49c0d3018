"""Episode videos and grid videos (offscreen MuJoCo rendering)."""

import importlib.util

import numpy as np
import pandas as pd
import pytest

from harness.commands import sweep, video
from harness.core.errors import HarnessError
from harness.engine.policy import DTPolicy
from harness.engine.rollout import EpisodeSpec, run_episodes
from harness.io.checkpoints import load_checkpoint

from .conftest import make_checkpoint

pytestmark = pytest.mark.skipif(importlib.util.find_spec("imageio_ffmpeg") is None, reason="video extra missing")


def renderer_ok() -> bool:
    try:
        video.check_renderer("Hopper-v4")
        return True
    except HarnessError:
        return False


needs_gl = pytest.mark.skipif(not renderer_ok(), reason="no offscreen GL (EGL/OSMesa) on this machine")


@needs_gl
def test_recorded_episode_decodes_and_equals_the_unrecorded_one(tmp_path):
    ckpt = load_checkpoint(str(make_checkpoint(tmp_path / "c", "Hopper-v4", hidden=32, n_layer=2)))
    spec = EpisodeSpec(1000.0, 3, 0)
    path = tmp_path / "v" / "ep.mp4"
    rec = video.record(ckpt, "Hopper-v4", spec, path, size=(96, 64))
    (plain,) = run_episodes(DTPolicy(ckpt), "Hopper-v4", [spec], 1)
    assert (rec.ret, rec.length) == (plain.ret, plain.length)  # recording does not change the episode
    frames = video.read_frames(path)
    assert frames.shape == (plain.length + 1, 64, 96, 3)  # the reset frame, then one per step
    assert frames.std() > 1  # not a blank render


@pytest.mark.slow
@needs_gl
def test_sweep_video_option_and_grid(tmp_path):
    ckpt = make_checkpoint(tmp_path / "c", "Hopper-v4", hidden=32, n_layer=2)
    out = tmp_path / "run"
    args = ["--envs", "hopper", "--checkpoint", f"hopper={ckpt}", "--targets", "100", "3000"]
    args += ["--episodes", "3", "--video", "2", "--out", str(out), "--no-progress"]
    assert sweep.main(args) == 0
    df = pd.read_csv(out / "episodes.csv", keep_default_na=False)
    listed = df[df["video"] != ""]
    assert sorted(listed["episode"]) == [0, 0, 1, 1] and all((out / v).is_file() for v in listed["video"])
    for v, n in zip(listed["video"], listed["length"], strict=True):
        assert video.read_frames(out / v).shape[0] == n + 1
    grid = video.grid_for_env(out, "hopper")
    frames = video.read_frames(grid)
    single = video.read_frames(out / listed["video"].iloc[0])
    # every recorded episode: a column per target (2), a row per episode (2)
    assert frames.shape == (listed["length"].max() + 1, 2 * single.shape[1], 2 * single.shape[2], 3)
    assert video.main([str(out), "--env", "walker2d"]) == 2


@pytest.mark.slow
@needs_gl
def test_videos_under_shift_replay_each_condition(tmp_path, capsys):
    """--video with --shift records every condition's episodes under its own shift (dynamics and
    noise): each replay returns the sweep's return, names carry the shift, a grid per condition."""
    ckpt = make_checkpoint(tmp_path / "c", "Hopper-v4", hidden=32, n_layer=2)
    out = tmp_path / "run"
    args = ["--envs", "hopper", "--checkpoint", f"hopper={ckpt}", "--targets", "100", "3000", "--episodes", "2"]
    args += ["--shift", "mass=0.8,1", "--shift", "obs_noise=0,0.1", "--video", "1", "--out", str(out), "--no-progress"]
    assert sweep.main(args) == 0
    assert "recorded replay" not in capsys.readouterr().err  # every replay returned the sweep's return
    df = pd.read_csv(out / "episodes.csv", keep_default_na=False)
    listed = df[df["video"] != ""]
    assert len(listed) == 4 * 2 and set(listed["episode"]) == {0}  # 4 conditions x 2 targets, episode 0
    assert listed["video"].nunique() == len(listed) and all((out / v).is_file() for v in listed["video"])
    for shift, v, n in zip(listed["shift"], listed["video"], listed["length"], strict=True):
        assert (shift == "none") == ("mass" not in v and "obs_noise" not in v)
        assert video.read_frames(out / v).shape[0] == n + 1
    lengths = listed.groupby("shift")["length"].apply(tuple)
    assert lengths.nunique() > 1 or listed.groupby("shift")["return"].apply(tuple).nunique() > 1  # shifts differ
    grid = video.grid_for_env(out, "hopper", shift="mass=0.8,obs_noise=0.1")  # parts in any order
    assert grid.name == "hopper_obs_noise-0.1-mass-0.8_grid.mp4" and video.read_frames(grid).shape[0] > 1
    assert video.main([str(out), "--env", "hopper", "--shift", "mass=2"]) == 2
    assert video.main([str(out), "--env", "hopper", "--shift", "heavy"]) == 2


def test_video_count_is_checked(tmp_path, capsys):
    ckpt = make_checkpoint(tmp_path / "c", "Hopper-v4")
    code = sweep.main(
        ["--envs", "hopper", "--checkpoint", f"hopper={ckpt}", "--episodes", "2", "--video", "3"]
        + ["--out", str(tmp_path / "o"), "--no-progress"]
    )
    assert code == 2 and "--video must be between 0 and --episodes (2)" in capsys.readouterr().err


def test_missing_renderer_is_one_clear_error(monkeypatch):
    import harness.world.envs

    def broken(*a, **k):
        raise RuntimeError("cannot initialize EGL")

    monkeypatch.setattr(harness.world.envs, "make_vector_env", broken)
    with pytest.raises(HarnessError, match="install EGL .* or OSMesa"):
        video.check_renderer("Hopper-v4")


def test_names_are_file_safe_and_carry_the_weights():
    name = video.video_name("hopper", "edbeeching/dt-hopper", 3600.0, 7, "abcdef0123456789", "fp32")
    assert name == "hopper_edbeeching-dt-hopper_abcdef012345_fp32_target3600_seed7.mp4"
    assert video.video_name("hopper", "edbeeching/dt-hopper", 3600.0, 7, "ffff", "fp32") != name  # other weights


def test_tile_labels_stay_on_the_tile():
    """A grid tile's label (a long checkpoint path, a target and a seed) wraps to the
    tile's width instead of running off it; nothing of it is dropped."""
    from PIL import Image, ImageDraw

    from harness.running.recording import _label, label_lines

    frame = np.full((96, 128, 3), 200, dtype=np.uint8)
    text = "runs/walker2d-medium-replay/trainer/checkpoint-14000 target 4500 seed 1014 (ended)"
    draw = ImageDraw.Draw(Image.fromarray(frame))
    lines = label_lines(text, 120, draw.textlength)
    assert len(lines) > 1 and all(draw.textlength(line) <= 120 for line in lines)
    assert " ".join(lines).replace(" ", "") == text.replace(" ", "")
    out = _label(frame, text, dim=True)
    assert out.shape == frame.shape and (out[: 6 + 12 * len(lines) - 1, 0] == 0).all()
