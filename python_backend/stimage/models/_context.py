"""Spatial context: a tile's features joined with the mean features of its neighbours.

Expression follows tissue structure wider than one tile (a tumour nest, a band of stroma),
so a model sees each tile with the tiles around it. Neighbours are counted in rings of
physical distance between tile centres, the same on any layout: the legacy ST grid (200 µm
pitch), the Visium hexagon (100 µm), the square grid tiles of a slide. For rings
``(300, 500)`` µm a tile gets ``[own, mean of ring 1, mean of ring 2]``: ring 1 holds the
tiles with centres in ``(0, 300]`` µm (the 8 grid neighbours at a 200 µm pitch), ring 2
those in ``(300, 500]`` µm (the next 12).

A ring without any tile (the edge of tissue, a lone tile, a region of one tile) takes the
tile's own features: the tile alone, as a model without context would see it. Every
prediction reports how many neighbouring tiles gave context (``Tile: context tiles``, 0 for a
tile predicted alone), so such tiles can be told apart.

Neighbour search is bounded by construction: at most :data:`MAX_NEIGHBOURS` nearest tiles
within the outer ring count, whatever the input (duplicated positions, dense grids).

Example:
    >>> ctx = SpatialContext((300.0, 500.0))
    >>> xy = np.array([[0.0, 0.0], [200.0, 0.0], [400.0, 0.0], [5000.0, 0.0]])
    >>> f = np.arange(4.0)[:, None]
    >>> x, n = ctx.augment(f, xy)
    >>> x.tolist()
    [[0.0, 1.0, 2.0], [1.0, 1.0, 1.0], [2.0, 1.0, 0.0], [3.0, 3.0, 3.0]]
    >>> n.tolist()
    [2, 2, 2, 0]
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from stimage.errors import ConfigError

__all__ = ["MAX_NEIGHBOURS", "ContextNeighbours", "SpatialContext"]

#: Most neighbours a tile's context takes (the nearest ones within the outer ring).
MAX_NEIGHBOURS = 128
#: Tiles whose neighbours are looked up at once (bounds the search's memory).
_BLOCK = 4096


@dataclass(frozen=True)
class ContextNeighbours:
    """Which tiles make each ring of some tiles' context.

    Attributes:
        rows: The tiles described (indices into the positions searched).
        index: ``(len(rows), k)`` neighbour indices (-1 where none).
        ring: ``(len(rows), k)`` ring of each neighbour (0-based; -1 where none).
        n_rings: Number of rings.
    """

    rows: np.ndarray
    index: np.ndarray
    ring: np.ndarray
    n_rings: int

    @property
    def count(self) -> np.ndarray:
        """``(len(rows),)`` neighbouring tiles that gave context (0: the tile alone)."""
        return (self.ring >= 0).sum(axis=1)


@dataclass(frozen=True)
class SpatialContext:
    """Ring means of neighbouring tiles' features, rings in µm between tile centres.

    Attributes:
        rings_um: Outer radius of each ring, increasing; the first ring starts above 0.
    """

    rings_um: tuple[float, ...] = (300.0, 500.0)

    def __post_init__(self) -> None:
        r = [float(v) for v in self.rings_um]
        if not r or len(r) > 8:
            raise ConfigError(f"context rings must be 1 to 8 radii in µm, got {self.rings_um}")
        if any(not np.isfinite(v) or v <= 0 or v > 10_000 for v in r) or any(
            b <= a for a, b in itertools.pairwise(r)
        ):
            raise ConfigError(
                f"context rings must be increasing radii between 0 and 10000 µm, got {self.rings_um}"
            )
        object.__setattr__(self, "rings_um", tuple(r))

    @property
    def reach_um(self) -> float:
        """The outer radius: how far around a tile its context reaches."""
        return self.rings_um[-1]

    def width(self, d: int) -> int:
        """Columns of the joined features for ``d`` encoder features."""
        return d * (1 + len(self.rings_um))

    def to_dict(self) -> dict[str, Any]:
        """As recorded in a model bundle."""
        return {"kind": "ring_means", "rings_um": list(self.rings_um)}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> SpatialContext | None:
        """From a bundle's record (None: a model without context).

        Raises:
            ConfigError: A kind of context this stimage does not know.
        """
        if not d:
            return None
        if d.get("kind") != "ring_means":
            raise ConfigError(
                f"the model uses spatial context {d.get('kind')!r}, unknown to this stimage; upgrade stimage"
            )
        return cls(tuple(float(v) for v in d["rings_um"]))

    def neighbours(
        self,
        xy_um: np.ndarray,
        rows: np.ndarray | None = None,
        among: np.ndarray | None = None,
    ) -> ContextNeighbours:
        """The neighbours of some tiles (all by default) among all positions ``xy_um``.

        ``among`` (boolean, one per position) restricts which tiles may give context, e.g. the
        spots with enough tissue, as in training; the tiles described may be any.

        Raises:
            ConfigError: Positions that are not finite ``(n, 2)`` µm.
        """
        from scipy.spatial import cKDTree

        xy = np.asarray(xy_um, np.float64)
        if xy.ndim != 2 or xy.shape[1] != 2 or not np.isfinite(xy).all():
            raise ConfigError(f"tile positions must be finite (n, 2) µm, got shape {xy.shape}")
        rows = np.arange(len(xy)) if rows is None else np.asarray(rows, np.int64)
        pool = np.arange(len(xy)) if among is None else np.flatnonzero(np.asarray(among, bool))
        k = min(MAX_NEIGHBOURS + 1, len(pool))
        if not len(rows) or k < 1 or (k < 2 and among is None):
            empty = np.full((len(rows), 0), -1, np.int64)
            return ContextNeighbours(rows, empty, empty.copy(), len(self.rings_um))
        tree = cKDTree(xy[pool])
        idx_parts, ring_parts = [], []
        edges = np.asarray((0.0, *self.rings_um)) * (1 + 1e-9)  # a centre on a ring's edge is in
        for b0 in range(0, len(rows), _BLOCK):
            r = rows[b0 : b0 + _BLOCK]
            dist, local = tree.query(xy[r], k=k, distance_upper_bound=self.reach_um * (1 + 1e-9))
            dist, local = dist.reshape(len(r), k), local.reshape(len(r), k)
            idx = pool[np.minimum(local, len(pool) - 1)]
            found = np.isfinite(dist) & (idx != r[:, None])
            found &= np.cumsum(found, axis=1) <= MAX_NEIGHBOURS  # self may not be among them
            idx = np.where(found, idx, -1)
            ring = np.searchsorted(edges, dist, side="left") - 1
            ring = np.where(found, np.clip(ring, 0, len(self.rings_um) - 1), -1)
            idx_parts.append(idx)
            ring_parts.append(ring)
        return ContextNeighbours(
            rows, np.concatenate(idx_parts), np.concatenate(ring_parts), len(self.rings_um)
        )

    def join(self, features: Any, nb: ContextNeighbours) -> np.ndarray:
        """``[own, ring means...]`` of the tiles ``nb.rows`` (float32).

        ``features`` is any ``(n, d)`` array indexable by rows (a memory map of a slide's
        features included); only the rows needed are read.
        """
        from scipy import sparse

        rows = nb.rows
        used, inverse = np.unique(
            np.concatenate([rows, nb.index[nb.index >= 0]]), return_inverse=True
        )
        f = np.asarray(features[used], np.float32)
        own = f[inverse[: len(rows)]]
        cols = np.full(nb.index.shape, -1, np.int64)
        cols[nb.index >= 0] = inverse[len(rows) :]
        out = [own]
        for k in range(nb.n_rings):
            hit = nb.ring == k
            n = hit.sum(axis=1)
            r, c = np.nonzero(hit)
            w = sparse.csr_matrix(
                (1.0 / n[r], (r, cols[r, c])), shape=(len(rows), len(used)), dtype=np.float64
            )
            mean = np.asarray(w @ f, np.float32)
            out.append(np.where(n[:, None] > 0, mean, own))
        return np.concatenate(out, axis=1)

    def augment(
        self,
        features: Any,
        xy_um: np.ndarray,
        rows: np.ndarray | None = None,
        among: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Joined features of some tiles (all by default) and their neighbour counts."""
        nb = self.neighbours(xy_um, rows, among)
        return self.join(features, nb), nb.count
