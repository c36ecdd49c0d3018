"""Statistics on arrays of episode returns: point estimates with confidence intervals.

Pure functions on 1-D arrays ``(n_episodes,)``, after rliable's conventions.

>>> import numpy as np
>>> x = np.array([1.0, 2.0, 3.0, 4.0, 100.0, 6.0, 7.0, 8.0])
>>> float(iqm(x))
5.0
>>> lo, hi = bootstrap_ci(np.array([5.0, 5.0, 5.0]))
>>> (float(lo), float(hi))
(5.0, 5.0)
"""

from __future__ import annotations

import numpy as np
from scipy import stats as sps


def iqm(x: np.ndarray) -> float:
    """Interquartile mean of ``x`` ``(n,)``: the mean of the middle 50% (25% trimmed each side)."""
    x = np.asarray(x, dtype=np.float64)
    return float(sps.trim_mean(x, 0.25)) if x.size else float("nan")


N_RESAMPLES = 2000
"""Bootstrap resamples of every interval the harness reports (one place)."""


def bootstrap_ci(
    x: np.ndarray, confidence: float = 0.95, n_resamples: int = N_RESAMPLES, seed: int = 0
) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the mean of ``x`` ``(n,)``.

    Deterministic for a given ``seed``. With fewer than two values the interval is undefined
    (NaN, NaN); with identical values it is that value.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.size < 2:
        return float("nan"), float("nan")
    if np.all(x == x[0]):
        return float(x[0]), float(x[0])
    res = sps.bootstrap(
        (x,),
        np.mean,
        confidence_level=confidence,
        n_resamples=n_resamples,
        method="percentile",
        rng=np.random.default_rng(seed),
        vectorized=True,
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def bootstrap_difference_ci(
    candidate: np.ndarray,
    baseline: np.ndarray,
    paired: bool,
    confidence: float = 0.95,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile-bootstrap CI of ``mean(candidate) - mean(baseline)``, both ``(n,)`` (seeded).

    ``paired``: ``candidate[k]`` and ``baseline[k]`` share a seed and are resampled together (the CI
    of the mean of the differences, :func:`bootstrap_ci`); else each side is resampled on its own.

    >>> bootstrap_difference_ci(np.array([3.0, 3.0]), np.array([1.0, 1.0]), paired=True)
    (2.0, 2.0)
    """
    c, b = np.asarray(candidate, float), np.asarray(baseline, float)
    if paired:
        d = c - b
        if len(d) < 2:
            return float(d.mean()), float(d.mean())
        return bootstrap_ci(d, confidence=confidence, n_resamples=n_resamples, seed=seed)
    if len(c) < 2 or len(b) < 2:
        return float("nan"), float("nan")
    if np.all(c == c[0]) and np.all(b == b[0]):
        return float(c[0] - b[0]), float(c[0] - b[0])

    def stat(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.mean(x, axis=axis) - np.mean(y, axis=axis)

    res = sps.bootstrap(
        (c, b),
        stat,
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(seed),
        n_resamples=n_resamples,
        paired=False,
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def describe(x: np.ndarray, confidence: float = 0.95, seed: int = 0) -> dict[str, float]:
    """n, mean, std (ddof 1), bootstrap CI of the mean and IQM of ``x`` ``(n,)``."""
    x = np.asarray(x, dtype=np.float64)
    lo, hi = bootstrap_ci(x, confidence=confidence, seed=seed)
    return {
        "n": int(x.size),
        "mean": float(x.mean()) if x.size else float("nan"),
        "std": float(x.std(ddof=1)) if x.size > 1 else float("nan"),
        "ci_low": lo,
        "ci_high": hi,
        "iqm": iqm(x),
    }
