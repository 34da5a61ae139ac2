"""Sequencing depth of a tile, and the log-normalised expression it implies.

Users and benchmarks read expression as ``log1p(counts / library size * 10k)``. For a gene
with a few counts per spot that quantity is not a function of the rate alone: whether a spot
shows 0 or 1 UMI depends on its depth, and one UMI counts for more in a shallow spot. The
expected log-normalised expression of a tile is therefore

    E[log1p(10k * Y / s)],  Y ~ NB(rate * s / 10k, theta),

at the tile's library size ``s``. A new tile has no measured library size, so a
:class:`DepthModel` predicts ``log s`` from the same features (ridge regression, penalty by
leave-one-section-out). :func:`log1p_moments` evaluates the expectation and variance exactly
(a sum over the NB's mass) where counts are small, and as a Poisson-gamma mixture where
they are large.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from stimage.errors import ConfigError

__all__ = ["DepthModel", "log1p_moments"]

#: Equal-probability nodes of the gamma mixture, and the theta grid of their table.
_NODES = 32
_THETA_RANGE = (1e-3, 1e5)
_THETA_STEPS = 321
#: Grid of the Poisson moment table: rate (the delta method above it) and c.
_LAM_RANGE = (1e-4, 200.0)
_LAM_STEPS = 241
_C_RANGE = (1e-3, 1e3)
_C_STEPS = 241


#: Bounds of log library size for models saved without their training range (10 to 1e6 UMIs).
_DEFAULT_LOG_RANGE = (float(np.log(10.0)), float(np.log(1e6)))
#: How far beyond the training range predicted depths may go (a factor).
_RANGE_MARGIN = 4.0


@dataclass
class DepthModel:
    """Ridge regression of log library size on (PCA-projected) features.

    Attributes:
        weight: ``(d,)`` weights.
        bias: Intercept (mean log library size of the training spots).
        sd: Residual standard deviation of log library size on held-out sections.
        alpha: The ridge penalty chosen.
    """

    weight: np.ndarray | None = None
    bias: float = 0.0
    sd: float = float("nan")
    alpha: float = float("nan")
    #: Bounds of predicted log library size: the training range widened 4x each way (a
    #: tile far from the training data gets no depth the data never showed).
    log_range: tuple[float, float] = _DEFAULT_LOG_RANGE

    def fit(
        self,
        z: np.ndarray,
        library_size: np.ndarray,
        groups: np.ndarray | None = None,
        alphas: tuple[float, ...] = (1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6),
    ) -> DepthModel:
        """Fit on ``(n, d)`` features and ``(n,)`` library sizes.

        The penalty minimises the squared error of held-out sections when ``groups`` has at
        least two sections (else the middle of ``alphas``).
        """
        z = np.asarray(z, np.float64)
        y = np.log(np.asarray(library_size, np.float64).ravel())
        if len(y) != len(z):
            raise ConfigError(f"{len(z)} feature rows for {len(y)} library sizes")
        if not np.isfinite(y).all():
            raise ConfigError("library sizes must be positive to model sequencing depth")
        sections = np.unique(groups) if groups is not None else np.array([])
        if len(sections) >= 2:
            sse = np.zeros(len(alphas))
            for g in sections:
                tr, te = groups != g, groups == g
                for i, a in enumerate(alphas):
                    w, b = _ridge(z[tr], y[tr], a)
                    sse[i] += float(((z[te] @ w + b - y[te]) ** 2).sum())
            best = int(np.argmin(sse))
            self.alpha = float(alphas[best])
            self.sd = float(np.sqrt(sse[best] / len(y)))
        else:
            self.alpha = float(alphas[len(alphas) // 2])
        self.weight, self.bias = _ridge(z, y, self.alpha)
        margin = float(np.log(_RANGE_MARGIN))
        self.log_range = (float(y.min()) - margin, float(y.max()) + margin)
        if not np.isfinite(self.sd):
            self.sd = float(np.std(z @ self.weight + self.bias - y))
        return self

    def predict(self, z: np.ndarray) -> np.ndarray:
        """``(n,)`` predicted log library size, within :attr:`log_range`."""
        if self.weight is None:
            raise ConfigError("the depth model is not fitted")
        return np.clip(np.asarray(z, np.float64) @ self.weight + self.bias, *self.log_range)

    def state(self) -> dict[str, np.ndarray]:
        """Arrays for saving."""
        if self.weight is None:
            raise ConfigError("the depth model is not fitted")
        return {
            "weight": np.asarray(self.weight, np.float32),
            "bias_sd_alpha": np.asarray([self.bias, self.sd, self.alpha], np.float64),
            "log_range": np.asarray(self.log_range, np.float64),
        }

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> DepthModel:
        """Rebuild from :meth:`state`."""
        b, sd, alpha = (float(v) for v in state["bias_sd_alpha"])
        rng = state.get("log_range")
        bounds = _DEFAULT_LOG_RANGE if rng is None else (float(rng[0]), float(rng[1]))
        return cls(np.asarray(state["weight"], np.float64), b, sd, alpha, bounds)


def _ridge(z: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    zm, ym = z.mean(axis=0), y.mean()
    zc = z - zm
    w = np.linalg.solve(zc.T @ zc + alpha * np.eye(z.shape[1]), zc.T @ (y - ym))
    return w, float(ym - zm @ w)


def log1p_moments(
    mu: np.ndarray, theta: np.ndarray, c: np.ndarray, *, chunk: int = 1 << 15
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of ``log1p(c * Y)`` for ``Y ~ NB(mu, theta)``, elementwise.

    The NB is a Poisson-gamma mixture. The gamma rate is integrated at 32 equal-probability
    nodes (its quantiles interpolated from a table over theta); at each node the Poisson
    moments of ``log1p(c * Y)`` come from a table over (rate, c) computed once by exact sums
    (the delta method above a rate of 200, where it is accurate). Absolute error below 0.02
    on the log scale against direct sums over the NB (tested).

    Args:
        mu: NB means (counts).
        theta: NB dispersions (same shape, or broadcastable).
        c: Scale of the counts inside log1p (10k / library size), broadcastable.
        chunk: Entries per vectorised step (bounds memory).
    """
    mu, theta, c = np.broadcast_arrays(
        np.asarray(mu, np.float64), np.asarray(theta, np.float64), np.asarray(c, np.float64)
    )
    shape = mu.shape
    mu, theta, c = mu.ravel(), theta.ravel(), c.ravel()
    mean = np.empty(mu.shape)
    var = np.empty(mu.shape)
    for a in range(0, len(mu), chunk):
        sl = slice(a, a + chunk)
        lam = _gamma_nodes(theta[sl]) * mu[sl, None]
        g, v = _poisson_moments(lam, np.broadcast_to(c[sl, None], lam.shape))
        # Law of total variance over the gamma nodes.
        mean[sl] = g.mean(axis=1)
        var[sl] = v.mean(axis=1) + g.var(axis=1)
    return mean.reshape(shape), np.maximum(var, 0.0).reshape(shape)


