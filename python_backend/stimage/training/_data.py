"""Spots of a tile store joined with their encoder features, ready for fitting."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from stimage.constants import Key
from stimage.errors import ConfigError

if TYPE_CHECKING:
    import anndata as ad

    from stimage.encoders import Encoder
    from stimage.models import SpatialContext
    from stimage.tiles import TileStore

__all__ = ["FeatureBlocks", "LazyCounts", "SpotSet", "load_spot_set"]


class JoinedFeatures(Mapping[str, np.ndarray]):
    """Sample id -> features joined with their spatial context, computed on access.

    Only the encoder's own features stay in memory (the joined ones are 3x larger); the
    last sample joined is kept, as callers read one sample at a time.
    """

    def __init__(
        self, raw: dict[str, np.ndarray], xy_um: dict[str, np.ndarray], context: SpatialContext
    ) -> None:
        self._raw, self._xy, self._context = raw, xy_um, context
        self._last: tuple[str, np.ndarray] | None = None

    def __getitem__(self, sample: str) -> np.ndarray:
        if self._last is not None and self._last[0] == sample:
            return self._last[1]
        joined = self._context.augment(self._raw[sample], self._xy[sample])[0]
        self._last = (sample, joined)
        return joined

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)


class LazyCounts:
    """Counts of some samples and genes, stacked, read column block by column block.

    ``counts[:, cols]`` (a slice or a list of column positions) gives a float32 CSR matrix of
    every sample's spots for those genes, so only a block of genes is ever copied.
    """

    def __init__(self, adatas: list[ad.AnnData], genes: list[str]) -> None:
        self._adatas, self._genes = adatas, genes
        self.shape = (sum(a.n_obs for a in adatas), len(genes))

    def __getitem__(self, key: tuple[slice, Any]) -> Any:
        from scipy import sparse

        rows, cols = key
        if rows != slice(None):
            raise ConfigError("counts are read by columns: counts[:, cols]")
        names = self._genes[cols] if isinstance(cols, slice) else [self._genes[j] for j in cols]
        return sparse.vstack(
            [sparse.csr_matrix(a[:, names].X, dtype=np.float32) for a in self._adatas]
        ).tocsr()


class FeatureBlocks(Sequence[np.ndarray]):
    """The features of some samples as row blocks, one per sample, read on access."""

    def __init__(self, features: Mapping[str, np.ndarray], sample_ids: list[str]) -> None:
        self._features, self._ids = features, list(sample_ids)

    def __getitem__(self, i: int) -> np.ndarray:  # type: ignore[override]
        return self._features[self._ids[i]]

    def __len__(self) -> int:
        return len(self._ids)


@dataclass
class SpotSet:
    """Kept spots of several samples with their features.

    Attributes:
        adatas: Sample id -> AnnData of its kept spots (raw counts, QC columns).
        features: Encoder name -> sample id -> ``(n_spots, d)`` features in spot order.
        patients: Sample id -> patient id.
        context: The spatial context joined to the features (None: each spot's own).
    """

    adatas: dict[str, ad.AnnData]
    features: dict[str, Mapping[str, np.ndarray]]
    patients: dict[str, str]
    context: SpatialContext | None = None

    @property
    def sample_ids(self) -> list[str]:
        """Samples in order."""
        return list(self.adatas)

    def common_genes(self, sample_ids: list[str] | None = None) -> list[str]:
        """Genes measured in every one of the samples, in the first sample's order."""
        ids = sample_ids or self.sample_ids
        first = list(self.adatas[ids[0]].var_names)
        others = [set(self.adatas[s].var_names) for s in ids[1:]]
        return [g for g in first if all(g in o for o in others)]

    def stack_features(self, encoder: str, sample_ids: list[str]) -> np.ndarray:
        """``(N, d)`` features of the samples' spots, stacked in order."""
        return np.concatenate([self.features[encoder][s] for s in sample_ids])

    def feature_blocks(self, encoder: str, sample_ids: list[str]) -> FeatureBlocks:
        """The samples' features as one block per sample, read on access (bounded memory)."""
        return FeatureBlocks(self.features[encoder], sample_ids)

    def sparse_counts(self, sample_ids: list[str], genes: list[str]) -> LazyCounts:
        """``(N, g)`` raw counts, read a block of genes at a time (no copy of the whole).

        Raises:
            ConfigError: A sample lacks some of the genes.
        """
        for s in sample_ids:
            missing = [g for g in genes if g not in self.adatas[s].var_names]
            if missing:
                raise ConfigError(f"sample {s!r} has no counts for {missing[:5]}")
        return LazyCounts([self.adatas[s] for s in sample_ids], list(genes))

    def counts(self, sample_ids: list[str], genes: list[str]) -> np.ndarray:
        """``(N, g)`` raw counts of the genes (genes a sample lacks raise)."""
        out = []
        for s in sample_ids:
            a = self.adatas[s]
            missing = [g for g in genes if g not in a.var_names]
            if missing:
                raise ConfigError(f"sample {s!r} has no counts for {missing[:5]}")
            out.append(np.asarray(a[:, genes].X.toarray(), np.float64))
        return np.concatenate(out)

    def library_size(self, sample_ids: list[str]) -> np.ndarray:
        """``(N,)`` total UMIs per spot over all genes."""
        return np.concatenate(
            [np.asarray(self.adatas[s].X.sum(axis=1), np.float64).ravel() for s in sample_ids]
        )

    def groups(self, sample_ids: list[str]) -> np.ndarray:
        """``(N,)`` sample id of each spot."""
        return np.concatenate([np.full(self.adatas[s].n_obs, s, dtype=object) for s in sample_ids])

    def cv_groups(self, sample_ids: list[str]) -> np.ndarray:
        """``(N,)`` what held-out fits leave out: each spot's sample, or with one sample its block.

        With two or more samples, the samples (:meth:`groups`). With one, its spots split into
        :data:`SPATIAL_BLOCKS` contiguous blocks at the median x and y of the spot centres
        (``"<sample>/block<k>"``), so that the penalty and the intervals are still chosen on
        tissue the fit did not see. A block of tissue is a milder shift than another section
        or patient: intervals calibrated on blocks are narrower than on sections.
        """
        if len(sample_ids) != 1:
            return self.groups(sample_ids)
        s = sample_ids[0]
        xy = np.asarray(self.adatas[s].obsm[Key.SPATIAL], np.float64)
        if len(xy) < 2 * SPATIAL_BLOCKS:
            return self.groups(sample_ids)
        right = xy[:, 0] > np.median(xy[:, 0])
        low = xy[:, 1] > np.median(xy[:, 1])
        block = right.astype(int) + 2 * low.astype(int)
        names = np.array([f"{s}/block{k}" for k in range(SPATIAL_BLOCKS)], dtype=object)
        return names[block]


#: Blocks a single sample is split into for held-out fits (quadrants at the median x, y).
SPATIAL_BLOCKS = 4


def load_spot_set(
    store: TileStore,
    encoders: list[Encoder],
    sample_ids: list[str] | None = None,
    *,
    batch_size: int = 32,
    progress: Callable[[str, int, int], None] | None = None,
    context: SpatialContext | None = None,
) -> SpotSet:
    """Kept spots and features (extracted or loaded from the cache) of a store's samples.

    With a spatial ``context``, each spot's features are joined with the mean features of
    the kept spots around it (rings in µm between spot centres), as a prediction joins a
    tile's with its neighbouring tiles'.
    """
    from stimage.training._features import extract_features

    ids = sample_ids or store.sample_ids
    unknown = [s for s in ids if s not in store.sample_ids]
    if unknown:
        raise ConfigError(
            f"samples {unknown} are not (complete) in the tile store {store.path}; it has {store.sample_ids}"
        )
    adatas = {s: store.spots(s) for s in ids}
    feats: dict[str, dict[str, np.ndarray]] = {}
    for enc in encoders:
        f = extract_features(store, enc, ids, batch_size=batch_size, progress=progress)
        feats[enc.spec.name] = {s: f[s][adatas[s].obs[Key.TILE_INDEX].to_numpy()] for s in ids}
    joined: dict[str, Mapping[str, np.ndarray]] = dict(feats)
    if context is not None:
        xy = {
            s: np.asarray(adatas[s].obsm[Key.SPATIAL], np.float64)
            * float(adatas[s].uns[Key.UNS][Key.MPP])
            for s in ids
        }
        joined = {name: JoinedFeatures(by, xy, context) for name, by in feats.items()}
    return SpotSet(adatas, joined, {s: store.patient_of(s) for s in ids}, context)
