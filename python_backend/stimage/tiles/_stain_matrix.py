"""Stain matrices: Macenko's, and Vahadane's by a fast exact dictionary learning.

Vahadane's 2-atom non-negative sparse dictionary (spams ``trainDL``, as staintools) is
learnt by exact alternating minimisation, with extrapolation, on the tissue colours binned
by RGB and weighted by count, so no spams is needed at run time.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np

from stimage.errors import ConfigError
from stimage.tiles._stain_base import (
    _OD_LUT,
    StainParams,
    _as_image_list,
    _check_method,
    _pooled_tissue,
)
from stimage.tiles._stain_unmix import _lasso2

__all__ = ["estimate_stain_matrix"]

logger = logging.getLogger(__name__)

#: Haematoxylin and eosin OD vectors of Ruifrok & Johnston (2001): fallback initialisation.
_RUIFROK_HE = np.array([[0.650, 0.704, 0.286], [0.072, 0.990, 0.105]])


def _order_rows(matrix: np.ndarray) -> np.ndarray:
    """Haematoxylin (larger red OD) first, rows scaled to unit length."""
    if matrix[0, 0] < matrix[1, 0]:
        matrix = matrix[[1, 0]]
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def _macenko_matrix(od: np.ndarray, angular_percentile: float) -> np.ndarray:
    """Macenko's stain matrix from tissue OD ``(3, m)``, as staintools' extractor."""
    centred = od - od.mean(axis=1, keepdims=True)
    cov = np.empty((3, 3))
    for i in range(3):  # np.cov's BLAS call is slow for this shape
        for j in range(i, 3):
            cov[i, j] = cov[j, i] = np.dot(centred[i], centred[j]) / (od.shape[1] - 1)
    _, vecs = np.linalg.eigh(cov)
    vecs = vecs[:, [2, 1]]
    vecs[:, vecs[0] < 0] *= -1
    proj = vecs.T @ od
    phi = np.arctan2(proj[1], proj[0])
    lo, hi = np.percentile(phi, [100 - angular_percentile, angular_percentile])
    v1 = vecs @ np.array([np.cos(lo), np.sin(lo)])
    v2 = vecs @ np.array([np.cos(hi), np.sin(hi)])
    return _order_rows(np.array([v1, v2]) if v1[0] > v2[0] else np.array([v2, v1]))


def _bin_colours(rgb: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Weighted coreset of tissue colours: mean OD ``(3, m)`` and pixel count per RGB bin."""
    q = (rgb >> (8 - bits)).astype(np.int32)
    code = (q[0] << (2 * bits)) | (q[1] << bits) | q[2]
    counts = np.bincount(code, minlength=1 << (3 * bits))
    used = np.flatnonzero(counts > 0)
    weights = counts[used].astype(np.float64)
    counts[used] = np.arange(used.size)  # reuse the buffer: bin -> index among used bins
    index = counts[code]
    od = np.empty((3, used.size))
    for k in range(3):
        od[k] = np.bincount(index, weights=np.take(_OD_LUT, rgb[k]), minlength=used.size)
    return od / weights, weights


def _code(xt: np.ndarray, w: np.ndarray, d: np.ndarray, lam: float) -> tuple[np.ndarray, float]:
    """Exact codes ``(2, m)`` of the columns of ``xt``, and the weighted objective + const."""
    c = d @ xt - lam
    h, e = _lasso2(c[0], c[1], d @ d.T)
    # At the exact code, a^T G a = a . c, so the objective is const - 0.5 sum w a . c.
    return np.stack([h, e]), -0.5 * float(w @ (h * c[0] + e * c[1]))


def _project(d: np.ndarray) -> np.ndarray:
    """Onto non-negative atoms of length at most one."""
    d = np.maximum(d, 0)
    norms = np.sqrt((d * d).sum(axis=1, keepdims=True))
    return d / np.maximum(norms, 1.0)


