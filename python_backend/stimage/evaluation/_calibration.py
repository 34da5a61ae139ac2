"""Calibration of predictive distributions: interval coverage, coverage curves, the NB PIT.

A predictive distribution is given as its quantile function (:data:`QuantileFn`), made by
:func:`nb_quantiles` from NB means and dispersions or by :func:`sample_quantiles` from draws.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from stimage.errors import ConfigError, InvalidSampleError
from stimage.evaluation._arrays import as_2d, pair

__all__ = [
    "DEFAULT_LEVELS",
    "QuantileFn",
    "QuantileMethod",
    "coverage_curve",
    "interval_coverage",
    "nb_pit",
    "nb_quantiles",
    "sample_quantiles",
]

#: Nominal central-interval levels of a calibration curve.
DEFAULT_LEVELS: tuple[float, ...] = (0.5, 0.8, 0.9, 0.95)

#: A predictive distribution as its quantile function: probability -> spots x genes values.
QuantileFn = Callable[[float], np.ndarray]

#: How :func:`numpy.quantile` estimates quantiles from draws (its ``method`` names).
QuantileMethod = Literal[
    "inverted_cdf",
    "averaged_inverted_cdf",
    "closest_observation",
    "interpolated_inverted_cdf",
    "hazen",
    "weibull",
    "linear",
    "median_unbiased",
    "normal_unbiased",
    "lower",
    "higher",
    "midpoint",
    "nearest",
]


def interval_coverage(lower: Any, upper: Any, truth: Any) -> np.ndarray:
    """Fraction of spots whose value lies in its interval (``lower <= truth <= upper``), per gene.

    Spots where any of the three is NaN are left out.

    Example:
        >>> interval_coverage([0, 0, 0], [2, 2, 2], [1, 2, 3])
        array([0.66666667])
    """
    lo, t = pair(lower, truth, ("lower", "truth"))
    hi, _ = pair(upper, truth, ("upper", "truth"))
    valid = np.isfinite(t) & ~np.isnan(lo) & ~np.isnan(hi)
    covered = (lo <= t) & (t <= hi) & valid
    with np.errstate(all="ignore"):
        return covered.sum(axis=0) / valid.sum(axis=0)


def _nb_params(mu: Any, theta: Any) -> tuple[np.ndarray, np.ndarray]:
    m = as_2d(mu, "mu")
    th = np.asarray(theta, dtype=np.float64)
    if th.ndim == 1 and m.shape[1] == 1 and th.size == m.shape[0] != 1:
        th = th[:, None]  # one gene given as 1-D arrays
    try:
        th = np.broadcast_to(th, m.shape)
    except ValueError:
        raise InvalidSampleError(
            f"theta has shape {th.shape}, which does not broadcast to mu's {m.shape}; give one "
            "per spot and gene, one per gene, or a single value"
        ) from None
    if np.any(m < 0) or not np.all(np.isfinite(m)):
        raise InvalidSampleError("NB means mu must be finite and >= 0")
    if np.any(th <= 0) or not np.all(np.isfinite(th)):
        raise InvalidSampleError(
            "NB dispersions theta must be finite and > 0 (large theta ~ Poisson)"
        )
    return m, th


def nb_quantiles(mu: Any, theta: Any) -> QuantileFn:
    """Quantile function of per-spot negative binomials with mean ``mu``, dispersion ``theta``.

    The NB has variance ``mu + mu^2 / theta``; in scipy's terms ``nbinom(n=theta,
    p=theta / (theta + mu))``. Quantiles are counts (the smallest ``y`` with ``F(y) >= q``).

    Args:
        mu: Spots x genes predicted means (counts).
        theta: Dispersions, same shape or broadcastable (e.g. one per gene).

    Example:
        >>> q = nb_quantiles(np.array([[10.0]]), 5.0)
        >>> float(q(0.5)[0, 0])
        9.0
    """
    m, th = _nb_params(mu, theta)
    p = th / (th + m)
    return lambda q: stats.nbinom.ppf(q, th, p)


def sample_quantiles(samples: Any, method: QuantileMethod = "linear") -> QuantileFn:
    """Quantile function of a predictive distribution given as draws.

    Args:
        samples: ``(n_draws, spots, genes)`` draws, e.g. from an ensemble or sampled counts.
        method: ``numpy.quantile`` method (``"inverted_cdf"`` keeps quantiles on the draws).
    """
    s = np.asarray(samples, dtype=np.float64)
    if s.ndim == 2:
        s = s[:, :, None]
    if s.ndim != 3:
        raise InvalidSampleError(f"samples must be draws x spots x genes, got shape {s.shape}")
    return lambda q: np.quantile(s, q, axis=0, method=method)


def coverage_curve(
    truth: Any,
    quantiles: QuantileFn,
    levels: Sequence[float] = DEFAULT_LEVELS,
    genes: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Observed coverage of central predictive intervals at several nominal levels.

    For level ``a`` the interval is ``[Q((1 - a) / 2), Q((1 + a) / 2)]`` of each spot's
    predictive distribution, and a value counts as covered when ``lower <= y <= upper``. For
    discrete (NB) predictions this is conservative: a calibrated model covers at least ``a``,
    noticeably more when means are small (a few counts); use :func:`nb_pit` for an exact check.

    Args:
        truth: Spots x genes observed values (counts for NB predictions).
        quantiles: The predictive quantile function, :func:`nb_quantiles` or
            :func:`sample_quantiles`.
        levels: Nominal levels in (0, 1).
        genes: Gene names for the per-gene columns (default ``gene_0``, ``gene_1``...).

    Returns:
        One row per level, index ``level``: ``nominal``, ``observed`` (mean over all spots and
        genes) and one column per gene (that gene's coverage).

    Raises:
        ConfigError: A level outside (0, 1).

    Example:
        >>> y = np.random.default_rng(0).negative_binomial(5, 5 / 15, size=(2000, 2))
        >>> df = coverage_curve(y, nb_quantiles(np.full((2000, 2), 10.0), 5.0), levels=[0.9])
        >>> bool(abs(df.loc[0.9, "observed"] - 0.9) < 0.03)
        True
    """
    t = as_2d(truth, "truth")
    names = [f"gene_{k}" for k in range(t.shape[1])] if genes is None else [str(g) for g in genes]
    if len(names) != t.shape[1]:
        raise InvalidSampleError(f"{len(names)} gene names for {t.shape[1]} genes")
    if {"nominal", "observed"} & set(names):
        raise InvalidSampleError("gene names 'nominal' and 'observed' are reserved column names")
    rows = []
    for a in levels:
        if not 0 < a < 1:
            raise ConfigError(f"coverage levels must lie in (0, 1), got {a}")
        lo, hi = quantiles((1 - a) / 2), quantiles((1 + a) / 2)
        lo2, _ = pair(lo, t, ("lower quantiles", "truth"))
        hi2, _ = pair(hi, t, ("upper quantiles", "truth"))
        valid = np.isfinite(t) & ~np.isnan(lo2) & ~np.isnan(hi2)
        covered = (lo2 <= t) & (t <= hi2) & valid
        with np.errstate(all="ignore"):
            per_gene = covered.sum(axis=0) / valid.sum(axis=0)
        overall = covered.sum() / valid.sum() if valid.any() else math.nan
        rows.append([float(a), float(overall), *per_gene.tolist()])
    df = pd.DataFrame(rows, columns=["nominal", "observed", *names])
    df.index = pd.Index(df["nominal"].to_numpy(), name="level")
    return df


