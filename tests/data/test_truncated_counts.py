"""Counts tables cut short (hardening item 10): at a line end, mid-row, or in the gzip stream.

A table cut at a line end reads cleanly, so the readers compare it with the spot file: spots
under tissue without counts are an error when many (over 10%), a logged warning when few
(published HER2ST sections lack counts for 1-3 of their spots under tissue). A row cut mid-way
and a gzip stream cut short are errors naming the file, the line and the fix.
"""

from __future__ import annotations

import gzip
import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from _synth import make_legacy_st
from stimage.constants import Key
from stimage.data import read_her2st, read_legacy_st, read_visium
from stimage.errors import InvalidSampleError, SpotMismatchError


def _lines(path: Path) -> list[str]:
    with gzip.open(path, "rt") as fh:
        return fh.read().splitlines(keepends=True)


def _write_gz(path: Path, text: str) -> None:
    path.write_bytes(gzip.compress(text.encode()))


@pytest.fixture
def st(tmp_path: Path) -> tuple[Path, Path]:
    """A HER2ST-layout section S1 (79 spots under tissue, all with counts): its counts file."""
    root = tmp_path / "st"
    make_legacy_st(root)
    return root, root / "ST-cnts" / "S1.tsv.gz"


def test_cut_at_a_line_end_is_an_error(st: tuple[Path, Path]) -> None:
    root, counts = st
    lines = _lines(counts)
    _write_gz(counts, "".join(lines[:31]))  # header + 30 of 79 rows, re-compressed cleanly
    with pytest.raises(InvalidSampleError) as e:
        read_her2st(root, "S1")
    msg = str(e.value)
    assert msg.startswith(str(counts))
    assert "49 of 79 spots under tissue in S1_selection.tsv have no counts" in msg
    assert "cut short" in msg and "download or export it again" in msg
    assert "selected = 0" in msg  # the way out when the spots truly have no counts


def test_cut_after_the_header(st: tuple[Path, Path]) -> None:
    root, counts = st
    _write_gz(counts, _lines(counts)[0])
    with pytest.raises(InvalidSampleError, match=r"79 of 79 spots under tissue .* cut short"):
        read_her2st(root, "S1")


