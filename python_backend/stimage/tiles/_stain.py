"""Stain normalisation of H&E tiles: Vahadane (the default), Macenko and Reinhard.

The semantics are those of staintools 2.1.2, the library the STImage code uses, so that a
model trained on staintools-normalised tiles sees the same colours here:

* optical density ``OD = -log(I / 255)``, with 0 read as 1 and OD floored at 1e-6;
* tissue = pixels whose LAB lightness (OpenCV, 0-255) over 255 is below 0.8;
* Vahadane: a 2-atom non-negative sparse dictionary (lambda 0.1) learnt on tissue OD, the
  atom with the larger red OD first (haematoxylin), rows scaled to unit length;
  Macenko: the 1st and 99th angular percentiles in the plane of the two main eigenvectors;
* concentrations by non-negative lasso, ``min 0.5 ||x - S^T a||^2 + 0.01 ||a||_1, a >= 0``,
  over every pixel; ``maxC`` their 99th percentile per stain;
* output ``255 exp(-(C maxC_target / maxC_source) S_target)``, truncated to uint8;
* Reinhard: mean and standard deviation matching per channel of OpenCV's 8-bit LAB.

What differs is speed. The 2-atom lasso is solved exactly in closed form for all pixels at
once (each pixel's optimum is the feasible one of the active sets {H, E}, {H}, {E}, {}), the
dictionary is learnt by exact alternating minimisation, with extrapolation, on the tissue
colours binned by RGB and weighted by count (no spams at run time), and the source is fitted
once per slide, so a tile costs a few table look-ups, one exponential and a cast. Staintools
refits the source on every tile; ``transform(tile, refit=True)`` does the same, for
comparisons. See ``benchmarks/results/stain.md`` for agreement with staintools and speed.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from stimage.errors import ConfigError, NoTissueError, UnsupportedFormatError

__all__ = [
    "STAIN_METHODS",
    "StainFit",
    "StainNormalizer",
    "StainParams",
    "build_stain_template",
    "estimate_stain_matrix",
    "list_stain_templates",
    "stain_concentrations",
]

logger = logging.getLogger(__name__)

STAIN_METHODS = ("vahadane", "macenko", "reinhard")
_SCHEMA = "stimage.stain_normalizer/1"
_TEMPLATE_SCHEMA = "stimage.stain_template/1"
_TEMPLATE_DIR = Path(__file__).with_name("templates")

#: Optical density of each 8-bit level, as staintools computes it.
_OD_LUT = np.maximum(-np.log(np.maximum(np.arange(256), 1) / 255.0), 1e-6)
#: Haematoxylin and eosin OD vectors of Ruifrok & Johnston (2001): fallback initialisation.
_RUIFROK_HE = np.array([[0.650, 0.704, 0.286], [0.072, 0.990, 0.105]])
_LN255 = math.log(255.0)
_TINY = 1e-6


@dataclass(frozen=True)
class StainParams:
    """Settings of stain normalisation (defaults are staintools').

    Attributes:
        luminosity_threshold: Tissue is where LAB lightness / 255 is below this.
        dictionary_lambda: L1 weight of Vahadane's dictionary learning.
        lasso_lambda: L1 weight of the concentration lasso.
        percentile: Percentile of concentrations taken as ``maxC``.
        angular_percentile: Macenko's angular percentile.
        min_tissue_pixels: Fewer tissue pixels than this: a fit raises
            :class:`~stimage.errors.NoTissueError` and a per-tile refit falls back to the
            slide fit, or returns the tile unchanged when there is none.
        fit_bits: RGB bits per channel kept when binning tissue colours for dictionary
            learning in ``fit_target`` / ``fit_source`` (8 = exact colours).
        tile_bits: The same for per-tile refits (fewer bins, faster).
        max_iter: Iteration cap of dictionary learning.
        tol: Dictionary learning stops when no atom entry moves more than this.
        max_fit_pixels: Macenko fits on more tissue pixels than this use a seeded random
            subsample of this size (memory bound).

    """

    luminosity_threshold: float = 0.8
    dictionary_lambda: float = 0.1
    lasso_lambda: float = 0.01
    percentile: float = 99.0
    angular_percentile: float = 99.0
    min_tissue_pixels: int = 256
    fit_bits: int = 7
    tile_bits: int = 6
    max_iter: int = 500
    tol: float = 1e-6
    max_fit_pixels: int = 4_000_000

    def __post_init__(self) -> None:
        checks = {
            "luminosity_threshold": 0 < self.luminosity_threshold <= 1,
            "dictionary_lambda": self.dictionary_lambda >= 0,
            "lasso_lambda": self.lasso_lambda >= 0,
            "percentile": 0 < self.percentile <= 100,
            "angular_percentile": 50 < self.angular_percentile <= 100,
            "min_tissue_pixels": self.min_tissue_pixels >= 2,
            "fit_bits": 1 <= self.fit_bits <= 8,
            "tile_bits": 1 <= self.tile_bits <= 8,
            "max_iter": self.max_iter >= 1,
            "tol": self.tol > 0,
            "max_fit_pixels": self.max_fit_pixels >= 1000,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            values = ", ".join(f"{name}={getattr(self, name)!r}" for name in bad)
            raise ConfigError(
                f"invalid stain normalisation setting(s): {values}; see StainParams for the "
                "allowed ranges (the defaults are staintools')"
            )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StainParams:
        """Build settings from a dict, rejecting unknown keys."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown stain setting(s) {unknown}; known: {sorted(known)}")
        return cls(**data)


