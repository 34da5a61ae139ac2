"""Segment nuclei in one tile or in any region of a slide, by tiles merged without duplicates.

A region of any size is read in tiles of ``tile_px`` pixels at the working resolution.
Each tile is a *core* plus ``overlap_um`` of context on every side; the cores partition the
region, and a nucleus is kept only by the tile whose core holds its centroid (cores are
half-open, so exactly one). A nucleus cut by a tile's edge has its centroid outside that
tile's core as long as the overlap exceeds the nucleus's diameter, so it is kept whole by
the neighbour instead: no duplicates, no halves.

With the classical segmenter's ``stains="auto"``, a region of several tiles gets one stain
matrix, fitted on 16 patches spread over it, rather than one fit per tile: faster, and the
same haematoxylin scale on both sides of every seam.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from stimage.errors import ConfigError
from stimage.explain._classical import ClassicalSegmenter, _check_rgb
from stimage.explain._errors import RegionOutsideImageError, SegmentationCancelledError
from stimage.explain._nuclei import Nuclei, _as_geometry, measure_nuclei

if TYPE_CHECKING:
    from shapely.geometry.base import BaseGeometry

    from stimage.data import Slide

__all__ = [
    "SEGMENTERS",
    "NucleusSegmenter",
    "create_segmenter",
    "is_blank",
    "segment_nuclei",
    "segment_tile",
]

logger = logging.getLogger(__name__)

#: Names accepted by :func:`create_segmenter`.
SEGMENTERS = ("classical", "cellpose")
#: Least core (tile minus both overlaps), in working pixels.
_MIN_CORE_PX = 32
#: Side of the patches a region's stain matrix is fitted on, in working pixels.
_STAIN_PATCH_PX = 256


@runtime_checkable
class NucleusSegmenter(Protocol):
    """A nucleus segmentation backend: anything with a ``name`` and a ``segment`` method."""

    @property
    def name(self) -> str:
        """Short name (``"classical"``, ``"cellpose"``), recorded in results."""
        ...

    def segment(self, rgb: np.ndarray, mpp: float) -> np.ndarray:
        """``(h, w, 3)`` uint8 RGB at ``mpp`` µm/px -> ``(h, w)`` int32 labels (0 = background)."""
        ...


def create_segmenter(name: str = "classical", **options: Any) -> NucleusSegmenter:
    """A nucleus segmenter by name.

    Args:
        name: ``"classical"`` (no weights; :class:`ClassicalSegmenter`) or ``"cellpose"``
            (needs the ``cellpose`` package and local weights; :class:`CellposeSegmenter`).
        **options: Settings of that segmenter.

    Raises:
        ConfigError: Unknown name or option.
        MissingDependencyError: Cellpose is not installed.
        MissingWeightsError: Cellpose weights are not on disk.

    Example:
        >>> create_segmenter("classical", min_area_um2=12).name
        'classical'
    """
    key = str(name).strip().lower()
    if key == "classical":
        factory: Callable[..., NucleusSegmenter] = ClassicalSegmenter
    elif key == "cellpose":
        from stimage.explain._cellpose import CellposeSegmenter

        factory = CellposeSegmenter
    else:
        raise ConfigError(
            f"unknown nucleus segmenter {name!r}; choose one of {', '.join(SEGMENTERS)}"
        )
    try:
        return factory(**options)
    except TypeError as e:
        raise ConfigError(f"bad option for the {key} segmenter: {e}") from e


def _resolve(segmenter: NucleusSegmenter | str) -> NucleusSegmenter:
    if isinstance(segmenter, str):
        return create_segmenter(segmenter)
    if not isinstance(segmenter, NucleusSegmenter):
        raise ConfigError(
            f"segmenter must be a name ({', '.join(SEGMENTERS)}) or an object with .name and "
            f".segment(rgb, mpp); got {type(segmenter).__name__}"
        )
    return segmenter


def _run(segmenter: NucleusSegmenter, rgb: np.ndarray, mpp: float) -> np.ndarray:
    labels = np.asarray(segmenter.segment(rgb, mpp))
    if labels.shape != rgb.shape[:2] or labels.dtype.kind not in "iu":
        raise ConfigError(
            f"segmenter {segmenter.name!r} returned {labels.dtype} labels of shape "
            f"{labels.shape} for an image of {rgb.shape[:2]}; expected integer (h, w) labels"
        )
    return labels


def segment_tile(
    rgb: np.ndarray,
    mpp: float,
    segmenter: NucleusSegmenter | str = "classical",
    origin: tuple[float, float] = (0.0, 0.0),
    downsample: float = 1.0,
) -> Nuclei:
    """Segment the nuclei of one image in memory (a model tile, a crop).

    Args:
        rgb: ``(h, w, 3)`` uint8 RGB.
        mpp: µm per pixel of ``rgb`` (not of the slide it came from).
        segmenter: A segmenter or its name.
        origin: Full-resolution ``(x, y)`` of the image's top-left corner.
        downsample: Full-resolution pixels per image pixel; polygons map to the slide by
            ``x_full = origin_x + x_img * downsample``.

    Returns:
        The nuclei, at ``mpp / downsample`` µm per full-resolution pixel; empty (length 0)
        when there are none.

    Example:
        >>> tile = np.full((224, 224, 3), 235, np.uint8)  # glass
        >>> len(segment_tile(tile, mpp=0.9))
        0
    """
    rgb = _check_rgb(rgb)
    if not (np.isfinite(mpp) and mpp > 0):
        raise ConfigError(f"mpp must be a positive number of µm per pixel, got {mpp!r}")
    if not (np.isfinite(downsample) and downsample > 0):
        raise ConfigError(f"downsample must be positive, got {downsample!r}")
    seg = _resolve(segmenter)
    labels = np.zeros(rgb.shape[:2], np.int32) if is_blank(rgb) else _run(seg, rgb, mpp)
    nuclei = measure_nuclei(labels, rgb, mpp, origin, downsample)
    nuclei.info.update({"segmenter": seg.name, "segment_mpp": float(mpp)})
    return nuclei


def is_blank(rgb: np.ndarray) -> bool:
    """Glass (or white padding) only: fewer pixels darker than faint tissue than a nucleus has."""
    return int(rgb.min()) >= 200 or int(np.count_nonzero(rgb.min(axis=2) < 200)) < 16


def _fix_stains(
    seg: NucleusSegmenter, slide: Slide, bbox: tuple[int, int, int, int], ds: float
) -> NucleusSegmenter:
    """A classical segmenter with ``stains="auto"``, fitted once on patches of the region.

    One stain matrix for every tile of a region is faster than a fit per tile and keeps the
    tiles consistent at their seams. Patches: a 4 x 4 grid of 256 px squares (working
    resolution) over the region; glass is skipped. Without tissue, tiles fit their own.
    """
    import dataclasses

    if not (isinstance(seg, ClassicalSegmenter) and isinstance(seg.stains, str)):
        return seg
    if seg.stains != "auto":
        return seg
    x0, y0, x1, y1 = bbox
    side = _STAIN_PATCH_PX * ds
    patches = []
    for fy in (np.arange(4) + 0.5) / 4:
        for fx in (np.arange(4) + 0.5) / 4:
            cx, cy = x0 + fx * (x1 - x0), y0 + fy * (y1 - y0)
            rgb = slide.read_region(
                cx - side / 2, cy - side / 2, side, side, out_size=(_STAIN_PATCH_PX,) * 2
            )
            if not is_blank(rgb):
                patches.append(rgb)
    if not patches:
        return seg
    matrix = seg.stain_matrix(np.concatenate(patches, axis=0))
    logger.debug("stain matrix of the region: %s", matrix.round(3).tolist())
    return dataclasses.replace(seg, stains=matrix)


def _describe_stains(seg: NucleusSegmenter) -> str | list[list[float]] | None:
    if not isinstance(seg, ClassicalSegmenter):
        return None
    if isinstance(seg.stains, str):
        return seg.stains
    return np.asarray(seg.stains).round(4).tolist()


def _open(slide: Slide | str | os.PathLike[str], mpp: float | None) -> tuple[Slide, bool]:
    if isinstance(slide, str | os.PathLike):
        from stimage.data import open_slide

        return open_slide(Path(slide), mpp=mpp), True
    return slide, False


def segment_nuclei(
    slide: Slide | str | os.PathLike[str],
    region: BaseGeometry | tuple[float, float, float, float] | None = None,
    *,
    segmenter: NucleusSegmenter | str = "classical",
    mpp: float | None = None,
    target_mpp: float = 0.5,
    tile_px: int = 1024,
    overlap_um: float = 20.0,
    progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
) -> Nuclei:
    """Segment the nuclei of a region of a slide (or the whole slide), tile by tile.

    Args:
        slide: An open slide or the path of an image.
        region: A shapely polygon or an ``(x, y, width, height)`` box in full-resolution
            pixels; ``None`` = the whole image. Parts outside the image are ignored.
        segmenter: A segmenter or its name.
        mpp: µm per full-resolution pixel, when the slide does not say (or to override it).
        target_mpp: Resolution to segment at; the slide's own when that is coarser.
        tile_px: Side of a tile in working pixels, overlap included.
        overlap_um: Context on each side of a tile's core; must exceed the largest nucleus
            diameter.
        progress: Called as ``progress(done, total)`` after each tile.
        cancel: When set, stops before the next tile.

    Returns:
        The nuclei whose centroid lies in the region, in full-resolution pixels; empty
        (length 0) when there are none.

    Raises:
        RegionOutsideImageError: The region does not overlap the image.
        UnknownScaleError: The slide's µm per pixel is unknown and ``mpp`` was not given.
        SegmentationCancelledError: ``cancel`` was set.

    Example:
        >>> nuclei = segment_nuclei("section.jpg", (4000, 4000, 2000, 2000), mpp=0.69)  # doctest: +SKIP
        >>> nuclei.features["area_um2"].median()  # doctest: +SKIP
    """
    if not (np.isfinite(target_mpp) and target_mpp > 0):
        raise ConfigError(f"target_mpp must be positive, got {target_mpp!r}")
    if not (np.isfinite(overlap_um) and overlap_um >= 0):
        raise ConfigError(f"overlap_um must be >= 0, got {overlap_um!r}")
    seg = _resolve(segmenter)
    sl, owned = _open(slide, mpp)
    try:
        slide_mpp = float(mpp) if mpp is not None else sl.mpp
        if not (np.isfinite(slide_mpp) and slide_mpp > 0):
            raise ConfigError(f"mpp must be a positive number of µm per pixel, got {mpp!r}")
        return _segment_slide(
            sl, slide_mpp, region, seg, target_mpp, int(tile_px), overlap_um, progress, cancel
        )
    finally:
        if owned:
            sl.close()


def _region_box(
    region: BaseGeometry | tuple[float, float, float, float] | None, width: int, height: int
) -> tuple[BaseGeometry | None, tuple[int, int, int, int]]:
    """The region's geometry (None for a plain box) and its integer bounds clipped to the image."""
    if region is None:
        return None, (0, 0, width, height)
    geom = _as_geometry(region)
    if geom.is_empty or geom.area <= 0:
        raise ConfigError(f"the region to segment is empty: {geom.wkt[:80]}")
    gx0, gy0, gx1, gy1 = geom.bounds
    x0, y0 = max(0, math.floor(gx0)), max(0, math.floor(gy0))
    x1, y1 = min(width, math.ceil(gx1)), min(height, math.ceil(gy1))
    if x1 <= x0 or y1 <= y0:
        raise RegionOutsideImageError(
            f"the region (x from {gx0:g} to {gx1:g}, y from {gy0:g} to {gy1:g}) lies outside the image "
            f"({width} x {height} px); give it in full-resolution pixel coordinates of this image"
        )
    is_box = not isinstance(region, tuple) and geom.equals(geom.envelope)
    return (None if isinstance(region, tuple) or is_box else geom), (x0, y0, x1, y1)


