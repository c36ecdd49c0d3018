"""Claims across tasks and seeds: harness aggregate against an independent computation
(rliable's definitions, written here with loops; rliable itself does not import with the pinned
pandas) on sweeps of tiny checkpoints, harness select's disjoint seeds and optimism gap, a sweep
logged to MLflow, TensorBoard and W&B (offline) and read back (MLflow's client, TensorBoard's
EventAccumulator, W&B's own protobuf records from its log), the model card parsed by
huggingface_hub, and bad input."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from harness.analysis.aggregate import TAUS, aggregate, select
from harness.commands import aggregate as aggregate_command
from harness.commands import card as card_command
from harness.commands import log as log_command
from harness.commands import select as select_command
from harness.commands import sweep

from .conftest import make_checkpoint

pytestmark = pytest.mark.slow  # six sweeps made in the fixture (about 20 s on 2 cores)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two groups (methods) of three runs (training seeds), each a sweep of hopper and walker2d."""
    root = tmp_path_factory.mktemp("agg")
    out = {}
    for group, seeds in (("a", (0, 1, 2)), ("b", (3, 4, 5))):
        for s in seeds:
            ck = {e: make_checkpoint(root / f"{group}{s}-{e}", f"{e.capitalize()}-v4", hidden=16, seed=s)
                  for e in ("hopper", "walker2d")}  # fmt: skip
            folder = root / f"{group}-seed{s}"
            args = ["--envs", "hopper", "walker2d", "--targets", "100", "900", "--episodes", "4", "--no-progress"]
            args += ["--checkpoint", f"hopper={ck['hopper']}", "--checkpoint", f"walker2d={ck['walker2d']}"]
            assert sweep.main([*args, "--out", str(folder), "--seed", "7"]) == 0
            out.setdefault(group, []).append(folder)
    return out


def direct_matrix(folders) -> np.ndarray:
    """(runs, tasks) at each run's best target, from episodes.csv, written independently here."""
    rows = []
    for f in folders:
        df = pd.read_csv(f / "episodes.csv")
        df = df[df["status"] == "ok"]
        rows.append(
            [df[df["env"] == e].groupby("target")["normalized_score"].mean().max() for e in ("hopper", "walker2d")]
        )
    return np.array(rows)


def test_aggregate_equals_an_independent_computation(runs):
    reps, seed = 300, 5
    result = aggregate(runs, at="best", reps=reps, seed=seed)
    mats = {g: direct_matrix(f) for g, f in runs.items()}
    for g, m in mats.items():
        np.testing.assert_allclose(result.matrices()[g], m, rtol=0, atol=1e-12)
    table = result.metrics.set_index(["group", "metric"])

    def metrics_of(m):  # rliable's aggregate_iqm, aggregate_median, aggregate_mean, aggregate_optimality_gap
        return [scipy_stats.trim_mean(m, 0.25, axis=None), np.median(np.mean(m, axis=0)), np.mean(m),
                100 - np.mean(np.minimum(m, 100))]  # fmt: skip

    resampled = {}
    for i, (g, m) in enumerate(mats.items()):
        rng = np.random.default_rng([seed, i])  # the documented stream: one (runs, tasks) draw per resample
        draws = []
        for _ in range(reps):
            idx = rng.integers(0, m.shape[0], size=m.shape)
            draws.append(np.array([[m[idx[r, t], t] for t in range(m.shape[1])] for r in range(m.shape[0])]))
        resampled[g] = draws
        values = np.array([metrics_of(d) for d in draws])
        for j, name in enumerate(["IQM", "median", "mean", "optimality gap"]):
            assert table.loc[(g, name), "value"] == pytest.approx(metrics_of(m)[j])
            lo, hi = np.percentile(values[:, j], [2.5, 97.5])
            assert (table.loc[(g, name), "ci_low"], table.loc[(g, name), "ci_high"]) == pytest.approx((lo, hi))
    prof = result.profiles.set_index(["group", "tau"])
    for g, m in mats.items():
        for tau in TAUS[:6]:
            assert prof.loc[(g, float(tau)), "share"] == pytest.approx(np.mean(m > tau))
            band = np.percentile([np.mean(d > tau) for d in resampled[g]], [2.5, 97.5])
            assert (prof.loc[(g, float(tau)), "ci_low"], prof.loc[(g, float(tau)), "ci_high"]) == pytest.approx(band)

    def poi(x, y):  # rliable: Mann-Whitney U / (nx ny) per task, averaged over tasks
        return np.mean([scipy_stats.mannwhitneyu(x[:, t], y[:, t], alternative="greater").statistic / (len(x) * len(y))
                        if not np.array_equal(x[:, t], y[:, t]) else 0.5 for t in range(x.shape[1])])  # fmt: skip

    imp = result.improvement.set_index(["x", "y"])
    assert imp.loc[("a", "b"), "probability"] == pytest.approx(poi(mats["a"], mats["b"]))
    assert imp.loc[("a", "b"), "probability"] + imp.loc[("b", "a"), "probability"] == pytest.approx(1.0)
    band = np.percentile([poi(x, y) for x, y in zip(resampled["a"], resampled["b"], strict=True)], [2.5, 97.5])
    assert (imp.loc[("a", "b"), "ci_low"], imp.loc[("a", "b"), "ci_high"]) == pytest.approx(band)


