"""The high/low classifier's metrics: labels from expression, ROC AUC per gene."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

from stimage.errors import InvalidSampleError
from stimage.evaluation._arrays import as_2d, pair

__all__ = ["high_low", "roc_auc_per_gene"]


def high_low(values: Any) -> np.ndarray:
    """High/low labels per gene: z-score over spots above 0 (value above the gene's mean).

    Example:
        >>> high_low(np.array([[1, 7], [3, 7.0]])).tolist()
        [[False, False], [True, False]]
    """
    x = as_2d(values, "values")
    return x > x.mean(axis=0)


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
    s, y = pair(prob_high, labels_high, ("prob_high", "labels_high"))
    if not np.isin(y, (0.0, 1.0)).all():
        raise InvalidSampleError("labels_high must be 0/1 or bool (true high/low classes)")
    pos = y.sum(axis=0)
    neg = y.shape[0] - pos
    ranks = stats.rankdata(s, axis=0)
    with np.errstate(all="ignore"):
        auc = ((ranks * y).sum(axis=0) - pos * (pos + 1) / 2) / (pos * neg)
    auc[(pos == 0) | (neg == 0)] = np.nan
    return auc
