"""Training: cached features, spot sets, model fitting."""

from stimage.training._data import SpotSet, load_spot_set
from stimage.training._features import extract_features, feature_cache_dir
from stimage.training._finetune import FinetuneConfig, finetune_model
from stimage.training._genesets import (
    PAPER_PANEL,
    PAPER_TEXT_PANEL,
    gene_sets,
    top_hvg,
    top_mean,
)
from stimage.training._train import (
    GENE_SET_NAMES,
    TrainConfig,
    choose_genes,
    fit_bundle,
    train_model,
)

__all__ = [
    "GENE_SET_NAMES",
    "PAPER_PANEL",
    "PAPER_TEXT_PANEL",
    "FinetuneConfig",
    "SpotSet",
    "TrainConfig",
    "choose_genes",
    "extract_features",
    "feature_cache_dir",
    "finetune_model",
    "fit_bundle",
    "gene_sets",
    "load_spot_set",
    "top_hvg",
    "top_mean",
    "train_model",
]
