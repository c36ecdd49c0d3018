"""Return-conditioning quality of a sweep, from its CSV files and metadata.

Per env × checkpoint: the Spearman correlation between target and mean achieved return over the
targets inside the checkpoint's dataset [p10, p90] return range, the best target's mean
normalised score, and the share of "stuck" episodes: below 20 normalised at targets of 50
normalised and above. The bar of the main command's defaults: Spearman >= 0.95,
best >= 85, stuck <= 5%. The numbers are the library's (:mod:`harness.analysis.calibration`, the
sweep's ``calibration.csv``); this script adds the bar.

    python -m benchmarks.checks.quality results/reference      # prints and writes quality.csv there
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
from scipy.stats import spearmanr

from harness.analysis.calibration import HIGH_TARGET, calibration

BAR_SPEARMAN, BAR_BEST, BAR_STUCK = 0.95, 85.0, 0.05


def quality(run: Path) -> pd.DataFrame:
    """One row per env × checkpoint of the sweep folder ``run`` (its summary.csv, episodes.csv, metadata.json)."""
    summary = pd.read_csv(run / "summary.csv")
    episodes = pd.read_csv(run / "episodes.csv")
    cal = calibration(episodes, summary).set_index(["env", "checkpoint"])
    rows = []
    for (env, label), cell in summary.groupby(["env", "checkpoint"]):
        c = cal.loc[(env, label)]
        inside = cell[(cell.target >= c["range_low"]) & (cell.target <= c["range_high"])]
        rho = float(c["rho"])
        best = cell.loc[cell.score_mean.idxmax()]
        high = set(cell.loc[cell.target_score >= HIGH_TARGET, "target"])
        eps = episodes[(episodes.env == env) & (episodes.checkpoint == label) & episodes.target.isin(high)]
        eps = eps[eps.status == "ok"]
        stuck = float(c["stuck_share"])
        rows.append(
            {
                "env": env,
                "checkpoint": label,
                "targets": len(cell),
                "episodes_per_target": int(cell.n.min()),
                "targets_in_p10_p90": len(inside),
                "spearman_p10_p90": rho,
                "spearman_all": spearmanr(cell.target, cell.return_mean).statistic,
                "best_target": best.target,
                "best_score_mean": best.score_mean,
                "best_score_ci": f"[{best.score_ci_low:.1f}, {best.score_ci_high:.1f}]",
                "episodes_at_targets_ge50": len(eps),
                "stuck_share": stuck,
                "meets_bar": bool(rho >= BAR_SPEARMAN and best.score_mean >= BAR_BEST and stuck <= BAR_STUCK),
            }
        )
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path)
    args = p.parse_args(argv)
    df = quality(args.run)
    df.to_csv(args.run / "quality.csv", index=False)
    print(df.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
