"""Predict over every image of a QuPath project and put the results into it as QuPath objects.

:func:`annotate_project` works against :class:`ProjectLike` (paquo, GeoJSON files, or a test
double). Per image: the user's annotations (or the tissue) are tiled and predicted with the
resumable slide job of ``stimage predict-slide`` (:func:`stimage.pipelines.run_slide_job`); the
tiles become QuPath tiles below the smallest annotation holding their centre (as QuPath
places detections), cells (when asked) below theirs; earlier STImage objects are replaced
(never the user's), the model is recorded in the image's metadata and the image is saved
before the next one starts. An image done with the same model and settings is skipped; a bad
image (missing file, no pixel size, no tissue) is reported and the rest go on.

:func:`slide_job_features` and :func:`region_cell_features` turn a finished slide job and a
region into Features; ``stimage predict-slide`` writes its GeoJSON with the same two.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from stimage._version import __version__
from stimage.constants import DEFAULT_GEOJSON_GENES, ObjectMarker
from stimage.errors import StimageError
from stimage.pipelines._cells import region_cell_features
from stimage.pipelines._project_jobs import ImageJob, run_image_jobs
from stimage.pipelines._project_report import ImageResult
from stimage.pipelines._slide_job import (
    SlideJob,
    SlideJobChangedError,
    model_id,
    run_slide_job,
    slide_job_features,
)
from stimage.qupath import (
    ObjectGroup,
    ProjectImage,
    ProjectLike,
    QuPathObject,
    annotation_feature,
    is_stimage_id,
    select_images,
)

if TYPE_CHECKING:
    from stimage.models import Predictor
    from stimage.pipelines._cohort import Runner
    from stimage.pipelines._cohort_slide import ModelSpec

__all__ = ["annotate_project"]

logger = logging.getLogger(__name__)

#: Image metadata keys the batch sets (QuPath's "Metadata" of a project entry).
MODEL_KEY = ObjectMarker.MODEL
SETTINGS_KEY = "stimage.settings"
OBJECTS_KEY = "stimage.objects"
VERSION_KEY = "stimage.version"
#: Name of the annotation that holds the tiles of an image predicted over its tissue.
TISSUE_REGION_NAME = "STImage region"


def _settings_id(genes: list[str], cells: bool, tissue: bool, level: float) -> str:
    s = {"genes": genes, "cells": bool(cells), "tissue": bool(tissue), "level": float(level)}
    return hashlib.sha256(json.dumps(s, sort_keys=True).encode()).hexdigest()[:12]


def _skip_reason(image: ProjectImage, model: str, settings: str, overwrite: bool) -> str | None:
    """Why an image is skipped (None: predict it)."""
    done = image.metadata.get(MODEL_KEY)
    if done is None or overwrite:
        return None
    if done == model and image.metadata.get(SETTINGS_KEY) == settings:
        return "already done with this model"
    other = "other settings (genes, cells, regions)" if done == model else done
    return f"done earlier with {other}; --overwrite to replace"


@dataclass
class _Run:
    """Settings of one batch (resolved once)."""

    predictor: Predictor
    genes: list[str]
    cells: bool
    tissue: bool
    overwrite: bool
    mpp: float | None
    level: float
    batch_size: int
    chunk_batches: int
    work_dir: Path
    model: str
    settings: str
    progress: Callable[[str, int, int], None] | None
    cancel: threading.Event | None
    cell_model: Any = None
    #: A planning pass (``runner``): each image's slide job is collected here, not run.
    plans: list[ImageJob] | None = None
    #: Images whose slide job failed on the runner: their reason (not tried again here).
    lost: dict[str, str] = field(default_factory=dict)


def annotate_project(
    project: ProjectLike,
    predictor: Predictor,
    *,
    work_dir: str | Path,
    images: Sequence[str] = (),
    genes: list[str] | None = None,
    cells: bool = False,
    tissue: bool = False,
    overwrite: bool = False,
    dry_run: bool = False,
    mpp: float | None = None,
    level: float = 0.9,
    batch_size: int = 64,
    chunk_batches: int = 16,
    cell_model: Any = None,
    progress: Callable[[str, int, int], None] | None = None,
    on_image: Callable[[int, int, ProjectImage], None] | None = None,
    on_result: Callable[[ImageResult], None] | None = None,
    cancel: threading.Event | None = None,
    runner: tuple[Runner, ModelSpec] | None = None,
) -> list[ImageResult]:
    """Predict expression (and cells) over the images of a QuPath project and add the objects.

    Args:
        project: The project (:class:`PaquoProject`, :class:`GeoJSONDirProject`, ...).
        predictor: The expression model.
        work_dir: Folder for the resumable per-image prediction stores (each removed once its
            image is saved; an interrupted image resumes from its store).
        images: Names, globs or ids of the images (all when empty); see :func:`select_images`.
        genes: Genes whose measurements the tiles carry (default: the model's first
            :data:`DEFAULT_GEOJSON_GENES`).
        cells: Also detect and type cells in each annotation.
        tissue: Predict over the tissue even where an image has annotations.
        overwrite: Redo images done before (their STImage objects are replaced).
        dry_run: Only say what would be done.
        mpp: µm per pixel for images the project has no pixel size for.
        level: Level of the predictive intervals.
        batch_size: Tiles per encoder batch.
        chunk_batches: Batches per chunk of the resumable stores (what a resumed image keeps).
        cell_model: Cell-type model for ``cells`` (default: the bundled one).
        progress: Called with (label, done, total) while predicting.
        on_image: Called with (position, count, image) as each image starts.
        on_result: Called with each image's result as soon as it is known.
        cancel: Set to stop after the current batch; finished images stay saved.
        runner: Predict the images' slide jobs first on this runner (e.g. Ray workers that
            load the model once each) into ``work_dir``, then add each image's objects here
            as without it (see :func:`run_image_jobs`).

    Returns:
        One result per selected image, in project order.

    Raises:
        ProjectError: An image name matches nothing.
        UnknownGeneError: A gene the model does not predict.
        KeyboardInterrupt: Interrupted (finished images stay saved).
    """
    chosen = select_images(project.images(), list(images))
    geo_genes = predictor.bundle.check_genes(
        genes if genes else list(predictor.bundle.genes[:DEFAULT_GEOJSON_GENES])
    )
    if cells and cell_model is None and not dry_run:
        from stimage.models import default_celltype_model_path, load_celltype_model

        cell_model = load_celltype_model(default_celltype_model_path())
    mid = model_id(predictor)
    run = _Run(
        predictor=predictor,
        genes=geo_genes,
        cells=cells,
        tissue=tissue,
        overwrite=overwrite,
        mpp=mpp,
        level=level,
        batch_size=batch_size,
        chunk_batches=chunk_batches,
        work_dir=Path(work_dir),
        model=mid,
        settings=_settings_id(geo_genes, cells, tissue, level),
        progress=progress,
        cancel=cancel,
        cell_model=cell_model,
    )
    if runner is not None and not dry_run:
        _jobs_first(project, chosen, run, runner)
    results = []
    for k, image in enumerate(chosen):
        if on_image is not None:
            on_image(k + 1, len(chosen), image)
        res = _one_image(project, image, run, dry_run)
        results.append(res)
        if on_result is not None:
            on_result(res)
    if run.work_dir.is_dir() and not any(run.work_dir.iterdir()):
        run.work_dir.rmdir()
    return results


def _jobs_first(
    project: ProjectLike, chosen: list[ProjectImage], run: _Run, runner: tuple[Runner, ModelSpec]
) -> None:
    """Plan every image's slide job (as the batch would run it) and run them on ``runner``."""
    run.plans = []
    for image in chosen:
        _one_image(project, image, run, False)
    plans, run.plans = run.plans, None
    run.lost = run_image_jobs(runner[0], runner[1], plans, run.level, run.batch_size,
                              run.chunk_batches, progress=run.progress)  # fmt: skip


