"""Spatial context: ring means over any layout, and the same context in every prediction path."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from shapely.geometry import box

from _synth import render_he, write_pyramid_tiff
from conftest import FAST
from stimage.errors import ConfigError
from stimage.models import (
    MAX_NEIGHBOURS,
    ModelBundle,
    Predictor,
    SpatialContext,
    load_bundle,
)
from stimage.pipelines import predict_slide, run_slide_job
from stimage.tiles import TileStore
from stimage.training import train_model

CTX = SpatialContext((300.0, 500.0))


def _grid(rows: int, cols: int, pitch: float) -> np.ndarray:
    r, c = np.mgrid[0:rows, 0:cols]
    return np.column_stack([c.ravel() * pitch, r.ravel() * pitch]).astype(float)


def test_rings_on_a_square_grid_and_a_visium_hexagon() -> None:
    xy = _grid(9, 9, 200.0)
    nb = CTX.neighbours(xy)
    centre = 4 * 9 + 4
    i = int(np.flatnonzero(nb.rows == centre)[0])
    ring = nb.ring[i][nb.ring[i] >= 0]
    # 200 µm pitch: 8 neighbours within 300 µm (4 at 200, 4 at 283), 12 more within 500 µm.
    assert (ring == 0).sum() == 8 and (ring == 1).sum() == 12
    assert nb.count[0] == 3 + 4  # a corner: 3 in ring 1; 2 at 400 and 2 at 447 µm in ring 2
    # Visium: 100 µm between neighbouring spots on a hexagon; rings of the same µm.
    r, c = np.mgrid[0:21, 0:21]
    hexa = np.column_stack(
        [(c + 0.5 * (r % 2)).ravel() * 100.0, r.ravel() * 100.0 * np.sqrt(3) / 2]
    )
    centre = 10 * 21 + 10
    nbh = CTX.neighbours(hexa, np.array([centre]))
    d = np.linalg.norm(hexa[nbh.index[0][nbh.ring[0] >= 0]] - hexa[centre], axis=1)
    inside = np.linalg.norm(hexa - hexa[centre], axis=1)
    assert (nbh.ring[0] >= 0).sum() == ((inside > 0) & (inside <= 500 + 1e-6)).sum() == 90
    assert d.max() <= 500 + 1e-6


def test_ring_means_fallback_and_rows() -> None:
    rng = np.random.default_rng(0)
    xy = np.vstack([_grid(5, 5, 200.0), [[10_000.0, 10_000.0]]])
    f = rng.normal(size=(len(xy), 3)).astype(np.float32)
    x, n = CTX.augment(f, xy)
    assert x.shape == (len(xy), CTX.width(3))
    np.testing.assert_allclose(x[:, :3], f)
    # The centre tile: ring 1 = its 8 neighbours' mean.
    c = 12
    d = np.linalg.norm(xy - xy[c], axis=1)
    np.testing.assert_allclose(x[c, 3:6], f[(d > 0) & (d <= 300)].mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(x[c, 6:9], f[(d > 300) & (d <= 500)].mean(axis=0), rtol=1e-5)
    # A lone tile is itself in every ring, and says so.
    assert n[-1] == 0
    np.testing.assert_allclose(x[-1], np.tile(f[-1], 3))
    # Some rows only, from a memory map: the same numbers.
    rows = np.array([3, 12, 25])
    sub, n_sub = CTX.augment(f, xy, rows)
    np.testing.assert_allclose(sub, x[rows], rtol=1e-6)
    np.testing.assert_array_equal(n_sub, n[rows])


def test_bounded_and_checked_input() -> None:
    xy = np.zeros((MAX_NEIGHBOURS * 3, 2))  # every tile at one place
    nb = CTX.neighbours(xy)
    assert nb.count.max() <= MAX_NEIGHBOURS
    for bad in ((), (500.0, 300.0), (0.0,), (float("nan"),), (1e9,), tuple(range(1, 11))):
        with pytest.raises(ConfigError, match="context rings"):
            SpatialContext(tuple(float(v) for v in bad))
    with pytest.raises(ConfigError, match="finite"):
        CTX.neighbours(np.array([[0.0, np.nan]]))
    with pytest.raises(ConfigError, match="unknown to this stimage"):
        SpatialContext.from_dict({"kind": "graph", "rings_um": [1]})


def test_fuzz_positions() -> None:
    rng = np.random.default_rng(7)
    for _ in range(40):
        n = int(rng.integers(1, 300))
        xy = rng.uniform(0, rng.choice([1.0, 500.0, 1e5]), size=(n, 2))
        if rng.random() < 0.3:
            xy[rng.integers(0, n, n // 2)] = xy[0]  # duplicated positions
        f = rng.normal(size=(n, 4)).astype(np.float32)
        x, cnt = CTX.augment(f, xy)
        assert x.shape == (n, 12) and np.isfinite(x).all()
        assert ((cnt >= 0) & (cnt <= MAX_NEIGHBOURS)).all()


# -- a model with context, in every prediction path ------------------------------------------


@pytest.fixture(scope="module")
def ctx_bundle(store3: TileStore) -> ModelBundle:
    return train_model(store3, dataclasses.replace(FAST, context=CTX, name="ctx"), ["S1", "S2"])


@pytest.fixture(scope="module")
def ctx_predictor(ctx_bundle: ModelBundle) -> Predictor:
    return Predictor(ctx_bundle, device="cpu")


@pytest.fixture(scope="module")
def wsi(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("ctx_wsi")
    return write_pyramid_tiff(d / "wsi.tif", render_he(1000, 1400, seed=5), mpp=2.0)


def test_bundle_records_and_reloads_its_context(ctx_bundle: ModelBundle, tmp_path: Path) -> None:
    path = ctx_bundle.save(tmp_path / "m")
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["context"] == {"kind": "ring_means", "rings_um": [300.0, 500.0]}
    assert load_bundle(path).context == CTX
    pipe = ctx_bundle.components[0].ensemble.pipeline
    assert pipe is not None and pipe.mean is not None
    assert len(pipe.mean) == CTX.width(ctx_bundle.components[0].encoder["feature_dim"])


def test_tiles_without_positions_are_predicted_alone(ctx_predictor: Predictor) -> None:
    tiles = np.stack([render_he(64, 64, np.ones((64, 64), bool), seed=s) for s in range(4)])
    alone = ctx_predictor.predict_tiles(tiles)
    assert (alone["context_tiles"] == 0).all()
    far = np.array([[0.0, 0.0], [1e4, 0], [2e4, 0], [3e4, 0]])
    np.testing.assert_allclose(ctx_predictor.predict_tiles(tiles, xy_um=far).mean, alone.mean)
    near = np.array([[0.0, 0.0], [200.0, 0], [400.0, 0], [600.0, 0]])
    together = ctx_predictor.predict_tiles(tiles, xy_um=near)
    assert together["context_tiles"].tolist() == [2, 3, 3, 2]
    assert not np.allclose(together.mean, alone.mean)


def test_region_reads_its_surroundings(ctx_predictor: Predictor, wsi: Path) -> None:
    # 200 µm tiles = 100 px at 2 µm/px. The small region's grid is that of the large one.
    small = predict_slide(ctx_predictor, wsi, region=box(500, 400, 900, 700))
    large = predict_slide(ctx_predictor, wsi, region=box(100, 0, 1300, 1000))
    assert small.n_obs == 12
    key = lambda a: [(round(x), round(y)) for x, y in zip(a.obs["x"], a.obs["y"], strict=True)]  # noqa: E731
    where = {k: i for i, k in enumerate(key(large))}
    idx = [where[k] for k in key(small)]
    np.testing.assert_allclose(small.X, large.X[idx], rtol=1e-5, atol=1e-6)
    # The edge tiles got the same neighbours as inside the large region (up to 20 each).
    np.testing.assert_array_equal(small.obs["context_tiles"], large.obs["context_tiles"].iloc[idx])
    assert small.obs["context_tiles"].min() >= 12


def test_slide_job_matches_and_resumes(ctx_predictor: Predictor, wsi: Path, tmp_path: Path) -> None:
    region = box(300, 200, 1100, 800)
    ref = predict_slide(ctx_predictor, wsi, region=region)

    def stop(done: int, total: int) -> None:
        if done >= 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_slide_job(
            ctx_predictor,
            wsi,
            tmp_path / "job",
            region=region,
            batch_size=2,
            chunk_batches=1,
            progress=stop,
        )
    job = run_slide_job(
        ctx_predictor, wsi, tmp_path / "job", region=region, batch_size=2, chunk_batches=1
    )
    assert job.state["encoded"] > 0 and (tmp_path / "job" / "features_test_tiny_cnn.npy").exists()
    a = job.to_anndata()
    np.testing.assert_allclose(a.X, ref.X, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(a.obs["context_tiles"], ref.obs["context_tiles"])


def test_only_the_tiles_allowed_give_context() -> None:
    """Spots under the tissue threshold are predicted but give no context (as in training)."""
    xy = _grid(3, 3, 200.0)
    f = np.arange(9.0)[:, None]
    among = np.ones(9, bool)
    among[[1, 3]] = False  # two of the centre's ring-1 neighbours
    x, n = CTX.augment(f, xy, np.array([4, 1]), among)
    assert n.tolist() == [
        6,
        7,
    ]  # the centre: its 8 but 2; tile 1 (itself not allowed): 8 others but tile 3
    np.testing.assert_allclose(x[0, 1], np.mean([0, 2, 5, 6, 7, 8]))
    none = np.zeros(9, bool)
    x0, n0 = CTX.augment(f, xy, None, none)
    assert (n0 == 0).all() and np.allclose(x0, np.tile(f, 3))
