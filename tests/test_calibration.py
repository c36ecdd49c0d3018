"""calibration.csv (harness/analysis/calibration.py) against a direct computation from episode rows,
one number at a time, written here independently (scipy and plain pandas), and in a real sweep folder."""

import numpy as np
import pandas as pd
import pytest
from scipy.stats import linregress, spearmanr

from harness.analysis.calibration import CALIBRATION_COLUMNS, calibration, format_table
from harness.analysis.summary import summarize
from harness.core.schema import EPISODE_COLUMNS
from harness.io.data import DatasetSummary

R_RANDOM, R_EXPERT = -20.272305, 3234.3  # D4RL hopper (shared/reference)
TARGETS = [500.0, 1000.0, 1500.0, 2000.0, 2500.0, 3000.0, 3500.0, 4000.0]
P10, P90, BEST = 800.0, 3200.0, 3300.0


def score(r):
    return 100 * (np.asarray(r, float) - R_RANDOM) / (R_EXPERT - R_RANDOM)


@pytest.fixture(scope="module")
def sweep() -> tuple[pd.DataFrame, pd.DataFrame]:
    """One checkpoint that tracks up to ~2,600 and levels off, with a few stuck episodes and one failed one."""
    rng = np.random.default_rng(3)
    rows = []
    for target in TARGETS:
        for k in range(9):
            ret = min(target, 2600.0) * 0.95 + rng.normal(0, 120)
            if target >= 2000 and k == 0:
                ret = 200.0  # stuck: far below the target
            status = "env_error" if (target == 1000.0 and k == 8) else "ok"
            rows.append(
                dict(env="hopper", env_id="Hopper-v4", checkpoint="c", target=target, episode=k, seed=k)
                | dict(length=1000, terminated=False, truncated=True, wall_time_s=0.1, status=status, error="")
                | {"return": ret, "normalized_score": float(score(ret))}
            )
    episodes = pd.DataFrame(rows).reindex(columns=EPISODE_COLUMNS)
    data = DatasetSummary(
        name="d", trajectories=10, transitions=10_000, return_min=0.0, return_p10=P10, return_median=2000.0,
        return_p90=P90, return_max=BEST,
    )  # fmt: skip
    summary = summarize(episodes, datasets={("hopper", "c"): data})
    return episodes, summary


@pytest.fixture(scope="module")
def row(sweep) -> pd.Series:
    cal = calibration(*sweep)
    assert list(cal.columns) == CALIBRATION_COLUMNS and len(cal) == 1
    return cal.iloc[0]


def ok(episodes: pd.DataFrame) -> pd.DataFrame:
    return episodes[episodes["status"] == "ok"]


def test_rho_inside_the_data_range(sweep, row):
    means = ok(sweep[0]).groupby("target")["return"].mean()
    inside = means[(means.index >= P10) & (means.index <= P90)]
    assert row["targets_in_range"] == len(inside) == 5
    assert row["rho"] == pytest.approx(spearmanr(inside.index, inside.values).statistic, abs=1e-12)
    assert row["rho_ci_low"] <= row["rho"] <= row["rho_ci_high"]


def test_slope_of_normalised_achieved_on_normalised_target(sweep, row):
    means = ok(sweep[0]).groupby("target")["normalized_score"].mean()
    inside = means[(means.index >= P10) & (means.index <= P90)]
    assert row["slope"] == pytest.approx(linregress(score(inside.index), inside.values).slope, abs=1e-12)
    assert row["slope_ci_low"] < row["slope"] < row["slope_ci_high"]


def test_tracking_error(sweep, row):
    e = ok(sweep[0])
    e = e[(e["target"] >= P10) & (e["target"] <= P90)]
    expected = (e["normalized_score"] - score(e["target"])).abs().mean()
    assert row["tracking_error"] == pytest.approx(expected, abs=1e-12)


def test_best_score_and_saturation(sweep, row):
    e = ok(sweep[0])
    means = e.groupby("target")["normalized_score"].mean()
    assert row["best_score"] == pytest.approx(means.max(), abs=1e-12) and row["best_target"] == means.idxmax()
    within = means[means >= row["best_score_ci_low"]]
    assert row["saturation_target"] == within.index.min()
    assert row["saturation_target"] < row["best_target"] or row["saturation_target"] == row["best_target"]


def test_stuck_share(sweep, row):
    e = ok(sweep[0])
    high = e[score(e["target"]) >= 50.0]
    assert row["stuck_share"] == pytest.approx((high["normalized_score"] < 20.0).mean(), abs=1e-12)
    assert row["stuck_share"] > 0


def test_above_the_data(sweep, row):
    e = ok(sweep[0])
    means = e.groupby("target")["normalized_score"].mean()
    above = means[means.index > BEST]
    assert row["targets_above_data"] == len(above) == 2
    assert row["above_ratio"] == pytest.approx(above.mean() / means.max(), abs=1e-12)
    ratio = row["above_ratio"]
    assert row["above"] == ("holds" if ratio >= 0.9 else "collapses" if ratio < 0.5 else "falls")