def _segment_slide(
    slide: Slide,
    slide_mpp: float,
    region: BaseGeometry | tuple[float, float, float, float] | None,
    seg: NucleusSegmenter,
    target_mpp: float,
    tile_px: int,
    overlap_um: float,
    progress: Callable[[int, int], None] | None,
    cancel: threading.Event | None,
) -> Nuclei:
    import shapely
    from shapely.geometry import box
    from skimage.segmentation import relabel_sequential

    width, height = slide.dimensions
    geom, (x0, y0, x1, y1) = _region_box(region, width, height)
    work_mpp = max(float(target_mpp), slide_mpp)
    ds = work_mpp / slide_mpp
    overlap_px = math.ceil(overlap_um / work_mpp)
    core_px = tile_px - 2 * overlap_px
    if core_px < _MIN_CORE_PX:
        raise ConfigError(
            f"tile_px {tile_px} leaves a core of {core_px} px after {overlap_um} µm of overlap "
            f"on each side at {work_mpp:.3g} µm/px; use tile_px >= {2 * overlap_px + 256}"
        )
    core_full = core_px * ds
    nx = max(1, math.ceil((x1 - x0) / core_full))
    ny = max(1, math.ceil((y1 - y0) / core_full))
    prepared = None
    if geom is not None:
        prepared = geom
        shapely.prepare(prepared)
    cores = []
    for j in range(ny):
        for i in range(nx):
            cx0, cy0 = x0 + i * core_full, y0 + j * core_full
            cx1, cy1 = min(cx0 + core_full, x1), min(cy0 + core_full, y1)
            if prepared is not None and not prepared.intersects(box(cx0, cy0, cx1, cy1)):
                continue
            cores.append((cx0, cy0, cx1, cy1))
    total = len(cores)
    if total > 1:
        seg = _fix_stains(seg, slide, (x0, y0, x1, y1), ds)
    parts: list[Nuclei] = []
    n_blank = 0
    for k, (cx0, cy0, cx1, cy1) in enumerate(cores):
        if cancel is not None and cancel.is_set():
            raise SegmentationCancelledError(
                f"nucleus segmentation cancelled after {k} of {total} tiles"
            )
        out_w = math.ceil((cx1 - cx0) / ds - 1e-9) + 2 * overlap_px
        out_h = math.ceil((cy1 - cy0) / ds - 1e-9) + 2 * overlap_px
        rx, ry = cx0 - overlap_px * ds, cy0 - overlap_px * ds
        rgb = slide.read_region(rx, ry, out_w * ds, out_h * ds, out_size=(out_w, out_h))
        if is_blank(rgb):
            n_blank += 1
        else:
            labels = _run(seg, rgb, work_mpp)
            n = int(labels.max(initial=0))
            if n:
                labels = relabel_sequential(np.where(labels > 0, labels, 0).astype(np.int32))[0]
                n = int(labels.max())
                ys, xs = np.indices(labels.shape, dtype=np.float64)
                flat = labels.ravel()
                cnt = np.bincount(flat, minlength=n + 1)
                mx = np.bincount(flat, weights=xs.ravel(), minlength=n + 1) / np.maximum(cnt, 1)
                my = np.bincount(flat, weights=ys.ravel(), minlength=n + 1) / np.maximum(cnt, 1)
                fx, fy = rx + (mx + 0.5) * ds, ry + (my + 0.5) * ds
                keep = (fx >= cx0) & (fx < cx1) & (fy >= cy0) & (fy < cy1)
                if prepared is not None:
                    keep &= shapely.contains_xy(prepared, fx, fy)
                keep[0] = False
                if keep.any():
                    labels = np.where(keep[labels], labels, 0)
                    parts.append(measure_nuclei(labels, rgb, work_mpp, (rx, ry), ds))
        if progress is not None:
            progress(k + 1, total)
    result = Nuclei.concat(parts) if parts else Nuclei.empty(slide_mpp)
    result.mpp = slide_mpp
    result.info = {
        "segmenter": seg.name,
        "stains": _describe_stains(seg),
        "segment_mpp": work_mpp,
        "region": [x0, y0, x1 - x0, y1 - y0],
        "tiles": total,
        "blank_tiles": n_blank,
        "overlap_um": float(overlap_um),
    }
    if not len(result):
        logger.info("no nuclei found in region %s (%d tiles)", result.info["region"], total)
    return result