def nb_pit(
    mu: Any, theta: Any, truth: Any, seed: int | np.random.Generator | None = 0
) -> np.ndarray:
    """Randomised probability integral transform of counts under per-spot NB predictions.

    ``u = F(y - 1) + v * (F(y) - F(y - 1))`` with ``v ~ U(0, 1)``: uniform on (0, 1) exactly when
    the predictive distributions are right, for discrete counts too (Czado, Gneiting & Held
    2009). A histogram of ``u`` reads as calibration: U-shaped = overconfident, hump =
    underconfident, slope = biased.

    Args:
        mu: Spots x genes NB means.
        theta: NB dispersions, same shape or broadcastable.
        truth: Spots x genes observed counts (NaN is carried through).
        seed: Seed or generator of ``v``.

    Returns:
        Spots x genes PIT values.

    Example:
        >>> u = nb_pit(np.full((5, 1), 3.0), 2.0, np.array([0, 1, 3, 5, 9]))
        >>> bool(((u > 0) & (u < 1)).all())
        True
    """
    m, th = _nb_params(mu, theta)
    y, _ = pair(truth, m, ("truth", "mu"))
    if np.any(y[np.isfinite(y)] < 0):
        raise InvalidSampleError("truth must be counts (>= 0) for an NB PIT")
    y = np.round(y)
    p = th / (th + m)
    hi = stats.nbinom.cdf(y, th, p)
    lo = stats.nbinom.cdf(y - 1, th, p)
    v = np.random.default_rng(seed).random(y.shape)
    return lo + v * (hi - lo)
