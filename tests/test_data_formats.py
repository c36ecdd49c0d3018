"""D4RL HDF5 files and Minari datasets read as the tutorial's schema: the same
trajectories, statistics and training batches; made in the tests, never downloaded."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from harness.core.errors import HarnessError
from harness.io.data import OfflineDataset, load_source, statistics_from, to_minari
from harness.offline.training import WindowCollator

h5py = pytest.importorskip("h5py")


def dataset(seed: int = 0) -> OfflineDataset:
    """Hopper-sized trajectories, some terminated, some cut by the time limit."""
    rng = np.random.default_rng(seed)
    trajs = []
    for i in range(7):
        n = int(rng.integers(5, 40))
        dones = np.zeros(n)
        if i % 2 == 0:
            dones[-1] = 1.0  # terminated; the odd ones end at a time limit
        trajs.append(
            {
                "observations": rng.normal(size=(n, 11)).astype(np.float32),
                "actions": rng.uniform(-1, 1, size=(n, 3)).astype(np.float32),
                "rewards": rng.normal(size=n).astype(np.float32),
                "dones": dones,
            }
        )
    return OfflineDataset.from_trajectories(trajs)


def same(a: OfflineDataset, b: OfflineDataset) -> None:
    for name in ("observations", "actions", "rewards", "dones", "starts"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def batches(data: OfflineDataset) -> list[dict]:
    collator = WindowCollator(data, 5, 1000.0, 1000, 3, "end", None)
    return [collator.sample(8) for _ in range(3)]


def test_d4rl_file_written_by_hand_reads_as_the_same_data(tmp_path):
    data = dataset()
    parquet = data.to_parquet(tmp_path / "d.parquet")
    path = tmp_path / "hopper_tiny-v2.hdf5"
    timeouts = np.zeros(data.num_transitions, dtype=bool)
    timeouts[data.starts[1:] - 1] = data.dones[data.starts[1:] - 1] == 0
    with h5py.File(path, "w") as f:  # the layout D4RL ships (plus an unfinished episode at the end)
        f["observations"] = np.concatenate([data.observations, np.ones((4, 11), np.float32)])
        f["actions"] = np.concatenate([data.actions, np.zeros((4, 3), np.float32)])
        f["rewards"] = np.concatenate([data.rewards, np.ones(4, np.float32)])
        f["terminals"] = np.concatenate([data.dones > 0, np.zeros(4, bool)])
        f["timeouts"] = np.concatenate([timeouts, np.zeros(4, bool)])
        f["infos/qpos"] = np.zeros((data.num_transitions + 4, 6))
    same(load_source(str(path)), data)  # the unfinished tail is left out, as D4RL's sequence_dataset does
    a, b = statistics_from(str(parquet)), statistics_from(str(path))
    np.testing.assert_array_equal(a.state_mean, b.state_mean)
    np.testing.assert_array_equal(a.state_std, b.state_std)
    assert a.dataset == b.dataset.__class__(**{**b.dataset.__dict__, "name": a.dataset.name})
    for x, y in zip(batches(load_source(str(parquet))), batches(load_source(str(path))), strict=True):
        for key in x:
            np.testing.assert_array_equal(x[key].numpy(), y[key].numpy(), err_msg=key)


def test_our_d4rl_writer_round_trips(tmp_path):
    data = dataset(1)
    same(OfflineDataset.from_d4rl_hdf5(data.to_d4rl_hdf5(tmp_path / "x.hdf5")), data)


def test_d4rl_errors_are_one_line(tmp_path):
    with pytest.raises(HarnessError, match="does not exist"):
        load_source(str(tmp_path / "none.hdf5"))
    bad = tmp_path / "bad.hdf5"
    with h5py.File(bad, "w") as f:
        f["observations"] = np.zeros((3, 11))
    with pytest.raises(HarnessError, match="lacks actions, rewards, terminals, timeouts"):
        load_source(str(bad))


@pytest.mark.skipif(importlib.util.find_spec("minari") is None, reason="minari extra")
def test_minari_dataset_written_by_minari_reads_as_the_same_data(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    data = dataset(2)
    to_minari(data, "harness/hopper-tiny-v0", "Hopper-v4")
    back = load_source("minari:harness/hopper-tiny-v0")
    same(back, data)
    np.testing.assert_array_equal(
        statistics_from(str(data.to_parquet(tmp_path / "d.parquet"))).state_std, back.state_stats()[1]
    )
    for x, y in zip(batches(data), batches(back), strict=True):
        for key in x:
            np.testing.assert_array_equal(x[key].numpy(), y[key].numpy(), err_msg=key)
    with pytest.raises(HarnessError, match=r"not in .*minari download harness/nothing-v0"):
        load_source("minari:harness/nothing-v0")


@pytest.mark.skipif(importlib.util.find_spec("minari") is None, reason="minari extra")
def test_collect_writes_d4rl_and_minari_and_train_reads_them(tmp_path, monkeypatch):
    """``harness collect --out x.hdf5 --minari ID`` writes both; ``harness train`` and the sweep's
    ``--data`` read either, with the statistics of the same data in the tutorial's schema."""
    from harness.commands import collect, train
    from harness.io.checkpoints import load_checkpoint

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    h5 = tmp_path / "d.hdf5"
    argv = ["--env", "hopper", "--algos", "--random-transitions", "300", "--num-envs", "2"]
    assert collect.main([*argv, "--out", str(h5), "--minari", "harness/hopper-random-v0"]) == 0
    a, b = load_source(str(h5)), load_source("minari:harness/hopper-random-v0")
    same(a, b)
    small = ["--env", "hopper", "--steps", "2", "--batch-size", "4", "--hidden-size", "16", "--n-layer", "1"]
    for source, out in ((str(h5), tmp_path / "c1"), ("minari:harness/hopper-random-v0", tmp_path / "c2")):
        assert train.main(["--data", source, *small, "--context-length", "5", "--out", str(out)]) == 0
    c1, c2 = load_checkpoint(str(tmp_path / "c1")), load_checkpoint(str(tmp_path / "c2"))
    np.testing.assert_allclose(c1.state_mean, a.state_stats()[0], rtol=1e-6)
    np.testing.assert_array_equal(c1.state_mean, c2.state_mean)
    np.testing.assert_array_equal(c1.state_std, c2.state_std)


