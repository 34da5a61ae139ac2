"""``explain``: the nuclei of one model tile scored for some genes (LIME or occlusion).

The work is :func:`stimage.pipelines.explain_tile`, the same pipeline as ``stimage explain``;
the server gives it a model function whose tiles are batched on the device thread with every
other request's, and, for pixels a client sent, the image as a slide of its own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from stimage.server._images import decode_tile, fit_to_model
from stimage.server._jobs import ModelTask
from stimage.server._protocol import ErrorCode, ProtocolError, validate
from stimage.server.ops._common import (
    JobClosed,
    check_model,
    confine_path,
    deadline_of,
    fail_from,
    joined_predictions,
    normalizer_for_image,
    one_frame,
    slide_info,
)

if TYPE_CHECKING:
    from stimage.pipelines import TileExplanation
    from stimage.server._context import ServerContext
    from stimage.server._jobs import Job, Request

__all__ = ["op_explain"]

logger = logging.getLogger(__name__)


class _Closed(Exception):
    """The job closed while its perturbed tiles were on the device (cancel, deadline)."""


def op_explain(server: ServerContext, req: Request) -> None:
    """Score the nuclei of one model tile for some genes (LIME or occlusion)."""
    p = req.params
    validate(p, "params_explain", "params")
    name, predictor, genes = check_model(server, p, p["genes"])
    if p.get("target", "mean") == "p_high":
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
        _check_frames(server, req.frames, p)
    else:
        if req.frames:
            raise ProtocolError(ErrorCode.BAD_REQUEST, "a slide request carries no binary frames")
        slide_path = confine_path(p["slide"]["path"], server.config.allow_roots)
    job = server.admit(req, deadline_of(server, p))
    job.task = ModelTask(predictor, name, list(genes))
    try:
        server.batcher.add(job)
        if slide_path is None:
            server.submit_analysis(job, _run, server, job, None)
        else:
            server.submit_analysis(job, _run, server, job, slide_path)
    except Exception as e:  # noqa: BLE001 - e.g. the server is stopping: this request's error
        fail_from(job, e)


def _check_frames(server: ServerContext, frames: list[bytes], p: dict[str, Any]) -> None:
    """A tile request's frames: the tile's, one per neighbour, then the model's view, in order."""
    neighbours = p.get("neighbours", [])
    if not neighbours and "model_tile" not in p:
        one_frame(frames, int(p["tile"]["frame"]), "params.tile.frame")
        return
    limit = server.config.limits.max_tiles
    if len(neighbours) > limit:
        raise ProtocolError(
            ErrorCode.TOO_LARGE,
            f"params.neighbours has {len(neighbours)} tiles; this server takes at most {limit} "
            "(the tiles within the model's context_um of the explained tile are enough)",
        )
    got = [int(p["tile"]["frame"])] + [int(t["frame"]) for t in neighbours]
    if "model_tile" in p:
        got.append(int(p["model_tile"]["frame"]))
    want = list(range(len(got)))
    if got != want or len(frames) != len(want):
        raise ProtocolError(
            ErrorCode.BAD_REQUEST,
            "the tile is binary frame 0, neighbour k is frame k (1, 2, ...) and the model's view "
            "of the tile the frame after them, one frame each; "
            f"got frames {got[:8]}{'...' if len(got) > 8 else ''} and {len(frames)} frame(s)",
        )


def _device_parts(server: ServerContext, job: Job) -> Callable[[np.ndarray], list[Any]]:
    """Tiles -> what the device gave for them, through the shared batcher, in order.

    Each call pushes its tiles into the job's queue of the shared batcher (so they are
    batched round-robin with other requests and stop within one batch on a cancel) and waits
    for them: predictions, or for a model with spatial context, features per encoder.
    """
    state = {"next": 0}

    def parts(tiles: np.ndarray) -> list[Any]:
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
        out, job.parts = job.parts, []
        return out

    return parts


