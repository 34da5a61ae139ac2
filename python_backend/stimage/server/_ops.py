"""Operations of protocol v1: one handler function per op, in a registry.

A handler runs on the I/O thread and must return quickly: it checks its parameters, then
replies at once (hello, ping, cancel) or admits a job and hands the work to the worker
threads (predict). Errors are raised as :class:`ProtocolError` and become error replies.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from stimage._version import __version__
from stimage.errors import (
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
    from stimage.models import Predictor
    from stimage.server._jobs import Job, Request
    from stimage.server._server import Server
    from stimage.tiles import StainNormalizer

__all__ = ["OPS", "UNAVAILABLE_OPS", "Op", "default_ops"]

logger = logging.getLogger(__name__)

Handler = Callable[["Server", "Request"], None]


@dataclass(frozen=True)
class Op:
    """A registered operation: its name and handler."""

    name: str
    handler: Handler


#: Operations planned in the protocol whose engine this server does not provide (yet).
UNAVAILABLE_OPS = {
    "cells": "this server has no cells support yet",
    "explain": "this server has no explain support yet",
}


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
        region = _region(p["slide"].get("region"))
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
    return resolved


def _region(spec: Any) -> Any:
    if spec is None:
        return None
    from shapely.errors import ShapelyError
    from shapely.geometry import box, shape

    try:
        if isinstance(spec, list):
            x, y, w, h = (float(v) for v in spec)
            return box(x, y, x + w, y + h)
        g = shape(spec).buffer(0)
    except (ValueError, TypeError, IndexError, AttributeError, KeyError, ShapelyError) as e:
        raise ProtocolError(
            ErrorCode.BAD_REQUEST, f"params.slide.region is not a valid polygon ({e})"
        ) from e
    if g.is_empty:
        raise ProtocolError(ErrorCode.BAD_REQUEST, "params.slide.region is empty")
    return g


# --------------------------------------------------------------------------- producers


def _fail_from(job: Job, e: BaseException) -> None:
    if isinstance(e, ProtocolError):
        job.fail(e.code, e.message, e.details)
    elif isinstance(e, NoTissueError):
        job.fail(ErrorCode.NO_TISSUE, str(e))
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
    from stimage.tiles import detect_tissue, grid_tile_qc, iter_tiles

    try:
        p = job.predictor
        assert p is not None
        limits = server.config.limits
        with open_slide(path, mpp=job.request.params["slide"].get("mpp")) as slide:
            if job.closed:
                return
            mask = detect_tissue(slide)
            grid, qc = grid_tile_qc(
                slide,
                mask,
                p.tile_um,
                float(p.bundle.tiles.get("min_coverage", 0.7)),
                region=region,
            )
            keep = np.flatnonzero(qc.kept)
            if not len(keep):
                raise ProtocolError(
                    ErrorCode.NO_TISSUE, "no tile of the region has enough tissue; check the region"
                )
            if len(keep) > limits.max_slide_tiles:
                raise ProtocolError(
                    ErrorCode.TOO_LARGE,
                    f"the region holds {len(keep)} tiles; this server predicts at most "
                    f"{limits.max_slide_tiles} per request: split the region",
                )
            boxes = grid.boxes[keep]
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
            normalizer = p.normalizer_for(slide, mask)
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


# --------------------------------------------------------------------------- registry


def default_ops() -> dict[str, Op]:
    """The operations of protocol v1 this package implements."""
    ops = [
        Op("hello", op_hello),
        Op("ping", op_ping),
        Op("cancel", op_cancel),
        Op("predict", op_predict),
    ]
    return {o.name: o for o in ops}


#: The default registry (copied by each server, which may add ops with ``register_op``).
OPS = default_ops()
