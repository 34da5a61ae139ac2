from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from stimage.constants import Key, Platform
from stimage.data._h5ad import read_h5ad_sample
from stimage.data._sample import make_sample, validate_sample
from stimage.errors import InputFileNotFoundError, InvalidSampleError


def small_adata(n: int = 12, genes: int = 4, seed: int = 0) -> ad.AnnData:
    rng = np.random.default_rng(seed)
    counts = rng.poisson(4.0, size=(n, genes)).astype(np.float32)
    adata = ad.AnnData(
        X=sparse.csr_matrix(counts),
        obs=pd.DataFrame({"region": ["a", "b"] * (n // 2)}, index=[f"s{i}" for i in range(n)]),
        var=pd.DataFrame(
            {"gene_ids": [f"G{i}" for i in range(genes)]}, index=[f"gene{i}" for i in range(genes)]
        ),
    )
    adata.obsm["spatial"] = np.c_[np.arange(n) * 10.0 + 5, np.arange(n) * 3.0 + 1]
    return adata


def visium_like(mpp: float = 0.5, diameter: float | None = None) -> ad.AnnData:
    """A scanpy/squidpy-style Visium AnnData: hex grid at ``mpp`` with scale factors."""
    rows, cols = [], []
    for r in range(4):
        for c in range(r % 2, 12, 2):
            rows.append(r)
            cols.append(c)
    rows_a, cols_a = np.array(rows), np.array(cols)
    a = small_adata(n=len(rows))
    a.obs["array_row"], a.obs["array_col"] = rows_a, cols_a
    a.obsm["spatial"] = np.c_[cols_a * 50.0 / mpp + 30, rows_a * 50.0 * np.sqrt(3) / mpp + 30]
    a.uns["spatial"] = {
        "lib1": {
            "images": {"hires": np.zeros((4, 4, 3), np.uint8)},
            "scalefactors": {
                "spot_diameter_fullres": diameter or 65.0 / mpp,
                "tissue_hires_scalef": 0.2,
            },
        }
    }
    return a


def test_plain_anndata(tmp_path, write_image):
    src = small_adata()
    p = tmp_path / "A1.h5ad"
    src.write_h5ad(p)
    img = write_image(tmp_path / "A1.tif", 300, 200)
    adata = read_h5ad_sample(p, image=img, mpp=0.5, spot_diameter_um=20.0)
    validate_sample(adata)
    np.testing.assert_array_equal(adata.X.toarray(), src.X.toarray())
    assert adata.X.dtype == np.int32
    np.testing.assert_array_equal(adata.obsm[Key.SPATIAL], src.obsm["spatial"])
    assert adata.obs_names.tolist() == src.obs_names.tolist()
    assert adata.obs["region"].tolist() == src.obs["region"].tolist()
    assert adata.var["gene_ids"].tolist() == ["G0", "G1", "G2", "G3"]
    meta = adata.uns[Key.UNS]
    assert meta[Key.SECTION] == "A1"
    assert meta[Key.PLATFORM] == Platform.ANNDATA
    assert (meta[Key.MPP], meta[Key.MPP_SOURCE]) == (0.5, "user")
    assert meta[Key.SPOT_DIAMETER_UM] == 20.0
    assert meta[Key.SLIDE_PATH] == str(img.resolve())
    assert meta[Key.SOURCE_PATH] == str(p.resolve())


def test_without_scale_or_image(tmp_path, caplog):
    p = tmp_path / "x.h5ad"
    small_adata().write_h5ad(p)
    with caplog.at_level(logging.WARNING, logger="stimage.data._h5ad"):
        adata = read_h5ad_sample(p, section_id="S", patient_id="P", platform=Platform.VISIUM)
    meta = adata.uns[Key.UNS]
    assert np.isnan(meta[Key.MPP]) and meta[Key.MPP_SOURCE] == "unknown"
    assert meta[Key.SLIDE_PATH] == ""
    assert (meta[Key.SECTION], meta[Key.PATIENT]) == ("S", "P")
    assert meta[Key.SPOT_DIAMETER_UM] == 55.0  # the platform's
    assert any("µm per pixel unknown" in r.getMessage() for r in caplog.records)


def test_stimage_metadata_is_kept_and_arguments_win(tmp_path, write_image):
    img = write_image(tmp_path / "he.tif", 300, 200)
    src = small_adata()
    sample = make_sample(
        src.X,
        src.var_names,
        src.obs_names,
        src.obsm["spatial"],
        section_id="B4",
        patient_id="B",
        platform=Platform.LEGACY_ST,
        slide_path=img,
        mpp=0.69,
        mpp_source="spot grid",
        spot_diameter_um=100.0,
        spot_pitch_um=200.0,
    )
    sample.uns[Key.UNS]["note"] = "kept"
    sample.obsm[Key.CELLTYPE_PROPORTIONS] = np.full((src.n_obs, 2), 0.5)
    p = tmp_path / "b4.h5ad"
    sample.write_h5ad(p)
    adata = read_h5ad_sample(p)
    meta = adata.uns[Key.UNS]
    assert (meta[Key.SECTION], meta[Key.PATIENT], meta[Key.PLATFORM]) == ("B4", "B", "legacy_st")
    assert (meta[Key.MPP], meta[Key.MPP_SOURCE]) == (0.69, "spot grid")
    assert (meta[Key.SPOT_DIAMETER_UM], meta[Key.SPOT_PITCH_UM]) == (100.0, 200.0)
    assert meta[Key.SLIDE_PATH] == str(img.resolve())
    assert meta["note"] == "kept"
    np.testing.assert_array_equal(adata.obsm[Key.CELLTYPE_PROPORTIONS], 0.5)
    other = write_image(tmp_path / "other.tif", 300, 200)
    over = read_h5ad_sample(p, image=other, section_id="B4b", mpp=0.7)
    meta = over.uns[Key.UNS]
    assert (meta[Key.SECTION], meta[Key.PATIENT]) == ("B4b", "B")
    assert (meta[Key.MPP], meta[Key.MPP_SOURCE]) == (0.7, "user")
    assert meta[Key.SLIDE_PATH] == str(other.resolve())


def test_scanpy_visium_scalefactors(tmp_path):
    p = tmp_path / "v.h5ad"
    visium_like(mpp=0.5).write_h5ad(p)
    adata = read_h5ad_sample(p)
    meta = adata.uns[Key.UNS]
    assert meta[Key.PLATFORM] == Platform.VISIUM
    assert meta[Key.MPP] == pytest.approx(0.5)  # 65 / 130
    assert meta[Key.MPP_SOURCE] == "scalefactors"
    assert (meta[Key.SPOT_DIAMETER_UM], meta[Key.SPOT_PITCH_UM]) == (55.0, 100.0)
    assert "spatial" in adata.uns  # other uns entries travel along


def test_scanpy_visium_scale_mismatch_warns(tmp_path, caplog):
    p = tmp_path / "v.h5ad"
    visium_like(mpp=0.5, diameter=100.0).write_h5ad(p)
    with caplog.at_level(logging.WARNING):
        adata = read_h5ad_sample(p)
    assert adata.uns[Key.UNS][Key.MPP] == pytest.approx(0.65)
    assert any("spot grid" in r.getMessage() and "differ" in r.getMessage() for r in caplog.records)


def test_spot_grid_when_no_scalefactors(tmp_path):
    a = visium_like(mpp=0.4)
    del a.uns["spatial"]
    p = tmp_path / "v.h5ad"
    a.write_h5ad(p)
    adata = read_h5ad_sample(p, platform=Platform.VISIUM)
    assert adata.uns[Key.UNS][Key.MPP] == pytest.approx(0.4, rel=1e-6)
    assert adata.uns[Key.UNS][Key.MPP_SOURCE] == "spot grid"


def test_counts_layer_preferred_over_normalised_x(tmp_path):
    src = small_adata()
    src.layers["counts"] = src.X.copy()
    src.X = sparse.csr_matrix(np.log1p(src.X.toarray()))
    p = tmp_path / "n.h5ad"
    src.write_h5ad(p)
    adata = read_h5ad_sample(p, mpp=0.5)
    np.testing.assert_array_equal(adata.X.toarray(), src.layers["counts"].toarray())


def test_named_counts_layer_and_raw(tmp_path):
    src = small_adata()
    raw_counts = src.X.copy()
    src.layers["umi"] = raw_counts
    src.raw = src.copy()
    src.X = sparse.csr_matrix(np.log1p(raw_counts.toarray()))
    p = tmp_path / "n.h5ad"
    src.write_h5ad(p)
    by_layer = read_h5ad_sample(p, counts_layer="umi")
    np.testing.assert_array_equal(by_layer.X.toarray(), raw_counts.toarray())
    by_raw = read_h5ad_sample(p, counts_layer="raw")
    np.testing.assert_array_equal(by_raw.X.toarray(), raw_counts.toarray())
    with pytest.raises(InvalidSampleError, match=r"no layer 'nope' \(layers: \['umi'\]\)"):
        read_h5ad_sample(p, counts_layer="nope")


def test_normalised_counts_rejected(tmp_path):
    src = small_adata()
    src.X = sparse.csr_matrix(np.log1p(src.X.toarray()))
    p = tmp_path / "log.h5ad"
    src.write_h5ad(p)
    with pytest.raises(InvalidSampleError, match="non-integer") as e:
        read_h5ad_sample(p)
    msg = str(e.value)
    assert "log.h5ad" in msg and "layers['counts']" in msg and "counts_layer" in msg


def test_raw_is_suggested(tmp_path):
    src = small_adata()
    src.raw = src.copy()
    src.X = sparse.csr_matrix(np.log1p(src.X.toarray()))
    p = tmp_path / "log.h5ad"
    src.write_h5ad(p)
    with pytest.raises(InvalidSampleError, match="counts_layer='raw'"):
        read_h5ad_sample(p)


def test_scaled_counts_rejected(tmp_path):
    src = small_adata()
    dense = src.X.toarray()
    src.X = (dense - dense.mean(0)) / (dense.std(0) + 1)
    p = tmp_path / "scaled.h5ad"
    src.write_h5ad(p)
    with pytest.raises(InvalidSampleError, match="negative values"):
        read_h5ad_sample(p)


def test_missing_spatial(tmp_path):
    src = small_adata()
    del src.obsm["spatial"]
    p = tmp_path / "nospatial.h5ad"
    src.write_h5ad(p)
    with pytest.raises(InvalidSampleError, match=r"nospatial\.h5ad: no obsm\['spatial'\]"):
        read_h5ad_sample(p)


def test_spatial_of_wrong_shape(tmp_path):
    src = small_adata()
    src.obsm["spatial"] = np.zeros((src.n_obs, 3))
    p = tmp_path / "z.h5ad"
    src.write_h5ad(p)
    with pytest.raises(InvalidSampleError, match="expected"):
        read_h5ad_sample(p)


def test_missing_file_and_image(tmp_path):
    with pytest.raises(InputFileNotFoundError, match=r"absent\.h5ad"):
        read_h5ad_sample(tmp_path / "absent.h5ad")
    p = tmp_path / "a.h5ad"
    small_adata().write_h5ad(p)
    with pytest.raises(InputFileNotFoundError, match=r"nope\.tif"):
        read_h5ad_sample(p, image=tmp_path / "nope.tif")


def test_corrupt_file(tmp_path):
    p = tmp_path / "bad.h5ad"
    p.write_bytes(b"not an hdf5 file at all" * 10)
    with pytest.raises(InvalidSampleError, match=r"bad\.h5ad"):
        read_h5ad_sample(p)