def test_a_few_spots_without_counts_warn(
    st: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    root, counts = st
    lines = _lines(counts)
    dropped = [lines[5].split("\t")[0], lines[40].split("\t")[0]]
    _write_gz(counts, "".join(line for i, line in enumerate(lines) if i not in (5, 40)))
    with caplog.at_level(logging.WARNING):
        a = read_her2st(root, "S1")
    assert a.n_obs == 77 and not set(dropped) & set(a.obs_names)
    (rec,) = [r for r in caplog.records if "have no counts" in r.getMessage()]
    assert rec.levelno == logging.WARNING
    assert str(counts) in rec.getMessage()
    assert "2 of 79 spots under tissue in S1_selection.tsv" in rec.getMessage()
    assert all(d in rec.getMessage() for d in dropped)


def test_complete_counts_log_nothing(
    st: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    root, _ = st
    with caplog.at_level(logging.WARNING):
        read_her2st(root, "S1")
    assert not [r for r in caplog.records if "have no counts" in r.getMessage()]


def test_cut_mid_row_names_line_and_columns(st: tuple[Path, Path]) -> None:
    root, counts = st
    lines = _lines(counts)
    cut = lines[31][: len(lines[31]) // 2]
    _write_gz(counts, "".join(lines[:31]) + cut)
    n_fields = cut.count("\t") + 1
    with pytest.raises(InvalidSampleError) as e:
        read_her2st(root, "S1")
    msg = str(e.value)
    assert msg.startswith(str(counts))
    assert f"line 32 has {n_fields} columns, expected 41" in msg
    assert "cut short" in msg and "download, copy or export the file again" in msg


def test_gzip_stream_cut_short(st: tuple[Path, Path]) -> None:
    root, counts = st
    data = counts.read_bytes()
    counts.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(InvalidSampleError, match=r"S1\.tsv\.gz: the gzip stream ends early") as e:
        read_her2st(root, "S1")
    assert isinstance(e.value.__cause__, EOFError)
    assert "counts table is cut short" in str(e.value)


def test_spot_file_cut_mid_row(st: tuple[Path, Path]) -> None:
    root, _ = st
    spots = root / "ST-spotfiles" / "S1_selection.tsv"
    text = spots.read_text()
    spots.write_text(text[: text.rindex("\t", 0, len(text) - 1) - 3])
    with pytest.raises(
        InvalidSampleError, match=r"S1_selection\.tsv: line 81 has \d columns, expected 7"
    ):
        read_her2st(root, "S1")


def test_non_numeric_count_is_named(st: tuple[Path, Path]) -> None:
    root, counts = st
    table = pd.read_csv(counts, sep="\t", index_col=0)
    table = table.astype(object)
    table.iloc[3, 7] = "n/a?"
    table.to_csv(counts, sep="\t")
    with pytest.raises(InvalidSampleError, match=r"gene 'GENE7' holds 'n/a\?', not a count"):
        read_her2st(root, "S1")


# -- Visium: the positions file is text, the matrix must hold the spots under tissue ---------


def test_visium_positions_cut_mid_row(make_visium) -> None:
    case = make_visium(variant="list")
    p = case.outs / "spatial" / "tissue_positions_list.csv"
    text = p.read_text()
    p.write_text(text[: text.rindex(",") - 2])
    with pytest.raises(
        InvalidSampleError, match=r"tissue_positions_list\.csv: line 48 has 5 columns, expected 6"
    ):
        read_visium(case.outs)


def test_visium_positions_cut_at_a_line_end(make_visium) -> None:
    case = make_visium()
    p = case.outs / "spatial" / "tissue_positions.csv"
    p.write_text("".join(p.read_text().splitlines(keepends=True)[:20]))
    with pytest.raises(
        SpotMismatchError, match=r"of 24 barcodes have no row in tissue_positions\.csv"
    ):
        read_visium(case.outs)


def test_visium_matrix_without_most_spots_under_tissue(make_visium, write_10x_h5) -> None:
    case = make_visium()
    kept = case.counts.iloc[:10]
    write_10x_h5(
        case.outs / "filtered_feature_bc_matrix.h5",
        kept.to_numpy(),
        list(kept.index),
        case.genes,
        case.gene_ids,
    )
    with pytest.raises(
        InvalidSampleError,
        match=r"14 of 24 spots under tissue in tissue_positions\.csv have no counts",
    ):
        read_visium(case.outs)


# -- the real HER2ST counts, cut ------------------------------------------------------------


@pytest.mark.realdata
@pytest.mark.slow
def test_real_counts_cut_short(
    her2st: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spots = her2st / "ST-spotfiles" / "B4_selection.tsv"
    lines = _lines(her2st / "ST-cnts" / "B4.tsv.gz")
    assert len(lines) == 284  # header + 283 spots with counts
    whole = tmp_path / "B4.tsv.gz"
    shutil.copyfile(her2st / "ST-cnts" / "B4.tsv.gz", whole)
    # As published, one of the 284 spots under tissue has no counts: a warning, not an error.
    with caplog.at_level(logging.WARNING):
        a = read_legacy_st(whole, spots, None, section_id="B4")
    assert a.n_obs == 283 and a.obs[Key.IN_TISSUE].all()
    assert any("1 of 284 spots under tissue" in r.getMessage() for r in caplog.records)

    at_line_end = tmp_path / "B4_line.tsv.gz"
    _write_gz(at_line_end, "".join(lines[:60]))  # header + 59 spots
    with pytest.raises(
        InvalidSampleError, match=r"B4_line\.tsv\.gz: 225 of 284 spots under tissue"
    ):
        read_legacy_st(at_line_end, spots, None, section_id="B4")

    mid_row = tmp_path / "B4_row.tsv.gz"
    _write_gz(mid_row, "".join(lines[:60]) + lines[60][:5000])
    n_fields = lines[60][:5000].count("\t") + 1
    n_cols = lines[0].count("\t") + 1
    with pytest.raises(
        InvalidSampleError, match=rf"line 61 has {n_fields} columns, expected {n_cols}"
    ):
        read_legacy_st(mid_row, spots, None, section_id="B4")

    gz_cut = tmp_path / "B4_gz.tsv.gz"
    gz_cut.write_bytes(whole.read_bytes()[:300_000])
    with pytest.raises(InvalidSampleError, match="gzip stream ends early"):
        read_legacy_st(gz_cut, spots, None, section_id="B4")
    assert np.isfinite(a.uns[Key.UNS][Key.MPP])
