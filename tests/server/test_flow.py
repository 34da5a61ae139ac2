"""Work in flight: cancel, deadlines, backpressure, vanished clients, many clients, restarts."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import zmq

from server._helpers import TEST_LIMITS, GatedPredictor, boxes_for, model_tiles, wait_for
from stimage.models import Predictor
from stimage.server import ErrorCode, Server, ServerConfig, ServerError
from stimage.server._images import encode_tile
from stimage.server.client import Client

ClientOf = Callable[..., Client]


@pytest.fixture(scope="module")
def gated(predictor: Predictor) -> GatedPredictor:
    return GatedPredictor(predictor)


@pytest.fixture(scope="module")
def gserver(gated: GatedPredictor) -> Iterator[Server]:
    with Server([gated], ServerConfig(port=0, limits=TEST_LIMITS, device="cpu")) as s:
        yield s


@pytest.fixture
def gate(gated: GatedPredictor, gserver: Server) -> Iterator[threading.Event]:
    """The gate of the model, closed during the test, opened (and the server idle) after."""
    gated.gate.clear()
    gated.entered.clear()
    yield gated.gate
    gated.gate.set()
    assert wait_for(lambda: gserver.in_flight == 0 and gserver.batcher.active == 0)


def _send(sock: zmq.Socket, rid: str, params: dict, frames: list[bytes]) -> None:
    hdr = {"protocol": 1, "id": rid, "op": "predict", "params": params}
    sock.send_multipart([json.dumps(hdr).encode(), *frames])


def _tile_request(predictor: Predictor, n: int, seed: int = 0) -> tuple[dict, list[bytes]]:
    tiles, mpp = model_tiles(predictor, n, seed)
    params = {"mpp": mpp, "tiles": [{"frame": i, "box": [i, 0, 1, 1]} for i in range(n)]}
    return params, [encode_tile(t) for t in tiles]


def test_cancel_takes_effect_within_one_batch(
    gserver: Server,
    gated: GatedPredictor,
    gate: threading.Event,
    client_of: ClientOf,
    predictor: Predictor,
) -> None:
    c = client_of(gserver.address)
    tiles, mpp = model_tiles(predictor, 200)
    cancel = threading.Event()
    before = gserver.batcher.tiles

    def cancel_when_running() -> None:
        gated.entered.wait(20)
        cancel.set()

    threading.Thread(target=cancel_when_running, daemon=True).start()
    with pytest.raises(ServerError) as e:
        c.predict(tiles, boxes_for(200), mpp, cancel=cancel)
    assert e.value.code == ErrorCode.CANCELLED
    gate.set()
    assert wait_for(lambda: gserver.batcher.active == 0)
    # Only the batch already on the device ran; the other 192 tiles never did.
    assert gserver.batcher.tiles - before == TEST_LIMITS.batch_size
    assert c.predict(tiles[:2], boxes_for(2), mpp)["n_tiles"] == 2


def test_deadline(
    gserver: Server, gate: threading.Event, client_of: ClientOf, predictor: Predictor
) -> None:
    c = client_of(gserver.address)
    tiles, mpp = model_tiles(predictor, 2)
    with pytest.raises(ServerError) as e:
        c.predict(tiles, boxes_for(2), mpp, timeout=0.3)
    assert e.value.code == ErrorCode.DEADLINE and "deadline" in e.value.message


def test_busy_when_the_queue_is_full(
    gserver: Server, gate: threading.Event, client_of: ClientOf, predictor: Predictor
) -> None:
    lim = gserver.config.limits
    per = lim.max_client_requests
    socks = []
    for _ in range(-(-lim.max_requests // per)):
        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(gserver.address)
        socks.append(sock)
    params, frames = _tile_request(predictor, 1)
    sent = {}
    for k in range(lim.max_requests):
        sock = socks[k // per]
        _send(sock, f"q{k}", params, frames)
        sent[f"q{k}"] = sock
    assert wait_for(lambda: gserver.in_flight == lim.max_requests)
    c = client_of(gserver.address)
    tiles, mpp = model_tiles(predictor, 1)
    with pytest.raises(ServerError) as e:
        c.predict(tiles, boxes_for(1), mpp)
    assert e.value.code == ErrorCode.BUSY and e.value.details["retry_after_ms"] > 0
    gate.set()
    finals = {}
    for sock in socks:
        want = sum(s is sock for s in sent.values())
        got = 0
        while got < want:
            assert sock.poll(20000)
            msg = json.loads(sock.recv_multipart()[0])
            if msg["kind"] in ("result", "error"):
                finals[msg["id"]] = msg["kind"]
                got += 1
    assert finals == {f"q{k}": "result" for k in range(lim.max_requests)}
    assert c.predict(tiles, boxes_for(1), mpp)["n_tiles"] == 1
    for sock in socks:
        sock.close()


def test_one_client_cannot_fill_the_server(
    gserver: Server, gate: threading.Event, client_of: ClientOf, predictor: Predictor
) -> None:
    """A connection over its own limit gets busy; another client is still admitted."""
    per = gserver.config.limits.max_client_requests
    assert per < gserver.config.limits.max_requests
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(gserver.address)
    params, frames = _tile_request(predictor, 1)
    for k in range(per + 1):
        _send(sock, f"c{k}", params, frames)
    refused = None
    while refused is None:
        assert sock.poll(20000)
        msg = json.loads(sock.recv_multipart()[0])
        if msg["kind"] == "error":
            refused = msg
    assert refused["id"] == f"c{per}" and refused["code"] == ErrorCode.BUSY
    assert "this client" in refused["message"]
    other = zmq.Context.instance().socket(zmq.DEALER)
    other.setsockopt(zmq.LINGER, 0)
    other.connect(gserver.address)
    _send(other, "o1", params, frames)
    assert wait_for(lambda: gserver.in_flight == per + 1)  # admitted, not busy
    gate.set()
    finals = 0
    while finals < per:
        assert sock.poll(20000)
        msg = json.loads(sock.recv_multipart()[0])
        finals += msg["kind"] == "result"
    while True:
        assert other.poll(20000)
        msg = json.loads(other.recv_multipart()[0])
        if msg["kind"] in ("result", "error"):
            assert msg["kind"] == "result"
            break
    other.close()
    sock.close()


def test_a_vanished_client_stalls_no_one(
    gserver: Server,
    gated: GatedPredictor,
    gate: threading.Event,
    client_of: ClientOf,
    predictor: Predictor,
) -> None:
    before_tiles, before_gone = gserver.batcher.tiles, gserver.stats["vanished"]
    ghost = zmq.Context.instance().socket(zmq.DEALER)
    ghost.connect(gserver.address)
    params, frames = _tile_request(predictor, 100)
    _send(ghost, "ghost", params, frames)
    assert gated.entered.wait(20)  # its first batch is on the device
    ghost.close(linger=0)
    # The next heartbeat finds the client gone and closes its request.
    assert wait_for(lambda: gserver.stats["vanished"] > before_gone)
    assert gserver.in_flight == 0
    gate.set()
    tiles, mpp = model_tiles(predictor, 3)
    assert client_of(gserver.address).predict(tiles, boxes_for(3), mpp)["n_tiles"] == 3
    assert wait_for(lambda: gserver.batcher.active == 0)
    assert gserver.batcher.tiles - before_tiles == TEST_LIMITS.batch_size + 3


@pytest.mark.slow
def test_eight_clients_fifty_requests_each(server: Server, predictor: Predictor) -> None:
    genes = predictor.bundle.genes
    tiles, mpp = model_tiles(predictor, 4, px=16)
    errors: list[BaseException] = []

    def run(k: int) -> None:
        try:
            with Client(server.address, timeout=120, heartbeat_timeout=30) as c:
                for r in range(50):
                    n = 1 + (k + r) % 3
                    boxes = boxes_for(n, side=10, x0=1000 * k, y0=100 * r)
                    want = genes[:2] if k % 2 else None
                    out = c.predict(
                        tiles[:n], boxes, mpp, genes=want, names=[f"{k}/{r}/{i}" for i in range(n)]
                    )
                    feats = out["geojson"]["features"]
                    assert [f["properties"]["name"] for f in feats] == [
                        f"{k}/{r}/{i}" for i in range(n)
                    ]
                    got = [f["geometry"]["coordinates"][0][0] for f in feats]
                    assert got == boxes[:, :2].tolist()
                    assert out["genes"] == (want or genes)
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    before = server.batcher.batches
    threads = [threading.Thread(target=run, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors[0]
    # 400 requests of 1-3 tiles ran in fewer batches than requests: tiles were combined.
    assert server.batcher.batches - before < 400
    assert server.in_flight == 0


def test_graceful_stop_is_reported_and_the_client_reconnects(
    predictor: Predictor, client_of: ClientOf
) -> None:
    gated = GatedPredictor(predictor)
    gated.gate.clear()
    first = Server([gated], ServerConfig(port=0, limits=TEST_LIMITS, device="cpu"))
    first.start(warm_up=False)
    port = int(first.address.rsplit(":", 1)[1])
    c = client_of(first.address, heartbeat_timeout=2.0)
    tiles, mpp = model_tiles(predictor, 4)
    threading.Thread(target=lambda: (gated.entered.wait(20), first.stop()), daemon=True).start()
    with pytest.raises(ServerError) as e:
        c.predict(tiles, boxes_for(4), mpp)
    assert e.value.code == ErrorCode.UNAVAILABLE
    gated.gate.set()
    second = Server([predictor], ServerConfig(port=port, limits=TEST_LIMITS, device="cpu"))
    with second:
        assert c.predict(tiles, boxes_for(4), mpp)["n_tiles"] == 4


@pytest.mark.slow
def test_killed_server_is_reported_and_the_client_reconnects(
    bundle_dir: Path, predictor: Predictor, client_of: ClientOf
) -> None:
    import os
    import signal
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    cmd = [
        sys.executable, "-c", "from stimage.cli import main; main()", "-q", "serve",
        "--model", str(bundle_dir), "--port", str(port), "--device", "cpu", "--batch-size", "4",
    ]  # fmt: skip

    def launch() -> subprocess.Popen:
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        probe = Client(address, heartbeat_timeout=1.0)
        try:
            assert wait_for(lambda: _answers(probe), timeout=120), "server did not start"
        finally:
            probe.close()
        return p

    proc = launch()
    try:
        c = client_of(address, heartbeat_timeout=3.0)
        tiles, mpp = model_tiles(predictor, 200)
        with pytest.raises(ServerError) as e:
            c.predict(
                tiles, boxes_for(200), mpp, progress=lambda d, t: os.kill(proc.pid, signal.SIGKILL)
            )
        assert e.value.code == ErrorCode.DISCONNECTED and "reconnects" in e.value.message
        proc.wait(10)
        proc = launch()
        assert c.predict(tiles[:3], boxes_for(3), mpp)["n_tiles"] == 3
    finally:
        proc.kill()
        proc.wait(10)


def _answers(c: Client) -> bool:
    try:
        c.ping()
        return True
    except ServerError:
        return False


def test_stop_and_start_again_on_the_same_object(predictor: Predictor, client_of: ClientOf) -> None:
    s = Server([predictor], ServerConfig(port=0, limits=TEST_LIMITS, device="cpu"))
    s.start(warm_up=False)
    s.stop()
    s.start(warm_up=False)
    try:
        assert client_of(s.address).ping() > 0 and s.running
    finally:
        s.stop()
    assert not s.running
    np.testing.assert_equal(s.in_flight, 0)
