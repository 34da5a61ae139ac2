"""Where tiles are: boxes in level-0 pixels from physical sizes.

A tile is a square of ``tile_um`` µm. On a slide of ``mpp`` µm per pixel it spans
``tile_um / mpp`` level-0 pixels; it is read from the pyramid and resized to the encoder's
input size. Boxes are ``(x, y, w, h)`` float arrays in level-0 pixels, top-left corner first,
as QuPath's ``ImageRegion`` (but not rounded: rounding happens once, when pixels are read).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from stimage.errors import ConfigError, NoTissueError

if TYPE_CHECKING:
    from shapely.geometry.base import BaseGeometry

__all__ = ["TileGrid", "grid_margin", "grid_tile_boxes", "spot_tile_boxes", "tile_side_px"]


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
        region_fraction: Fraction of each tile's area inside the region (1 without a
            region).
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
    min_region_fraction: float | None = None,
) -> TileGrid:
    """Non-overlapping (or strided) tiles over an image or inside a region.

    The grid starts at the region's bounding box, clipped to the image (or at the image
    origin), so tiles of a region align with its top-left corner, as QuPath's tiler does.
    One rule decides which grid tiles are kept, for every caller (slide prediction, the
    server, QuPath project batches):

    * a tile lies on the image: ``0 <= x``, ``0 <= y``, ``x + w <= width`` and
      ``y + h <= height``, up to one pixel (a 200 µm tile is 290.3 px at 0.689 µm/px, and a
      290 px crop of one tile is that tile), so no tile runs past the image edge (a strip
      narrower than a tile at the right or bottom edge gets no tile);
    * with a region, a tile belongs to it when its centre lies inside the region (a centre
      on the region's boundary does not count), so every tile falls inside its region
      when QuPath resolves the hierarchy, however little or much of it the region covers.

    Args:
        width: Image width in level-0 pixels.
        height: Image height in level-0 pixels.
        tile_um: Tile side in µm.
        mpp: µm per level-0 pixel.
        region: A shapely geometry in level-0 pixels (e.g. an annotation or the tissue), or
            None for the whole image.
        stride_um: Distance between tile origins; ``tile_um`` (no overlap) by default.
        min_region_fraction: Optionally, also drop tiles with less than this fraction of
            their area inside ``region``; the centre rule alone by default.

    Raises:
        NoTissueError: No tile lies on the image with its centre inside the region.

    Example:
        >>> g = grid_tile_boxes(1000, 500, tile_um=100, mpp=0.5)  # 200 px tiles
        >>> len(g), g.boxes[-1].tolist()  # 5 x 2 tiles; a third row would cross y = 500
        (10, [800.0, 200.0, 200.0, 200.0])
    """
    side = tile_side_px(tile_um, mpp)
    step = tile_side_px(stride_um or tile_um, mpp)
    if min_region_fraction is not None and not 0 < min_region_fraction <= 1:
        raise ConfigError(f"min_region_fraction must be in (0, 1], got {min_region_fraction}")
    geom = _checked_region(region, width, height)
    x0, y0, x1, y1 = (0.0, 0.0, float(width), float(height)) if geom is None else geom.bounds
    x0, y0, x1, y1 = max(x0, 0.0), max(y0, 0.0), min(x1, float(width)), min(y1, float(height))
    col_grid, row_grid = np.meshgrid(
        _grid_steps(x1 - x0, side, step), _grid_steps(y1 - y0, side, step)
    )
    cols, rows = col_grid.ravel(), row_grid.ravel()
    xs, ys = x0 + cols * step, y0 + rows * step
    keep = _on_image(xs, ys, side, width, height)
    if geom is not None:
        import shapely

        shapely.prepare(geom)
        keep &= shapely.contains_xy(geom, xs + side / 2.0, ys + side / 2.0)
    boxes = np.c_[xs, ys, np.full(len(xs), side), np.full(len(xs), side)][keep]
    rows, cols = rows[keep], cols[keep]
    frac = np.ones(len(boxes)) if geom is None else _area_inside(geom, boxes)
    if min_region_fraction is not None and geom is not None:
        enough = frac >= min_region_fraction - 1e-9
        boxes, rows, cols, frac = boxes[enough], rows[enough], cols[enough], frac[enough]
    if not len(boxes):
        raise NoTissueError(_no_tile_message(geom, width, height, tile_um, side))
    return TileGrid(boxes=boxes, rows=rows, cols=cols, region_fraction=frac)


#: Slack in pixels when testing that a tile lies on the image: less than a pixel over the edge
#: (read as white) is a rounding of the tile size, not a tile running off the image.
_EDGE_TOL = 1.0


def grid_margin(
    boxes: np.ndarray, tile_um: float, mpp: float, reach_um: float, width: int, height: int
) -> np.ndarray:
    """The cells of the boxes' grid around them whose centres lie within ``reach_um`` of one.

    The spatial context of a region's tiles (or of one tile) reaches past it: these are the
    tiles read for that context and never predicted, the margin of ``predict-slide
    --region``, of the server reading a slide and of the clients. ``boxes`` are tiles of one
    grid (origins whole tiles apart, e.g. a region's or one explained tile); a margin cell
    lies wholly on the image (up to one pixel, as :func:`grid_tile_boxes`). Distances are
    between centres, a centre on the reach included. Which cells hold tissue is for the
    caller (``TissueMask.coverage``).

    Example:
        >>> # a 50 µm tile at 0.5 µm/px in a 300 px image's corner, context 75 µm: 3 neighbours
        >>> grid_margin(np.array([[0.0, 0.0, 100, 100]]), 50, 0.5, 75, 300, 300).tolist()
        [[100.0, 0.0, 100.0, 100.0], [0.0, 100.0, 100.0, 100.0], [100.0, 100.0, 100.0, 100.0]]
    """
    side = tile_side_px(tile_um, mpp)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    if not len(boxes) or not reach_um > 0:
        return np.zeros((0, 4))
    m = int(np.ceil(reach_um / tile_um))
    origin = boxes[0, :2]
    cr = np.rint((boxes[:, :2] - origin) / side).astype(np.int64)
    have = set(zip(cr[:, 1].tolist(), cr[:, 0].tolist(), strict=True))
    near = [
        (dr, dc)
        for dr in range(-m, m + 1)
        for dc in range(-m, m + 1)
        if (dr, dc) != (0, 0) and np.hypot(dr, dc) * tile_um <= reach_um * (1 + 1e-9)
    ]
    cells = {(r + dr, c + dc) for r, c in have for dr, dc in near} - have
    if not cells:
        return np.zeros((0, 4))
    rc = np.array(sorted(cells), np.float64)
    xy = origin + rc[:, ::-1] * side
    on = (
        (xy[:, 0] >= -1)
        & (xy[:, 1] >= -1)
        & (xy[:, 0] + side <= width + 1)
        & (xy[:, 1] + side <= height + 1)
    )
    return np.column_stack([xy, np.full((len(xy), 2), side)])[on]


def _checked_region(region: object | None, width: int, height: int) -> BaseGeometry | None:
    """The region as a non-empty shapely geometry that overlaps the image, or None."""
    if region is None:
        return None
    from shapely.geometry.base import BaseGeometry

    if not isinstance(region, BaseGeometry):
        raise ConfigError(f"region must be a shapely geometry, got {type(region).__name__}")
    if region.is_empty:
        raise NoTissueError("the region is empty; draw or select a region with an area")
    x0, y0, x1, y1 = region.bounds
    if min(x1, float(width)) <= max(x0, 0.0) or min(y1, float(height)) <= max(y0, 0.0):
        raise NoTissueError(
            f"the region (bounds {region.bounds}) lies outside the {width} x {height} px image"
        )
    return region


def _grid_steps(extent: float, side: float, step: float) -> np.ndarray:
    """Indices of the grid tiles needed to cover ``extent`` pixels from the grid origin."""
    n = int(np.ceil((extent - side) / step + 1e-9)) + 1 if extent > side else 1
    return np.arange(n)


def _on_image(xs: np.ndarray, ys: np.ndarray, side: float, width: int, height: int) -> np.ndarray:
    """Whether each ``side`` tile at ``(xs, ys)`` lies wholly on the image."""
    return (
        (xs >= -_EDGE_TOL)
        & (ys >= -_EDGE_TOL)
        & (xs + side <= width + _EDGE_TOL)
        & (ys + side <= height + _EDGE_TOL)
    )


def _area_inside(region: BaseGeometry, boxes: np.ndarray) -> np.ndarray:
    """Fraction of each box's area inside ``region``."""
    import shapely

    if not len(boxes):
        return np.zeros(0)
    x, y, w, h = boxes.T
    tiles = shapely.box(x, y, x + w, y + h)
    return np.asarray(shapely.area(shapely.intersection(tiles, region)) / (w * h), dtype=float)


def _no_tile_message(
    region: BaseGeometry | None, width: int, height: int, tile_um: float, side: float
) -> str:
    if region is None:
        return (
            f"the {width} x {height} px image is smaller than one {tile_um:g} µm tile "
            f"({side:.0f} px); use smaller tiles"
        )
    return (
        f"no {tile_um:g} µm tile ({side:.0f} px) lies on the {width} x {height} px image with its "
        f"centre inside the region (bounds {tuple(round(v) for v in region.bounds)}); the region "
        "is smaller than one tile or too close to the image edge - draw a larger region or use "
        "smaller tiles"
    )