def _one_image(project: ProjectLike, image: ProjectImage, run: _Run, dry_run: bool) -> ImageResult:
    t0 = time.perf_counter()
    res = ImageResult(image.id, image.name, "failed")
    reason = _skip_reason(image, run.model, run.settings, run.overwrite)
    if reason is not None:
        res.status, res.note = "skipped", reason
        return res
    problem = _file_problem(image)
    if problem is not None:
        res.note = problem
        return res
    try:
        _predict_image(project, image, run, res, dry_run)
    except (StimageError, OSError) as e:
        if run.cancel is not None and run.cancel.is_set():
            raise
        res.status, res.note = "failed", str(e)
        logger.warning("%s: %s", image.name, e)
    res.seconds = time.perf_counter() - t0
    return res


def _file_problem(image: ProjectImage) -> str | None:
    if image.problem is not None:
        return image.problem
    if image.path is None:
        return "no image file"
    if not image.path.exists():
        return f"image file missing: {image.path} (relink it in QuPath, or restore the file)"
    return None


def _user_regions(
    project: ProjectLike, image: ProjectImage, res: ImageResult
) -> list[QuPathObject]:
    """The user's polygon annotations, smallest first (tiles prefer the most specific one)."""
    found = [a for a in project.annotations(image) if not is_stimage_id(a.id)]
    regions = [
        a
        for a in found
        if a.geometry is not None
        and a.geometry.geom_type in ("Polygon", "MultiPolygon")
        and a.geometry.area > 0
    ]
    if len(regions) < len(found):
        res.note = f"{len(found) - len(regions)} annotation(s) without area left out"
    return sorted(regions, key=lambda a: a.geometry.area if a.geometry is not None else 0.0)


