"""Shared fixtures; the data makers live in ``_synth.py`` (importable from tests).

Everything is generated small and seeded; no test needs ../shared except those marked
``realdata``, which skip without it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from _synth import her2st_root, make_legacy_st, render_he, write_pyramid_tiff
from stimage.data import load_dataset
from stimage.models import ModelBundle, NBEnsembleConfig, NBGLMConfig
from stimage.tiles import TileSettings, TileStore, prepare_dataset
from stimage.training import TrainConfig, train_model


@pytest.fixture
def her2st() -> Path:
    p = her2st_root()
    if p is None:
        pytest.skip(
            "real HER2ST data not found (set STIMAGE_HER2ST or provide ../shared/data/her2st)"
        )
    return p


@pytest.fixture(autouse=True)
def _isolated_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Decoded-image caches of tests go to a temporary folder, never ~/.cache."""
    monkeypatch.setenv("STIMAGE_CACHE", str(tmp_path_factory.getbasetemp() / "stimage-cache"))


@pytest.fixture(scope="session")
def _he_image() -> np.ndarray:
    return render_he(1200, 1600, seed=1)


@pytest.fixture
def he_image(_he_image: np.ndarray) -> np.ndarray:
    """A 1200 x 1600 synthetic H&E image (a fresh copy per test)."""
    return _he_image.copy()


@pytest.fixture
def pyramid_tiff(tmp_path: Path, he_image: np.ndarray) -> Path:
    """A 3-level tiled pyramidal TIFF at 0.5 µm/px."""
    return write_pyramid_tiff(tmp_path / "slide.tif", he_image, 0.5)


@pytest.fixture
def legacy_st(tmp_path: Path) -> tuple[Path, dict[str, object]]:
    """A HER2ST-layout folder with one synthetic section ``S1`` of patient ``P1``."""
    root = tmp_path / "st"
    info = make_legacy_st(root)
    return root, info


@pytest.fixture
def legacy_st_two(tmp_path: Path) -> Path:
    """A HER2ST-layout folder with sections S1 (patient P1) and S2 (patient P2)."""
    root = tmp_path / "st2"
    make_legacy_st(root, "S1", "P1", seed=1)
    make_legacy_st(root, "S2", "P2", seed=2, grid=(6, 7))
    return root


# -- a tiny trained expression model, shared by the model, server and CLI tests ------------

#: Small and fast: a random tiny CNN, few members, a short penalty grid.
FAST = TrainConfig(
    encoders=("test_tiny_cnn",),
    gene_sets=("mean250", "hvg50"),
    ensemble=NBEnsembleConfig(
        members=3, pca_dim=16, glm=NBGLMConfig(l2=(10.0, 1000.0), max_iter=60)
    ),
    name="tiny",
    context=None,  # each tile alone: the flow tests count batches (tests/models/test_context.py has context)
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
