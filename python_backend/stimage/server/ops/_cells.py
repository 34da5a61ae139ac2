"""``cells``: nuclei segmented and typed, in an image a client sent or in a slide region."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stimage.server._images import decode_tile
from stimage.server._protocol import ErrorCode, ProtocolError, validate
from stimage.server.ops._common import (
    JobClosed,
    confine_path,
    deadline_of,
    fail_from,
    one_frame,
    parse_region,
    slide_info,
)

if TYPE_CHECKING:
    from stimage.models import Cells, CellTypeClassifier
    from stimage.server._context import ServerContext
    from stimage.server._jobs import Job, Request

__all__ = ["cells_result", "op_cells"]

logger = logging.getLogger(__name__)


def op_cells(server: ServerContext, req: Request) -> None:
    """Segment and type the nuclei of an image sent by the client or of a slide region."""
    p = req.params
    validate(p, "params_cells", "params")
    slide_path: Path | None = None
    if "image" in p:
        one_frame(req.frames, int(p["image"]["frame"]), "params.image.frame")
    else:
        if req.frames:
            raise ProtocolError(ErrorCode.BAD_REQUEST, "a slide request carries no binary frames")
        slide_path = confine_path(p["slide"]["path"], server.config.allow_roots)
    job = server.admit(req, deadline_of(server, p))
    try:
        if slide_path is None:
            server.submit_analysis(job, _run, server, job, None)
        else:
            server.submit_analysis(job, _run, server, job, slide_path)
    except Exception as e:  # noqa: BLE001 - e.g. the server is stopping: this request's error
        fail_from(job, e)


def _run(server: ServerContext, job: Job, path: Path | None) -> None:
    """Worker: segment, type and send the cells of a request."""
    from stimage.data import open_slide
    from stimage.explain import SegmentationCancelledError
    from stimage.pipelines import cells_in_image, detect_cells

    p = job.request.params
    cancel = JobClosed(job)
    try:
        model = server.cells_model() if p.get("classify", True) else None

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
            origin = (float(img["x"]), float(img["y"]))
            cells = cells_in_image(
                rgb, mpp, origin, d, model, segmenter=seg, progress=progress, cancel=cancel
            )
            result["mpp"] = mpp / d
        else:
            region = parse_region(p["slide"]["region"])
            with open_slide(path, mpp=p["slide"].get("mpp")) as slide:
                cells = detect_cells(
                    slide, region, model=model, segmenter=seg, progress=progress, cancel=cancel
                )
                result["mpp"] = float(slide.mpp)
                result["slide"] = slide_info(slide, path)
        if job.closed:
            return
        result.update(cells_result(cells, model))
        job.succeed(result)
    except SegmentationCancelledError:
        if not job.closed:
            job.fail(ErrorCode.CANCELLED, "cancelled")
    except Exception as e:  # noqa: BLE001 - every failure becomes this request's error reply
        fail_from(job, e)


def cells_result(cells: Cells, model: CellTypeClassifier | None) -> dict[str, Any]:
    """The result of ``cells`` (without ``mpp``/``slide``): counts per class, cell objects."""
    from stimage.models import display_class
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
