from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stimage.constants import Key, Platform
from stimage.data._sample import validate_sample
from stimage.data._visium import is_visium_folder, mpp_from_scalefactors, read_visium
from stimage.errors import (
    InputFileNotFoundError,
    InvalidSampleError,
    SpotMismatchError,
    UnknownScaleError,
)


@pytest.mark.parametrize("variant", ["csv", "list"])
def test_reads_counts_positions_and_scale(make_visium, variant):
    case = make_visium(variant=variant)
    adata = read_visium(case.outs)
    validate_sample(adata)
    n = len(case.counts)
    assert n == 24  # rows 1-4, columns 2-13 of the hexagonal array
    assert adata.shape == (n, 5)
    assert adata.obs_names.tolist() == case.counts.index.tolist()
    assert adata.var_names.tolist() == case.genes
    assert adata.var[Key.GENE_ID].tolist() == case.gene_ids
    np.testing.assert_array_equal(adata.X.toarray(), case.counts.to_numpy())
    assert adata.X.sum() == case.counts.to_numpy().sum()
    # pxl_col is x, pxl_row is y.
    pos = case.positions.loc[adata.obs_names]
    np.testing.assert_array_equal(adata.obsm[Key.SPATIAL][:, 0], pos["pxl_col_in_fullres"])
    np.testing.assert_array_equal(adata.obsm[Key.SPATIAL][:, 1], pos["pxl_row_in_fullres"])
    assert adata.obsm[Key.SPATIAL][:, 0].max() > 1300  # x spans the wide axis
    assert adata.obsm[Key.SPATIAL][:, 1].max() < 1000
    np.testing.assert_array_equal(adata.obs[Key.ARRAY_ROW], pos["array_row"])
    np.testing.assert_array_equal(adata.obs[Key.ARRAY_COL], pos["array_col"])
    assert adata.obs[Key.IN_TISSUE].all()
    meta = adata.uns[Key.UNS]
    assert meta[Key.MPP] == pytest.approx(0.5)  # 65 µm / 130 px
    assert meta[Key.MPP_SOURCE] == "scalefactors"
    assert meta[Key.SPOT_DIAMETER_UM] == 55.0
    assert meta[Key.SPOT_PITCH_UM] == 100.0
    assert meta[Key.PLATFORM] == Platform.VISIUM
    assert meta[Key.SLIDE_PATH] == str(case.image.resolve())
    assert meta[Key.SECTION] == "sample1"  # the folder above outs/
    assert meta[Key.PATIENT] == "sample1"
    assert meta[Key.SOURCE_PATH] == str(case.outs.resolve())


def test_both_position_variants_agree(tmp_path, make_visium):
    a = read_visium(make_visium(variant="csv", name="a").outs)
    b = read_visium(make_visium(variant="list", name="b").outs)
    np.testing.assert_array_equal(a.obsm[Key.SPATIAL], b.obsm[Key.SPATIAL])
    np.testing.assert_array_equal(a.X.toarray(), b.X.toarray())


def test_ids_and_folder_above_outs(make_visium):
    case = make_visium(image="root")
    adata = read_visium(case.root, section_id="S1", patient_id="P7")
    assert adata.uns[Key.UNS][Key.SECTION] == "S1"
    assert adata.uns[Key.UNS][Key.PATIENT] == "P7"
    assert set(adata.obs[Key.PATIENT]) == {"P7"}
    assert adata.uns[Key.UNS][Key.SLIDE_PATH] == str(case.image.resolve())


def test_explicit_image(make_visium, write_image, tmp_path):
    case = make_visium(image=None)
    img = write_image(tmp_path / "elsewhere.tif")
    adata = read_visium(case.outs, img)
    assert adata.uns[Key.UNS][Key.SLIDE_PATH] == str(img.resolve())


def test_missing_image_says_how_to_pass_it(make_visium):
    case = make_visium(image=None)
    with pytest.raises(InputFileNotFoundError, match="manifest: its 'image' column") as e:
        read_visium(case.outs)
    assert "--image" not in str(e.value)


def test_image_given_but_absent(make_visium, tmp_path):
    case = make_visium()
    with pytest.raises(InputFileNotFoundError, match=r"nope\.tif"):
        read_visium(case.outs, tmp_path / "nope.tif")


def test_two_candidate_images_are_ambiguous(make_visium, write_image):
    case = make_visium()
    write_image(case.outs / "other.tif", 100, 100)
    with pytest.raises(InputFileNotFoundError, match="2 candidate images"):
        read_visium(case.outs)


def test_scale_mismatch_is_logged(make_visium, caplog):
    case = make_visium(spot_diameter_fullres=100.0)  # says 0.65 µm/px; the grid says 0.5
    with caplog.at_level(logging.WARNING, logger="stimage.data._grid"):
        adata = read_visium(case.outs)
    assert adata.uns[Key.UNS][Key.MPP] == pytest.approx(0.65)
    assert adata.uns[Key.UNS][Key.MPP_SOURCE] == "scalefactors"
    assert any("differ by 30%" in r.getMessage() for r in caplog.records)


def test_agreeing_scales_log_nothing(make_visium, caplog):
    case = make_visium(mpp=0.25)
    with caplog.at_level(logging.WARNING, logger="stimage.data._grid"):
        adata = read_visium(case.outs)
    assert adata.uns[Key.UNS][Key.MPP] == pytest.approx(0.25)
    assert not caplog.records


def test_without_scalefactors_the_grid_gives_the_scale(make_visium):
    case = make_visium(scalefactors=False, mpp=0.4)
    adata = read_visium(case.outs)
    assert adata.uns[Key.UNS][Key.MPP_SOURCE] == "spot grid"
    assert adata.uns[Key.UNS][Key.MPP] == pytest.approx(0.4, rel=0.01)


