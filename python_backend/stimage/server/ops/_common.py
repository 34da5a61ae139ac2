"""Checks and helpers shared by the operations: paths, regions, models, deadlines, errors."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stimage.errors import (
    ImageTooLargeError,
    InputFileNotFoundError,
    NoTissueError,
    StimageError,
    UnreadableImageError,
    UnsupportedFormatError,
)
from stimage.server._protocol import ErrorCode, ProtocolError

if TYPE_CHECKING:
    import numpy as np

    from stimage.data import Slide
    from stimage.models import Predictor, TilePredictions
    from stimage.server._context import ServerContext
    from stimage.server._jobs import Job, ModelTask
    from stimage.tiles import StainNormalizer

__all__ = [
    "JobClosed",
    "check_model",
    "confine_path",
    "deadline_of",
    "fail_from",
    "normalizer_for_image",
    "one_frame",
    "parse_region",
    "slide_info",
]

logger = logging.getLogger(__name__)


def check_model(
    server: ServerContext, params: dict[str, Any], genes: list[str] | None
) -> tuple[str, Predictor, list[str]]:
    """The model a request names (or the default) and its genes, checked.

    Raises:
        ProtocolError: ``unknown_model`` or ``unknown_gene``.
    """
    from stimage.models import UnknownGeneError

    name = params.get("model") or server.default_model
    predictor = server.models.get(name)
    if predictor is None:
        raise ProtocolError(
            ErrorCode.UNKNOWN_MODEL,
            f"no model {name!r} on this server; it has {sorted(server.models)} (see hello)",
        )
    try:
        return name, predictor, predictor.bundle.check_genes(genes)
    except UnknownGeneError as e:
        raise ProtocolError(ErrorCode.UNKNOWN_GENE, str(e)) from e


def deadline_of(server: ServerContext, params: dict[str, Any]) -> float:
    """Seconds a request may take: its ``deadline_ms`` within the server's limits."""
    limits = server.config.limits
    if "deadline_ms" in params:
        return min(int(params["deadline_ms"]) / 1000.0, limits.max_deadline_s)
    return limits.default_deadline_s


def one_frame(frames: list[bytes], k: int, what: str) -> None:
    """Check that a request carries exactly the one image frame it names."""
    if len(frames) != 1 or k != 0:
        raise ProtocolError(
            ErrorCode.BAD_REQUEST,
            f"{what} must be binary frame 0, the only frame of the request; it has "
            f"{len(frames)} frame(s)",
        )


def confine_path(path: str, roots: tuple[Path, ...]) -> Path:
    """The resolved path when it lies under an allowed root (symlinks resolved).

    Raises:
        ProtocolError: ``forbidden_path`` (no roots, relative, or outside every root),
            ``not_found``, or ``bad_request`` for what is not a regular file (a FIFO).
    """
    if not roots:
        raise ProtocolError(
            ErrorCode.FORBIDDEN_PATH,
            "this server reads no slide files; send tiles instead, or start it with --allow-root DIR",
        )
    if "\x00" in path or not os.path.isabs(path):
        raise ProtocolError(
            ErrorCode.FORBIDDEN_PATH, "slide paths must be absolute paths on the server's machine"
        )
    try:
        resolved = Path(path).resolve()
    except (OSError, RuntimeError, ValueError) as e:
        raise ProtocolError(ErrorCode.FORBIDDEN_PATH, f"cannot resolve the slide path ({e})") from e
    if not any(resolved.is_relative_to(r) for r in roots):
        raise ProtocolError(
            ErrorCode.FORBIDDEN_PATH,
            "the slide path is outside the folders this server may read (its --allow-root folders)",
        )
    if not resolved.exists():
        raise ProtocolError(ErrorCode.NOT_FOUND, f"{path}: no such slide file on the server")
    if not resolved.is_file() and not resolved.is_dir():
        raise ProtocolError(
            ErrorCode.BAD_REQUEST,
            f"{path}: not a regular file (a pipe, socket or device); name a slide file",
        )
    return resolved


