"""Training a model bundle from a tile store (frozen encoders, cached features)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from stimage.constants import Key
from stimage.errors import ConfigError
from stimage.models import (
    LEVEL,
    Component,
    HeldOut,
    HighLowClassifier,
    ModelBundle,
    NBEnsemble,
    NBEnsembleConfig,
    SpatialContext,
    fit_pipeline,
    gene_chunk,
    high_low_labels,
)
from stimage.training._genesets import gene_sets

if TYPE_CHECKING:
    from stimage.tiles import TileStore
    from stimage.training._data import SpotSet

__all__ = ["GENE_SET_NAMES", "TrainConfig", "choose_genes", "fit_bundle", "train_model"]

logger = logging.getLogger(__name__)

#: Gene sets a model can be trained on (chosen from the training samples only).
GENE_SET_NAMES = ("paper_panel", "hvg50", "mean250", "hvg1000", "paper_text_panel")


@dataclass(frozen=True)
class TrainConfig:
    """What to train.

    Attributes:
        encoders: Encoder names; several make an FSTImage-style ensemble across encoders
            (default: EfficientNet-Lite0's head and pooled stages, one forward pass).
        encoder_weights: Explicit weights files, by encoder name.
        genes: Explicit genes; otherwise the union of ``gene_sets`` (from training data).
        gene_sets: Named gene sets (:data:`GENE_SET_NAMES`).
        ensemble: NB ensemble settings (members, PCA, penalty grid, dispersion).
        classifier: Train the high/low classifier.
        classifier_genes: Genes with a classifier (default: all model genes).
        name: Model name.
        description: Free text for the manifest.
        batch_size: Tiles per encoder forward pass.
        device: Device of the encoders.
        context: Spatial context joined to each spot's features (rings of 300 and 500 µm by
            default; None: each spot alone).
    """

    encoders: tuple[str, ...] = ("efficientnet_lite0_stages",)
    encoder_weights: dict[str, str] = field(default_factory=dict)
    genes: tuple[str, ...] | None = None
    gene_sets: tuple[str, ...] = ("paper_panel", "hvg50", "mean250")
    ensemble: NBEnsembleConfig = field(default_factory=NBEnsembleConfig)
    classifier: bool = True
    classifier_genes: tuple[str, ...] | None = None
    name: str = "stimage-model"
    description: str = ""
    batch_size: int = 32
    device: str | None = None
    context: SpatialContext | None = field(default_factory=SpatialContext)

    def __post_init__(self) -> None:
        if not self.encoders:
            raise ConfigError("name at least one encoder")
        bad = [s for s in self.gene_sets if s not in GENE_SET_NAMES]
        if bad:
            raise ConfigError(f"unknown gene set(s) {bad}; choose from {', '.join(GENE_SET_NAMES)}")


def choose_genes(
    spots: SpotSet, sample_ids: list[str], config: TrainConfig
) -> tuple[list[str], dict[str, list[str]]]:
    """Genes to train on, fixed from the training samples only, and the named sets they came from."""
    available = spots.common_genes(sample_ids)
    if config.genes:
        missing = [g for g in config.genes if g not in available]
        if missing:
            raise ConfigError(f"genes {missing[:10]} are not measured in every training sample")
        return list(config.genes), {"given": list(config.genes)}
    sets = gene_sets([spots.adatas[s] for s in sample_ids], available)
    chosen = {k: list(sets[k]) for k in config.gene_sets if k in sets}
    genes: list[str] = []
    for k in config.gene_sets:
        for g in chosen.get(k, []):
            if g not in genes:
                genes.append(g)
    if not genes:
        raise ConfigError("no genes selected for training; check the gene sets and the data")
    return genes, chosen


def fit_bundle(
    spots: SpotSet,
    sample_ids: list[str],
    genes: list[str],
    config: TrainConfig,
    *,
    tiles: dict[str, Any],
    stain_target: dict[str, Any] | None,
    encoder_specs: dict[str, dict[str, Any]],
) -> ModelBundle:
    """Fit the NB ensemble(s) and the classifier on some samples of a spot set.

    Raises:
        ConfigError: The spots were loaded with another spatial context than the config's.
    """
    if spots.context != config.context:
        raise ConfigError(
            f"the spots' features have spatial context {spots.context}, the config asks for "
            f"{config.context}; load them with load_spot_set(..., context=config.context)"
        )
    counts = spots.sparse_counts(sample_ids, genes)
    lib = spots.library_size(sample_ids)
    groups = spots.groups(sample_ids)
    cv_groups = spots.cv_groups(sample_ids)
    if len(sample_ids) == 1 and len(set(cv_groups)) > 1:
        logger.info(
            "one sample (%s): its spatial blocks stand in for held-out sections when the "
            "penalty and the intervals are chosen",
            sample_ids[0],
        )
    comps = []
    z0 = None
    for enc in config.encoders:
        ens = NBEnsemble(config.ensemble)
        ens.pipeline, z = fit_pipeline(
            spots.feature_blocks(enc, sample_ids), config.ensemble.pca_dim, config.ensemble.seed
        )
        ens.fit_projected(z, counts, lib, genes, groups=groups, cv_groups=cv_groups)
        comps.append(Component(encoder_specs[enc], ens))
        z0 = z if z0 is None else z0
    clf = None
    if config.classifier:
        cg = list(config.classifier_genes) if config.classifier_genes else genes
        idx = [genes.index(g) for g in cg]
        labels = np.zeros((len(lib), len(cg)), bool)
        step = gene_chunk(len(lib), len(cg))
        for j0 in range(0, len(cg), step):
            part = counts[:, idx[j0 : j0 + step]].toarray().astype(np.float64)
            labels[:, j0 : j0 + step] = high_low_labels(np.log1p(part / lib[:, None] * 1e4), groups)
        assert z0 is not None
        clf = HighLowClassifier().fit(z0, labels, cg)
    return ModelBundle(
        name=config.name,
        genes=list(genes),
        tiles=tiles,
        stain_target=stain_target,
        components=comps,
        classifier=clf,
        training={
            "samples": list(sample_ids),
            "patients": {s: spots.patients[s] for s in sample_ids},
            "n_spots": len(lib),
        },
        metrics=held_out_metrics(comps[0].ensemble.held_out, genes),
        description=config.description,
        context=spots.context,
    )


def held_out_metrics(held: HeldOut | None, genes: list[str]) -> dict[str, Any]:
    """The bundle metrics of the leave-one-section-out fits: per gene and summarised."""
    if held is None:
        return {}
    return {
        "held_out": {
            "scheme": (
                "leave-one-block-out within the single training section (four spatial "
                "blocks); each block's penalty chosen on the other blocks"
                if any("/block" in str(s) for s in held.sections)
                else "leave-one-section-out within the training sections; each section's "
                "penalty chosen on the other sections"
            ),
            "sections": held.sections,
            "level": LEVEL,
            "mean_pcc": float(np.nanmean(held.pcc)),
            "coverage": float(np.nanmean(held.coverage)),
            "coverage_uncalibrated": float(np.nanmean(held.coverage_uncalibrated)),
        },
        "genes": held.per_gene(genes),
    }


def store_tile_settings(store: TileStore, sample_ids: list[str]) -> dict[str, Any]:
    """The concrete tile settings of a store's samples (one tile size across all of them)."""
    settings = store.manifest["settings"]
    sizes = {float(store.spots(s).uns[Key.UNS]["tile_um"]) for s in sample_ids}
    if len(sizes) != 1:
        raise ConfigError(
            f"samples were tiled at different sizes {sorted(sizes)} µm; prepare them with one --tile-um"
        )
    return {
        "tile_um": sizes.pop(),
        "tile_px": int(settings["tile_px"]),
        "stain": settings["stain"],
        "min_coverage": float(settings["min_coverage"]),
        "tissue": settings.get("tissue", {}),
    }


