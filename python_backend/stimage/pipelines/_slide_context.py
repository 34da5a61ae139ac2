"""The two passes of a slide job for a model with spatial context.

Every tile's encoder features go to disk first (``JOB/features_<encoder>.npy``, a memory map;
``state["encoded"]`` counts the tiles done, saved after each chunk's worth, so an interrupted
job resumes where the encoder stopped); then each chunk of the region's tiles is predicted
from its tiles' features and their neighbours', read from the map. Memory stays that of a
chunk and its neighbours, whatever the slide's size.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from stimage.errors import StimageError

if TYPE_CHECKING:
    from stimage.data import Slide
    from stimage.models import GridTiles, Predictor
    from stimage.pipelines._slide_job import SlideJob
    from stimage.tiles import StainNormalizer

__all__ = ["predict_chunks_in_context"]


def predict_chunks_in_context(
    job: SlideJob,
    predictor: Predictor,
    slide: Slide,
    grid: GridTiles,
    normalizer: StainNormalizer | None,
    what: tuple[list[str], float, int],
    start_chunk: int,
    progress: Callable[[int, int], None] | None,
    cancel: threading.Event | None,
) -> None:
    """Two passes: every tile's features to disk (resumable), then chunks with context."""
    from stimage.pipelines._slide_job import save_chunk

    genes, level, batch_size = what
    every = np.concatenate([grid.boxes, grid.context_boxes.reshape(-1, 4)])
    n, n_all = len(grid.boxes), len(every)
    chunk_tiles = int(job.state["chunk_tiles"])
    maps = _feature_maps(job, predictor, n_all)
    done = int(job.state.get("encoded", 0)) if start_chunk == 0 else n_all
    if progress:
        progress(min(done, n), n)  # shown before the first batch, not after it
    for idx, feats in predictor.encode_boxes(
        slide, every[done:], normalizer, batch_size=batch_size, cancel=cancel
    ):
        for k, v in feats.items():
            maps[k][done + idx] = v
        end = done + int(idx[-1]) + 1
        if end == n_all or (end - done) % chunk_tiles == 0:
            for m in maps.values():
                m.flush()
            job.state["encoded"] = end
            job._write_state()
        if progress:
            progress(min(end, n), n)
    job.state["encoded"] = n_all
    job._write_state()
    xy = (every[:, :2] + every[:, 2:] / 2) * slide.mpp
    for chunk in range(start_chunk, job.n_chunks):
        if cancel is not None and cancel.is_set():
            raise StimageError("prediction cancelled")
        rows = np.arange(chunk * chunk_tiles, min((chunk + 1) * chunk_tiles, n))
        parts = [
            predictor.predict_encoded(maps, genes, level, xy_um=xy, rows=rows[b : b + batch_size])
            for b in range(0, len(rows), batch_size)
        ]
        save_chunk(job.chunk_path(chunk), rows, parts)
    if progress:
        progress(n, n)


def _feature_maps(job: SlideJob, predictor: Predictor, n: int) -> dict[str, np.memmap[Any, Any]]:
    """The job's on-disk feature arrays, one per encoder (created at the first pass)."""
    maps: dict[str, np.memmap[Any, Any]] = {}
    for name, enc in predictor.encoders.items():
        path = job.folder / f"features_{name}.npy"
        d = int(enc.spec.feature_dim)
        if path.exists() and job.state.get("encoded"):
            m = np.load(path, mmap_mode="r+")
            if m.shape == (n, d):
                maps[name] = m
                continue
            job.state["encoded"] = 0
        maps[name] = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
    return maps
