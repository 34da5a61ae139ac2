"""From optical density to stain concentrations and back.

The 2-atom non-negative lasso is solved exactly in closed form for all pixels at once;
a slide's source fit becomes 256-entry tables per channel, so unmixing a tile costs a few
table look-ups, and rendering one exponential and a cast.
"""

from __future__ import annotations

import math

import numpy as np

from stimage.errors import UnsupportedFormatError
from stimage.tiles._stain_base import _OD_LUT, _TINY, StainParams, _planes

__all__ = ["stain_concentrations"]

_LN255 = math.log(255.0)


def _lasso2(c1: np.ndarray, c2: np.ndarray, gram: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact 2-atom non-negative lasso from ``c = S x - lambda`` and ``G = S S^T``.

    Minimises ``0.5 a^T G a - c^T a`` over ``a >= 0``. With ``a*`` the stationary point
    of the both-active set, the KKT conditions give: both active if ``a*`` is positive;
    otherwise haematoxylin only, ``(max(c1, 0) / G11, 0)``, when ``a*_2 <= 0``, and eosin
    only when ``a*_1 <= 0`` (``a*_1, a*_2 <= 0`` leaves at most one ``c_k`` positive).
    """
    g00, g01, g11 = float(gram[0, 0]), float(gram[0, 1]), float(gram[1, 1])
    h = np.maximum(c1, 0) * (1.0 / g00)
    e = np.maximum(c2, 0) * (1.0 / g11)
    det = g00 * g11 - g01 * g01
    if det <= 1e-10 * g00 * g11:  # collinear atoms: the better axis is optimal
        pick_h = (h * h) * g00 >= (e * e) * g11
        return np.where(pick_h, h, 0), np.where(pick_h, 0, e)
    a1 = (g11 / det) * c1 - (g01 / det) * c2
    a2 = (g00 / det) * c2 - (g01 / det) * c1
    return np.where(a2 > 0, np.maximum(a1, 0), h), np.where(a1 > 0, np.maximum(a2, 0), e)


def stain_concentrations(
    od: np.ndarray, stain_matrix: np.ndarray, lasso_lambda: float = 0.01
) -> np.ndarray:
    """Stain concentrations by exact non-negative lasso (spams ``lasso`` mode 2, ``pos=True``).

    Solves ``min_a 0.5 ||x - S^T a||^2 + lasso_lambda ||a||_1, a >= 0`` for every pixel in
    closed form, in the float precision of ``od``.

    Args:
        od: ``(..., 3)`` optical densities (float32 or float64).
        stain_matrix: ``(2, 3)`` stain OD vectors, one per row.
        lasso_lambda: L1 weight.

    Returns:
        ``(..., 2)`` concentrations of the two stains.

    Example:
        >>> od = np.array([[0.6, 0.6, 0.35]])
        >>> stain_concentrations(od, np.eye(3)[:2]).round(2)
        array([[0.59, 0.59]])

    """
    od = np.asarray(od)
    if od.dtype.kind != "f":
        od = od.astype(np.float64)
    s = np.asarray(stain_matrix, dtype=np.float64)
    if od.shape[-1:] != (3,) or s.shape != (2, 3):
        raise UnsupportedFormatError(
            f"stain_concentrations needs od of shape (..., 3) and a (2, 3) stain matrix; got "
            f"{od.shape} and {s.shape}"
        )
    c = od @ s.T.astype(od.dtype) - od.dtype.type(lasso_lambda)
    h, e = _lasso2(c[..., 0], c[..., 1], s @ s.T)
    return np.stack([h, e], axis=-1).astype(od.dtype, copy=False)


class _Unmixer:
    """Concentrations of every pixel for one source stain matrix, from 256-entry tables."""

    def __init__(self, matrix: np.ndarray, lam: float) -> None:
        # c_k = sum over channels of S[k, ch] OD(level) - lambda
        tables = matrix[:, :, None] * _OD_LUT[None, None, :]
        tables[:, 0] -= lam
        self.tables = tables.astype(np.float32)
        self.gram = matrix @ matrix.T

    def __call__(self, planes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        t, (r, g, b) = self.tables, planes
        c1 = np.take(t[0, 0], r)
        c1 += np.take(t[0, 1], g)
        c1 += np.take(t[0, 2], b)
        c2 = np.take(t[1, 0], r)
        c2 += np.take(t[1, 1], g)
        c2 += np.take(t[1, 2], b)
        return _lasso2(c1, c2, self.gram)


def _render(h: np.ndarray, e: np.ndarray, target: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``255 exp(-(C scale) S_target)`` as ``(n, 3)`` uint8, truncated as staintools."""
    coef = (-target * scale[:, None]).astype(np.float32)
    od = np.empty((3, h.size), np.float32)
    for k in range(3):
        np.multiply(h, coef[0, k], out=od[k])
        od[k] += e * coef[1, k]
    od += np.float32(_LN255)
    # Below -1 the output truncates to 0 anyway (and exp would reach slow subnormals); above
    # ln 255 only a target OD < 0 (Macenko) can go, and 255 is the most a level can hold.
    np.clip(od, np.float32(-1.0), np.float32(_LN255), out=od)
    np.exp(od, out=od)
    return np.ascontiguousarray(od.astype(np.uint8).T)


def _scale(max_target: np.ndarray, max_source: np.ndarray) -> np.ndarray:
    """``max_target / max_source``, 1 where the source has (almost) none of a stain."""
    ok = max_source > _TINY
    return np.where(ok, max_target / np.where(ok, max_source, 1.0), 1.0)


def _max_concentrations(
    images: list[np.ndarray], matrix: np.ndarray, params: StainParams
) -> np.ndarray:
    """``maxC`` over all pixels of all images (background included, as staintools)."""
    unmix, chunk, parts = _Unmixer(matrix, params.lasso_lambda), 1 << 20, []
    for img in images:
        flat = img.reshape(-1, 3)
        for start in range(0, flat.shape[0], chunk):
            parts.append(np.stack(unmix(_planes(flat[start : start + chunk])), axis=1))
    return np.percentile(np.concatenate(parts), params.percentile, axis=0).astype(np.float64)
