"""``calibration.csv``: how well achieved return follows the target return, per env × checkpoint.

From a sweep's episode rows and its ``summary.csv`` alone (the dataset's return quantiles are
there). Every number is a point estimate with a 95% bootstrap CI over episodes: each resample
draws every target's episodes with replacement within that target (stratified), and recomputes
the number from the resampled cells. Scores are D4RL-normalised (0 random, 100 expert).

Numbers (columns of :data:`CALIBRATION_COLUMNS`):

- inside the data's return range (targets between the checkpoint's dataset p10 and p90 return;
  every target when the dataset is unknown, said in ``range``):
  ``rho``, the Spearman correlation of target against mean achieved return over those targets
  (0 when the achieved return does not vary at all);
  ``slope``, the least-squares slope of mean achieved score on target score (1: tracks one for
  one; 0: ignores the target); ``tracking_error``, the mean absolute difference between an
  episode's score and its target's score;
- ``best_score``, the highest mean score over all targets, at ``best_target`` (its CI is that
  target's own); ``saturation_target``,
  the lowest target whose mean score is within the best's CI (where more target buys nothing);
- ``stuck_share``: the share of episodes that score below :data:`STUCK_BELOW` at targets of
  :data:`HIGH_TARGET` normalised or more (the model was asked for a good episode and fell or
  froze);
- above the data's best return: ``above_ratio``, the mean score over the targets above the
  dataset's best return divided by ``best_score``, and ``above`` = ``holds`` (ratio >= 0.9),
  ``falls`` (0.5 to 0.9) or ``collapses`` (< 0.5); ``none`` when no target lies above the data.

>>> import pandas as pd
>>> CALIBRATION_COLUMNS[:4]
['env', 'checkpoint', 'range', 'targets_in_range']
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from harness.analysis.robustness import condition_tag, with_shift
from harness.core.schema import CALIBRATION, EPISODES, READ_OPTIONS, SUMMARY, Status
from harness.core.stats import N_RESAMPLES
from harness.world.envs import resolve_env

HIGH_TARGET = 50.0
"""Targets at or above this normalised score count for :data:`STUCK_BELOW`."""
STUCK_BELOW = 20.0
"""An episode scoring below this at a high target is stuck."""
HOLDS, COLLAPSES = 0.9, 0.5
"""``above_ratio`` thresholds: holds at or above 0.9, collapses below 0.5, falls between."""

_NUMBERS = ["rho", "slope", "tracking_error", "best_score", "stuck_share", "above_ratio"]
CALIBRATION_COLUMNS = (
    ["env", "checkpoint", "range", "targets_in_range", "range_low", "range_high", "episodes_per_target"]
    + [c for n in _NUMBERS for c in (n, f"{n}_ci_low", f"{n}_ci_high")]
    + ["best_target", "saturation_target", "dataset_best_return", "targets_above_data", "above"]
    + ["env_id", "shift"]
)
"""``calibration.csv``'s columns: one row per env × checkpoint (× env id × shift, for a sweep with
several versions or shifts)."""


def _rank(x: np.ndarray) -> np.ndarray:
    """Average ranks along the last axis (ties share their mean rank), as Spearman's rho needs."""
    return rankdata(x, axis=-1)


