"""summary.csv against an independent computation from episodes.csv, and the figures against the
numbers they plot (read back from the figure's artists, not only its file)."""

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PolyCollection

from harness.analysis.figures import episode_length_figure, return_conditioning_figure
from harness.analysis.summary import summarize
from harness.core.schema import EPISODE_COLUMNS, SUMMARY_COLUMNS
from harness.io.data import DatasetSummary

R_RANDOM, R_EXPERT = -20.272305, 3234.3  # D4RL hopper (shared/reference)


def score(r):
    return 100 * (np.asarray(r, float) - R_RANDOM) / (R_EXPERT - R_RANDOM)


@pytest.fixture(scope="module")
def episodes() -> pd.DataFrame:
    """Two targets of 7 and 5 episodes; one failed episode (its return must not count)."""
    returns = {1000.0: [900.0, 1200.0, 1100.0, 300.0, 1000.0, 1150.0, 5000.0], 2000.0: [1800.0, 2100.0, 1900, 2500, 50]}
    rows = []
    for target, rs in returns.items():
        for k, r in enumerate(rs):
            failed = target == 2000.0 and k == 4
            rows.append(
                dict(env="hopper", env_id="Hopper-v4", checkpoint="c", target=target, episode=k, seed=k, length=100 + k)
                | {"return": r, "status": "nan_action" if failed else "ok", "normalized_score": float(score(r))}
            )
    return pd.DataFrame(rows).reindex(columns=EPISODE_COLUMNS)


def bootstrap_by_hand(x: np.ndarray, seed: int = 0, resamples: int = 2000) -> tuple[float, float]:
    """Percentile bootstrap of the mean, written out with numpy: scipy.stats.bootstrap draws
    ``rng.integers(0, n, (resamples, n))`` indices from the generator it is given."""
    idx = np.random.default_rng(seed).integers(0, len(x), (resamples, len(x)))
    means = x[idx].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def test_summary_equals_an_independent_computation(episodes):
    data = DatasetSummary("d", 3, 300, 10.0, 20.0, 500.0, 2400.0, 3000.0)
    s = summarize(episodes, datasets={("hopper", "c"): data}).set_index("target")
    assert list(summarize(episodes).columns) == SUMMARY_COLUMNS
    for target, cell in episodes.groupby("target"):
        ok = cell[cell["status"] == "ok"]
        x = ok["return"].to_numpy(float)
        row = s.loc[target]
        assert row["n"] == len(x) and row["n_failed"] == len(cell) - len(x)
        assert row["return_mean"] == pytest.approx(sum(x) / len(x), rel=1e-12)
        assert row["return_std"] == pytest.approx(np.sqrt(((x - x.mean()) ** 2).sum() / (len(x) - 1)), rel=1e-12)
        lo, hi = bootstrap_by_hand(x)
        assert (row["return_ci_low"], row["return_ci_high"]) == pytest.approx((lo, hi), rel=1e-9)
        q = np.sort(x)
        cut = int(0.25 * len(q))  # the interquartile mean: drop a quarter at each end
        assert row["return_iqm"] == pytest.approx(q[cut : len(q) - cut].mean(), rel=1e-12)
        assert row["score_mean"] == pytest.approx(score(x.mean()), rel=1e-12)
        assert row["score_ci_low"] == pytest.approx(score(lo), rel=1e-9)
        assert row["target_score"] == pytest.approx(score(target), rel=1e-12)
        assert row["length_mean"] == pytest.approx(ok["length"].mean())
        assert row["dataset_best_return"] == 3000.0 and row["dataset_return_p90"] == 2400.0
        assert row["dataset_best_score"] == pytest.approx(score(3000.0))


def test_return_conditioning_figure_plots_the_summary(episodes):
    summary = summarize(episodes)
    fig = return_conditioning_figure(summary)
    ax = fig.axes[0]
    line = next(ln for ln in ax.get_lines() if ln.get_label() == "c")
    np.testing.assert_allclose(line.get_xdata(), summary["target_score"])
    np.testing.assert_allclose(line.get_ydata(), summary["score_mean"])
    band = next(c for c in ax.collections if isinstance(c, PolyCollection))
    ys = band.get_paths()[0].vertices[:, 1]
    assert ys.min() == pytest.approx(summary["score_ci_low"].min()) and ys.max() == pytest.approx(
        summary["score_ci_high"].max()
    )
    oracle = next(ln for ln in ax.get_lines() if ln.get_label().startswith("oracle"))
    np.testing.assert_allclose(oracle.get_xdata(), oracle.get_ydata())


def test_episode_length_figure_plots_the_ok_episodes(episodes):
    summary = summarize(episodes)
    line = next(ln for ln in episode_length_figure(episodes, summary).axes[0].get_lines() if ln.get_label() == "c")
    ok = episodes[episodes["status"] == "ok"]
    np.testing.assert_allclose(line.get_ydata(), ok.groupby("target")["length"].mean().to_numpy())


def test_summary_keeps_the_sweeps_checkpoint_order(episodes):
    """Checkpoints in the order the sweep ran them (a Trainer run's steps), not string order."""
    parts = [episodes.assign(checkpoint=f"run/checkpoint-{n}") for n in (8000, 10000, 9000)]
    s = summarize(pd.concat(parts, ignore_index=True))
    order = list(dict.fromkeys(s["checkpoint"]))
    assert order == ["run/checkpoint-8000", "run/checkpoint-10000", "run/checkpoint-9000"]
    assert list(s["target"]) == [1000.0, 2000.0] * 3
