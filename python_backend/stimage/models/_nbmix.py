"""Moments and quantiles of negative-binomial mixtures, exact and bounded in time.

A prediction is, per tile and gene, an equal-weight mixture of K members' negative binomials
``NB(mu_k, theta_k)`` over the counts at the tile's depth. Users read log-normalised
expression ``log1p(c * Y)`` (``c = 10k / depth``) and a predictive interval of the counts.
:func:`mixture_summary` computes, in one pass over the counts ``y = 0, 1, 2, ...``:

* each member's mean and variance of ``log1p(c * Y)`` (exact sums of the NB mass),
* the mixture's quantiles of ``Y`` (the smallest ``y`` whose mixture CDF reaches ``q``).

The mass is built by the recurrence ``P(y + 1) = P(y) (y + theta) / (y + 1) (1 - p)``; an
entry leaves the pass once every member's mass is spent (to ``1 - 1e-9``) and its quantiles
are found. Entries whose counts reach beyond ``kcap`` (large means: about 1-3% of a
model's genes) fall back to the Poisson-gamma quadrature of
:func:`~stimage.models._depth.log1p_moments` for the moments and to integer bisection on the
NB CDF for the quantiles. Both loops end by construction: the pass after ``kcap`` steps, the
bisection after ``ceil(log2(width))`` steps of a bracket that the one-sided Chebyshev
(Cantelli) bound guarantees, on integers far below 2**53 (means are capped at
:data:`MAX_MEAN`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from stimage.errors import ConfigError

__all__ = ["MAX_MEAN", "MixtureSummary", "mixture_quantiles", "mixture_summary"]

#: Largest NB mean (counts) taken at face value; larger ones are capped (a tile far outside
#: what the model saw; the prediction is bounded before this, see NBEnsemble.predict).
MAX_MEAN = 1e9
#: Dispersions are kept in this range (a Poisson is theta -> infinity).
_THETA_RANGE = (1e-6, 1e9)
#: Mass left over at which an entry of the exact pass is complete.
_EPS = 1e-9
#: Steps of the exact pass between compactions of its active entries.
_COMPACT = 8


@dataclass
class MixtureSummary:
    """Per-member moments of ``log1p(c Y)`` and mixture quantiles of ``Y``.

    Attributes:
        mean: ``(K, ...)`` each member's mean of ``log1p(c Y)`` (None when not asked for).
        var: ``(K, ...)`` each member's variance of ``log1p(c Y)`` (None when not asked for).
        quantiles: ``(len(q), ...)`` mixture quantiles of the counts ``Y``.
        exact: ``(...)`` True where the moments are exact sums (else the quadrature of the
            fallback, within 0.02); quantiles are exact everywhere.
    """

    mean: np.ndarray | None
    var: np.ndarray | None
    quantiles: np.ndarray
    exact: np.ndarray


def _clean(mu: np.ndarray, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu = np.nan_to_num(np.asarray(mu, np.float64), nan=0.0, posinf=MAX_MEAN)
    theta = np.nan_to_num(np.asarray(theta, np.float64), nan=1.0, posinf=_THETA_RANGE[1])
    return np.clip(mu, 0.0, MAX_MEAN), np.clip(theta, *_THETA_RANGE)


def _check_q(q: float | np.ndarray | Sequence[float]) -> np.ndarray:
    qs = np.atleast_1d(np.asarray(q, np.float64)).ravel()
    if not np.all((qs > 0) & (qs < 1)):
        raise ConfigError(f"quantile levels must lie strictly between 0 and 1, got {q}")
    return qs


def mixture_summary(
    mu: np.ndarray,
    theta: np.ndarray,
    c: np.ndarray | float,
    q: float | np.ndarray | Sequence[float],
    *,
    moments: bool = True,
    kcap: int = 192,
) -> MixtureSummary:
    """Member moments of ``log1p(c Y)`` and mixture quantiles, ``Y ~ NB(mu_k, theta_k)``.

    Args:
        mu: ``(K, ...)`` member means (counts).
        theta: Dispersions, the shape of ``mu``.
        c: Scale inside ``log1p``, broadcastable to ``mu.shape[1:]`` (e.g. ``(n, 1)`` for one
            depth per tile).
        q: Quantile level(s), each strictly between 0 and 1 (none: moments only).
        moments: Also compute the member moments (else only the quantiles).
        kcap: Longest exact pass; entries reaching beyond it take the fallbacks.

    Returns:
        The summary (``quantiles`` is ``(len(q), ...)`` even for one level).
    """
    mu, theta = _clean(mu, theta)
    if mu.shape != theta.shape or mu.ndim < 1:
        raise ConfigError(f"mu {mu.shape} and theta {theta.shape} must share a (K, ...) shape")
    qs = _check_q(q)
    kk = mu.shape[0]
    rest = mu.shape[1:]
    cc = np.broadcast_to(np.asarray(c, np.float64), rest).ravel()
    mu2, th2 = mu.reshape(kk, -1), theta.reshape(kk, -1)
    m = mu2.shape[1]
    mean = np.zeros((kk, m)) if moments else None
    var = np.zeros((kk, m)) if moments else None
    quant = np.full((len(qs), m), -1, np.int64)
    sd = np.sqrt(mu2 + mu2**2 / th2)
    small = np.flatnonzero(np.all(mu2 + 8.0 * sd + 8.0 < kcap, axis=0))
    left = _exact_pass(mu2, th2, cc, qs, small, kcap, mean, var, quant)
    big = np.union1d(np.setdiff1d(np.arange(m), small, assume_unique=True), left)
    if len(big):
        if moments:
            from stimage.models._depth import log1p_moments

            mb, vb = log1p_moments(mu2[:, big], th2[:, big], cc[None, big])
            assert mean is not None and var is not None
            mean[:, big], var[:, big] = mb, vb
        quant[:, big] = _bisect(mu2[:, big], th2[:, big], qs)
    shape = (kk, *rest)
    exact = np.ones(m, bool)
    exact[big] = False
    return MixtureSummary(
        None if mean is None else mean.reshape(shape),
        None if var is None else np.maximum(var, 0.0).reshape(shape),
        quant.reshape((len(qs), *rest)).astype(np.float64),
        exact.reshape(rest),
    )


def _exact_pass(
    mu: np.ndarray,
    theta: np.ndarray,
    c: np.ndarray,
    qs: np.ndarray,
    idx: np.ndarray,
    kcap: int,
    mean: np.ndarray | None,
    var: np.ndarray | None,
    quant: np.ndarray,
) -> np.ndarray:
    """Sum the NB mass of entries ``idx`` for ``y < kcap``; returns the entries left unfinished."""
    if not len(idx):
        return idx
    mu, theta, c = mu[:, idx], theta[:, idx], c[idx]
    kk = mu.shape[0]
    q1 = mu / (theta + mu)  # 1 - p
    pmf = np.exp(-theta * np.log1p(mu / theta))  # p ** theta
    cdf = pmf.copy()
    m1 = np.zeros_like(pmf)
    m2 = np.zeros_like(pmf)
    # The mixture CDF is increasing, so quantile q = #{y : F(y) < q}: counted, not searched.
    qk = (qs * kk)[:, None]
    below = (cdf.sum(axis=0) < qk).astype(np.int64)
    need = 1.0 - _EPS
    pos = np.arange(len(idx))  # position in idx of each active column
    for k in range(1, kcap):
        pmf *= (k - 1.0 + theta) / k * q1
        cdf += pmf
        if mean is not None:
            lk = np.log1p(c * k)
            t = pmf * lk
            m1 += t
            m2 += t * lk
        below += cdf.sum(axis=0) < qk
        if k % _COMPACT == 0 or k == kcap - 1:
            done = np.all(cdf >= need, axis=0) & np.all(below <= k, axis=0)
            if done.any():
                _store(idx[pos[done]], m1[:, done], m2[:, done], below[:, done], mean, var, quant)
                keep = ~done
                pos, c = pos[keep], c[keep]
                mu, theta, q1, pmf, cdf, m1, m2, below = (
                    a[:, keep] for a in (mu, theta, q1, pmf, cdf, m1, m2, below)
                )
            if not len(pos):
                break
    return idx[pos]


def _store(
    cols: np.ndarray,
    m1: np.ndarray,
    m2: np.ndarray,
    found: np.ndarray,
    mean: np.ndarray | None,
    var: np.ndarray | None,
    quant: np.ndarray,
) -> None:
    if mean is not None and var is not None:
        mean[:, cols] = m1
        var[:, cols] = m2 - m1**2
    quant[:, cols] = found


def _bisect(mu: np.ndarray, theta: np.ndarray, qs: np.ndarray) -> np.ndarray:
    """Mixture quantiles by integer bisection on the NB CDF, ``(len(qs), m)``.

    The bracket comes from Cantelli's inequality for the mixture's mean ``M`` and sd ``S``:
    ``F(y) >= q`` for ``y >= M + S sqrt(q / (1 - q))`` and ``F(y) <= q`` for
    ``y <= M - S sqrt((1 - q) / q)`` (both widened by 5% and one count against rounding).
    """
    from scipy.special import betainc

    p = theta / (theta + mu)
    big_m = mu.mean(axis=0)
    big_s = np.sqrt((mu + mu**2 / theta).mean(axis=0) + mu.var(axis=0))
    out = np.empty((len(qs), mu.shape[1]), np.int64)
    for i, qv in enumerate(qs):
        lo = np.maximum(np.floor(big_m - 1.05 * big_s * np.sqrt((1 - qv) / qv)) - 1.0, 0.0)
        hi = np.ceil(big_m + 1.05 * big_s * np.sqrt(qv / (1 - qv))) + 1.0
        lo_i, hi_i = lo.astype(np.int64), hi.astype(np.int64)
        steps = int(np.ceil(np.log2(float(np.max(hi_i - lo_i)) + 1.0))) + 1
        for _ in range(steps):
            act = np.flatnonzero(lo_i < hi_i)
            if not len(act):
                break
            mid = (lo_i[act] + hi_i[act]) // 2
            cdf = betainc(theta[:, act], mid[None, :] + 1.0, p[:, act]).mean(axis=0)
            ok = cdf >= qv
            hi_i[act[ok]] = mid[ok]
            lo_i[act[~ok]] = mid[~ok] + 1
        out[i] = lo_i
    return out


def mixture_quantiles(mu: np.ndarray, theta: np.ndarray, q: float | np.ndarray) -> np.ndarray:
    """Quantiles of equal-weight mixtures of NB(mu_k, theta_k) over the first axis.

    Returns ``mu.shape[1:]`` for a scalar ``q``, else ``(len(q), *mu.shape[1:])``; the
    smallest count whose mixture CDF reaches ``q``.
    """
    qs = mixture_summary(mu, theta, 1.0, q, moments=False).quantiles
    return qs[0] if np.ndim(q) == 0 else qs
