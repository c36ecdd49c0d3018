"""Sweep cells on joblib backends give the same rows as the sequential sweep."""

import importlib.util

import pandas as pd
import pytest

from harness import parallel, sweep

from .conftest import make_checkpoint


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    root = tmp_path_factory.mktemp("p")
    return {
        "hopper": make_checkpoint(root / "hopper", "Hopper-v4", hidden=32, n_layer=2),
        "walker2d": make_checkpoint(root / "walker2d", "Walker2d-v4", hidden=32, n_layer=2),
    }


def args(ckpts, out, *extra):
    return [
        "--envs",
        "hopper",
        "walker2d",
        "--checkpoint",
        f"hopper={ckpts['hopper']}",
        "--checkpoint",
        f"walker2d={ckpts['walker2d']}",
        "--targets",
        "100",
        "3000",
        "--episodes",
        "5",
        "--num-envs",
        "3",
        "--out",
        str(out),
        "--no-progress",
        *extra,
    ]


def rows(out):
    return pd.read_csv(out / "episodes.csv").drop(columns="wall_time_s")


@pytest.fixture(scope="module")
def sequential(ckpts, tmp_path_factory):
    out = tmp_path_factory.mktemp("seq") / "run"
    assert sweep.main(args(ckpts, out)) == 0
    return rows(out)


def test_loky_two_jobs_same_rows(ckpts, sequential, tmp_path):
    assert sweep.main(args(ckpts, tmp_path / "run", "--jobs", "2")) == 0
    pd.testing.assert_frame_equal(rows(tmp_path / "run"), sequential)


@pytest.mark.skipif(importlib.util.find_spec("distributed") is None, reason="dask.distributed not installed")
def test_dask_local_cluster_two_workers_same_rows(ckpts, sequential, tmp_path):
    assert sweep.main(args(ckpts, tmp_path / "run", "--jobs", "2", "--backend", "dask")) == 0
    pd.testing.assert_frame_equal(rows(tmp_path / "run"), sequential)


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray not installed")
def test_ray_two_jobs_same_rows(ckpts, sequential, tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)  # a local Ray instance
    assert sweep.main(args(ckpts, tmp_path / "run", "--jobs", "2", "--backend", "ray")) == 0
    pd.testing.assert_frame_equal(rows(tmp_path / "run"), sequential)


def test_parallel_resume_runs_only_missing_episodes(ckpts, sequential, tmp_path):
    out = tmp_path / "run"
    assert sweep.main(args(ckpts, out)) == 0
    text = (out / "episodes.csv").read_text().splitlines(keepends=True)
    (out / "episodes.csv").write_text("".join(text[:7]))  # keep 6 episodes
    for name in ("summary.csv", "metadata.json"):
        (out / name).unlink()
    assert sweep.main(args(ckpts, out, "--jobs", "2")) == 0
    pd.testing.assert_frame_equal(rows(out), sequential)
    assert __import__("json").loads((out / "metadata.json").read_text())["resumed_episodes"] == 6


def test_backend_errors(ckpts, tmp_path, capsys, monkeypatch):
    assert sweep.main(args(ckpts, tmp_path / "a", "--jobs", "0")) == 2
    assert "--jobs must be between 1" in capsys.readouterr().err
    assert sweep.main(args(ckpts, tmp_path / "b", "--scheduler", "tcp://127.0.0.1:1")) == 2
    assert "pass it with --backend dask" in capsys.readouterr().err
    if importlib.util.find_spec("ray") is None:
        code = sweep.main(args(ckpts, tmp_path / "c", "--jobs", "2", "--backend", "ray"))
        err = capsys.readouterr().err
        assert code == 2 and "--backend ray needs ray: pip install 'harness[ray]'" in err and err.count("\n") == 1


@pytest.mark.skipif(importlib.util.find_spec("distributed") is None, reason="dask.distributed not installed")
def test_unreachable_dask_scheduler(ckpts, tmp_path, capsys):
    code = sweep.main(
        args(ckpts, tmp_path / "d", "--jobs", "2", "--backend", "dask", "--scheduler", "tcp://127.0.0.1:9")
    )
    err = capsys.readouterr().err
    assert code == 2 and "no Dask scheduler answered at tcp://127.0.0.1:9" in err


def test_threads_per_job_never_oversubscribe():
    assert parallel.threads_per_job(1, cores=2) == 2
    assert parallel.threads_per_job(2, cores=2) == 1
    assert parallel.threads_per_job(8, cores=2) == 1
    assert parallel.threads_per_job(4, cores=16) == 4