def test_user_mpp_wins(make_visium):
    adata = read_visium(make_visium().outs, mpp=0.3)
    assert adata.uns[Key.UNS][Key.MPP] == 0.3
    assert adata.uns[Key.UNS][Key.MPP_SOURCE] == "user"


def test_no_scale_at_all(make_visium):
    case = make_visium(scalefactors=False)
    pos_p = case.outs / "spatial" / "tissue_positions.csv"
    pos = pd.read_csv(pos_p)
    pos["array_col"] = np.arange(len(pos)) * 10  # no two spots are neighbours
    pos.to_csv(pos_p, index=False)
    with pytest.raises(UnknownScaleError, match="mpp="):
        read_visium(case.outs)


def test_mpp_from_scalefactors():
    assert mpp_from_scalefactors({"spot_diameter_fullres": 89.43834961}) == pytest.approx(
        0.7267576, rel=1e-6
    )  # the example of 10x's "Spatial outputs" page
    assert mpp_from_scalefactors({"microns_per_pixel": 0.2738, "spot_diameter_fullres": 3}) == (
        0.2738
    )
    assert mpp_from_scalefactors({"tissue_hires_scalef": 0.1}) is None
    assert mpp_from_scalefactors({"spot_diameter_fullres": 0}) is None


def test_barcodes_without_position(make_visium):
    case = make_visium(extra_barcodes=2)
    with pytest.raises(SpotMismatchError, match="2 of 26 barcodes") as e:
        read_visium(case.outs)
    assert re.search(r"e\.g\. \['[ACGT]{16}-1'", str(e.value))
    assert "tissue_positions.csv" in str(e.value)


def test_all_spots_from_the_raw_matrix(make_visium):
    case = make_visium(raw_matrix=True)
    adata = read_visium(case.outs, only_in_tissue=False)
    assert adata.n_obs == len(case.positions) == 48
    assert adata.obs[Key.IN_TISSUE].sum() == 24
    np.testing.assert_array_equal(
        adata.X.toarray(), case.extra["all_counts"].loc[adata.obs_names].to_numpy()
    )
    inside = read_visium(case.outs)
    assert inside.n_obs == 24


def test_missing_matrix(make_visium):
    case = make_visium()
    (case.outs / "filtered_feature_bc_matrix.h5").unlink()
    with pytest.raises(InputFileNotFoundError, match=r"filtered_feature_bc_matrix\.h5"):
        read_visium(case.outs)


def test_missing_positions(make_visium):
    case = make_visium()
    (case.outs / "spatial" / "tissue_positions.csv").unlink()
    with pytest.raises(InputFileNotFoundError, match="tissue_positions"):
        read_visium(case.outs)


def test_missing_folder(tmp_path):
    with pytest.raises(InputFileNotFoundError, match="no such folder"):
        read_visium(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputFileNotFoundError, match="no spatial/"):
        read_visium(tmp_path / "empty")


def test_bad_positions_columns(make_visium):
    case = make_visium(variant="list")
    p = case.outs / "spatial" / "tissue_positions_list.csv"
    pd.read_csv(p, header=None).iloc[:, :4].to_csv(p, header=False, index=False)
    with pytest.raises(InvalidSampleError, match="4 columns, expected 6"):
        read_visium(case.outs)


def test_bad_scalefactors_json(make_visium):
    case = make_visium()
    (case.outs / "spatial" / "scalefactors_json.json").write_text("{not json")
    with pytest.raises(InvalidSampleError, match=r"scalefactors_json\.json"):
        read_visium(case.outs)


def test_is_visium_folder(make_visium, tmp_path):
    case = make_visium()
    assert is_visium_folder(case.outs)
    assert is_visium_folder(case.root)
    assert not is_visium_folder(tmp_path / "absent")
    assert not is_visium_folder(case.outs / "spatial")
    other = Path(tmp_path / "plain")
    other.mkdir()
    (other / "spatial").mkdir()
    (other / "spatial" / "scalefactors_json.json").write_text(json.dumps({}))
    assert not is_visium_folder(other)


def test_scalefactors_kept_as_scanpy_keeps_them(make_visium):
    case = make_visium(mpp=0.25)
    adata = read_visium(case.outs)
    written = json.loads((case.outs / "spatial" / "scalefactors_json.json").read_text())
    assert adata.uns["spatial"]["sample1"]["scalefactors"] == written
    assert "spatial" not in read_visium(make_visium(scalefactors=False, name="b").outs).uns


def test_non_numeric_scalefactors_are_not_kept(make_visium):
    case = make_visium()
    p = case.outs / "spatial" / "scalefactors_json.json"
    p.write_text(json.dumps({**json.loads(p.read_text()), "note": None, "flag": True}))
    factors = read_visium(case.outs).uns["spatial"]["sample1"]["scalefactors"]
    assert "note" not in factors and "flag" not in factors and "spot_diameter_fullres" in factors


def test_sample_with_scalefactors_round_trips_through_h5ad(make_visium, tmp_path):
    from stimage.data import read_h5ad_sample

    adata = read_visium(make_visium().outs)
    adata.write_h5ad(tmp_path / "s.h5ad")
    back = read_h5ad_sample(tmp_path / "s.h5ad")
    assert (
        back.uns["spatial"]["sample1"]["scalefactors"]
        == adata.uns["spatial"]["sample1"]["scalefactors"]
    )
    assert back.uns[Key.UNS][Key.MPP] == adata.uns[Key.UNS][Key.MPP]
