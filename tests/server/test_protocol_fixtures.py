"""The JSON fixtures of every protocol message (shared with the Java client's tests) are valid,
complete, and what a real server sends and accepts."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import pytest
import zmq

from stimage.models import Predictor
from stimage.server import PROTOCOL_VERSION, ErrorCode, Server, validate
from stimage.server._images import decode_tile
from stimage.server.ops import default_ops

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "protocol"
ALL = sorted(FIXTURES.glob("*.json"))
#: Keys a reply may leave out (optional in the schema).
OPTIONAL = {
    "classifier_genes",
    "description",
    "details",
    "slide",
    "name",
    "classification",
    "gene_pcc",
    "unreliable_genes",
    "context_um",
}


def _load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def _frames(fx: dict[str, Any]) -> list[bytes]:
    return [base64.b64decode(f["data"]) for f in fx["frames"]]


@pytest.mark.parametrize("path", ALL, ids=[p.stem for p in ALL])
def test_fixture_is_valid(path: Path) -> None:
    fx = json.loads(path.read_text(encoding="utf-8"))
    assert set(fx) <= {
        "description",
        "direction",
        "schema",
        "params_schema",
        "result_schema",
        "header",
        "frames",
        "reply",
    }
    assert fx["direction"] in ("request", "reply") and fx["description"]
    h = fx["header"]
    assert h["protocol"] == PROTOCOL_VERSION
    validate(h, fx["schema"])
    if "params_schema" in fx:
        validate(h.get("params", {}), fx["params_schema"])
        assert fx["params_schema"] == f"params_{h['op']}"
        assert (FIXTURES / f"{fx['reply']}.json").is_file()
    if "result_schema" in fx:
        validate(h["result"], fx["result_schema"])
    if fx["direction"] == "request":
        for f in _frames(fx):
            assert decode_tile(f, 4096).shape[2] == 3
    elif h.get("result", {}).get("format") == "table":
        n, c = h["result"]["values"]["shape"]
        (f,) = _frames(fx)
        assert len(f) == 4 * n * c and len(h["result"]["columns"]) == c
    else:
        assert fx["frames"] == []
    if fx["direction"] == "request" and "tiles" in h.get("params", {}):
        assert sorted(t["frame"] for t in h["params"]["tiles"]) == list(range(len(fx["frames"])))


def test_fixtures_cover_every_message() -> None:
    names = {p.stem for p in ALL}
    for code in ErrorCode.all():
        if code != ErrorCode.DISCONNECTED:  # decided by clients, never sent
            assert f"reply_error_{code}" in names, code
    for op in default_ops():
        assert f"request_{op}" in names or any(n.startswith(f"request_{op}_") for n in names), op
        assert f"reply_{op}_result" in names or any(
            n.startswith(f"reply_{op}_result") for n in names
        ), op
    assert {"reply_progress", "reply_heartbeat", "reply_error_unreadable_header"} <= names


def _shape_matches(fixture: Any, actual: Any, where: str = "") -> None:
    if isinstance(fixture, dict):
        if where.endswith("stimage.context") and actual is None:
            return  # a model without spatial context
        assert isinstance(actual, dict), where
        if where.endswith("measurements"):
            assert all(isinstance(v, int | float | str) for v in actual.values()), where
            return
        if where.endswith("gene_pcc"):  # keyed by gene
            assert all(v is None or isinstance(v, float) for v in actual.values()), where
            return
        if where.endswith("stimage.genes"):  # keyed by gene: each entry's shape
            assert all(set(v) == {"pcc", "coverage", "reliable"} for v in actual.values()), where
            return
        assert set(actual) <= set(fixture) | OPTIONAL, (where, set(actual) - set(fixture))
        assert set(fixture) - OPTIONAL <= set(actual), (where, set(fixture) - set(actual))
        for k in set(fixture) & set(actual):
            _shape_matches(fixture[k], actual[k], f"{where}.{k}")
    elif isinstance(fixture, list):
        assert isinstance(actual, list), where
        if fixture and actual:
            _shape_matches(fixture[0], actual[0], f"{where}[0]")
    elif where.endswith("result.context_tiles") and actual is None:
        pass  # explained by a model without spatial context
    elif isinstance(fixture, bool) or fixture is None:
        assert actual is None or isinstance(actual, bool) == isinstance(fixture, bool), where
    elif isinstance(fixture, int | float):
        assert isinstance(actual, int | float) and not isinstance(actual, bool), where
    else:
        assert isinstance(actual, type(fixture)), where


def _adapt(
    name: str, header: dict[str, Any], predictor: Predictor, slide_root: Path
) -> dict[str, Any]:
    """Fit a request fixture to the test server (its model, genes and slide folder)."""
    h = copy.deepcopy(header)
    p = h["params"]
    if "model" in p:
        p["model"] = predictor.bundle.name
    if "genes" in p:
        p["genes"] = predictor.bundle.genes[:2]
    if "slide" in p:
        p["slide"]["path"] = str(slide_root / "wsi.tif")
        if "mpp" in p["slide"]:
            p["slide"]["mpp"] = 2.0
        if isinstance(p["slide"].get("region"), list):
            p["slide"]["region"] = [200.0, 200.0, 300.0, 200.0]
        elif "region" in p["slide"]:
            p["slide"]["region"]["coordinates"] = [
                [[200, 200], [500, 200], [500, 400], [200, 400], [200, 200]]
            ]
    return h


@pytest.mark.parametrize("name", [p.stem for p in ALL if p.stem.startswith("request_")])
def test_requests_replayed_against_a_server(
    name: str, server: Server, predictor: Predictor, slide_root: Path
) -> None:
    fx = _load(name)
    assert predictor.tile_um == 200.0  # the fixtures' tiles cover 200 µm
    header = _adapt(name, fx["header"], predictor, slide_root)
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(server.address)
    try:
        sock.send_multipart([json.dumps(header).encode(), *_frames(fx)])
        kinds = []
        while True:
            assert sock.poll(20000), "no reply"
            frames = sock.recv_multipart()
            reply = json.loads(frames[0])
            kinds.append(reply["kind"])
            if reply["kind"] in ("result", "error"):
                break
            validate(reply, reply["kind"])
            _shape_matches(_load(f"reply_{reply['kind']}")["header"], reply)
    finally:
        sock.close()
    assert reply["kind"] == "result", reply
    assert reply["id"] == header["id"] and reply["op"] == header["op"]
    expected = _load(fx["reply"])
    validate(reply, expected["schema"])
    validate(reply["result"], expected["result_schema"])
    _shape_matches(expected["header"], reply)
    assert len(frames) - 1 == len(expected["frames"])
    if reply["result"].get("format") == "table":
        n, c = reply["result"]["values"]["shape"]
        assert len(frames[1]) == 4 * n * c and n == reply["result"]["n_tiles"]


def test_error_fixtures_match_real_errors(server: Server) -> None:
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(server.address)
    cases = {
        "reply_error_unsupported_protocol": {"protocol": 2, "id": "a", "op": "hello"},
        "reply_error_unknown_op": {"protocol": 1, "id": "b", "op": "train"},
        "reply_error_bad_request": {"protocol": 1, "id": "c", "op": "ping", "params": {"x": 1}},
    }
    try:
        for name, header in cases.items():
            sock.send_multipart([json.dumps(header).encode()])
            assert sock.poll(10000)
            reply = json.loads(sock.recv_multipart()[0])
            fx = _load(name)["header"]
            assert reply["code"] == fx["code"]
            _shape_matches(fx, reply)
        sock.send_multipart([b"not json"])
        assert sock.poll(10000)
        reply = json.loads(sock.recv_multipart()[0])
        _shape_matches(_load("reply_error_unreadable_header")["header"], reply)
        assert reply["id"] is None
    finally:
        sock.close()