def test_aggregate_command_writes_its_files(runs, tmp_path, capsys):
    folders = [str(f) for g in runs.values() for f in g]
    out = tmp_path / "agg"
    code = aggregate_command.main(
        [*folders, "--group", "a=*/a-seed*", "--group", "b=*/b-seed*", "--reps", "200", "--out", str(out)]
    )
    assert code == 0
    for name in ("aggregate.csv", "profiles.csv", "improvement.csv", "scores.csv", "aggregate.png", "report.html"):
        assert (out / name).is_file(), name
    assert "P(a > b)" in capsys.readouterr().out
    assert aggregate_command.main([*folders, "--group", "a=*/a-seed*", "--group", "b=*/b-seed*", "--at", "900",
                                   "--reps", "200", "--out", str(tmp_path / "at")]) == 0  # fmt: skip
    scores = pd.read_csv(tmp_path / "at" / "scores.csv")
    assert set(scores["target"]) == {900.0}


def test_aggregate_bad_input_is_one_line_and_exit_2(runs, tmp_path, capsys):
    folders = [str(f) for g in runs.values() for f in g]
    only_hopper = tmp_path / "h"
    ck = make_checkpoint(tmp_path / "ck", "Hopper-v4", hidden=16)
    assert sweep.main(["--envs", "hopper", "--checkpoint", f"hopper={ck}", "--targets", "100", "900",
                       "--episodes", "2", "--out", str(only_hopper), "--no-progress"]) == 0  # fmt: skip
    capsys.readouterr()
    cases = [
        ([*folders, "--group", "all=*"], "at least two groups"),
        ([*folders, str(only_hopper), "--group", "a=*/a-seed*", "--group", "b=*/b-seed*", "--group", "c=*/h"],
         "do not share their tasks"),
        ([*folders, "--group", "a=*/a-seed*", "--group", "b=*/b-seed*", "--at", "1234"], "has no target 1234"),
        ([*folders, "--group", "a=*/a-seed*"], "matches no"),
    ]  # fmt: skip
    for argv, needle in cases:
        out = tmp_path / "bad"
        assert aggregate_command.main([*argv, "--reps", "200", "--out", str(out)]) == 2, needle
        err = capsys.readouterr().err.strip()
        assert needle in err and "\n" not in err and not out.exists(), err


def test_select_reports_on_disjoint_seeds(runs, capsys):
    folder = runs["a"][0]
    assert select_command.main([str(folder), "--selection-episodes", "2", "--reps", "200"]) == 0
    table = pd.read_csv(folder / "select.csv")
    df = pd.read_csv(folder / "episodes.csv")
    for r in table.itertuples():
        pick = set(df[(df["env"] == r.env) & (df["episode"] < 2)]["seed"])
        rest = set(df[(df["env"] == r.env) & (df["episode"] >= 2)]["seed"])
        assert not pick & rest and r.selection_seeds == "7..8" and r.report_seeds == "9..10"
        cell = df[(df["env"] == r.env) & (df["target"] == r.target) & (df["status"] == "ok")]
        held = cell[cell["episode"] >= 2]["normalized_score"].mean()
        chosen = cell[cell["episode"] < 2]["normalized_score"].mean()
        assert r.heldout_score == pytest.approx(held) and r.optimism_gap == pytest.approx(chosen - held)
        means = df[(df["env"] == r.env) & (df["episode"] < 2)].groupby("target")["normalized_score"].mean()
        assert means.idxmax() == r.target  # the best on the selection seeds
    assert "optimism gap" in capsys.readouterr().out
    assert select(pd.read_csv(folder / "episodes.csv"), 1, reps=100)["report_episodes"].min() == 3
    assert select_command.main([str(folder), "--selection-episodes", "4"]) == 2


