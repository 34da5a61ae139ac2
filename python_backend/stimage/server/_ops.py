"""Operations of protocol v1: one handler function per op, in a registry.

A handler runs on the I/O thread and must return quickly: it checks its parameters, then
replies at once (hello, ping, cancel) or admits a job and hands the work to the worker
threads (predict). Errors are raised as :class:`ProtocolError` and become error replies.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from stimage._version import __version__
from stimage.data import Slide
from stimage.errors import (
    ImageTooLargeError,
    InputFileNotFoundError,
    NoTissueError,
    StimageError,
    UnknownScaleError,
    UnreadableImageError,
    UnsupportedFormatError,
)
from stimage.server._images import decode_tile, fit_to_model, pick_stain_tiles
from stimage.server._protocol import PROTOCOL_VERSION, ErrorCode, ProtocolError, validate

if TYPE_CHECKING:
    from stimage.explain import Cells, Nuclei
    from stimage.models import CellTypeClassifier, Predictor
    from stimage.server._jobs import Job, Request
    from stimage.server._server import Server
    from stimage.tiles import StainNormalizer

__all__ = [
    "NO_NUCLEI",
    "OPS",
    "UNAVAILABLE_OPS",
    "Op",
    "cells_in_image",
    "cells_result",
    "default_ops",
    "use_cells_model",
]

logger = logging.getLogger(__name__)

Handler = Callable[["Server", "Request"], None]


@dataclass(frozen=True)
class Op:
    """A registered operation: its name and handler."""

    name: str
    handler: Handler


#: Operations planned in the protocol whose engine this server does not provide (yet).
#: (Empty: this package implements every op of protocol v1; kept for servers built without one.)
UNAVAILABLE_OPS: dict[str, str] = {}


# --------------------------------------------------------------------------- simple ops


def op_hello(server: Server, req: Request) -> None:
    """Versions, models with their genes and tile size, limits."""
    validate(req.params, "params_hello", "params")
    client = req.params.get("client")
    if client:
        logger.info("hello from %s %s", client.get("name", "?"), client.get("version", ""))
    models = []
    for name, p in server.models.items():
        info: dict[str, Any] = {
            "name": name,
            "genes": list(p.bundle.genes),
            "tile_um": p.tile_um,
            "tile_px": p.tile_px,
            "stain": p.bundle.tiles.get("stain") or None,
            "encoders": list(p.bundle.encoders),
            "default": name == server.default_model,
        }
        if p.bundle.classifier is not None:
            info["classifier_genes"] = list(p.bundle.classifier.genes)
        if p.bundle.description:
            info["description"] = p.bundle.description
        models.append(info)
    server.reply_result(
        req,
        {
            "server": "stimage",
            "version": __version__,
            "protocol": PROTOCOL_VERSION,
            "protocols": [PROTOCOL_VERSION],
            "ops": sorted(server.ops),
            "models": models,
            "limits": server.config.limits.to_dict(),
            "device": server.device,
            "slide_paths": bool(server.config.allow_roots),
        },
    )


def op_ping(server: Server, req: Request) -> None:
    """Liveness check."""
    validate(req.params, "params_ping", "params")
    server.reply_result(req, {"pong": True})


def op_cancel(server: Server, req: Request) -> None:
    """Cancel a request of the same client; it ends with a ``cancelled`` error."""
    validate(req.params, "params_cancel", "params")
    target = req.params["target"]
    job = server.find_job(req.identity, target)
    done = job is not None and job.fail(ErrorCode.CANCELLED, "cancelled by the client")
    if done:
        server.batcher.wake()
    server.reply_result(req, {"target": target, "cancelled": bool(done)})


# --------------------------------------------------------------------------- predict


def op_predict(server: Server, req: Request) -> None:
    """Predict expression for tiles sent by the client or for a region of a slide file."""
    p = req.params
    if isinstance(p, dict) and ("tiles" in p) == ("slide" in p):
        raise ProtocolError(
            ErrorCode.BAD_REQUEST,
            'params: give either "tiles" (with "mpp") or "slide", exactly one; see docs/protocol.md',
        )
    if isinstance(p, dict) and "tiles" in p and "mpp" not in p:
        raise ProtocolError(
            ErrorCode.BAD_REQUEST, 'params: "tiles" need "mpp", the µm per pixel of the tile images'
        )
    _validate_predict(p)
    limits = server.config.limits
    name = p.get("model") or server.default_model
    predictor = server.models.get(name)
    if predictor is None:
        raise ProtocolError(
            ErrorCode.UNKNOWN_MODEL,
            f"no model {name!r} on this server; it has {sorted(server.models)} (see hello)",
        )
    from stimage.models import UnknownGeneError

    try:
        genes = predictor.bundle.check_genes(p.get("genes"))
    except UnknownGeneError as e:
        raise ProtocolError(ErrorCode.UNKNOWN_GENE, str(e)) from e
    deadline = limits.default_deadline_s
    if "deadline_ms" in p:
        deadline = min(int(p["deadline_ms"]) / 1000.0, limits.max_deadline_s)
    slide_path: Path | None = None
    region = None
    if "tiles" in p:
        _check_tile_frames(p["tiles"], req.frames, limits.max_tiles)
    else:
        if req.frames:
            raise ProtocolError(ErrorCode.BAD_REQUEST, "a slide request carries no binary frames")
        slide_path = confine_path(p["slide"]["path"], server.config.allow_roots)
        region = p["slide"].get("region")
    job = server.admit(req, deadline)
    job.predictor = predictor
    job.model = name
    job.genes = genes
    job.level = float(p.get("level", 0.9))
    job.key = (name, tuple(genes), job.level)
    job.meta = {
        "format": p.get("format", "geojson"),
        "object_type": p.get("object_type", "tile"),
        "classification": p.get("classification"),
    }
    try:
        server.batcher.add(job)
        if slide_path is None:
            server.submit(_produce_tiles, server, job)
        else:
            server.submit_slide(_produce_slide, server, job, slide_path, region)
    except Exception as e:  # noqa: BLE001 - e.g. the server is stopping: this request's error
        _fail_from(job, e)


def _is_number(v: Any) -> bool:
    return type(v) in (int, float) and math.isfinite(v)


def _tile_ok(t: Any) -> bool:
    """Fast check of one tile entry; the same rules as the schema's ``tile``."""
    if type(t) is not dict or not t.keys() <= _TILE_KEYS or "frame" not in t or "box" not in t:
        return False
    f, b, name = t["frame"], t["box"], t.get("name", "")
    return (
        _is_number(f)
        and float(f).is_integer()
        and f >= 0
        and type(b) is list
        and len(b) == 4
        and all(_is_number(v) for v in b)
        and b[2] > 0
        and b[3] > 0
        and type(name) is str
        and len(name) <= 256
    )


