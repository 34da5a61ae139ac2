"""Spatial metrics on the spot grid: contiguity weights, Moran's I and IoU of high regions."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.ndimage import gaussian_filter

from stimage.constants import Platform
from stimage.errors import ConfigError, InvalidSampleError, SpotMismatchError
from stimage.evaluation._arrays import as_2d, constant, pair, zscore

__all__ = ["bivariate_morans_i", "grid_neighbours", "iou_per_gene", "morans_i", "row_standardise"]

logger = logging.getLogger(__name__)

_QUEEN = [(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1) if (dr, dc) != (0, 0)]
_HEX = [(0, -2), (0, 2), (-1, -1), (-1, 1), (1, -1), (1, 1)]
_OFFSETS = {Platform.LEGACY_ST: _QUEEN, Platform.XENIUM: _QUEEN, Platform.VISIUM: _HEX}
_GENE_CHUNK = 256


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
    x = as_2d(values, "values")
    n = x.shape[0]
    ws = _weights(w, n)
    s0 = ws.sum()
    z = x - x.mean(axis=0)
    with np.errstate(all="ignore"):
        i = (n / s0) * (z * (ws @ z)).sum(axis=0) / (z * z).sum(axis=0)
    i[constant(x)] = np.nan
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
    a, b = pair(x, y, ("x", "y"))
    n = a.shape[0]
    ws = _weights(w, n)
    return (zscore(a) * (ws @ zscore(b))).sum(axis=0) / n


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
    p, t = pair(pred, truth, ("pred", "truth"))
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
    bad = constant(p) | constant(t) | np.isnan(p).any(axis=0) | np.isnan(t).any(axis=0)
    out[bad] = np.nan
    return out
