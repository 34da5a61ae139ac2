"""Writing one sample into a tile store: spot QC, the slide's stain fit, chunked tiles.

A sample is written chunk by chunk; ``progress.json`` is updated after each chunk, so an
interrupted run resumes at the first unwritten chunk, and ``done.json``, written last,
marks the sample complete. The store's layout is described in :mod:`stimage.tiles._store`.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from stimage.constants import Key
from stimage.errors import ConfigError, NoTissueError
from stimage.tiles._cut import (
    SpotTileQC,
    TileSettings,
    fit_slide_normalizer,
    iter_tiles,
    spot_tile_qc,
    tile_qc_frame,
)
from stimage.tiles._tissue import detect_tissue

if TYPE_CHECKING:
    import anndata as ad

    from stimage.data import SampleSpec, Slide
    from stimage.tiles._stain import StainNormalizer

#: Tiles per zarr chunk, and per progress record.
CHUNK = 32


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=_json_default))
    os.replace(tmp, path)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


@dataclass
class SampleReport:
    """What preparing one sample did."""

    sample_id: str
    status: str  # "done", "skipped", "resumed" or "cancelled"
    tiles: int = 0
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    mpp: float = float("nan")
    mpp_source: str = ""
    tile_um: float = float("nan")
    seconds: float = 0.0


#: Fields of ``done.json`` besides the sample id, as in :class:`SampleReport`.
_DONE_FIELDS = ("tiles", "kept", "dropped", "mpp", "mpp_source", "tile_um")


@dataclass
class _SampleWork:
    """A sample ready for its tiles: spot table, boxes to read, normaliser, output array."""

    spots: ad.AnnData
    boxes: np.ndarray
    normalizer: StainNormalizer | None
    tiles: Any  # the zarr array of kept tiles
    start: int  # index of the first tile still to write


def _prepare_sample(
    spec: SampleSpec,
    root: Path,
    settings: TileSettings,
    target: StainNormalizer | None,
    overwrite: bool,
    progress: Callable[[str, int, int], None] | None,
    cancel: threading.Event | None,
    workers: int,
) -> SampleReport:
    """Prepare one sample: skip it when finished, resume it when interrupted, else cut it."""
    from stimage.data import check_spots_inside, open_sample_slide, sample_info

    folder = root / "samples" / spec.sample_id
    if (folder / "done.json").exists() and not overwrite:
        return _skipped_sample(spec.sample_id, folder, progress)
    if overwrite and folder.exists():
        shutil.rmtree(folder)
    t0 = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    resumed = (folder / "progress.json").exists() and (folder / "spots.h5ad").exists()

    adata = spec.load()
    meta = sample_info(adata)
    s = settings.resolved(meta.get(Key.SPOT_PITCH_UM), meta.get(Key.SPOT_DIAMETER_UM))
    slide = open_sample_slide(adata)
    try:
        check_spots_inside(adata, *slide.dimensions, where=str(slide.path))
        work = _resume_sample(folder) if resumed else _start_sample(folder, adata, slide, s, target)
        stopped_at = _write_tiles(
            spec.sample_id, slide, work, folder, s.tile_px, progress, cancel, workers
        )
    finally:
        slide.close()
    if stopped_at is not None:
        return SampleReport(spec.sample_id, "cancelled", len(work.boxes), stopped_at)
    return _finish_sample(spec.sample_id, folder, work.spots, "resumed" if resumed else "done", t0)


def _skipped_sample(
    sample_id: str, folder: Path, progress: Callable[[str, int, int], None] | None
) -> SampleReport:
    """The report of a sample finished earlier, read from its ``done.json``."""
    done = json.loads((folder / "done.json").read_text())
    rep = SampleReport(sample_id, "skipped", **{k: done[k] for k in _DONE_FIELDS})
    if progress:
        progress(sample_id, rep.kept, rep.kept)
    return rep


def _resume_sample(folder: Path) -> _SampleWork:
    """Pick up an interrupted sample at its first unwritten chunk."""
    import anndata as ad
    import zarr

    spots = ad.read_h5ad(folder / "spots.h5ad")
    kept_idx = np.flatnonzero(spots.obs[Key.KEPT].to_numpy(bool))
    return _SampleWork(
        spots=spots,
        boxes=np.asarray(spots.obsm["tile_box"])[kept_idx],
        normalizer=_load_normalizer(folder),
        tiles=zarr.open_array(folder / "tiles.zarr", mode="r+"),
        start=int(json.loads((folder / "progress.json").read_text())["tiles_done"]),
    )


def _start_sample(
    folder: Path, adata: ad.AnnData, slide: Slide, s: TileSettings, target: StainNormalizer | None
) -> _SampleWork:
    """Tissue QC of the spot tiles, the slide's stain fit, and an empty tile array.

    Raises:
        NoTissueError: No spot tile has enough tissue.
    """
    import zarr

    tile_um = _resolved_tile_um(s)
    mask = detect_tissue(slide, s.tissue)
    qc = spot_tile_qc(
        adata.obsm[Key.SPATIAL], tile_um, slide.mpp, *slide.dimensions, mask, s.min_coverage
    )
    if not qc.kept.any():
        raise NoTissueError(
            f"{slide.path}: none of the {len(qc.kept)} spot tiles has {s.min_coverage:.0%} tissue "
            f"(median coverage {np.median(qc.coverage):.0%}); check the image matches the spots, "
            "or lower --min-coverage"
        )
    spots = _annotate(adata, qc, tile_um, s.tile_px, slide.mpp, slide.mpp_source)
    kept_idx = np.flatnonzero(qc.kept)
    normalizer = fit_slide_normalizer(slide, mask, s, target) if target is not None else None
    if normalizer is not None:
        _write_json(folder / "stain.json", normalizer.to_dict())
    spots.write_h5ad(folder / "spots.h5ad")
    tiles = zarr.create_array(
        folder / "tiles.zarr",
        shape=(len(kept_idx), s.tile_px, s.tile_px, 3),
        chunks=(CHUNK, s.tile_px, s.tile_px, 3),
        dtype="uint8",
        overwrite=True,
    )
    _write_json(folder / "progress.json", {"tiles_done": 0, "tiles": len(kept_idx)})
    return _SampleWork(spots, qc.boxes[kept_idx], normalizer, tiles, start=0)


def _resolved_tile_um(s: TileSettings) -> float:
    if s.tile_um is None:
        raise ConfigError("the tile size is unknown for this sample; give it with --tile-um")
    return float(s.tile_um)


def _write_tiles(
    sample_id: str,
    slide: Slide,
    work: _SampleWork,
    folder: Path,
    tile_px: int,
    progress: Callable[[str, int, int], None] | None,
    cancel: threading.Event | None,
    workers: int,
) -> int | None:
    """Read, normalise and store the remaining tiles chunk by chunk, recording progress.

    Returns:
        The number of tiles written when ``cancel`` stopped it, or None when it ran through.
    """
    total = len(work.boxes)
    if progress:
        progress(sample_id, work.start, total)
    for idx, tiles in iter_tiles(
        slide,
        work.boxes,
        tile_px,
        normalizer=work.normalizer,
        batch_size=CHUNK,
        workers=workers,
        start=work.start,
    ):
        written = int(idx[-1] + 1)
        work.tiles[idx[0] : written] = tiles
        _write_json(folder / "progress.json", {"tiles_done": written, "tiles": total})
        if progress:
            progress(sample_id, written, total)
        if cancel is not None and cancel.is_set():
            return written
    return None


def _finish_sample(
    sample_id: str, folder: Path, spots: ad.AnnData, status: str, t0: float
) -> SampleReport:
    """Write ``done.json`` (the sample is complete) and drop ``progress.json``."""
    from stimage.data import sample_info

    kept_mask = spots.obs[Key.KEPT].to_numpy(bool)
    reasons = spots.obs.loc[~kept_mask, Key.DROP_REASON].value_counts()
    info = sample_info(spots)
    rep = SampleReport(
        sample_id,
        status,
        tiles=len(kept_mask),
        kept=int(kept_mask.sum()),
        dropped={str(k): int(v) for k, v in reasons.items() if v > 0},
        mpp=float(info[Key.MPP]),
        mpp_source=str(info[Key.MPP_SOURCE]),
        tile_um=float(info["tile_um"]),
    )
    _write_json(
        folder / "done.json", {"sample_id": sample_id, **{k: getattr(rep, k) for k in _DONE_FIELDS}}
    )
    (folder / "progress.json").unlink(missing_ok=True)
    rep.seconds = time.perf_counter() - t0
    return rep


def _annotate(
    adata: ad.AnnData, qc: SpotTileQC, tile_um: float, tile_px: int, mpp: float, mpp_source: str
) -> ad.AnnData:
    frame = tile_qc_frame(adata, qc)
    out = adata.copy()
    for c in frame.columns:
        out.obs[c] = frame[c].array
    tile_index = np.full(out.n_obs, -1, dtype=np.int64)
    tile_index[np.flatnonzero(qc.kept)] = np.arange(int(qc.kept.sum()))
    out.obs[Key.TILE_INDEX] = tile_index
    out.obsm["tile_box"] = qc.boxes
    meta = dict(out.uns[Key.UNS])
    meta[Key.MPP] = float(mpp)
    meta[Key.MPP_SOURCE] = mpp_source
    meta["tile_um"] = float(tile_um)
    meta["tile_px"] = int(tile_px)
    out.uns[Key.UNS] = meta
    return out


def _load_normalizer(folder: Path) -> StainNormalizer | None:
    p = folder / "stain.json"
    if not p.exists():
        return None
    from stimage.tiles._stain import StainNormalizer

    return StainNormalizer.from_dict(json.loads(p.read_text()))