def parse_region(spec: Any) -> Any:
    """The region of a slide request as a shapely geometry (None: the whole slide).

    Runs on a worker thread: counting vertices is cheap, but repairing a small invalid
    polygon is not free (see :func:`stimage.qupath.region_geometry`).
    """
    if spec is None:
        return None
    from stimage.qupath import GeoJSONError, region_geometry

    try:
        return region_geometry(spec, "params.slide.region")
    except GeoJSONError as e:
        raise ProtocolError(ErrorCode.BAD_REQUEST, str(e)) from e


def slide_info(slide: Slide, path: Path) -> dict[str, Any]:
    """The slide fields of a result: path, µm per pixel, size."""
    w, h = slide.dimensions
    return {"path": str(path), "mpp": float(slide.mpp), "width": int(w), "height": int(h)}


def fail_from(job: Job, e: BaseException) -> None:
    """End a job with the error reply that fits an exception (``internal`` for bugs)."""
    if isinstance(e, ProtocolError):
        job.fail(e.code, e.message, e.details)
    elif isinstance(e, NoTissueError):
        job.fail(ErrorCode.NO_TISSUE, str(e))
    elif isinstance(e, ImageTooLargeError):
        job.fail(ErrorCode.TOO_LARGE, str(e))
    elif isinstance(e, InputFileNotFoundError):
        job.fail(ErrorCode.NOT_FOUND, str(e))
    elif isinstance(e, UnreadableImageError | UnsupportedFormatError):
        job.fail(ErrorCode.BAD_IMAGE, str(e))
    elif isinstance(e, StimageError):
        job.fail(ErrorCode.BAD_REQUEST, str(e))
    else:
        logger.error("request %s failed", job.id, exc_info=e)
        job.fail(ErrorCode.INTERNAL, f"{type(e).__name__}: {e} (see the server log)")


def normalizer_for_image(
    server: ServerContext, job: Job, tiles: list[np.ndarray]
) -> StainNormalizer | None:
    """The model's stain normaliser fitted to a client's image (kept per ``image_id``)."""
    from stimage.server._images import pick_stain_tiles
    from stimage.tiles import StainNormalizer

    assert job.task is not None
    bundle = job.task.predictor.bundle
    method = bundle.tiles.get("stain")
    if not method:
        return None
    if not bundle.stain_target:
        raise StimageError(
            f"model {job.task.model!r} uses {method} normalisation but records no stain target"
        )
    target = StainNormalizer.from_dict(bundle.stain_target)

    def fit() -> StainNormalizer:
        return target.copy().fit_source(pick_stain_tiles(tiles))

    image_id = job.request.params.get("image_id")
    if image_id is None:
        return fit()
    return server.stain_cache.get_or_fit((job.task.model, image_id), fit)


class JobClosed(threading.Event):
    """An event that reads as set once a job is closed (cancelled, deadline, client gone)."""

    def __init__(self, job: Job) -> None:
        super().__init__()
        self._job = job

    def is_set(self) -> bool:
        return self._job.closed or super().is_set()


def joined_predictions(
    task: ModelTask,
    parts: list[tuple[int, TilePredictions | dict[str, np.ndarray]]],
    *,
    xy_um: np.ndarray | None = None,
    rows: np.ndarray | None = None,
) -> TilePredictions:
    """A job's predictions from what the device gave it, batch by batch, in tile order.

    The device gives predictions, or, for a model with spatial context, the features of
    every tile: then the tiles are predicted here, each with its neighbours' features (the
    tiles of the same request at ``xy_um``; each tile alone without positions). ``rows``
    picks the tiles returned (the others gave context only).
    """
    import numpy as np

    from stimage.models import TilePredictions

    ordered = [p for _, p in sorted(parts, key=lambda sp: sp[0])]
    preds = [p for p in ordered if isinstance(p, TilePredictions)]
    if len(preds) == len(ordered):
        pred = TilePredictions.concat(preds)
        return pred if rows is None else pred.rows(rows)
    dicts = [p for p in ordered if isinstance(p, dict)]
    feats = {k: np.concatenate([p[k] for p in dicts]) for k in dicts[0]}
    return task.predictor.predict_encoded(feats, task.genes, task.level, xy_um=xy_um, rows=rows)
