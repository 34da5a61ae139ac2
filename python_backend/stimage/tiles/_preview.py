"""Pictures of tiling: where the tiles are and what normalisation did to them."""

from __future__ import annotations

import numpy as np

from stimage.tiles._tissue import TissueMask

__all__ = ["contact_sheet", "qc_overview"]

KEPT_RGB = (30, 90, 220)
DROPPED_RGB = (220, 40, 40)
TISSUE_RGB = (40, 200, 90)


def qc_overview(
    thumbnail: np.ndarray, mask: TissueMask, boxes: np.ndarray, kept: np.ndarray
) -> np.ndarray:
    """A thumbnail with the tissue outline and each tile's box (blue kept, red dropped).

    Args:
        thumbnail: RGB uint8 image of the whole slide at the mask's resolution or any other.
        mask: The tissue mask.
        boxes: ``(n, 4)`` level-0 tile boxes.
        kept: Which tiles passed QC.
    """
    import cv2

    img = np.ascontiguousarray(thumbnail.copy())
    h, w = img.shape[:2]
    m = cv2.resize(mask.mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(img, contours, -1, TISSUE_RGB, max(1, w // 400))
    sx = w / (mask.mask.shape[1] * mask.downsample[0])
    sy = h / (mask.mask.shape[0] * mask.downsample[1])
    t = max(1, w // 500)
    for (x, y, bw, bh), k in zip(np.asarray(boxes), np.asarray(kept), strict=True):
        p0 = (round(x * sx), round(y * sy))
        p1 = (round((x + bw) * sx), round((y + bh) * sy))
        cv2.rectangle(img, p0, p1, KEPT_RGB if k else DROPPED_RGB, t)
    return img


def contact_sheet(rows: list[np.ndarray], gap: int = 4) -> np.ndarray:
    """Tiles laid out in rows: each element of ``rows`` is an ``(n, h, w, 3)`` batch."""
    if not rows:
        raise ValueError("no tiles to lay out")
    n = max(len(r) for r in rows)
    h, w = rows[0].shape[1:3]
    out = np.full((len(rows) * (h + gap) - gap, n * (w + gap) - gap, 3), 255, np.uint8)
    for i, r in enumerate(rows):
        for j, t in enumerate(r):
            out[i * (h + gap) : i * (h + gap) + h, j * (w + gap) : j * (w + gap) + w] = t
    return out
