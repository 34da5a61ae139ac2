from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from _synth import render_he, write_pyramid_tiff
from stimage.data import open_slide
from stimage.errors import NoTissueError
from stimage.tiles import TissueMask, TissueParams, detect_tissue, tissue_mask_from_image
from stimage.tiles._tissue import estimate_background


def _disc(h: int, w: int, cx: float, cy: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return (xx - cx) ** 2 + (yy - cy) ** 2 < r * r


@pytest.mark.parametrize(
    "background", [(242, 242, 242), (224, 210, 227)]
)  # white and HER2ST's lavender glass
def test_mask_matches_the_tissue(background: tuple[int, int, int]) -> None:
    truth = _disc(400, 500, 250, 200, 140)
    img = render_he(400, 500, truth, seed=3, background=background)
    mask = tissue_mask_from_image(img, mpp=8.0)
    iou = (mask & truth).sum() / (mask | truth).sum()
    assert iou > 0.95


def test_pale_tissue_with_fat_holes_is_tissue_but_large_lumen_is_not() -> None:
    h, w = 500, 500
    truth = _disc(h, w, 250, 250, 200)
    lumen = _disc(h, w, 250, 250, 80)  # 160 px ~ 1.3 mm wide at 8 µm/px: a real hole
    fat = np.zeros_like(truth)
    for cx, cy in [(120, 250), (380, 250), (250, 110)]:
        fat |= _disc(h, w, cx, cy, 5)  # fat cells, 80 µm: filled
    img = render_he(h, w, truth & ~lumen & ~fat, seed=4)
    mask = tissue_mask_from_image(img, mpp=8.0)
    assert mask[250, 120] and mask[250, 380]
    assert not mask[250, 250]


def test_specks_and_empty_glass_are_not_tissue() -> None:
    img = np.full((300, 300, 3), 238, np.uint8)
    img[100:102, 100:102] = (80, 40, 120)  # dust: far below the minimum area
    assert not tissue_mask_from_image(img, mpp=8.0).any()


def test_background_estimate_falls_back_to_white_on_an_all_tissue_crop() -> None:
    img = render_he(200, 200, np.ones((200, 200), bool), seed=5)
    np.testing.assert_allclose(estimate_background(img), 245.0)


def test_coverage_is_exact_for_aligned_boxes_and_fractional_ones() -> None:
    m = np.zeros((100, 100), bool)
    m[:, :50] = True
    tm = TissueMask(mask=m, downsample=(10.0, 10.0), mpp=5.0)
    cov = tm.coverage(
        np.array([[0, 0, 200, 200], [400, 0, 200, 200], [900, 0, 100, 100], [450, 0, 100, 10]])
    )
    np.testing.assert_allclose(cov, [1.0, 0.5, 0.0, 0.5], atol=1e-9)
    # Outside the slide counts as no tissue.
    assert tm.coverage(np.array([[-100, 0, 200, 200]]))[0] == pytest.approx(0.5)
    np.testing.assert_array_equal(
        tm.contains(np.array([[10, 10], [600, 10], [-5, 0]])), [True, False, False]
    )


def test_detect_tissue_on_a_slide_and_its_geometry(tmp_path: Path) -> None:
    truth = _disc(1200, 1600, 800, 600, 450)
    img = render_he(1200, 1600, truth, seed=6)
    p = write_pyramid_tiff(tmp_path / "s.tif", img, mpp=1.0)
    with open_slide(p) as s:
        tm = detect_tissue(s, TissueParams(mpp=8.0))
    assert tm.mask.shape == (150, 200)
    assert tm.area_mm2 == pytest.approx(np.pi * 0.45**2, rel=0.06)
    geom = tm.geometry()
    assert geom.area == pytest.approx(np.pi * 450**2, rel=0.06)
    assert geom.contains(__import__("shapely").Point(800, 600))


def test_no_tissue_is_an_error_that_names_the_fix(tmp_path: Path) -> None:
    p = write_pyramid_tiff(tmp_path / "blank.tif", np.full((512, 512, 3), 240, np.uint8), mpp=1.0)
    with open_slide(p) as s, pytest.raises(NoTissueError, match="--tissue-min-od"):
        detect_tissue(s)
    with open_slide(p) as s:
        assert not detect_tissue(s, require=False).mask.any()


def test_grid_over_tissue_keeps_tiles_with_enough_tissue(tmp_path: Path) -> None:
    from shapely.geometry import box

    from stimage.tiles import grid_tile_qc

    truth = _disc(1200, 1600, 800, 600, 450)
    p = write_pyramid_tiff(tmp_path / "s.tif", render_he(1200, 1600, truth, seed=7), mpp=1.0)
    with open_slide(p) as s:
        tm = detect_tissue(s)
        grid, qc = grid_tile_qc(s, tm, tile_um=100, min_coverage=0.7)
        # Tiles kept are those whose 100 x 100 px square is mostly inside the disc.
        c = grid.centres[qc.kept]
        assert (np.hypot(c[:, 0] - 800, c[:, 1] - 600) < 450 + 30).all()
        assert qc.kept.sum() == pytest.approx(np.pi * 450**2 / 100**2, rel=0.12)
        assert set(qc.reason[~qc.kept]) == {"tissue coverage below 70%"}
        # Inside a drawn region: only tiles of that region.
        g2, q2 = grid_tile_qc(s, tm, tile_um=100, min_coverage=0.7, region=box(700, 500, 900, 700))
        assert len(g2) == 4 and q2.kept.all()
        # A region reaching 20% into the next column does not take its tiles (centres outside).
        g3, _ = grid_tile_qc(s, tm, tile_um=100, min_coverage=0.7, region=box(700, 500, 920, 700))
        np.testing.assert_array_equal(g3.boxes, g2.boxes)


def test_whole_slide_grids_never_run_past_the_image_edge(tmp_path: Path) -> None:
    from stimage.tiles import grid_tile_qc

    # Tissue from x = 200 to the right edge and down to the bottom edge of a 680 x 470 px
    # image: 100 px tiles start near the tissue's corner, and a fifth column and a fourth row
    # would cross the edges.
    truth = np.zeros((470, 680), bool)
    truth[96:, 200:] = True
    p = write_pyramid_tiff(tmp_path / "edge.tif", render_he(470, 680, truth, seed=5), mpp=1.0)
    with open_slide(p) as s:
        tm = detect_tissue(s)
        grid, qc = grid_tile_qc(s, tm, tile_um=100, min_coverage=0.5)
    x, y, w, h = grid.boxes.T
    assert ((x >= 0) & (y >= 0) & (x + w <= 680) & (y + h <= 470)).all()
    # The grid still reaches as close to the edges as whole tiles can.
    assert (x + w).max() > 680 - 100 and (y + h).max() > 470 - 100
    assert qc.kept.sum() == len(np.unique(x)) * len(np.unique(y)) == 4 * 3
