from __future__ import annotations

import json
import logging

import numpy as np
import pytest

import stimage.data._xenium as xen
from stimage.constants import Key, Platform
from stimage.data._sample import validate_sample
from stimage.data._xenium import (
    XeniumAlignment,
    is_xenium_folder,
    read_xenium,
    read_xenium_cells,
)
from stimage.errors import (
    ConfigError,
    InputFileNotFoundError,
    InvalidSampleError,
    MissingDependencyError,
    SpotMismatchError,
    SpotsOutsideImageError,
)

#: The 10x knowledge-base example: H&E pixels -> Xenium pixels (rotation + ~1.29x scale).
KB_MATRIX = np.array(
    [
        [0.011071028838929093, 1.2895790134339569, 807.9788953065927],
        [-1.2895790134339569, 0.011071028838929093, 73097.655174759],
        [0.0, 0.0, 1.0],
    ]
)


def expected_bins(xy: np.ndarray, spot: float, pitch: float) -> dict[tuple[int, int], np.ndarray]:
    """Brute force: every bin (row, col) of the grid and the cells inside it."""
    out = {}
    r_hi = int(xy[:, 1].max() / pitch) + 3
    c_hi = int(xy[:, 0].max() / pitch) + 3
    for r in range(-3, r_hi):
        cy = (r + 0.5) * pitch
        in_r = (xy[:, 1] >= cy - spot / 2) & (xy[:, 1] < cy + spot / 2)
        for c in range(-3, c_hi):
            cx = (c + 0.5) * pitch
            m = in_r & (xy[:, 0] >= cx - spot / 2) & (xy[:, 0] < cx + spot / 2)
            if m.any():
                out[(r, c)] = np.flatnonzero(m)
    return out


def he_pixels(case, xy_um: np.ndarray) -> np.ndarray:
    """Xenium µm -> H&E pixels for the default synthetic alignment, written out by hand."""
    morph = np.asarray(xy_um) / case.pixel_size
    return np.c_[(morph[:, 0] + 100.0) / 2.0, (morph[:, 1] + 50.0) / 2.0]


# --- alignment --------------------------------------------------------------------------------
def test_alignment_follows_the_10x_convention():
    a = XeniumAlignment.load(KB_MATRIX)
    # H&E (0, 0) is Xenium pixel (807.98, 73097.66), i.e. those times 0.2125 in µm.
    um = a.fullres_to_um(np.array([[0.0, 0.0]]))
    np.testing.assert_allclose(um, [[807.9788953065927 * 0.2125, 73097.655174759 * 0.2125]])
    np.testing.assert_allclose(a.um_to_fullres(um), [[0.0, 0.0]], atol=1e-7)
    assert a.mpp == pytest.approx(np.hypot(0.011071028838929093, 1.2895790134339569) * 0.2125)
    assert a.mpp == pytest.approx(0.27405, abs=1e-4)
    assert a.anisotropy == pytest.approx(1.0)


def test_alignment_round_trip_random_affine():
    rng = np.random.default_rng(7)
    m = np.eye(3)
    m[:2, :2] = rng.normal(size=(2, 2)) + 2 * np.eye(2)
    m[:2, 2] = rng.uniform(-500, 500, 2)
    a = XeniumAlignment.load(m, pixel_size=0.5)
    px = rng.uniform(0, 5000, (50, 2))
    np.testing.assert_allclose(a.um_to_fullres(a.fullres_to_um(px)), px, rtol=1e-9, atol=1e-6)
    # Direction: H&E pixel -> M -> Xenium pixel -> x pixel size -> µm.
    np.testing.assert_allclose(a.fullres_to_um(px[:1]), (m @ [*px[0], 1.0])[None, :2] * 0.5)


def test_alignment_csv_forms(tmp_path):
    p = tmp_path / "a.csv"
    p.write_text("a,b,c\n2,0,10\n0,2,20\n0,0,1\n")  # a header line is skipped
    np.testing.assert_array_equal(XeniumAlignment.load(p).matrix[:2], [[2, 0, 10], [0, 2, 20]])
    p.write_text("2,0,10\n0,2,20\n")  # 2 x 3 gets its last row
    assert XeniumAlignment.load(p).matrix[2].tolist() == [0, 0, 1]
    assert XeniumAlignment.load("identity").mpp == pytest.approx(0.2125)


