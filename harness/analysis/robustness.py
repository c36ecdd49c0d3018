"""Score retained under shift: each shifted cell against the unshifted one, paired by seed.

A sweep with ``--shift`` (or several ``--env-version``) runs every (env, checkpoint, target) under
each shift cell with the same reset seeds. The *base* condition of an (env, checkpoint) is its
unshifted cell (``shift = none``) on the first env version of the sweep. For every other
condition (env id x shift):

- per target (``summary.csv``'s ``retained`` columns): the mean D4RL-normalised score over the
  episodes that finished ``ok`` in both, divided by the base cell's mean over the same seeds;
- per condition over all targets (``robustness.csv``): the same ratio of the pooled means.

CIs: 95% percentile bootstrap over reset seeds, the same seeds drawn on both sides (paired) and,
where every target ran the same seeds, the same seeds at every target. A ratio is undefined
(NaN) where the base mean is 0 or below (a random-level policy has nothing to retain).

>>> ROBUSTNESS_COLUMNS[:5]
['env', 'checkpoint', 'env_id', 'shift', 'base_env_id']
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from harness.core.schema import EPISODES, NO_SHIFT, READ_OPTIONS, ROBUSTNESS, Status
from harness.core.stats import N_RESAMPLES

ROBUSTNESS_COLUMNS = [
    "env", "checkpoint", "env_id", "shift", "base_env_id", "targets", "episodes",
    "base_score", "score", "retained", "retained_ci_low", "retained_ci_high",
]  # fmt: skip
"""``robustness.csv``'s columns: one row per env x checkpoint x shifted condition."""

Key = tuple[str, str, str, str, float]


def condition_tag(env_id: object, shift: str, with_version: bool) -> str:
    """A condition's short label: the env version (``v5``; when ``with_version``) and the shift
    label, comma-joined (``"v5, mass=0.8"``); ``""`` for the unshifted cell without the version.
    Tables, comparisons and figures name a condition with it."""
    bits = ([str(env_id).rsplit("-", 1)[-1]] if with_version else []) + ([str(shift)] if shift != NO_SHIFT else [])
    return ", ".join(bits)


