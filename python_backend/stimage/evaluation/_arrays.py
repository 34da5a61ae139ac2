"""Checks and helpers shared by the metrics: spots x genes arrays, constant genes, z-scores.

A 1-D array is one gene. A gene whose values are constant over the spots has no correlation,
z-score or Moran's I: the metrics give it NaN, quietly (no warnings).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import sparse

from stimage.errors import InvalidSampleError, SpotMismatchError

__all__ = ["as_2d", "constant", "pair", "zscore"]


def as_2d(a: Any, name: str) -> np.ndarray:
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


def pair(a: Any, b: Any, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    x, y = as_2d(a, names[0]), as_2d(b, names[1])
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


def constant(x: np.ndarray) -> np.ndarray:
    """Columns with fewer than two spots or one value only (NaN columns are not 'constant')."""
    if x.shape[0] < 2:
        return np.ones(x.shape[1], dtype=bool)
    return np.max(x, axis=0) == np.min(x, axis=0)


def zscore(x: np.ndarray) -> np.ndarray:
    """Column z-scores with the population sd (ddof 0); constant columns become NaN."""
    with np.errstate(all="ignore"):
        z = (x - x.mean(axis=0)) / x.std(axis=0)
    z[:, constant(x)] = np.nan
    return z
