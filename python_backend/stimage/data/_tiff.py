"""Slides read with tifffile: OME-TIFF pyramids, tiled or strip TIFFs, RGB or RGBA.

Regions are read lazily through zarr, so a large strip TIFF is never decoded whole.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from stimage.data._slide_base import Slide, _plausible_mpp, _to_rgb8
from stimage.errors import UnreadableImageError, UnsupportedFormatError

__all__ = ["TiffSlide"]


class TiffSlide(Slide):
    """A TIFF read with tifffile: OME-TIFF pyramids, tiled or strip TIFFs, RGB or RGBA."""

    def __init__(self, path: Path, mpp: float | None = None) -> None:
        import tifffile
        import zarr

        try:
            self._tif = tifffile.TiffFile(str(path))
            series = self._tif.series[0]
            levels = list(series.levels)
        except (tifffile.TiffFileError, OSError, IndexError, ValueError) as e:
            raise UnreadableImageError(
                f"{path}: not a readable TIFF ({e}); check that the file is complete."
            ) from e
        self._axes = series.axes
        if "Y" not in self._axes or "X" not in self._axes:
            self._tif.close()
            raise UnsupportedFormatError(f"{path}: TIFF series has axes {self._axes!r}, no Y/X")
        self._arrays = []
        dims = []
        for i, lvl in enumerate(levels):
            store = series.aszarr(level=i)
            self._arrays.append(zarr.open_array(store, mode="r"))
            shape = dict(zip(lvl.axes, lvl.shape, strict=True))
            dims.append((int(shape["X"]), int(shape["Y"])))
        self.level_dimensions = dims
        self._init_scale(path, _tiff_mpp(self._tif), mpp)

    def _read_level(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        arr = self._arrays[level]
        index: list[Any] = []
        for ax in self._axes:
            if ax == "Y":
                index.append(slice(y, y + h))
            elif ax == "X":
                index.append(slice(x, x + w))
            elif ax in "CS":
                index.append(slice(None))
            else:
                index.append(0)
        data = np.asarray(arr[tuple(index)])
        kept = [ax for ax in self._axes if ax in "YXCS"]
        if len(kept) == 3 and kept.index("Y") != 0:  # channels first -> last
            data = np.moveaxis(data, kept.index("Y"), 0)
            if data.shape[1] != h:
                data = np.moveaxis(data, 1, 2)
        return _to_rgb8(data, self.path)

    def close(self) -> None:
        """Close the TIFF file."""
        self._tif.close()


def _tiff_mpp(tif: Any) -> float | None:
    """µm per pixel from OME metadata or the TIFF resolution tags, if plausible."""
    import tifffile

    if tif.is_ome and tif.ome_metadata:
        try:
            meta = tifffile.xml2dict(tif.ome_metadata)
            pixels = meta["OME"]["Image"]
            pixels = (pixels[0] if isinstance(pixels, list) else pixels)["Pixels"]
            unit = pixels.get("PhysicalSizeXUnit", "µm")
            value = float(pixels["PhysicalSizeX"])
            factor = {"µm": 1.0, "um": 1.0, "nm": 1e-3, "mm": 1e3, "cm": 1e4}.get(unit)
            if factor is not None:
                return _plausible_mpp(value * factor)
        except (KeyError, TypeError, ValueError):
            pass
    page = tif.pages[0]
    desc = page.description or ""
    if "Aperio" in desc and "MPP" in desc:
        for part in desc.split("|"):
            k, _, v = part.partition("=")
            if k.strip() == "MPP":
                try:
                    return _plausible_mpp(float(v))
                except ValueError:
                    break
    tags = page.tags
    if "XResolution" in tags and "ResolutionUnit" in tags:
        num, den = tags["XResolution"].value
        unit = int(tags["ResolutionUnit"].value)
        if num > 0 and den > 0:
            px_per_unit = num / den
            per_unit_um = {2: 25400.0, 3: 10000.0}.get(unit)  # inch, centimetre
            if per_unit_um is not None:
                return _plausible_mpp(per_unit_um / px_per_unit)
    return None
