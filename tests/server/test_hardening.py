"""Regressions of the hostile probe (hardening issue): each once crashed, froze or starved
the server; each now gets a clear error reply while the server goes on serving."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import zmq

from server._helpers import model_tiles
from stimage.models import Predictor
from stimage.server import ErrorCode, Server, ServerError
from stimage.server._images import encode_tile
from stimage.server.client import Client

ClientOf = Callable[..., Client]


def _raw(address: str) -> zmq.Socket:
    s = zmq.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(address)
    return s


def _final(sock: zmq.Socket, frames: list[bytes], timeout_ms: int = 10000) -> dict:
    sock.send_multipart(frames)
    while True:
        assert sock.poll(timeout_ms), "no reply"
        msg = json.loads(sock.recv_multipart()[0])
        if msg["kind"] in ("result", "error"):
            return msg


def _alive(server: Server) -> None:
    assert server.running
    with Client(server.address, heartbeat_timeout=5, timeout=30) as c:
        assert c.ping() is not None


@pytest.mark.parametrize(
    "raw",
    [
        rb'{"protocol":1,"id":"\ud800","op":"ping"}',
        rb'{"protocol":"\ud83d","id":"a","op":"ping"}',
        rb'{"protocol":1,"id":"b","op":"ping","params":{"\udc80":1}}',
        rb'{"protocol":1,"id":"c","op":"predict","params":{"slide":{"path":"/x\udc80.tif"}}}',
    ],
)
def test_lone_surrogates_get_an_error_not_a_crash(server: Server, raw: bytes) -> None:
    sock = _raw(server.address)
    reply = _final(sock, [raw])
    assert reply["kind"] == "error" and reply["code"] == ErrorCode.BAD_REQUEST
    assert "surrogate" in reply["message"]
    sock.close()
    _alive(server)


def test_a_tile_named_with_a_surrogate_gets_a_reply(server: Server, predictor: Predictor) -> None:
    arrs, mpp = model_tiles(predictor, 1)
    hdr = (
        f'{{"protocol":1,"id":"n","op":"predict","params":{{"mpp":{mpp!r},'
        '"tiles":[{"frame":0,"box":[0,0,10,10],"name":"\\ud800"}]}}'
    ).encode()
    sock = _raw(server.address)
    reply = _final(sock, [hdr, encode_tile(arrs[0])])
    assert reply["kind"] == "error" and reply["code"] == ErrorCode.BAD_REQUEST
    sock.close()


@pytest.mark.parametrize("number", [b"1e400", b"-1e400", b"1" + b"0" * 25])
def test_numbers_beyond_float_or_64_bits_are_refused(server: Server, number: bytes) -> None:
    hdr = (
        b'{"protocol":1,"id":"big","op":"predict","params":{"format":"table",'
        b'"slide":{"path":"/nowhere.tif","region":[0,0,' + number + b",10]}}}"
    )
    sock = _raw(server.address)
    reply = _final(sock, [hdr])
    assert reply["code"] == ErrorCode.BAD_REQUEST
    assert "must be finite" in reply["message"] or "64 bits" in reply["message"]
    sock.close()


def test_a_huge_mixed_gene_list_is_checked_in_linear_time(server: Server) -> None:
    from stimage.server import ProtocolError, validate

    t0 = time.monotonic()
    for bad in ([f"G{i}" for i in range(19999)] + [1], [[i] for i in range(20000)]):
        with pytest.raises(ProtocolError):
            validate({"genes": bad, "slide": {"path": "/x"}}, "params_predict", "params")
    assert time.monotonic() - t0 < 5.0  # was 32 s on the I/O thread
    genes: list[object] = [f"G{i}" for i in range(5999)] + [1]  # within the test header limit
    hdr = json.dumps(
        {
            "protocol": 1,
            "id": "genes",
            "op": "predict",
            "params": {"genes": genes, "slide": {"path": "/x"}},
        }
    ).encode()
    sock = _raw(server.address)
    t0 = time.monotonic()
    reply = _final(sock, [hdr])
    assert time.monotonic() - t0 < 5.0  # was 32 s, blocking every client
    assert reply["code"] == ErrorCode.BAD_REQUEST
    dup = json.dumps(
        {
            "protocol": 1,
            "id": "dup",
            "op": "predict",
            "params": {"genes": ["A"] * 6000, "slide": {"path": "/x"}},
        }
    ).encode()
    reply = _final(sock, [dup])
    assert reply["code"] == ErrorCode.BAD_REQUEST and "non-unique" in reply["message"]
    sock.close()


def _scribble(n: int, seed: int = 0) -> dict:
    pts = np.random.default_rng(seed).uniform(0, 300, (n, 2)).round(2).tolist()
    return {"type": "Polygon", "coordinates": [[*pts, pts[0]]]}


def test_invalid_regions_are_repaired_when_small_and_refused_when_large(
    server: Server, client_of: ClientOf, slide_root: Path
) -> None:
    c = client_of(server.address)
    bowtie = {"type": "Polygon", "coordinates": [[[0, 0], [400, 300], [400, 0], [0, 300], [0, 0]]]}
    out = c.predict_slide(slide_root / "wsi.tif", bowtie, format="table")
    assert out["n_tiles"] >= 1
    t0 = time.monotonic()
    with pytest.raises(ServerError) as e:
        c.predict_slide(slide_root / "wsi.tif", _scribble(1800), format="table")
    assert time.monotonic() - t0 < 10.0  # was 6 s of the I/O thread, now refused at once
    assert e.value.code == ErrorCode.BAD_REQUEST
    assert "Self-intersection" in e.value.message and "QuPath" in e.value.message
    _alive(server)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_named_as_a_slide_is_refused(
    server: Server, client_of: ClientOf, slide_root: Path
) -> None:
    fifo = slide_root / "pipe.png"
    os.mkfifo(fifo)
    try:
        c = client_of(server.address)
        with pytest.raises(ServerError) as e:
            c.predict_slide(fifo)
        assert e.value.code == ErrorCode.BAD_REQUEST and "not a regular file" in e.value.message
        # Other slide requests are not starved.
        assert c.predict_slide(slide_root / "wsi.tif", [200, 200, 300, 200], format="table")[
            "n_tiles"
        ]
    finally:
        fifo.unlink()


def test_plain_images_over_the_pixel_limit_are_refused(
    server: Server,
    client_of: ClientOf,
    slide_root: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    from PIL import Image

    monkeypatch.setenv("STIMAGE_CACHE", str(tmp_path / "cache"))
    big = slide_root / "flat.png"
    Image.new("1", (4000, 3000)).save(big)  # a few kB on disk, 12 M pixels decoded
    try:
        monkeypatch.setenv("STIMAGE_MAX_IMAGE_PIXELS", "1000000")
        c = client_of(server.address)
        with pytest.raises(ServerError) as e:
            c.predict_slide(big, [0, 0, 500, 500], mpp=2.0)
        assert e.value.code == ErrorCode.TOO_LARGE
        assert "STIMAGE_MAX_IMAGE_PIXELS" in e.value.message and "pyramidal TIFF" in e.value.message
        assert not (tmp_path / "cache" / "decoded").exists() or not any(
            (tmp_path / "cache" / "decoded").iterdir()
        )
    finally:
        big.unlink()


def test_an_image_of_one_tile_predicts_as_one_tile(
    server: Server, client_of: ClientOf, slide_root: Path, predictor: Predictor
) -> None:
    """A crop of one model tile once had 'no tissue': less than the usual minimum tissue area."""
    from PIL import Image

    from _synth import render_he

    mpp = 0.5
    side = round(predictor.tile_um / mpp)
    path = slide_root / "one_tile.png"
    Image.fromarray(render_he(side, side, np.ones((side, side), bool), seed=4)).save(path)
    try:
        out = client_of(server.address).predict_slide(path, mpp=mpp, format="table")
        assert out["n_tiles"] == 1
    finally:
        path.unlink()


@pytest.mark.parametrize("address", ["foo", "127.0.0.1:5557", "tcp://host", "tcp://h:99999"])
def test_a_malformed_client_address_is_refused_at_once(address: str) -> None:
    """An address ZeroMQ cannot connect to once left a socket open and hung the client."""
    from stimage.errors import ConfigError

    t0 = time.monotonic()
    with (
        pytest.raises(ConfigError, match="tcp://HOST:PORT"),
        Client(address, heartbeat_timeout=2, timeout=5) as c,
    ):
        c.ping()
    assert time.monotonic() - t0 < 5
