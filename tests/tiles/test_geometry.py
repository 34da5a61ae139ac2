from __future__ import annotations

import numpy as np
import pytest
from shapely.geometry import Polygon, box

from stimage.errors import ConfigError, NoTissueError
from stimage.tiles import grid_tile_boxes, spot_tile_boxes, tile_side_px


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


def test_grid_keeps_the_image_edge_tile_whose_centre_is_inside() -> None:
    g = grid_tile_boxes(1050, 200, tile_um=100, mpp=0.5)
    assert len(g) == 5  # a sixth tile would have its centre at x=1100 > 1050
    g = grid_tile_boxes(1150, 200, tile_um=100, mpp=0.5)
    assert len(g) == 6


def test_grid_inside_a_polygon_starts_at_its_corner_and_keeps_enough_overlap() -> None:
    region = box(150, 150, 750, 550)  # 600 x 400 px = 3 x 2 tiles of 200 px
    g = grid_tile_boxes(2000, 2000, tile_um=100, mpp=0.5, region=region)
    assert len(g) == 6
    assert g.boxes[:, 0].min() == 150 and g.boxes[:, 1].min() == 150
    np.testing.assert_allclose(g.region_fraction, 1.0)
    tri = Polygon([(0, 0), (800, 0), (0, 800)])
    g2 = grid_tile_boxes(2000, 2000, tile_um=100, mpp=0.5, region=tri, min_region_fraction=0.5)
    assert (g2.region_fraction >= 0.5).all()
    # Tiles on the diagonal are exactly half inside.
    assert np.isclose(g2.region_fraction, 0.5).sum() == 4
    assert len(g2) == 10


def test_stride_makes_overlapping_tiles() -> None:
    g = grid_tile_boxes(400, 200, tile_um=100, mpp=0.5, stride_um=50)
    assert len(g) == 3  # origins at 0, 100, 200 (a fourth's centre would be at 400)


def test_bad_regions() -> None:
    with pytest.raises(NoTissueError, match="outside"):
        grid_tile_boxes(100, 100, 10, 1.0, region=box(500, 500, 600, 600))
    with pytest.raises(NoTissueError, match="smaller than one tile"):
        grid_tile_boxes(1000, 1000, 100, 1.0, region=box(0, 0, 20, 20))
    with pytest.raises(NoTissueError, match="empty"):
        grid_tile_boxes(1000, 1000, 100, 1.0, region=Polygon())
    with pytest.raises(ConfigError):
        grid_tile_boxes(1000, 1000, 100, 1.0, region="not a geometry")
