"""Over 1000 malformed or hostile messages: each gets an error reply or is dropped, and the
server keeps serving."""

from __future__ import annotations

import copy
import json
import random
import struct
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
import zmq

from server._helpers import TEST_LIMITS, model_tiles, wait_for
from stimage.models import Predictor
from stimage.server import ErrorCode, ProtocolError, Server, validate
from stimage.server._images import encode_tile
from stimage.server._protocol import decode_header
from stimage.server.client import Client

Message = tuple[str, list[bytes]]  # (label, frames)


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims a size its data does not have (a decompression bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    data = zlib.compress(b"\x00" * 64)
    idat = b"IDAT" + data
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))
        + struct.pack(">I", len(data)) + idat + struct.pack(">I", zlib.crc32(idat))
        + struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    )  # fmt: skip


WEIRD: list[Any] = [
    None, True, False, 0, -1, 1.5, 10**30, -(10**30), "", "x", "1", "NaN", "☃" * 50, "x" * 5000,
    [], [1, 2], [[[]]], {}, {"a": 1}, {"frame": 0}, [None] * 10, 1e308, -0.0, "\x00", "../../etc/passwd",
]  # fmt: skip


def _header(h: Any) -> bytes:
    return json.dumps(h).encode()


def _messages(rng: random.Random, tiles: list[bytes], mpp: float, slide: str) -> Iterator[Message]:
    good_png = tiles[0]
    base = {
        "protocol": 1,
        "id": "base",
        "op": "predict",
        "params": {
            "mpp": mpp,
            "image_id": "fuzz",
            "tiles": [{"frame": 0, "box": [0, 0, 10, 10]}, {"frame": 1, "box": [10, 0, 10, 10]}],
        },
    }
    n = 0

    def tag(label: str, hdr: Any, frames: list[bytes] | None = None) -> Message:
        nonlocal n
        n += 1
        if isinstance(hdr, dict) and "id" in hdr and hdr["id"] == "base":
            hdr = {**hdr, "id": f"m{n}"}
        raw = hdr if isinstance(hdr, bytes) else _header(hdr)
        return label, [raw, *(frames if frames is not None else [])]

    # 1. Not JSON, not UTF-8, not an object, too deep, too big, non-finite numbers.
    for _ in range(60):
        yield tag("random bytes", bytes(rng.randrange(256) for _ in range(rng.randrange(0, 300))))
    for v in WEIRD:
        yield tag("json non-object", _header(v)) if not isinstance(v, dict) else tag("object", v)
    yield tag("empty", b"")
    yield tag("deep", b"[" * 20000 + b"]" * 20000)
    yield tag("deep object", b'{"a":' * 5000 + b"1" + b"}" * 5000)
    yield tag(
        "oversized header", _header({**base, "pad": "x" * (TEST_LIMITS.max_header_bytes + 10)})
    )
    yield tag(
        "NaN literal", b'{"protocol": 1, "id": "nan", "op": "predict", "params": {"mpp": NaN}}'
    )
    yield tag("Infinity literal", b'{"protocol": Infinity, "id": "inf", "op": "ping"}')
    yield tag("latin-1", '{"protocol": 1, "id": "é", "op": "ping"}'.encode("latin-1"))
    # 2. Envelope fields of every wrong type.
    for key in ("protocol", "id", "op", "params"):
        for v in WEIRD:
            h = copy.deepcopy(base)
            h[key] = v
            yield tag(f"{key}={v!r:.20}", h, [good_png, good_png])
        h = copy.deepcopy(base)
        del h[key]
        yield tag(f"no {key}", h, [good_png, good_png])
    for op in [
        "cells",
        "explain",
        "train",
        "__init__",
        "HELLO",
        "predict ",
        "x" * 65,
        "shutdown",
        "eval",
    ]:
        yield tag(f"op {op:.10}", {"protocol": 1, "id": "base", "op": op, "params": {}})
    for p in [2, 0, -1, 99, 1.5, "1", "v1"]:
        yield tag(f"protocol {p}", {"protocol": p, "id": "base", "op": "hello"})
    # 3. Parameters of every op, fuzzed.
    for op in ("hello", "ping", "cancel"):
        for v in WEIRD:
            yield tag(
                f"{op} params",
                {"protocol": 1, "id": "base", "op": op, "params": {"target": v, "junk": v}},
            )
    pkeys = ["mpp", "image_id", "tiles", "model", "genes", "level", "format", "deadline_ms", "object_type",
             "classification", "slide", "unknown"]  # fmt: skip
    for key in pkeys:
        for v in WEIRD:
            h = copy.deepcopy(base)
            h["params"][key] = v
            yield tag(f"params.{key}", h, [good_png, good_png])
    for key in ("frame", "box", "name", "extra"):
        for v in [*WEIRD, [0, 0, -1, 5], [0, 0, 5], ["a", 0, 1, 1], [0, 0, 1, 1, 1]]:
            h = copy.deepcopy(base)
            h["params"]["tiles"][1][key] = v
            yield tag(f"tile.{key}", h, [good_png, good_png])
    # 4. Frames: wrong count, truncated, corrupt, huge, bombs.
    truncations = [good_png[: rng.randrange(1, len(good_png))] for _ in range(40)]
    corrupt = []
    for _ in range(60):
        b = bytearray(good_png)
        for _ in range(rng.randrange(1, 20)):
            b[rng.randrange(8, len(b))] = rng.randrange(256)
        corrupt.append(bytes(b))
    for f in truncations + corrupt:
        yield tag("bad image", base, [good_png, f])
    jpeg = encode_tile(model_tiles_arr[0], "jpeg")
    for k in range(1, len(jpeg), max(1, len(jpeg) // 30)):
        yield tag("truncated jpeg", base, [jpeg[:k], good_png])
    for frames in (
        [],
        [good_png],
        [good_png] * 3,
        [good_png, b""],
        [good_png, b"\x89PNG\r\n\x1a\n"],
        [good_png, b"\xff\xd8\xff" + b"\x00" * 100],
        [good_png, b"x" * (TEST_LIMITS.max_frame_bytes + 1)],
        [good_png, b"\x89PNG\r\n\x1a\n" + b"\x00" * (TEST_LIMITS.max_frame_bytes + 100)],
        [good_png, _png_claiming(100_000, 100_000)],
        [good_png, _png_claiming(2**31 - 1, 1)],
        [good_png, _png_claiming(0, 0)],
        [good_png, _png_claiming(64, 64)],
        [good_png, encode_tile(model_tiles_arr[1][:16])],
        [good_png] * (TEST_LIMITS.max_frames + 1),
        [good_png, b"GIF89a" + good_png[6:]],
        [good_png, b"BM" + good_png[2:]],
    ):
        yield tag("frames", base, frames)
    many = copy.deepcopy(base)
    many["params"]["tiles"] = [{"frame": 0, "box": [0, 0, 1, 1]}] * (TEST_LIMITS.max_tiles + 1)
    yield tag("too many tiles", many, [good_png])
    # 5. Slide paths that must stay confined, and broken regions.
    for path in ["relative.tif", "/etc/passwd", slide + "/../../../etc/passwd", slide + "\x00.tif", "/",
                 slide + "/missing.tif", slide, "//" + slide]:  # fmt: skip
        yield tag(
            "slide path",
            {"protocol": 1, "id": "base", "op": "predict", "params": {"slide": {"path": path}}},
        )
    bad_regions = [
        {"type": "Polygon", "coordinates": [[[0, 0], [1]]]},
        {"type": "Polygon", "coordinates": [[["a", 0]]]},
        {"type": "MultiPolygon", "coordinates": [[[[0, 0], [1, 1], [0, 1]]]]},
        {"type": "Point", "coordinates": [0, 0]},
        [0, 0, 0, 0],
        [1e308, 1e308, 1e308, 1e308],
    ]
    for region in [*WEIRD, *bad_regions]:
        p = {"slide": {"path": slide + "/wsi.tif", "region": region}}
        yield tag("slide region", {"protocol": 1, "id": "base", "op": "predict", "params": p})
    # 6. What the hostile probe of the hardening issue sent: lone surrogates, numbers beyond
    #    float or 64 bits, a huge mixed gene list, a self-intersecting scribble of a region,
    #    a FIFO and a pixel bomb named as slides, one big image referenced by many tiles.
    for raw in (
        rb'{"protocol":1,"id":"\ud800","op":"ping"}',
        rb'{"protocol":"\ud83d","id":"a","op":"ping"}',
        rb'{"protocol":1,"id":"s","op":"predict","params":{"slide":{"path":"/x\udc80.tif"}}}',
        rb'{"protocol":1,"id":"t","op":"ping","params":{"\udfff":1}}',
        rb'{"protocol":1,"id":"inf","op":"predict","params":{"slide":{"path":"/a","region":[0,0,1e400,1]}}}',
        rb'{"protocol":1,"id":"big","op":"ping","params":{"x":' + b"9" * 30 + b"}}",
    ):
        yield tag("probe", raw)
    for tile_name in ("\ud800", "ok"):
        h = copy.deepcopy(base)
        h["params"]["tiles"][0]["name"] = tile_name
        raw = json.dumps(h).replace("\\\\ud800", "\\ud800").encode()
        yield tag("surrogate tile name", raw, [good_png, good_png])
    genes: list[Any] = [f"G{i}" for i in range(5999)] + [1]
    yield tag("mixed genes", {"protocol": 1, "id": "base", "op": "predict",
                              "params": {"genes": genes, "slide": {"path": slide + "/wsi.tif"}}})  # fmt: skip
    pts = [[rng.uniform(0, 300), rng.uniform(0, 300)] for _ in range(1800)]
    scribble = {"type": "Polygon", "coordinates": [[*pts, pts[0]]]}
    yield tag("scribble region", {"protocol": 1, "id": "base", "op": "predict",
                                  "params": {"slide": {"path": slide + "/wsi.tif", "region": scribble}}})  # fmt: skip
    for name in ("pipe.png", "bomb.png"):
        yield tag("hostile slide", {"protocol": 1, "id": "base", "op": "predict",
                                    "params": {"slide": {"path": f"{slide}/{name}", "mpp": 1.0}}})  # fmt: skip
    many = copy.deepcopy(base)
    many["params"]["tiles"] = [{"frame": 0, "box": [0, 0, 1, 1]}] * 64
    yield tag("one image, many tiles", many, [big_png])
    # 7. Random structural mutations of a valid request until over 1000 messages.
    while n < 1050:
        h = copy.deepcopy(base)
        for _ in range(rng.randrange(1, 4)):
            targets = [h]
            params = h.get("params")
            if isinstance(params, dict):
                targets.append(params)
                if isinstance(params.get("tiles"), list):
                    targets += [t for t in params["tiles"] if isinstance(t, dict)]
            target = rng.choice(targets)
            key = rng.choice([*target, "zzz"])
            if rng.random() < 0.3:
                target.pop(key, None)
            else:
                target[key] = rng.choice(WEIRD)
        frames = [good_png, rng.choice([good_png, *truncations[:5], *corrupt[:5]])]
        yield tag("mutation", h, frames)


model_tiles_arr: list[Any] = []
big_png = b""


class _HelloWatch:
    """A second client asking ``hello`` every 0.05 s for as long as the fuzzing runs."""

    def __init__(self, address: str) -> None:
        import threading

        self.address = address
        self.worst = 0.0
        self.answered = 0
        self.missed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import time

        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self.address)
        k = 0
        while not self._stop.is_set():
            k += 1
            t0 = time.monotonic()
            sock.send_multipart([_header({"protocol": 1, "id": f"h{k}", "op": "hello"})])
            if sock.poll(5000):
                sock.recv_multipart()
                self.answered += 1
                self.worst = max(self.worst, time.monotonic() - t0)
            else:
                self.missed += 1
            self._stop.wait(0.05)
        sock.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


@pytest.mark.slow
def test_a_thousand_hostile_messages(server: Server, predictor: Predictor, slide_root: Any) -> None:
    import os

    import numpy as np

    global big_png
    rng = random.Random(1234)
    arrs, mpp = model_tiles(predictor, 2)
    model_tiles_arr[:] = arrs
    tiles = [encode_tile(a) for a in arrs]
    big_png = encode_tile(np.full((2000, 2000, 3), 200, np.uint8))
    (slide_root / "bomb.png").write_bytes(_png_claiming(20000, 20000))
    if hasattr(os, "mkfifo") and not (slide_root / "pipe.png").exists():
        os.mkfifo(slide_root / "pipe.png")
    watch = _HelloWatch(server.address)
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(server.address)
    codes: dict[str, int] = {}
    count = 0
    for label, frames in _messages(rng, tiles, mpp, str(slide_root)):
        count += 1
        sock.send_multipart(frames)
        try:  # the id as the server can read it
            sent_id = decode_header(frames[0], TEST_LIMITS.max_header_bytes).get("id")
        except ProtocolError:
            sent_id = None
        while True:
            assert sock.poll(20000), f"no reply to message {count} ({label})"
            reply = json.loads(sock.recv_multipart()[0])
            if reply["kind"] in ("result", "error"):
                break
        kind = reply["kind"]
        validate(reply, kind)
        if kind == "error":
            assert reply["code"] != ErrorCode.INTERNAL, (label, reply)
            codes[reply["code"]] = codes.get(reply["code"], 0) + 1
        if isinstance(sent_id, str) and 0 < len(sent_id) <= 128:
            assert reply["id"] == sent_id, (label, reply)
    sock.close()
    watch.stop()
    (slide_root / "bomb.png").unlink()
    (slide_root / "pipe.png").unlink(missing_ok=True)
    assert count >= 1000
    assert sum(codes.values()) > 900
    # hello was answered throughout, and no message held the I/O thread for a second
    assert watch.answered >= 5 and watch.missed == 0 and watch.worst < 2.0, vars(watch)
    assert server.stats["max_io_s"] < 1.0, server.stats
    for code in ("bad_request", "unsupported_protocol", "unknown_op", "too_large", "bad_image",
                 "forbidden_path", "not_found"):  # fmt: skip
        assert codes.get(code, 0) > 0, (code, codes)
    # A frame over ZeroMQ's message limit makes the server drop that connection, nothing else.
    big = zmq.Context.instance().socket(zmq.DEALER)
    big.setsockopt(zmq.LINGER, 0)
    big.connect(server.address)
    big.send_multipart(
        [
            _header({"protocol": 1, "id": "big", "op": "ping"}),
            b"\x00" * (3 * TEST_LIMITS.max_frame_bytes),
        ]
    )
    assert not big.poll(500)
    big.close()
    # The server keeps serving.
    assert server.running and wait_for(lambda: server.in_flight == 0)
    with Client(server.address, heartbeat_timeout=5) as c:
        assert c.hello()["models"]
        assert c.predict(arrs, [[0, 0, 1, 1]] * 2, mpp)["n_tiles"] == 2
