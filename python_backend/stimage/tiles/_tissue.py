"""Tissue detection on a thumbnail and per-tile tissue coverage.

Glass is the brightest, flattest colour of a slide, but often not white: scanners and
mounting media tint it (the HER2ST images have a lavender-pink background with a pink glow
around the tissue). The mask therefore measures optical density relative to the estimated
background colour, not saturation or brightness against white: a pixel is tissue when the
summed optical density of its three channels over the background exceeds a threshold (0.3
by default; pale stroma is about 0.4, background glow under 0.2). The raw mask is then
closed, its holes filled, specks removed, all with sizes in µm, so the result does not depend
on the scan resolution. Coverage of a tile is the tissue fraction of its footprint on the
mask, computed from an integral image (constant time per tile).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from stimage.errors import NoTissueError

if TYPE_CHECKING:
    from shapely.geometry.base import BaseGeometry

    from stimage.data import Slide

__all__ = [
    "TissueMask",
    "TissueParams",
    "detect_tissue",
    "estimate_background",
    "tissue_mask_from_image",
]


@dataclass(frozen=True)
class TissueParams:
    """Settings of tissue detection.

    Attributes:
        mpp: Resolution of the thumbnail the mask is computed on, µm per pixel.
        min_od: Summed optical density over the background above which a pixel is tissue.
        background: Glass colour as RGB, or None to estimate it (median of the brightest 10%
            of pixels; white when those are darker than a plausible glass).
        close_um: Gaps narrower than this are closed.
        min_area_um2: Tissue pieces smaller than this are dropped.
        max_hole_um2: Holes smaller than this are filled (lumina larger than it stay open).
    """

    mpp: float = 8.0
    min_od: float = 0.3
    background: tuple[int, int, int] | None = None
    close_um: float = 60.0
    min_area_um2: float = 50_000.0
    max_hole_um2: float = 250_000.0

    def __post_init__(self) -> None:
        if self.mpp <= 0:
            raise ValueError(f"tissue mask mpp must be positive, got {self.mpp}")
        if self.min_od <= 0:
            raise ValueError(f"tissue min_od must be positive, got {self.min_od}")


@dataclass
class TissueMask:
    """A boolean tissue mask over a whole slide.

    Attributes:
        mask: ``(h, w)`` bool array, True on tissue.
        downsample: Level-0 pixels per mask pixel, ``(x, y)``.
        mpp: µm per mask pixel.
    """

    mask: np.ndarray
    downsample: tuple[float, float]
    mpp: float

    def __post_init__(self) -> None:
        self._integral: np.ndarray | None = None

    @property
    def fraction(self) -> float:
        """Fraction of the slide covered by tissue."""
        return float(self.mask.mean()) if self.mask.size else 0.0

    @property
    def area_mm2(self) -> float:
        """Tissue area in mm²."""
        return float(self.mask.sum()) * (self.mpp / 1000.0) ** 2

    def coverage(self, boxes: np.ndarray) -> np.ndarray:
        """Tissue fraction of each level-0 box ``(x, y, w, h)``; area outside the slide counts as none.

        Boxes are mapped to mask pixels with fractional edges, so coverage is accurate even
        for tiles a few mask pixels wide.
        """
        import cv2

        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if self._integral is None:
            self._integral = cv2.integral(self.mask.astype(np.uint8)).astype(np.float64)
        integ = self._integral
        h, w = self.mask.shape
        dx, dy = self.downsample
        x0, y0 = b[:, 0] / dx, b[:, 1] / dy
        x1, y1 = (b[:, 0] + b[:, 2]) / dx, (b[:, 1] + b[:, 3]) / dy
        area = np.maximum((x1 - x0) * (y1 - y0), 1e-12)
        return np.clip(_box_sum(integ, x0, y0, x1, y1, w, h) / area, 0.0, 1.0)

    def contains(self, points_xy: np.ndarray) -> np.ndarray:
        """Whether each level-0 point lies on tissue."""
        p = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
        h, w = self.mask.shape
        ix = np.floor(p[:, 0] / self.downsample[0]).astype(int)
        iy = np.floor(p[:, 1] / self.downsample[1]).astype(int)
        inside = (ix >= 0) & (iy >= 0) & (ix < w) & (iy < h)
        out = np.zeros(len(p), dtype=bool)
        out[inside] = self.mask[iy[inside], ix[inside]]
        return out

    def geometry(self, simplify_um: float | None = None) -> BaseGeometry:
        """The tissue as a shapely (Multi)Polygon in level-0 pixels, holes included."""
        import cv2
        from shapely.geometry import MultiPolygon, Polygon
        from shapely.ops import unary_union

        contours, hierarchy = cv2.findContours(
            self.mask.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE
        )
        polys = []
        if hierarchy is not None:
            hier = hierarchy[0]
            scale = np.array(self.downsample)
            for i, c in enumerate(contours):
                if hier[i][3] != -1 or len(c) < 3:
                    continue
                shell = c[:, 0, :].astype(float) * scale
                holes = []
                j = hier[i][2]
                while j != -1:
                    if len(contours[j]) >= 3:
                        holes.append(contours[j][:, 0, :].astype(float) * scale)
                    j = hier[j][0]
                p = Polygon(shell, holes).buffer(0)
                if not p.is_empty:
                    polys.append(p)
        geom = unary_union(polys) if polys else MultiPolygon()
        if simplify_um:
            geom = geom.simplify(simplify_um / self.mpp * float(np.mean(self.downsample)))
        return geom


def _box_sum(integ: np.ndarray, x0, y0, x1, y1, w: int, h: int) -> np.ndarray:
    """Sum of a 0/1 image over fractional boxes, via bilinear lookups in its integral image."""

    def at(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        x = np.clip(x, 0, w)
        y = np.clip(y, 0, h)
        xi, yi = (
            np.minimum(np.floor(x).astype(int), w - 1),
            np.minimum(np.floor(y).astype(int), h - 1),
        )
        fx, fy = x - xi, y - yi
        a = integ[yi, xi]
        b = integ[yi, xi + 1]
        c = integ[yi + 1, xi]
        d = integ[yi + 1, xi + 1]
        return a * (1 - fx) * (1 - fy) + b * fx * (1 - fy) + c * (1 - fx) * fy + d * fx * fy

    return at(x1, y1) - at(x0, y1) - at(x1, y0) + at(x0, y0)


def estimate_background(rgb: np.ndarray) -> np.ndarray:
    """Glass colour of an RGB thumbnail: median of its brightest 10% of pixels.

    When even those are dark (an image that is all tissue), white is assumed.
    """
    lum = rgb.astype(np.float32).mean(axis=2)
    bright = lum >= np.percentile(lum, 90)
    bg = np.median(rgb[bright].astype(np.float32), axis=0)
    if bg.mean() < 200.0:
        return np.array([245.0, 245.0, 245.0], dtype=np.float32)
    return bg


def tissue_mask_from_image(
    rgb: np.ndarray, mpp: float, params: TissueParams | None = None
) -> np.ndarray:
    """Tissue mask of an RGB uint8 image at ``mpp`` µm per pixel."""
    import cv2
    from scipy import ndimage

    p = params or TissueParams()
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an (h, w, 3) uint8 RGB image, got {rgb.shape} {rgb.dtype}")
    bg = np.asarray(p.background, np.float32) if p.background else estimate_background(rgb)
    od = -np.log(np.maximum(rgb.astype(np.float32), 1.0) / np.maximum(bg, 1.0))
    od_sum = np.maximum(od, 0.0).sum(axis=2)
    od_sum = cv2.GaussianBlur(od_sum, (0, 0), sigmaX=max(0.5, 8.0 / mpp))
    mask = od_sum > p.min_od
    k = max(1, round(p.close_um / mpp))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    if k > 1:
        mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_CLOSE, kernel).astype(bool)
    px_area = mpp * mpp
    holes, n_holes = ndimage.label(~mask)
    if n_holes:
        sizes = np.bincount(holes.ravel(), minlength=n_holes + 1) * px_area
        border = np.unique(np.concatenate([holes[0], holes[-1], holes[:, 0], holes[:, -1]]))
        fill = sizes < p.max_hole_um2
        fill[0] = False
        fill[border] = False
        mask[fill[holes]] = True
    if k > 1:
        mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, kernel).astype(bool)
    pieces, n = ndimage.label(mask)
    if n:
        sizes = np.bincount(pieces.ravel(), minlength=n + 1) * px_area
        small = sizes < p.min_area_um2
        small[0] = False
        mask[small[pieces]] = False
    return mask


def detect_tissue(
    slide: Slide, params: TissueParams | None = None, *, require: bool = True
) -> TissueMask:
    """Detect tissue on a thumbnail of a slide.

    Args:
        slide: A slide with a known scale.
        params: Detection settings; by default :class:`TissueParams`, with the smallest
            tissue piece kept no larger than a quarter of the image (an image of a tile or two,
            a crop a client sent, is tissue, not a speck to drop).
        require: Raise :class:`NoTissueError` when no tissue is found.

    Raises:
        NoTissueError: Nothing on the slide looks like stained tissue.
    """
    p = params or TissueParams()
    if params is None:
        w_um, h_um = (v * slide.mpp for v in slide.dimensions)
        p = replace(p, min_area_um2=min(p.min_area_um2, w_um * h_um / 4.0))
    mpp = max(p.mpp, slide.mpp)
    thumb = slide.thumbnail(mpp=mpp)
    w0, h0 = slide.dimensions
    h, w = thumb.shape[:2]
    mask = tissue_mask_from_image(thumb, mpp, p)
    tm = TissueMask(mask=mask, downsample=(w0 / w, h0 / h), mpp=mpp)
    if require and not mask.any():
        raise NoTissueError(
            f"{slide.path}: no tissue found on a {w}x{h} px thumbnail (optical density threshold "
            f"{p.min_od}); check that this is a stained brightfield image, or lower the "
            "threshold for faint staining (`stimage prepare --tissue-min-od`, or "
            "TissueParams.min_od)"
        )
    return tm
