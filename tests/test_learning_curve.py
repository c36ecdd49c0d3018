"""Many checkpoints of one training run: Trainer output folders, the tutorial's own checkpoints
(no state statistics: ``--data``), the learning-curve figure and ``compare``'s best-vs-last."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import DecisionTransformerConfig, DecisionTransformerModel, Trainer, TrainingArguments

from harness.analysis.comparison import best_vs_last
from harness.analysis.figures import learning_condition, learning_curve_figure, train_steps
from harness.commands import compare, sweep
from harness.core.errors import HarnessError
from harness.io.checkpoints import expand_spec, load_checkpoint
from harness.io.data import load_source, statistics_from


class TutorialDT(DecisionTransformerModel):
    """The Hugging Face tutorial's ``TrainableDT``: a subclass whose forward returns the loss."""

    def forward(self, **kwargs):
        output = super().forward(**kwargs)
        action_preds = output[1]
        action_targets = kwargs["actions"]
        mask = kwargs["attention_mask"]
        act_dim = action_preds.shape[2]
        action_preds = action_preds.reshape(-1, act_dim)[mask.reshape(-1) > 0]
        action_targets = action_targets.reshape(-1, act_dim)[mask.reshape(-1) > 0]
        return {"loss": torch.mean((action_preds - action_targets) ** 2)}


class _Windows(torch.utils.data.Dataset):
    def __len__(self):
        return 64

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        k = 5
        return {
            "states": torch.randn(k, 11, generator=g),
            "actions": torch.rand(k, 3, generator=g) * 2 - 1,
            "rewards": torch.randn(k, 1, generator=g),
            "returns_to_go": torch.randn(k, 1, generator=g),
            "timesteps": torch.arange(k),
            "attention_mask": torch.ones(k),
        }


def hopper_data(n_traj: int = 6, seed: int = 0) -> pd.DataFrame:
    """A small dataset in the tutorial's schema (one row per trajectory, list columns)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_traj):
        n = 5 + 3 * i
        rows.append(
            {
                "observations": [list(x) for x in rng.normal(1.0, 2.0, size=(n, 11)).astype(np.float32)],
                "actions": [list(x) for x in rng.uniform(-1, 1, size=(n, 3)).astype(np.float32)],
                "rewards": rng.normal(3.0, 1.0, size=n).astype(np.float32),
                "dones": np.r_[np.zeros(n - 1), 1.0].astype(bool),
            }
        )
    return pd.DataFrame(rows)


def tutorial_statistics(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The tutorial collator's normalisation, written as it is there."""
    states = []
    for obs in frame["observations"]:
        states.extend([list(map(float, o)) for o in obs])
    states = np.vstack(states)
    return np.mean(states, axis=0), np.std(states, axis=0) + 1e-6


@pytest.fixture(scope="module")
def tutorial_run(tmp_path_factory) -> tuple[Path, Path]:
    """A Trainer output folder written the tutorial's way (checkpoint-1..3, no statistics) and its data."""
    root = tmp_path_factory.mktemp("tutorial")
    data = root / "hopper.parquet"
    hopper_data().to_parquet(data)
    torch.manual_seed(0)
    model = TutorialDT(
        DecisionTransformerConfig(state_dim=11, act_dim=3, hidden_size=16, n_layer=1, n_head=1, max_ep_len=1000)
    )
    args = TrainingArguments(
        output_dir=str(root / "output"),
        max_steps=3,
        per_device_train_batch_size=4,
        learning_rate=1e-2,
        save_steps=1,
        use_cpu=True,
        report_to=[],
        remove_unused_columns=False,
        disable_tqdm=True,
        logging_steps=1,
    )
    Trainer(model=model, args=args, train_dataset=_Windows()).train()
    return root / "output", data


def test_tutorial_checkpoints_are_refused_without_data_and_the_error_names_the_option(tutorial_run, tmp_path, capsys):
    output, _ = tutorial_run
    assert sorted(p.name for p in output.iterdir() if p.name.startswith("checkpoint-")) == [
        "checkpoint-1",
        "checkpoint-2",
        "checkpoint-3",
    ]
    assert json.loads((output / "checkpoint-3" / "config.json").read_text())["architectures"] == ["TutorialDT"]
    code = sweep.main(
        ["--envs", "hopper", "--checkpoint", f"hopper={output}/checkpoint-3", "--out", str(tmp_path / "o")]
        + ["--targets", "100", "--episodes", "1", "--no-progress"]
    )
    err = capsys.readouterr().err
    assert code == 2 and "--data" in err and "Traceback" not in err and not (tmp_path / "o").exists()


