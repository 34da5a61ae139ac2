"""An image in memory seen as a slide (pixels a client sent, a crop, a test image)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stimage.data._slide import Slide
from stimage.errors import ConfigError

__all__ = ["ArraySlide"]


class ArraySlide(Slide):
    """An RGB image in memory as a one-level slide of ``mpp`` µm per pixel.

    Args:
        rgb: ``(h, w, 3)`` uint8 pixels (kept by reference, never copied whole).
        mpp: µm per pixel.
        name: Shown in messages in place of a file name.

    Example:
        >>> slide = ArraySlide(np.zeros((64, 64, 3), np.uint8), mpp=0.5)
        >>> slide.dimensions
        (64, 64)
    """

    def __init__(self, rgb: np.ndarray, mpp: float, name: str = "client-image") -> None:
        arr = np.asarray(rgb)
        if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
            raise ConfigError(
                f"an ArraySlide needs (h, w, 3) uint8 pixels, got {arr.dtype} {arr.shape}"
            )
        self._rgb = arr
        self.level_dimensions = [(int(arr.shape[1]), int(arr.shape[0]))]
        super().__init__(Path(name), None, "unknown")
        self.set_mpp(mpp, "user")

    def _read_level(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        return np.array(self._rgb[y : y + h, x : x + w])