_TILE_KEYS = frozenset(("frame", "box", "name"))


def _validate_predict(p: dict[str, Any]) -> None:
    """Schema check of predict params, with a fast path for the tiles.

    The schema validator costs about a millisecond per tile; tiles are checked by
    :func:`_tile_ok` (the same rules) and only a failing one by the schema, for its message.
    """
    tiles = p.get("tiles")
    if type(tiles) is not list or len(tiles) < 2:
        validate(p, "params_predict", "params")
        return
    for i, t in enumerate(tiles):
        if not _tile_ok(t):
            validate(t, "tile", f"params.tiles.{i}")
            raise ProtocolError(ErrorCode.BAD_REQUEST, f"params.tiles.{i} is not a valid tile")
    validate({**p, "tiles": tiles[:1]}, "params_predict", "params")


def _check_tile_frames(tiles: list[dict[str, Any]], frames: list[bytes], max_tiles: int) -> None:
    if len(tiles) > max_tiles:
        raise ProtocolError(
            ErrorCode.TOO_LARGE,
            f"{len(tiles)} tiles in one request; this server takes at most {max_tiles}: split them",
        )
    used = set()
    for i, t in enumerate(tiles):
        k = int(t["frame"])
        if k >= len(frames):
            raise ProtocolError(
                ErrorCode.BAD_REQUEST,
                f"params.tiles.{i}.frame is {k}, but the request has {len(frames)} binary frame(s) "
                "(frames count from 0, the first after the header)",
            )
        used.add(k)
    if len(used) != len(frames):
        unused = sorted(set(range(len(frames))) - used)[:5]
        raise ProtocolError(
            ErrorCode.BAD_REQUEST, f"binary frame(s) {unused} are not referenced by any tile"
        )


