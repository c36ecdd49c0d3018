"""Sweep cells on joblib backends give the same rows as the sequential sweep."""

import importlib.util

import pandas as pd
import pytest

from harness.commands import sweep
from harness.running import parallel, runner

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


@pytest.mark.slow
def test_loky_two_jobs_same_rows(ckpts, sequential, tmp_path):
    assert sweep.main(args(ckpts, tmp_path / "run", "--jobs", "2")) == 0
    pd.testing.assert_frame_equal(rows(tmp_path / "run"), sequential)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("distributed") is None, reason="dask.distributed not installed")
def test_dask_local_cluster_two_workers_same_rows(ckpts, sequential, tmp_path):
    assert sweep.main(args(ckpts, tmp_path / "run", "--jobs", "2", "--backend", "dask")) == 0
    pd.testing.assert_frame_equal(rows(tmp_path / "run"), sequential)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray not installed")
def test_ray_two_jobs_same_rows(ckpts, sequential, tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)  # a local Ray instance
    assert sweep.main(args(ckpts, tmp_path / "run", "--jobs", "2", "--backend", "ray")) == 0
    pd.testing.assert_frame_equal(rows(tmp_path / "run"), sequential)


@pytest.mark.slow
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
@pytest.mark.slow
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


@pytest.mark.slow
def test_env_workers_give_the_same_episodes(ckpts, sequential, tmp_path):
    """Slots stepped in 2 processes (ShardedVectorEnv): same rows as in one."""
    assert sweep.main(args(ckpts, tmp_path / "run", "--env-workers", "2")) == 0
    pd.testing.assert_frame_equal(rows(tmp_path / "run"), sequential)


def test_sharded_env_keeps_failures_inside_episodes(tmp_path):
    """Crashes and unstable states in worker processes reach the rollout as statuses, and the
    episodes equal those of the in-process vector env."""
    from harness.engine.policy import DTPolicy
    from harness.engine.rollout import EpisodeSpec, run_episodes
    from harness.io.checkpoints import load_checkpoint

    from .fake_env import FAULTY_ID, FaultyEnv

    ckpt = load_checkpoint(str(make_checkpoint(tmp_path / "c", dims=(3, 2), context_length=4, max_ep_len=12)))
    eps = [EpisodeSpec(100.0, s, s) for s in (0, 1, 2, 4, 5, 6)]  # no transient crash: its state is per process
    env_id = f"tests.fake_env:{FAULTY_ID}"  # the module prefix registers the env in spawned workers
    FaultyEnv.crashed_once.clear()
    one = run_episodes(DTPolicy(ckpt), env_id, eps, num_envs=3)
    two = run_episodes(DTPolicy(ckpt), env_id, eps, num_envs=3, env_workers=2)
    assert [(r.status, r.length, r.ret) for r in one] == [(r.status, r.length, r.ret) for r in two]
    assert {r.status for r in two} == {"ok", "unstable_state", "env_error"}


def test_auto_device_is_cpu_without_gpu(monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert runner.resolve_device("auto") == "cpu"
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    assert runner.resolve_device("auto") == "cuda" and runner.resolve_device("cpu") == "cpu"