_FIT_SHAPES = {
    "stain_matrix": (2, 3),
    "max_concentrations": (2,),
    "lab_mean": (3,),
    "lab_std": (3,),
}


@dataclass(frozen=True, eq=False)
class StainFit:
    """What a fit learnt from one image or a set of images.

    Attributes:
        method: ``"vahadane"``, ``"macenko"`` or ``"reinhard"``.
        stain_matrix: ``(2, 3)`` OD vectors of haematoxylin then eosin, unit rows
            (Vahadane and Macenko).
        max_concentrations: ``(2,)`` ``maxC`` of H and E (Vahadane and Macenko).
        lab_mean: ``(3,)`` means of L (0-100), a and b (-128-127) (Reinhard).
        lab_std: ``(3,)`` their standard deviations (Reinhard).
        n_pixels: Pixels the fit saw.
        n_tissue: Tissue pixels among them.

    """

    method: str
    stain_matrix: np.ndarray | None = None
    max_concentrations: np.ndarray | None = None
    lab_mean: np.ndarray | None = None
    lab_std: np.ndarray | None = None
    n_pixels: int = 0
    n_tissue: int = 0

    def __post_init__(self) -> None:
        _check_method(self.method)
        lab = self.method == "reinhard"
        needed = ("lab_mean", "lab_std") if lab else ("stain_matrix", "max_concentrations")
        for name, shape in _FIT_SHAPES.items():
            value = getattr(self, name)
            if value is None:
                if name in needed:
                    raise ConfigError(f"a {self.method} stain fit needs {name}; it is missing")
                continue
            arr = np.array(value, dtype=np.float64)
            if arr.shape != shape or not np.all(np.isfinite(arr)):
                raise ConfigError(
                    f"stain fit {name} must be a finite array of shape {shape}; got {arr!r}"
                )
            arr.flags.writeable = False
            object.__setattr__(self, name, arr)
        if self.stain_matrix is not None and np.any(np.abs(self.stain_matrix).sum(axis=1) == 0):
            raise ConfigError("stain fit stain_matrix has an all-zero row; refit the stain")

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (floats at full precision)."""
        out: dict[str, Any] = {"method": self.method}
        for name in _FIT_SHAPES:
            value = getattr(self, name)
            if value is not None:
                out[name] = value.tolist()
        out["n_pixels"], out["n_tissue"] = int(self.n_pixels), int(self.n_tissue)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StainFit:
        """Inverse of :meth:`to_dict`."""
        allowed = {"method", "n_pixels", "n_tissue", *_FIT_SHAPES}
        unknown = sorted(set(data) - allowed)
        if "method" not in data or unknown:
            raise ConfigError(
                f"a stain fit dict needs 'method' and may hold {sorted(allowed)}; got keys "
                f"{sorted(data)}"
            )
        return cls(**data)


# --------------------------------------------------------------------------- validation


def _check_method(method: str) -> str:
    if method not in STAIN_METHODS:
        raise ConfigError(
            f"unknown stain normalisation method {method!r}; choose one of {STAIN_METHODS}"
        )
    return method


def _check_rgb(image: Any, what: str = "image") -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise UnsupportedFormatError(
            f"stain normalisation expects the {what} as a numpy array; got "
            f"{type(image).__name__}; convert with np.asarray(image)"
        )
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        hint = (
            " Floats in 0-1: (np.clip(x, 0, 1) * 255).astype(np.uint8); in 0-255: "
            "np.clip(x, 0, 255).astype(np.uint8)."
            if image.dtype.kind == "f"
            else " Drop an alpha channel with image[..., :3]."
            if image.ndim == 3 and image.shape[2] == 4
            else ""
        )
        raise UnsupportedFormatError(
            f"stain normalisation expects the {what} as an RGB uint8 array of shape "
            f"(height, width, 3); got {image.dtype} of shape {image.shape}.{hint}"
        )
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise UnsupportedFormatError(f"the {what} is empty (shape {image.shape})")
    return image


def _as_image_list(images: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
    if isinstance(images, np.ndarray):
        return [_check_rgb(images)]
    out = [_check_rgb(img, f"image {i}") for i, img in enumerate(images)]
    if not out:
        raise UnsupportedFormatError("no images given; pass one RGB uint8 array or a list")
    return out


# ------------------------------------------------------------------------ closed-form lasso


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


# -------------------------------------------------------------------- stain matrix fits


def _planes(image: np.ndarray) -> np.ndarray:
    """Pixels as contiguous ``(3, n)`` colour planes (numpy loops run along the long axis)."""
    return np.ascontiguousarray(image.reshape(-1, 3).T)


def _tissue_level(luminosity_threshold: float) -> int:
    """Tissue is 8-bit LAB lightness below this level (staintools' ``L / 255 < threshold``)."""
    return int(np.count_nonzero(np.arange(256) / 255.0 < luminosity_threshold))


def _tissue_planes(image: np.ndarray, planes: np.ndarray, params: StainParams) -> np.ndarray:
    """Tissue pixels of one image as ``(3, m)`` uint8."""
    lightness = cv2.cvtColor(image, cv2.COLOR_RGB2LAB)[..., 0].ravel()
    mask = lightness < _tissue_level(params.luminosity_threshold)
    return np.stack([plane[mask] for plane in planes])


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
    images = _as_image_list(images)
    rgb = np.concatenate([_tissue_planes(img, _planes(img), params) for img in images], axis=1)
    _require_tissue(rgb.shape[1], sum(img.shape[0] * img.shape[1] for img in images), params)
    return _stain_matrix(rgb, method, params, params.fit_bits)


def _require_tissue(n_tissue: int, total: int, params: StainParams) -> None:
    if n_tissue < params.min_tissue_pixels:
        raise NoTissueError(
            f"stain fit needs at least {params.min_tissue_pixels} tissue pixels (LAB lightness "
            f"below {params.luminosity_threshold:.0%}); found {n_tissue} of {total}. Fit on "
            "tissue-rich images, or lower StainParams.min_tissue_pixels"
        )


# ------------------------------------------------------------------------ per-pixel maps


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


def _matrix_parts(fit: StainFit) -> tuple[np.ndarray, np.ndarray]:
    if fit.stain_matrix is None or fit.max_concentrations is None:
        raise ConfigError(f"a {fit.method} stain fit has no stain matrix")
    return fit.stain_matrix, fit.max_concentrations


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


# staintools' LAB units: L / 2.55 (in float32), a - 128, b - 128, for each 8-bit level.
_LAB_VALUES = np.stack([
    np.arange(256, dtype=np.float32) / np.float32(2.55),
    np.arange(256, dtype=np.float32) - 128,
    np.arange(256, dtype=np.float32) - 128,
]).astype(np.float64)  # fmt: skip


def _lab_fit(labs: list[np.ndarray], params: StainParams) -> StainFit:
    """Reinhard statistics of 8-bit LAB images, pooled, from per-channel histograms."""
    hist, n_tissue, total = np.zeros((3, 256)), 0, 0
    for lab in labs:
        flat = lab.reshape(-1, 3)
        for k in range(3):
            hist[k] += np.bincount(flat[:, k], minlength=256)
        total += flat.shape[0]
    # The 8-bit L levels decide tissue, exactly as staintools' L / 255 < threshold.
    n_tissue = int(hist[0][np.arange(256) / 255.0 < params.luminosity_threshold].sum())
    _require_tissue(n_tissue, total, params)
    mean = (hist * _LAB_VALUES).sum(axis=1) / total
    std = np.sqrt((hist * (_LAB_VALUES - mean[:, None]) ** 2).sum(axis=1) / total)
    return StainFit("reinhard", lab_mean=mean, lab_std=std, n_pixels=total, n_tissue=n_tissue)


def _reinhard_table(source: StainFit, target: StainFit) -> np.ndarray:
    """OpenCV LUT ``(1, 256, 3)`` of Reinhard's per-channel affine map on 8-bit LAB."""
    if source.lab_mean is None or source.lab_std is None:
        raise ConfigError("the Reinhard source fit has no LAB statistics")
    if target.lab_mean is None or target.lab_std is None:
        raise ConfigError("the Reinhard target fit has no LAB statistics")
    ratio = _scale(target.lab_std, source.lab_std)
    norm = (_LAB_VALUES - source.lab_mean[:, None]) * ratio[:, None] + target.lab_mean[:, None]
    norm[0] *= 2.55
    norm[1:] += 128.0
    return np.ascontiguousarray(np.clip(norm, 0, 255).astype(np.uint8).T[None])


def _fit(images: list[np.ndarray], method: str, params: StainParams, bits: int) -> StainFit:
    if method == "reinhard":
        return _lab_fit([cv2.cvtColor(img, cv2.COLOR_RGB2LAB) for img in images], params)
    total = sum(img.shape[0] * img.shape[1] for img in images)
    rgb = np.concatenate([_tissue_planes(img, _planes(img), params) for img in images], axis=1)
    _require_tissue(rgb.shape[1], total, params)
    matrix = _stain_matrix(rgb, method, params, bits)
    max_c = _max_concentrations(images, matrix, params)
    return StainFit(method, matrix, max_c, n_pixels=total, n_tissue=int(rgb.shape[1]))


# ------------------------------------------------------------------------- the normaliser


class StainNormalizer:
    """Stain normaliser fitted once per slide and applied per tile.

    Fit a target (:meth:`fit_target`, or a bundled one with :meth:`from_template`), fit the
    source on tissue of the slide (:meth:`fit_source`: a thumbnail or sampled patches), then
    :meth:`transform` each tile. ``transform(tile, refit=True)`` refits the source on the
    tile instead, as staintools does.

    Args:
        method: ``"vahadane"`` (default), ``"macenko"`` or ``"reinhard"``.
        params: Settings; staintools' defaults when omitted.

    Example:
        >>> norm = StainNormalizer.from_template("default", method="vahadane")
        >>> norm = norm.fit_source(slide_patches)  # doctest: +SKIP
        >>> out = norm.transform(tile)  # doctest: +SKIP

    """

    def __init__(self, method: str = "vahadane", params: StainParams | None = None) -> None:
        self.method = _check_method(method)
        self.params = params or StainParams()
        self.target: StainFit | None = None
        self.source: StainFit | None = None
        self._slide_map: Any = None

    def __repr__(self) -> str:
        state = [n for n in ("target", "source") if getattr(self, n) is not None]
        return f"StainNormalizer(method={self.method!r}, fitted={state})"

    @property
    def is_fitted(self) -> bool:
        """Whether both target and source are fitted (per-slide transforms can run)."""
        return self.target is not None and self.source is not None

    def fit_target(self, images: np.ndarray | Sequence[np.ndarray]) -> StainNormalizer:
        """Fit the target appearance on a reference image, or pooled over several.

        Args:
            images: RGB uint8 ``(h, w, 3)`` array, tissue-rich with both stains, or a list
                of them (sizes may differ).

        Returns:
            ``self``.

        Raises:
            NoTissueError: Too little tissue, or (almost) none of one stain.

        """
        images = _as_image_list(images)
        self.target = self._checked_fit(
            _fit(images, self.method, self.params, self.params.fit_bits)
        )
        self._slide_map = None
        return self

    def fit_source(self, images: np.ndarray | Sequence[np.ndarray]) -> StainNormalizer:
        """Fit the source (per slide) on one image or pooled over a list of images.

        Pass tissue of the slide: patches sampled from it, or a downscaled image (as the
        STImage code does). The concentration percentile counts every pixel given,
        background included (as staintools does per image), so mostly-background inputs
        lower the source ``maxC`` and darken the output: prefer tissue patches.

        Args:
            images: RGB uint8 ``(h, w, 3)`` array, or a list of them (sizes may differ).

        Returns:
            ``self``.

        """
        self.source = _fit(_as_image_list(images), self.method, self.params, self.params.fit_bits)
        self._slide_map = None
        return self

    def copy(self) -> StainNormalizer:
        """Return a new normaliser with the same method, settings and (immutable) fits.

        Use it to fit one source per slide against a common target.
        """
        new = StainNormalizer(self.method, self.params)
        new.target, new.source = self.target, self.source
        return new

    def set_fits(self, target: StainFit | None = None, source: StainFit | None = None) -> None:
        """Set fits computed elsewhere (e.g. one source fit shared by several normalisers)."""
        for fit in (target, source):
            if fit is not None and fit.method != self.method:
                raise ConfigError(f"a {fit.method} fit cannot serve a {self.method} normaliser")
        if target is not None:
            self.target = self._checked_fit(target)
        if source is not None:
            self.source = source
        self._slide_map = None

    def transform(self, tile: np.ndarray, *, refit: bool = False) -> np.ndarray:
        """Normalise one tile.

        Args:
            tile: RGB uint8 ``(h, w, 3)``.
            refit: Refit the source on this tile (staintools' behaviour, slower). A tile
                with fewer than ``params.min_tissue_pixels`` tissue pixels then uses the
                slide fit if there is one, else comes back unchanged.

        Returns:
            A new RGB uint8 array of the tile's shape.

        Raises:
            ConfigError: The target (or, without ``refit``, the source) is not fitted.

        """
        tile = _check_rgb(tile, "tile")
        target = self._require("target")
        if not refit:
            self._require("source")
        if self.method == "reinhard":
            return self._transform_reinhard(tile, target, refit)
        planes = _planes(tile)
        matrix_t, max_t = _matrix_parts(target)
        if refit:
            rgb = _tissue_planes(tile, planes, self.params)
            if rgb.shape[1] >= self.params.min_tissue_pixels:
                matrix = _stain_matrix(rgb, self.method, self.params, self.params.tile_bits)
                h, e = _Unmixer(matrix, self.params.lasso_lambda)(planes)
                q = self.params.percentile
                scale = _scale(max_t, np.array([np.percentile(h, q), np.percentile(e, q)]))
                return _render(h, e, matrix_t, scale).reshape(tile.shape)
            if self.source is None:
                return tile.copy()
        if self._slide_map is None:
            matrix_s, max_s = _matrix_parts(self._require("source"))
            self._slide_map = (_Unmixer(matrix_s, self.params.lasso_lambda), _scale(max_t, max_s))
        unmix, scale = self._slide_map
        h, e = unmix(planes)
        return _render(h, e, matrix_t, scale).reshape(tile.shape)

    __call__ = transform

    def _require(self, which: str) -> StainFit:
        fit: StainFit | None = getattr(self, which)
        if fit is None:
            if which == "target":
                raise ConfigError(
                    "fit a target first: StainNormalizer.fit_target(image) or "
                    "StainNormalizer.from_template('default', method=...)"
                )
            raise ConfigError(
                "fit the source first with fit_source(images of this slide), or call "
                "transform(tile, refit=True) to fit each tile on its own"
            )
        return fit

    def _transform_reinhard(self, tile: np.ndarray, target: StainFit, refit: bool) -> np.ndarray:
        lab = cv2.cvtColor(tile, cv2.COLOR_RGB2LAB)
        table = None
        if refit:
            try:
                table = _reinhard_table(_lab_fit([lab], self.params), target)
            except NoTissueError:
                if self.source is None:
                    return tile.copy()
        if table is None:
            if self._slide_map is None:
                self._slide_map = _reinhard_table(self._require("source"), target)
            table = self._slide_map
        return cv2.cvtColor(cv2.LUT(lab, table), cv2.COLOR_LAB2RGB)

    def _checked_fit(self, fit: StainFit) -> StainFit:
        if fit.max_concentrations is not None and np.any(fit.max_concentrations <= _TINY):
            stain = "haematoxylin" if fit.max_concentrations[0] <= _TINY else "eosin"
            raise NoTissueError(
                f"the target has (almost) no {stain} at the concentration percentile "
                f"(maxC = {fit.max_concentrations.tolist()}); choose a target with both stains"
            )
        return fit

    # ------------------------------------------------------------------ serialisation

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable description (method, settings and fits)."""
        return {
            "schema": _SCHEMA,
            "method": self.method,
            "params": asdict(self.params),
            "target": None if self.target is None else self.target.to_dict(),
            "source": None if self.source is None else self.source.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StainNormalizer:
        """Rebuild a normaliser from :meth:`to_dict` output."""
        if isinstance(data, dict) and data.get("schema") == _TEMPLATE_SCHEMA:
            raise ConfigError(
                "this is a stain template, not a normaliser; load it with "
                "StainNormalizer.from_template(path, method=...)"
            )
        if not isinstance(data, dict) or data.get("schema") != _SCHEMA:
            found = data.get("schema") if isinstance(data, dict) else type(data).__name__
            raise ConfigError(
                f"expected a stain normaliser dict with schema {_SCHEMA!r}; got {found!r}"
            )
        norm = cls(data.get("method", ""), StainParams.from_dict(data.get("params", {})))
        fits = {k: StainFit.from_dict(data[k]) for k in ("target", "source") if data.get(k)}
        norm.set_fits(**fits)
        return norm

    @classmethod
    def from_template(
        cls, name: str = "default", method: str = "vahadane", params: StainParams | None = None
    ) -> StainNormalizer:
        """Make a normaliser whose target is a bundled template (or a template JSON file).

        Args:
            name: A name from :func:`list_stain_templates`, or the path of a template JSON.
            method: Which of the template's fits to use.
            params: Settings; the template's own when omitted.

        Returns:
            A normaliser with the target set; call :meth:`fit_source` next.

        """
        template = _load_template(name)
        _check_method(method)
        if method not in template["fits"]:
            raise ConfigError(
                f"template {name!r} has no {method} fit; it has {sorted(template['fits'])}"
            )
        norm = cls(method, params or StainParams.from_dict(template["params"]))
        norm.set_fits(target=StainFit.from_dict(template["fits"][method]))
        return norm


# ---------------------------------------------------------------------------- templates


def list_stain_templates() -> list[str]:
    """Names of the bundled stain templates."""
    return sorted(p.stem for p in _TEMPLATE_DIR.glob("*.json"))


def _load_template(name: str) -> dict[str, Any]:
    if name.endswith(".json") or "/" in name or "\\" in name:
        path = Path(name)
    else:
        path = _TEMPLATE_DIR / f"{name}.json"
        if not path.is_file():
            raise ConfigError(
                f"no bundled stain template {name!r}; bundled: {list_stain_templates()}, or "
                "pass the path of a template JSON file"
            )
    if not path.is_file():
        raise ConfigError(f"stain template file {str(path)!r} does not exist")
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("schema") != _TEMPLATE_SCHEMA or not isinstance(data.get("fits"), dict):
        raise ConfigError(
            f"{path} is not a stain template (expected schema {_TEMPLATE_SCHEMA!r} and 'fits')"
        )
    return data


def build_stain_template(
    image: np.ndarray,
    *,
    name: str,
    description: str,
    source: dict[str, Any],
    params: StainParams | None = None,
) -> dict[str, Any]:
    """Fit all three methods on a reference image and return a template dict.

    Args:
        image: RGB uint8 ``(h, w, 3)`` reference region, tissue-rich, with both stains.
        name: Template name (the JSON file's stem).
        description: One line on what the template is.
        source: Provenance: dataset, file, crop, citation, the command that made it.
        params: Settings; staintools' defaults when omitted.

    Returns:
        A JSON-serialisable dict; write it with ``json.dump`` to ``templates/<name>.json``.

    """
    from stimage import __version__

    params = params or StainParams()
    fits = {m: StainNormalizer(m, params).fit_target(image).target for m in STAIN_METHODS}
    return {
        "schema": _TEMPLATE_SCHEMA,
        "name": name,
        "description": description,
        "source": source,
        "params": asdict(params),
        "stimage_version": __version__,
        "fits": {m: fit.to_dict() for m, fit in fits.items() if fit is not None},
    }