def with_shift(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with a ``shift`` column (files written before the shift axis have none: unshifted)."""
    if "shift" in df.columns:
        return df.assign(shift=df["shift"].fillna(NO_SHIFT).astype(str))
    return df.assign(shift=NO_SHIFT)


def _ok(episodes: pd.DataFrame) -> pd.DataFrame:
    df = with_shift(episodes)
    return df[df["status"] == Status.OK.value] if "status" in df else df


def _conditions(ok: pd.DataFrame) -> list[tuple[str, str, str, str, pd.DataFrame, pd.DataFrame]]:
    """``(env, checkpoint, env_id, shift, base rows, condition rows)`` of every shifted condition."""
    out = []
    for (env, label), rows in ok.groupby(["env", "checkpoint"], sort=False):
        base_id = str(rows["env_id"].iloc[0])
        base = rows[(rows["env_id"] == base_id) & (rows["shift"] == NO_SHIFT)]
        if base.empty:
            continue
        for (env_id, shift), cond in rows.groupby(["env_id", "shift"], sort=False):
            if (env_id, shift) != (base_id, NO_SHIFT):
                out.append((str(env), str(label), str(env_id), str(shift), base, cond))
    return out


def _paired(base: pd.DataFrame, cond: pd.DataFrame, target: float) -> np.ndarray:
    """``(n, 2)`` scores (base, condition) of the seeds both ran ``ok`` at ``target``, by seed."""
    b = base[base["target"] == target][["seed", "normalized_score"]]
    c = cond[cond["target"] == target][["seed", "normalized_score"]]
    m = b.merge(c, on="seed", suffixes=("_b", "_c")).sort_values("seed")
    return m[["normalized_score_b", "normalized_score_c"]].to_numpy(np.float64)


def _ratio(b: np.ndarray, c: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b > 0, c / np.where(b > 0, b, 1.0), np.nan)


def _ci(draws: np.ndarray) -> tuple[float, float]:
    draws = draws[np.isfinite(draws)]
    if draws.size == 0:
        return float("nan"), float("nan")
    return float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))


def retained_by_target(episodes: pd.DataFrame, n_resamples: int = N_RESAMPLES, seed: int = 0) -> dict[Key, tuple]:
    """``{(env, env_id, checkpoint, shift, target): (ratio, ci_low, ci_high)}`` of every shifted cell."""
    rng = np.random.default_rng(seed)
    out: dict[Key, tuple] = {}
    for env, label, env_id, shift, base, cond in _conditions(_ok(episodes)):
        for target in sorted(set(cond["target"])):
            x = _paired(base, cond, target)
            if len(x) == 0:
                continue
            point = float(_ratio(np.array(x[:, 0].mean()), np.array(x[:, 1].mean())))
            idx = rng.integers(0, len(x), size=(n_resamples, len(x)))
            boot = _ratio(x[idx, 0].mean(axis=1), x[idx, 1].mean(axis=1))
            out[(env, env_id, label, shift, float(target))] = (point, *_ci(boot))
    return out


def robustness(episodes: pd.DataFrame, n_resamples: int = N_RESAMPLES, seed: int = 0) -> pd.DataFrame:
    """One row per env x checkpoint x shifted condition (columns :data:`ROBUSTNESS_COLUMNS`): the
    pooled mean score over every target, as a share of the base condition's, paired by seed."""
    rng = np.random.default_rng(seed)
    rows = []
    for env, label, env_id, shift, base, cond in _conditions(_ok(episodes)):
        targets = sorted(set(cond["target"]) & set(base["target"]))
        cells = {t: _paired(base, cond, t) for t in targets}
        seeds = {t: set(base[base["target"] == t]["seed"]) & set(cond[cond["target"] == t]["seed"]) for t in targets}
        cells = {t: x for t, x in cells.items() if len(x)}
        if not cells:
            continue
        stacked = np.concatenate(list(cells.values()))
        point = float(_ratio(np.array(stacked[:, 0].mean()), np.array(stacked[:, 1].mean())))
        sizes = {len(x) for x in cells.values()}
        joint = len(sizes) == 1 and len({frozenset(seeds[t]) for t in cells}) == 1
        if joint:  # a sweep's episode k has the same seed at every target: draw seeds once for all
            shared = rng.integers(0, sizes.pop(), size=(n_resamples, len(next(iter(cells.values())))))
            draws = [shared] * len(cells)
        else:
            draws = [rng.integers(0, len(x), size=(n_resamples, len(x))) for x in cells.values()]
        sums = np.zeros((n_resamples, 2))
        for x, d in zip(cells.values(), draws, strict=True):
            sums += x[d].sum(axis=1)
        boot = _ratio(sums[:, 0], sums[:, 1])
        rows.append(
            {
                "env": env, "checkpoint": label, "env_id": env_id, "shift": shift,
                "base_env_id": str(base["env_id"].iloc[0]), "targets": len(cells), "episodes": len(stacked),
                "base_score": float(stacked[:, 0].mean()), "score": float(stacked[:, 1].mean()),
                "retained": point, "retained_ci_low": _ci(boot)[0], "retained_ci_high": _ci(boot)[1],
            }
        )  # fmt: skip
    return pd.DataFrame(rows, columns=ROBUSTNESS_COLUMNS)


def write_robustness(folder: Path) -> Path | None:
    """Write ``robustness.csv`` from a sweep folder's ``episodes.csv``; None (and no file) when the
    sweep has no shifted condition."""
    table = robustness(pd.read_csv(Path(folder) / EPISODES, **READ_OPTIONS))
    path = Path(folder) / ROBUSTNESS
    if table.empty:
        path.unlink(missing_ok=True)
        return None
    tmp = path.with_suffix(".tmp")
    tmp.write_text(table.to_csv(index=False))
    tmp.replace(path)
    return path