def _device_functions(
    server: ServerContext, job: Job, kind: str
) -> tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], dict[str, np.ndarray]]]:
    """The explained function (a model without context) and the encoder (with context) on the device."""
    assert job.task is not None
    task = job.task
    genes = list(task.genes)
    parts = _device_parts(server, job)

    def fn(tiles: np.ndarray) -> np.ndarray:
        pred = joined_predictions(task, parts(tiles)).subset(genes)
        out = pred.mean if kind == "mean" else pred.p_high
        return np.asarray(out, dtype=np.float64)

    def encode(tiles: np.ndarray) -> dict[str, np.ndarray]:
        got = [f for _, f in sorted(parts(tiles), key=lambda sp: sp[0])]
        return {k: np.concatenate([f[k] for f in got]) for k in got[0]}

    return fn, encode


def _client_neighbours(
    server: ServerContext, job: Job, tile_box: list[float], frame_w: int, mpp: float
) -> tuple[list[np.ndarray], np.ndarray]:
    """The neighbour tiles a client sent, fitted to the model, and their centres in frame 0's pixels.

    Frame 0 covers ``tile_box`` (full-resolution pixels) at ``mpp`` µm per pixel; each
    neighbour covers its own box, which must be the model's tile too (``wrong_scale``).
    """
    assert job.task is not None
    predictor = job.task.predictor
    limits = server.config.limits
    full_mpp = mpp * frame_w / tile_box[2]  # µm per full-resolution pixel
    tiles, centres = [], []
    for k, t in enumerate(job.request.params.get("neighbours", [])):
        x, y, w, h = (float(v) for v in t["box"])
        what = f"params.neighbours[{k}]"
        rgb = decode_tile(job.request.frames[k + 1], limits.max_tile_px, what)
        tiles.append(
            fit_to_model(
                rgb,
                w * full_mpp / rgb.shape[1],
                predictor.tile_um,
                predictor.tile_px,
                limits.scale_tolerance,
                what,
            )
        )
        centres.append(((x + w / 2 - tile_box[0]), (y + h / 2 - tile_box[1])))
    scale = frame_w / tile_box[2]  # frame 0's pixels per full-resolution pixel
    return tiles, np.asarray(centres, np.float64).reshape(-1, 2) * scale


def _client_model_tile(server: ServerContext, job: Job, frame_w: int) -> np.ndarray:
    """The model's view of the tile a client sent (``model_tile``), fitted to the model.

    Raises:
        ProtocolError: ``wrong_scale`` when it does not cover the tile's box at the model's
            µm; ``bad_image``.
    """
    assert job.task is not None
    predictor = job.task.predictor
    p = job.request.params
    limits = server.config.limits
    frame = int(p["model_tile"]["frame"])
    rgb = decode_tile(job.request.frames[frame], limits.max_tile_px, "params.model_tile")
    mpp = float(p["mpp"]) * frame_w / rgb.shape[1]  # the view covers frame 0's box
    return fit_to_model(
        rgb, mpp, predictor.tile_um, predictor.tile_px, limits.scale_tolerance, "params.model_tile"
    )


