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
is skipped (see :mod:`stimage.tiles._store_sample`). A store has one set of tile settings:
preparing into a store made with other settings is an error unless ``overwrite`` is given
and the samples being prepared are all the samples of the store; ``overwrite`` with some of
the samples rebuilds only those and leaves the others, and their entries, as they are.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stimage._version import __version__
from stimage.constants import Key
from stimage.errors import ConfigError, InputFileNotFoundError, StimageError
from stimage.tiles._cut import TileSettings, load_stain_target
from stimage.tiles._store_sample import (
    SampleReport,
    _json_default,
    _load_normalizer,
    _prepare_sample,
    _write_json,
)

if TYPE_CHECKING:
    import anndata as ad

    from stimage.data import Dataset
    from stimage.tiles._stain import StainNormalizer

__all__ = ["PrepareReport", "TileStore", "prepare_dataset"]

logger = logging.getLogger(__name__)

STORE_FORMAT = "stimage-tile-store"
STORE_VERSION = 1


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

    Only the samples of ``dataset`` are touched: with ``overwrite``, those are rebuilt and
    every other sample of the store stays as it is, with its entry in ``store.json``.

    Args:
        dataset: The samples.
        out: Store folder (created if needed).
        settings: Tile settings; the defaults when None.
        overwrite: Rebuild the samples of ``dataset`` that are already in the store; with
            other settings than the store's, rebuild the whole store, which is allowed
            only when ``dataset`` holds every sample of the store.
        progress: Called as ``progress(sample_id, tiles_done, tiles_total)``.
        cancel: When set, stops after the current chunk; the store stays resumable.
        workers: Threads reading tiles.

    Raises:
        ConfigError: The store exists with other settings and ``overwrite`` is False, or it
            also holds samples that ``dataset`` does not (a store has one set of settings).
        StimageError: A sample cannot be read (naming the file and the fix).
    """
    settings = settings or TileSettings()
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    specs = list(dataset)
    preparing = [spec.sample_id for spec in specs]
    manifest = _open_manifest(root, _safe_settings(settings), preparing, overwrite)

    target = None
    if settings.stain is not None:
        target = load_stain_target(settings.stain_target, settings.stain)

    reports = []
    for spec in specs:
        if cancel is not None and cancel.is_set():
            break
        entry = manifest["samples"].get(spec.sample_id)
        if overwrite and entry is not None:
            entry["complete"] = False  # its folder is about to be rebuilt
            _write_json(root / "store.json", manifest)
        rep = _prepare_sample(spec, root, settings, target, overwrite, progress, cancel, workers)
        reports.append(rep)
        if rep.status in ("done", "skipped", "resumed"):
            manifest["samples"][spec.sample_id] = {
                "patient_id": spec.patient_id or spec.sample_id,
                "kept": rep.kept,
                "tiles": rep.tiles,
                "complete": (root / "samples" / spec.sample_id / "done.json").exists(),
            }
            _write_json(root / "store.json", manifest)
    return PrepareReport(root, reports)


def _open_manifest(
    root: Path, wanted: dict[str, Any], preparing: list[str], overwrite: bool
) -> dict[str, Any]:
    """The store's manifest, checked against the settings wanted (written back to disk).

    Other settings than the store's are an error without ``overwrite``; with it, the whole
    store is rebuilt, but only when ``preparing`` covers every sample in it: deleting
    samples the caller did not ask for would lose them silently.
    """
    manifest_path = root / "store.json"
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format") != STORE_FORMAT:
            raise ConfigError(
                f"{root}: holds a store.json that is not a stimage tile store; choose another --out"
            )
        if manifest.get("settings") != wanted:
            diff = _diff(manifest.get("settings"), wanted)
            if not overwrite:
                raise ConfigError(
                    f"{root}: this tile store was made with other settings ({diff}); "
                    "use another --out, or --overwrite to rebuild it"
                )
            others = _other_samples(root, manifest, preparing)
            if others:
                raise ConfigError(
                    f"{root}: this tile store was made with other settings ({diff}) and also "
                    f"holds {', '.join(others)}, which are not being prepared now; a store has one "
                    "set of settings, so nothing was changed. To redo only the samples given, "
                    "use the store's settings; to rebuild the whole store with the new settings, "
                    "prepare every sample; or use another --out"
                )
            shutil.rmtree(root / "samples", ignore_errors=True)
            manifest = _new_manifest(wanted)
    else:
        manifest = _new_manifest(wanted)
    manifest.setdefault("samples", {})
    _write_json(manifest_path, manifest)
    return manifest


def _other_samples(root: Path, manifest: dict[str, Any], preparing: list[str]) -> list[str]:
    """Samples of the store (listed in its manifest or with a folder) not in ``preparing``."""
    folders = root / "samples"
    on_disk = sorted(p.name for p in folders.iterdir() if p.is_dir()) if folders.is_dir() else []
    held = list(dict.fromkeys([*manifest.get("samples", {}), *on_disk]))
    wanted = set(preparing)
    return [s for s in held if s not in wanted]


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
    return ", ".join(
        f"{k} {_shown(k, a.get(k))} in the store, {_shown(k, b.get(k))} now" for k in keys[:3]
    )


def _shown(key: str, value: Any) -> str:
    """A setting as people read it (a tile size of None is the spot pitch)."""
    if value is None and key == "tile_um":
        return "the spot pitch (default)"
    return repr(value)


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

    def normalizer(self, sample_id: str) -> StainNormalizer | None:
        """The stain normaliser fitted to the sample's slide, or None."""
        return _load_normalizer(self._folder(sample_id))
