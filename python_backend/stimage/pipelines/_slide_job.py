"""A resumable whole-slide prediction job with a chunked on-disk store.

:func:`run_slide_job` predicts every kept grid tile of a slide (or of a region) and writes
the results chunk by chunk into a folder::

    JOB/state.json          settings, their hash, chunk size, tile count, finished chunks
    JOB/tiles.npz           the kept grid tiles (boxes, grid rows and columns, coverage)
    JOB/chunk_00000.npz     predictions of tiles [0, chunk_tiles), written atomically
    ...
    JOB/features_<enc>.npy  with a model of spatial context: every tile's encoder features
                            (the region's tiles, then the tiles around it that give context)

Memory is bounded by one chunk. With spatial context the job runs in two passes: the encoder
writes every tile's features to disk (resumable: ``state["encoded"]`` counts the tiles done,
saved after each chunk's worth), then each chunk is predicted from its tiles' features and
their neighbours', read from the memory-mapped file.

An interrupted job (Ctrl-C, a cancel event, a crash) keeps
its finished chunks; run it again with the same settings and it resumes at the first
missing chunk. Different settings are refused unless ``overwrite``. Chunks line up with
batches, so a resumed run sees the same batches and gives the same numbers. Output options
that do not change the predictions (genes written to GeoJSON, heatmaps) are recorded apart
(``JOB/outputs.json``, :meth:`SlideJob.record_outputs`): changing them reuses the store.

:class:`SlideJob` reads a finished store back: per chunk for streaming (GeoJSON), or whole
as AnnData (``n_tiles x n_genes x 6`` float32 in memory: about 2.4 GB for 100k tiles and
1000 genes; use ``genes`` to keep it smaller).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from stimage.constants import Key
from stimage.errors import ConfigError, StimageError
from stimage.models import Predictor, TilePredictions, to_anndata
from stimage.qupath import tile_features

if TYPE_CHECKING:
    import anndata as ad

    from stimage.data import Slide
    from stimage.models import GridTiles

__all__ = [
    "SlideJob",
    "SlideJobChangedError",
    "model_fingerprint",
    "model_id",
    "run_slide_job",
    "slide_job_features",
]

logger = logging.getLogger(__name__)

STATE = "state.json"
TILES = "tiles.npz"
OUTPUTS = "outputs.json"
JOB_VERSION = 1


class SlideJobChangedError(StimageError, ValueError):
    """A job folder holds results made with other settings."""


def model_fingerprint(predictor: Predictor) -> str:
    """SHA-256 of the model's ``manifest.json`` (name and genes for a bundle not on disk)."""
    b = predictor.bundle
    if b.path is not None and (Path(b.path) / "manifest.json").is_file():
        return hashlib.sha256((Path(b.path) / "manifest.json").read_bytes()).hexdigest()
    return f"{b.name}:{','.join(b.genes)}"


def model_id(predictor: Predictor) -> str:
    """How a model is recorded in image metadata: its name and manifest hash.

    Example:
        >>> model_id(predictor)  # doctest: +SKIP
        'default sha256:3f1c0a9b2d4e'
    """
    fp = model_fingerprint(predictor)
    if len(fp) == 64 and all(c in "0123456789abcdef" for c in fp):
        return f"{predictor.bundle.name} sha256:{fp[:12]}"
    return f"{predictor.bundle.name} {hashlib.sha256(fp.encode()).hexdigest()[:12]}"


def slide_job_features(
    job: SlideJob, genes: list[str], *, select: np.ndarray | None = None
) -> Iterator[dict[str, Any]]:
    """Tile Features of a finished slide job, read chunk by chunk (memory: one chunk).

    Args:
        job: A complete :class:`stimage.pipelines.SlideJob`.
        genes: Genes whose measurements the tiles carry (stored in the job).
        select: Boolean mask over the job's tiles; only those are yielded.

    Yields:
        Tile Features named ``tile_<row>_<col>``.
    """
    t = job.tiles()
    for idx, pred in job.iter_chunks(genes):
        m = pred.measurements()
        if select is not None:
            keep = np.asarray(select)[idx]
            if not keep.any():
                continue
            idx, m = idx[keep], m.loc[keep].reset_index(drop=True)
        names = [f"tile_{r}_{c}" for r, c in zip(t["rows"][idx], t["cols"][idx], strict=True)]
        yield from tile_features(t["boxes"][idx], m, names=names)