def test_singular_alignment(tmp_path):
    p = tmp_path / "sing_imagealignment.csv"
    np.savetxt(p, [[1.0, 2.0, 5.0], [2.0, 4.0, 5.0], [0.0, 0.0, 1.0]], delimiter=",")
    with pytest.raises(InvalidSampleError, match="singular"):
        XeniumAlignment.load(p)
    with pytest.raises(InvalidSampleError, match="singular"):
        XeniumAlignment.load(np.zeros((3, 3)) + np.diag([0, 0, 1]))


def test_keypoints_file_is_recognised(tmp_path):
    p = tmp_path / "keypoints.csv"
    p.write_text("fixedX,fixedY,alignmentX,alignmentY\n1,2,3,4\n5,6,7,8\n9,1,2,3\n")
    with pytest.raises(InvalidSampleError, match="keypoints"):
        XeniumAlignment.load(p)


def test_projective_alignment_rejected():
    with pytest.raises(InvalidSampleError, match="affine"):
        XeniumAlignment.load(np.array([[1.0, 0, 0], [0, 1, 0], [0.1, 0, 1]]))


# --- pseudo-spots -----------------------------------------------------------------------------
def test_tiling_pseudo_spots_sum_the_cells_inside(make_xenium):
    case = make_xenium()
    adata = read_xenium(case.folder)
    validate_sample(adata)
    xy = case.cells[["x_centroid", "y_centroid"]].to_numpy()
    truth = expected_bins(xy, 55.0, 55.0)
    assert adata.n_obs == len(truth)
    for i, (r, c) in enumerate(
        zip(adata.obs[Key.ARRAY_ROW], adata.obs[Key.ARRAY_COL], strict=True)
    ):
        cells = truth[(r, c)]
        np.testing.assert_array_equal(adata.X[i].toarray()[0], case.counts.iloc[cells].sum(0))
        assert adata.obs[Key.N_CELLS].iloc[i] == len(cells)
        assert adata.obs_names[i] == f"bin_{r}_{c}"
    # Tiling: every cell counted exactly once, no counts lost or invented.
    assert adata.obs[Key.N_CELLS].sum() == len(xy)
    assert adata.X.sum() == case.counts.to_numpy().sum()
    # Controls and codewords are dropped.
    assert adata.var_names.tolist() == ["EPCAM", "PTPRC", "VIM", "KRT8"]


def test_pseudo_spot_positions_and_metadata(make_xenium):
    case = make_xenium()
    adata = read_xenium(case.folder, section_id="X1", patient_id="P1")
    rows = adata.obs[Key.ARRAY_ROW].to_numpy()
    cols = adata.obs[Key.ARRAY_COL].to_numpy()
    centres_um = np.c_[(cols + 0.5) * 55.0, (rows + 0.5) * 55.0]
    np.testing.assert_allclose(adata.obsm[Key.SPATIAL], he_pixels(case, centres_um))
    meta = adata.uns[Key.UNS]
    assert meta[Key.MPP] == pytest.approx(2 * 0.2125)
    assert meta[Key.MPP_SOURCE] == "xenium alignment"
    assert meta[Key.SPOT_DIAMETER_UM] == 55.0
    assert meta[Key.SPOT_PITCH_UM] == 55.0
    assert meta[Key.PLATFORM] == Platform.XENIUM
    assert meta[Key.SLIDE_PATH] == str(case.image.resolve())
    assert (meta[Key.SECTION], meta[Key.PATIENT]) == ("X1", "P1")
    # One pseudo-spot of 55 µm spans 55 / 0.425 px on the H&E.
    step = np.diff(np.sort(np.unique(adata.obsm[Key.SPATIAL][:, 0])))
    assert step.min() == pytest.approx(55.0 / 0.425)


def test_cell_on_a_bin_edge_goes_to_the_next_bin(make_xenium):
    case = make_xenium(xy_um=[[55.0, 10.0], [54.999, 10.0], [110.0, 110.0]])
    adata = read_xenium(case.folder)
    got = dict(zip(adata.obs_names, adata.obs[Key.N_CELLS], strict=True))
    assert got == {"bin_0_0": 1, "bin_0_1": 1, "bin_2_2": 1}