def _update_dictionary(d: np.ndarray, a: np.ndarray, xt: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Block coordinate descent on the atoms (Mairal et al. 2010, as spams), three sweeps.

    Works on Python floats: the matrices are 2 x 3 and numpy's per-call cost would dominate.
    """
    aw = a * w
    gram, cross = (aw @ a.T).tolist(), (aw @ xt.T).tolist()
    atoms = d.tolist()
    for _ in range(3):
        for j in range(2):
            g = gram[j]
            if g[j] < 1e-12:  # unused atom: keep it
                continue
            a0, a1, aj, cj = atoms[0], atoms[1], atoms[j], cross[j]
            u = [max(aj[c] + (cj[c] - g[0] * a0[c] - g[1] * a1[c]) / g[j], 0.0) for c in range(3)]
            norm = math.sqrt(u[0] * u[0] + u[1] * u[1] + u[2] * u[2])
            if norm > 0:
                scale = 1.0 / max(norm, 1.0)
                atoms[j] = [v * scale for v in u]
    return np.array(atoms)


def _learn_dictionary(
    xt: np.ndarray, w: np.ndarray, d0: np.ndarray, lam: float, max_iter: int, tol: float
) -> np.ndarray:
    """Non-negative sparse dictionary learning (spams ``trainDL`` mode 2, posD, posAlpha).

    Alternates exact coding and dictionary updates, with the adaptive extrapolation of Ang &
    Gillis (2019, Neural Comput 31:417) and a restart whenever it would raise the objective.
    """
    d, y = d0.copy(), d0.copy()
    beta, beta_max, f_prev = 0.5, 1.0, math.inf
    for it in range(max_iter):
        a, f = _code(xt, w, y, lam)
        if f > f_prev:
            beta_max, beta = beta, beta / 1.5
            y = d
            a, f = _code(xt, w, y, lam)
        else:
            beta = min(beta_max, beta * 1.05)
        d_new = _update_dictionary(y, a, xt, w)
        step = float(np.abs(d_new - d).max())
        y, d, f_prev = _project(d_new + beta * (d_new - d)), d_new, f
        if step < tol:
            logger.debug("dictionary learning converged in %d iterations", it + 1)
            return d
    logger.debug("dictionary learning stopped at max_iter=%d (last step %.2e)", max_iter, step)
    return d


def _initial_dictionary(od: np.ndarray, angular_percentile: float) -> np.ndarray:
    """Deterministic start: Macenko's vectors on a strided subsample, made non-negative."""
    sub = od[:, :: max(1, od.shape[1] // 4096)]
    if sub.shape[1] >= 3:
        d = np.maximum(_macenko_matrix(sub, angular_percentile), 0)
        norms = np.linalg.norm(d, axis=1, keepdims=True)
        if np.all(norms > 0.5) and np.all(np.isfinite(d)):
            return d / norms
    return _RUIFROK_HE / np.linalg.norm(_RUIFROK_HE, axis=1, keepdims=True)


def _stain_matrix(rgb: np.ndarray, method: str, params: StainParams, bits: int) -> np.ndarray:
    """Stain matrix of tissue pixels ``rgb`` (``(3, m)`` uint8)."""
    if method == "macenko":
        if rgb.shape[1] > params.max_fit_pixels:
            pick = np.random.default_rng(0).choice(rgb.shape[1], params.max_fit_pixels, False)
            rgb = rgb[:, np.sort(pick)]
        return _macenko_matrix(_OD_LUT[rgb], params.angular_percentile)
    xt, w = _bin_colours(rgb, bits)
    d0 = _initial_dictionary(_OD_LUT[rgb[:, :: max(1, rgb.shape[1] // 4096)]],
                             params.angular_percentile)  # fmt: skip
    d = _learn_dictionary(xt, w, d0, params.dictionary_lambda, params.max_iter, params.tol)
    return _order_rows(d)


def estimate_stain_matrix(
    images: np.ndarray | Sequence[np.ndarray],
    method: str = "vahadane",
    params: StainParams | None = None,
) -> np.ndarray:
    """Stain matrix of the tissue in one image or pooled over several.

    Args:
        images: RGB uint8 ``(h, w, 3)`` array, or a list of them.
        method: ``"vahadane"`` or ``"macenko"``.
        params: Settings; staintools' defaults when omitted.

    Returns:
        ``(2, 3)`` float64 OD vectors, haematoxylin first, unit rows.

    Raises:
        NoTissueError: Fewer than ``params.min_tissue_pixels`` tissue pixels.

    """
    params = params or StainParams()
    if _check_method(method) == "reinhard":
        raise ConfigError("Reinhard has no stain matrix; use 'vahadane' or 'macenko'")
    rgb, _ = _pooled_tissue(_as_image_list(images), params)
    return _stain_matrix(rgb, method, params, params.fit_bits)