def _settings_hash(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class SlideJob:
    """A job folder: its settings and the tiles and chunks written so far.

    Attributes:
        folder: The job folder.
        state: The contents of ``state.json``.
    """

    folder: Path
    state: dict[str, Any]

    @classmethod
    def open(cls, folder: str | os.PathLike[str]) -> SlideJob:
        """Open an existing job folder.

        Raises:
            ConfigError: The folder holds no job.
        """
        f = Path(folder)
        try:
            state = json.loads((f / STATE).read_text())
        except (OSError, ValueError) as e:
            raise ConfigError(f"{f}: not a slide prediction job ({e})") from e
        return cls(f, state)

    @property
    def genes(self) -> list[str]:
        """Genes stored, in order."""
        return list(self.state["genes"])

    @property
    def complete(self) -> bool:
        """Whether every chunk is written."""
        return bool(self.state.get("complete"))

    @property
    def n_chunks(self) -> int:
        """Number of chunks of the finished job."""
        return int(self.state["n_chunks"])

    def tiles(self) -> dict[str, np.ndarray]:
        """The kept tiles: ``boxes`` (n, 4), ``rows``, ``cols``, ``coverage``."""
        with np.load(self.folder / TILES) as z:
            return {k: z[k] for k in z.files}

    def chunk_path(self, i: int) -> Path:
        """Path of chunk ``i``."""
        return self.folder / f"chunk_{i:05d}.npz"

    def iter_chunks(
        self, genes: list[str] | None = None
    ) -> Iterator[tuple[np.ndarray, TilePredictions]]:
        """Yield ``(tile indices, predictions)`` chunk by chunk, optionally for some genes."""
        all_genes = self.genes
        cols = list(range(len(all_genes))) if genes is None else [all_genes.index(g) for g in genes]
        names = [all_genes[j] for j in cols]
        level = float(self.state["settings"]["level"])
        for i in range(self.n_chunks):
            with np.load(self.chunk_path(i)) as z:
                arrays = {
                    k: z[k][:, cols] if TilePredictions.is_gene_output(k) else z[k]
                    for k in z.files
                    if k != "indices"
                }
                indices = z["indices"]
            yield indices, TilePredictions.from_arrays(names, level, arrays)

    def to_anndata(self, genes: list[str] | None = None) -> ad.AnnData:
        """All tiles as AnnData (whole in memory: see the module notes on size)."""
        idx, parts = [], []
        for i, p in self.iter_chunks(genes):
            idx.append(i)
            parts.append(p)
        pred = TilePredictions.concat(parts)
        t = self.tiles()
        order = np.concatenate(idx)
        if not np.array_equal(order, np.arange(len(t["boxes"]))):
            raise StimageError(
                f"{self.folder}: chunks do not cover the tiles; rerun with --overwrite"
            )
        boxes = t["boxes"]
        obs = pd.DataFrame(
            {
                "x": boxes[:, 0],
                "y": boxes[:, 1],
                "width": boxes[:, 2],
                "height": boxes[:, 3],
                "grid_row": t["rows"],
                "grid_col": t["cols"],
                Key.TISSUE_COVERAGE: t["coverage"],
            },
            index=[f"tile_{r}_{c}" for r, c in zip(t["rows"], t["cols"], strict=True)],
        )
        s = self.state["settings"]
        uns = {
            "slide_path": s["slide"],
            Key.MPP: self.state["mpp"],
            Key.MPP_SOURCE: self.state.get("mpp_source"),
            "model": s["model_name"],
            "tile_um": s["tile_um"],
            "interval_level": s["level"],
            "scale": "log1p(counts per 10k)",
        }
        return to_anndata(pred, obs, boxes[:, :2] + boxes[:, 2:] / 2, uns)

    def read_outputs(self) -> dict[str, Any] | None:
        """The output options recorded by :meth:`record_outputs` (None when none are)."""
        try:
            data = json.loads((self.folder / OUTPUTS).read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def record_outputs(self, options: dict[str, Any]) -> None:
        """Record the options the outputs were last written with (genes, heatmaps ...).

        The predictions do not depend on them, so a later run that changes only these can
        rewrite the outputs from the finished store instead of predicting again.
        """
        tmp = self.folder / (OUTPUTS + ".part")
        tmp.write_text(json.dumps(options, indent=2, sort_keys=True, default=str))
        os.replace(tmp, self.folder / OUTPUTS)

    def _write_state(self) -> None:
        tmp = self.folder / (STATE + ".part")
        tmp.write_text(json.dumps(self.state, indent=2, default=str))
        os.replace(tmp, self.folder / STATE)


def save_chunk(path: Path, idx: np.ndarray, parts: list[TilePredictions]) -> None:
    p = TilePredictions.concat(parts)
    tmp = path.with_name(path.stem + ".part.npz")
    arrays: dict[str, Any] = {"indices": idx.astype(np.int64), **p.arrays(np.float32)}
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def run_slide_job(
    predictor: Predictor,
    slide_path: str | os.PathLike[str],
    folder: str | os.PathLike[str],
    *,
    region: Any | None = None,
    mpp: float | None = None,
    genes: list[str] | None = None,
    level: float = 0.9,
    batch_size: int = 64,
    chunk_batches: int = 16,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
) -> SlideJob:
    """Predict every kept grid tile of a slide into a resumable chunked store.

    Args:
        predictor: The model.
        slide_path: The slide.
        folder: Job folder (created; resumed when it holds a job with the same settings).
        region: A shapely geometry in level-0 pixels; None for all tissue.
        mpp: µm per pixel, overriding the slide's metadata.
        genes: Genes to store (default: all the model predicts).
        level: Level of the predictive intervals.
        batch_size: Tiles per batch.
        chunk_batches: Batches per chunk file.
        overwrite: Start again even when the folder holds a job with other settings or a
            finished one.
        progress: Called with (tiles done, tiles in all) after each batch.
        cancel: Set to stop after the current batch (finished chunks are kept).

    Returns:
        The finished job.

    Raises:
        SlideJobChangedError: The folder holds a job with other settings (and not overwrite).
        NoTissueError: No tile of the slide or region has enough tissue.
        StimageError: Cancelled.
    """
    from stimage.data import open_slide

    if batch_size < 1 or chunk_batches < 1:
        raise ConfigError("batch_size and chunk_batches must be at least 1")
    genes = predictor.bundle.check_genes(genes)
    folder = Path(folder)
    with open_slide(slide_path, mpp=mpp) as slide:
        settings = _job_settings(predictor, slide, genes, level, region, batch_size, chunk_batches)
        digest = _settings_hash(settings)
        job = _prepare_folder(folder, digest, settings, overwrite)
        if job is not None and job.complete:
            logger.info("%s: finished job found; nothing to predict", folder)
            return job
        grid = predictor.grid_tiles(slide, region)
        chunk_tiles = batch_size * chunk_batches
        if job is None:
            job = _start_job(folder, grid, settings, digest, genes, slide, chunk_tiles)
        elif not np.array_equal(job.tiles()["boxes"], grid.boxes):
            raise SlideJobChangedError(
                f"{folder}: the stored tiles differ from this slide's; rerun with --overwrite"
            )
        _predict_chunks(job, predictor, slide, grid, genes, level, batch_size, progress, cancel)
    job.state["complete"] = True
    job._write_state()
    return job


def _job_settings(
    predictor: Predictor,
    slide: Slide,
    genes: list[str],
    level: float,
    region: Any,
    batch_size: int,
    chunk_batches: int,
) -> dict[str, Any]:
    """Everything the stored predictions depend on (their hash decides resume or refuse)."""
    return {
        "job_version": JOB_VERSION,
        "slide": str(slide.path.resolve()),
        "slide_size": os.path.getsize(slide.path) if slide.path.is_file() else None,
        "dimensions": list(slide.dimensions),
        "mpp": float(slide.mpp),
        "model": model_fingerprint(predictor),
        "model_name": predictor.bundle.name,
        "tile_um": predictor.tile_um,
        "genes": genes,
        "level": float(level),
        "region": None if region is None else region.wkt,
        "batch_size": int(batch_size),
        "chunk_batches": int(chunk_batches),
    }


def _start_job(
    folder: Path,
    grid: GridTiles,
    settings: dict[str, Any],
    digest: str,
    genes: list[str],
    slide: Slide,
    chunk_tiles: int,
) -> SlideJob:
    """A new job folder with its tiles and state written (no chunk yet)."""
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(
        folder / TILES,
        boxes=grid.boxes,
        rows=grid.rows,
        cols=grid.cols,
        coverage=grid.coverage,
        context_boxes=grid.context_boxes,
    )
    job = SlideJob(
        folder,
        {
            "settings": settings,
            "hash": digest,
            "genes": genes,
            "mpp": float(slide.mpp),
            "mpp_source": slide.mpp_source,
            "n_tiles": len(grid.boxes),
            "chunk_tiles": chunk_tiles,
            "n_chunks": -(-len(grid.boxes) // chunk_tiles),
            "complete": False,
        },
    )
    job._write_state()
    return job


def _predict_chunks(
    job: SlideJob,
    predictor: Predictor,
    slide: Slide,
    grid: GridTiles,
    genes: list[str],
    level: float,
    batch_size: int,
    progress: Callable[[int, int], None] | None,
    cancel: threading.Event | None,
) -> None:
    """Predict the chunks not yet written, from the first missing one, saving each whole."""
    boxes = grid.boxes
    chunk_tiles = int(job.state["chunk_tiles"])
    n_chunks = job.n_chunks
    start_chunk = next((i for i in range(n_chunks) if not job.chunk_path(i).exists()), n_chunks)
    if start_chunk:
        logger.info("%s: resuming at chunk %d of %d", job.folder, start_chunk + 1, n_chunks)
    start = start_chunk * chunk_tiles
    normalizer = predictor.normalizer_for(slide, grid.mask)
    if predictor.context is not None:
        from stimage.pipelines._slide_context import predict_chunks_in_context

        predict_chunks_in_context(
            job,
            predictor,
            slide,
            grid,
            normalizer,
            (genes, level, batch_size),
            start_chunk,
            progress,
            cancel,
        )
        return
    if progress:
        progress(start, len(boxes))  # shown before the first batch, not after it
    parts: list[TilePredictions] = []
    idx_parts: list[np.ndarray] = []
    chunk = start_chunk
    for idx, pred in predictor.predict_boxes(
        slide,
        boxes[start:],
        normalizer,
        genes=genes,
        batch_size=batch_size,
        level=level,
        cancel=cancel,
    ):
        parts.append(pred)
        idx_parts.append(idx + start)
        done = int(idx[-1]) + 1 + start
        if done == len(boxes) or done % chunk_tiles == 0:
            save_chunk(job.chunk_path(chunk), np.concatenate(idx_parts), parts)
            chunk += 1
            parts, idx_parts = [], []
        if progress:
            progress(done, len(boxes))


def _prepare_folder(
    folder: Path, digest: str, settings: dict[str, Any], overwrite: bool
) -> SlideJob | None:
    """The existing job with this settings hash, or None after clearing the way."""
    if not (folder / STATE).exists():
        return None
    job = SlideJob.open(folder)
    if overwrite:
        shutil.rmtree(folder)
        return None
    if job.state.get("hash") != digest:
        old = job.state.get("settings") or {}
        changed = [k for k in settings if old.get(k) != settings[k]] or ["settings"]
        raise SlideJobChangedError(
            f"{folder}: holds a prediction made with other settings ({', '.join(changed)} "
            "changed); use the same settings to resume, or --overwrite to start again"
        )
    return job
