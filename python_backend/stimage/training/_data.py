"""Spots of a tile store joined with their encoder features, ready for fitting."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from stimage.constants import Key
from stimage.errors import ConfigError

if TYPE_CHECKING:
    import anndata as ad

    from stimage.encoders import Encoder
    from stimage.models import SpatialContext
    from stimage.tiles import TileStore

__all__ = ["SpotSet", "load_spot_set"]


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
    features: dict[str, dict[str, np.ndarray]]
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
    if context is not None:
        for by_sample in feats.values():
            for s in ids:
                a = adatas[s]
                xy_um = np.asarray(a.obsm[Key.SPATIAL], np.float64) * float(a.uns[Key.UNS][Key.MPP])
                by_sample[s] = context.augment(by_sample[s], xy_um)[0]
    return SpotSet(adatas, feats, {s: store.patient_of(s) for s in ids}, context)
