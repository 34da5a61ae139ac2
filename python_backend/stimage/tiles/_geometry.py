"""Where tiles are: boxes in level-0 pixels from physical sizes.

A tile is a square of ``tile_um`` µm. On a slide of ``mpp`` µm per pixel it spans
``tile_um / mpp`` level-0 pixels; it is read from the pyramid and resized to the encoder's
input size. Boxes are ``(x, y, w, h)`` float arrays in level-0 pixels, top-left corner first,
as QuPath's ``ImageRegion`` (but not rounded: rounding happens once, when pixels are read).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stimage.errors import ConfigError, NoTissueError

__all__ = ["TileGrid", "grid_tile_boxes", "spot_tile_boxes", "tile_side_px"]


def tile_side_px(tile_um: float, mpp: float) -> float:
    """Side of a ``tile_um`` tile in level-0 pixels at ``mpp`` µm per pixel."""
    if tile_um <= 0:
        raise ConfigError(f"tile size must be positive µm, got {tile_um}")
    if mpp <= 0:
        raise ConfigError(f"µm per pixel must be positive, got {mpp}")
    return float(tile_um) / float(mpp)


def spot_tile_boxes(centres_xy: np.ndarray, tile_um: float, mpp: float) -> np.ndarray:
    """Boxes of ``tile_um`` squares centred on spots.

    Args:
        centres_xy: ``(n, 2)`` spot centres in level-0 pixels.
        tile_um: Tile side in µm.
        mpp: µm per level-0 pixel.

    Returns:
        ``(n, 4)`` boxes ``(x, y, w, h)``.

    Example:
        >>> spot_tile_boxes(np.array([[1000.0, 500.0]]), tile_um=100, mpp=0.5)
        array([[900., 400., 200., 200.]])
    """
    c = np.asarray(centres_xy, dtype=np.float64).reshape(-1, 2)
    side = tile_side_px(tile_um, mpp)
    return np.c_[c - side / 2.0, np.full(len(c), side), np.full(len(c), side)]


@dataclass(frozen=True)
class TileGrid:
    """Tiles on a regular grid.

    Attributes:
        boxes: ``(n, 4)`` boxes ``(x, y, w, h)`` in level-0 pixels.
        rows: Grid row of each tile.
        cols: Grid column of each tile.
        region_fraction: Fraction of each tile inside the region (1 without a region).
    """

    boxes: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    region_fraction: np.ndarray

    @property
    def centres(self) -> np.ndarray:
        """Tile centres in level-0 pixels."""
        return self.boxes[:, :2] + self.boxes[:, 2:] / 2.0

    def __len__(self) -> int:
        return len(self.boxes)


def grid_tile_boxes(
    width: int,
    height: int,
    tile_um: float,
    mpp: float,
    *,
    region: object | None = None,
    stride_um: float | None = None,
    min_region_fraction: float = 0.5,
) -> TileGrid:
    """Non-overlapping (or strided) tiles over an image or inside a region.

    The grid starts at the region's bounding box (or the image origin), so tiles of a
    region align with its top-left corner, as QuPath's tiler does. A tile is kept when at
    least ``min_region_fraction`` of it lies inside the region and its centre lies inside
    the image.

    Args:
        width: Image width in level-0 pixels.
        height: Image height in level-0 pixels.
        tile_um: Tile side in µm.
        mpp: µm per level-0 pixel.
        region: A shapely geometry in level-0 pixels (e.g. an annotation or the tissue), or
            None for the whole image.
        stride_um: Distance between tile origins; ``tile_um`` (no overlap) by default.
        min_region_fraction: Minimum fraction of a tile inside ``region``.

    Raises:
        NoTissueError: No tile lies inside the region.
    """
    side = tile_side_px(tile_um, mpp)
    step = tile_side_px(stride_um or tile_um, mpp)
    if not 0 < min_region_fraction <= 1:
        raise ConfigError(f"min_region_fraction must be in (0, 1], got {min_region_fraction}")
    if region is not None:
        from shapely.geometry.base import BaseGeometry

        if not isinstance(region, BaseGeometry):
            raise ConfigError(f"region must be a shapely geometry, got {type(region).__name__}")
        if region.is_empty:
            raise NoTissueError("the region is empty; draw or select a region with an area")
        x0, y0, x1, y1 = region.bounds
        x0, y0 = max(x0, 0.0), max(y0, 0.0)
        x1, y1 = min(x1, float(width)), min(y1, float(height))
        if x1 <= x0 or y1 <= y0:
            raise NoTissueError(
                f"the region (bounds {region.bounds}) lies outside the {width} x {height} px image"
            )
    else:
        x0, y0, x1, y1 = 0.0, 0.0, float(width), float(height)
    n_cols = max(1, int(np.ceil((x1 - x0 - side) / step + 1e-9)) + 1) if x1 - x0 > side else 1
    n_rows = max(1, int(np.ceil((y1 - y0 - side) / step + 1e-9)) + 1) if y1 - y0 > side else 1
    cols, rows = np.meshgrid(np.arange(n_cols), np.arange(n_rows))
    cols, rows = cols.ravel(), rows.ravel()
    xs, ys = x0 + cols * step, y0 + rows * step
    boxes = np.c_[xs, ys, np.full(len(xs), side), np.full(len(xs), side)]
    centres = boxes[:, :2] + side / 2.0
    inside_img = (centres[:, 0] < width) & (centres[:, 1] < height)
    boxes, rows, cols = boxes[inside_img], rows[inside_img], cols[inside_img]
    if region is None:
        frac = np.ones(len(boxes))
    else:
        import shapely

        prepared = region
        shapely.prepare(prepared)
        tiles = shapely.box(boxes[:, 0], boxes[:, 1], boxes[:, 0] + side, boxes[:, 1] + side)
        hit = shapely.intersects(prepared, tiles)
        frac = np.zeros(len(boxes))
        if hit.any():
            frac[hit] = shapely.area(shapely.intersection(tiles[hit], region)) / (side * side)
        keep = frac >= min_region_fraction - 1e-9
        boxes, rows, cols, frac = boxes[keep], rows[keep], cols[keep], frac[keep]
        if not len(boxes):
            raise NoTissueError(
                f"no {tile_um:g} µm tile has {min_region_fraction:.0%} of its area inside the region; "
                "the region is smaller than one tile - draw a larger region or use smaller tiles"
            )
    return TileGrid(boxes=boxes, rows=rows, cols=cols, region_fraction=frac)
