from __future__ import annotations

from pathlib import Path

import pytest

from _synth import make_legacy_st
from stimage.data import load_dataset
from stimage.models import ModelBundle, NBEnsembleConfig, NBGLMConfig
from stimage.tiles import TileSettings, TileStore, prepare_dataset
from stimage.training import TrainConfig, train_model

#: Small and fast: a random tiny CNN, few members, a short penalty grid.
FAST = TrainConfig(
    encoders=("test_tiny_cnn",),
    gene_sets=("mean250", "hvg50"),
    ensemble=NBEnsembleConfig(
        members=3, pca_dim=16, glm=NBGLMConfig(l2=(10.0, 1000.0), max_iter=60)
    ),
    name="tiny",
)


@pytest.fixture(scope="session")
def three_sections(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("st3")
    make_legacy_st(root, "S1", "P1", seed=11)
    make_legacy_st(root, "S2", "P1", seed=12)
    make_legacy_st(root, "S3", "P2", seed=13, grid=(7, 8))
    return root


@pytest.fixture(scope="session")
def store3(three_sections: Path, tmp_path_factory: pytest.TempPathFactory) -> TileStore:
    out = tmp_path_factory.mktemp("store3")
    prepare_dataset(
        load_dataset(three_sections),
        out,
        TileSettings(tile_px=64, stain="reinhard", stain_patches=4),
    )
    return TileStore(out)


@pytest.fixture(scope="session")
def bundle(store3: TileStore) -> ModelBundle:
    return train_model(store3, FAST, ["S1", "S2"])