def test_expand_spec_orders_trainer_checkpoints_by_step(tutorial_run, tmp_path):
    output, _ = tutorial_run
    want = [str(output / f"checkpoint-{n}") for n in (1, 2, 3)]
    assert expand_spec(str(output)) == want
    assert expand_spec(f"{output}/checkpoint-*") == want
    # numeric order, not string order (checkpoint-10 after checkpoint-9)
    for n in (9, 10):
        d = tmp_path / "run" / f"checkpoint-{n}"
        d.mkdir(parents=True)
        (d / "config.json").write_text("{}")
    assert [Path(p).name for p in expand_spec(str(tmp_path / "run"))] == ["checkpoint-9", "checkpoint-10"]
    with pytest.raises(HarnessError, match="matches no checkpoint folder"):
        expand_spec(f"{tmp_path}/nothing-*")
    assert expand_spec("hopper") == ["hopper"]


def test_statistics_are_the_tutorial_collators(tutorial_run):
    output, data = tutorial_run
    stats = statistics_from(str(data))
    mean, std = tutorial_statistics(pd.read_parquet(data))
    np.testing.assert_array_equal(stats.state_mean, mean)
    np.testing.assert_array_equal(stats.state_std, std)
    ckpt = load_checkpoint(str(output / "checkpoint-2"), statistics=stats)
    np.testing.assert_array_equal(ckpt.state_mean, mean.astype(np.float32))
    assert ckpt.statistics == f"data:{data}" and ckpt.train_step == 2
    assert ckpt.dataset.trajectories == 6
    # a checkpoint with its own statistics refuses --data instead of ignoring it
    with pytest.raises(HarnessError, match="already has state statistics"):
        load_checkpoint("hopper", statistics=stats)


def test_hub_dataset_spec_reads_the_parquet_conversion(tmp_path, monkeypatch):
    """``owner/name:subset`` downloads ``<subset>/train/*.parquet`` from the Hub's parquet
    conversion; here the download is a local folder of the same layout (two shards)."""
    frame = hopper_data(8, seed=3)
    shard_dir = tmp_path / "snap" / "hopper-medium-v2" / "train"
    shard_dir.mkdir(parents=True)
    frame.iloc[:5].to_parquet(shard_dir / "0000.parquet")
    frame.iloc[5:].to_parquet(shard_dir / "0001.parquet")
    calls = []

    def fake_snapshot_download(repo_id, **kwargs):
        calls.append((repo_id, kwargs))
        return str(tmp_path / "snap")

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    ds = load_source("edbeeching/decision_transformer_gym_replay:hopper-medium-v2")
    assert ds.num_trajectories == 8
    assert calls == [
        (
            "edbeeching/decision_transformer_gym_replay",
            {
                "repo_type": "dataset",
                "revision": "refs/convert/parquet",
                "allow_patterns": ["hopper-medium-v2/train/*.parquet"],
            },
        )
    ]
    stats = statistics_from("edbeeching/decision_transformer_gym_replay:hopper-medium-v2")
    np.testing.assert_array_equal(stats.state_mean, tutorial_statistics(frame)[0])
    assert stats.dataset.name == "hopper-medium-v2"
    with pytest.raises(HarnessError, match="no subset"):
        load_source("edbeeching/decision_transformer_gym_replay:walker2d-medium-v2")
    with pytest.raises(HarnessError, match="neither a parquet file nor a Hub dataset"):
        load_source("not-a-dataset")