def confine_path(path: str, roots: tuple[Path, ...]) -> Path:
    """The resolved path when it lies under an allowed root (symlinks resolved).

    Raises:
        ProtocolError: ``forbidden_path`` (no roots, relative, or outside every root) or
            ``not_found``.
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


def _region(spec: Any) -> Any:
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


# --------------------------------------------------------------------------- producers


def _fail_from(job: Job, e: BaseException) -> None:
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
    elif isinstance(e, UnknownScaleError | StimageError):
        job.fail(ErrorCode.BAD_REQUEST, str(e))
    else:
        logger.error("request %s failed", job.id, exc_info=e)
        job.fail(ErrorCode.INTERNAL, f"{type(e).__name__}: {e} (see the server log)")


def _target(name: str, predictor: Predictor) -> StainNormalizer | None:
    from stimage.tiles import StainNormalizer

    method = predictor.bundle.tiles.get("stain")
    if not method:
        return None
    if not predictor.bundle.stain_target:
        raise StimageError(
            f"model {name!r} uses {method} normalisation but records no stain target"
        )
    return StainNormalizer.from_dict(predictor.bundle.stain_target)


def _normalizer(server: Server, job: Job, tiles: list[np.ndarray]) -> StainNormalizer | None:
    assert job.predictor is not None
    target = _target(job.model, job.predictor)
    if target is None:
        return None

    def fit() -> StainNormalizer:
        return target.copy().fit_source(pick_stain_tiles(tiles))

    image_id = job.request.params.get("image_id")
    if image_id is None:
        return fit()
    return server.stain_cache.get_or_fit((job.model, image_id), fit)


def _produce_tiles(server: Server, job: Job) -> None:
    """Decode, check, resize and normalise the tiles of a request, then queue them."""
    try:
        assert job.predictor is not None
        limits = server.config.limits
        params = job.request.params
        mpp = float(params["mpp"])
        frames = job.request.frames
        decoded = []
        for i, t in enumerate(params["tiles"]):
            if job.closed:
                return
            img = decode_tile(frames[int(t["frame"])], limits.max_tile_px, f"tile {i}")
            decoded.append(
                fit_to_model(
                    img,
                    mpp,
                    job.predictor.tile_um,
                    job.predictor.tile_px,
                    limits.scale_tolerance,
                    f"tile {i}",
                )
            )
        job.request.frames = []
        job.meta["boxes"] = np.array([t["box"] for t in params["tiles"]], dtype=np.float64)
        job.meta["names"] = [t.get("name") for t in params["tiles"]]
        norm = _normalizer(server, job, decoded)
        n = len(decoded)
        job.total = n
        step = server.config.limits.batch_size
        for b0 in range(0, n, step):
            part = decoded[b0 : b0 + step]
            if norm is not None:
                part = [norm.transform(t) for t in part]
            if not server.batcher.push(job, b0, np.stack(part), block=False):
                return
        server.batcher.finish_input(job, n)
    except Exception as e:  # noqa: BLE001 - every failure becomes this request's error reply
        _fail_from(job, e)


def _produce_slide(server: Server, job: Job, path: Path, region: Any) -> None:
    """Tile a slide's region on the model's grid and queue the normalised tiles."""
    from stimage.data import open_slide
    from stimage.errors import NoTissueError
    from stimage.tiles import iter_tiles

    try:
        p = job.predictor
        assert p is not None
        limits = server.config.limits
        region = _region(region)
        with open_slide(path, mpp=job.request.params["slide"].get("mpp")) as slide:
            if job.closed:
                return
            try:
                grid = p.grid_tiles(slide, region)
            except NoTissueError:
                raise ProtocolError(
                    ErrorCode.NO_TISSUE, "no tile of the region has enough tissue; check the region"
                ) from None
            n_tiles = len(grid.boxes)
            if n_tiles > limits.max_slide_tiles:
                raise ProtocolError(
                    ErrorCode.TOO_LARGE,
                    f"the region holds {n_tiles} tiles; this server predicts at most "
                    f"{limits.max_slide_tiles} per request: split the region",
                )
            boxes = grid.boxes
            job.meta["boxes"] = boxes
            job.meta["names"] = None
            w, h = slide.dimensions
            job.meta["slide"] = {
                "path": str(path),
                "mpp": float(slide.mpp),
                "width": int(w),
                "height": int(h),
            }
            job.total = len(boxes)
            job.progress("prepare", 0, len(boxes))
            normalizer = p.normalizer_for(slide, grid.mask)
            for idx, tiles in iter_tiles(
                slide, boxes, p.tile_px, normalizer=normalizer, batch_size=limits.batch_size
            ):
                if not server.batcher.push(job, int(idx[0]), tiles):
                    return
        server.batcher.finish_input(job, len(boxes))
    except Exception as e:  # noqa: BLE001 - every failure becomes this request's error reply
        _fail_from(job, e)


def finish_predict(job: Job) -> None:
    """Build and send the result of a job whose tiles are all predicted."""
    try:
        from stimage.models import TilePredictions

        if job.closed:
            return
        parts = [p for _, p in sorted(job.parts, key=lambda sp: sp[0])]
        pred = TilePredictions.concat(parts)
        df = pred.measurements()
        boxes = job.meta["boxes"]
        result: dict[str, Any] = {
            "model": job.model,
            "genes": list(pred.genes),
            "level": job.level,
            "n_tiles": len(df),
            "format": job.meta["format"],
        }
        if "slide" in job.meta:
            result["slide"] = job.meta["slide"]
        names = job.meta.get("names")
        frames: list[bytes] = []
        if job.meta["format"] == "geojson":
            from stimage.qupath import feature_collection, tile_features

            feats = tile_features(
                boxes,
                df,
                classification=job.meta.get("classification"),
                names=names,
                object_type=job.meta["object_type"],
            )
            result["geojson"] = feature_collection(feats)
        else:
            values = np.ascontiguousarray(df.to_numpy(dtype="<f4"))
            result["columns"] = [str(c) for c in df.columns]
            result["values"] = {"frame": 0, "dtype": "<f4", "shape": list(values.shape)}
            result["boxes"] = np.asarray(boxes, np.float64).tolist()
            result["names"] = list(names) if names is not None else [None] * len(df)
            frames.append(values.tobytes())
        job.parts = []
        job.succeed(result, frames)
    except Exception as e:  # noqa: BLE001 - every failure becomes this request's error reply
        _fail_from(job, e)


# --------------------------------------------------------------------------- cells

#: Error code of an explanation of a tile without nuclei (see docs/protocol.md).
NO_NUCLEI = getattr(ErrorCode, "NO_NUCLEI", "no_nuclei")

_CELL_MODELS: weakref.WeakKeyDictionary[Server, tuple[CellTypeClassifier | None, str]] = (
    weakref.WeakKeyDictionary()
)
_CELL_MODEL_LOCK = threading.Lock()


def use_cells_model(server: Server, folder: str | os.PathLike[str] | None = None) -> None:
    """Load the cell-type model a server's ``cells`` op uses, once, and keep it.

    Call it before :meth:`Server.start` to load at start (``stimage serve --cells-model``);
    otherwise the first ``cells`` request loads the bundled default model.

    Args:
        server: The server.
        folder: A cell-type model folder; None for the bundled default.

    Raises:
        InputFileNotFoundError: No model there (or none bundled).
        ConfigError: The model folder is invalid.
    """
    from stimage.models import default_celltype_model_path, load_celltype_model

    path = Path(folder) if folder is not None else default_celltype_model_path()
    model = load_celltype_model(path)
    with _CELL_MODEL_LOCK:
        _CELL_MODELS[server] = (model, str(path))
    logger.info("cell-type model %s loaded from %s", model.training.get("name", "?"), path)


def _cells_model(server: Server) -> CellTypeClassifier:
    with _CELL_MODEL_LOCK:
        known = _CELL_MODELS.get(server)
    if known is None:
        use_cells_model(server)
        with _CELL_MODEL_LOCK:
            known = _CELL_MODELS[server]
    model = known[0]
    assert model is not None
    return model


class _JobClosed(threading.Event):
    """An event that reads as set once a job is closed (cancelled, deadline, client gone)."""

    def __init__(self, job: Job) -> None:
        super().__init__()
        self._job = job

    def is_set(self) -> bool:
        return self._job.closed or super().is_set()


def _deadline(server: Server, p: dict[str, Any]) -> float:
    limits = server.config.limits
    if "deadline_ms" in p:
        return min(int(p["deadline_ms"]) / 1000.0, limits.max_deadline_s)
    return limits.default_deadline_s


def _one_frame(frames: list[bytes], k: int, what: str) -> None:
    if len(frames) != 1 or k != 0:
        raise ProtocolError(
            ErrorCode.BAD_REQUEST,
            f"{what} must be binary frame 0, the only frame of the request; it has "
            f"{len(frames)} frame(s)",
        )


def op_cells(server: Server, req: Request) -> None:
    """Segment and type the nuclei of an image sent by the client or of a slide region."""
    p = req.params
    validate(p, "params_cells", "params")
    slide_path: Path | None = None
    region = None
    if "image" in p:
        _one_frame(req.frames, int(p["image"]["frame"]), "params.image.frame")
    else:
        if req.frames:
            raise ProtocolError(ErrorCode.BAD_REQUEST, "a slide request carries no binary frames")
        slide_path = confine_path(p["slide"]["path"], server.config.allow_roots)
        region = p["slide"]["region"]
    job = server.admit(req, _deadline(server, p))
    try:
        if slide_path is None:
            server.submit(_run_cells, server, job, None, None)
        else:
            server.submit_slide(_run_cells, server, job, slide_path, region)
    except Exception as e:  # noqa: BLE001 - e.g. the server is stopping: this request's error
        _fail_from(job, e)


class _ImageSlide(Slide):
    """An image in memory seen as a one-level slide (its own pixels, ``mpp`` µm each)."""

    def __init__(self, rgb: np.ndarray, mpp: float) -> None:
        self._rgb = rgb
        self.level_dimensions = [(int(rgb.shape[1]), int(rgb.shape[0]))]
        super().__init__(Path("client-image"), None, "unknown")
        self.set_mpp(mpp, "user")

    def _read_level(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        return np.array(self._rgb[y : y + h, x : x + w])


def _to_full_res(nuclei: Nuclei, x: float, y: float, d: float) -> Nuclei:
    """Nuclei found in an image mapped to full-resolution pixels (``x_full = x + x_img * d``)."""
    from shapely.affinity import affine_transform

    from stimage.explain import Nuclei

    feats = nuclei.features.copy()
    feats["centroid_x"] = x + feats["centroid_x"].to_numpy(float) * d
    feats["centroid_y"] = y + feats["centroid_y"].to_numpy(float) * d
    polys = [affine_transform(g, [d, 0.0, 0.0, d, x, y]) for g in nuclei.polygons]
    info = {**nuclei.info, "origin": [x, y], "downsample": d}
    return Nuclei(polys, feats, nuclei.mpp / d, info)


def _run_cells(server: Server, job: Job, path: Path | None, region: Any) -> None:
    """Worker: segment, type and send the cells of a request."""
    from stimage.data import open_slide
    from stimage.explain import SegmentationCancelledError, detect_cells

    p = job.request.params
    cancel = _JobClosed(job)
    try:
        model = _cells_model(server) if p.get("classify", True) else None

        def progress(done: int, total: int) -> None:
            job.progress("segment", done, total)

        seg = p.get("segmenter", "classical")
        result: dict[str, Any] = {}
        if path is None:
            img = p["image"]
            rgb = decode_tile(job.request.frames[0], server.config.limits.max_tile_px, "image")
            job.request.frames = []
            mpp = float(p["mpp"])
            d = float(img.get("downsample", 1.0))
            cells = cells_in_image(
                rgb,
                mpp,
                (float(img["x"]), float(img["y"])),
                d,
                model,
                segmenter=seg,
                progress=progress,
                cancel=cancel,
            )
            result["mpp"] = mpp / d
        else:
            region = _region(region)
            with open_slide(path, mpp=p["slide"].get("mpp")) as slide:
                cells = detect_cells(
                    slide, region, model=model, segmenter=seg, progress=progress, cancel=cancel
                )
                w, h = slide.dimensions
                result["mpp"] = float(slide.mpp)
                result["slide"] = {
                    "path": str(path),
                    "mpp": float(slide.mpp),
                    "width": int(w),
                    "height": int(h),
                }
        if job.closed:
            return
        result.update(cells_result(cells, model))
        job.succeed(result)
    except SegmentationCancelledError:
        if not job.closed:
            job.fail(ErrorCode.CANCELLED, "cancelled")
    except Exception as e:  # noqa: BLE001 - every failure becomes this request's error reply
        _fail_from(job, e)


def cells_in_image(
    rgb: np.ndarray,
    mpp: float,
    origin: tuple[float, float],
    downsample: float,
    model: CellTypeClassifier | None,
    *,
    segmenter: str = "classical",
    progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
) -> Cells:
    """The cells of an image in memory (a region's pixels sent by a client).

    Args:
        rgb: ``(h, w, 3)`` uint8 image.
        mpp: µm per pixel of ``rgb``.
        origin: Full-resolution ``(x, y)`` of its top-left pixel.
        downsample: Full-resolution pixels per image pixel.
        model: Cell-type model, or None to only segment.
        segmenter: Nucleus segmentation backend.
        progress: Called with (done, total) segmentation tiles.
        cancel: Set to stop between tiles.

    Returns:
        The cells, outlines in full-resolution pixels.
    """
    from stimage.explain import detect_cells

    h, w = rgb.shape[:2]
    cells = detect_cells(
        _ImageSlide(rgb, mpp),
        (0, 0, w, h),
        model=model,
        segmenter=segmenter,
        progress=progress,
        cancel=cancel,
    )
    cells.nuclei = _to_full_res(cells.nuclei, float(origin[0]), float(origin[1]), downsample)
    return cells


def cells_result(cells: Cells, model: CellTypeClassifier | None) -> dict[str, Any]:
    """The result of ``cells`` (without ``mpp``/``slide``): counts per class, cell objects."""
    from stimage.explain._cells import display_class
    from stimage.qupath import feature_collection

    names = [] if model is None else [display_class(str(c)) for c in model.classes]
    counts = dict.fromkeys(names, 0)
    for c in cells.classes:
        if c is not None:
            counts[c] = counts.get(c, 0) + 1
    return {
        "n_cells": len(cells),
        "counts": counts,
        "classes": names,
        "cell_model": cells.model,
        "geojson": feature_collection(cells.features()),
    }


# --------------------------------------------------------------------------- explain


def op_explain(server: Server, req: Request) -> None:
    """Score the nuclei of one model tile for some genes (LIME or occlusion)."""
    p = req.params
    validate(p, "params_explain", "params")
    name = p.get("model") or server.default_model
    predictor = server.models.get(name)
    if predictor is None:
        raise ProtocolError(
            ErrorCode.UNKNOWN_MODEL,
            f"no model {name!r} on this server; it has {sorted(server.models)} (see hello)",
        )
    from stimage.models import UnknownGeneError

    try:
        genes = predictor.bundle.check_genes(p["genes"])
    except UnknownGeneError as e:
        raise ProtocolError(ErrorCode.UNKNOWN_GENE, str(e)) from e
    target = p.get("target", "mean")
    if target == "p_high":
        clf = predictor.bundle.classifier
        missing = [g for g in genes if clf is None or g not in clf.genes]
        if missing:
            raise ProtocolError(
                ErrorCode.UNKNOWN_GENE,
                f"model {name!r} has no P(high) classifier for {missing}; explain their mean "
                "(target 'mean') or pick genes from hello's classifier_genes",
            )
    slide_path: Path | None = None
    if "tile" in p:
        _one_frame(req.frames, int(p["tile"]["frame"]), "params.tile.frame")
    else:
        if req.frames:
            raise ProtocolError(ErrorCode.BAD_REQUEST, "a slide request carries no binary frames")
        slide_path = confine_path(p["slide"]["path"], server.config.allow_roots)
    job = server.admit(req, _deadline(server, p))
    job.predictor = predictor
    job.model = name
    job.genes = list(genes)
    job.level = 0.9
    job.key = (name, tuple(genes), job.level)
    try:
        server.batcher.add(job)
        if slide_path is None:
            server.submit(_run_explain, server, job, None)
        else:
            server.submit_slide(_run_explain, server, job, slide_path)
    except Exception as e:  # noqa: BLE001 - e.g. the server is stopping: this request's error
        _fail_from(job, e)


class _Closed(Exception):
    """The job closed while its perturbed tiles were on the device (cancel, deadline)."""


def _device_function(server: Server, job: Job, kind: str) -> Callable[[np.ndarray], np.ndarray]:
    """Tiles -> ``(n, genes)`` outputs, computed by the device thread through the batcher.

    Each call pushes its tiles into the job's queue of the shared :class:`Batcher` (so they
    are batched round-robin with other requests and stop within one batch on a cancel) and
    waits for their predictions.
    """
    from stimage.models import TilePredictions

    state = {"next": 0}

    def fn(tiles: np.ndarray) -> np.ndarray:
        start = state["next"]
        stop = start + len(tiles)
        state["next"] = stop
        if job.total is None or job.total < stop:
            job.total = stop
        if not server.batcher.push(job, start, np.ascontiguousarray(tiles)):
            raise _Closed
        while job.done < stop:
            if job.closed or not server.running:
                raise _Closed
            time.sleep(0.005)
        parts = sorted(job.parts, key=lambda sp: sp[0])
        job.parts = []
        pred = TilePredictions.concat([pp for _, pp in parts])
        if kind == "mean":
            cols = [list(pred.genes).index(g) for g in job.genes]
            return np.asarray(pred.mean, dtype=np.float64)[:, cols]
        return np.column_stack([pred.p_high[g] for g in job.genes]).astype(np.float64)

    return fn


def _run_explain(server: Server, job: Job, path: Path | None) -> None:
    """Worker: read the tile, segment its nuclei, run LIME or occlusion, send the nuclei."""
    import pandas as pd

    from stimage.constants import Measurement
    from stimage.explain import NoNucleiError, explain_lime, explain_occlusion, segment_tile
    from stimage.explain._segment import _is_blank
    from stimage.qupath import feature_collection, polygon_features

    p = job.request.params
    predictor = job.predictor
    try:
        assert predictor is not None
        px = predictor.tile_px
        result: dict[str, Any] = {}
        if path is None:
            box = [float(v) for v in p["tile"]["box"]]
            mpp = float(p["mpp"])
            rgb = decode_tile(job.request.frames[0], server.config.limits.max_tile_px, "tile")
            job.request.frames = []
            tile = fit_to_model(
                rgb,
                mpp,
                predictor.tile_um,
                px,
                server.config.limits.scale_tolerance,
                "tile",
            )
            job.progress("prepare", 0, 1)
            if _is_blank(rgb):  # glass: segment_tile fails on a uniform image
                raise NoNucleiError(
                    "this tile is blank (glass), so it has no nuclei to explain; pick a tile "
                    "with cells"
                )
            nuclei = segment_tile(
                rgb, mpp, origin=(box[0], box[1]), downsample=box[2] / rgb.shape[1]
            )
            # No nuclei is this request's answer, before any stain fitting (a glass tile).
            labels = _tile_labels(nuclei, box, px)
            norm = _normalizer(server, job, [tile])
            if norm is not None:
                tile = norm.transform(tile)
        else:
            tile, nuclei, box, result["slide"] = _slide_tile(server, job, path)
            labels = _tile_labels(nuclei, box, px)
        if job.closed:
            return
        job.progress("prepare", 1, 1)
        kind = p.get("target", "mean")
        targets = list(job.genes) if kind == "mean" else [f"{g} P(high)" for g in job.genes]
        fn = _device_function(server, job, kind)
        method = p.get("method", "lime")
        step = server.config.limits.batch_size
        if method == "lime":
            job.total = int(p.get("num_samples", 1000))
            exp = explain_lime(
                tile,
                labels,
                fn,
                targets,
                num_samples=job.total,
                seed=int(p.get("seed", 0)),
                batch_size=step,
            )
        else:
            job.total = len(np.unique(labels[labels > 0])) + 1
            exp = explain_occlusion(tile, labels, fn, targets, batch_size=step)
        if job.closed:
            return
        names = [
            Measurement.lime(t) if method == "lime" else f"Occlusion: {t}" for t in exp.targets
        ]
        cols: dict[str, np.ndarray] = {n: exp.scores[:, j] for j, n in enumerate(names)}
        if "area_um2" in nuclei.features:
            cols[Measurement.NUCLEUS_AREA] = nuclei.features["area_um2"].to_numpy(float)
        feats = polygon_features(nuclei.polygons, pd.DataFrame(cols), classifications="Nucleus")
        result.update(
            {
                "model": job.model,
                "method": method,
                "targets": list(exp.targets),
                "measurements": names,
                "prediction": [float(v) for v in exp.prediction],
                "fit_r2": [float(v) if np.isfinite(v) else None for v in exp.fit_r2],
                "box": box,
                "n_nuclei": len(nuclei),
                "num_samples": int(exp.num_samples),
                "geojson": feature_collection(feats),
            }
        )
        job.parts = []
        job.succeed(result)
    except _Closed:
        return
    except NoNucleiError as e:
        job.fail(NO_NUCLEI, str(e))
    except Exception as e:  # noqa: BLE001 - every failure becomes this request's error reply
        if job.closed:
            return
        _fail_from(job, e)


def _tile_labels(nuclei: Nuclei, box: list[float], px: int) -> np.ndarray:
    """The nuclei rasterised on the model's input grid; ``NoNucleiError`` when there are none."""
    from stimage.explain import NoNucleiError

    labels = nuclei.label_image(box[0], box[1], px, px, downsample=box[2] / px)
    if not len(nuclei) or not labels.any():
        raise NoNucleiError(
            "no nuclei were found in this tile, so nothing can be explained; pick a tile with cells"
        )
    return labels


