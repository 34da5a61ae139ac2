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
        one_frame(req.frames, int(p["tile"]["frame"]), "params.tile.frame")
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


def _device_function(
    server: ServerContext, job: Job, kind: str
) -> Callable[[np.ndarray], np.ndarray]:
    """Tiles -> ``(n, genes)`` outputs, computed by the device thread through the batcher.

    Each call pushes its tiles into the job's queue of the shared batcher (so they are
    batched round-robin with other requests and stop within one batch on a cancel) and waits
    for their predictions.
    """
    assert job.task is not None
    task = job.task
    genes = list(task.genes)
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
        pred = joined_predictions(task, job.parts).subset(genes)  # each perturbation alone
        job.parts = []
        out = pred.mean if kind == "mean" else pred.p_high
        return np.asarray(out, dtype=np.float64)

    return fn


def _run(server: ServerContext, job: Job, path: Path | None) -> None:
    """Worker: read the tile, explain it with the one pipeline, send the nuclei."""
    from stimage.explain import NoNucleiError, is_blank
    from stimage.pipelines import FIT_ON_SLIDE, explain_tile

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
        "model_fn": _device_function(server, job, kind),
        "cancel": JobClosed(job),
    }
    if method == "lime":
        job.total = settings["num_samples"]  # progress shows the whole run from the start
    try:
        result: dict[str, Any] = {}
        job.progress("prepare", 0, 1)
        if path is None:
            from stimage.data import ArraySlide

            box = [float(v) for v in p["tile"]["box"]]
            mpp = float(p["mpp"])
            rgb = decode_tile(job.request.frames[0], server.config.limits.max_tile_px, "tile")
            job.request.frames = []
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
            exp = explain_tile(
                predictor,
                ArraySlide(rgb, mpp),
                (0.0, 0.0, float(w), float(h)),
                job.task.genes,
                normalizer=normalizer_for_image(server, job, [tile]),
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
        "geojson": feature_collection(feats),
    }