def test_mlflow_store_reads_back_every_metric(runs, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    from harness.analysis.publish import sweep_metrics

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    folder, uri = runs["b"][0], f"file:{tmp_path / 'mlruns'}"
    assert log_command.main([str(folder), "--tracker", "mlflow", "--uri", uri]) == 0
    client = MlflowClient(uri)
    run = client.search_runs([client.get_experiment_by_name("harness").experiment_id])[0]
    expected = sweep_metrics(folder)
    assert run.data.metrics == pytest.approx(expected) and len(expected) >= 2 * 2 * 6
    summary = pd.read_csv(folder / "summary.csv")
    r = summary.iloc[0]
    assert run.data.metrics[f"score_mean.{r.env_id}.{r.checkpoint}.none.t{r.target:g}"] == pytest.approx(r.score_mean)
    assert run.data.params["episodes"] == "4"
    assert {"episodes.csv", "summary.csv", "report.html"} <= {a.path for a in client.list_artifacts(run.info.run_id)}


def test_tensorboard_event_file_reads_back(runs, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folder = runs["a"][1]
    assert log_command.main([str(folder), "--tracker", "tensorboard", "--uri", str(tmp_path / "tb")]) == 0
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    summary = pd.read_csv(folder / "summary.csv")
    tags = acc.Tags()["scalars"]
    assert len(tags) == 2
    for tag in tags:
        events = acc.Scalars(tag)
        env_id, label = tag.split("/", 1)[1].split(".", 1)
        rows = summary[(summary["env_id"] == env_id)].sort_values("target")
        assert [e.step for e in events] == [100, 900]
        np.testing.assert_allclose([e.value for e in events], rows["score_mean"], rtol=1e-6)


def test_wandb_offline_run_reads_back(runs, tmp_path, monkeypatch):
    """An offline W&B run of a sweep, read back from the library's log with its own protobuf records:
    every number in the summary, the arguments as config, the curves against the target, the files;
    a damaged log is refused in one line."""
    pytest.importorskip("wandb")
    from harness.analysis.publish import sweep_metrics
    from harness.core.errors import HarnessError
    from tests.wandb_reader import read_wandb_run

    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))  # nothing outside the test's folder
    folder = runs["b"][1]
    assert log_command.main([str(folder), "--tracker", "wandb", "--uri", str(tmp_path / "wb")]) == 0
    (run_dir,) = (tmp_path / "wb" / "wandb").glob("offline-run-*")
    got = read_wandb_run(run_dir)
    assert got["complete"]  # the exit record is on disk when harness log returns
    expected = sweep_metrics(folder)
    assert {k: got["summary"][k] for k in expected} == expected and len(expected) >= 2 * 2 * 6
    assert got["name"] == folder.name and got["config"]["episodes"] == "4"
    summary = pd.read_csv(folder / "summary.csv")
    for r in summary.itertuples():
        rows = [h for h in got["history"] if h.get("target") == r.target]
        assert [h[f"score/{r.env_id}.{r.checkpoint}"] for h in rows] == [pytest.approx(r.score_mean, rel=1e-12)]
    assert {"episodes.csv", "summary.csv", "report.html"} <= set(got["files"])
    assert (run_dir / "files" / "episodes.csv").read_bytes() == (folder / "episodes.csv").read_bytes()
    log = next(run_dir.glob("run-*.wandb"))
    data = bytearray(log.read_bytes())
    data[len(data) // 2] ^= 0xFF
    log.write_bytes(bytes(data))
    with pytest.raises(HarnessError, match="damaged at byte"):
        read_wandb_run(run_dir)
    with pytest.raises(HarnessError, match="no run-"):
        read_wandb_run(tmp_path)


def test_card_parses_with_huggingface_hub(runs, tmp_path):
    from huggingface_hub import ModelCard

    folder = runs["a"][2]
    out = tmp_path / "README.md"
    summary = pd.read_csv(folder / "summary.csv")
    label = summary[summary["env"] == "hopper"]["checkpoint"].iloc[0]
    assert card_command.main([str(folder), "--checkpoint", label, "--env", "hopper", "--out", str(out)]) == 0
    card = ModelCard.load(out)
    results = card.data.eval_results
    best = summary[summary["env"] == "hopper"]["score_mean"].max()
    score = next(r for r in results if r.metric_type == "normalized_score")
    assert (
        score.dataset_type == "Hopper-v4" and score.dataset_name and score.metric_value == pytest.approx(best, abs=0.01)
    )
    assert card_command.main([str(folder), "--out", str(tmp_path / "x.md")]) == 2  # two checkpoints, none named


def test_unknown_tracker_is_refused(runs, capsys):
    assert log_command.main([str(runs["a"][0]), "--tracker", "neptune"]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown --tracker 'neptune'" in err and "\n" not in err