def _slide_tile(
    server: Server, job: Job, path: Path
) -> tuple[np.ndarray, Nuclei, list[float], dict[str, Any]]:
    """The normalised model tile of a slide box, its nuclei, the box and the slide's info."""
    from stimage.data import open_slide
    from stimage.explain import segment_nuclei
    from stimage.tiles import detect_tissue, iter_tiles

    predictor = job.predictor
    assert predictor is not None
    spec = job.request.params["slide"]
    box = [float(v) for v in spec["box"]]
    with open_slide(path, mpp=spec.get("mpp")) as slide:
        w, h = slide.dimensions
        x, y, bw, bh = box
        if x + bw <= 0 or y + bh <= 0 or x >= w or y >= h:
            raise ProtocolError(
                ErrorCode.BAD_REQUEST,
                f"params.slide.box lies outside the slide ({w} x {h} px); give full-resolution "
                "pixel coordinates",
            )
        side = predictor.tile_um / float(slide.mpp)
        tol = server.config.limits.scale_tolerance
        if abs(bw - side) > tol * side or abs(bh - side) > tol * side:
            raise ProtocolError(
                ErrorCode.WRONG_SCALE,
                f"params.slide.box is {bw:g} x {bh:g} px; the model's {predictor.tile_um:g} µm "
                f"tile is {side:.0f} px square on this slide",
                {"tile_um": predictor.tile_um, "tile_px": predictor.tile_px},
            )
        job.progress("prepare", 0, 1)
        normalizer = predictor.normalizer_for(slide, detect_tissue(slide))
        ((_, tiles),) = list(
            iter_tiles(
                slide,
                np.array([box], dtype=np.float64),
                predictor.tile_px,
                normalizer=normalizer,
                batch_size=1,
            )
        )
        nuclei = segment_nuclei(slide, (x, y, bw, bh))
        info = {"path": str(path), "mpp": float(slide.mpp), "width": int(w), "height": int(h)}
    return tiles[0], nuclei, box, info


# --------------------------------------------------------------------------- registry


def default_ops() -> dict[str, Op]:
    """The operations of protocol v1 this package implements."""
    ops = [
        Op("hello", op_hello),
        Op("ping", op_ping),
        Op("cancel", op_cancel),
        Op("predict", op_predict),
        Op("cells", op_cells),
        Op("explain", op_explain),
    ]
    return {o.name: o for o in ops}


#: The default registry (copied by each server, which may add ops with ``register_op``).
OPS = default_ops()
