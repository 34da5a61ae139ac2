"""A tiny model trained on synthetic sections (as tests/models does) and a server serving it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from _synth import render_he
from server._helpers import TEST_LIMITS
from stimage.models import ModelBundle, Predictor
from stimage.server import Server, ServerConfig
from stimage.server.client import Client


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