@lru_cache(maxsize=1)
def _gamma_table() -> tuple[np.ndarray, np.ndarray]:
    """Nodes of Gamma(theta, 1/theta) (mean 1) over a log grid of theta.

    The gamma's mass is cut into equal-probability bins and each bin is represented by its
    conditional mean (``E[G | bin]``, from the regularised incomplete gamma of ``theta + 1``),
    so the nodes keep the mean exactly: what matters for a very skewed gamma (small theta),
    whose lowest bin spans many orders of magnitude.
    """
    from scipy.special import gammainc, gammaincinv

    log_theta = np.linspace(np.log(_THETA_RANGE[0]), np.log(_THETA_RANGE[1]), _THETA_STEPS)
    theta = np.exp(log_theta)[:, None]
    edges = np.arange(1, _NODES) / _NODES
    cut = gammaincinv(theta, edges[None, :])  # in units of the gamma with scale 1
    upper = np.concatenate([cut, np.full((len(theta), 1), np.inf)], axis=1)
    lower = np.concatenate([np.zeros((len(theta), 1)), cut], axis=1)
    # E[G 1(lo < G < hi)] for G ~ Gamma(theta, 1/theta) is the theta+1 gamma's mass there.
    mass = gammainc(theta + 1.0, upper) - gammainc(theta + 1.0, lower)
    return np.exp(log_theta), mass * _NODES


