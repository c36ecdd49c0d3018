"""Return-conditioning quality of a sweep, from its CSV files and metadata.

Per env × checkpoint: the Spearman correlation between target and mean achieved return over the
targets inside the checkpoint's dataset [p10, p90] return range, the best target's mean
normalised score, and the share of "stuck" episodes: below 20 normalised at targets of 50
normalised and above. The bar of the main command's defaults (issue 15): Spearman >= 0.95,
best >= 85, stuck <= 5%.

    python benchmarks/quality.py results/reference      # prints and writes quality.csv there
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd
from scipy.stats import spearmanr

BAR_SPEARMAN, BAR_BEST, BAR_STUCK = 0.95, 85.0, 0.05
HIGH_TARGET, STUCK_BELOW = 50.0, 20.0


def quality(run: Path) -> pd.DataFrame:
    """One row per env × checkpoint of the sweep folder ``run`` (its summary.csv, episodes.csv, metadata.json)."""
    summary = pd.read_csv(run / "summary.csv")
    episodes = pd.read_csv(run / "episodes.csv")
    meta = json.loads((run / "metadata.json").read_text())
    ranges = {(c["env"], c["label"]): c.get("dataset") for c in meta["checkpoints"]}
    rows = []
    for (env, label), cell in summary.groupby(["env", "checkpoint"]):
        ds = ranges.get((env, label))
        inside = cell if ds is None else cell[(cell.target >= ds["return_p10"]) & (cell.target <= ds["return_p90"])]
        rho = spearmanr(inside.target, inside.return_mean).statistic if len(inside) > 2 else float("nan")
        best = cell.loc[cell.score_mean.idxmax()]
        high = set(cell.loc[cell.target_score >= HIGH_TARGET, "target"])
        eps = episodes[(episodes.env == env) & (episodes.checkpoint == label) & episodes.target.isin(high)]
        eps = eps[eps.status == "ok"]
        stuck = float((eps.normalized_score < STUCK_BELOW).mean()) if len(eps) else float("nan")
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