def test_paper_protocol_in_one_command_at_tiny_scale(tmp_path):
    """``harness paper FILE.hdf5``: trains on a D4RL file, evaluates at the paper's targets, writes Table 2
    with the paper's and CORL's numbers; training on the same data as parquet gives the same weights."""
    import json

    import pandas as pd
    import torch
    from safetensors.torch import load_file

    from harness.commands import paper

    data = dataset(4)
    h5 = data.to_d4rl_hdf5(tmp_path / "d4rl" / "hopper_medium_replay-v2.hdf5")
    out = tmp_path / "table2"
    small = ["--steps", "3", "--warmup-steps", "1", "--batch-size", "4", "--hidden-size", "16", "--n-layer", "1"]
    flags = ["--context-length", "5", "--episodes", "4", "--window", "start", "--bf16", "--selection-episodes", "2"]
    assert paper.main([str(h5.parent), "--out", str(out), *small, *flags]) == 0
    table = pd.read_csv(out / "table.csv")
    assert sorted(table["target"]) == [1800.0, 3600.0] and set(table["dataset"]) == {"hopper-medium-replay"}
    assert table["paper_dt"].notna().all() and table["corl_dt"].notna().all()
    assert "82.7" in (out / "table.md").read_text()
    assert json.loads((out / "hopper-medium-replay" / "sweep" / "metadata.json").read_text())["episodes"] == 8
    # the target chosen on episodes 0-1 (seeds 0..1) reported on episodes 2-3 (seeds 2..3)
    chosen = pd.read_csv(out / "selected.csv").iloc[0]
    assert (chosen["selection_seeds"], chosen["report_seeds"]) == ("0..1", "2..3") and chosen["target"] in (1800, 3600)
    assert "held-out" in (out / "selected.md").read_text()
    # the same training on the same data in the tutorial's schema: the same weights, so the same rows
    from harness.offline.training import TrainConfig, train

    parquet = data.to_parquet(tmp_path / "same.parquet")
    cfg = dict(env="hopper", steps=3, batch_size=4, hidden_size=16, n_layer=1, context_length=5, warmup_ratio=1 / 3)
    cfg |= dict(window="start", bf16=True)  # forwarded by harness paper (start windows give other batches)
    written = json.loads((out / "hopper-medium-replay" / "checkpoint" / "train_config.json").read_text())
    assert (written["window"], written["bf16"]) == ("start", True)
    train(TrainConfig(data=str(parquet), out=str(tmp_path / "p"), name="hopper-medium-replay", **cfg))
    a = load_file(tmp_path / "p" / "model.safetensors")
    b = load_file(out / "hopper-medium-replay" / "checkpoint" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_paper_from_hdf5_benchmark_compares_both_paths(tmp_path):
    """``benchmarks/checks/paper_from_hdf5.py`` at tiny scale: export, both paths through the real commands,
    and a comparison that finds them equal (its exit code is 1 when anything differs)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    parquet = dataset(5).to_parquet(tmp_path / "hopper-medium-replay.parquet")
    out = tmp_path / "check"
    args = [str(parquet), "--steps", "2", "--episodes", "1", "--seed", "3", "--out", str(out)]
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks.checks.paper_from_hdf5", *args],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    report = json.loads((out / "comparison.json").read_text())
    assert report["same"] and report["table_equal"]
    assert report["datasets"]["hopper-medium-replay"] == {
        "tensors": report["datasets"]["hopper-medium-replay"]["tensors"],
        "tensors_differ": [],
        "episodes": 2,
        "episodes_differ": 0,
    }
    assert (out / "d4rl" / "hopper_medium_replay-v2.hdf5").is_file()
