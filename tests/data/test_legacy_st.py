from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from _synth import make_legacy_st
from stimage.constants import Key, Platform
from stimage.data import (
    check_spots_inside,
    her2st_sections,
    open_sample_slide,
    read_her2st,
    read_legacy_st,
    validate_sample,
)
from stimage.errors import (
    InputFileNotFoundError,
    InvalidSampleError,
    SpotMismatchError,
    SpotsOutsideImageError,
)


def test_reads_counts_positions_and_derives_scale(legacy_st: tuple[Path, dict]) -> None:
    root, info = legacy_st
    a = read_her2st(root, "S1")
    validate_sample(a)
    counts: pd.DataFrame = info["counts"]  # type: ignore[assignment]
    spots: pd.DataFrame = info["spots"]  # type: ignore[assignment]
    assert a.n_obs == len(counts) == 79  # 80 positions, one not under tissue
    assert list(a.var_names) == list(counts.columns)
    np.testing.assert_array_equal(a.X.toarray(), counts.loc[a.obs_names].to_numpy())
    assert a.X.dtype == np.int32
    sp = spots.set_index(spots.x.astype(str) + "x" + spots.y.astype(str)).loc[a.obs_names]
    np.testing.assert_allclose(a.obsm[Key.SPATIAL], sp[["pixel_x", "pixel_y"]].to_numpy())
    np.testing.assert_array_equal(a.obs[Key.ARRAY_COL], sp.x)
    meta = a.uns[Key.UNS]
    assert meta[Key.MPP] == pytest.approx(info["mpp"], rel=0.01)
    assert meta[Key.MPP_SOURCE] == "spot grid"
    assert meta[Key.PLATFORM] == Platform.LEGACY_ST
    assert meta[Key.SPOT_DIAMETER_UM] == 100 and meta[Key.SPOT_PITCH_UM] == 200
    assert meta[Key.PATIENT] == "P1" and a.obs[Key.PATIENT].unique().tolist() == ["P1"]
    props = a.obsm[Key.CELLTYPE_PROPORTIONS]
    assert props.shape == (79, 4) and np.allclose(props.sum(axis=1), 1)


def test_slide_handle_carries_the_sample_scale(legacy_st: tuple[Path, dict]) -> None:
    root, info = legacy_st
    a = read_her2st(root, "S1")
    with open_sample_slide(a) as s:
        assert s.mpp == pytest.approx(a.uns[Key.UNS][Key.MPP])
        assert s.mpp_source == "spot grid"
        assert s.dimensions == (info["shape"][1], info["shape"][0])
        check_spots_inside(a, *s.dimensions)


def test_user_mpp_wins(legacy_st: tuple[Path, dict]) -> None:
    root, _ = legacy_st
    a = read_her2st(root, "S1", mpp=0.5)
    assert a.uns[Key.UNS][Key.MPP] == 0.5 and a.uns[Key.UNS][Key.MPP_SOURCE] == "user"


def test_keep_spots_off_tissue_on_request(legacy_st: tuple[Path, dict]) -> None:
    root, _ = legacy_st
    # The off-tissue position has no counts row in this layout, so nothing more appears;
    # the flag keeps in_tissue visible.
    a = read_her2st(root, "S1", only_in_tissue=False)
    assert a.obs[Key.IN_TISSUE].all()


def test_sections_discovered_from_files(legacy_st_two: Path) -> None:
    assert her2st_sections(legacy_st_two) == ["S1", "S2"]
    b = read_her2st(legacy_st_two, "S2")
    assert b.n_obs == 41 and b.uns[Key.UNS][Key.PATIENT] == "P2"


def test_counts_spots_without_positions(legacy_st: tuple[Path, dict]) -> None:
    root, info = legacy_st
    counts: pd.DataFrame = info["counts"]  # type: ignore[assignment]
    bad = counts.copy()
    bad.index = [f"{i}x99" for i in range(len(bad))]
    bad.to_csv(root / "ST-cnts" / "S1.tsv.gz", sep="\t")
    with pytest.raises(SpotMismatchError, match=r"have no row in S1_selection.tsv.*same section"):
        read_her2st(root, "S1")


def test_spots_outside_image(legacy_st: tuple[Path, dict]) -> None:
    root, info = legacy_st
    a = read_her2st(root, "S1")
    a.obsm[Key.SPATIAL][3] = [1e6, 5]
    with pytest.raises(SpotsOutsideImageError, match="1 of 79 spot centres lie outside"):
        check_spots_inside(a, info["shape"][1], info["shape"][0])


def test_missing_files_name_the_file(legacy_st: tuple[Path, dict], tmp_path: Path) -> None:
    root, info = legacy_st
    with pytest.raises(InputFileNotFoundError, match="S9"):
        read_her2st(root, "S9")
    info["image"].unlink()  # type: ignore[union-attr]
    with pytest.raises(InputFileNotFoundError, match="no H&E image for section 'S1'"):
        read_her2st(root, "S1")


def test_non_integer_counts_rejected(tmp_path: Path) -> None:
    info = make_legacy_st(tmp_path / "r")
    c: pd.DataFrame = info["counts"]  # type: ignore[assignment]
    (np.log1p(c)).to_csv(tmp_path / "r" / "ST-cnts" / "S1.tsv.gz", sep="\t")
    with pytest.raises(InvalidSampleError, match="raw UMI counts"):
        read_her2st(tmp_path / "r", "S1")


def test_generic_legacy_st_files(legacy_st: tuple[Path, dict]) -> None:
    root, info = legacy_st
    a = read_legacy_st(
        root / "ST-cnts" / "S1.tsv.gz",
        root / "ST-spotfiles" / "S1_selection.tsv",
        info["image"],
        section_id="S1",
    )  # type: ignore[arg-type]
    assert a.uns[Key.UNS][Key.PATIENT] == "S1"  # unknown patient: the section id
    assert Key.CELLTYPE_PROPORTIONS not in a.obsm


def test_spot_file_without_required_columns(legacy_st: tuple[Path, dict]) -> None:
    root, info = legacy_st
    sp: pd.DataFrame = info["spots"]  # type: ignore[assignment]
    sp.drop(columns=["pixel_x"]).to_csv(
        root / "ST-spotfiles" / "S1_selection.tsv", sep="\t", index=False
    )
    with pytest.raises(InvalidSampleError, match="pixel_x"):
        read_her2st(root, "S1")
