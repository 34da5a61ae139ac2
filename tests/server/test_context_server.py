"""A model with spatial context over the server: tiles give each other context, as in process."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from shapely.geometry import box

from conftest import FAST
from server._helpers import TEST_LIMITS, boxes_for, model_tiles
from stimage.models import ModelBundle, Predictor, SpatialContext
from stimage.pipelines import predict_slide
from stimage.server import Server, ServerConfig
from stimage.server.client import Client
from stimage.tiles import TileStore
from stimage.training import train_model


@pytest.fixture(scope="module")
def ctx_predictor(store3: TileStore) -> Predictor:
    cfg = dataclasses.replace(FAST, context=SpatialContext((300.0, 500.0)), name="ctx")
    b: ModelBundle = train_model(store3, cfg, ["S1", "S2"])
    return Predictor(b, device="cpu")


@pytest.fixture(scope="module")
def ctx_server(ctx_predictor: Predictor, slide_root: Path) -> Iterator[Server]:
    cfg = ServerConfig(port=0, limits=TEST_LIMITS, allow_roots=(slide_root,), device="cpu")
    with Server([ctx_predictor], cfg) as s:
        yield s


def test_tiles_give_each_other_context(
    ctx_server: Server, client_of: Callable[..., Client], ctx_predictor: Predictor
) -> None:
    tiles, mpp = model_tiles(ctx_predictor, 6, seed=3, px=ctx_predictor.tile_px)
    c = client_of(ctx_server.address)
    boxes = boxes_for(6)  # a row of touching tiles: 200 µm apart
    every = c.predict(tiles, boxes, mpp, format="table", image_id="a")
    some = c.predict(
        tiles, boxes, mpp, format="table", image_id="a", context_only=[0, 0, 0, 0, 1, 1]
    )
    cols = every["columns"]
    assert some["boxes"] == boxes[:4].tolist() and some["values"].shape[0] == 4
    np.testing.assert_allclose(some["values"], every["values"][:4], rtol=1e-5, atol=1e-6)
    n_ctx = every["values"][:, cols.index("Tile: context tiles")]
    assert n_ctx.tolist() == [2, 3, 4, 4, 3, 2]
    far = c.predict(
        tiles, boxes_for(6, side=100.0) * [10, 1, 1, 1], mpp, format="table", image_id="a"
    )
    assert (far["values"][:, cols.index("Tile: context tiles")] == 0).all()


def test_slide_region_reads_a_margin_as_in_process(
    ctx_server: Server,
    client_of: Callable[..., Client],
    ctx_predictor: Predictor,
    slide_root: Path,
) -> None:
    path = slide_root / "wsi.tif"
    out = client_of(ctx_server.address).predict_slide(path, [300, 200, 400, 300], format="table")
    ref = predict_slide(ctx_predictor, path, region=box(300, 200, 700, 500))
    assert out["n_tiles"] == ref.n_obs > 6
    cols = out["columns"]
    gene = ref.var_names[0]
    np.testing.assert_allclose(
        out["values"][:, cols.index(f"{gene}: mean")], ref[:, gene].X.ravel(), rtol=1e-4, atol=1e-5
    )
    np.testing.assert_array_equal(
        out["values"][:, cols.index("Tile: context tiles")], ref.obs["context_tiles"]
    )
