"""Colour deconvolution of H&E into haematoxylin, eosin and DAB (Ruifrok & Johnston).

The same numbers as :func:`skimage.color.rgb2hed` (stain concentrations in its units, about
0 on glass and 0.05-0.3 in nuclei), computed through a 256-entry table per channel in
float32, several times faster than the float64 original on large tiles.
"""

from __future__ import annotations

import numpy as np
from skimage.color import hed_from_rgb

__all__ = ["rgb_to_hed"]

# skimage: rgb = max(img_as_float(rgb), 1e-6); stains = (log(rgb) / log(1e-6)) @ hed_from_rgb
_LOG_ADJUST = np.log(1e-6)
_LUT = (np.log(np.maximum(np.arange(256) / 255.0, 1e-6)) / _LOG_ADJUST).astype(np.float32)
_MATRIX = hed_from_rgb.astype(np.float32)


def rgb_to_hed(rgb: np.ndarray) -> np.ndarray:
    """Haematoxylin, eosin and DAB concentrations of an RGB image.

    Args:
        rgb: ``(h, w, 3)`` uint8 RGB.

    Returns:
        ``(h, w, 3)`` float32, channels H, E, D, clipped at 0 (as ``skimage.color.rgb2hed``).

    Example:
        >>> rgb_to_hed(np.full((1, 1, 3), 255, np.uint8)).max()
        np.float32(0.0)
    """
    od = _LUT[rgb]
    out = od.reshape(-1, 3) @ _MATRIX
    np.maximum(out, 0.0, out=out)
    return out.reshape((*rgb.shape[:2], 3))
