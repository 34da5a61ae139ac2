"""Stain fits: what a method learns from one image or pooled images, and how it is stored.

Vahadane and Macenko learn a stain matrix and the 99th percentile of each stain's
concentration (``maxC``); Reinhard the mean and standard deviation of each LAB channel.
A source fit is made once per slide (on tissue patches) and then serves every tile.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from stimage.errors import ConfigError
from stimage.tiles._stain_base import StainParams, _check_method, _pooled_tissue, _require_tissue
from stimage.tiles._stain_matrix import _stain_matrix
from stimage.tiles._stain_unmix import _max_concentrations, _scale

__all__ = ["StainFit"]

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


def _matrix_parts(fit: StainFit) -> tuple[np.ndarray, np.ndarray]:
    if fit.stain_matrix is None or fit.max_concentrations is None:
        raise ConfigError(f"a {fit.method} stain fit has no stain matrix")
    return fit.stain_matrix, fit.max_concentrations


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
    rgb, total = _pooled_tissue(images, params)
    matrix = _stain_matrix(rgb, method, params, bits)
    max_c = _max_concentrations(images, matrix, params)
    return StainFit(method, matrix, max_c, n_pixels=total, n_tissue=int(rgb.shape[1]))