def train_model(
    store: TileStore,
    config: TrainConfig | None = None,
    sample_ids: list[str] | None = None,
    *,
    progress: Callable[[str, int, int], None] | None = None,
) -> ModelBundle:
    """Train a model bundle on a tile store's samples (all by default).

    Features are extracted once per encoder and cached in the store; genes are chosen from
    these samples only; the NB penalty is chosen by leave-one-section-out inside them.
    """
    from stimage.encoders import create_encoder
    from stimage.tiles import load_stain_target
    from stimage.training._data import load_spot_set

    config = config or TrainConfig()
    ids = sample_ids or store.sample_ids
    if not ids:
        raise ConfigError(
            f"{store.path}: the tile store has no complete samples; run `stimage prepare` first"
        )
    encoders = [
        create_encoder(e, config.encoder_weights.get(e), device=config.device)
        for e in config.encoders
    ]
    spots = load_spot_set(
        store,
        encoders,
        ids,
        batch_size=config.batch_size,
        progress=progress,
        context=config.context,
    )
    genes, sets = choose_genes(spots, ids, config)
    tiles = store_tile_settings(store, ids)
    st = store.manifest["settings"]
    target = (
        load_stain_target(st["stain_target"], st["stain"]).to_dict() if st.get("stain") else None
    )
    specs = {
        e.spec.name: {
            **e.spec.to_dict(),
            "weights_sha256": e.weights_sha256,
            "weights_file": e.weights_path and str(e.weights_path).rsplit("/", 1)[-1],
        }
        for e in encoders
    }
    bundle = fit_bundle(
        spots, ids, genes, config, tiles=tiles, stain_target=target, encoder_specs=specs
    )
    bundle.training["gene_sets"] = sets
    bundle.training["store"] = str(store.path.resolve())
    return bundle
