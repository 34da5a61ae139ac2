"""Protocol conformance through the Python client: every op, every error code it can reach."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import zmq

from server._helpers import as_header, boxes_for, model_tiles
from stimage.constants import Measurement
from stimage.models import Predictor
from stimage.qupath import validate_geojson
from stimage.server import PROTOCOL_VERSION, ErrorCode, Server, ServerError, validate
from stimage.server._images import encode_tile
from stimage.server.client import Client

ClientOf = Callable[..., Client]


def _raw(address: str) -> zmq.Socket:
    s = zmq.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(address)
    return s


def _ask(sock: zmq.Socket, frames: list[bytes], timeout_ms: int = 10000) -> list[dict]:
    """Send one message, return every reply of that request up to the final one."""
    sock.send_multipart(frames)
    out = []
    while True:
        assert sock.poll(timeout_ms), "no reply"
        msg = json.loads(sock.recv_multipart()[0])
        out.append(msg)
        if msg["kind"] in ("result", "error"):
            return out


def test_hello_lists_models_limits_and_versions(
    server: Server, client_of: ClientOf, predictor: Predictor
) -> None:
    info = client_of(server.address).hello()
    validate(info, "result_hello")
    assert info["protocol"] == PROTOCOL_VERSION and info["server"] == "stimage"
    (m,) = info["models"]
    assert m["name"] == predictor.bundle.name and m["genes"] == predictor.bundle.genes
    assert m["tile_um"] == predictor.tile_um and m["tile_px"] == predictor.tile_px and m["default"]
    assert info["limits"]["batch_size"] == 8 and info["slide_paths"] is True
    assert {"hello", "ping", "predict", "cancel"} <= set(info["ops"])
    # each gene's held-out accuracy, and the genes to show as unreliable
    rel = predictor.bundle.gene_reliability()
    assert m["gene_pcc"] == {g: r["pcc"] for g, r in rel.items()}
    assert m["unreliable_genes"] == [g for g, r in rel.items() if r["reliable"] is False]
    assert client_of(server.address).ping() > 0


def test_predict_tiles_returns_qupath_geojson(
    server: Server, client_of: ClientOf, predictor: Predictor
) -> None:
    tiles, mpp = model_tiles(predictor, 20)
    boxes = boxes_for(20, x0=1000)
    seen: list[tuple[int, int]] = []
    genes = predictor.bundle.genes[:3]
    out = client_of(server.address).predict(
        tiles,
        boxes,
        mpp,
        genes=genes,
        names=[f"t{i}" for i in range(20)],
        progress=lambda d, t: seen.append((d, t)),
    )
    validate(out, "result_predict")
    assert out["n_tiles"] == 20 and out["genes"] == genes
    feats = out["geojson"]["features"]
    assert validate_geojson(out["geojson"]) == 20
    assert [f["properties"]["name"] for f in feats] == [f"t{i}" for i in range(20)]
    assert feats[2]["geometry"]["coordinates"][0][0] == [1200.0, 0.0]
    meas = feats[0]["properties"]["measurements"]
    assert Measurement.of(genes[0], Measurement.MEAN) in meas
    assert not any(k.startswith(predictor.bundle.genes[5] + ":") for k in meas)
    # The collection says how far to trust each gene (held-out within training).
    meta = out["geojson"]["stimage"]
    assert meta["model"] == predictor.bundle.name and list(meta["genes"]) == genes
    rel = predictor.bundle.gene_reliability()
    assert meta["unreliable_genes"] == [g for g in genes if rel[g]["reliable"] is False]
    assert meta["genes"][genes[0]]["pcc"] == rel[genes[0]]["pcc"] is not None
    # Progress in batches of 8 (the last event may be overtaken by the result).
    assert (
        seen
        and all(t == 20 for _, t in seen)
        and [d for d, _ in seen] == sorted(d for d, _ in seen)
    )
    assert {d for d, _ in seen} <= {8, 16, 20}


def test_table_format_matches_in_process_prediction(
    server: Server, client_of: ClientOf, predictor: Predictor
) -> None:
    tiles, mpp = model_tiles(predictor, 4, seed=3, px=predictor.tile_px)
    out = client_of(server.address).predict(tiles, boxes_for(4), mpp, format="table", level=0.8)
    validate(as_header(out), "result_predict")
    assert out["boxes"] == boxes_for(4).tolist() and out["names"] == [None] * 4
    # In process: the same stain fit (on the tiles of this request) and the same model.
    from stimage.server._images import pick_stain_tiles
    from stimage.tiles import StainNormalizer

    norm = StainNormalizer.from_dict(predictor.bundle.stain_target).fit_source(
        pick_stain_tiles(tiles)
    )
    ref = predictor.predict_tiles(
        np.stack([norm.transform(t) for t in tiles]), None, 0.8
    ).measurements()
    assert out["columns"] == list(ref.columns)
    assert out["values"].dtype == np.float32 and out["values"].shape == (4, len(ref.columns))
    np.testing.assert_allclose(out["values"], ref.to_numpy(), rtol=1e-4, atol=1e-5)


def test_stain_fit_is_kept_per_image_id(
    server: Server, client_of: ClientOf, predictor: Predictor
) -> None:
    c = client_of(server.address)
    tissue, mpp = model_tiles(predictor, 3, seed=20)
    first = c.predict(tissue, boxes_for(3), mpp, image_id="img-A", format="table")
    assert (predictor.bundle.name, "img-A") in server.stain_cache
    # A later request of the same image is normalised with the first fit: the same tile gives
    # the same prediction whatever else is in the request ...
    dark = (tissue[1] * 0.6).astype(np.uint8)
    again = c.predict([tissue[0], dark], boxes_for(2), mpp, image_id="img-A", format="table")
    np.testing.assert_allclose(again["values"][0], first["values"][0], rtol=1e-4)
    # ... while without an image id the fit is made on the request's own tiles.
    alone = c.predict([tissue[0], dark], boxes_for(2), mpp, format="table")
    assert not np.allclose(alone["values"][0], first["values"][0], rtol=1e-3)
    # Background alone cannot start an image: a clear error, not a silent bad fit.
    glass = [np.full((32, 32, 3), 240, np.uint8)] * 2
    with pytest.raises(ServerError) as e:
        c.predict(glass, boxes_for(2), mpp, image_id="img-B")
    assert e.value.code == ErrorCode.NO_TISSUE
    # ... but once the image has a fit, background tiles of it are predicted.
    assert c.predict(glass, boxes_for(2), mpp, image_id="img-A")["n_tiles"] == 2


def test_tile_scale_and_size_checks(
    server: Server, client_of: ClientOf, predictor: Predictor
) -> None:
    c = client_of(server.address)
    tiles, mpp = model_tiles(predictor, 2)
    with pytest.raises(ServerError) as e:
        c.predict(tiles, boxes_for(2), mpp * 1.2)
    assert e.value.code == ErrorCode.WRONG_SCALE and "µm" in e.value.message
    assert e.value.details["tile_um"] == predictor.tile_um
    # Within the tolerance it works (resized to the model's input).
    assert c.predict(tiles, boxes_for(2), mpp * 1.03)["n_tiles"] == 2
    png = encode_tile(tiles[0])
    for bad, code in [
        (png[: len(png) // 2], ErrorCode.BAD_IMAGE),
        (b"GIF89a" + png[6:], ErrorCode.BAD_IMAGE),
        (encode_tile(np.zeros((2049, 4, 3), np.uint8)), ErrorCode.TOO_LARGE),
    ]:
        with pytest.raises(ServerError) as e:
            c.predict([png, bad], boxes_for(2), mpp)
        assert e.value.code == code and "tile 1" in e.value.message


def test_unknown_model_gene_op_and_version(
    server: Server, client_of: ClientOf, predictor: Predictor
) -> None:
    c = client_of(server.address)
    tiles, mpp = model_tiles(predictor, 1)
    with pytest.raises(ServerError) as e:
        c.predict(tiles, boxes_for(1), mpp, model="nope")
    assert e.value.code == ErrorCode.UNKNOWN_MODEL and predictor.bundle.name in e.value.message
    with pytest.raises(ServerError) as e:
        c.predict(tiles, boxes_for(1), mpp, genes=["NOT_A_GENE"])
    assert e.value.code == ErrorCode.UNKNOWN_GENE and "NOT_A_GENE" in e.value.message
    with pytest.raises(ServerError) as e:
        c.request("cells", {})
    assert e.value.code == ErrorCode.BAD_REQUEST and "params" in e.value.message
    with pytest.raises(ServerError) as e:
        c.request("frobnicate")
    assert e.value.code == ErrorCode.UNKNOWN_OP and "predict" in e.value.message
    sock = _raw(server.address)
    (reply,) = _ask(sock, [json.dumps({"protocol": 2, "id": "v2", "op": "hello"}).encode()])
    validate(reply, "error")
    assert reply["id"] == "v2" and reply["code"] == ErrorCode.UNSUPPORTED_PROTOCOL
    assert "protocol 1" in reply["message"] and "protocol 2" in reply["message"]
    sock.close()


def test_slide_path_requests_are_confined(
    server: Server, client_of: ClientOf, slide_root: Path, tmp_path: Path
) -> None:
    c = client_of(server.address)
    # 200 µm tiles at 2 µm/px = 100 px: a 300 x 200 px box holds 3 x 2 tiles.
    out = c.predict_slide(slide_root / "wsi.tif", [200, 200, 300, 200], format="table")
    validate(as_header(out), "result_predict")
    assert out["n_tiles"] == 6 and out["slide"]["mpp"] == 2.0 and out["slide"]["width"] == 800
    assert all(b[2] == pytest.approx(100) for b in out["boxes"])
    outside = tmp_path / "elsewhere.tif"
    outside.write_bytes((slide_root / "wsi.tif").read_bytes())
    link = slide_root / "escape.tif"
    link.symlink_to(outside)
    try:
        for p in (outside, link, slide_root / ".." / outside.name, Path("relative.tif")):
            with pytest.raises(ServerError) as e:
                c.predict_slide(p)
            assert e.value.code == ErrorCode.FORBIDDEN_PATH, p
    finally:
        link.unlink()
    with pytest.raises(ServerError) as e:
        c.predict_slide(slide_root / "missing.tif")
    assert e.value.code == ErrorCode.NOT_FOUND
    with pytest.raises(ServerError) as e:
        c.predict_slide(slide_root / "wsi.tif", {"type": "Polygon", "coordinates": [[[0, 0], [1]]]})
    assert e.value.code == ErrorCode.BAD_REQUEST


def test_requests_with_delimiter_frame_and_duplicate_ids(
    server: Server, predictor: Predictor
) -> None:
    tiles, mpp = model_tiles(predictor, 40)
    sock = _raw(server.address)
    # A REQ-style empty delimiter is accepted and echoed.
    sock.send_multipart([b"", json.dumps({"protocol": 1, "id": "d", "op": "ping"}).encode()])
    assert sock.poll(5000)
    reply = sock.recv_multipart()
    assert reply[0] == b"" and json.loads(reply[1])["kind"] == "result"
    params = {"mpp": mpp, "tiles": [{"frame": i, "box": [0, 0, 1, 1]} for i in range(40)]}
    hdr = json.dumps({"protocol": 1, "id": "same", "op": "predict", "params": params}).encode()
    frames = [encode_tile(t) for t in tiles]
    sock.send_multipart([hdr, *frames])
    sock.send_multipart([hdr, *frames])
    finals = []
    while len(finals) < 2:
        assert sock.poll(20000)
        msg = json.loads(sock.recv_multipart()[0])
        validate(
            msg,
            {
                "progress": "progress",
                "heartbeat": "heartbeat",
                "result": "result",
                "error": "error",
            }[msg["kind"]],
        )
        if msg["kind"] in ("result", "error"):
            finals.append(msg)
    kinds = sorted(m["kind"] for m in finals)
    assert kinds == ["error", "result"]
    err = next(m for m in finals if m["kind"] == "error")
    assert err["code"] == ErrorCode.BAD_REQUEST and "already in flight" in err["message"]
    # Nothing follows a final reply.
    assert not sock.poll(600)
    sock.close()