def test_a_target_blind_policy_reads_flat_and_a_collapse_reads_as_one(sweep):
    episodes, summary = sweep
    blind = episodes.copy()
    rng = np.random.default_rng(0)
    blind["return"] = 1500 + rng.normal(0, 100, len(blind))
    blind["normalized_score"] = score(blind["return"])
    row = calibration(blind, summary).iloc[0]
    assert abs(row["slope"]) < 0.1 and row["slope_ci_low"] < 0.1 and row["slope_ci_high"] > -0.1
    collapse = episodes.copy()
    collapse.loc[collapse["target"] > BEST, ["return", "normalized_score"]] = [0.0, float(score(0.0))]
    assert calibration(collapse, summary).iloc[0]["above"] == "collapses"


def test_a_flat_response_reads_rho_0_and_compare_calls_it_a_drop(sweep):
    """A return-blind policy whose achieved return is the same at every target (as the embedded
    hopper with its return embedding zeroed gives: every episode identical across targets) has
    rho 0, not NaN, so compare sees the drop."""
    from harness.analysis.calibration import compare_calibration

    episodes, summary = sweep
    flat = episodes.copy()
    flat["return"] = 300.0 + flat["seed"]  # depends on the reset seed only
    flat["status"] = "ok"
    flat["normalized_score"] = score(flat["return"])
    assert calibration(flat, summary).iloc[0]["rho"] == 0.0
    cmp = compare_calibration(episodes, summary, flat, {"hopper": [("c", "c")]}).set_index("number")
    assert cmp.loc["rho", "verdict"] == "drop" and cmp.loc["slope", "verdict"] == "drop"


def test_no_dataset_statistics_uses_every_target_and_says_so(sweep):
    episodes, summary = sweep
    bare = summary.assign(dataset_return_p10=np.nan, dataset_return_p90=np.nan, dataset_best_return=np.nan)
    row = calibration(episodes, bare).iloc[0]
    assert row["range"].startswith("all targets") and row["targets_in_range"] == len(TARGETS)
    assert row["above"] == "none" and np.isnan(row["above_ratio"])
    assert "above the data: none" in format_table(calibration(episodes, bare))


def test_compare_calibration_sees_a_target_blind_candidate_and_not_itself(sweep):
    """Paired by seed: against itself no change (diffs exactly 0); against a candidate that ignores
    the target (return embedding zeroed: achieved return flat), a significant drop in rho and slope."""
    from harness.analysis.calibration import compare_calibration

    episodes, summary = sweep
    same = compare_calibration(episodes, summary, episodes, {"hopper": [("c", "c")]})
    assert list(same["number"]) == ["rho", "slope"] and (same["diff"] == 0).all()
    assert (same["verdict"] == "no change").all()
    blind = episodes.copy()
    rng = np.random.default_rng(1)
    blind["return"] = 1500 + rng.normal(0, 100, len(blind))
    blind["normalized_score"] = score(blind["return"])
    worse = compare_calibration(episodes, summary, blind, {"hopper": [("c", "c")]})
    assert (worse["verdict"] == "drop").all() and (worse["diff_ci_high"] < 0).all()
    assert worse["confidence"].iloc[0] == pytest.approx(1 - 0.05 / 2)


def test_harness_compare_exits_1_on_a_drop_in_return_conditioning(sweep, tmp_path, capsys):
    """The command line: calibration_compare.csv written; exit 1 for the blind candidate, 0 for itself."""
    from harness.commands.compare import main

    episodes, summary = sweep
    blind = episodes.copy()
    blind["return"] = 1500 + np.random.default_rng(1).normal(0, 100, len(blind))
    blind["normalized_score"] = score(blind["return"])
    # the same per-episode mean score: the score comparison alone would not fail
    blind["normalized_score"] += episodes["normalized_score"].mean() - blind["normalized_score"].mean()
    blind["return"] = blind["normalized_score"] / 100 * (R_EXPERT - R_RANDOM) + R_RANDOM
    for name, df in (("base", episodes), ("same", episodes), ("blind", blind)):
        (tmp_path / name).mkdir()
        df.to_csv(tmp_path / name / "episodes.csv", index=False)
        summary.to_csv(tmp_path / name / "summary.csv", index=False)
    assert main([str(tmp_path / "base"), str(tmp_path / "same"), "--min-drop", "100"]) == 0
    assert main([str(tmp_path / "base"), str(tmp_path / "blind"), "--min-drop", "100"]) == 1
    out = capsys.readouterr().out
    assert "2 significant drops in rho or slope" in out
    assert (tmp_path / "blind" / "compare" / "calibration_compare.csv").is_file()
