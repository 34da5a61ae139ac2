"""A tiny model trained on synthetic sections (as tests/models does) and a server serving it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from _synth import make_legacy_st, render_he
from server._helpers import TEST_LIMITS
from stimage.data import load_dataset
from stimage.models import ModelBundle, NBEnsembleConfig, NBGLMConfig, Predictor
from stimage.server import Server, ServerConfig
from stimage.server.client import Client
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


@pytest.fixture(scope="session")
def bundle_dir(bundle: ModelBundle, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bundle.save(tmp_path_factory.mktemp("bundle") / "tiny")


@pytest.fixture(scope="session")
def predictor(bundle: ModelBundle) -> Predictor:
    return Predictor(bundle, device="cpu")


@pytest.fixture(scope="session")
def slide_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder the servers may read slides from, with one synthetic slide at 2 µm/px."""
    from _synth import write_pyramid_tiff

    root = tmp_path_factory.mktemp("slides")
    write_pyramid_tiff(root / "wsi.tif", render_he(600, 800, seed=5), mpp=2.0)
    return root


@pytest.fixture(scope="module")
def server(predictor: Predictor, slide_root: Path) -> Iterator[Server]:
    """A running server on a free loopback port (shared by the tests of a module)."""
    cfg = ServerConfig(port=0, limits=TEST_LIMITS, allow_roots=(slide_root,), device="cpu")
    with Server([predictor], cfg) as s:
        yield s


@pytest.fixture
def client_of() -> Iterator[Callable[..., Client]]:
    """Make clients that are closed after the test."""
    made: list[Client] = []

    def make(address: str, **kw: object) -> Client:
        kw.setdefault("heartbeat_timeout", 5.0)
        kw.setdefault("timeout", 60.0)
        c = Client(address, **kw)  # type: ignore[arg-type]
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()
