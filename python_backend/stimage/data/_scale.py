"""Physical scale from a spot grid.

Spots sit on a regular array with a known pitch (legacy ST: 200 µm between neighbouring
array positions; Visium: 100 µm between neighbouring spots of the hexagonal array). The
pixel distance between array neighbours therefore measures µm per pixel. Single pairs
scatter by 10% or more (spot detection noise), so the median over all neighbour pairs of a
section is used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stimage.constants import Platform
from stimage.errors import UnknownScaleError

__all__ = ["GridScale", "mpp_from_spot_grid"]

#: Array offsets of the neighbours of a spot, per platform, as (row, col) steps.
_NEIGHBOURS = {
    # Legacy ST arrays are square: x and y array coordinates step by 1.
    Platform.LEGACY_ST: [(0, 1), (1, 0)],
    # Visium's hexagonal array: same row two columns on, or next row one column across.
    Platform.VISIUM: [(0, 2), (1, 1), (1, -1)],
}


@dataclass(frozen=True)
class GridScale:
    """µm per pixel measured on a spot grid.

    Attributes:
        mpp: Median µm per pixel over all neighbour pairs.
        pitch_px: Median pixel distance between neighbouring spots.
        n_pairs: Number of neighbour pairs measured.
        spread: Relative interquartile range of the per-pair estimates.
    """

    mpp: float
    pitch_px: float
    n_pairs: int
    spread: float


def mpp_from_spot_grid(
    array_rows: np.ndarray,
    array_cols: np.ndarray,
    pixels_xy: np.ndarray,
    platform: str,
    pitch_um: float | None = None,
    source: str = "spot grid",
) -> GridScale:
    """Derive µm per pixel from spot array positions and their pixel centres.

    Args:
        array_rows: Array row (legacy ST: ``y``) of each spot.
        array_cols: Array column (legacy ST: ``x``) of each spot.
        pixels_xy: ``(n, 2)`` spot centres in full-resolution pixels.
        platform: :attr:`Platform.LEGACY_ST` or :attr:`Platform.VISIUM`.
        pitch_um: Centre-to-centre distance of neighbours; the platform's by default.
        source: Named in error messages (the file the positions came from).

    Raises:
        UnknownScaleError: Fewer than 3 neighbour pairs, or an implausible result.

    Example:
        >>> rows, cols = np.meshgrid(np.arange(4), np.arange(4), indexing="ij")
        >>> xy = np.c_[cols.ravel() * 290.0, rows.ravel() * 290.0]
        >>> round(mpp_from_spot_grid(rows.ravel(), cols.ravel(), xy, "legacy_st").mpp, 3)
        0.69
    """
    if platform not in _NEIGHBOURS:
        raise UnknownScaleError(
            f"{source}: no spot-grid pitch is known for platform {platform!r}; give --mpp."
        )
    pitch = Platform.PITCH_UM[platform] if pitch_um is None else float(pitch_um)
    rows = np.asarray(array_rows).astype(np.int64)
    cols = np.asarray(array_cols).astype(np.int64)
    xy = np.asarray(pixels_xy, dtype=np.float64)
    index = {(int(r), int(c)): i for i, (r, c) in enumerate(zip(rows, cols, strict=True))}
    dists = []
    for i, (r, c) in enumerate(zip(rows, cols, strict=True)):
        for dr, dc in _NEIGHBOURS[platform]:
            j = index.get((int(r + dr), int(c + dc)))
            if j is not None:
                dists.append(float(np.hypot(*(xy[i] - xy[j]))))
    if len(dists) < 3:
        raise UnknownScaleError(
            f"{source}: only {len(dists)} pairs of neighbouring spots; too few to derive the "
            "pixel size from the spot grid. Give it with --mpp."
        )
    d = np.asarray(dists)
    pitch_px = float(np.median(d))
    if pitch_px <= 0:
        raise UnknownScaleError(f"{source}: neighbouring spots share pixel positions; give --mpp.")
    q1, q3 = np.percentile(d, [25, 75])
    return GridScale(
        mpp=pitch / pitch_px,
        pitch_px=pitch_px,
        n_pairs=len(dists),
        spread=float((q3 - q1) / pitch_px),
    )
