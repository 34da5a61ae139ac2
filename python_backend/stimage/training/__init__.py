"""Training: cached features, spot sets, model fitting."""

from stimage.training._data import SpotSet, load_spot_set
from stimage.training._features import extract_features, feature_cache_dir
from stimage.training._finetune import FinetuneConfig, finetune_model
from stimage.training._train import (
    GENE_SET_NAMES,
    TrainConfig,
    choose_genes,
    fit_bundle,
    train_model,
)

__all__ = [
    "GENE_SET_NAMES",
    "FinetuneConfig",
    "SpotSet",
    "TrainConfig",
    "choose_genes",
    "extract_features",
    "feature_cache_dir",
    "finetune_model",
    "fit_bundle",
    "load_spot_set",
    "train_model",
]