@pytest.mark.slow
def test_learning_curve_sweep_and_best_vs_last(tutorial_run, tmp_path, capsys):
    """The whole flow on the tutorial's Trainer output: sweep every checkpoint with --data,
    learning_curve figure, statistics recorded, then compare's best-vs-last on the folder."""
    output, data = tutorial_run
    out = tmp_path / "curve"
    args = ["--envs", "hopper", "--checkpoint", f"hopper={output}/checkpoint-*", "--data", f"hopper={data}"]
    args += ["--targets", "100", "300", "--episodes", "2", "--out", str(out), "--no-progress"]
    assert sweep.main(args) == 0
    eps = pd.read_csv(out / "episodes.csv")
    assert sorted(set(eps["checkpoint"])) == [f"{output}/checkpoint-{n}" for n in (1, 2, 3)]
    meta = json.loads((out / "metadata.json").read_text())
    assert [c["train_step"] for c in meta["checkpoints"]] == [1, 2, 3]
    assert {c["statistics"] for c in meta["checkpoints"]} == {f"data:{data}"}
    assert meta["arguments"]["data"] == [f"hopper={data}"]
    identity = json.loads((out / "sweep.json").read_text())
    assert {c["statistics"] for c in identity["cells"]} == {f"data:{data}"}
    assert (out / "learning_curve.png").is_file() and (out / "learning_curve.svg").is_file()
    # a shifted-only sweep of the same checkpoints draws its condition's curve, named in the title
    shifted = tmp_path / "curve-shifted"
    assert sweep.main([*args[:-3], "--shift", "mass=0.9", "--out", str(shifted), "--no-progress"]) == 0
    assert (shifted / "learning_curve.png").is_file()
    rows, condition = learning_condition(pd.read_csv(shifted / "summary.csv", keep_default_na=False))
    fig = learning_curve_figure(rows, train_steps(shifted), condition)
    assert condition == "mass=0.9" and "[mass=0.9]" in fig.axes[0].get_title()
    # rerunning the same command resumes (nothing to do); other data is another sweep
    assert sweep.main(args) == 0
    other = tmp_path / "other.parquet"
    hopper_data(seed=9).to_parquet(other)
    code = sweep.main([a.replace(str(data), str(other)) for a in args])
    assert code == 2 and "other arguments" in capsys.readouterr().err

    capsys.readouterr()
    code = compare.main([str(out), "--out", str(tmp_path / "cmp")])
    printed = capsys.readouterr().out
    table = pd.read_csv(tmp_path / "cmp" / "best_vs_last.csv")
    assert code in (0, 1) and len(table) == 1 and table["last_step"].iloc[0] == 3
    assert table["best_step"].iloc[0] in (1, 2, 3) and "best step" in printed


def _episodes(scores: dict[str, list[float]], targets=(1000.0, 2000.0)) -> pd.DataFrame:
    rows = []
    for label, values in scores.items():
        for t in targets:
            for k, v in enumerate(values):
                rows.append(
                    {
                        "env": "hopper",
                        "checkpoint": label,
                        "target": t,
                        "seed": k,
                        "status": "ok",
                        "normalized_score": v,
                    }
                )
    return pd.DataFrame(rows)


def test_best_vs_last_finds_the_best_step_and_a_late_drop():
    rng = np.random.default_rng(0)
    base = rng.normal(0, 1, size=16)
    eps = _episodes({"c/checkpoint-100": 40 + base, "c/checkpoint-200": 60 + base, "c/checkpoint-300": 45 + base})
    steps = {("hopper", f"c/checkpoint-{s}"): s for s in (100, 200, 300)}
    table, rows = best_vs_last(eps, steps)
    r = table.iloc[0]
    assert (r["best_step"], r["last_step"]) == (200, 300)
    assert r["diff"] == pytest.approx(-15.0) and r["verdict"] == "drop"
    # Bonferroni over every comparison the choice of "best" could have made
    assert rows["confidence"].iloc[0] == pytest.approx(1 - 0.05 / 6)
    # the last step being the best is no drop
    eps = _episodes({"c/checkpoint-100": 40 + base, "c/checkpoint-300": 41 + base})
    table, _ = best_vs_last(eps, {("hopper", "c/checkpoint-100"): 100, ("hopper", "c/checkpoint-300"): 300})
    assert table["verdict"].iloc[0] == "last is best" and table["best_step"].iloc[0] == 300
    with pytest.raises(HarnessError, match="two training steps"):
        best_vs_last(eps, {})


def test_data_argument_errors(tmp_path, capsys):
    base = ["--targets", "100", "--episodes", "1", "--no-progress", "--out", str(tmp_path / "o")]
    cases = [
        (["--envs", "hopper", "walker2d", "--data", "d.parquet"], "lacks the env"),
        (["--envs", "hopper", "--data", "walker2d=d.parquet"], "not in --envs"),
        (["--envs", "hopper", "--data", "hopper=a.parquet", "--data", "hopper=b.parquet"], "twice"),
        (["--envs", "hopper", "--checkpoint", f"hopper={tmp_path}/none-*"], "matches no checkpoint folder"),
    ]
    for extra, message in cases:
        code = sweep.main(extra + base)
        err = capsys.readouterr().err
        assert code == 2 and message in err and "Traceback" not in err, (extra, err)
    assert not (tmp_path / "o").exists()
