"""The Visium reader on a real Space Ranger 1.0 output (hardening item 16).

``../shared/data/visium_muscle/Vis5A`` (McKellar et al., Commun Biol 2021, GEO GSE161318):
the filtered matrix, the header-less ``tissue_positions_list.csv`` of Space Ranger 1.x, the
scale factors and the low-resolution image, without the full-resolution H&E. Every value the
reader returns is compared with one read here independently from the raw files.
"""

from __future__ import annotations

import csv
import json
import logging
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
from PIL import Image
from scipy import sparse

from stimage.constants import Key, Platform
from stimage.data import read_visium, validate_sample
from stimage.errors import InputFileNotFoundError

pytestmark = pytest.mark.realdata


@pytest.fixture
def image(tmp_path: Path) -> Path:
    """A stand-in for the full-resolution image (the reader records it, never decodes it)."""
    p = tmp_path / "Vis5A_fullres.tif"
    tifffile.imwrite(p, np.zeros((8, 8, 3), np.uint8))
    return p


@pytest.fixture
def raw_positions(visium_muscle: Path) -> dict[str, tuple[int, ...]]:
    """barcode -> (in_tissue, array_row, array_col, pxl_row, pxl_col) from the CSV itself."""
    with open(visium_muscle / "outs" / "spatial" / "tissue_positions_list.csv", newline="") as fh:
        return {r[0]: tuple(int(v) for v in r[1:]) for r in csv.reader(fh)}


@pytest.fixture
def scalefactors(visium_muscle: Path) -> dict[str, float]:
    return json.loads((visium_muscle / "outs" / "spatial" / "scalefactors_json.json").read_text())


def test_missing_fullres_image_is_reported(visium_muscle: Path) -> None:
    with pytest.raises(InputFileNotFoundError) as e:
        read_visium(visium_muscle)
    msg = str(e.value)
    assert "no full-resolution H&E image found" in msg
    assert "Space Ranger output does not include it" in msg
    assert "tissue_lowres_image.png are downscaled copies" in msg
    assert "image=" in msg and "its 'image' column" in msg and "--image" not in msg


def test_counts_and_barcodes_match_the_hdf5(visium_muscle: Path, image: Path) -> None:
    adata = read_visium(visium_muscle, image)
    validate_sample(adata)
    with h5py.File(visium_muscle / "outs" / "filtered_feature_bc_matrix.h5", "r") as f:
        g = f["matrix"]
        barcodes = [b.decode() for b in g["barcodes"][:]]
        ids = [b.decode() for b in g["features/id"][:]]
        names = [b.decode() for b in g["features/name"][:]]
        n_features, n_barcodes = g["shape"][:]
        csc = sparse.csc_matrix(
            (g["data"][:], g["indices"][:], g["indptr"][:]), shape=(n_features, n_barcodes)
        )
    assert adata.shape == (982, 33217) == (n_barcodes, n_features)
    assert adata.obs_names.tolist() == barcodes
    assert adata.var[Key.GENE_ID].tolist() == ids
    seen = Counter(names)
    unique = [n for n in names if seen[n] == 1]
    assert set(unique) <= set(adata.var_names)  # repeated symbols get -1, -2... suffixes
    assert (csc.T.tocsr() != adata.X).nnz == 0
    assert adata.X.dtype == np.int32
    # Space Ranger's own metrics of this run.
    assert np.median(np.asarray(adata.X.sum(axis=1)).ravel()) == 4903.0
    assert np.median(np.asarray((adata.X > 0).sum(axis=1)).ravel()) == 1603.5


def test_positions_match_the_csv(visium_muscle: Path, image: Path, raw_positions) -> None:
    adata = read_visium(visium_muscle, image)
    assert len(raw_positions) == 4992  # the whole Visium v1 array
    assert sum(v[0] for v in raw_positions.values()) == adata.n_obs == 982
    rows = np.array([raw_positions[b] for b in adata.obs_names])
    assert (rows[:, 0] == 1).all() and adata.obs[Key.IN_TISSUE].all()
    np.testing.assert_array_equal(adata.obs[Key.ARRAY_ROW], rows[:, 1])
    np.testing.assert_array_equal(adata.obs[Key.ARRAY_COL], rows[:, 2])
    # pxl_row is y and pxl_col is x: obsm["spatial"] is (pxl_col, pxl_row).
    np.testing.assert_array_equal(adata.obsm[Key.SPATIAL], rows[:, [4, 3]])


def test_scale_factors_and_scale(visium_muscle: Path, image: Path, scalefactors, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        adata = read_visium(visium_muscle, image)
    assert adata.uns["spatial"]["Vis5A"]["scalefactors"] == scalefactors
    meta = adata.uns[Key.UNS]
    assert meta[Key.MPP_SOURCE] == "scalefactors"
    assert meta[Key.MPP] == pytest.approx(65.0 / scalefactors["spot_diameter_fullres"])
    assert meta[Key.PLATFORM] == Platform.VISIUM
    assert (meta[Key.SPOT_DIAMETER_UM], meta[Key.SPOT_PITCH_UM]) == (55.0, 100.0)
    assert meta[Key.SECTION] == "Vis5A"
    assert not caplog.records  # the scale factors agree with the spot grid


def test_spot_pitch_is_100_um(visium_muscle: Path, image: Path, raw_positions) -> None:
    """Neighbouring spots (same row two columns on, or next row one column across) are
    100 µm apart through ``65 / spot_diameter_fullres`` µm per pixel."""
    mpp = read_visium(visium_muscle, image).uns[Key.UNS][Key.MPP]
    by_grid = {(v[1], v[2]): (v[4], v[3]) for v in raw_positions.values()}
    dists = [
        np.hypot(x - by_grid[(r + dr, c + dc)][0], y - by_grid[(r + dr, c + dc)][1])
        for (r, c), (x, y) in by_grid.items()
        for dr, dc in ((0, 2), (1, 1), (1, -1))
        if (r + dr, c + dc) in by_grid
    ]
    assert len(dists) > 10_000
    assert np.median(dists) * mpp == pytest.approx(100.0, rel=0.01)
    # And the spots are 55 µm wide: 55 / 65 of the scale factor's theoretical spot.
    assert 55.0 / mpp == pytest.approx(180.28 * 55 / 65, rel=1e-3)


def test_spots_land_on_tissue_of_the_lowres_image(
    visium_muscle: Path, image: Path, raw_positions
) -> None:
    adata = read_visium(visium_muscle, image)
    s = adata.uns["spatial"]["Vis5A"]["scalefactors"]["tissue_lowres_scalef"]
    png = visium_muscle / "outs" / "spatial" / "tissue_lowres_image.png"
    grey = np.asarray(Image.open(png).convert("L"), dtype=float)
    h, w = grey.shape

    def tissue_fraction(xy: np.ndarray) -> float:
        px = np.clip(np.round(xy * s).astype(int), 0, [w - 1, h - 1])
        return float((grey[px[:, 1], px[:, 0]] < 200).mean())  # background is ~240-250

    inside = tissue_fraction(np.asarray(adata.obsm[Key.SPATIAL]))
    off = [(v[4], v[3]) for v in raw_positions.values() if v[0] == 0]
    outside = tissue_fraction(np.asarray(off, float))
    assert inside > 0.8 and outside < 0.05, (inside, outside)
    swapped = tissue_fraction(np.asarray(adata.obsm[Key.SPATIAL])[:, ::-1])
    assert inside > swapped + 0.2  # x and y are not exchanged
