"""Encoder features of a tile store, extracted once and cached on disk.

Features live beside the tiles they come from::

    STORE/features/<encoder>-<key>/<sample>.npy

where ``key`` hashes the encoder's weights (SHA-256 or file identity) and the store's tile
settings, so a different encoder, weights file or tiling never reuses stale features. A
store folder that cannot be written falls back to ``$STIMAGE_CACHE/features``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

from stimage.errors import StimageError

if TYPE_CHECKING:
    from stimage.encoders import Encoder
    from stimage.tiles import TileStore

__all__ = ["extract_features", "feature_cache_dir"]

logger = logging.getLogger(__name__)


def _encoder_key(encoder: Encoder, store: TileStore) -> str:
    ident = encoder.weights_sha256
    if ident is None and encoder.weights_path:
        st = Path(encoder.weights_path).stat()
        ident = f"{Path(encoder.weights_path).name}|{st.st_size}|{st.st_mtime_ns}"
    payload = json.dumps(
        {
            "encoder": encoder.spec.to_dict(),
            "weights": ident or "random",
            "tiles": store.manifest["settings"],
        },
        sort_keys=True,
    )
    return hashlib.sha1(payload.encode()).hexdigest()[:12]


def feature_cache_dir(store: TileStore, encoder: Encoder) -> Path:
    """Folder of an encoder's cached features for a store."""
    name = f"{encoder.spec.name}-{_encoder_key(encoder, store)}"
    primary = store.path / "features" / name
    try:
        primary.mkdir(parents=True, exist_ok=True)
        probe = primary / ".write-test"
        probe.touch()
        probe.unlink()
        return primary
    except OSError:
        from stimage.data import cache_dir

        fallback = (
            cache_dir()
            / "features"
            / hashlib.sha1(str(store.path.resolve()).encode()).hexdigest()[:12]
            / name
        )
        fallback.mkdir(parents=True, exist_ok=True)
        return fallback


class _TileArray(Protocol):
    """What :func:`_batches` reads: an array of tiles sliced along its first axis (zarr, numpy)."""

    def __getitem__(self, key: slice, /) -> npt.ArrayLike: ...


def _batches(tiles: _TileArray, n: int, batch_size: int) -> Iterator[np.ndarray]:
    """Read batches of tiles from a zarr array one step ahead of the encoder."""

    def read(start: int) -> np.ndarray:
        return np.asarray(tiles[start : start + batch_size])

    starts = list(range(0, n, batch_size))
    if not starts:
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        fut = pool.submit(read, starts[0])
        for nxt in [*starts[1:], None]:
            batch = fut.result()
            if nxt is not None:
                fut = pool.submit(read, nxt)
            yield batch


def extract_features(
    store: TileStore,
    encoder: Encoder,
    sample_ids: list[str] | None = None,
    *,
    batch_size: int = 32,
    progress: Callable[[str, int, int], None] | None = None,
    cancel: threading.Event | None = None,
) -> dict[str, np.ndarray]:
    """Features of every kept tile of the store's samples, in tile-index order.

    Cached features are loaded; missing ones are computed and saved.

    Args:
        store: The tile store.
        encoder: The encoder.
        sample_ids: Samples (default: all complete samples).
        batch_size: Tiles per forward pass.
        progress: Called as ``progress(sample_id, tiles_done, tiles_total)``.
        cancel: When set, stops between batches (nothing partial is cached).

    Returns:
        sample id -> ``(n_tiles, feature_dim)`` float32 array.
    """
    folder = feature_cache_dir(store, encoder)
    meta = folder / "encoder.json"
    if not meta.exists():
        meta.write_text(
            json.dumps(
                {
                    "encoder": encoder.spec.to_dict(),
                    "weights": encoder.weights_path,
                    "sha256": encoder.weights_sha256,
                },
                indent=2,
            )
        )
    out: dict[str, np.ndarray] = {}
    for sid in sample_ids or store.sample_ids:
        path = folder / f"{sid}.npy"
        tiles = store.tiles(sid)
        n = int(tiles.shape[0])
        if path.exists():
            feats = np.load(path)
            if feats.shape == (n, encoder.feature_dim):
                out[sid] = feats
                if progress:
                    progress(sid, n, n)
                continue
            logger.warning(
                "cached features %s have shape %s, expected %s; recomputing",
                path,
                feats.shape,
                (n, encoder.feature_dim),
            )
        parts = []
        done = 0
        for feats in encoder.encode_batches(_batches(tiles, n, batch_size)):
            parts.append(feats)
            done += len(feats)
            if progress:
                progress(sid, done, n)
            if cancel is not None and cancel.is_set():
                raise StimageError("feature extraction cancelled")
        arr = np.concatenate(parts) if parts else np.zeros((0, encoder.feature_dim), np.float32)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, arr.astype(np.float32))
        os.replace(tmp, path)
        out[sid] = arr
    return out