def _run(server: ServerContext, job: Job, path: Path | None) -> None:
    """Worker: read the tile, explain it with the one pipeline, send the nuclei."""
    from stimage.explain import NoNucleiError, is_blank
    from stimage.pipelines import FIT_ON_SLIDE, NeighbourTiles, explain_tile

    p = job.request.params
    assert job.task is not None
    predictor = job.task.predictor
    kind = p.get("target", "mean")
    method = p.get("method", "lime")
    settings: dict[str, Any] = {
        "target": kind,
        "method": method,
        "num_samples": int(p.get("num_samples", 1000)),
        "seed": int(p.get("seed", 0)),
        "batch_size": server.config.limits.batch_size,
        "cancel": JobClosed(job),
    }
    settings["model_fn"], settings["encode"] = _device_functions(server, job, kind)
    if method == "lime":  # progress shows the whole run from the start
        held = len(p.get("neighbours", [])) if predictor.bundle.context is not None else 0
        job.total = settings["num_samples"] + held
    try:
        result: dict[str, Any] = {}
        job.progress("prepare", 0, 1)
        if path is None:
            from stimage.data import ArraySlide

            box = [float(v) for v in p["tile"]["box"]]
            mpp = float(p["mpp"])
            rgb = decode_tile(job.request.frames[0], server.config.limits.max_tile_px, "tile")
            limits = server.config.limits
            tile = fit_to_model(
                rgb, mpp, predictor.tile_um, predictor.tile_px, limits.scale_tolerance, "tile"
            )
            if is_blank(rgb):  # before any stain fit: a glass tile has no nuclei
                raise NoNucleiError(
                    "this tile is blank (glass), so it has no nuclei to explain; pick a tile "
                    "with cells"
                )
            h, w = rgb.shape[:2]
            around: list[np.ndarray] = []
            centres = np.zeros((0, 2))
            if predictor.bundle.context is not None:
                around, centres = _client_neighbours(server, job, box, w, mpp)
            if "model_tile" in p:  # the tile predict saw: no resizing of frame 0 here
                tile = _client_model_tile(server, job, w)
            job.request.frames = []
            norm = normalizer_for_image(server, job, [tile, *around])
            if norm is not None:
                around = [norm.transform(t) for t in around]
            seen = None
            if "model_tile" in p:
                seen = tile if norm is None else norm.transform(tile)
            px = predictor.tile_px
            stack = np.stack(around) if around else np.zeros((0, px, px, 3), np.uint8)
            exp = explain_tile(
                predictor,
                ArraySlide(rgb, mpp),
                (0.0, 0.0, float(w), float(h)),
                job.task.genes,
                normalizer=norm,
                neighbours=NeighbourTiles(stack, centres),
                model_tile=seen,
                origin=(box[0], box[1]),
                downsample=box[2] / w,
                **settings,
            )
        else:
            from stimage.data import open_slide

            spec = p["slide"]
            with open_slide(path, mpp=spec.get("mpp")) as slide:
                box = _check_slide_box(server, slide, predictor, spec["box"])
                result["slide"] = slide_info(slide, path)
                exp = explain_tile(
                    predictor,
                    slide,
                    (box[0], box[1], box[2], box[3]),
                    job.task.genes,
                    normalizer=FIT_ON_SLIDE,
                    **settings,
                )
        if job.closed:
            return
        job.progress("prepare", 1, 1)
        result.update(_result(job, exp, method, box))
        job.parts = []
        job.succeed(result)
    except _Closed:
        return
    except NoNucleiError as e:
        job.fail(ErrorCode.NO_NUCLEI, str(e))
    except Exception as e:  # noqa: BLE001 - every failure becomes this request's error reply
        if job.closed:
            return
        fail_from(job, e)


def _check_slide_box(
    server: ServerContext, slide: Any, predictor: Any, spec: list[Any]
) -> list[float]:
    """The box of a slide request, checked against the slide and the model's tile size."""
    box = [float(v) for v in spec]
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
    return box


def _result(job: Job, exp: TileExplanation, method: str, box: list[float]) -> dict[str, Any]:
    """The result of ``explain``: scores as QuPath nuclei, predictions and LIME's fit."""
    import pandas as pd

    from stimage.constants import Measurement
    from stimage.pipelines import score_name
    from stimage.qupath import feature_collection, polygon_features

    assert job.task is not None
    e = exp.explanation
    names = [score_name(method, t) for t in e.targets]
    cols: dict[str, np.ndarray] = {n: e.scores[:, j] for j, n in enumerate(names)}
    nuclei = exp.nuclei
    if "area_um2" in nuclei.features:
        cols[Measurement.NUCLEUS_AREA] = nuclei.features["area_um2"].to_numpy(float)
    feats = polygon_features(nuclei.polygons, pd.DataFrame(cols), classifications="Nucleus")
    return {
        "model": job.task.model,
        "method": method,
        "targets": list(e.targets),
        "measurements": names,
        "prediction": [float(v) for v in e.prediction],
        "fit_r2": [float(v) if np.isfinite(v) else None for v in e.fit_r2],
        "box": box,
        "n_nuclei": len(nuclei),
        "num_samples": int(e.num_samples),
        "context_tiles": exp.context_tiles,
        "geojson": feature_collection(feats),
    }