def _rho(t: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's rho of targets ``t (T,)`` against each row of ``y (B, T)`` → ``(B,)``."""
    rt = _rank(t[None, :])[0]
    ry = _rank(y)
    rt, ry = rt - rt.mean(), ry - ry.mean(axis=1, keepdims=True)
    den = np.sqrt((rt**2).sum() * (ry**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        # an achieved return that does not vary with the target has no monotone relation to it: 0
        # (Spearman's rho is undefined there; NaN would hide a return-blind policy from compare)
        return np.where(den > 0, (ry * rt).sum(axis=1) / den, 0.0 if (rt**2).sum() > 0 else np.nan)


def _slope(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least-squares slope of each row of ``y (B, T)`` on ``x (T,)`` → ``(B,)``."""
    xc = x - x.mean()
    den = (xc**2).sum()
    return ((y - y.mean(axis=1, keepdims=True)) * xc).sum(axis=1) / den if den > 0 else np.full(len(y), np.nan)


def _ci(draws: np.ndarray) -> tuple[float, float]:
    draws = draws[np.isfinite(draws)]
    if draws.size == 0:
        return float("nan"), float("nan")
    return float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))


def calibration(
    episodes: pd.DataFrame, summary: pd.DataFrame, n_resamples: int = N_RESAMPLES, seed: int = 0
) -> pd.DataFrame:
    """One row per env × checkpoint of ``episodes`` (columns of ``episodes.csv``) with the numbers above.

    ``summary``: the sweep's ``summary.csv`` (for the dataset's p10, p90 and best return per
    env × checkpoint). Only ``ok`` episodes count. Deterministic for a given ``seed``.
    """
    rng = np.random.default_rng(seed)
    episodes, summary = with_shift(episodes), with_shift(summary)
    ok = episodes[episodes["status"] == Status.OK.value] if "status" in episodes else episodes
    rows = []
    keys = ["env", "env_id", "checkpoint", "shift"]
    order = list(dict.fromkeys(summary[keys].itertuples(index=False, name=None)))
    for env_name, env_id, label, shift in order:
        mine = (ok["env"] == env_name) & (ok["env_id"] == env_id) & (ok["checkpoint"] == label)
        cell = ok[mine & (ok["shift"] == shift)]
        if cell.empty:
            continue
        at = (summary["env"] == env_name) & (summary["env_id"] == env_id) & (summary["checkpoint"] == label)
        s = summary[at & (summary["shift"] == shift)].iloc[0]
        env = resolve_env(str(s["env_id"]))
        targets = np.array(sorted(cell["target"].unique()), dtype=np.float64)
        groups = [cell.loc[cell["target"] == t, "normalized_score"].to_numpy(np.float64) for t in targets]
        target_scores = np.array([env.normalized_score(t) for t in targets])
        # point estimates and resamples of every target's mean score, abs error, stuck indicator
        draws = [rng.integers(0, len(g), size=(n_resamples, len(g))) for g in groups]
        mean = np.array([g.mean() for g in groups])
        mean_b = np.stack([g[d].mean(axis=1) for g, d in zip(groups, draws, strict=True)], axis=1)  # (B, T)
        err = [np.abs(g - ts) for g, ts in zip(groups, target_scores, strict=True)]
        err_b = np.stack([e[d].mean(axis=1) for e, d in zip(err, draws, strict=True)], axis=1)
        low, high = float(s["dataset_return_p10"]), float(s["dataset_return_p90"])
        known = np.isfinite(low) and np.isfinite(high)
        inside = (targets >= low) & (targets <= high) if known else np.ones(len(targets), dtype=bool)
        n_in = int(inside.sum())

        def stat(point: float, boot: np.ndarray) -> tuple[float, float, float]:
            return (point, *_ci(boot))

        if n_in >= 3:
            rho = stat(float(_rho(targets[inside], mean[None, inside])[0]), _rho(targets[inside], mean_b[:, inside]))
            slope = stat(
                float(_slope(target_scores[inside], mean[None, inside])[0]),
                _slope(target_scores[inside], mean_b[:, inside]),
            )
        else:
            rho = slope = (float("nan"),) * 3
        track = (
            stat(float(np.concatenate([err[i] for i in np.flatnonzero(inside)]).mean()), err_b[:, inside].mean(axis=1))
            if n_in
            else (float("nan"),) * 3
        )
        best_i = int(np.argmax(mean))
        best = stat(float(mean[best_i]), mean_b[:, best_i])  # the best target's own CI
        saturation = float(targets[np.flatnonzero(mean >= best[1])[0]])
        high_t = target_scores >= HIGH_TARGET
        if high_t.any():
            stuck_eps = [(g < STUCK_BELOW).astype(np.float64) for g in groups]
            stuck_b = np.stack([x[d].mean(axis=1) for x, d in zip(stuck_eps, draws, strict=True)], axis=1)
            n_high = np.array([len(g) for g in groups])[high_t]
            stuck_point = float(np.concatenate([stuck_eps[i] for i in np.flatnonzero(high_t)]).mean())
            stuck = stat(stuck_point, (stuck_b[:, high_t] * n_high).sum(axis=1) / n_high.sum())
        else:
            stuck = (float("nan"),) * 3
        data_best = float(s["dataset_best_return"])
        above_t = targets > data_best if np.isfinite(data_best) else np.zeros(len(targets), dtype=bool)
        if above_t.any() and mean[best_i] > 0:
            ratio_b = mean_b[:, above_t].mean(axis=1) / mean_b[:, best_i]
            above = stat(float(mean[above_t].mean() / mean[best_i]), ratio_b)
            verdict = "holds" if above[0] >= HOLDS else ("collapses" if above[0] < COLLAPSES else "falls")
        else:
            above, verdict = (float("nan"),) * 3, "none"
        values = dict(zip(_NUMBERS, (rho, slope, track, best, stuck, above), strict=True))
        row = {
            "env": env_name,
            "checkpoint": label,
            "range": "dataset p10-p90" if known else "all targets (no dataset statistics)",
            "targets_in_range": n_in,
            "range_low": low if known else float(targets.min()),
            "range_high": high if known else float(targets.max()),
            "episodes_per_target": int(min(len(g) for g in groups)),
        }
        for name, (point, lo, hi) in values.items():
            row |= {name: point, f"{name}_ci_low": lo, f"{name}_ci_high": hi}
        row |= {
            "best_target": float(targets[best_i]),
            "saturation_target": saturation,
            "dataset_best_return": data_best,
            "targets_above_data": int(above_t.sum()),
            "above": verdict,
            "env_id": env_id,
            "shift": shift,
        }
        rows.append(row)
    return pd.DataFrame(rows, columns=CALIBRATION_COLUMNS)


def write_calibration(folder: Path) -> Path:
    """Write ``folder/calibration.csv`` from its ``episodes.csv`` and ``summary.csv``; returns its path."""
    folder = Path(folder)
    read = READ_OPTIONS
    cal = calibration(pd.read_csv(folder / EPISODES, **read), pd.read_csv(folder / SUMMARY, **read))
    path = folder / CALIBRATION
    path.write_text(cal.to_csv(index=False))
    return path


def format_table(cal: pd.DataFrame) -> str:
    """The calibration numbers as the sweep prints them after its summary (one line per env × checkpoint)."""

    def ci(r: pd.Series, name: str, fmt: str) -> str:
        return f"{r[name]:{fmt}} [{r[f'{name}_ci_low']:{fmt}}, {r[f'{name}_ci_high']:{fmt}}]"

    lines = []
    several = "env_id" in cal and cal["env_id"].nunique() > cal["env"].nunique()
    for _, r in cal.iterrows():
        where = f"{r['env_id'] if several else r['env']}/{r['checkpoint']}"
        if "shift" in cal and isinstance(r["shift"], str) and r["shift"] != "none":
            where += f" [{r['shift']}]"
        lines.append(
            f"{where}: rho {ci(r, 'rho', '.2f')}, slope {ci(r, 'slope', '.2f')}, "
            f"tracking error {ci(r, 'tracking_error', '.1f')} (in {r['range']}, {r['targets_in_range']} targets); "
            f"best {ci(r, 'best_score', '.1f')} at {r['best_target']:.0f}, "
            f"saturates from {r['saturation_target']:.0f}; "
            f"stuck {r['stuck_share']:.0%}; above the data: {r['above']}"
            + (f" ({ci(r, 'above_ratio', '.2f')} of best)" if r["above"] != "none" else "")
        )
    return "\n".join(lines)


COMPARE_NUMBERS = ("rho", "slope")
"""What :func:`compare_calibration` tests (the return token's effect, inside the data's range)."""
CALIBRATION_COMPARE_COLUMNS = [
    "env", "baseline", "candidate", "number", "targets", "episodes", "baseline_value", "candidate_value",
    "diff", "diff_ci_low", "diff_ci_high", "confidence", "verdict",
]  # fmt: skip
"""``calibration_compare.csv``'s columns."""


def compare_calibration(
    base: pd.DataFrame,
    base_summary: pd.DataFrame,
    cand: pd.DataFrame,
    pairs: dict[str, list[tuple[str, str]]],
    alpha: float = 0.05,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
) -> pd.DataFrame:
    """Rho and slope of two sweeps' checkpoints, paired by seed: candidate minus baseline with a CI.

    For each env and (baseline, candidate) checkpoint pair of ``pairs``: the targets inside the
    baseline checkpoint's dataset p10-p90 range (all targets without one) that both sweeps ran,
    and at each the episodes (reset seeds) both finished ``ok``. Each bootstrap resample draws
    reset seeds with replacement, the same ones on both sides and, where every target ran the
    same seeds (a sweep's episode k always does), the same ones at every target, and recomputes
    both numbers.
    CIs at ``1 - alpha / tests`` (Bonferroni over every env, pair and number); ``drop``: the CI of
    the difference lies below 0; ``gain``: above 0; else ``no change``.
    """
    rng = np.random.default_rng(seed)
    base, cand, base_summary = with_shift(base), with_shift(cand), with_shift(base_summary)

    def at(df: pd.DataFrame, env_name: str, label: str, env_id: str | None, shift: str) -> pd.DataFrame:
        mask = (df["env"] == env_name) & (df["checkpoint"] == label) & (df["shift"] == shift)
        return df[mask & (df["env_id"] == env_id)] if env_id is not None and "env_id" in df else df[mask]

    jobs = []  # every (env, pair) under each condition (env version x shift) of the baseline
    for env_name, env_pairs in pairs.items():
        for b_label, c_label in env_pairs:
            mine = base[(base["env"] == env_name) & (base["checkpoint"] == b_label)]
            ids = mine["env_id"] if "env_id" in mine else pd.Series([None] * len(mine), index=mine.index)
            conds = list(dict.fromkeys(zip(ids, mine["shift"], strict=True)))
            for env_id, shift in conds:
                tag = condition_tag(env_id, shift, len({c[0] for c in conds}) > 1)
                jobs.append((env_name, b_label, c_label, env_id, shift, f" [{tag}]" if tag else ""))
    tests = len(jobs) * len(COMPARE_NUMBERS)
    confidence = 1 - alpha / max(tests, 1)
    lo_q, hi_q = 100 * (1 - confidence) / 2, 100 * (1 + confidence) / 2
    rows = []
    b_ok, c_ok = base[base["status"] == Status.OK.value], cand[cand["status"] == Status.OK.value]
    for env_name, b_label, c_label, env_id, shift, tag in jobs:
        s = at(base_summary, env_name, b_label, env_id, shift)
        if s.empty:
            continue
        s = s.iloc[0]
        env = resolve_env(str(s["env_id"]))
        b = at(b_ok, env_name, b_label, env_id, shift)
        c = at(c_ok, env_name, c_label, env_id, shift)
        low, high = float(s["dataset_return_p10"]), float(s["dataset_return_p90"])
        targets = sorted(set(b["target"]) & set(c["target"]))
        if np.isfinite(low) and np.isfinite(high):
            targets = [t for t in targets if low <= t <= high]
        merged = {t: b[b["target"] == t].merge(c[c["target"] == t], on="seed", suffixes=("_b", "_c")) for t in targets}
        kept = [t for t in targets if len(merged[t])]
        if len(kept) < 3:
            continue
        # a sweep resets episode k of every target with the same seed: resample seeds jointly
        # across targets (the same episodes everywhere), else per target
        common = sorted(set.intersection(*(set(merged[t]["seed"]) for t in kept)))
        joint = len(common) >= 2
        cells = [
            (merged[t][merged[t]["seed"].isin(common)].sort_values("seed") if joint else merged[t])[
                ["normalized_score_b", "normalized_score_c"]
            ].to_numpy(np.float64)
            for t in kept
        ]
        t_arr = np.array(kept, dtype=np.float64)
        t_score = np.array([env.normalized_score(t) for t in kept])
        if joint:
            shared = rng.integers(0, len(common), size=(n_resamples, len(common)))
            draws = [shared] * len(cells)
        else:
            draws = [rng.integers(0, len(x), size=(n_resamples, len(x))) for x in cells]
        point = {side: np.array([x[:, i].mean() for x in cells])[None, :] for i, side in enumerate("bc")}
        boot = {
            side: np.stack([x[d, i].mean(axis=1) for x, d in zip(cells, draws, strict=True)], axis=1)
            for i, side in enumerate("bc")
        }
        fns = {"rho": lambda y, t=t_arr: _rho(t, y), "slope": lambda y, x=t_score: _slope(x, y)}
        for number in COMPARE_NUMBERS:
            fn = fns[number]
            vb, vc = float(fn(point["b"])[0]), float(fn(point["c"])[0])
            diff_b = fn(boot["c"]) - fn(boot["b"])
            diff_b = diff_b[np.isfinite(diff_b)]
            lo, hi = (
                (float(np.percentile(diff_b, lo_q)), float(np.percentile(diff_b, hi_q)))
                if diff_b.size
                else (
                    float("nan"),
                    float("nan"),
                )
            )
            verdict = "drop" if hi < 0 else ("gain" if lo > 0 else "no change")
            rows.append(
                {
                    "env": env_name, "baseline": b_label + tag, "candidate": c_label + tag, "number": number,
                    "targets": len(cells), "episodes": int(sum(len(x) for x in cells)),
                    "baseline_value": vb, "candidate_value": vc, "diff": vc - vb,
                    "diff_ci_low": lo, "diff_ci_high": hi, "confidence": confidence, "verdict": verdict,
                }
            )  # fmt: skip
    return pd.DataFrame(rows, columns=CALIBRATION_COMPARE_COLUMNS)
