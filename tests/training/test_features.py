from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stimage.data import load_dataset
from stimage.encoders import create_encoder
from stimage.tiles import TileSettings, TileStore, prepare_dataset
from stimage.training._features import extract_features, feature_cache_dir


@pytest.fixture
def store(legacy_st_two: Path, tmp_path: Path) -> TileStore:
    prepare_dataset(
        load_dataset(legacy_st_two), tmp_path / "store", TileSettings(tile_px=64, stain=None)
    )
    return TileStore(tmp_path / "store")


def test_features_match_direct_encoding_and_are_cached(store: TileStore) -> None:
    enc = create_encoder("test_tiny_cnn", random_init=True, device="cpu")
    seen: list[tuple[str, int, int]] = []
    feats = extract_features(
        store, enc, batch_size=16, progress=lambda s, d, t: seen.append((s, d, t))
    )
    assert set(feats) == {"S1", "S2"}
    for sid in ("S1", "S2"):
        tiles = np.asarray(store.tiles(sid)[:])
        np.testing.assert_allclose(feats[sid], enc.encode(tiles), rtol=1e-4, atol=1e-5)
    folder = feature_cache_dir(store, enc)
    assert (folder / "S1.npy").exists() and folder.parent == store.path / "features"
    # Second call: loaded from the cache, not recomputed.
    calls = []
    real = enc.encode_batches
    enc.encode_batches = lambda *a, **k: calls.append(1) or real(*a, **k)  # type: ignore[method-assign]
    again = extract_features(store, enc)
    assert not calls
    np.testing.assert_array_equal(again["S2"], feats["S2"])


def test_cache_key_changes_with_the_encoder(store: TileStore) -> None:
    a = create_encoder("test_tiny_cnn", random_init=True, device="cpu")
    b = create_encoder("test_tiny_vit", random_init=True, device="cpu")
    assert feature_cache_dir(store, a) != feature_cache_dir(store, b)