@pytest.mark.parametrize(("spot", "pitch"), [(55.0, 100.0), (55.0, 27.5), (30.0, 45.0)])
def test_gaps_and_overlaps(make_xenium, spot, pitch):
    case = make_xenium()
    adata = read_xenium(case.folder, spot_um=spot, pitch_um=pitch)
    xy = case.cells[["x_centroid", "y_centroid"]].to_numpy()
    truth = expected_bins(xy, spot, pitch)
    # Bins centred off the H&E (row -1 when bins overlap) are dropped.
    w, h = case.image_size
    for r, c in list(truth):
        x, y = he_pixels(case, [[(c + 0.5) * pitch, (r + 0.5) * pitch]])[0]
        if not (0 <= x < w and 0 <= y < h):
            del truth[(r, c)]
    got = {
        (r, c): i
        for i, (r, c) in enumerate(
            zip(adata.obs[Key.ARRAY_ROW], adata.obs[Key.ARRAY_COL], strict=True)
        )
    }
    assert set(got) == set(truth)
    for key, cells in truth.items():
        np.testing.assert_array_equal(
            adata.X[got[key]].toarray()[0], case.counts.iloc[cells].sum(0)
        )
    n_total = adata.obs[Key.N_CELLS].sum()
    if pitch > spot:
        assert n_total < len(xy)  # cells between bins are left out
    else:
        assert n_total > len(xy)  # overlapping bins count a cell more than once
    assert adata.uns[Key.UNS][Key.SPOT_PITCH_UM] == pitch


def test_min_cells(make_xenium):
    case = make_xenium()
    all_bins = read_xenium(case.folder)
    dense = read_xenium(case.folder, min_cells=4)
    assert dense.obs[Key.N_CELLS].min() >= 4
    assert dense.n_obs == int((all_bins.obs[Key.N_CELLS] >= 4).sum())
    with pytest.raises(InvalidSampleError, match="min_cells"):
        read_xenium(case.folder, min_cells=10_000)


def test_bins_outside_the_image_are_dropped(make_xenium, caplog):
    xy = np.r_[np.c_[np.linspace(10, 500, 20), np.linspace(10, 400, 20)], [[840.0, 100.0]]]
    case = make_xenium(xy_um=xy)
    with caplog.at_level(logging.WARNING, logger="stimage.data._xenium"):
        adata = read_xenium(case.folder)
    assert adata.obs[Key.N_CELLS].sum() == 20
    assert (adata.obsm[Key.SPATIAL][:, 0] < 2000).all()
    assert any("outside the H&E" in r.getMessage() for r in caplog.records)


def test_alignment_of_another_image(make_xenium):
    far = np.array([[2.0, 0, 10_000.0], [0, 2.0, 10_000.0], [0, 0, 1]])
    case = make_xenium(alignment=far)
    with pytest.raises(SpotsOutsideImageError, match="inverted"):
        read_xenium(case.folder)


def test_user_mpp_and_pixel_size(make_xenium):
    case = make_xenium(pixel_size=0.5)
    cells = read_xenium_cells(case.folder)
    assert cells.attrs["mpp"] == pytest.approx(1.0)  # 2 Xenium px of 0.5 µm per H&E px
    assert read_xenium(case.folder).uns[Key.UNS][Key.MPP] == pytest.approx(1.0)
    adata = read_xenium(case.folder, mpp=0.9)
    assert adata.uns[Key.UNS][Key.MPP] == 0.9
    assert adata.uns[Key.UNS][Key.MPP_SOURCE] == "user"


def test_missing_experiment_file_assumes_default_pixel_size(make_xenium, caplog):
    case = make_xenium(pixel_size=None)
    with caplog.at_level(logging.WARNING, logger="stimage.data._xenium"):
        cells = read_xenium_cells(case.folder)
    assert cells.attrs["pixel_size_um"] == 0.2125
    assert any("experiment.xenium" in r.getMessage() for r in caplog.records)


def test_bad_experiment_file(make_xenium):
    case = make_xenium()
    (case.folder / "experiment.xenium").write_text(json.dumps({"run_name": "x"}))
    with pytest.raises(InvalidSampleError, match="pixel_size"):
        read_xenium(case.folder)


# --- cells ------------------------------------------------------------------------------------
def test_read_xenium_cells(make_xenium):
    case = make_xenium(n_cells=50)
    cells = read_xenium_cells(case.folder)
    assert cells.index.tolist() == case.cells.index.tolist()
    xy_um = cells[["x_centroid", "y_centroid"]].to_numpy()
    np.testing.assert_allclose(cells[["x_fullres", "y_fullres"]].to_numpy(), he_pixels(case, xy_um))
    assert "cell_area" in cells.columns
    assert cells.attrs["slide_path"] == str(case.image.resolve())
    assert cells.attrs["alignment"] == case.alignment.tolist()


