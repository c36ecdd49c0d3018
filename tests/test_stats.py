import numpy as np
import pytest

from harness.core.stats import bootstrap_ci, describe, iqm


def test_iqm_trims_quarters():
    assert iqm(np.arange(8.0)) == pytest.approx(3.5)
    assert iqm(np.array([0.0, 1.0, 1.0, 1e9])) == pytest.approx(1.0)


def test_bootstrap_ci_brackets_the_mean_and_is_deterministic():
    x = np.random.default_rng(1).normal(10.0, 2.0, size=50)
    lo, hi = bootstrap_ci(x)
    assert lo < x.mean() < hi
    assert (lo, hi) == bootstrap_ci(x)
    # about 2 standard errors each side
    se = x.std(ddof=1) / np.sqrt(x.size)
    assert hi - lo == pytest.approx(2 * 1.96 * se, rel=0.25)


def test_degenerate_inputs():
    assert np.isnan(bootstrap_ci(np.array([3.0]))).all()
    d = describe(np.array([2.0]))
    assert d["n"] == 1 and d["mean"] == 2.0 and np.isnan(d["std"])
