"""Counterfactual return probes (harness/engine/probe.py, harness probe): a return-blind checkpoint reads
exactly 0, a return-reading one a CI that excludes 0; windows cut as the evaluator pads them; bad input."""

import numpy as np
import pandas as pd
import pytest
import torch

from harness.commands.probe import main
from harness.engine.policy import DTPolicy
from harness.engine.probe import probe, windows_from_dataset
from harness.io.checkpoints import load_checkpoint, save_checkpoint
from harness.io.data import OfflineDataset
from harness.world.envs import resolve_env

from .conftest import make_checkpoint


def dataset(state_dim: int = 11, act_dim: int = 3, lengths=(7, 30, 12), seed: int = 0) -> OfflineDataset:
    rng = np.random.default_rng(seed)
    return OfflineDataset.from_trajectories(
        {
            "observations": rng.normal(size=(n, state_dim)).astype(np.float32),
            "actions": rng.uniform(-1, 1, size=(n, act_dim)).astype(np.float32),
            "rewards": rng.uniform(0, 3, size=n).astype(np.float32),
            "dones": np.zeros(n, np.float32),
        }
        for n in lengths
    )


def blind_copy(folder, out):
    """The same checkpoint with its return embedding zeroed: it cannot read the return tokens."""
    ckpt = load_checkpoint(str(folder))
    for name, p in ckpt.model.named_parameters():
        if name.startswith("embed_return"):
            p.data.zero_()
    return save_checkpoint(
        ckpt.model, out, state_mean=ckpt.state_mean, state_std=ckpt.state_std, env_id="Hopper-v4", context_length=5
    )


def test_windows_are_cut_and_padded_as_the_evaluator_holds_them():
    data = dataset(lengths=(3, 9))
    w = windows_from_dataset(data, k=5, max_ep_len=6, n=12, seed=0)
    assert len(w) == 12  # every transition once
    for i in range(len(w)):
        valid = w.mask[i].astype(bool)
        assert not valid[: (~valid).sum()].any()  # left padding only
        assert (w.states[i][~valid] == 0).all() and (w.actions[i][-1] == 0).all()
        t = w.timesteps[i][valid]
        assert (np.diff(t) <= 1).all() and t.max() <= 5  # consecutive, clamped to max_ep_len - 1
    # a window at step 4 of the second trajectory: reward before each step, within that trajectory only
    end = 3 + 4
    i = [j for j in range(12) if w.mask[j].sum() == 5 and np.allclose(w.states[j][-1], data.observations[end])][0]
    rewards = data.rewards[3:].astype(np.float64)
    np.testing.assert_allclose(w.reward_before[i], np.concatenate([[0.0], np.cumsum(rewards)])[0:5])
    np.testing.assert_array_equal(w.actions[i][:-1], data.actions[3:7])


def test_a_return_blind_checkpoint_reads_exactly_zero_and_a_reading_one_does_not(tmp_path):
    folder = make_checkpoint(tmp_path / "m", hidden=32, n_layer=2, seed=3)
    env = resolve_env("Hopper-v4")
    windows = windows_from_dataset(dataset(), 5, 1000, 40)
    targets = [300.0, 1200.0, 2400.0, 3600.0]
    reads = probe(DTPolicy(load_checkpoint(str(folder))), env, windows, targets)
    r = reads.summary.iloc[0]
    assert r["action_change_ci_low"] > 0 and r["frozen_share"] == 0
    assert len(reads.attention) == 2 and (reads.attention["attention_to_returns"] > 0).all()
    blind = probe(DTPolicy(load_checkpoint(str(blind_copy(folder, tmp_path / "blind")))), env, windows, targets)
    b = blind.summary.iloc[0]
    assert (b["action_change"], b["action_change_ci_low"], b["action_change_ci_high"]) == (0.0, 0.0, 0.0)
    assert b["frozen_share"] == 1.0 and (blind.curve["action_distance"] == 0).all()