def _predict_image(
    project: ProjectLike, image: ProjectImage, run: _Run, res: ImageResult, dry_run: bool
) -> None:
    from shapely.ops import unary_union

    from stimage.data import open_slide
    from stimage.errors import UnknownScaleError

    with open_slide(image.path, mpp=image.mpp or run.mpp) as slide:  # type: ignore[arg-type]
        try:
            slide_mpp = slide.mpp
        except UnknownScaleError:
            slide_mpp = None
    if slide_mpp is None:
        raise UnknownScaleError(
            "no pixel size: set it in QuPath (Image tab, Pixel width/height in µm) or give --mpp"
        )
    mpp = image.mpp or run.mpp
    regions = [] if run.tissue else _user_regions(project, image, res)
    if (
        not regions
        and not run.tissue
        and image.annotation_count
        and not project.reads_annotations(image)
    ):
        res.note = (
            f"{image.annotation_count} annotation(s) in the project need QuPath to read "
            "(or --regions-dir); used the tissue"
        )
    res.regions = f"{len(regions)} annotation(s)" if regions else "tissue"
    if run.cells and not regions and not res.note:
        res.note = "no annotations: tiles over the tissue, no cells (cells need annotations)"
    if not run.overwrite:
        earlier = project.count_stimage_objects(image)
        if earlier:
            res.status = "skipped"
            res.note = (
                f"holds {earlier} STImage objects from elsewhere; --overwrite to replace them"
            )
            return
    area = unary_union([r.geometry for r in regions]) if regions else None
    if run.plans is not None:  # a planning pass: the job is done elsewhere first
        folder = (run.work_dir / f"image-{image.id}").absolute()  # as workers elsewhere see it
        run.plans.append(ImageJob(folder.name, image.path, area, mpp, folder))  # type: ignore[arg-type]
        return
    if dry_run:
        res.status = "to do"
        return
    job = _run_job(image, run, area, mpp)
    boxes = job.tiles()["boxes"]
    groups = _groups(image, run, job, boxes, regions, mpp, res)
    project.replace_objects(image, groups)
    project.set_metadata(
        image,
        {
            MODEL_KEY: run.model,
            SETTINGS_KEY: run.settings,
            OBJECTS_KEY: f"{res.tiles} tiles" + (f", {res.cells} cells" if run.cells else ""),
            VERSION_KEY: __version__,
        },
    )
    project.save(image)
    res.status = "done"
    shutil.rmtree(job.folder, ignore_errors=True)


def _label(
    progress: Callable[[str, int, int], None] | None, label: str
) -> Callable[[int, int], None] | None:
    """A (done, total) callback reporting under ``label``."""
    if progress is None:
        return None
    return lambda done, total: progress(label, done, total)


def _run_job(image: ProjectImage, run: _Run, area: Any, mpp: float | None) -> SlideJob:
    folder = run.work_dir / f"image-{image.id}"
    if folder.name in run.lost:
        raise StimageError(run.lost[folder.name])

    def go(overwrite: bool) -> SlideJob:
        return run_slide_job(
            run.predictor,
            image.path,  # type: ignore[arg-type]
            folder,
            region=area,
            mpp=mpp,
            level=run.level,
            batch_size=run.batch_size,
            chunk_batches=run.chunk_batches,
            overwrite=overwrite,
            progress=_label(run.progress, image.name),
            cancel=run.cancel,
        )

    try:
        return go(False)
    except SlideJobChangedError:
        logger.info("%s: the stored predictions are for other settings; starting again", image.name)
        return go(True)


