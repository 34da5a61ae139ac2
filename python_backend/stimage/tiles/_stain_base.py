"""Stain normalisation basics: settings, input checks and the tissue pixels a fit sees.

Shared by the stain modules (``_stain_unmix``, ``_stain_matrix``, ``_stain_fit``,
``_stain``); the public names are re-exported by :mod:`stimage.tiles`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import cv2
import numpy as np

from stimage.errors import ConfigError, NoTissueError, UnsupportedFormatError

__all__ = ["STAIN_METHODS", "StainParams"]

STAIN_METHODS = ("vahadane", "macenko", "reinhard")

#: Optical density of each 8-bit level, as staintools computes it.
_OD_LUT = np.maximum(-np.log(np.maximum(np.arange(256), 1) / 255.0), 1e-6)
#: Concentrations at or below this count as none of a stain.
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


# ---------------------------------------------------------------------------- tissue pixels


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


def _pooled_tissue(images: list[np.ndarray], params: StainParams) -> tuple[np.ndarray, int]:
    """Tissue pixels of all images as ``(3, m)`` uint8, and the pixel total.

    Raises:
        NoTissueError: Fewer than ``params.min_tissue_pixels`` tissue pixels.
    """
    total = sum(img.shape[0] * img.shape[1] for img in images)
    rgb = np.concatenate([_tissue_planes(img, _planes(img), params) for img in images], axis=1)
    _require_tissue(rgb.shape[1], total, params)
    return rgb, total


def _require_tissue(n_tissue: int, total: int, params: StainParams) -> None:
    if n_tissue < params.min_tissue_pixels:
        raise NoTissueError(
            f"stain fit needs at least {params.min_tissue_pixels} tissue pixels (LAB lightness "
            f"below {params.luminosity_threshold:.0%}); found {n_tissue} of {total}. Fit on "
            "tissue-rich images, or lower StainParams.min_tissue_pixels"
        )
