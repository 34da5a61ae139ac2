from __future__ import annotations

import numpy as np
import pytest
import shapely
from shapely.geometry import Polygon, box

from stimage.errors import ConfigError, NoTissueError
from stimage.tiles import TileGrid, grid_tile_boxes, spot_tile_boxes, tile_side_px


def test_spot_tiles_are_physical() -> None:
    b = spot_tile_boxes(np.array([[1000.0, 500.0], [0.0, 0.0]]), tile_um=100, mpp=0.25)
    np.testing.assert_allclose(b, [[800, 300, 400, 400], [-200, -200, 400, 400]])
    assert tile_side_px(55, 0.5) == 110
    with pytest.raises(ConfigError):
        tile_side_px(0, 0.5)


def test_grid_over_the_image_covers_it_without_overlap() -> None:
    g = grid_tile_boxes(1000, 600, tile_um=100, mpp=0.5)  # 200 px tiles
    assert len(g) == 5 * 3
    assert g.boxes[:, 2].max() == 200
    np.testing.assert_array_equal(np.unique(g.boxes[:, 0]), [0, 200, 400, 600, 800])
    assert (g.region_fraction == 1).all()


def _on_image(g: TileGrid, width: float, height: float, tol: float = 1.0) -> bool:
    """Whether every tile lies on the image (up to the pixel of a non-integer tile side)."""
    x, y, w, h = g.boxes.T
    inside = (x >= -tol) & (y >= -tol) & (x + w <= width + tol) & (y + h <= height + tol)
    return bool(inside.all())


def test_grid_never_runs_past_the_image_edge() -> None:
    # Hardening item 12: a tile whose centre is on the image but whose side runs past the
    # edge is never made; a strip narrower than a tile at the edge gets no tile.
    g = grid_tile_boxes(1050, 200, tile_um=100, mpp=0.5)
    assert len(g) == 5
    g = grid_tile_boxes(1150, 200, tile_um=100, mpp=0.5)
    assert len(g) == 5  # a sixth tile would span x 1000-1200 on a 1150 px image
    assert _on_image(g, 1150, 200)
    g = grid_tile_boxes(1200, 200, tile_um=100, mpp=0.5)
    assert len(g) == 6 and _on_image(g, 1200, 200)


@pytest.mark.parametrize("stride_um", [None, 30.0, 70.0])
@pytest.mark.parametrize(("width", "height"), [(1000, 600), (1039, 617), (333, 1201)])
def test_whole_image_grids_lie_on_the_image(
    width: int, height: int, stride_um: float | None
) -> None:
    g = grid_tile_boxes(width, height, tile_um=100 / 3, mpp=0.3, stride_um=stride_um)
    assert _on_image(g, width, height)
    # ... and reach as far as a whole tile can.
    side = g.boxes[0, 2]
    step = side if stride_um is None else stride_um / 0.3
    assert (g.boxes[:, 0] + side).max() > width - step
    assert (g.boxes[:, 1] + side).max() > height - step


def test_region_tiles_lie_on_the_image() -> None:
    # The region runs past the image: its tiles stop at the edge.
    g = grid_tile_boxes(500, 500, tile_um=100, mpp=0.5, region=box(100, 100, 900, 900))
    assert len(g) == 4 and _on_image(g, 500, 500)
    # A tile at x 400-600 has its centre (500) inside both region and image, but crosses x=550.
    g = grid_tile_boxes(550, 200, tile_um=100, mpp=0.5, region=box(0, 0, 550, 200))
    np.testing.assert_array_equal(g.boxes[:, 0], [0, 200])


