"""Text tables cut short or damaged: each failure names the file, the line and the fix."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from stimage.data._tables import read_text_table
from stimage.errors import InvalidSampleError, StimageError

TABLE = "\tG1\tG2\tG3\n1x1\t0\t3\t1\n2x1\t5\t0\t2\n3x1\t1\t1\t0\n"


def _write(path: Path, text: str | bytes) -> Path:
    data = text.encode() if isinstance(text, str) else text
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


@pytest.mark.parametrize("name", ["counts.tsv", "counts.tsv.gz"])
def test_complete_table_reads(tmp_path: Path, name: str) -> None:
    t = read_text_table(_write(tmp_path / name, TABLE), "counts table")
    assert t.shape == (3, 4)
    assert t.iloc[:, 1:].to_numpy().tolist() == [[0, 3, 1], [5, 0, 2], [1, 1, 0]]


@pytest.mark.parametrize("name", ["counts.tsv", "counts.tsv.gz"])
def test_last_row_cut_mid_way(tmp_path: Path, name: str) -> None:
    p = _write(tmp_path / name, TABLE[: TABLE.rindex("\t1\t0")])  # "3x1\t1" is all that is left
    with pytest.raises(InvalidSampleError) as e:
        read_text_table(p, "counts table")
    msg = str(e.value)
    assert msg.startswith(str(p))
    assert "line 4 has 2 columns, expected 4" in msg
    assert "last row" in msg and "cut short" in msg
    assert "download, copy or export the file again" in msg


def test_cut_after_a_separator_without_line_break(tmp_path: Path) -> None:
    # Every column is there but the last value is empty and no line break follows: cut.
    p = _write(tmp_path / "counts.tsv", TABLE[: TABLE.rindex("0\n")])
    with pytest.raises(InvalidSampleError, match=r"line 4 has 4 columns, expected 4.*cut short"):
        read_text_table(p, "counts table")


def test_short_row_inside_the_file(tmp_path: Path) -> None:
    p = _write(tmp_path / "spots.tsv", TABLE.replace("2x1\t5\t0\t2", "2x1\t5"))
    with pytest.raises(
        InvalidSampleError, match=r"line 3 has 2 columns, expected 4; the row is damaged"
    ):
        read_text_table(p, "spot file")


def test_row_with_too_many_columns(tmp_path: Path) -> None:
    p = _write(tmp_path / "spots.tsv", TABLE.replace("2x1\t5\t0\t2", "2x1\t5\t0\t2\t9"))
    with pytest.raises(InvalidSampleError, match="line 3 has 5 columns, expected 4"):
        read_text_table(p, "spot file")


def test_empty_values_in_full_rows_are_not_a_cut(tmp_path: Path) -> None:
    t = read_text_table(_write(tmp_path / "t.tsv", "a\tb\tc\n1\t\t3\n4\t5\t6\n"), "table")
    assert np.isnan(t.loc[0, "b"])


def test_header_one_column_short_as_r_writes_it(tmp_path: Path) -> None:
    # R's write.table leaves the row-name column out of the header: not a short row.
    t = read_text_table(_write(tmp_path / "t.tsv", "G1\tG2\n1x1\t1\t2\n2x1\t\t4\n"), "table")
    assert t.shape == (2, 2) and np.isnan(t.loc["2x1", "G1"])
    p = _write(tmp_path / "u.tsv", "G1\tG2\n1x1\t1\t2\n2x1\t3\t4\n3x1\t5\n")
    with pytest.raises(InvalidSampleError, match="line 4 has 2 columns, expected 3"):
        read_text_table(p, "table")


def test_headerless_csv_cut_mid_row(tmp_path: Path) -> None:
    p = _write(tmp_path / "tissue_positions_list.csv", "AAA-1,1,0,0,10,20\nCCC-1,1,0,2,10,")
    with pytest.raises(InvalidSampleError, match=r"line 2 has 6 columns, expected 6.*cut short"):
        read_text_table(p, "spot positions", header=None)
    p.write_text("AAA-1,1,0,0,10,20\nCCC-1,1,0,2\n")
    with pytest.raises(InvalidSampleError, match="line 2 has 4 columns, expected 6"):
        read_text_table(p, "spot positions", header=None)


def test_gzip_stream_cut_short(tmp_path: Path) -> None:
    p = tmp_path / "counts.tsv.gz"
    data = gzip.compress((TABLE * 50).encode())
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidSampleError) as e:
        read_text_table(p, "counts table")
    msg = str(e.value)
    assert isinstance(e.value, StimageError)
    assert isinstance(e.value.__cause__, EOFError)
    assert "gzip stream ends early" in msg and "counts table is cut short" in msg
    assert "download, copy or export the file again" in msg


def test_gzip_data_damaged(tmp_path: Path) -> None:
    p = tmp_path / "counts.tsv.gz"
    data = bytearray(gzip.compress((TABLE * 50).encode()))
    data[2] = 99  # an unknown compression method
    p.write_bytes(bytes(data))
    with pytest.raises(InvalidSampleError, match="gzip data is damaged"):
        read_text_table(p, "counts table")


def test_gz_name_without_gzip_data(tmp_path: Path) -> None:
    p = tmp_path / "counts.tsv.gz"
    p.write_text(TABLE)
    with pytest.raises(InvalidSampleError, match=r"named \.gz but holds no gzip data"):
        read_text_table(p, "counts table")


def test_gzip_found_by_content(tmp_path: Path) -> None:
    p = tmp_path / "counts.tsv"
    p.write_bytes(gzip.compress(TABLE.encode()))
    assert read_text_table(p, "counts table").shape == (3, 4)
