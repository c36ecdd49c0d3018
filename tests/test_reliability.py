"""Crash-safe, resumable sweeps; failed episodes; interruption; nothing written outside --out."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file

from harness.commands import sweep

from .conftest import make_checkpoint


def sweep_args(ckpt: Path, out: Path, episodes: int = 60, *extra: str) -> list[str]:
    return [
        "--envs",
        "hopper",
        "--checkpoint",
        f"hopper={ckpt}",
        "--targets",
        "100",
        "2000",
        "--episodes",
        str(episodes),
        "--num-envs",
        "4",
        "--out",
        str(out),
        "--no-progress",
        *extra,
    ]


def _default_sigint() -> None:
    """In the child: SIGINT back to its default. An earlier test's Ray or Dask can leave SIGINT
    ignored in the test process, and a child inherits an ignored SIGINT (Python then installs no
    KeyboardInterrupt handler): the Ctrl-C test's sweep ran to its end in CI."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(args: list[str], cwd: Path | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "harness.commands.sweep", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        preexec_fn=_default_sigint,
    )


def wait_for_rows(path: Path, rows: int, proc: subprocess.Popen, timeout: float = 120) -> int:
    """Block until ``path`` has at least ``rows`` data lines; returns how many it has."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"sweep ended before it could be interrupted: {proc.stderr.read()}")
        if path.exists():
            n = path.read_text().count("\n") - 1
            if n >= rows:
                return n
        time.sleep(0.05)
    raise AssertionError("sweep wrote no rows in time")


def rows(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "episodes.csv").drop(columns="wall_time_s")


@pytest.fixture(scope="module")
def slow_ckpt(tmp_path_factory) -> Path:
    """A tiny hopper checkpoint whose episodes last long enough to kill a sweep midway."""
    return make_checkpoint(tmp_path_factory.mktemp("c") / "hopper", "Hopper-v4", hidden=32, n_layer=2)


@pytest.mark.slow
def test_sigkill_midway_then_resume_equals_uninterrupted(tmp_path, slow_ckpt):
    whole = tmp_path / "whole"
    assert sweep.main(sweep_args(slow_ckpt, whole)) == 0

    out = tmp_path / "killed"
    proc = start(sweep_args(slow_ckpt, out))
    kept = wait_for_rows(out / "episodes.csv", 20, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert 20 <= kept < 120 and not (out / "summary.csv").exists()
    partial = pd.read_csv(out / "episodes.csv")  # whole lines only, whatever the kill interrupted
    assert len(partial) >= 20

    resumed = subprocess.run(
        [sys.executable, "-m", "harness.commands.sweep", *sweep_args(slow_ckpt, out)], capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr or "resuming" in resumed.stdout or len(partial) == 0
    pd.testing.assert_frame_equal(rows(out), rows(whole))  # same keys, same returns, same order
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["resumed_episodes"] >= len(partial) and meta["episodes"] == 120
    pd.testing.assert_frame_equal(pd.read_csv(out / "summary.csv"), pd.read_csv(whole / "summary.csv"))


@pytest.mark.slow
def test_ctrl_c_keeps_finished_episodes_and_says_how_to_resume(tmp_path, slow_ckpt):
    out = tmp_path / "run"
    proc = start(sweep_args(slow_ckpt, out))
    # early in the rollout: this checkpoint's 120 episodes take about a second once the first rows
    # appear, so a signal after 10 rows once landed after the sweep had finished (exit 0 in CI)
    wait_for_rows(out / "episodes.csv", 2, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert "rerun the same command to resume" in err and "Traceback" not in err
    kept = pd.read_csv(out / "episodes.csv")
    assert 2 <= len(kept) < 120
    assert sweep.main(sweep_args(slow_ckpt, out)) == 0
    assert len(pd.read_csv(out / "episodes.csv")) == 120


@pytest.mark.slow
def test_other_arguments_are_refused_and_overwrite_replaces(tmp_path, slow_ckpt, capsys):
    out = tmp_path / "run"
    assert sweep.main(sweep_args(slow_ckpt, out, 3)) == 0
    before = (out / "episodes.csv").read_bytes()
    capsys.readouterr()
    assert sweep.main(sweep_args(slow_ckpt, out, 4)) == 2
    err = capsys.readouterr().err
    assert "holds a sweep with other arguments (episodes 3 before, 4 now)" in err and err.count("\n") == 1
    assert sweep.main([*sweep_args(slow_ckpt, out, 3), "--seed", "5"]) == 2
    assert "seed 0 before, 5 now" in capsys.readouterr().err
    assert (out / "episodes.csv").read_bytes() == before  # nothing touched by the refusals
    assert sweep.main([*sweep_args(slow_ckpt, out, 4), "--overwrite"]) == 0
    assert len(pd.read_csv(out / "episodes.csv")) == 8


def test_changed_weights_are_refused(tmp_path, capsys):
    ckpt = make_checkpoint(tmp_path / "c", "Hopper-v4")
    out = tmp_path / "run"
    assert sweep.main(sweep_args(ckpt, out, 2)) == 0
    state = load_file(ckpt / "model.safetensors")
    state = {k: v + 0.01 if v.dtype.is_floating_point else v for k, v in state.items()}
    save_file(state, ckpt / "model.safetensors")
    capsys.readouterr()
    assert sweep.main(sweep_args(ckpt, out, 2)) == 2
    assert "weights" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("damage", "needle"),
    [
        (lambda text: text.replace("hopper", "hoppr", 3), "is not an episode of this sweep"),
        (lambda text: text + text.splitlines()[1] + "\n", "repeats an episode"),
        (lambda text: "garbage\n" + text, "not a harness episodes file"),
        (lambda text: text.replace(",ok,", ",,", 1), "has empty fields"),
        (lambda text: text.replace("\n", "\n1,2,3\n", 2), "corrupted"),
    ],
)
def test_hand_corrupted_csv_is_reported_not_repaired(tmp_path, damage, needle, capsys):
    ckpt = make_checkpoint(tmp_path / "c", "Hopper-v4")
    out = tmp_path / "run"
    assert sweep.main(sweep_args(ckpt, out, 2)) == 0
    csv = out / "episodes.csv"
    csv.write_text(damage(csv.read_text()))
    before = csv.read_bytes()
    capsys.readouterr()
    assert sweep.main(sweep_args(ckpt, out, 2)) == 2
    err = capsys.readouterr().err
    assert needle in err and "--overwrite" in err and err.count("\n") == 1
    assert csv.read_bytes() == before


@pytest.mark.slow
def test_torn_last_line_is_dropped_and_rerun(tmp_path):
    ckpt = make_checkpoint(tmp_path / "c", "Hopper-v4")
    whole, out = tmp_path / "whole", tmp_path / "run"
    assert sweep.main(sweep_args(ckpt, whole, 3)) == 0
    assert sweep.main(sweep_args(ckpt, out, 3)) == 0
    text = (out / "episodes.csv").read_text()
    lines = text.splitlines(keepends=True)
    (out / "episodes.csv").write_text("".join(lines[:3]) + lines[3][:20])  # killed mid-write
    for name in ("summary.csv", "metadata.json"):
        (out / name).unlink()
    assert sweep.main(sweep_args(ckpt, out, 3)) == 0
    pd.testing.assert_frame_equal(rows(out), rows(whole))


def test_nan_checkpoint_fails_its_episodes_with_a_distinct_exit_code(tmp_path, capsys):
    ckpt = make_checkpoint(tmp_path / "nan", "Hopper-v4")
    state = load_file(ckpt / "model.safetensors")
    state["embed_state.weight"] = torch.full_like(state["embed_state.weight"], float("nan"))
    save_file(state, ckpt / "model.safetensors")
    out = tmp_path / "run"
    assert sweep.main(sweep_args(ckpt, out, 2)) == sweep.EXIT_FAILED_EPISODES
    assert "4 episodes failed (4 nan_action)" in capsys.readouterr().err
    episodes = pd.read_csv(out / "episodes.csv")
    assert set(episodes["status"]) == {"nan_action"} and (episodes["length"] == 0).all()
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary["n_failed"]) == [2, 2] and list(summary["n"]) == [0, 0]


@pytest.mark.slow
def test_nothing_is_written_outside_out(tmp_path):
    ckpt = make_checkpoint(tmp_path / "c", "Hopper-v4")
    work = tmp_path / "cwd"
    work.mkdir()
    before = {p for p in tmp_path.rglob("*")}
    proc = subprocess.run(
        [sys.executable, "-m", "harness.commands.sweep", *sweep_args(ckpt, work / "out", 2)],
        cwd=work,
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    new = {p for p in tmp_path.rglob("*")} - before
    assert new and all(work / "out" in p.parents or p == work / "out" for p in new), new


def test_overwrite_removes_every_figure_and_the_videos(tmp_path):
    """--overwrite leaves nothing of the old sweep: all figures (PNG and SVG) and videos/
    (a later --video run must never link another sweep's MP4s)."""
    from harness.core.schema import RESULT_FILES, VIDEO_DIR, figure_files
    from harness.io.results import held, resume_or_refuse

    out = tmp_path / "run"
    (out / VIDEO_DIR).mkdir(parents=True)
    (out / VIDEO_DIR / "hopper_c_0123456789ab_fp32_target1_seed0.mp4").write_bytes(b"old")
    for name in (*RESULT_FILES, *figure_files()):
        (out / name).write_text("old")
    (out / "notes.txt").write_text("the user's own file")
    assert len(figure_files()) == 10 and set(held(out)) == {*RESULT_FILES, *figure_files(), VIDEO_DIR}
    assert resume_or_refuse(out, {"format": 1}, overwrite=True) is False
    assert held(out) == [] and sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_metadata_records_invariance_and_a_resume_without_it_is_refused(tmp_path, monkeypatch, capsys):
    """metadata.json carries the start-up self-check and the numerics mode; on a machine where the
    check fails, a resume is refused (exit 2, one line, nothing lost) unless the user opts in with
    --allow-batch-dependence, and then says that the resumed rows may differ."""
    import json

    from harness.engine.policy import InvarianceCheck
    from harness.running import runner

    ckpt = make_checkpoint(tmp_path / "c", "Hopper-v4")
    out = tmp_path / "run"
    assert sweep.main(sweep_args(ckpt, out, 2)) == 0
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["batch_invariant"] is True and list(meta["batch_invariance"].values()) == [True]
    assert meta["numerics"]["mode"] == "pinned"
    assert {"cpu", "isa", "arch"} <= set(meta["machine"])
    before = (out / "episodes.csv").read_bytes()
    failing = InvarianceCheck(False, 136, 8, (8, 9), 2)
    monkeypatch.setattr(runner, "batch_invariance_check", lambda policy: failing)
    capsys.readouterr()
    assert sweep.main(sweep_args(ckpt, out, 2)) == 2
    err = capsys.readouterr().err
    assert "fails the batch-invariance self-check" in err and "--allow-batch-dependence" in err
    assert len(err.strip().splitlines()) == 1
    assert (out / "episodes.csv").read_bytes() == before
    assert sweep.main([*sweep_args(ckpt, out, 2), "--allow-batch-dependence"]) == 0
    assert "batch_invariant: false" in capsys.readouterr().err
    assert json.loads((out / "metadata.json").read_text())["batch_invariant"] is False
