"""The tile store: tiles cut, checked and normalised once, so training never decodes slides.

Layout of a store folder::

    DIR/store.json                       format, version, settings, samples and their state
    DIR/samples/<id>/spots.h5ad          the sample (counts, positions) with per-spot QC:
                                         tissue coverage, kept, drop reason, tile index
    DIR/samples/<id>/stain.json          the stain normaliser fitted to this slide
    DIR/samples/<id>/tiles.zarr          kept tiles, (n, px, px, 3) uint8, chunked by tile
    DIR/samples/<id>/progress.json       chunks written so far (while writing)
    DIR/samples/<id>/done.json           summary, written last: the sample is complete

A sample is written chunk by chunk; ``progress.json`` is updated after each chunk, so an
interrupted run resumes at the first unwritten chunk, and a finished sample (``done.json``)
is skipped. A store refuses to mix tile settings: preparing into a store made with other
settings is an error unless ``overwrite`` is given.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from stimage._version import __version__
from stimage.constants import Key
from stimage.errors import ConfigError, InputFileNotFoundError, StimageError
from stimage.tiles._cut import (
    TileSettings,
    fit_slide_normalizer,
    iter_tiles,
    load_stain_target,
    spot_tile_qc,
    tile_qc_frame,
)
from stimage.tiles._tissue import detect_tissue

if TYPE_CHECKING:
    import anndata as ad

    from stimage.data import Dataset, SampleSpec

__all__ = ["PrepareReport", "TileStore", "prepare_dataset"]

logger = logging.getLogger(__name__)

STORE_FORMAT = "stimage-tile-store"
STORE_VERSION = 1
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
    status: str  # "done", "skipped", "resumed"
    tiles: int = 0
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    mpp: float = float("nan")
    mpp_source: str = ""
    tile_um: float = float("nan")
    seconds: float = 0.0


@dataclass
class PrepareReport:
    """What :func:`prepare_dataset` did, per sample."""

    store: Path
    samples: list[SampleReport]

    @property
    def kept(self) -> int:
        """Tiles kept over all samples."""
        return sum(s.kept for s in self.samples)

    def lines(self) -> list[str]:
        """Human-readable summary lines."""
        out = []
        for s in self.samples:
            drops = ", ".join(f"{n} {r}" for r, n in s.dropped.items()) or "none dropped"
            out.append(
                f"{s.sample_id}: {s.status}; {s.kept}/{s.tiles} tiles kept ({drops}); "
                f"{s.mpp:.4f} µm/px from {s.mpp_source}; tiles {s.tile_um:g} µm"
            )
        return out


def _safe_settings(settings: TileSettings) -> dict[str, Any]:
    return json.loads(json.dumps(settings.to_dict(), default=_json_default))


def prepare_dataset(
    dataset: Dataset,
    out: str | os.PathLike[str],
    settings: TileSettings | None = None,
    *,
    overwrite: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
    cancel: threading.Event | None = None,
    workers: int = 2,
) -> PrepareReport:
    """Cut, check and normalise the spot tiles of every sample into a tile store.

    Args:
        dataset: The samples.
        out: Store folder (created if needed).
        settings: Tile settings; the defaults when None.
        overwrite: Rebuild samples already in the store, and allow other settings.
        progress: Called as ``progress(sample_id, tiles_done, tiles_total)``.
        cancel: When set, stops after the current chunk; the store stays resumable.
        workers: Threads reading tiles.

    Raises:
        ConfigError: The store exists with other settings and ``overwrite`` is False.
        StimageError: A sample cannot be read (naming the file and the fix).
    """
    settings = settings or TileSettings()
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    manifest_path = root / "store.json"
    wanted = _safe_settings(settings)
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format") != STORE_FORMAT:
            raise ConfigError(
                f"{root}: holds a store.json that is not a stimage tile store; choose another --out"
            )
        if manifest.get("settings") != wanted:
            if not overwrite:
                raise ConfigError(
                    f"{root}: this tile store was made with other settings ({_diff(manifest.get('settings'), wanted)}); "
                    "use another --out, or --overwrite to rebuild it"
                )
            shutil.rmtree(root / "samples", ignore_errors=True)
            manifest = _new_manifest(wanted)
    else:
        manifest = _new_manifest(wanted)
    manifest.setdefault("samples", {})
    _write_json(manifest_path, manifest)

    target = None
    if settings.stain is not None:
        target = load_stain_target(settings.stain_target, settings.stain)

    reports = []
    for spec in dataset:
        if cancel is not None and cancel.is_set():
            break
        rep = _prepare_sample(spec, root, settings, target, overwrite, progress, cancel, workers)
        reports.append(rep)
        if rep.status in ("done", "skipped", "resumed"):
            manifest["samples"][spec.sample_id] = {
                "patient_id": spec.patient_id or spec.sample_id,
                "kept": rep.kept,
                "tiles": rep.tiles,
                "complete": (root / "samples" / spec.sample_id / "done.json").exists(),
            }
            _write_json(manifest_path, manifest)
    return PrepareReport(root, reports)


def _new_manifest(settings: dict[str, Any]) -> dict[str, Any]:
    return {
        "format": STORE_FORMAT,
        "version": STORE_VERSION,
        "stimage_version": __version__,
        "settings": settings,
        "samples": {},
    }


def _diff(a: Any, b: Any) -> str:
    if not isinstance(a, dict) or not isinstance(b, dict):
        return "unknown settings"
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return ", ".join(f"{k}: {a.get(k)!r} there, {b.get(k)!r} now" for k in keys[:3])


def _prepare_sample(
    spec: SampleSpec,
    root: Path,
    settings: TileSettings,
    target: Any,
    overwrite: bool,
    progress: Callable[[str, int, int], None] | None,
    cancel: threading.Event | None,
    workers: int,
) -> SampleReport:
    import zarr

    from stimage.data import check_spots_inside, open_sample_slide, sample_info

    folder = root / "samples" / spec.sample_id
    done = folder / "done.json"
    if done.exists() and not overwrite:
        d = json.loads(done.read_text())
        rep = SampleReport(
            spec.sample_id,
            "skipped",
            **{k: d[k] for k in ("tiles", "kept", "dropped", "mpp", "mpp_source", "tile_um")},
        )
        if progress:
            progress(spec.sample_id, rep.kept, rep.kept)
        return rep
    if overwrite and folder.exists():
        shutil.rmtree(folder)
    t0 = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    prog_path = folder / "progress.json"
    resumed = prog_path.exists() and (folder / "spots.h5ad").exists()

    adata = spec.load()
    meta = sample_info(adata)
    s = settings.resolved(meta.get(Key.SPOT_PITCH_UM), meta.get(Key.SPOT_DIAMETER_UM))
    slide = open_sample_slide(adata)
    try:
        check_spots_inside(adata, *slide.dimensions, where=str(slide.path))
        if resumed:
            import anndata as ad

            spots = ad.read_h5ad(folder / "spots.h5ad")
            kept_idx = np.flatnonzero(spots.obs[Key.KEPT].to_numpy(bool))
            boxes = np.asarray(spots.obsm["tile_box"])[kept_idx]
            normalizer = _load_normalizer(folder)
            start = int(json.loads(prog_path.read_text())["tiles_done"])
            arr = zarr.open_array(folder / "tiles.zarr", mode="r+")
        else:
            mask = detect_tissue(slide, s.tissue)
            qc = spot_tile_qc(
                adata.obsm[Key.SPATIAL],
                s.tile_um,
                slide.mpp,
                *slide.dimensions,
                mask,
                s.min_coverage,  # type: ignore[arg-type]
            )
            if not qc.kept.any():
                from stimage.errors import NoTissueError

                raise NoTissueError(
                    f"{slide.path}: none of the {len(qc.kept)} spot tiles has {s.min_coverage:.0%} tissue "
                    f"(median coverage {np.median(qc.coverage):.0%}); check the image matches the spots, "
                    "or lower --min-coverage"
                )
            spots = _annotate(adata, qc, s, slide.mpp, slide.mpp_source)
            kept_idx = np.flatnonzero(qc.kept)
            boxes = qc.boxes[kept_idx]
            normalizer = (
                fit_slide_normalizer(slide, mask, s, target) if target is not None else None
            )
            if normalizer is not None:
                _write_json(folder / "stain.json", normalizer.to_dict())
            spots.write_h5ad(folder / "spots.h5ad")
            arr = zarr.create_array(
                folder / "tiles.zarr",
                shape=(len(kept_idx), s.tile_px, s.tile_px, 3),
                chunks=(CHUNK, s.tile_px, s.tile_px, 3),
                dtype="uint8",
                overwrite=True,
            )
            start = 0
            _write_json(prog_path, {"tiles_done": 0, "tiles": len(kept_idx)})
        total = len(kept_idx)
        if progress:
            progress(spec.sample_id, start, total)
        for idx, tiles in iter_tiles(
            slide,
            boxes,
            s.tile_px,
            normalizer=normalizer,
            batch_size=CHUNK,
            workers=workers,
            start=start,
        ):
            arr[idx[0] : idx[-1] + 1] = tiles
            _write_json(prog_path, {"tiles_done": int(idx[-1] + 1), "tiles": total})
            if progress:
                progress(spec.sample_id, int(idx[-1] + 1), total)
            if cancel is not None and cancel.is_set():
                return SampleReport(spec.sample_id, "cancelled", total, int(idx[-1] + 1))
    finally:
        slide.close()
    kept_mask = spots.obs[Key.KEPT].to_numpy(bool)
    reasons = spots.obs.loc[~kept_mask, Key.DROP_REASON].value_counts()
    summary = {
        "sample_id": spec.sample_id,
        "tiles": len(kept_mask),
        "kept": int(kept_mask.sum()),
        "dropped": {str(k): int(v) for k, v in reasons.items() if v > 0},
        "mpp": float(sample_info(spots)[Key.MPP]),
        "mpp_source": str(sample_info(spots)[Key.MPP_SOURCE]),
        "tile_um": float(sample_info(spots)["tile_um"]),
    }
    _write_json(done, summary)
    prog_path.unlink(missing_ok=True)
    return SampleReport(
        spec.sample_id,
        "resumed" if resumed else "done",
        summary["tiles"],
        summary["kept"],
        summary["dropped"],
        summary["mpp"],
        summary["mpp_source"],
        summary["tile_um"],
        time.perf_counter() - t0,
    )


def _annotate(
    adata: ad.AnnData, qc: Any, s: TileSettings, mpp: float, mpp_source: str
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
    meta["tile_um"] = float(s.tile_um)  # type: ignore[arg-type]
    meta["tile_px"] = int(s.tile_px)
    out.uns[Key.UNS] = meta
    return out


def _load_normalizer(folder: Path) -> Any:
    p = folder / "stain.json"
    if not p.exists():
        return None
    from stimage.tiles._stain import StainNormalizer

    return StainNormalizer.from_dict(json.loads(p.read_text()))


class TileStore:
    """Read access to a tile store written by :func:`prepare_dataset`.

    Example:
        >>> store = TileStore("tiles/")  # doctest: +SKIP
        >>> spots = store.spots("B4")  # kept spots, with obs["tile_index"]  # doctest: +SKIP
        >>> tiles = store.tiles("B4")[spots.obs["tile_index"].to_numpy()[:8]]  # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        mp = self.path / "store.json"
        if not mp.exists():
            raise InputFileNotFoundError(
                f"{self.path}: not a tile store (no store.json); make one with `stimage prepare DATASET --out {self.path}`"
            )
        self.manifest = json.loads(mp.read_text())
        if self.manifest.get("format") != STORE_FORMAT:
            raise ConfigError(f"{mp}: not a stimage tile store")
        if int(self.manifest.get("version", 0)) > STORE_VERSION:
            raise ConfigError(
                f"{mp}: tile store format version {self.manifest['version']} is newer than this "
                f"stimage ({__version__}) reads; update stimage"
            )

    @property
    def settings(self) -> TileSettings:
        """The settings the tiles were made with."""
        return TileSettings.from_dict(self.manifest["settings"])

    @property
    def sample_ids(self) -> list[str]:
        """Complete samples, in the order they were prepared."""
        return [
            s
            for s, v in self.manifest.get("samples", {}).items()
            if (self.path / "samples" / s / "done.json").exists() or v.get("complete")
        ]

    def patient_of(self, sample_id: str) -> str:
        """Patient id of a sample."""
        return str(self.manifest["samples"][sample_id].get("patient_id", sample_id))

    def _folder(self, sample_id: str) -> Path:
        f = self.path / "samples" / sample_id
        if not (f / "done.json").exists():
            raise StimageError(
                f"{f}: sample {sample_id!r} is not complete in this tile store; run `stimage prepare` again to finish it"
            )
        return f

    def spots(self, sample_id: str, kept_only: bool = True) -> ad.AnnData:
        """The sample's spots with QC columns; only those with a tile unless ``kept_only`` is False."""
        import anndata as ad

        a = ad.read_h5ad(self._folder(sample_id) / "spots.h5ad")
        return a[a.obs[Key.KEPT].to_numpy(bool)].copy() if kept_only else a

    def tiles(self, sample_id: str) -> Any:
        """The sample's tiles as a lazily read ``(n, px, px, 3)`` uint8 zarr array."""
        import zarr

        return zarr.open_array(self._folder(sample_id) / "tiles.zarr", mode="r")

    def normalizer(self, sample_id: str) -> Any:
        """The stain normaliser fitted to the sample's slide, or None."""
        return _load_normalizer(self._folder(sample_id))