def test_read_xenium_cells_without_image(make_xenium):
    case = make_xenium(n_cells=10, image=False)
    cells = read_xenium_cells(case.folder, alignment=case.alignment_path)
    assert cells.attrs["slide_path"] == ""
    cells = read_xenium_cells(case.folder, alignment="identity")
    np.testing.assert_allclose(cells["x_fullres"], cells["x_centroid"] / 0.2125)


def test_explicit_image_and_alignment(make_xenium, write_image, tmp_path):
    case = make_xenium(image=False, alignment="identity")
    img = write_image(tmp_path / "he.tif")
    align = tmp_path / "mine.csv"
    np.savetxt(align, np.diag([4.0, 4.0, 1.0]), delimiter=",")
    adata = read_xenium(case.folder, img, align)
    assert adata.uns[Key.UNS][Key.MPP] == pytest.approx(0.85)
    assert adata.uns[Key.UNS][Key.SLIDE_PATH] == str(img.resolve())


def test_parquet_cells(make_xenium):
    pytest.importorskip("pyarrow")
    case = make_xenium(cells_format="parquet", n_cells=30)
    assert read_xenium(case.folder).obs[Key.N_CELLS].sum() == 30


def test_parquet_without_engine(make_xenium, monkeypatch):
    case = make_xenium(cells_format="none", n_cells=5)
    (case.folder / "cells.parquet").write_bytes(b"PAR1")
    monkeypatch.setattr(xen, "_has_parquet_engine", lambda: False)
    with pytest.raises(MissingDependencyError, match="pyarrow"):
        read_xenium(case.folder)


# --- bad input --------------------------------------------------------------------------------
def test_matrix_cells_mismatch(make_xenium):
    case = make_xenium(extra_matrix_cells=3)
    with pytest.raises(SpotMismatchError, match=r"3 of 303 cells.*ghost"):
        read_xenium(case.folder)


def test_missing_matrix(make_xenium):
    case = make_xenium()
    (case.folder / "cell_feature_matrix.h5").unlink()
    with pytest.raises(InputFileNotFoundError, match=r"cell_feature_matrix\.h5"):
        read_xenium(case.folder)


def test_missing_cells_table(make_xenium):
    case = make_xenium(cells_format="none")
    with pytest.raises(InputFileNotFoundError, match=r"cells\.parquet or cells\.csv\.gz"):
        read_xenium(case.folder)


def test_cells_table_without_centroids(make_xenium):
    case = make_xenium()
    case.cells.reset_index().drop(columns="y_centroid").to_csv(
        case.folder / "cells.csv.gz", index=False
    )
    with pytest.raises(InvalidSampleError, match="y_centroid"):
        read_xenium(case.folder)


def test_missing_image(make_xenium):
    case = make_xenium(image=False)
    with pytest.raises(InputFileNotFoundError, match="manifest: its 'image' column"):
        read_xenium(case.folder)


def test_missing_alignment(make_xenium):
    case = make_xenium(alignment="identity")  # writes no CSV
    with pytest.raises(InputFileNotFoundError, match="identity"):
        read_xenium(case.folder)


def test_singular_alignment_in_folder(make_xenium):
    case = make_xenium(alignment=np.array([[1.0, 1, 0], [1, 1, 0], [0, 0, 1]]))
    with pytest.raises(InvalidSampleError, match="singular"):
        read_xenium(case.folder)


def test_bad_bin_settings(make_xenium):
    case = make_xenium(n_cells=5)
    with pytest.raises(ConfigError):
        read_xenium(case.folder, spot_um=0)
    with pytest.raises(ConfigError):
        read_xenium(case.folder, pitch_um=-1)
    with pytest.raises(ConfigError):
        read_xenium(case.folder, min_cells=0)


def test_is_xenium_folder(make_xenium, tmp_path):
    case = make_xenium(n_cells=5)
    assert is_xenium_folder(case.folder)
    assert not is_xenium_folder(tmp_path)


def test_corrupt_cells_table(make_xenium):
    case = make_xenium(n_cells=5)
    (case.folder / "cells.csv.gz").write_bytes(b"not gzip at all")
    with pytest.raises(InvalidSampleError, match=r"cells\.csv\.gz: cannot read"):
        read_xenium(case.folder)
