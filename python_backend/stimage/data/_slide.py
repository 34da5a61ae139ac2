"""Slides: whole-slide images and large plain images behind one small interface.

Three backends share :class:`Slide` (:mod:`._slide_base`):

* :class:`OpenSlideSlide` (:mod:`._openslide`) for what OpenSlide reads (svs, ndpi, mrxs,
  scn, vms, bif, tiled pyramidal TIFF),
* :class:`TiffSlide` (:mod:`._tiff`) for other TIFF files (OME-TIFF pyramids, strip TIFFs)
  through tifffile, reading regions lazily through zarr,
* :class:`RasterSlide` (:mod:`._raster`) for JPEG, PNG and other plain images, decoded once
  into a memory-mapped cache so that a tile read never decodes the whole image again.

:func:`open_slide` picks the backend for a file. All coordinates are level-0
(full-resolution) pixels, ``(x, y)`` order, as in QuPath.
"""

from __future__ import annotations

import os
from pathlib import Path

from stimage.data._openslide import OpenSlideSlide
from stimage.data._raster import (
    MAX_CACHE_BYTES,
    MAX_RASTER_PIXELS,
    RasterSlide,
    cache_dir,
    max_raster_pixels,
    prune_cache,
)
from stimage.data._slide_base import MPP_RANGE, Slide
from stimage.data._tiff import TiffSlide
from stimage.errors import (
    InputFileNotFoundError,
    UnreadableImageError,
    UnsupportedFormatError,
)

# The decoded-image cache and the scale range are re-exported for callers of this module.
__all__ = [
    "MAX_CACHE_BYTES",
    "MAX_RASTER_PIXELS",
    "MPP_RANGE",
    "OpenSlideSlide",
    "RasterSlide",
    "Slide",
    "TiffSlide",
    "cache_dir",
    "max_raster_pixels",
    "open_slide",
    "prune_cache",
]

_RASTER_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
_TIFF_SUFFIXES = {".tif", ".tiff", ".btf"}


def open_slide(path: str | os.PathLike[str], mpp: float | None = None) -> Slide:
    """Open an image as a :class:`Slide`, choosing the backend from the file.

    Args:
        path: A whole-slide image, TIFF, JPEG or PNG.
        mpp: µm per pixel, overriding the metadata (needed when the file has none).

    Raises:
        InputFileNotFoundError: The file does not exist.
        UnreadableImageError: The file cannot be decoded.
        UnsupportedFormatError: No backend reads this kind of file.

    Example:
        >>> with open_slide("section.svs") as slide:  # doctest: +SKIP
        ...     tile = slide.read_um(cx=5000, cy=4000, size_um=100, out_px=224)
    """
    p = Path(path)
    if not p.exists():
        raise InputFileNotFoundError(f"{p}: no such image file; check the path.")
    if p.is_dir() and p.suffix.lower() != ".mrxs":
        raise UnsupportedFormatError(f"{p}: is a folder; give the image file inside it.")
    if not p.is_file() and not p.is_dir():
        # A FIFO, socket or device would block (or never end) when read.
        raise UnsupportedFormatError(
            f"{p}: is not a regular file (a pipe, socket or device); give an image file."
        )
    suffix = p.suffix.lower()
    if suffix in _RASTER_SUFFIXES:
        return RasterSlide(p, mpp)
    import openslide

    try:
        fmt = openslide.OpenSlide.detect_format(str(p))
    except openslide.OpenSlideError:
        fmt = None
    is_ome = p.name.lower().endswith((".ome.tif", ".ome.tiff"))
    if fmt is not None and not (fmt == "generic-tiff" and is_ome):
        try:
            return OpenSlideSlide(p, mpp)
        except UnreadableImageError:
            if p.suffix.lower() not in _TIFF_SUFFIXES:
                raise
    if suffix in _TIFF_SUFFIXES:
        return TiffSlide(p, mpp)
    # Unknown suffix: try Pillow last.
    try:
        return RasterSlide(p, mpp)
    except UnreadableImageError as e:
        raise UnsupportedFormatError(
            f"{p}: unknown image format; supported are OpenSlide formats (svs, ndpi, mrxs, "
            "scn, tiled TIFF), TIFF/OME-TIFF, JPEG and PNG."
        ) from e
