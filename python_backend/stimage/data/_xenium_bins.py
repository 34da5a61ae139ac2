"""Pseudo-spots: Xenium cells pooled into square bins on a regular grid in µm.

Square bins of side ``spot_um`` are laid on a grid of pitch ``pitch_um`` in Xenium µm,
anchored at the origin: bin ``(row, col)`` is centred at
``((col + 0.5) * pitch, (row + 0.5) * pitch)`` and holds the cells whose centroid lies in
``[centre - spot/2, centre + spot/2)`` on both axes. With ``pitch == spot`` the bins tile
the plane and each cell falls in exactly one; with ``pitch > spot`` cells between bins are
left out; with ``pitch < spot`` bins overlap and a cell may count in several.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse

__all__ = ["CellBins", "bin_cells"]


@dataclass(frozen=True)
class CellBins:
    """The non-empty bins of a grid and the cells each holds.

    Attributes:
        keys: ``(n_bins, 2)`` bin ``(row, col)`` on the grid, sorted.
        n_cells: Cells held by each bin.
        membership: ``n_bins x n_cells`` sparse 0/1 matrix: which cells each bin holds.
        pitch_um: Distance between neighbouring bin centres in µm.
    """

    keys: np.ndarray
    n_cells: np.ndarray
    membership: sparse.csr_matrix
    pitch_um: float

    @property
    def centres_um(self) -> np.ndarray:
        """``(n_bins, 2)`` bin centres ``(x, y)`` in Xenium µm."""
        return (self.keys[:, ::-1] + 0.5) * self.pitch_um  # (col, row) -> (x, y)

    def pool(self, counts: sparse.spmatrix, bins: np.ndarray) -> sparse.csr_matrix:
        """Counts summed over the cells of the bins at positions ``bins``."""
        return sparse.csr_matrix(self.membership[bins] @ counts)


def bin_cells(xy_um: np.ndarray, spot_um: float, pitch_um: float) -> CellBins:
    """Pool cells at ``(n, 2)`` centroids ``xy_um`` into bins of side ``spot_um``, ``pitch_um`` apart.

    Example:
        >>> b = bin_cells(np.array([[10.0, 10.0], [20.0, 30.0], [70.0, 10.0]]), 55.0, 55.0)
        >>> b.keys.tolist(), b.n_cells.tolist()
        ([[0, 0], [0, 1]], [2, 1])
    """
    cell_idx, rows, cols = _bin_membership(xy_um, spot_um, pitch_um)
    keys, inverse = np.unique(np.c_[rows, cols], axis=0, return_inverse=True)
    inverse = np.asarray(inverse).reshape(-1)
    membership = sparse.csr_matrix(
        (np.ones(len(cell_idx), np.int32), (inverse, cell_idx)), shape=(len(keys), len(xy_um))
    )
    return CellBins(keys, np.bincount(inverse, minlength=len(keys)), membership, pitch_um)


def _bin_membership(
    xy_um: np.ndarray, spot_um: float, pitch_um: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (cell index, bin row, bin col) of every cell in every bin that holds it."""
    n = len(xy_um)
    if np.isclose(spot_um, pitch_um, rtol=1e-12, atol=0):
        cols = np.floor(xy_um[:, 0] / pitch_um).astype(np.int64)
        rows = np.floor(xy_um[:, 1] / pitch_um).astype(np.int64)
        return np.arange(n), rows, cols
    reach = int(np.ceil(spot_um / pitch_um)) + 2

    def axis(v: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        base = np.floor((v - spot_um / 2) / pitch_um - 0.5).astype(np.int64)
        out = []
        for k in range(reach):
            idx = base + k
            lo = (idx + 0.5) * pitch_um - spot_um / 2
            out.append((idx, (v >= lo) & (v < lo + spot_um)))
        return out

    hit_cells: list[np.ndarray] = []
    hit_rows: list[np.ndarray] = []
    hit_cols: list[np.ndarray] = []
    for r, in_r in axis(xy_um[:, 1]):
        for c, in_c in axis(xy_um[:, 0]):
            hit = np.flatnonzero(in_r & in_c)
            hit_cells.append(hit)
            hit_rows.append(r[hit])
            hit_cols.append(c[hit])
    return np.concatenate(hit_cells), np.concatenate(hit_rows), np.concatenate(hit_cols)
