"""Training: the vectorised collator against the tutorial's per-sample one, and the pipeline end to end."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.commands import collect, train
from harness.commands.cli import field_docs
from harness.engine.evaluate import evaluate
from harness.io.checkpoints import load_checkpoint
from harness.io.data import OfflineDataset
from harness.offline.training import TrainConfig, WindowCollator


def tutorial_window(data: OfflineDataset, traj: int, si: int, k: int, mean, std, scale=1000.0, max_ep_len=1000):
    """The tutorial collator's code path for one (trajectory, start) pair, per sample."""
    t = data.trajectory(traj)
    s = t["observations"][si : si + k]
    a = t["actions"][si : si + k]
    tlen = len(s)
    ts = np.arange(si, si + tlen)
    ts[ts >= max_ep_len] = max_ep_len - 1
    rew = t["rewards"].astype(np.float64)
    rtg = np.array([rew[i:].sum() for i in range(si, si + tlen)])
    pad = k - tlen
    return {
        "states": np.concatenate([np.zeros((pad, s.shape[1])), (s - mean) / std]),
        "actions": np.concatenate([np.full((pad, a.shape[1]), -10.0), a]),
        "returns_to_go": np.concatenate([np.zeros(pad), rtg])[:, None] / scale,
        "timesteps": np.concatenate([np.zeros(pad), ts]),
        "attention_mask": np.concatenate([np.zeros(pad), np.ones(tlen)]),
    }


def toy_dataset(lengths=(7, 2, 12, 1)):
    rng = np.random.default_rng(0)
    return OfflineDataset.from_trajectories(
        {
            "observations": rng.normal(size=(n, 3)),
            "actions": rng.uniform(-1, 1, size=(n, 2)),
            "rewards": rng.normal(size=n),
            "dones": np.r_[np.zeros(n - 1), 1.0],
        }
        for n in lengths
    )


@pytest.mark.parametrize("anchor", ["start", "end"])
def test_collator_matches_per_sample_windows_everywhere(anchor):
    """``start``: the tutorial's collator; ``end``: the last K timesteps up to the anchor, as evaluation."""
    data = toy_dataset()
    col = WindowCollator(data, context_length=5, max_ep_len=10, anchor=anchor)
    anchors = np.arange(data.num_transitions)
    batch = col.windows(anchors)
    for g in anchors:
        traj = int(np.searchsorted(data.starts, g, side="right") - 1)
        t = int(g - data.starts[traj])
        if anchor == "start":
            want = tutorial_window(data, traj, t, 5, col.state_mean, col.state_std, max_ep_len=10)
        else:
            si = max(0, t - 4)
            want = tutorial_window(data, traj, si, t - si + 1, col.state_mean, col.state_std, max_ep_len=10)
            pad = 5 - (t - si + 1)  # the window of the last t - si + 1 steps, left-padded to K = 5
            want = {
                k: np.concatenate([np.full((pad, *v.shape[1:]), -10.0 if k == "actions" else 0.0), v])
                for k, v in want.items()
            }
        for key, value in want.items():
            np.testing.assert_allclose(batch[key][g].numpy(), value, rtol=1e-5, atol=1e-6, err_msg=key)


def test_sampling_is_uniform_over_transitions_and_seeded():
    data = toy_dataset()
    a, b = WindowCollator(data, seed=3), WindowCollator(data, seed=3)
    for key in ("states", "timesteps"):
        np.testing.assert_array_equal(a.sample(16)[key].numpy(), b.sample(16)[key].numpy())
    counts = np.bincount(a.rng.integers(0, a.n, 22000), minlength=a.n)
    assert counts.min() > 700  # p(trajectory) proportional to length = uniform over transitions


