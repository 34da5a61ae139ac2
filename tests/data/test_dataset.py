from __future__ import annotations

from pathlib import Path

import pytest

from stimage.constants import Key
from stimage.data import detect_format, load_dataset, read_sample
from stimage.errors import ConfigError, InputFileNotFoundError, UnsupportedFormatError


def test_her2st_folder_is_a_dataset_with_patients(legacy_st_two: Path) -> None:
    ds = load_dataset(legacy_st_two)
    assert ds.ids == ["S1", "S2"]
    assert ds.patients == {"S1": "P1", "S2": "P2"}
    assert ds.select(["S2"]).ids == ["S2"]
    a = ds.samples[1].load()
    assert a.uns[Key.UNS][Key.SECTION] == "S2"


def test_csv_manifest_with_relative_paths_and_mpp(legacy_st_two: Path, tmp_path: Path) -> None:
    m = tmp_path / "manifest.csv"
    rel = Path("..") / tmp_path.name / legacy_st_two.relative_to(tmp_path)
    m.write_text(
        "sample_id,patient_id,format,path,image,mpp\n"
        f"S1,PX,her2st,{legacy_st_two},,0.75\n"
        f"S2,,her2st,{rel},,\n"
    )
    ds = load_dataset(m)
    assert ds.ids == ["S1", "S2"]
    assert ds.patients == {"S1": "PX", "S2": "S2"}
    a = ds.samples[0].load()
    assert a.uns[Key.UNS][Key.MPP] == 0.75 and a.uns[Key.UNS][Key.PATIENT] == "PX"


def test_yaml_manifest_row_without_id_expands_all_sections(
    legacy_st_two: Path, tmp_path: Path
) -> None:
    m = tmp_path / "m.yaml"
    m.write_text(f"samples:\n  - path: {legacy_st_two}\n    format: her2st\n")
    assert load_dataset(m).ids == ["S1", "S2"]


def test_legacy_st_manifest_needs_its_files(legacy_st: tuple[Path, dict], tmp_path: Path) -> None:
    root, info = legacy_st
    m = tmp_path / "m.csv"
    m.write_text(
        "sample_id,format,counts,spots,image\n"
        f"A,legacy_st,{root}/ST-cnts/S1.tsv.gz,{root}/ST-spotfiles/S1_selection.tsv,{info['image']}\n"
    )
    a = load_dataset(m).samples[0].load()
    assert a.n_obs == 79
    m.write_text("sample_id,format,image\nA,legacy_st,x.jpg\n")
    with pytest.raises(ConfigError, match="needs"):
        load_dataset(m).samples[0].load()


def test_duplicate_ids_and_bad_ids(legacy_st_two: Path, tmp_path: Path) -> None:
    m = tmp_path / "m.csv"
    m.write_text(f"sample_id,format,path\nS1,her2st,{legacy_st_two}\nS1,her2st,{legacy_st_two}\n")
    with pytest.raises(ConfigError, match="repeat"):
        load_dataset(m)
    m.write_text(f"sample_id,format,path\n../evil,her2st,{legacy_st_two}\n")
    with pytest.raises(ConfigError, match="letters, digits"):
        load_dataset(m)


def test_unknown_selection(legacy_st_two: Path) -> None:
    with pytest.raises(ConfigError, match="S7"):
        load_dataset(legacy_st_two).select(["S7"])


def test_not_a_dataset(tmp_path: Path) -> None:
    with pytest.raises(InputFileNotFoundError):
        load_dataset(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UnsupportedFormatError, match="no spatial samples"):
        load_dataset(tmp_path / "empty")
    with pytest.raises(UnsupportedFormatError):
        detect_format(tmp_path / "empty")
    bad = tmp_path / "m.yaml"
    bad.write_text("samples: [unclosed")
    with pytest.raises(ConfigError, match="cannot parse"):
        load_dataset(bad)


def test_read_sample_needs_a_section_for_her2st(legacy_st_two: Path) -> None:
    with pytest.raises(ConfigError, match="S1"):
        read_sample(legacy_st_two)
    assert read_sample(legacy_st_two, sample_id="S2").n_obs == 41