def _groups(
    image: ProjectImage,
    run: _Run,
    job: SlideJob,
    boxes: np.ndarray,
    regions: list[QuPathObject],
    mpp: float | None,
    res: ImageResult,
) -> Iterator[ObjectGroup]:
    """The image's new objects, produced lazily (tiles read from the job as they are added)."""
    if not regions:
        yield ObjectGroup(
            _tissue_annotation(boxes, run.model),
            _count(slide_job_features(job, run.genes), res, "tiles"),
        )
        return
    owner = _assign_tiles(boxes, [r.geometry for r in regions])
    done: list[Any] = []
    for k, r in enumerate(regions):
        feats = _count(slide_job_features(job, run.genes, select=owner == k), res, "tiles")
        cells: Iterator[dict[str, Any]] = iter(())
        if run.cells:
            cells = _count(_cells_of(image, run, r.geometry, list(done), mpp), res, "cells")
        done.append(r.geometry)
        yield ObjectGroup(r.id, _chain(feats, cells))
    if (owner < 0).any():
        yield ObjectGroup(
            None, _count(slide_job_features(job, run.genes, select=owner < 0), res, "tiles")
        )


def _chain(*parts: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for p in parts:
        yield from p


def _count(
    features: Iterator[dict[str, Any]], res: ImageResult, what: str
) -> Iterator[dict[str, Any]]:
    for f in features:
        setattr(res, what, getattr(res, what) + 1)
        yield f


def _cells_of(
    image: ProjectImage, run: _Run, geometry: Any, done: list[Any], mpp: float | None
) -> Iterator[dict[str, Any]]:
    """Cells of an annotation, leaving out smaller annotations already done (nested ones)."""
    from shapely.ops import unary_union

    from stimage.data import open_slide

    area = geometry.difference(unary_union(done)) if done else geometry
    if area.is_empty or area.area <= 0:
        return
    with open_slide(image.path, mpp=mpp) as slide:  # type: ignore[arg-type]
        yield from region_cell_features(
            slide,
            area,
            run.cell_model,
            progress=_label(run.progress, f"{image.name} cells"),
            cancel=run.cancel,
        )


def _assign_tiles(boxes: np.ndarray, polygons: list[Any]) -> np.ndarray:
    """Index of the annotation each tile belongs to, -1 for none.

    As QuPath places a detection (by its centroid): the first polygon (the batch orders them
    smallest first) that contains the tile's centre; a tile whose centre is in none goes to
    the polygon it overlaps most.
    """
    import shapely

    if not len(boxes):
        return np.zeros(0, dtype=np.int64)
    b = np.asarray(boxes, dtype=np.float64)
    cx, cy = b[:, 0] + b[:, 2] / 2, b[:, 1] + b[:, 3] / 2
    owner = np.full(len(b), -1, dtype=np.int64)
    for k, p in enumerate(polygons):
        owner[(owner < 0) & shapely.contains_xy(p, cx, cy)] = k
    rest = np.flatnonzero(owner < 0)
    if len(rest):
        tiles = shapely.box(
            b[rest, 0], b[rest, 1], b[rest, 0] + b[rest, 2], b[rest, 1] + b[rest, 3]
        )
        overlap = np.stack([shapely.area(shapely.intersection(tiles, p)) for p in polygons])
        best = overlap.argmax(axis=0)
        owner[rest] = np.where(overlap.max(axis=0) > 0, best, -1)
    return owner


def _tissue_annotation(boxes: np.ndarray, model: str) -> dict[str, Any]:
    """A locked annotation around the tiles of an image predicted over its tissue."""
    import shapely
    from shapely.ops import unary_union

    b = np.asarray(boxes, dtype=np.float64)
    outline = unary_union(shapely.box(b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]))
    return annotation_feature(
        outline,
        name=TISSUE_REGION_NAME,
        classification=TISSUE_REGION_NAME,
        locked=True,
        extra={ObjectMarker.TASK: "expression", ObjectMarker.MODEL: model},
    )