def test_checkpoints_trained_in_the_test_separate_blind_from_reading(tmp_path, capsys):
    """harness train with --return-blind gives a checkpoint the probe reads as exactly 0 change; the same
    training without it, a change whose CI excludes 0 (if --return-blind were ignored, both would move)."""
    from harness.commands import train

    data = tmp_path / "d.parquet"
    dataset(lengths=(40, 25, 60)).to_parquet(data)
    tiny = ["--steps", "6", "--batch-size", "8", "--hidden-size", "16", "--n-layer", "1", "--context-length", "5"]
    reads: dict[str, pd.Series] = {}
    for name, extra in (("reading", []), ("blind", ["--return-blind"])):
        out = tmp_path / name
        args = ["--data", str(data), "--env", "hopper", "--save-steps", "6", "--out", str(out), *tiny, *extra]
        assert train.main(args) == 0
        probed = tmp_path / f"p-{name}"
        assert main([str(out), "--env", "hopper", "--data", str(data), "--windows", "40", "--out", str(probed)]) == 0
        reads[name] = pd.read_csv(probed / "probe.csv").iloc[0]
    assert reads["reading"]["action_change_ci_low"] > 0 and reads["reading"]["frozen_share"] < 1
    b = reads["blind"]
    assert (b["action_change"], b["action_change_ci_low"], b["action_change_ci_high"]) == (0, 0, 0)
    assert b["frozen_share"] == 1
    capsys.readouterr()


@pytest.mark.slow
def test_the_embedded_hopper_reads_its_return_tokens(tmp_path, capsys):
    """The real command on the embedded checkpoint, windows from episodes it plays: sensitive."""
    assert main(["hopper", "--env", "hopper", "--episodes", "2", "--windows", "48", "--out", str(tmp_path)]) == 0
    r = pd.read_csv(tmp_path / "probe.csv").iloc[0]
    assert r["action_change_ci_low"] > 0 and r["frozen_share"] < 0.5
    assert (tmp_path / "probe.png").is_file() and "never move" in capsys.readouterr().out


def test_probe_command_writes_its_files_from_a_dataset(tmp_path, capsys):
    folder = make_checkpoint(tmp_path / "m", hidden=16, seed=1)
    data = tmp_path / "d.parquet"
    dataset().to_parquet(data)
    code = main([str(folder), "--env", "hopper", "--data", str(data), "--windows", "20", "--out", str(tmp_path / "p")])
    assert code == 0
    for name in ("probe.csv", "probe_curve.csv", "probe_attention.csv", "probe.png", "probe.svg"):
        assert (tmp_path / "p" / name).is_file(), name
    assert "action change" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--targets", "1000"], "at least two distinct"),
        (["--targets", "1000", "1000"], "at least two distinct"),
        (["--num-targets", "1"], "--num-targets must be at least 2"),
        (["--windows", "0"], "--windows and --episodes must be at least 1"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, extra, message):
    folder = make_checkpoint(tmp_path / "m", seed=2)
    out = tmp_path / "p"
    assert main([str(folder), "--env", "hopper", *extra, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and not out.exists()


def test_a_checkpoint_without_statistics_and_no_data_is_refused(tmp_path, capsys):
    """The tutorial's Trainer output has no state statistics: the probe cannot normalise states."""
    folder = make_checkpoint(tmp_path / "m", seed=2)
    cfg = folder / "config.json"
    import json

    c = json.loads(cfg.read_text())
    for key in [k for k in c if "state_mean" in k or "state_std" in k]:
        c.pop(key)
    cfg.write_text(json.dumps(c))
    for extra in (folder / "harness.json",):
        if extra.exists():
            extra.unlink()
    assert main([str(folder), "--env", "hopper", "--out", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and ("statistic" in err or "--data" in err)


def test_no_windows_is_refused():
    from harness.core.errors import HarnessError

    empty = OfflineDataset(
        np.zeros((0, 11), np.float32), np.zeros((0, 3), np.float32), np.zeros(0, np.float32),
        np.zeros(0, np.float32), np.zeros(1, np.int64),
    )  # fmt: skip
    with pytest.raises(HarnessError, match="no windows"):
        windows_from_dataset(empty, 5, 1000, 10)
    torch.manual_seed(0)
