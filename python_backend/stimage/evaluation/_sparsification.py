"""Sparsification: does an uncertainty rank the errors? Curves and their area (AUSE)."""

from __future__ import annotations

from typing import Any

import numpy as np

from stimage.evaluation._arrays import pair

__all__ = ["sparsification_auc", "sparsification_curves"]


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
    u, e = pair(uncertainty, abs_error, ("uncertainty", "abs_error"))
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
