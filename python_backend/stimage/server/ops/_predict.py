"""``predict``: expression of tiles a client sent, or of a region of a slide the server reads.

The handler (I/O thread) checks the request and admits a job; a producer (worker thread)
decodes and normalises the tiles, or tiles the region with the pipelines' grid rule, and
pushes them to the device batcher; :func:`finish_predict` builds the result once every tile
is predicted.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from stimage.server._executor import WAIT
from stimage.server._images import decode_tile, fit_to_model
from stimage.server._jobs import ModelTask, PredictOutput
from stimage.server._protocol import ErrorCode, ProtocolError, validate
from stimage.server.ops._common import (
    check_model,
    confine_path,
    deadline_of,
    fail_from,
    joined_predictions,
    normalizer_for_image,
    parse_region,
    slide_info,
)

if TYPE_CHECKING:
    from stimage.models import TilePredictions
    from stimage.server._context import ServerContext
    from stimage.server._jobs import Job, Request

__all__ = ["finish_predict", "op_predict", "tile_ok"]

_TILE_KEYS = frozenset(("frame", "box", "name", "context_only"))


def op_predict(server: ServerContext, req: Request) -> None:
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
    _validate(p)
    name, predictor, genes = check_model(server, p, p.get("genes"))
    slide_path: Path | None = None
    if "tiles" in p:
        _check_tile_frames(p["tiles"], req.frames, server.config.limits.max_tiles)
    else:
        if req.frames:
            raise ProtocolError(ErrorCode.BAD_REQUEST, "a slide request carries no binary frames")
        slide_path = confine_path(p["slide"]["path"], server.config.allow_roots)
    job = server.admit(req, deadline_of(server, p))
    job.task = ModelTask(predictor, name, genes, float(p.get("level", 0.9)))
    job.output = PredictOutput(
        format=p.get("format", "geojson"),
        object_type=p.get("object_type", "tile"),
        classification=p.get("classification"),
    )
    try:
        server.batcher.add(job)
        if slide_path is None:
            server.submit(job, _produce_tiles, server, job)
        else:
            server.submit_slide(
                job, _produce_slide, server, job, slide_path, p["slide"].get("region")
            )
    except Exception as e:  # noqa: BLE001 - e.g. the server is stopping: this request's error
        fail_from(job, e)


def _is_number(v: Any) -> bool:
    return type(v) in (int, float) and math.isfinite(v)


def tile_ok(t: Any) -> bool:
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
        and type(t.get("context_only", False)) is bool
    )


def _validate(p: dict[str, Any]) -> None:
    """Schema check of predict params, with a fast path for the tiles.

    The schema validator costs about a millisecond per tile; tiles are checked by
    :func:`tile_ok` (the same rules) and only a failing one by the schema, for its message.
    """
    tiles = p.get("tiles")
    if type(tiles) is not list or len(tiles) < 2:
        validate(p, "params_predict", "params")
        return
    for i, t in enumerate(tiles):
        if not tile_ok(t):
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


def _produce_tiles(server: ServerContext, job: Job) -> Iterator[object]:
    """Decode, check, resize and normalise the tiles of a request, then queue them.

    A generator: the fair executor runs it a tile at a time, so a request of hundreds of
    large tiles lets other clients' requests through between its tiles.
    """
    try:
        assert job.task is not None
        predictor = job.task.predictor
        limits = server.config.limits
        params = job.request.params
        mpp = float(params["mpp"])
        frames = job.request.frames
        decoded: dict[int, np.ndarray] = {}  # a frame named by several tiles is decoded once
        tiles = []
        for i, t in enumerate(params["tiles"]):
            if job.closed:
                return
            k = int(t["frame"])
            if k not in decoded:
                img = decode_tile(frames[k], limits.max_tile_px, f"tile {i}")
                decoded[k] = fit_to_model(
                    img,
                    mpp,
                    predictor.tile_um,
                    predictor.tile_px,
                    limits.scale_tolerance,
                    f"tile {i}",
                )
                yield None
            tiles.append(decoded[k])
        job.request.frames = []
        job.output.boxes = np.array([t["box"] for t in params["tiles"]], dtype=np.float64)
        job.output.names = [t.get("name") for t in params["tiles"]]
        # µm per full-resolution pixel of the boxes (the tiles' mpp is that of their images,
        # read at any downsample): each box spans the model's tile µm.
        job.output.mpp = predictor.tile_um / float(np.median(job.output.boxes[:, 2]))
        only = np.array([bool(t.get("context_only")) for t in params["tiles"]])
        if only.all():
            raise ProtocolError(
                ErrorCode.BAD_REQUEST, "every tile is context_only: nothing to predict"
            )
        job.output.predicted = np.flatnonzero(~only) if only.any() else None
        norm = normalizer_for_image(server, job, tiles)
        yield None
        n = len(tiles)
        job.total = n
        step = limits.batch_size
        for b0 in range(0, n, step):
            part = tiles[b0 : b0 + step]
            if norm is not None:
                part = [norm.transform(t) for t in part]
            if not server.batcher.push(job, b0, np.stack(part), block=False):
                return
            yield None
        server.batcher.finish_input(job, n)
    except Exception as e:  # noqa: BLE001 - every failure becomes this request's error reply
        fail_from(job, e)


def _produce_slide(
    server: ServerContext, job: Job, path: Path, region_spec: Any
) -> Iterator[object]:
    """Tile a slide's region on the model's grid and queue the normalised tiles.

    A generator run step by step (a batch a step); while the job's device buffer is full it
    yields :data:`WAIT` instead of holding a worker.
    """
    from stimage.data import open_slide
    from stimage.errors import NoTissueError
    from stimage.tiles import iter_tiles

    try:
        assert job.task is not None
        p = job.task.predictor
        limits = server.config.limits
        region = parse_region(region_spec)
        with open_slide(path, mpp=job.request.params["slide"].get("mpp")) as slide:
            if job.closed:
                return
            try:
                grid = p.grid_tiles(slide, region)
            except NoTissueError:
                raise ProtocolError(
                    ErrorCode.NO_TISSUE, "no tile of the region has enough tissue; check the region"
                ) from None
            boxes = np.concatenate([grid.boxes, grid.context_boxes.reshape(-1, 4)])
            if len(boxes) > limits.max_slide_tiles:
                raise ProtocolError(
                    ErrorCode.TOO_LARGE,
                    f"the region holds {len(boxes)} tiles; this server predicts at most "
                    f"{limits.max_slide_tiles} per request: split the region",
                )
            job.output.boxes = boxes
            job.output.slide = slide_info(slide, path)
            job.output.mpp = float(slide.mpp)
            if len(grid.context_boxes):
                job.output.predicted = np.arange(len(grid.boxes))
            job.total = len(boxes)
            job.progress("prepare", 0, len(boxes))
            normalizer = p.normalizer_for(slide, grid.mask)
            yield None
            for idx, tiles in iter_tiles(
                slide, boxes, p.tile_px, normalizer=normalizer, batch_size=limits.batch_size
            ):
                while not server.batcher.has_room(job, len(tiles)):
                    if job.closed:
                        return
                    yield WAIT
                if not server.batcher.push(job, int(idx[0]), tiles, block=False):
                    return
                yield None
        server.batcher.finish_input(job, len(boxes))
    except Exception as e:  # noqa: BLE001 - every failure becomes this request's error reply
        fail_from(job, e)


def finish_predict(job: Job) -> None:
    """Build and send the result of a job whose tiles are all predicted."""
    try:
        if job.closed:
            return
        assert job.task is not None and job.output.boxes is not None
        out = job.output
        pred = _predictions(job)
        every = np.asarray(job.output.boxes)
        boxes = every if out.predicted is None else every[out.predicted]
        names = out.names
        if names is not None and out.predicted is not None:
            names = [names[i] for i in out.predicted]
        df = pred.measurements()
        result: dict[str, Any] = {
            "model": job.task.model,
            "genes": list(pred.genes),
            "level": job.task.level,
            "n_tiles": len(df),
            "format": out.format,
        }
        if out.slide is not None:
            result["slide"] = out.slide
        frames: list[bytes] = []
        if out.format == "geojson":
            from stimage.qupath import feature_collection, tile_features

            feats = tile_features(
                boxes,
                df,
                classification=out.classification,
                names=names,
                object_type=out.object_type,
            )
            meta = job.task.predictor.bundle.output_metadata(list(pred.genes))
            result["geojson"] = feature_collection(feats, meta)
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
        fail_from(job, e)


def _predictions(job: Job) -> TilePredictions:
    """The job's predictions, of the tiles it returns, in order (see :func:`joined_predictions`)."""
    assert job.task is not None and job.output.boxes is not None
    out = job.output
    boxes = np.asarray(out.boxes, np.float64)
    xy = (boxes[:, :2] + boxes[:, 2:] / 2) * float(out.mpp or 1.0)
    return joined_predictions(job.task, job.parts, xy_um=xy, rows=out.predicted)
