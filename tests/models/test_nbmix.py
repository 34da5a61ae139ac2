"""Moments and quantiles of NB mixtures: exact against direct sums, bounded in time."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import nbinom

from stimage.errors import ConfigError
from stimage.models._nbmix import MAX_MEAN, mixture_quantiles, mixture_summary


def _direct(mu, theta, c, qs):
    """Member moments of log1p(cY) and mixture quantiles by sums over a long count range."""
    k = mu.shape[0]
    sd = np.sqrt(mu + mu**2 / theta)
    y = np.arange(int(np.max(mu + 80 * sd)) + 100)
    pmf = np.stack([nbinom.pmf(y, theta[i], theta[i] / (theta[i] + mu[i])) for i in range(k)])
    f = np.log1p(c * y)
    mean = pmf @ f
    var = pmf @ (f * f) - mean**2
    cdf = np.cumsum(pmf.mean(axis=0))
    quant = [int(np.searchsorted(cdf, q)) for q in qs]
    return mean, var, quant


@pytest.mark.parametrize("kcap", [192, 4])  # the exact pass, and the fallbacks for everything
def test_summary_matches_direct_sums(kcap: int) -> None:
    rng = np.random.default_rng(0)
    kk, m = 3, 60
    mu = np.exp(rng.uniform(-4, 5.5, (kk, m)))
    theta = np.exp(rng.uniform(-1.5, 5, (kk, m)))
    c = np.exp(rng.uniform(-1, 2.5, m))
    qs = (0.05, 0.5, 0.95)
    s = mixture_summary(mu, theta, c, qs, kcap=kcap)
    # Entries within the exact pass are exact; the others' moments are a quadrature (0.02).
    exact = s.exact
    assert exact.mean() > 0.3 if kcap > 4 else not exact.any()
    for j in range(m):
        tol = 1e-8 if exact[j] else 0.02
        mean, var, quant = _direct(mu[:, j], theta[:, j], c[j], qs)
        np.testing.assert_allclose(s.mean[:, j], mean, atol=tol)
        np.testing.assert_allclose(np.sqrt(s.var[:, j]), np.sqrt(np.maximum(var, 0)), atol=4 * tol)
        np.testing.assert_array_equal(s.quantiles[:, j], quant)


def test_one_member_quantiles_are_scipy_ppf_for_small_and_large_means() -> None:
    mu = np.array([[0.01, 0.5, 3.0, 40.0, 900.0, 2.5e4]])
    th = np.array([[0.3, 1.0, 2.0, 5.0, 0.4, 30.0]])
    for q in (0.05, 0.5, 0.95):
        np.testing.assert_array_equal(
            mixture_quantiles(mu, th, q), nbinom.ppf(q, th[0], th[0] / (th[0] + mu[0]))
        )


def test_shapes_follow_the_inputs() -> None:
    mu = np.full((4, 3, 5), 2.0)
    s = mixture_summary(mu, np.ones_like(mu), np.ones((3, 1)), (0.1, 0.9))
    assert s.mean.shape == s.var.shape == (4, 3, 5)
    assert s.quantiles.shape == (2, 3, 5)
    assert mixture_quantiles(mu, np.ones_like(mu), 0.5).shape == (3, 5)
    assert mixture_summary(mu, np.ones_like(mu), 1.0, 0.5, moments=False).mean is None


def test_extreme_inputs_end_with_finite_bounded_answers() -> None:
    """Means of 1e21 froze the old bisection; NaN, inf and tiny dispersions must end too."""
    mu = np.array([[1e21, np.inf, np.nan, 1e12, 5.0, 0.0], [3.0, 1e30, 1.0, 1e15, 1e-300, 0.0]])
    theta = np.array([[1e-12, 0.5, 1.0, 1e-8, np.inf, 1.0], [2.0, 1e-9, np.nan, 1e20, 1.0, 1.0]])
    s = mixture_summary(mu, theta, np.full(6, 3.0), (0.05, 0.95))
    assert np.isfinite(s.mean).all() and np.isfinite(s.var).all()
    assert np.isfinite(s.quantiles).all()
    assert (s.quantiles >= 0).all() and (s.quantiles <= 2**53).all()
    assert s.quantiles[0, 5] == s.quantiles[1, 5] == 0  # all mass at zero
    assert s.quantiles[1, 1] <= 10 * MAX_MEAN / 1e-6  # capped means


@pytest.mark.parametrize("q", [0.0, 1.0, -0.1, float("nan")])
def test_levels_outside_zero_one_are_refused(q: float) -> None:
    with pytest.raises(ConfigError, match="between 0 and 1"):
        mixture_summary(np.ones((1, 2)), np.ones((1, 2)), 1.0, q)


def test_seeded_fuzz_always_terminates_with_quantiles_in_order() -> None:
    rng = np.random.default_rng(7)
    for _ in range(30):
        kk, m = int(rng.integers(1, 6)), int(rng.integers(1, 40))
        mu = np.exp(rng.uniform(-40, 60, (kk, m)))
        theta = np.exp(rng.uniform(-25, 25, (kk, m)))
        c = np.exp(rng.uniform(-5, 8, m))
        s = mixture_summary(mu, theta, c, (0.05, 0.5, 0.95))
        assert np.isfinite(s.mean).all() and (s.var >= 0).all()
        assert (np.diff(s.quantiles, axis=0) >= 0).all()
