"""10x Genomics feature-barcode matrices in HDF5 (``*_feature_bc_matrix.h5``).

The layout written by Cell Ranger >= 3, Space Ranger and Xenium Onboard Analysis::

    matrix/
        barcodes                 (n_barcodes,) strings
        data, indices, indptr    CSC: column j (barcode j) holds data[indptr[j]:indptr[j+1]]
                                 at feature rows indices[indptr[j]:indptr[j+1]]
        shape                    (n_features, n_barcodes)
        features/
            id, name, feature_type   (n_features,) strings

The matrix is read with h5py only. Transposed, the CSC arrays are the CSR arrays of the
barcodes x features matrix, so no copy of the counts is made.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from stimage.errors import InputFileNotFoundError, InvalidSampleError, UnsupportedFormatError

__all__ = ["GENE_EXPRESSION", "TenxMatrix", "read_10x_h5"]

#: ``feature_type`` of genes (other types: antibody capture, negative control probes, ...).
GENE_EXPRESSION = "Gene Expression"

_REQUIRED = ("barcodes", "data", "indices", "indptr", "shape", "features/id", "features/name")


@dataclass(frozen=True)
class TenxMatrix:
    """Counts of a 10x feature-barcode matrix, barcodes as rows.

    Attributes:
        counts: Barcodes x features raw counts, CSR of int32.
        barcodes: Barcode (spot or cell) ids, in row order.
        genes: Feature names (gene symbols), in column order.
        gene_ids: Feature ids (e.g. Ensembl ids), in column order.
        feature_types: ``feature_type`` of each column.

    """

    counts: sparse.csr_matrix
    barcodes: pd.Index
    genes: pd.Index
    gene_ids: pd.Index
    feature_types: pd.Index


def _strings(values: Any) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype.kind == "S":
        return np.char.decode(arr, "utf-8")
    if arr.dtype.kind == "O":
        return np.array([v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in arr])
    return arr.astype(str)


def read_10x_h5(path: str | os.PathLike[str], gene_expression_only: bool = True) -> TenxMatrix:
    """Read a 10x Genomics feature-barcode matrix HDF5 file.

    Args:
        path: ``filtered_feature_bc_matrix.h5``, ``raw_feature_bc_matrix.h5`` or Xenium's
            ``cell_feature_matrix.h5``.
        gene_expression_only: Keep only features of type ``"Gene Expression"`` (drops
            antibody capture, negative-control probes and codewords).

    Returns:
        The counts (barcodes x features) with barcodes, gene names, gene ids and types.

    Raises:
        InputFileNotFoundError: The file does not exist.
        InvalidSampleError: The file is not readable HDF5 (truncated, corrupt), its arrays
            disagree, or it holds no gene-expression features.
        UnsupportedFormatError: It is HDF5 but not in the 10x ``matrix/`` layout.

    Example:
        >>> m = read_10x_h5("outs/filtered_feature_bc_matrix.h5")  # doctest: +SKIP
        >>> m.counts.shape, m.genes[:2].tolist()  # doctest: +SKIP
        ((4992, 36601), ['MIR1302-2HG', 'FAM138A'])

    """
    import h5py

    p = Path(path)
    if not p.is_file():
        raise InputFileNotFoundError(
            f"{p}: feature-barcode matrix not found; give the .h5 matrix written by Space Ranger, "
            "Cell Ranger or Xenium Onboard Analysis"
        )
    try:
        with h5py.File(p, "r") as f:
            if "matrix" not in f:
                groups = sorted(f.keys())
                hint = (
                    " (this looks like the Cell Ranger 2 layout with one group per genome; "
                    "re-export it with Cell Ranger >= 3)"
                    if any(isinstance(f[g], h5py.Group) and "gene_names" in f[g] for g in groups)
                    else ""
                )
                raise UnsupportedFormatError(
                    f"{p}: no 'matrix' group (found {groups[:5]}); expected a 10x feature-barcode "
                    f"matrix with matrix/data, indices, indptr, shape, barcodes and features/{hint}"
                )
            g = f["matrix"]
            missing = [k for k in _REQUIRED if k not in g]
            if missing:
                raise UnsupportedFormatError(
                    f"{p}: matrix/ lacks {missing}; expected a 10x feature-barcode matrix "
                    "(matrix/data, indices, indptr, shape, barcodes, features/id, features/name)"
                )
            data = g["data"][()]
            indices = g["indices"][()]
            indptr = g["indptr"][()]
            shape = tuple(int(s) for s in g["shape"][()])
            barcodes = _strings(g["barcodes"][()])
            ids = _strings(g["features/id"][()])
            names = _strings(g["features/name"][()])
            types = (
                _strings(g["features/feature_type"][()])
                if "features/feature_type" in g
                else np.full(len(ids), GENE_EXPRESSION)
            )
    except OSError as e:
        raise InvalidSampleError(
            f"{p}: cannot read the HDF5 file ({e}); the file may be truncated or not HDF5 - "
            "copy it again from the Space Ranger / Xenium output"
        ) from e
    counts = _check_and_build(p, data, indices, indptr, shape, barcodes, ids, names, types)
    genes, gene_ids, ftypes = pd.Index(names), pd.Index(ids), pd.Index(types)
    if gene_expression_only:
        keep = np.asarray(ftypes == GENE_EXPRESSION)
        if not keep.any():
            raise InvalidSampleError(
                f"{p}: no feature of type {GENE_EXPRESSION!r} (types present: "
                f"{sorted(set(ftypes))[:5]}); pass gene_expression_only=False to keep them"
            )
        if not keep.all():
            counts = counts[:, np.flatnonzero(keep)]
            genes, gene_ids, ftypes = genes[keep], gene_ids[keep], ftypes[keep]
    return TenxMatrix(
        counts=counts,
        barcodes=pd.Index(barcodes),
        genes=genes,
        gene_ids=gene_ids,
        feature_types=ftypes,
    )


def _check_and_build(
    p: Path,
    data: np.ndarray,
    indices: np.ndarray,
    indptr: np.ndarray,
    shape: tuple[int, ...],
    barcodes: np.ndarray,
    ids: np.ndarray,
    names: np.ndarray,
    types: np.ndarray,
) -> sparse.csr_matrix:
    def bad(what: str) -> InvalidSampleError:
        return InvalidSampleError(
            f"{p}: the matrix arrays disagree ({what}); the file is damaged or was not written "
            "by a 10x pipeline - copy it again from the original output"
        )

    if len(shape) != 2:
        raise bad(f"matrix/shape is {shape}, expected (n_features, n_barcodes)")
    n_features, n_barcodes = shape
    if len(barcodes) != n_barcodes:
        raise bad(f"{len(barcodes)} barcodes for {n_barcodes} columns")
    if not (len(ids) == len(names) == len(types) == n_features):
        raise bad(f"{len(ids)} feature ids, {len(names)} names for {n_features} rows")
    if len(indptr) != n_barcodes + 1 or len(data) != len(indices) or int(indptr[-1]) != len(data):
        raise bad(
            f"indptr of length {len(indptr)} ending at {indptr[-1] if len(indptr) else None}"
            f" for {n_barcodes} barcodes and {len(data)} values"
        )
    if np.any(np.diff(indptr) < 0):
        raise bad("indptr decreases")
    if len(indices) and (indices.min() < 0 or indices.max() >= n_features):
        raise bad(f"feature indices outside 0..{n_features - 1}")
    if data.size and not np.issubdtype(data.dtype, np.integer):
        if not np.all(np.isfinite(data)) or not np.allclose(data, np.round(data)):
            raise InvalidSampleError(
                f"{p}: matrix/data holds non-integer values; a 10x matrix holds raw UMI counts"
            )
        data = np.round(data)
    if data.size and (data.min() < 0 or data.max() > np.iinfo(np.int32).max):
        raise bad("counts outside 0..2^31")
    # CSC of (features x barcodes) == CSR of (barcodes x features).
    return sparse.csr_matrix(
        (
            data.astype(np.int32, copy=False),
            indices.astype(np.int64, copy=False),
            indptr.astype(np.int64, copy=False),
        ),
        shape=(n_barcodes, n_features),
    )