def _gamma_nodes(theta: np.ndarray) -> np.ndarray:
    """``(n, nodes)`` gamma quantiles (mean 1) for each theta, interpolated in log theta."""
    theta_grid, q = _gamma_table()
    grid = np.log(theta_grid)
    x = np.clip(np.log(theta), grid[0], grid[-1])
    pos = (x - grid[0]) / (grid[1] - grid[0])
    i = np.minimum(pos.astype(int), len(grid) - 2)
    w = (pos - i)[:, None]
    return q[i] * (1.0 - w) + q[i + 1] * w


@lru_cache(maxsize=1)
def _poisson_table() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """E[log1p(cY)] / lam and Var[log1p(cY)] / lam for Y ~ Poisson(lam) on a (log lam, log c) grid."""
    from scipy.stats import poisson

    log_lam = np.linspace(np.log(_LAM_RANGE[0]), np.log(_LAM_RANGE[1]), _LAM_STEPS)
    log_c = np.linspace(np.log(_C_RANGE[0]), np.log(_C_RANGE[1]), _C_STEPS)
    lam = np.exp(log_lam)
    y = np.arange(int(_LAM_RANGE[1] + 12 * np.sqrt(_LAM_RANGE[1]) + 20))
    pmf = poisson.pmf(y[None, :], lam[:, None])
    f = np.log1p(np.exp(log_c)[:, None] * y[None, :])
    r1 = (pmf @ f.T) / lam[:, None]
    r2 = (pmf @ (f * f).T) / lam[:, None] - r1**2 * lam[:, None]
    return log_lam, log_c, r1, np.maximum(r2, 0.0)


def _poisson_moments(lam: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """E[log1p(cY)] and Var[log1p(cY)] for Y ~ Poisson(lam), elementwise."""
    log_lam, log_c, r1, r2 = _poisson_table()
    lam = np.maximum(lam, 0.0)
    big = lam > _LAM_RANGE[1]
    x = np.clip(np.log(np.maximum(lam, _LAM_RANGE[0])), log_lam[0], log_lam[-1])
    yv = np.clip(np.log(c), log_c[0], log_c[-1])
    px = (x - log_lam[0]) / (log_lam[1] - log_lam[0])
    py = (yv - log_c[0]) / (log_c[1] - log_c[0])
    i = np.minimum(px.astype(np.intp), len(log_lam) - 2)
    j = np.minimum(py.astype(np.intp), len(log_c) - 2)
    wx, wy = px - i, py - j
    k = i * len(log_c) + j
    n = len(log_c)
    w00, w10, w01, w11 = (1 - wx) * (1 - wy), wx * (1 - wy), (1 - wx) * wy, wx * wy

    def interp(t: np.ndarray) -> np.ndarray:
        flat = t.ravel()
        return (
            flat.take(k) * w00
            + flat.take(k + n) * w10
            + flat.take(k + 1) * w01
            + flat.take(k + n + 1) * w11
        )

    # Below the grid the moments are linear in lam (only Y = 1 matters).
    g1 = interp(r1) * lam
    g2 = interp(r2) * lam
    if big.any():
        lb, cb = lam[big], c[big]
        d1 = np.log1p(cb * lb) - cb**2 * lb / (2.0 * (1.0 + cb * lb) ** 2)
        g1[big] = d1
        g2[big] = cb**2 * lb / (1.0 + cb * lb) ** 2
    return g1, g2
