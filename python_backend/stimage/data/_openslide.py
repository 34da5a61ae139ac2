"""Slides read by OpenSlide: svs, ndpi, mrxs, scn, vms, bif and tiled pyramidal TIFF."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from stimage.data._slide_base import Slide, _plausible_mpp
from stimage.errors import UnreadableImageError

__all__ = ["OpenSlideSlide"]


class OpenSlideSlide(Slide):
    """A slide read by OpenSlide (svs, ndpi, mrxs, scn, tiled pyramidal TIFF, ...)."""

    def __init__(self, path: Path, mpp: float | None = None) -> None:
        import openslide

        try:
            self._osr = openslide.OpenSlide(str(path))
        except openslide.OpenSlideError as e:
            raise UnreadableImageError(
                f"{path}: OpenSlide cannot read this slide ({e}); check that the file is complete."
            ) from e
        props = self._osr.properties
        self.level_dimensions = [(int(w), int(h)) for w, h in self._osr.level_dimensions]
        self.vendor = props.get(openslide.PROPERTY_NAME_VENDOR)
        self._init_scale(path, _openslide_mpp(props), mpp)
        bg = props.get(openslide.PROPERTY_NAME_BACKGROUND_COLOR)
        self._background = (
            tuple(int(bg[i : i + 2], 16) for i in (0, 2, 4)) if bg else (255, 255, 255)
        )

    def _read_level(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        ds = self._osr.level_downsamples[level]
        img = self._osr.read_region((round(x * ds), round(y * ds)), level, (w, h))
        rgba = np.asarray(img)
        rgb = rgba[..., :3].astype(np.float32)
        alpha = rgba[..., 3:4].astype(np.float32) / 255.0
        bg = np.asarray(self._background, dtype=np.float32)
        return np.clip(rgb * alpha + bg * (1 - alpha) + 0.5, 0, 255).astype(np.uint8)

    def close(self) -> None:
        """Close the OpenSlide handle."""
        self._osr.close()


def _openslide_mpp(props: Any) -> float | None:
    """µm per pixel from OpenSlide's ``mpp-x``/``mpp-y`` properties (their mean), if plausible."""
    import openslide

    try:
        mx = props.get(openslide.PROPERTY_NAME_MPP_X)
        my = props.get(openslide.PROPERTY_NAME_MPP_Y)
        if mx is None:
            return None
        vals = [float(mx)] + ([float(my)] if my is not None else [])
    except ValueError:
        return None
    return _plausible_mpp(float(np.mean(vals)))
