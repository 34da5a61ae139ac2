"""The classical nucleus segmenter: colour deconvolution, thresholds and a watershed.

It needs no weights. The steps, with every size in µm so that it works at any resolution:

1. **Haematoxylin.** Optical density is unmixed into haematoxylin and eosin
   concentrations with a stain matrix. ``stains="auto"`` (the default) estimates the matrix
   of each image (Vahadane, on a subsample of about 130,000 pixels), because HER2ST and other cohorts stain
   differently: with the fixed Ruifrok & Johnston vectors of ``skimage.color.rgb2hed``,
   the purple stroma of HER2ST comes out as strongly "haematoxylin" as pale nuclei do. An
   image with too little tissue for a fit, or whose fit is implausible, falls back to
   :data:`HER2ST_STAINS`. (:func:`~stimage.explain.segment_nuclei` fits once per region.)
2. **Foreground.** Haematoxylin smoothed by a Gaussian (``smooth_um``) above a threshold:
   ``otsu_factor`` x Otsu's threshold of the image, never below ``min_threshold`` (so that
   glass or stroma alone give no nuclei), or a fixed ``threshold``. Then a local half-maximum
   test: a pixel is kept only where it reaches ``local_fraction`` of the highest
   haematoxylin within ``nucleus_radius_um``, which cuts the pale gaps between the nuclei of a
   dense cluster and puts the edge of a blurred nucleus at half its peak. An opening
   (``opening_um``) removes specks; holes are filled.
3. **Seeds and watershed.** The seed image is the distance to the background, capped at
   ``nucleus_radius_um``, plus haematoxylin blurred at the scale of a nucleus
   (``seed_sigma_um``, weighted by ``seed_haematoxylin_um``). Its local maxima, at least
   ``seed_min_distance_um`` apart, seed a watershed inside the foreground. Distance alone
   (the STImage reference code) leaves the dense clusters of HER2ST's blurred JPEGs as one
   blob each, which the size filter then drops; haematoxylin alone merges touching nuclei
   of equal stain.
4. **Size filter.** Nuclei outside ``[min_area_um2, max_area_um2]`` are removed.

Defaults were tuned on the four HER2ST sections (0.69 µm/px), see ``docs`` and
``benchmarks/bench_nuclei.py``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stimage.errors import ConfigError, NoTissueError, UnsupportedFormatError

__all__ = ["HER2ST_STAINS", "RUIFROK_STAINS", "ClassicalSegmenter"]

logger = logging.getLogger(__name__)

#: Haematoxylin and eosin OD vectors of Ruifrok & Johnston (2001), unit rows.
RUIFROK_STAINS = np.array([[0.650, 0.704, 0.286], [0.072, 0.990, 0.105]])
RUIFROK_STAINS = RUIFROK_STAINS / np.linalg.norm(RUIFROK_STAINS, axis=1, keepdims=True)
#: Median Vahadane stain matrix of 32 spot-centred crops of the four HER2ST sections.
HER2ST_STAINS = np.array([[0.713, 0.616, 0.331], [0.525, 0.745, 0.426]])
HER2ST_STAINS = HER2ST_STAINS / np.linalg.norm(HER2ST_STAINS, axis=1, keepdims=True)

#: Optical density of each 8-bit level (staintools' convention, as in stimage.tiles).
_OD_LUT = np.maximum(-np.log(np.maximum(np.arange(256), 1) / 255.0), 1e-6).astype(np.float32)
#: An estimated haematoxylin vector further than this from Ruifrok's is not trusted.
_MAX_H_ANGLE_DEG = 25.0
#: The stain matrix is fitted on about this many pixels (a regular subsample).
_FIT_PIXELS = 128 * 1024
#: Estimated H and E vectors closer than this cannot be unmixed reliably.
_MIN_HE_ANGLE_DEG = 4.0


def _angle(a: np.ndarray, b: np.ndarray) -> float:
    c = float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))


@dataclass(frozen=True, eq=False)
class ClassicalSegmenter:
    """Nuclei by colour deconvolution, thresholds and a seeded watershed (no weights).

    Attributes:
        stains: ``"auto"`` (estimate per image), ``"ruifrok"``, ``"her2st"`` or a ``(2, 3)``
            array of haematoxylin and eosin OD vectors.
        smooth_um: Gaussian sigma applied to haematoxylin before thresholding.
        threshold: Fixed haematoxylin threshold (concentration units); ``None`` = adaptive.
        otsu_factor: Adaptive threshold = this x Otsu's threshold ...
        min_threshold: ... but at least this.
        local_fraction: Keep pixels reaching this fraction of the local haematoxylin maximum
            (0 turns the test off).
        nucleus_radius_um: Radius of a large nucleus: the window of that local maximum, and
            the cap on the distance transform used for seeds (beyond it, a blob is a
            cluster, not a bigger nucleus).
        opening_um: Radius of the morphological opening of the foreground.
        seed_sigma_um: Gaussian sigma of the haematoxylin image that seeds are picked on.
        seed_min_distance_um: Least distance between two seeds.
        seed_haematoxylin_um: Weight of haematoxylin in the seed image, which is the
            distance to the background (µm, capped at ``nucleus_radius_um``) plus this many
            µm times haematoxylin over its 95th percentile in the foreground. Distance
            splits touching nuclei of equal stain; haematoxylin splits dense clusters.
        min_area_um2: Smaller objects are dropped.
        max_area_um2: Larger objects are dropped.

    Example:
        >>> seg = ClassicalSegmenter(min_area_um2=15)
        >>> labels = seg.segment(np.full((64, 64, 3), 240, np.uint8), mpp=0.5)
        >>> int(labels.max())
        0
    """

    stains: Any = "auto"
    smooth_um: float = 0.7
    threshold: float | None = None
    otsu_factor: float = 0.8
    min_threshold: float = 0.4
    local_fraction: float = 0.5
    nucleus_radius_um: float = 4.0
    opening_um: float = 0.7
    seed_sigma_um: float = 1.5
    seed_min_distance_um: float = 3.0
    seed_haematoxylin_um: float = 2.0
    min_area_um2: float = 10.0
    max_area_um2: float = 400.0
    name: str = field(default="classical", init=False)

    def __post_init__(self) -> None:
        if isinstance(self.stains, str):
            if self.stains not in ("auto", "ruifrok", "her2st"):
                raise ConfigError(
                    f"stains must be 'auto', 'ruifrok', 'her2st' or a (2, 3) matrix, got {self.stains!r}"
                )
        else:
            m = np.asarray(self.stains, dtype=np.float64)
            if (
                m.shape != (2, 3)
                or not np.all(np.isfinite(m))
                or np.any(np.linalg.norm(m, axis=1) == 0)
            ):
                raise ConfigError(
                    f"stains must be a (2, 3) matrix of H and E OD vectors, got shape {m.shape}"
                )
            object.__setattr__(self, "stains", m / np.linalg.norm(m, axis=1, keepdims=True))
        for name in (
            "smooth_um",
            "nucleus_radius_um",
            "seed_sigma_um",
            "seed_min_distance_um",
            "min_area_um2",
            "max_area_um2",
        ):
            v = getattr(self, name)
            if not (np.isfinite(v) and v > 0):
                raise ConfigError(f"ClassicalSegmenter.{name} must be positive, got {v!r}")
        for name in (
            "otsu_factor",
            "min_threshold",
            "opening_um",
            "local_fraction",
            "seed_haematoxylin_um",
        ):
            v = getattr(self, name)
            if not (np.isfinite(v) and v >= 0):
                raise ConfigError(f"ClassicalSegmenter.{name} must be >= 0, got {v!r}")
        if self.local_fraction >= 1:
            raise ConfigError(f"local_fraction must be below 1, got {self.local_fraction}")
        if self.threshold is not None and not self.threshold > 0:
            raise ConfigError(f"threshold must be positive, got {self.threshold!r}")
        if self.max_area_um2 <= self.min_area_um2:
            raise ConfigError(
                f"max_area_um2 ({self.max_area_um2}) must exceed min_area_um2 ({self.min_area_um2})"
            )

    # -- stains ----------------------------------------------------------------------------
    def stain_matrix(self, rgb: np.ndarray) -> np.ndarray:
        """The ``(2, 3)`` H and E OD vectors used for ``rgb``."""
        if not isinstance(self.stains, str):
            return np.asarray(self.stains)
        if self.stains == "ruifrok":
            return RUIFROK_STAINS
        if self.stains == "her2st":
            return HER2ST_STAINS
        from stimage.tiles import estimate_stain_matrix

        step = max(1, math.isqrt(rgb.shape[0] * rgb.shape[1] // _FIT_PIXELS))
        try:
            m = estimate_stain_matrix(np.ascontiguousarray(rgb[::step, ::step]), "vahadane")
        except NoTissueError:
            return HER2ST_STAINS
        if (
            _angle(m[0], RUIFROK_STAINS[0]) > _MAX_H_ANGLE_DEG
            or _angle(m[0], m[1]) < _MIN_HE_ANGLE_DEG
        ):
            logger.debug("implausible stain estimate %s; using the HER2ST matrix", m.round(3))
            return HER2ST_STAINS
        return m

    def haematoxylin(self, rgb: np.ndarray) -> np.ndarray:
        """Haematoxylin concentration (OD units of a unit stain vector) of each pixel."""
        from stimage.tiles import stain_concentrations

        od = _OD_LUT[rgb]
        return stain_concentrations(od, self.stain_matrix(rgb))[..., 0]

    # -- segmentation ------------------------------------------------------------------------
    def segment(self, rgb: np.ndarray, mpp: float) -> np.ndarray:
        """Label the nuclei of an RGB image.

        Args:
            rgb: ``(h, w, 3)`` uint8 RGB H&E.
            mpp: µm per pixel of ``rgb``.

        Returns:
            ``(h, w)`` int32 labels, 0 = background, ``1..n`` nuclei.
        """
        import cv2
        from scipy import ndimage as ndi
        from skimage.filters import threshold_otsu
        from skimage.segmentation import relabel_sequential, watershed

        rgb = _check_rgb(rgb)
        if not (np.isfinite(mpp) and mpp > 0):
            raise ConfigError(f"mpp must be a positive number of µm per pixel, got {mpp!r}")
        shape = rgb.shape[:2]
        if min(shape) < 2:
            return np.zeros(shape, np.int32)
        haem = self.haematoxylin(rgb)
        smooth = cv2.GaussianBlur(haem, (0, 0), self.smooth_um / mpp)
        if self.threshold is not None:
            t = float(self.threshold)
        else:
            t = self.min_threshold
            if float(smooth.max()) > float(smooth.min()):
                t = max(self.otsu_factor * float(threshold_otsu(smooth)), self.min_threshold)
        mask = smooth > t
        if not mask.any():
            return np.zeros(shape, np.int32)
        if self.local_fraction > 0:
            local_max = cv2.dilate(smooth, _disk(self.nucleus_radius_um / mpp))
            mask &= smooth >= self.local_fraction * local_max
        r = round(self.opening_um / mpp)
        if r >= 1:
            mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, _disk(r)).astype(bool)
        mask = ndi.binary_fill_holes(mask)
        if not mask.any():
            return np.zeros(shape, np.int32)
        seed_img = cv2.GaussianBlur(haem, (0, 0), self.seed_sigma_um / mpp).astype(np.float32)
        ref = float(np.percentile(seed_img[mask], 95)) or 1.0
        seed_img *= np.float32(self.seed_haematoxylin_um / ref)
        dist = ndi.distance_transform_edt(mask).astype(np.float32) * np.float32(mpp)
        np.minimum(dist, np.float32(self.nucleus_radius_um), out=dist)
        seed_img += cv2.GaussianBlur(dist, (0, 0), self.seed_sigma_um / mpp / 2)
        seed_img[~mask] = 0
        markers = _seeds(seed_img, mask, max(1, round(self.seed_min_distance_um / mpp)))
        labels = watershed(-seed_img, markers, mask=mask)
        area = np.bincount(labels.ravel()) * mpp**2
        drop = (area < self.min_area_um2) | (area > self.max_area_um2)
        drop[0] = True
        labels[drop[labels]] = 0
        logger.debug(
            "classical: threshold %.3f, %d seeds, %d nuclei kept",
            t,
            int(markers.max()),
            int((~drop).sum()),
        )
        return relabel_sequential(labels)[0].astype(np.int32, copy=False)


def _seeds(image: np.ndarray, mask: np.ndarray, min_distance: int) -> np.ndarray:
    """Watershed markers from the local maxima of ``image`` within ``min_distance`` px.

    One marker per plateau of maxima, plus one at the highest point of each foreground
    component that has no maximum of its own (a brighter neighbour within reach hid it).
    """
    import cv2
    from scipy import ndimage as ndi

    size = 2 * min_distance + 1
    local_max = cv2.dilate(image, np.ones((size, size), np.uint8))
    peaks = (image >= local_max) & mask & (image > 0)
    markers, n = ndi.label(peaks, structure=np.ones((3, 3), bool))
    markers = markers.astype(np.int32, copy=False)
    components, n_comp = ndi.label(mask)
    seeded = np.zeros(n_comp + 1, bool)
    seeded[components[peaks]] = True
    seeded[0] = True
    idx = np.flatnonzero(~seeded[components])
    if len(idx):
        comp = components.ravel()[idx]
        order = np.lexsort((image.ravel()[idx], comp))  # by component, then value
        ends = np.r_[np.flatnonzero(np.diff(comp[order])), len(order) - 1]
        top = idx[order[ends]]
        markers.ravel()[top] = np.arange(n + 1, n + 1 + len(top), dtype=np.int32)
    return markers


def _disk(radius_px: float) -> np.ndarray:
    import cv2

    r = max(1, round(radius_px))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def _check_rgb(rgb: Any) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] not in (3, 4):
        raise UnsupportedFormatError(
            f"expected an (h, w, 3) RGB image, got an array of shape {rgb.shape}"
        )
    if rgb.dtype != np.uint8:
        raise UnsupportedFormatError(f"expected a uint8 RGB image, got dtype {rgb.dtype}")
    return np.ascontiguousarray(rgb[..., :3])
