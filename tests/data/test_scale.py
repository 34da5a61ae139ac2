from __future__ import annotations

import numpy as np
import pytest

from stimage.constants import Platform
from stimage.data import mpp_from_spot_grid
from stimage.errors import UnknownScaleError


def test_legacy_st_grid_median_is_robust_to_jitter() -> None:
    rng = np.random.default_rng(0)
    xs, ys = np.meshgrid(np.arange(20), np.arange(15))
    xs, ys = xs.ravel(), ys.ravel()
    pitch_px = 290.0  # 200 µm at 0.69 µm/px
    xy = np.c_[xs * pitch_px, ys * pitch_px] + rng.normal(0, 15, (len(xs), 2))
    # A few badly placed spots must not move the median.
    xy[:5] += 120
    g = mpp_from_spot_grid(ys, xs, xy, Platform.LEGACY_ST)
    assert g.mpp == pytest.approx(200 / 290, rel=0.01)
    assert g.n_pairs == 2 * 20 * 15 - 20 - 15
    assert 0 < g.spread < 0.2


def test_visium_hex_grid() -> None:
    rows, cols = [], []
    for r in range(10):
        for c in range(r % 2, 30, 2):  # Visium: even rows even columns, odd rows odd columns
            rows.append(r)
            cols.append(c)
    rows_a, cols_a = np.array(rows), np.array(cols)
    spacing_px = 100 / 0.25  # 100 µm centre-to-centre at 0.25 µm/px
    x = cols_a * spacing_px / 2
    y = rows_a * spacing_px * np.sqrt(3) / 2
    g = mpp_from_spot_grid(rows_a, cols_a, np.c_[x, y], Platform.VISIUM)
    assert g.mpp == pytest.approx(0.25, rel=1e-6)


def test_rotated_grid_still_measures_pitch() -> None:
    xs, ys = np.meshgrid(np.arange(6), np.arange(6))
    xs, ys = xs.ravel(), ys.ravel()
    a = np.deg2rad(30)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    xy = (np.c_[xs, ys] * 400.0) @ rot.T + 5000
    assert mpp_from_spot_grid(ys, xs, xy, Platform.LEGACY_ST).mpp == pytest.approx(0.5)


def test_too_few_neighbours() -> None:
    with pytest.raises(UnknownScaleError, match="--mpp"):
        mpp_from_spot_grid(
            np.array([0, 5]), np.array([0, 5]), np.array([[0, 0], [10, 10]]), Platform.LEGACY_ST
        )


def test_unknown_platform() -> None:
    with pytest.raises(UnknownScaleError, match="no spot-grid pitch"):
        mpp_from_spot_grid(np.arange(3), np.arange(3), np.zeros((3, 2)), "xenium")
