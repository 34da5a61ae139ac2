"""Write tests/fixtures/protocol: one canonical example of every protocol v1 message.

    .venv/bin/python tests/server/_make_fixtures.py

Each fixture is a JSON object:

* ``description``: what the message is;
* ``direction``: ``request`` (client to server) or ``reply`` (server to client);
* ``schema``: the ``$defs`` entry of ``protocol_v1.schema.json`` the header validates against,
  and ``params_schema`` / ``result_schema`` for the parameters or result inside it;
* ``header``: the JSON header frame;
* ``frames``: the binary frames after the header, base64-encoded, with a note each;
* requests name the ``reply`` fixture their answer has the shape of.

The Python tests replay the requests against a real server and compare the replies'
shapes with these; the Java client's tests read and write the same files.
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "fixtures" / "protocol"
sys.path.insert(0, str(HERE.parent))

from _synth import render_he  # noqa: E402
from stimage.constants import Measurement as M  # noqa: E402
from stimage.qupath import feature_collection, tile_features  # noqa: E402
from stimage.server._config import Limits  # noqa: E402
from stimage.server._images import encode_tile  # noqa: E402
from stimage.server._protocol import (  # noqa: E402
    ErrorCode,
    error_reply,
    heartbeat_reply,
    progress_reply,
    request_header,
    result_reply,
)

#: Tiles of the fixtures: 32 px covering 200 µm (the tile size of HER2ST models).
TILE_PX, TILE_UM = 32, 200.0
MPP = TILE_UM / TILE_PX
GENES = ["COX6C", "ERBB2"]


#: The bundled HER2ST crop's µm per pixel.
HE_MPP = 0.69


def _example_he() -> np.ndarray:
    from stimage.data import open_slide
    from stimage.examples import example_path

    path = example_path() / "ST-imgs" / "B" / "B4" / "B4_crop.jpg"
    with open_slide(path, mpp=HE_MPP) as s:
        return s.read_region(0, 0, *s.dimensions)


def _cells_and_explain_results(
    cells_img: np.ndarray, tile_img: np.ndarray, side: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Real cells of the crop (default cell-type model) and real nuclei with made-up scores."""
    from stimage.explain import segment_tile
    from stimage.models import default_celltype_model_path, load_celltype_model
    from stimage.pipelines import cells_in_image
    from stimage.qupath import polygon_features
    from stimage.server.ops import cells_result

    model = load_celltype_model(default_celltype_model_path())
    found = cells_result(cells_in_image(cells_img, HE_MPP, (1200.0, 1400.0), 1.0, model), model)
    geo = found["geojson"]
    cells = {**found, "mpp": HE_MPP, "geojson": {**geo, "features": geo["features"][:2]}}
    nuclei = segment_tile(tile_img, HE_MPP, origin=(1600.0, 1600.0)).subset([0, 1])
    names = [M.lime(g) for g in GENES]
    scores = pd.DataFrame(
        {names[0]: [0.0123, -0.0040], names[1]: [-0.0061, 0.0007], M.NUCLEUS_AREA: [31.5, 24.0]}
    )
    feats = list(polygon_features(nuclei.polygons, scores, classifications="Nucleus"))
    explain_result = {
        "model": "her2st",
        "method": "lime",
        "targets": GENES,
        "measurements": names,
        "prediction": [5.91, 2.14],
        "fit_r2": [0.42, 0.37],
        "box": [1600.0, 1600.0, float(side), float(side)],
        "n_nuclei": 2,
        "num_samples": 30,
        "context_tiles": 2,
        "geojson": feature_collection(feats),
    }
    return cells, explain_result


def _frame(data: bytes, note: str) -> dict[str, str]:
    return {"encoding": "base64", "note": note, "data": base64.b64encode(data).decode()}


def _write(name: str, fixture: dict[str, Any]) -> None:
    (OUT / f"{name}.json").write_text(json.dumps(fixture, indent=2, ensure_ascii=False) + "\n")


