"""Per-gene metrics of predicted spatial expression.

Every function takes arrays of spots x genes (a 1-D array is one gene) and returns one value
per gene, computed for all genes at once. A gene whose values are constant over the spots has
no correlation, z-score or Moran's I: it gets NaN, quietly (no warnings).

Groups:

* Agreement: :func:`pearson_per_gene`, :func:`spearman_per_gene` (the main metric is PCC per
  gene across the spots of one held-out section, on :func:`normalise_log1p` expression).
* Spatial: :func:`grid_neighbours`, :func:`morans_i`, :func:`bivariate_morans_i`,
  :func:`iou_per_gene`.
* Classifier: :func:`high_low`, :func:`roc_auc_per_gene`.
* Uncertainty: :func:`interval_coverage`, :func:`coverage_curve` (with :func:`nb_quantiles`
  or :func:`sample_quantiles`), :func:`nb_pit`, :func:`uncertainty_error_spearman`,
  :func:`sparsification_curves`, :func:`sparsification_auc`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse, stats
from scipy.ndimage import gaussian_filter

from stimage.constants import Platform
from stimage.errors import ConfigError, InvalidSampleError, SpotMismatchError

__all__ = [
    "DEFAULT_LEVELS",
    "QuantileFn",
    "bivariate_morans_i",
    "coverage_curve",
    "grid_neighbours",
    "high_low",
    "interval_coverage",
    "iou_per_gene",
    "morans_i",
    "nb_pit",
    "nb_quantiles",
    "normalise_log1p",
    "pearson_per_gene",
    "roc_auc_per_gene",
    "row_standardise",
    "sample_quantiles",
    "sparsification_auc",
    "sparsification_curves",
    "spearman_per_gene",
    "uncertainty_error_spearman",
]

logger = logging.getLogger(__name__)

#: Nominal central-interval levels of a calibration curve.
DEFAULT_LEVELS: tuple[float, ...] = (0.5, 0.8, 0.9, 0.95)

#: A predictive distribution as its quantile function: probability -> spots x genes values.
QuantileFn = Callable[[float], np.ndarray]

_QUEEN = [(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1) if (dr, dc) != (0, 0)]
_HEX = [(0, -2), (0, 2), (-1, -1), (-1, 1), (1, -1), (1, 1)]
_OFFSETS = {Platform.LEGACY_ST: _QUEEN, Platform.XENIUM: _QUEEN, Platform.VISIUM: _HEX}
_GENE_CHUNK = 256


# --------------------------------------------------------------------------- inputs


def _as_2d(a: Any, name: str) -> np.ndarray:
    x = np.asarray(a.toarray() if sparse.issparse(a) else a, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise InvalidSampleError(
            f"{name} must be spots x genes (2-D) or one gene (1-D), got shape {x.shape}"
        )
    if x.shape[0] == 0:
        raise InvalidSampleError(f"{name} has no spots")
    return x


def _pair(a: Any, b: Any, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    x, y = _as_2d(a, names[0]), _as_2d(b, names[1])
    if x.shape[0] != y.shape[0]:
        raise SpotMismatchError(
            f"{names[0]} has {x.shape[0]} spots but {names[1]} has {y.shape[0]}; "
            "give both for the same spots in the same order"
        )
    if x.shape[1] != y.shape[1]:
        raise InvalidSampleError(
            f"{names[0]} has {x.shape[1]} genes but {names[1]} has {y.shape[1]}; "
            "give both for the same genes in the same order"
        )
    return x, y


def _constant(x: np.ndarray) -> np.ndarray:
    """Columns with fewer than two spots or one value only (NaN columns are not 'constant')."""
    if x.shape[0] < 2:
        return np.ones(x.shape[1], dtype=bool)
    return np.max(x, axis=0) == np.min(x, axis=0)


def _zscore(x: np.ndarray) -> np.ndarray:
    """Column z-scores with the population sd (ddof 0); constant columns become NaN."""
    with np.errstate(all="ignore"):
        z = (x - x.mean(axis=0)) / x.std(axis=0)
    z[:, _constant(x)] = np.nan
    return z


# --------------------------------------------------------------------------- agreement


def normalise_log1p(counts: Any, target_sum: float = 1e4) -> np.ndarray | sparse.csr_matrix:
    """Library-size normalisation then ``log1p``: the expression everything is compared on.

    Each spot's counts are scaled to sum to ``target_sum``; spots with no counts stay zero.

    Args:
        counts: Spots x genes raw counts, dense or scipy.sparse.
        target_sum: Counts per spot after scaling (1e4 as in scanpy's ``normalize_total``).

    Returns:
        Float64 values of the same kind as ``counts``: CSR for sparse input, else an ndarray.

    Raises:
        InvalidSampleError: Counts are negative or not finite.
        ConfigError: ``target_sum`` is not positive.

    Example:
        >>> normalise_log1p(np.array([[1, 3], [0, 0]]), target_sum=4).round(3).tolist()
        [[0.693, 1.386], [0.0, 0.0]]
    """
    if not target_sum > 0:
        raise ConfigError(f"target_sum must be positive, got {target_sum}")
    if sparse.issparse(counts):
        x = sparse.csr_matrix(counts, dtype=np.float64, copy=True)
        values = x.data
    else:
        x = np.array(counts, dtype=np.float64)
        values = x
    if values.size and (not np.isfinite(values).all() or values.min() < 0):
        raise InvalidSampleError(
            "counts must be finite and non-negative (raw counts, not log values)"
        )
    lib = np.asarray(x.sum(axis=1)).ravel()
    scale = np.divide(target_sum, lib, out=np.zeros_like(lib), where=lib > 0)
    if sparse.issparse(x):
        x = sparse.csr_matrix(sparse.diags(scale) @ x)
        np.log1p(x.data, out=x.data)
        return x
    return np.log1p(x * scale[:, None])


def _pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    xc = x - x.mean(axis=0)
    yc = y - y.mean(axis=0)
    with np.errstate(all="ignore"):
        r = (xc * yc).sum(axis=0) / np.sqrt((xc * xc).sum(axis=0) * (yc * yc).sum(axis=0))
    r[_constant(x) | _constant(y)] = np.nan
    return np.clip(r, -1.0, 1.0)


def pearson_per_gene(pred: Any, truth: Any) -> np.ndarray:
    """Pearson correlation of prediction and truth across spots, per gene.

    Args:
        pred: Spots x genes predictions (or one gene, 1-D).
        truth: Spots x genes measured values, same shape.

    Returns:
        ``(n_genes,)`` correlations; NaN where either side is constant or holds NaN.

    Raises:
        SpotMismatchError: Different numbers of spots.
        InvalidSampleError: Different numbers of genes.

    Example:
        >>> pearson_per_gene(np.array([[1, 5], [2, 5], [3, 5.0]]), np.array([[2, 1], [4, 2], [6, 3.0]]))
        array([ 1., nan])
    """
    return _pearson(*_pair(pred, truth, ("pred", "truth")))


def spearman_per_gene(pred: Any, truth: Any) -> np.ndarray:
    """Spearman rank correlation (average ranks for ties) across spots, per gene.

    Args and errors as :func:`pearson_per_gene`.

    Example:
        >>> spearman_per_gene(np.array([1.0, 2, 30]), np.array([1.0, 4, 9]))
        array([1.])
    """
    x, y = _pair(pred, truth, ("pred", "truth"))
    r = _pearson(stats.rankdata(x, axis=0), stats.rankdata(y, axis=0))
    r[_constant(x) | _constant(y)] = np.nan
    return r


def uncertainty_error_spearman(uncertainty: Any, abs_error: Any) -> np.ndarray:
    """How well an uncertainty ranks the errors: Spearman of uncertainty and ``|error|`` per gene.

    Args:
        uncertainty: Spots x genes predicted sd (or variance: ranks are the same).
        abs_error: Spots x genes absolute errors ``|pred - truth|``.

    Returns:
        ``(n_genes,)`` rank correlations; 1 when the uncertainty orders the errors perfectly.
    """
    return spearman_per_gene(uncertainty, abs_error)


# --------------------------------------------------------------------------- spatial


def _grid_coords(array_rows: Any, array_cols: Any) -> tuple[np.ndarray, np.ndarray]:
    r = np.asarray(array_rows, dtype=np.float64).ravel()
    c = np.asarray(array_cols, dtype=np.float64).ravel()
    if r.shape != c.shape:
        raise SpotMismatchError(f"{r.size} array rows but {c.size} array columns")
    if (
        not (np.isfinite(r).all() and np.isfinite(c).all())
        or np.any(r != np.round(r))
        or np.any(c != np.round(c))
    ):
        raise InvalidSampleError(
            "array_row/array_col must be whole numbers (grid indices of the spots), "
            "not pixel positions"
        )
    return r.astype(np.int64), c.astype(np.int64)


def _check_platform(platform: str) -> str:
    if platform not in _OFFSETS:
        raise ConfigError(
            f"no spot grid is known for platform {platform!r}; expected one of {sorted(_OFFSETS)}"
        )
    return platform


def _duplicate_error(r: np.ndarray, c: np.ndarray, what: str) -> InvalidSampleError:
    key = pd.Series(list(zip(r.tolist(), c.tolist(), strict=True)))
    dup = key[key.duplicated()].iloc[0]
    return InvalidSampleError(
        f"two spots share the grid cell (array_row, array_col) = {dup}{what}; "
        "each spot needs its own cell"
    )


def grid_neighbours(array_rows: Any, array_cols: Any, platform: str) -> sparse.csr_matrix:
    """Binary contiguity of spots on their array grid.

    * ``legacy_st`` (square grid, ``array_row``/``array_col`` = y/x) and ``xenium`` pseudo-spots
      (square bins): Queen contiguity, up to 8 neighbours.
    * ``visium`` (hexagonal grid, same-row spots 2 columns apart): the 6 neighbours
      ``(r, c +- 2)`` and ``(r +- 1, c +- 1)``.

    Args:
        array_rows: Grid row of each spot.
        array_cols: Grid column of each spot.
        platform: One of ``legacy_st``, ``visium``, ``xenium``.

    Returns:
        Symmetric ``n x n`` CSR matrix of ones and zeros, zero diagonal (rows of spots without
        neighbours are empty). Row-standardise with :func:`row_standardise`.

    Raises:
        ConfigError: Unknown platform.
        InvalidSampleError: Coordinates are not whole numbers or two spots share a cell.

    Example:
        >>> w = grid_neighbours([0, 0, 1, 1], [0, 1, 0, 1], "legacy_st")
        >>> w.sum(axis=1).A1.tolist()
        [3.0, 3.0, 3.0, 3.0]
    """
    offsets = _OFFSETS[_check_platform(platform)]
    r, c = _grid_coords(array_rows, array_cols)
    n = r.size
    if n == 0:
        return sparse.csr_matrix((0, 0))
    rr = r - r.min() + 1
    cc = c - c.min() + 2
    width = int(cc.max()) + 3
    key = rr * width + cc
    order = np.argsort(key, kind="stable")
    sk = key[order]
    if np.any(sk[1:] == sk[:-1]):
        raise _duplicate_error(r, c, "")
    if platform == Platform.VISIUM and np.unique((r + c) % 2).size > 1:
        logger.warning(
            "array rows and columns mix parities: this does not look like a Visium hexagonal "
            "grid (same-row spots 2 columns apart); neighbours may be missed"
        )
    rows_i, cols_j = [], []
    for dr, dc in offsets:
        nk = (rr + dr) * width + (cc + dc)
        pos = np.minimum(np.searchsorted(sk, nk), n - 1)
        hit = sk[pos] == nk
        rows_i.append(np.flatnonzero(hit))
        cols_j.append(order[pos[hit]])
    i = np.concatenate(rows_i)
    j = np.concatenate(cols_j)
    return sparse.csr_matrix((np.ones(i.size), (i, j)), shape=(n, n))


def row_standardise(w: Any) -> sparse.csr_matrix:
    """Weights divided by their row sums (rows summing to zero stay zero).

    Example:
        >>> row_standardise(np.array([[0, 1, 1], [1, 0, 0], [0, 0, 0]])).toarray().tolist()
        [[0.0, 0.5, 0.5], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    """
    w = sparse.csr_matrix(w, dtype=np.float64)
    d = np.asarray(w.sum(axis=1)).ravel()
    inv = np.divide(1.0, d, out=np.zeros_like(d), where=d != 0)
    return sparse.csr_matrix(sparse.diags(inv) @ w)


def _weights(w: Any, n: int) -> sparse.csr_matrix:
    if w.shape != (n, n):
        raise SpotMismatchError(f"weights are {w.shape[0]} x {w.shape[1]} but there are {n} spots")
    return row_standardise(w)


def morans_i(values: Any, w: Any) -> np.ndarray:
    """Moran's I of each column, with row-standardised weights.

    ``I = (n / S0) * (z' W z) / (z' z)`` with ``z`` the centred values, ``W`` the row-standardised
    weights (standardised here; passing standardised weights is fine) and ``S0`` the sum of all
    weights (``n`` less the number of spots without neighbours). Under no spatial pattern the
    expectation is ``-1 / (n - 1)``; a smooth gradient is close to 1.

    Args:
        values: Spots x genes (or one gene, 1-D).
        w: ``n x n`` weights, e.g. :func:`grid_neighbours`.

    Returns:
        ``(n_genes,)``; NaN for constant genes or when no spot has a neighbour.

    Example:
        >>> w = grid_neighbours([0, 0, 1, 1], [0, 1, 0, 1], "legacy_st")
        >>> morans_i(np.array([1.0, 0, 0, 1]), w)  # 2 x 2 checkerboard, queen: -1/3
        array([-0.33333333])
    """
    x = _as_2d(values, "values")
    n = x.shape[0]
    ws = _weights(w, n)
    s0 = ws.sum()
    z = x - x.mean(axis=0)
    with np.errstate(all="ignore"):
        i = (n / s0) * (z * (ws @ z)).sum(axis=0) / (z * z).sum(axis=0)
    i[_constant(x)] = np.nan
    if s0 == 0:
        i[:] = np.nan
    return i


def bivariate_morans_i(x: Any, y: Any, w: Any) -> np.ndarray:
    """Bivariate Moran's I of ``x`` with the spatial lag of ``y``, per column.

    ``I = (z_x' W z_y) / n`` where ``z`` are column z-scores with the population sd (ddof 0)
    and ``W`` the row-standardised weights. This equals PySAL's ``esda.Moran_BV(x, y, w).I``
    (``z`` with ddof 1, divided by ``n - 1``: the factors cancel). The STImage code calls
    ``Moran_BV(truth, prediction, Queen weights)``, so pass ``x=truth, y=pred`` to reproduce
    it. Not symmetric in ``x`` and ``y`` once ``W`` is row-standardised. With ``x = y`` and
    every spot having a neighbour it equals :func:`morans_i`.

    Args:
        x: Spots x genes (the focal variable; the truth in the STImage code).
        y: Spots x genes, same shape (the lagged variable; the prediction).
        w: ``n x n`` weights, e.g. :func:`grid_neighbours`.

    Returns:
        ``(n_genes,)``; NaN where either side is constant.

    Example:
        >>> w = grid_neighbours([0, 0, 0], [0, 1, 2], "legacy_st")
        >>> bivariate_morans_i([1.0, 2, 4], [1.0, 3, 2], w).round(4)
        array([0.1637])
    """
    a, b = _pair(x, y, ("x", "y"))
    n = a.shape[0]
    ws = _weights(w, n)
    return (_zscore(a) * (ws @ _zscore(b))).sum(axis=0) / n


def _grid_image_index(
    array_rows: Any, array_cols: Any, platform: str
) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    r, c = _grid_coords(array_rows, array_cols)
    _check_platform(platform)
    if platform == Platform.VISIUM:
        c = c // 2
    elif r.size > 3 and np.unique((r + c) % 2).size == 1:
        logger.warning(
            "every spot has array_row + array_col of one parity, as on a Visium hexagonal grid; "
            "pass platform='visium' if it is one"
        )
    r = r - r.min() if r.size else r
    c = c - c.min() if c.size else c
    shape = (int(r.max()) + 1, int(c.max()) + 1) if r.size else (0, 0)
    if np.unique(r * shape[1] + c).size != r.size:
        raise _duplicate_error(r, c, " after mapping to the image grid")
    return r, c, shape


def high_low(values: Any) -> np.ndarray:
    """High/low labels per gene: z-score over spots above 0 (value above the gene's mean).

    Example:
        >>> high_low(np.array([[1, 7], [3, 7.0]])).tolist()
        [[False, False], [True, False]]
    """
    x = _as_2d(values, "values")
    return x > x.mean(axis=0)


def iou_per_gene(
    pred: Any,
    truth: Any,
    array_rows: Any,
    array_cols: Any,
    sigma: float = 1.0,
    *,
    platform: str = Platform.LEGACY_ST,
    normalise: bool = False,
) -> np.ndarray:
    """The paper's IoU of high-expression regions, computed on the spot grid.

    Per gene, prediction and truth are z-scored over the spots and binarised (high = z > 0).
    The binary values are laid on the spot grid as an image (one pixel per grid cell; cells
    without a spot, and everything outside the grid, are 0), smoothed with a Gaussian of sd
    ``sigma`` cells on both axes (``scipy.ndimage.gaussian_filter``, zero outside the image),
    and thresholded at ``> 0.5``. IoU = |both high| / |either high|, counting only cells that
    hold a spot. The published code rendered matplotlib plots to get the image; this computes
    the same idea on the grid directly. On a Visium hexagonal grid, column ``c`` maps to image
    column ``c // 2`` (each row then has one pixel per spot; odd rows sit half a spot to the
    right, which the image ignores).

    The zeros of empty cells pull smoothed values down near the tissue edge and in gaps: a
    high region must be a few spots wide to pass 0.5, and a strip one spot wide never does.
    ``normalise=True`` divides the smoothed map by the smoothed spot mask (normalised
    convolution), so a cell passes when most of the *spots* around it are high; it is not the
    paper's method.

    Args:
        pred: Spots x genes predictions.
        truth: Spots x genes measured values.
        array_rows: Grid row of each spot.
        array_cols: Grid column of each spot.
        sigma: Gaussian sd in grid cells (0: no smoothing, plain IoU of the binary maps).
        platform: ``legacy_st`` or ``xenium`` (square grids) or ``visium`` (hexagonal).
        normalise: Ignore empty cells in the smoothing instead of counting them as low.

    Returns:
        ``(n_genes,)`` IoU in [0, 1]; NaN for constant genes or when neither mask has a cell.

    Raises:
        ConfigError: Negative ``sigma`` or unknown platform.
        SpotMismatchError: Shapes disagree.

    Example:
        >>> rows, cols = [0, 0, 0, 1, 1, 1], [0, 1, 2, 0, 1, 2]
        >>> iou_per_gene([1.0, 1, 0, 1, 0, 0], [1.0, 1, 1, 0, 0, 0], rows, cols, sigma=0)
        array([0.5])
    """
    if not sigma >= 0:
        raise ConfigError(f"sigma must be >= 0, got {sigma}")
    p, t = _pair(pred, truth, ("pred", "truth"))
    r, c, shape = _grid_image_index(array_rows, array_cols, platform)
    if r.size != p.shape[0]:
        raise SpotMismatchError(f"{r.size} grid positions for {p.shape[0]} spots")
    on_grid = np.zeros(shape, dtype=bool)
    on_grid[r, c] = True
    weight = None
    if normalise and sigma > 0:
        weight = gaussian_filter(on_grid.astype(np.float64), sigma=sigma, mode="constant")[
            :, :, None
        ]
    out = np.full(p.shape[1], np.nan)
    for lo in range(0, p.shape[1], _GENE_CHUNK):
        sl = slice(lo, lo + _GENE_CHUNK)
        masks = []
        for v in (p[:, sl], t[:, sl]):
            img = np.zeros((*shape, v.shape[1]))
            img[r, c] = v > v.mean(axis=0)
            if sigma > 0:
                img = gaussian_filter(img, sigma=(sigma, sigma, 0), mode="constant", cval=0.0)
                if weight is not None:
                    with np.errstate(all="ignore"):
                        img = np.where(weight > 0, img / weight, 0.0)
            masks.append((img > 0.5) & on_grid[:, :, None])
        inter = (masks[0] & masks[1]).sum(axis=(0, 1))
        union = (masks[0] | masks[1]).sum(axis=(0, 1))
        with np.errstate(all="ignore"):
            out[sl] = np.where(union > 0, inter / union, np.nan)
    bad = _constant(p) | _constant(t) | np.isnan(p).any(axis=0) | np.isnan(t).any(axis=0)
    out[bad] = np.nan
    return out


# --------------------------------------------------------------------------- classifier


def roc_auc_per_gene(prob_high: Any, labels_high: Any) -> np.ndarray:
    """ROC AUC of a high/low classifier per gene, ties counted half (as scikit-learn).

    Equals ``sklearn.metrics.roc_auc_score(labels_high[:, g], prob_high[:, g])`` - true labels
    first, scores second (the published code swapped them and passed hard labels).

    Args:
        prob_high: Spots x genes scores, e.g. predicted probability of "high".
        labels_high: Spots x genes true labels (bool or 0/1), e.g. :func:`high_low` of truth.

    Returns:
        ``(n_genes,)`` AUC; NaN where a gene has one class only or a score is NaN.

    Raises:
        InvalidSampleError: Labels other than 0/1.

    Example:
        >>> roc_auc_per_gene([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
        array([0.75])
    """
    s, y = _pair(prob_high, labels_high, ("prob_high", "labels_high"))
    if not np.isin(y, (0.0, 1.0)).all():
        raise InvalidSampleError("labels_high must be 0/1 or bool (true high/low classes)")
    pos = y.sum(axis=0)
    neg = y.shape[0] - pos
    ranks = stats.rankdata(s, axis=0)
    with np.errstate(all="ignore"):
        auc = ((ranks * y).sum(axis=0) - pos * (pos + 1) / 2) / (pos * neg)
    auc[(pos == 0) | (neg == 0)] = np.nan
    return auc


# --------------------------------------------------------------------------- calibration


def interval_coverage(lower: Any, upper: Any, truth: Any) -> np.ndarray:
    """Fraction of spots whose value lies in its interval (``lower <= truth <= upper``), per gene.

    Spots where any of the three is NaN are left out.

    Example:
        >>> interval_coverage([0, 0, 0], [2, 2, 2], [1, 2, 3])
        array([0.66666667])
    """
    lo, t = _pair(lower, truth, ("lower", "truth"))
    hi, _ = _pair(upper, truth, ("upper", "truth"))
    valid = np.isfinite(t) & ~np.isnan(lo) & ~np.isnan(hi)
    covered = (lo <= t) & (t <= hi) & valid
    with np.errstate(all="ignore"):
        return covered.sum(axis=0) / valid.sum(axis=0)


def _nb_params(mu: Any, theta: Any) -> tuple[np.ndarray, np.ndarray]:
    m = _as_2d(mu, "mu")
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


def sample_quantiles(samples: Any, method: str = "linear") -> QuantileFn:
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
    return lambda q: np.quantile(s, q, axis=0, method=method)  # type: ignore[call-overload]


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
    t = _as_2d(truth, "truth")
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
        lo2, _ = _pair(lo, t, ("lower quantiles", "truth"))
        hi2, _ = _pair(hi, t, ("upper quantiles", "truth"))
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
    y, _ = _pair(truth, m, ("truth", "mu"))
    if np.any(y[np.isfinite(y)] < 0):
        raise InvalidSampleError("truth must be counts (>= 0) for an NB PIT")
    y = np.round(y)
    p = th / (th + m)
    hi = stats.nbinom.cdf(y, th, p)
    lo = stats.nbinom.cdf(y - 1, th, p)
    v = np.random.default_rng(seed).random(y.shape)
    return lo + v * (hi - lo)


# --------------------------------------------------------------------------- sparsification


def _remaining_mean_error(key: np.ndarray, err: np.ndarray, average_ties: bool) -> np.ndarray:
    """Mean error left after removing the ``k`` spots of largest ``key``, k = 0..n-1 (rows)."""
    n, g = err.shape
    idx = np.argsort(-key, axis=0, kind="stable")
    e = np.take_along_axis(err, idx, axis=0)
    if average_ties:  # random order within ties, in expectation: each tied spot gets the group mean
        k = np.take_along_axis(key, idx, axis=0)
        i = np.arange(n)[:, None]
        first = np.ones((n, g), dtype=bool)
        first[1:] = k[1:] != k[:-1]
        last = np.ones((n, g), dtype=bool)
        last[:-1] = k[:-1] != k[1:]
        start = np.maximum.accumulate(np.where(first, i, 0), axis=0)
        end = np.minimum.accumulate(np.where(last, i, n - 1)[::-1], axis=0)[::-1]
        csum = np.vstack([np.zeros((1, g)), np.cumsum(e, axis=0)])
        group = np.take_along_axis(csum, end + 1, axis=0) - np.take_along_axis(csum, start, axis=0)
        e = group / (end - start + 1)
    suffix = np.cumsum(e[::-1], axis=0)[::-1]
    return suffix / (n - np.arange(n))[:, None]


def sparsification_curves(
    uncertainty: Any, abs_error: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sparsification curves of an uncertainty and of the oracle, per gene.

    Remove the fraction ``f`` of spots with the largest uncertainty and take the mean absolute
    error of the rest; the oracle removes the largest errors instead (the best any ranking can
    do). Both are divided by the mean error of all spots, so they start at 1. Tied
    uncertainties are broken at random, in expectation.

    Args:
        uncertainty: Spots x genes predicted uncertainty (sd, variance, entropy...).
        abs_error: Spots x genes absolute errors.

    Returns:
        ``(fractions, model, oracle)``: ``fractions`` is ``k / n`` for ``k = 0..n-1``;
        ``model`` and ``oracle`` are ``(n, n_genes)``. Genes with any NaN, or no error at all,
        are NaN.
    """
    u, e = _pair(uncertainty, abs_error, ("uncertainty", "abs_error"))
    u, e = u.copy(), e.copy()
    n = u.shape[0]
    if n == 0:
        return np.zeros(0), np.zeros((0, u.shape[1])), np.zeros((0, u.shape[1]))
    bad = np.isnan(u).any(axis=0) | np.isnan(e).any(axis=0)
    u[:, bad] = 0.0
    e[:, bad] = 0.0
    model = _remaining_mean_error(u, e, average_ties=True)
    oracle = _remaining_mean_error(e, e, average_ties=False)
    total = model[0].copy()
    bad |= total <= 0
    with np.errstate(all="ignore"):
        model /= total
        oracle /= total
    model[:, bad] = np.nan
    oracle[:, bad] = np.nan
    return np.arange(n) / n, model, oracle


def sparsification_auc(uncertainty: Any, abs_error: Any) -> np.ndarray:
    """AUSE: area between the sparsification curve and the oracle's, per gene.

    The area under ``model(f) - oracle(f)`` over ``f`` in [0, 1) (steps of ``1 / n``), with both
    curves relative to the mean error of all spots (:func:`sparsification_curves`; Ilg et al.,
    ECCV 2018). 0 when the uncertainty ranks errors as the oracle does; larger is worse (a
    random uncertainty gives roughly the oracle's area under ``1 - oracle``). Scale-free, so
    genes can be averaged.

    Args:
        uncertainty: Spots x genes predicted uncertainty.
        abs_error: Spots x genes absolute errors.

    Returns:
        ``(n_genes,)`` AUSE >= 0; NaN for genes with NaN or with no error.

    Example:
        >>> err = np.array([0.1, 0.5, 0.2, 0.9])
        >>> float(sparsification_auc(err, err)[0])
        0.0
    """
    f, model, oracle = sparsification_curves(uncertainty, abs_error)
    if f.size == 0:
        return np.full(model.shape[1], np.nan)
    # >= 0 in exact arithmetic (the oracle is optimal); clip rounding noise
    return np.maximum((model - oracle).sum(axis=0) / f.size, 0.0)
