"""``summary.csv``: statistics per env × checkpoint × target, from episode rows alone."""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness.analysis.robustness import retained_by_target, with_shift
from harness.core import stats
from harness.core.schema import SUMMARY_COLUMNS, Status
from harness.io.data import DatasetSummary
from harness.world.envs import resolve_env


def summarize(
    episodes: pd.DataFrame,
    best_returns: dict[tuple[str, str], float] | None = None,
    datasets: dict[tuple[str, str], DatasetSummary] | None = None,
) -> pd.DataFrame:
    """One row per env × checkpoint × target: n, mean, std, 95% bootstrap CI, IQM, scores.

    Statistics are over the episodes whose ``status`` is ``ok`` (``n`` of them); ``n_failed``
    counts the others (their partial returns are in episodes.csv, not in the means). Rows are
    ordered by env, then checkpoints in the order they first appear in ``episodes`` (the sweep's
    order: a Trainer run's ``checkpoint-N`` folders by step, not ``checkpoint-10000`` before
    ``checkpoint-8000``), then target.

    Args:
        episodes: rows with the columns of :data:`EPISODE_COLUMNS`.
        best_returns: best trajectory return of each (env, checkpoint)'s dataset, if known.
        datasets: each (env, checkpoint)'s training-data summary, if known (its return
            quantiles go into the table, for figures drawn from the CSV files alone).
    """
    datasets = datasets or {}
    episodes = with_shift(episodes)
    best_returns = (best_returns or {}) | {k: d.return_max for k, d in datasets.items()}
    first_seen = {label: i for i, label in reversed(list(enumerate(episodes["checkpoint"])))}
    shift_seen = {s: i for i, s in reversed(list(enumerate(episodes["shift"])))}
    groups = sorted(
        episodes.groupby(["env", "env_id", "checkpoint", "shift", "target"], sort=False),
        key=lambda g: (g[0][0], g[0][1], first_seen[g[0][2]], shift_seen[g[0][3]], g[0][4]),
    )
    kept = retained_by_target(episodes)
    rows = []
    for (env_name, env_id, label, shift, target), cell in groups:
        env = resolve_env(env_id)
        ok = cell["status"] == Status.OK.value if "status" in cell else np.ones(len(cell), dtype=bool)
        d = stats.describe(cell.loc[ok, "return"].to_numpy())
        best = best_returns.get((env_name, label), float("nan"))
        data = datasets.get((env_name, label))
        rows.append(
            {
                "env": env_name,
                "env_id": env_id,
                "checkpoint": label,
                "shift": shift,
                "target": target,
                "target_score": env.normalized_score(target),
                "n": d["n"],
                "n_failed": int((~ok).sum()),
                "return_mean": d["mean"],
                "return_std": d["std"],
                "return_ci_low": d["ci_low"],
                "return_ci_high": d["ci_high"],
                "return_iqm": d["iqm"],
                # the score is an increasing affine map of the return: its CI maps the same way
                "score_mean": env.normalized_score(d["mean"]),
                "score_ci_low": env.normalized_score(d["ci_low"]),
                "score_ci_high": env.normalized_score(d["ci_high"]),
                "length_mean": float(cell.loc[ok, "length"].mean()) if ok.any() else float("nan"),
                "dataset_best_return": best,
                "dataset_best_score": env.normalized_score(best),
            }
            | {
                f"dataset_return_{q}": float(getattr(data, f"return_{q}")) if data is not None else float("nan")
                for q in ("min", "p10", "median", "p90")
            }
            | dict(
                zip(
                    ("retained", "retained_ci_low", "retained_ci_high"),
                    kept.get((env_name, env_id, label, shift, float(target)), (float("nan"),) * 3),
                    strict=True,
                )
            )
        )
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
