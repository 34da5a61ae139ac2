from __future__ import annotations

import h5py
import numpy as np
import pytest
from scipy import sparse

from stimage.data._tenx import read_10x_h5
from stimage.errors import (
    InputFileNotFoundError,
    InvalidSampleError,
    StimageError,
    UnsupportedFormatError,
)


@pytest.fixture
def counts() -> np.ndarray:
    rng = np.random.default_rng(3)
    c = rng.poisson(1.5, size=(7, 5)).astype(np.int32)
    c[2] = 0  # an empty barcode
    return c


def test_round_trip_exact_values(tmp_path, write_10x_h5, counts):
    bcs = [f"BC{i}-1" for i in range(7)]
    names = ["A", "B", "C", "D", "E"]
    ids = [f"ID{i}" for i in range(5)]
    p = write_10x_h5(tmp_path / "m.h5", counts, bcs, names, ids)
    m = read_10x_h5(p)
    assert sparse.isspmatrix_csr(m.counts)
    assert m.counts.dtype == np.int32
    assert m.counts.shape == (7, 5)
    np.testing.assert_array_equal(m.counts.toarray(), counts)
    assert m.barcodes.tolist() == bcs
    assert m.genes.tolist() == names
    assert m.gene_ids.tolist() == ids
    assert m.counts.sum() == counts.sum()
    assert m.counts[2].nnz == 0


def test_variable_length_strings(tmp_path, write_10x_h5, counts):
    p = write_10x_h5(
        tmp_path / "m.h5", counts, [f"c{i}" for i in range(7)], list("ABCDE"), vlen=True
    )
    m = read_10x_h5(p)
    assert m.barcodes[3] == "c3"
    assert m.genes.tolist() == list("ABCDE")


def test_gene_expression_only_drops_other_features(tmp_path, write_10x_h5, counts):
    types = [
        "Gene Expression",
        "Antibody Capture",
        "Gene Expression",
        "Negative Control Probe",
        "Gene Expression",
    ]
    p = write_10x_h5(
        tmp_path / "m.h5", counts, [f"c{i}" for i in range(7)], list("ABCDE"), types=types
    )
    m = read_10x_h5(p)
    assert m.genes.tolist() == ["A", "C", "E"]
    np.testing.assert_array_equal(m.counts.toarray(), counts[:, [0, 2, 4]])
    assert set(m.feature_types) == {"Gene Expression"}
    everything = read_10x_h5(p, gene_expression_only=False)
    assert everything.counts.shape == (7, 5)
    assert everything.feature_types.tolist() == types


def test_no_gene_expression_features(tmp_path, write_10x_h5, counts):
    p = write_10x_h5(
        tmp_path / "m.h5",
        counts,
        [f"c{i}" for i in range(7)],
        list("ABCDE"),
        types=["Antibody Capture"] * 5,
    )
    with pytest.raises(InvalidSampleError, match="gene_expression_only=False"):
        read_10x_h5(p)


def test_missing_file(tmp_path):
    with pytest.raises(InputFileNotFoundError, match=r"nothere\.h5"):
        read_10x_h5(tmp_path / "nothere.h5")
    with pytest.raises(FileNotFoundError):  # also the builtin
        read_10x_h5(tmp_path / "nothere.h5")


def test_corrupt_file(tmp_path):
    p = tmp_path / "broken.h5"
    p.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00garbage" * 20)
    with pytest.raises(InvalidSampleError, match=r"broken\.h5.*truncated"):
        read_10x_h5(p)


def test_truncated_file(tmp_path, write_10x_h5, counts):
    p = write_10x_h5(tmp_path / "m.h5", counts, [f"c{i}" for i in range(7)], list("ABCDE"))
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 3])
    with pytest.raises(StimageError, match=r"m\.h5"):
        read_10x_h5(p)


def test_wrong_layout_no_matrix_group(tmp_path):
    p = tmp_path / "other.h5"
    with h5py.File(p, "w") as f:
        f["X"] = np.zeros((3, 3))
    with pytest.raises(UnsupportedFormatError, match="no 'matrix' group"):
        read_10x_h5(p)


def test_cell_ranger_2_layout_is_named(tmp_path):
    p = tmp_path / "v2.h5"
    with h5py.File(p, "w") as f:
        g = f.create_group("GRCh38")
        g["gene_names"] = np.array([b"A"])
    with pytest.raises(UnsupportedFormatError, match="Cell Ranger 2"):
        read_10x_h5(p)


def test_wrong_layout_missing_dataset(tmp_path, write_10x_h5, counts):
    p = write_10x_h5(tmp_path / "m.h5", counts, [f"c{i}" for i in range(7)], list("ABCDE"))
    with h5py.File(p, "a") as f:
        del f["matrix/indptr"]
    with pytest.raises(UnsupportedFormatError, match="indptr"):
        read_10x_h5(p)


def test_inconsistent_arrays(tmp_path, write_10x_h5, counts):
    p = write_10x_h5(tmp_path / "m.h5", counts, [f"c{i}" for i in range(7)], list("ABCDE"))
    with h5py.File(p, "a") as f:
        del f["matrix/barcodes"]
        f["matrix/barcodes"] = np.array([b"a", b"b"])
    with pytest.raises(InvalidSampleError, match="2 barcodes for 7 columns"):
        read_10x_h5(p)


def test_integral_floats_accepted_fractions_rejected(tmp_path, write_10x_h5, counts):
    p = write_10x_h5(tmp_path / "m.h5", counts, [f"c{i}" for i in range(7)], list("ABCDE"))
    with h5py.File(p, "a") as f:
        data = f["matrix/data"][()]
        del f["matrix/data"]
        f["matrix/data"] = data.astype(np.float32)
    np.testing.assert_array_equal(read_10x_h5(p).counts.toarray(), counts)
    with h5py.File(p, "a") as f:
        del f["matrix/data"]
        f["matrix/data"] = data.astype(np.float32) + 0.5
    with pytest.raises(InvalidSampleError, match="non-integer"):
        read_10x_h5(p)