def _request(
    name: str, description: str, op: str, params: dict[str, Any], reply: str, frames=()
) -> None:  # type: ignore[no-untyped-def]
    _write(
        name,
        {
            "description": description,
            "direction": "request",
            "schema": "request",
            "params_schema": f"params_{op}",
            "header": request_header(name.removeprefix("request_").replace("_", "-"), op, params),
            "frames": list(frames),
            "reply": reply,
        },
    )


def _reply(
    name: str,
    description: str,
    header: dict[str, Any],
    schema: str,
    result_schema: str | None = None,
    frames: list[dict[str, str]] | None = None,
) -> None:
    fx: dict[str, Any] = {"description": description, "direction": "reply", "schema": schema}
    if result_schema:
        fx["result_schema"] = result_schema
    fx["header"] = header
    fx["frames"] = frames or []
    _write(name, fx)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.json"):
        old.unlink()
    tiles = [render_he(TILE_PX, TILE_PX, np.ones((TILE_PX, TILE_PX), bool), seed=s) for s in (1, 2)]
    pngs = [encode_tile(t) for t in tiles]
    boxes = [[10000.0, 20000.0, 290.0, 290.0], [10290.0, 20000.0, 290.0, 290.0]]
    note = f"PNG, {TILE_PX} x {TILE_PX} RGB, {TILE_UM:g} µm at {MPP:g} µm/px"

    # ---------------------------------------------------------------- requests
    _request(
        "request_hello",
        "hello: versions, models with genes and tile size, limits",
        "hello",
        {"client": {"name": "qupath-extension-stimage", "version": "0.1.0"}},
        "reply_hello_result",
    )
    _request("request_ping", "ping: liveness check", "ping", {}, "reply_ping_result")
    _request(
        "request_cancel",
        "cancel: ends request 'predict-tiles' of the same client with a 'cancelled' error",
        "cancel",
        {"target": "predict-tiles"},
        "reply_cancel_result",
    )
    _request(
        "request_predict_tiles",
        "predict two tiles read by the client; binary frames 0 and 1 are the PNG tiles; "
        "the stain fit is kept for later requests with the same image_id",
        "predict",
        {
            "mpp": MPP,
            "image_id": "project/image-1",
            "tiles": [
                {"frame": 0, "box": boxes[0], "name": "tile 1"},
                {"frame": 1, "box": boxes[1], "name": "tile 2"},
            ],
            "format": "geojson",
            "object_type": "tile",
            "deadline_ms": 60000,
        },
        "reply_predict_result_geojson",
        [_frame(pngs[0], note), _frame(pngs[1], note)],
    )
    _request(
        "request_predict_tiles_table",
        "predict tiles, plain table result (every option shown; 'model' and 'genes' must be "
        "ones the server has: see hello)",
        "predict",
        {
            "model": "her2st",
            "genes": GENES,
            "level": 0.8,
            "format": "table",
            "classification": "Tumor",
            "mpp": MPP,
            "image_id": "project/image-1",
            "tiles": [{"frame": 0, "box": boxes[0]}],
            "deadline_ms": 60000,
        },
        "reply_predict_result_table",
        [_frame(pngs[0], note)],
    )
    _request(
        "request_predict_slide",
        "predict the grid tiles of a region of a slide file the server reads (its path must "
        "lie under one of the server's --allow-root folders)",
        "predict",
        {
            "slide": {
                "path": "/data/slides/section-B1.svs",
                "region": [1000.0, 2000.0, 3000.0, 2000.0],
            }
        },
        "reply_predict_result_geojson",
    )
    _request(
        "request_predict_slide_polygon",
        "predict a slide region given as a GeoJSON polygon, with the slide's µm/px and a table result",
        "predict",
        {
            "slide": {
                "path": "/data/slides/section-B1.tif",
                "mpp": 0.5,
                "region": {
                    "type": "Polygon",
                    "coordinates": [
                        [[1000.0, 2000.0], [4000.0, 2000.0], [4000.0, 4000.0], [1000.0, 2000.0]]
                    ],
                },
            },
            "format": "table",
        },
        "reply_predict_result_table",
    )

    # cells and explain: real H&E (the bundled HER2ST crop, 0.69 µm/px), so the server finds nuclei.
    he = _example_he()
    cells_img = he[1400:1600, 1200:1400]
    cells_jpg = encode_tile(cells_img, "jpeg")
    side = round(TILE_UM / HE_MPP)  # 290 px cover the 200 µm tile
    tile_img = he[1600 : 1600 + side, 1600 : 1600 + side]
    tile_jpg = encode_tile(tile_img, "jpeg")
    _request(
        "request_cells_image",
        "cells: segment and type the nuclei of a region whose pixels the client sends (binary "
        "frame 0, JPEG); x, y: full-resolution pixel of its top-left corner, downsample: "
        "full-resolution pixels per image pixel, mpp: µm per pixel of the image sent",
        "cells",
        {
            "image": {"frame": 0, "x": 1200.0, "y": 1400.0, "downsample": 1.0},
            "mpp": HE_MPP,
            "classify": True,
            "deadline_ms": 60000,
        },
        "reply_cells_result",
        [_frame(cells_jpg, f"JPEG, 200 x 200 RGB at {HE_MPP} µm/px")],
    )
    _request(
        "request_cells_slide",
        "cells in a region of a slide file the server reads (under its --allow-root folders)",
        "cells",
        {
            "slide": {
                "path": "/data/slides/section-B1.svs",
                "region": [1000.0, 2000.0, 600.0, 400.0],
            }
        },
        "reply_cells_result",
    )
    _request(
        "request_explain_tile",
        "explain: LIME scores of the nuclei of one model tile sent by the client (binary frame 0, "
        "covering the model's tile_um) for two genes",
        "explain",
        {
            "genes": GENES,
            "method": "lime",
            "target": "mean",
            "num_samples": 30,
            "seed": 0,
            "mpp": HE_MPP,
            "image_id": "project/image-1",
            "tile": {"frame": 0, "box": [1600.0, 1600.0, float(side), float(side)]},
            "deadline_ms": 60000,
        },
        "reply_explain_result",
        [_frame(tile_jpg, f"JPEG, {side} x {side} RGB, {TILE_UM:g} µm at {HE_MPP} µm/px")],
    )
    # a model with spatial context: the tissue tiles around the tile, read at the model's
    # resolution as predict reads its tiles (here two of them, left and right)
    nb_px = 64
    neighbours = []
    nb_frames = [_frame(tile_jpg, f"JPEG, {side} x {side} RGB, {TILE_UM:g} µm at {HE_MPP} µm/px")]
    for k, x in enumerate((1600 - side, 1600 + side), start=1):
        img = cv2.resize(
            he[1600 : 1600 + side, x : x + side], (nb_px, nb_px), interpolation=cv2.INTER_AREA
        )
        neighbours.append({"frame": k, "box": [float(x), 1600.0, float(side), float(side)]})
        nb_frames.append(
            _frame(encode_tile(img, "jpeg"), f"JPEG, {nb_px} x {nb_px} RGB: neighbour {k}")
        )
    _request(
        "request_explain_tile_context",
        "explain for a model with spatial context: the tile (frame 0, full resolution) and the "
        "tissue tiles around it within the model's context_um (frames 1..n, each the model's "
        "tile, read at the model's resolution), held fixed while the tile is perturbed",
        "explain",
        {
            "genes": GENES,
            "method": "lime",
            "num_samples": 30,
            "mpp": HE_MPP,
            "image_id": "project/image-1",
            "tile": {"frame": 0, "box": [1600.0, 1600.0, float(side), float(side)]},
            "neighbours": neighbours,
            "deadline_ms": 60000,
        },
        "reply_explain_result",
        nb_frames,
    )

    # ---------------------------------------------------------------- replies
    limits = Limits().to_dict()
    _reply(
        "reply_hello_result",
        "the result of hello",
        result_reply(
            "hello",
            "hello",
            {
                "server": "stimage",
                "version": "0.1.0",
                "protocol": 1,
                "protocols": [1],
                "ops": ["cancel", "hello", "ping", "predict"],
                "models": [
                    {
                        "name": "her2st",
                        "genes": GENES,
                        "tile_um": TILE_UM,
                        "tile_px": 224,
                        "stain": "vahadane",
                        "encoders": ["efficientnet_lite0"],
                        "default": True,
                        "classifier_genes": GENES,
                        "description": "EfficientNet-Lite0 + NB ensemble trained on HER2ST",
                    }
                ],
                "limits": limits,
                "device": "cuda",
                "slide_paths": False,
            },
        ),
        "result",
        "result_hello",
    )
    _reply(
        "reply_ping_result",
        "the result of ping",
        result_reply("ping", "ping", {"pong": True}),
        "result",
        "result_ping",
    )
    _reply(
        "reply_cancel_result",
        "the result of cancel: whether a request in flight was cancelled",
        result_reply("cancel", "cancel", {"target": "predict-tiles", "cancelled": True}),
        "result",
        "result_cancel",
    )
    _reply(
        "reply_progress",
        "progress of a predict request: tiles predicted so far (stage 'prepare' while a slide "
        "is being tiled, 'predict' as batches finish)",
        progress_reply("predict-tiles", "predict", 1, 2),
        "progress",
    )
    _reply(
        "reply_heartbeat",
        "sent every heartbeat_s seconds (see hello limits) while a request is in flight",
        heartbeat_reply("predict-tiles"),
        "heartbeat",
    )
    cols = {}
    for j, g in enumerate(GENES):
        cols[M.of(g, M.MEAN)] = [1.25 + j, 0.5 + j]
        cols[M.of(g, M.ALEATORIC_SD)] = [0.4, 0.41]
        cols[M.of(g, M.EPISTEMIC_SD)] = [0.05, 0.06]
        cols[M.lower(g, 0.9)] = [0.3, 0.0]
        cols[M.upper(g, 0.9)] = [2.5 + j, 1.9 + j]
        cols[M.of(g, M.P_HIGH)] = [0.8, 0.3]
    df = pd.DataFrame(cols)
    fc = feature_collection(tile_features(np.array(boxes), df, names=["tile 1", "tile 2"]))
    for k, f in enumerate(fc["features"]):
        f["id"] = f"00000000-0000-4000-8000-00000000000{k + 1}"
    _reply(
        "reply_predict_result_geojson",
        "the result of predict with format geojson: QuPath tile objects with measurements "
        "(see docs/geojson.md)",
        result_reply(
            "predict-tiles",
            "predict",
            {
                "model": "her2st",
                "genes": GENES,
                "level": 0.9,
                "n_tiles": 2,
                "format": "geojson",
                "geojson": fc,
            },
        ),
        "result",
        "result_predict",
    )
    small = df[[M.of(g, M.MEAN) for g in GENES]].iloc[:1].copy()
    small.iloc[0, 1] = np.nan
    values = small.to_numpy(dtype="<f4")
    _reply(
        "reply_predict_result_table",
        "the result of predict with format table: binary frame 0 holds the values (float32 "
        "little-endian, row-major, one row per tile, NaN where not a number), columns named as "
        "the GeoJSON measurements; slide requests add 'slide'",
        result_reply(
            "predict-tiles-table",
            "predict",
            {
                "model": "her2st",
                "genes": GENES,
                "level": 0.8,
                "n_tiles": 1,
                "format": "table",
                "columns": list(small.columns),
                "values": {"frame": 0, "dtype": "<f4", "shape": list(values.shape)},
                "boxes": [boxes[0]],
                "names": [None],
                "slide": {
                    "path": "/data/slides/section-B1.svs",
                    "mpp": 0.5,
                    "width": 40000,
                    "height": 30000,
                },
            },
        ),
        "result",
        "result_predict",
        [_frame(values.tobytes(), "float32 little-endian, 1 x 2: [1.25, NaN]")],
    )
    cells_reply, explain_reply = _cells_and_explain_results(cells_img, tile_img, side)
    _reply(
        "reply_cells_result",
        "the result of cells: counts per class (every class of the cell-type model) and the "
        "cells as QuPath cell objects in full-resolution pixels",
        result_reply("cells-image", "cells", cells_reply),
        "result",
        "result_cells",
    )
    _reply(
        "reply_explain_result",
        "the result of explain: the nuclei of the tile as detections carrying one score per "
        "gene ('LIME: <gene>'), the model's prediction on the intact tile, LIME's fit R²",
        result_reply("explain-tile", "explain", explain_reply),
        "result",
        "result_explain",
    )
    _reply(
        "reply_progress_segment",
        "a progress event of cells: segmentation tiles done",
        progress_reply("cells-image", "segment", 1, 4),
        "progress",
    )
    errors = {
        ErrorCode.BAD_REQUEST: ("params.tiles.0.box: [0, 0, 10] is too short; see docs/protocol.md", None),
        ErrorCode.UNSUPPORTED_PROTOCOL: (
            "this server speaks protocol 1; the request uses protocol 2: use a client for protocol 1, "
            "or update the server and the client to the same version",
            {"server_protocols": [1]},
        ),
        ErrorCode.UNKNOWN_OP: ("unknown operation 'train'; this server knows: cancel, cells, explain, hello, "
                               "ping, predict", None),
        "no_nuclei": ("no nuclei were found in this tile, so nothing can be explained; pick a tile with cells",
                      None),
        ErrorCode.UNKNOWN_MODEL: ("no model 'lung' on this server; it has ['her2st'] (see hello)", None),
        ErrorCode.UNKNOWN_GENE: ("model 'her2st' does not predict ['XYZ1']; it predicts 250 genes, e.g. ['COX6C']", None),
        ErrorCode.BAD_IMAGE: ("tile 1: cannot decode the image (OSError: image file is truncated)", None),
        ErrorCode.WRONG_SCALE: (
            "tile 0: 400 x 400 px at 0.25 µm/px is 100.0 x 100.0 µm; the model needs 200 µm square tiles "
            "(within 5%): read 800 px tiles at this resolution",
            {"tile_um": 200.0, "tile_px": 224},
        ),
        ErrorCode.NO_TISSUE: ("none of the 2 tiles is at least 50% tissue (best 3%), so the stain "
                              "normalisation of this image cannot be fitted; send tiles with tissue first", None),
        ErrorCode.TOO_LARGE: ("600 tiles in one request; this server takes at most 512: split them", None),
        ErrorCode.BUSY: ("the server is working on 32 requests, its limit; retry shortly", {"retry_after_ms": 500}),
        ErrorCode.DEADLINE: ("the request did not finish within its deadline (60.0 s)", None),
        ErrorCode.CANCELLED: ("cancelled by the client", None),
        ErrorCode.FORBIDDEN_PATH: (
            "the slide path is outside the folders this server may read (its --allow-root folders)", None),
        ErrorCode.NOT_FOUND: ("/data/slides/missing.svs: no such slide file on the server", None),
        ErrorCode.UNAVAILABLE: ("the server is stopping; retry when it is back", None),
        ErrorCode.INTERNAL: ("RuntimeError: CUDA out of memory (see the server log)", None),
    }  # fmt: skip
    for code, (message, details) in errors.items():
        _reply(
            f"reply_error_{code}",
            f"an error reply with code {code}",
            error_reply("predict-tiles", code, message, details),
            "error",
        )
    _reply(
        "reply_error_unreadable_header",
        "an error reply to a message whose header could not be read: the id is null",
        error_reply(None, ErrorCode.BAD_REQUEST, "the first frame must be a JSON header; it does not parse "
                    "(Expecting value: line 1 column 1 (char 0))"),
        "error",
    )  # fmt: skip


if __name__ == "__main__":
    main()
