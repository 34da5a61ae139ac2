"""Agreement of predicted with measured expression: correlations per gene across spots.

The main metric is the PCC per gene across the spots of one held-out section, on
:func:`normalise_log1p` expression.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import sparse, stats

from stimage.errors import ConfigError, InvalidSampleError
from stimage.evaluation._arrays import constant, pair

__all__ = [
    "normalise_log1p",
    "pearson_per_gene",
    "spearman_per_gene",
    "uncertainty_error_spearman",
]


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
    r[constant(x) | constant(y)] = np.nan
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
    return _pearson(*pair(pred, truth, ("pred", "truth")))


def spearman_per_gene(pred: Any, truth: Any) -> np.ndarray:
    """Spearman rank correlation (average ranks for ties) across spots, per gene.

    Args and errors as :func:`pearson_per_gene`.

    Example:
        >>> spearman_per_gene(np.array([1.0, 2, 30]), np.array([1.0, 4, 9]))
        array([1.])
    """
    x, y = pair(pred, truth, ("pred", "truth"))
    r = _pearson(stats.rankdata(x, axis=0), stats.rankdata(y, axis=0))
    r[constant(x) | constant(y)] = np.nan
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