@pytest.mark.parametrize("bf16", [False, True])
def test_collect_train_evaluate_end_to_end(tmp_path, bf16):
    data_path = tmp_path / "d.parquet"
    assert (
        collect.main(
            ["--env", "hopper", "--algos", "--random-transitions", "300", "--num-envs", "2", "--out", str(data_path)]
        )
        == 0
    )
    out = tmp_path / "ckpt"
    code = train.main(
        [
            "--data",
            str(data_path),
            "--env",
            "hopper",
            "--steps",
            "4",
            "--batch-size",
            "8",
            "--hidden-size",
            "16",
            "--n-layer",
            "1",
            "--context-length",
            "5",
            "--save-steps",
            "2",
            "--out",
            str(out),
        ]
        + (["--bf16"] if bf16 else [])
    )
    assert code == 0
    ckpt = load_checkpoint(str(out))
    data = OfflineDataset.from_parquet(data_path)
    assert ckpt.dataset.transitions == data.num_transitions and ckpt.context_length == 5
    np.testing.assert_allclose(ckpt.state_mean, data.state_stats()[0], rtol=1e-5)
    assert len(pd.read_csv(out / "train_log.csv")) >= 1
    assert json.loads((out / "train_config.json").read_text())["bf16"] is bf16
    df = evaluate(ckpt, "hopper", [100.0], episodes=2)
    assert len(df) == 2
    # an intermediate Trainer checkpoint exports to the evaluator's format
    mid = tmp_path / "mid"
    assert (
        train.main(
            [
                "--data",
                str(data_path),
                "--env",
                "hopper",
                "--context-length",
                "5",
                "--out",
                str(mid),
                "--export",
                str(out / "trainer" / "checkpoint-2"),
            ]
        )
        == 0
    )
    assert load_checkpoint(str(mid)).dataset == ckpt.dataset


def test_train_rejects_data_of_another_env(tmp_path, capsys):
    data_path = tmp_path / "d.parquet"
    collect.main(["--env", "hopper", "--algos", "--random-transitions", "50", "--out", str(data_path)])
    code = train.main(["--data", str(data_path), "--env", "walker2d", "--steps", "1", "--out", str(tmp_path / "c")])
    assert code == 2 and "pass the env the data was collected on" in capsys.readouterr().err


