"""One slide of a cohort: predicted with ``predict-slide``'s engine, its outputs moved in whole.

:func:`predict_cohort_slide` is the unit of work, the same in-process and on a Ray worker:

1. :func:`~stimage.pipelines.predict_slide_files` writes the slide's GeoJSON, AnnData and
   heatmaps into ``OUT/work/<id>/`` beside its resumable store ``<id>.parts/`` (a slide cut
   off half-way resumes at its first missing chunk, on whichever worker takes it next);
2. the outputs and a ``run_metadata.json`` (model, its manifest hash, the slide job's
   settings) are moved into ``OUT/slides/.<id>.part-<pid>/``, which is renamed to
   ``OUT/slides/<id>/`` in one step: a slide's folder is either whole or absent;
3. the store is removed (``keep_stores`` keeps it).

The files are byte for byte what ``stimage predict-slide SLIDE --out <id>.geojson`` writes
with the same settings.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from stimage._version import __version__
from stimage.errors import ConfigError, StimageError
from stimage.pipelines._cohort_manifest import SlideSpec
from stimage.pipelines._run_report import slide_report
from stimage.pipelines._slide_files import SlideFiles, output_paths, predict_slide_files
from stimage.pipelines._slide_job import SlideJobChangedError, model_fingerprint, model_id

if TYPE_CHECKING:
    from stimage.models import ModelBundle, Predictor

__all__ = [
    "CohortSettings",
    "ModelSpec",
    "attempt_slide",
    "bundle_fingerprint",
    "cohort_paths",
    "cohort_work",
    "predict_cohort_slide",
]

logger = logging.getLogger(__name__)

#: Reads a region GeoJSON into a shapely geometry (the CLI passes its reader).
RegionReader = Callable[[Path], Any]
#: A runner's work: ``(predictor, task, progress) -> result`` (``error`` in it on failure).
Work = Callable[[Any, Any, Callable[[int, int], None] | None], dict[str, Any]]


@dataclass(frozen=True)
class ModelSpec:
    """How a worker loads the model (picklable, so a Ray worker loads its own copy once).

    Attributes:
        path: The model folder (None: the bundled default model).
        device: Encoder device (None: the best available).
        encoder_weights: Encoder name to weights file.
    """

    path: Path | None = None
    device: str | None = None
    encoder_weights: tuple[tuple[str, str], ...] = ()

    def bundle(self) -> ModelBundle:
        """The bundle alone (manifest and weights; no encoder is built)."""
        from stimage.models import default_model_path, load_bundle

        return load_bundle(self.path or default_model_path())

    def load(self) -> Predictor:
        """The model, ready to predict (encoders built: seconds)."""
        from stimage.models import Predictor

        return Predictor(
            self.bundle(), device=self.device, encoder_weights=dict(self.encoder_weights)
        )


@dataclass(frozen=True)
class CohortSettings:
    """What every slide of a cohort is predicted and written with.

    Attributes:
        genes: Genes the GeoJSON carries (None: the model's first ten); the h5ad holds all.
        heatmaps: Genes drawn as heatmap PNGs.
        level: Level of the predictive intervals.
        batch_size: Tiles per encoder batch.
        chunk_batches: Batches per chunk of a slide's resumable store.
        retries: Further attempts at a slide that failed (0: one attempt).
        keep_stores: Keep each slide's store (``OUT/work/<id>/``) after it is done.
        compress: Write ``<id>.geojson.gz`` instead of ``<id>.geojson``.
    """

    genes: tuple[str, ...] | None = None
    heatmaps: tuple[str, ...] = ()
    level: float = 0.9
    batch_size: int = 64
    chunk_batches: int = 16
    retries: int = 2
    keep_stores: bool = False
    compress: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.retries <= 100:
            raise ConfigError(f"retries must be 0 to 100, not {self.retries}")
        if self.batch_size < 1 or self.chunk_batches < 1:
            raise ConfigError("batch_size and chunk_batches must be at least 1")

    def outputs_key(self) -> dict[str, Any]:
        """What the outputs depend on (retries and stores do not change them)."""
        d = asdict(self)
        for k in ("retries", "keep_stores"):
            d.pop(k)
        return d

    def digest(self, bundle: ModelBundle) -> str:
        """Hash of the model's manifest and :meth:`outputs_key`: which ledger entries count."""
        key = json.dumps(
            {"model": bundle_fingerprint(bundle), **self.outputs_key()}, sort_keys=True, default=str
        )
        return hashlib.sha256(key.encode()).hexdigest()[:16]


def bundle_fingerprint(bundle: ModelBundle) -> str:
    """:func:`model_fingerprint` of a bundle not yet made into a predictor."""
    from types import SimpleNamespace

    return model_fingerprint(cast("Predictor", SimpleNamespace(bundle=bundle)))


def cohort_paths(out: Path, slide_id: str, compress: bool = False) -> dict[str, Path]:
    """Where a slide's outputs go: ``folder`` (final), ``staged`` GeoJSON, ``work`` folder."""
    name = slide_id + (".geojson.gz" if compress else ".geojson")
    return {
        "folder": out / "slides" / slide_id,
        "geojson": out / "slides" / slide_id / name,
        "work": out / "work" / slide_id,
        "staged": out / "work" / slide_id / name,
    }


def predict_cohort_slide(
    predictor: Predictor,
    spec: SlideSpec,
    out: Path,
    settings: CohortSettings,
    *,
    read_region: RegionReader | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Predict one slide of a cohort and move its outputs into ``OUT/slides/<id>/`` whole.

    Returns:
        ``tiles``, ``seconds``, ``model_id`` and ``folder`` of the finished slide.

    Raises:
        ConfigError: A region but no reader for it.
        StimageError, OSError: The slide cannot be predicted (corrupt, no tissue, no scale).
    """
    t0 = time.perf_counter()
    paths = cohort_paths(out, spec.id, settings.compress)
    region = None
    if spec.region is not None:
        if read_region is None:
            raise ConfigError(f"{spec.id}: a region is given but no region reader")
        region = read_region(spec.region)
    paths["work"].mkdir(parents=True, exist_ok=True)

    def predict(overwrite: bool) -> SlideFiles:
        return predict_slide_files(
            predictor,
            spec.slide,
            paths["staged"],
            region=region,
            genes=list(settings.genes) if settings.genes else None,
            heatmaps=list(settings.heatmaps),
            mpp=spec.mpp,
            level=settings.level,
            batch_size=settings.batch_size,
            chunk_batches=settings.chunk_batches,
            overwrite=overwrite,
            progress=progress,
        )

    try:
        res = predict(False)
    except SlideJobChangedError:
        # A store left by a run with other settings (the cohort's digest already decided
        # that this run's settings hold): start the slide again.
        logger.info("%s: the stored predictions are for other settings; starting again", spec.id)
        res = predict(True)
    parts, h5ad, heat_dir = output_paths(paths["staged"])
    tiles = int(res.job.state["n_tiles"])
    meta = {
        "command": "predict-slides",
        "slide_id": spec.id,
        "slide": str(spec.slide),
        "region": None if spec.region is None else str(spec.region),
        "mpp_given": spec.mpp,
        "model": str(predictor.bundle.path),
        "model_id": model_id(predictor),
        "settings": settings.outputs_key(),
        "job": res.job.state["settings"],
        "mpp": res.job.state.get("mpp"),
        "mpp_source": res.job.state.get("mpp_source"),
        "tiles": tiles,
        "stimage_version": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    report = slide_report(
        predictor,
        spec.slide,
        res,
        time.perf_counter() - t0,
        {"slide": str(spec.slide), "region": spec.region, "mpp": spec.mpp, **meta["settings"]},
        region_given=spec.region is not None,
    ).write(h5ad.with_suffix(".report.html"))
    moved = [paths["staged"], h5ad, report] + ([heat_dir] if heat_dir.is_dir() else [])
    _publish(paths["folder"], moved, meta)
    if not settings.keep_stores:
        shutil.rmtree(paths["work"], ignore_errors=True)
    elif parts.is_dir():
        (parts / "run_metadata.json").write_text(json.dumps(meta, indent=2, default=str))
    return {
        "tiles": tiles,
        "seconds": time.perf_counter() - t0,
        "model_id": meta["model_id"],
        "folder": str(paths["folder"]),
    }


def _publish(folder: Path, files: list[Path], meta: dict[str, Any]) -> None:
    """Move ``files`` and the metadata into ``folder`` in one rename (replacing an older one)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tag = f"{os.getpid()}-{time.monotonic_ns()}"
    tmp = folder.with_name(f".{folder.name}.part-{tag}")
    tmp.mkdir()
    for f in files:
        os.replace(f, tmp / f.name)
    (tmp / "run_metadata.json").write_text(json.dumps(meta, indent=2, default=str))
    old = folder.with_name(f".{folder.name}.old-{tag}")
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)


def attempt_slide(
    predictor: Predictor,
    spec: SlideSpec,
    out: Path,
    settings: CohortSettings,
    read_region: RegionReader | None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """One attempt at a slide; a failure comes back as ``{"error": ...}``, never raised.

    One slide's failure, whatever its cause, must not stop the others: its reason goes into
    the ledger and the summary (user errors as their message; anything else with the last
    frame of its traceback, for a report). KeyboardInterrupt still stops the cohort.
    """
    worker = f"{platform.node()}:{os.getpid()}"
    try:
        r = predict_cohort_slide(
            predictor, spec, out, settings, read_region=read_region, progress=progress
        )
    except (StimageError, OSError) as e:
        return {"error": f"{type(e).__name__}: {e}", "worker": worker}
    except Exception as e:  # noqa: BLE001 - a slide's failure becomes its reason in the ledger
        where = traceback.extract_tb(e.__traceback__)[-1:]
        at = f" (at {where[0].filename}:{where[0].lineno})" if where else ""
        return {"error": f"internal error {type(e).__name__}: {e}{at}", "worker": worker}
    return {**r, "worker": worker}


def cohort_work(
    predictor: Predictor,
    spec: SlideSpec,
    progress: Callable[[int, int], None] | None,
    *,
    out: Path,
    settings: CohortSettings,
    read_region: RegionReader | None,
) -> dict[str, Any]:
    """A cohort's :data:`Work`: :func:`attempt_slide` (bind the keywords with ``partial``)."""
    return attempt_slide(predictor, spec, out, settings, read_region, progress)