def test_a_region_keeps_a_tile_only_when_its_centre_is_inside() -> None:
    # The region covers the first 200 px tile and 20% of the second (centre x=300 outside).
    g = grid_tile_boxes(2000, 2000, tile_um=100, mpp=0.5, region=box(0, 0, 240, 200))
    np.testing.assert_array_equal(g.boxes, [[0, 0, 200, 200]])
    # 55% of the second tile, centre inside: kept.
    g = grid_tile_boxes(2000, 2000, tile_um=100, mpp=0.5, region=box(0, 0, 310, 200))
    np.testing.assert_array_equal(g.boxes[:, 0], [0, 200])
    np.testing.assert_allclose(g.region_fraction, [1.0, 0.55])
    # Only 4% of the second tile, but around its centre: kept.
    blob = box(0, 0, 200, 200).union(box(280, 80, 320, 120))
    g = grid_tile_boxes(2000, 2000, tile_um=100, mpp=0.5, region=blob)
    np.testing.assert_array_equal(g.boxes[:, 0], [0, 200])
    np.testing.assert_allclose(g.region_fraction, [1.0, 0.04])
    # Every kept tile's centre lies inside the region.
    tri = Polygon([(0, 0), (1000, 0), (0, 1000)])
    g = grid_tile_boxes(2000, 2000, tile_um=70, mpp=0.5, region=tri)
    assert len(g) and shapely.contains_xy(tri, g.centres[:, 0], g.centres[:, 1]).all()


def test_grid_inside_a_polygon_starts_at_its_corner() -> None:
    region = box(150, 150, 750, 550)  # 600 x 400 px = 3 x 2 tiles of 200 px
    g = grid_tile_boxes(2000, 2000, tile_um=100, mpp=0.5, region=region)
    assert len(g) == 6
    assert g.boxes[:, 0].min() == 150 and g.boxes[:, 1].min() == 150
    np.testing.assert_allclose(g.region_fraction, 1.0)
    tri = Polygon([(0, 0), (800, 0), (0, 800)])
    g2 = grid_tile_boxes(2000, 2000, tile_um=100, mpp=0.5, region=tri)
    # Tiles on the diagonal are half inside, with their centres on the boundary: left out.
    assert len(g2) == 6
    np.testing.assert_allclose(g2.region_fraction, 1.0)
    # An extra minimum fraction narrows the centre rule further.
    g3 = grid_tile_boxes(
        2000, 2000, tile_um=100, mpp=0.5, region=box(0, 0, 310, 200), min_region_fraction=0.6
    )
    assert len(g3) == 1


def test_stride_makes_overlapping_tiles() -> None:
    g = grid_tile_boxes(400, 200, tile_um=100, mpp=0.5, stride_um=50)
    assert len(g) == 3  # origins at 0, 100, 200 (a fourth, at 300, would cross x=400)


def test_bad_regions() -> None:
    with pytest.raises(NoTissueError, match="outside"):
        grid_tile_boxes(100, 100, 10, 1.0, region=box(500, 500, 600, 600))
    with pytest.raises(NoTissueError, match="smaller than one tile"):
        grid_tile_boxes(1000, 1000, 100, 1.0, region=box(0, 0, 20, 20))
    with pytest.raises(NoTissueError, match="empty"):
        grid_tile_boxes(1000, 1000, 100, 1.0, region=Polygon())
    with pytest.raises(ConfigError):
        grid_tile_boxes(1000, 1000, 100, 1.0, region="not a geometry")
    with pytest.raises(NoTissueError, match="too close to the image edge"):
        grid_tile_boxes(1050, 1000, 100, 1.0, region=box(990, 0, 1050, 1000))
    with pytest.raises(NoTissueError, match="smaller than one 100 µm tile"):
        grid_tile_boxes(80, 1000, 100, 1.0)


def test_an_image_of_one_tile_is_that_tile() -> None:
    """A 290 px crop at 0.689 um/px is one 200 um tile (290.3 px): less than a pixel over."""
    g = grid_tile_boxes(290, 290, tile_um=200, mpp=0.689)
    assert len(g) == 1 and g.boxes[0, 2] > 290
    with pytest.raises(NoTissueError):
        grid_tile_boxes(288, 288, tile_um=200, mpp=0.689)  # two pixels short: no tile