def test_init_fine_tunes_a_checkpoint_with_its_own_statistics(tmp_path, capsys):
    """--init starts from the checkpoint's weights, keeps its architecture, K and statistics."""
    import torch
    from transformers import DecisionTransformerConfig, DecisionTransformerModel

    from harness.io.checkpoints import save_checkpoint

    data_path = tmp_path / "d.parquet"
    collect.main(["--env", "hopper", "--algos", "--random-transitions", "120", "--out", str(data_path)])
    torch.manual_seed(3)
    model = DecisionTransformerModel(
        DecisionTransformerConfig(state_dim=11, act_dim=3, hidden_size=16, n_layer=1, n_head=1, max_ep_len=1000)
    )
    mean, std = np.full(11, 0.5), np.full(11, 2.0)  # not the data's
    start = save_checkpoint(
        model, tmp_path / "start", state_mean=mean, state_std=std, env_id="Hopper-v4", context_length=4
    )

    def run(out: str, lr: str, *extra: str) -> int:
        args = ["--data", str(data_path), "--env", "hopper", "--steps", "2", "--batch-size", "4", "--lr", lr]
        return train.main([*args, "--hidden-size", "64", "--init", str(start), "--out", str(tmp_path / out), *extra])

    assert run("frozen", "0") == 0  # lr 0 (and so no weight decay): the weights must come back unchanged
    frozen = load_checkpoint(str(tmp_path / "frozen"))
    assert frozen.model.config.hidden_size == 16 and frozen.context_length == 4
    np.testing.assert_array_equal(frozen.state_mean, mean)
    np.testing.assert_array_equal(frozen.state_std, std)
    for name, tensor in model.state_dict().items():
        assert torch.equal(frozen.model.state_dict()[name], tensor), name
    recorded = json.loads((tmp_path / "frozen" / "train_config.json").read_text())
    assert recorded["init"] == str(start) and recorded["hidden_size"] == 16
    assert recorded["init_fingerprint"] == load_checkpoint(str(start)).fingerprint()

    assert run("tuned", "1e-2") == 0  # a real step moves the weights
    tuned = load_checkpoint(str(tmp_path / "tuned"))
    assert any(not torch.equal(tuned.model.state_dict()[n], t) for n, t in model.state_dict().items())
    # the collator normalises with the checkpoint's statistics, not the data's
    collator = WindowCollator(OfflineDataset.from_parquet(data_path), 4, statistics=(mean, std))
    data = OfflineDataset.from_parquet(data_path)
    np.testing.assert_allclose(collator.states, (data.observations - 0.5) / 2.0, rtol=1e-6)

    # an export of an --init run's Trainer checkpoint keeps the init statistics too
    assert run("tuned2", "1e-2", "--save-steps", "1") == 0
    exp = ["--data", str(data_path), "--env", "hopper", "--init", str(start), "--out", str(tmp_path / "exp")]
    assert train.main([*exp, "--export", str(tmp_path / "tuned2" / "trainer" / "checkpoint-1")]) == 0
    np.testing.assert_array_equal(load_checkpoint(str(tmp_path / "exp")).state_std, std)
    # its Trainer checkpoints load as they are: the init's statistics, the new data's summary
    mid = load_checkpoint(str(tmp_path / "tuned2" / "trainer" / "checkpoint-1"))
    np.testing.assert_array_equal(mid.state_mean, mean)
    assert mid.dataset == tuned.dataset and mid.dataset.transitions == data.num_transitions

    # a checkpoint of another env is refused in one line
    capsys.readouterr()
    code = train.main(["--data", str(data_path), "--env", "hopper", "--init", "walker2d", "--out", str(tmp_path / "w")])
    err = capsys.readouterr().err
    assert code == 2 and "walker2d" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_trainer_checkpoints_evaluate_as_they_are(tmp_path, capsys):
    """Every checkpoint-N that harness.commands.train writes carries its statistics, return scale,
    K, env id and data summary, so the learning-curve sweep needs no --data; its rows equal those of
    the same sweep with --data (the old recipe) for the same checkpoints."""
    from harness.commands import sweep

    data_path = tmp_path / "d.parquet"
    collect_args = ["--env", "hopper", "--algos", "--random-transitions", "300", "--num-envs", "2"]
    assert collect.main([*collect_args, "--out", str(data_path)]) == 0
    run = tmp_path / "run"
    small = ["--hidden-size", "16", "--n-layer", "1", "--context-length", "5", "--batch-size", "8"]
    args = ["--data", str(data_path), "--env", "hopper", "--steps", "4", "--save-steps", "2", "--keep-checkpoints", "0"]
    assert train.main([*args, *small, "--out", str(run)]) == 0
    mid = load_checkpoint(str(run / "trainer" / "checkpoint-2"))
    final = load_checkpoint(str(run))
    np.testing.assert_array_equal(mid.state_mean, final.state_mean)
    assert (mid.context_length, mid.env_id, mid.dataset) == (5, "Hopper-v4", final.dataset)
    glob = f"hopper={run}/trainer/checkpoint-*"
    base = ["--envs", "hopper", "--checkpoint", glob, "--targets", "50", "150", "--episodes", "2", "--no-progress"]
    assert sweep.main([*base, "--out", str(tmp_path / "plain")]) == 0
    assert (tmp_path / "plain" / "learning_curve.png").is_file()
    # today's recipe on the same weights saved as before (no statistics in config.json) with --data
    old = tmp_path / "old"
    for step in (2, 4):
        src, dst = run / "trainer" / f"checkpoint-{step}", old / f"checkpoint-{step}"
        dst.mkdir(parents=True)
        (dst / "model.safetensors").write_bytes((src / "model.safetensors").read_bytes())
        cfg = json.loads((src / "config.json").read_text())
        for key in ("state_mean", "state_std", "return_scale", "env_id", "dataset"):  # K kept: same window
            cfg.pop(key)
        (dst / "config.json").write_text(json.dumps(cfg))
    old_args = ["--checkpoint", f"hopper={old}/checkpoint-*", "--data", f"hopper={data_path}"]
    old_base = [*base[:2], *old_args, *base[4:]]
    assert sweep.main([*old_base, "--out", str(tmp_path / "with-data")]) == 0
    # --data for checkpoints that carry their own statistics keeps today's behaviour: refused, one line
    capsys.readouterr()
    assert sweep.main([*base, "--data", f"hopper={data_path}", "--out", str(tmp_path / "both")]) == 2
    assert "already has state statistics" in capsys.readouterr().err
    cols = ["target", "episode", "return", "length"]
    plain = pd.read_csv(tmp_path / "plain" / "episodes.csv")[cols]
    with_data = pd.read_csv(tmp_path / "with-data" / "episodes.csv")[cols]
    pd.testing.assert_frame_equal(plain, with_data)
    labels = pd.read_csv(tmp_path / "plain" / "episodes.csv")["checkpoint"]
    assert [Path(x).name for x in labels.unique()] == ["checkpoint-2", "checkpoint-4"]


def test_every_train_option_is_documented(capsys):
    """--help says what every option means, from TrainConfig's field docstrings (one place)."""
    with pytest.raises(SystemExit):
        train.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name in TrainConfig.__dataclass_fields__:
        flag = "--" + name.replace("_", "-")
        doc = " ".join(field_docs(TrainConfig)[name].split())
        assert flag in text and doc[:40] in text, flag
    assert "Optimizer steps (gradient updates)" in text and "fraction of --steps" in text
