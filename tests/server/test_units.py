"""Parts of the server that need no model: header checks, tile decoding, the stain cache, batching."""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
from PIL import Image

from _synth import render_he
from stimage.server import ErrorCode, Limits, ProtocolError, validate
from stimage.server._batcher import Batcher
from stimage.server._images import (
    StainCache,
    decode_tile,
    encode_tile,
    fit_to_model,
    pick_stain_tiles,
)
from stimage.server._jobs import Job, ModelTask, Request
from stimage.server._protocol import decode_header, encode_header, error_reply, json_safe


def _code(fn, *a) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(ProtocolError) as e:
        fn(*a)
    return e.value.code


def test_decode_header_refuses_what_is_not_a_json_object() -> None:
    assert decode_header(b'{"a": 1}', 100) == {"a": 1}
    assert _code(decode_header, b"x" * 101, 100) == ErrorCode.TOO_LARGE
    for bad in (
        b"",
        b"\xff\xfe",
        b"[1]",
        b"null",
        b'{"a": NaN}',
        b'{"a": -Infinity}',
        b"[" * 5000 + b"]" * 5000,
    ):
        assert _code(decode_header, bad, 1 << 20) == ErrorCode.BAD_REQUEST, bad[:10]
    with pytest.raises(ValueError):
        encode_header({"a": float("nan")})
    assert json_safe({"a": [1.0, float("inf")], "b": float("nan")}) == {"a": [1.0, None], "b": None}


def test_validate_names_the_field() -> None:
    with pytest.raises(ProtocolError, match=r"params\.tiles\.0\.box"):
        validate({"mpp": 1, "tiles": [{"frame": 0, "box": [0, 0, 1]}]}, "params_predict", "params")
    with pytest.raises(ProtocolError, match="not known"):
        validate({"target": "x", "extra": 1}, "params_cancel", "params")
    validate(error_reply(None, "busy", "x" * 5000), "error")
    assert len(error_reply(None, "busy", "x" * 5000)["message"]) <= 500


def test_fast_tile_check_agrees_with_the_schema() -> None:
    import random

    from stimage.server.ops import tile_ok as _tile_ok

    values = [0, 1, -1, 2.0, 2.5, True, None, "1", [], 1e300, 0.0]
    boxes = [
        [0, 0, 1, 1],
        [0, 0, 0, 1],
        [0, 0, 1],
        [0, 0, 1, 1, 1],
        ["0", 0, 1, 1],
        [0.5, -3, 2.5, 1e9],
        "box",
    ]
    rng = random.Random(3)
    for _ in range(3000):
        t: dict = {}
        if rng.random() < 0.9:
            t["frame"] = rng.choice(values)
        if rng.random() < 0.9:
            t["box"] = rng.choice(boxes)
        if rng.random() < 0.3:
            t["name"] = rng.choice(["a", "", 5, "x" * 300])
        if rng.random() < 0.05:
            t["extra"] = 1
        try:
            validate(t, "tile")
            valid = True
        except ProtocolError:
            valid = False
        assert _tile_ok(t) == valid, t


def test_decode_tile_accepts_png_jpeg_and_converts_modes() -> None:
    rgb = render_he(24, 20, np.ones((24, 20), bool), seed=1)
    np.testing.assert_array_equal(decode_tile(encode_tile(rgb), 64), rgb)
    assert decode_tile(encode_tile(rgb, "jpeg"), 64).shape == (24, 20, 3)
    for mode in ("L", "RGBA", "P", "LA"):
        buf = io.BytesIO()
        Image.fromarray(rgb).convert(mode).save(buf, "PNG")
        assert decode_tile(buf.getvalue(), 64).shape == (24, 20, 3), mode


def test_decode_tile_refuses_bombs_truncation_and_other_formats() -> None:
    rgb = render_he(32, 32, seed=2)
    png = encode_tile(rgb)
    assert (
        _code(decode_tile, encode_tile(np.zeros((65, 8, 3), np.uint8)), 64) == ErrorCode.TOO_LARGE
    )
    assert _code(decode_tile, png[:-30], 64) == ErrorCode.BAD_IMAGE
    assert _code(decode_tile, encode_tile(rgb, "jpeg")[:200], 64) == ErrorCode.BAD_IMAGE
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "GIF")
    assert _code(decode_tile, buf.getvalue(), 64) == ErrorCode.BAD_IMAGE
    assert _code(decode_tile, b"", 64) == ErrorCode.BAD_IMAGE


def test_fit_to_model_checks_physical_size() -> None:
    tile = np.zeros((100, 100, 3), np.uint8)
    assert fit_to_model(tile, 2.0, 200.0, 64, 0.05).shape == (64, 64, 3)
    assert fit_to_model(tile, 2.08, 200.0, 64, 0.05).shape == (64, 64, 3)
    with pytest.raises(ProtocolError) as e:
        fit_to_model(tile, 1.0, 200.0, 64, 0.05)
    assert e.value.code == ErrorCode.WRONG_SCALE and "200 px" in e.value.message
    assert (
        _code(fit_to_model, np.zeros((100, 80, 3), np.uint8), 2.0, 200.0, 64, 0.05)
        == ErrorCode.WRONG_SCALE
    )


def test_pick_stain_tiles_prefers_tissue() -> None:
    tissue = [render_he(32, 32, np.ones((32, 32), bool), seed=s) for s in range(20)]
    glass = np.full((32, 32, 3), 240, np.uint8)
    chosen = pick_stain_tiles([glass, *tissue])
    assert len(chosen) == 16 and all(c is not glass for c in chosen)
    assert _code(pick_stain_tiles, [glass, glass]) == ErrorCode.NO_TISSUE


def test_stain_cache_fits_once_per_key_and_drops_the_oldest() -> None:
    cache = StainCache(maxsize=2)
    calls: list[str] = []
    barrier = threading.Barrier(4)

    def fit(tag: str):  # type: ignore[no-untyped-def]
        def f():  # type: ignore[no-untyped-def]
            calls.append(tag)
            return tag

        return f

    def get() -> None:
        barrier.wait()
        assert cache.get_or_fit(("m", "a"), fit("a")) == "a"

    threads = [threading.Thread(target=get) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == ["a"]
    cache.get_or_fit(("m", "b"), fit("b"))
    cache.get_or_fit(("m", "a"), fit("a2"))  # a is used again: b is now the oldest
    cache.get_or_fit(("m", "c"), fit("c"))
    assert ("m", "a") in cache and ("m", "b") not in cache and len(cache) == 2

    def boom():  # type: ignore[no-untyped-def]
        raise ProtocolError(ErrorCode.NO_TISSUE, "none")

    with pytest.raises(ProtocolError):
        cache.get_or_fit(("m", "d"), boom)
    assert ("m", "d") not in cache and not cache._key_locks


class _Outbox:
    def __init__(self) -> None:
        self.sent: list[dict] = []

    def send(self, envelope, header, transient=False) -> None:  # type: ignore[no-untyped-def]
        self.sent.append(header)


class _FakePredictor:
    context = None  # no spatial context: the device predicts batch by batch

    def __init__(self) -> None:
        self.batches: list[int] = []

    def predict_tiles(self, tiles, genes, level):  # type: ignore[no-untyped-def]
        from stimage.models import GENE_OUTPUTS, TilePredictions

        self.batches.append(len(tiles))
        v = tiles.reshape(len(tiles), -1)[:, :1].astype(float)
        return TilePredictions(["G"], level, {o.key: v for o in GENE_OUTPUTS})


def test_batcher_combines_requests_fairly_and_skips_closed_ones() -> None:
    done: list[Job] = []
    ev = threading.Event()
    b = Batcher(8, lambda j: (done.append(j), ev.set() if len(done) == 2 else None))
    pred = _FakePredictor()
    out = _Outbox()

    def job(rid: str, n: int, value: int) -> Job:
        j = Job(Request([b"c"], rid, "predict", {}), out, 60)  # type: ignore[arg-type]
        j.task = ModelTask(pred, "m", ["G"])  # type: ignore[arg-type]
        tiles = np.full((n, 2, 2, 3), value, np.uint8)
        b.add(j)
        for s in range(0, n, 8):
            assert b.push(j, s, tiles[s : s + 8], block=False)
        b.finish_input(j, n)
        return j

    b.start()
    try:
        with b._cond:  # the worker waits until all three are queued
            big, small, gone = job("big", 40, 1), job("small", 2, 2), job("gone", 16, 3)
            gone.drop("client gone")
        assert ev.wait(10)
    finally:
        b.stop()
    assert {j.id for j in done} == {"big", "small"}
    # The small request rode in the first batch beside the big one, not after it.
    assert pred.batches[0] == 8 and sum(pred.batches) == 42
    first = [p for s, p in small.parts]
    assert len(first) == 1 and float(first[0].mean[0, 0]) == 2.0
    assert sum(len(p.mean) for _, p in big.parts) == 40 and all(
        p.mean[0, 0] == 1.0 for _, p in big.parts
    )
    assert not gone.parts and big.done == 40
    assert any(h["kind"] == "progress" and h["id"] == "small" for h in out.sent)
    assert Limits().to_dict()["batch_size"] == 64


def test_fair_executor_serves_clients_in_turn_and_waits_without_a_thread() -> None:
    """One client's long requests cannot hold the workers: another's work runs between steps."""
    from stimage.server._executor import WAIT, FairExecutor

    order: list[str] = []
    done = threading.Event()
    room = threading.Event()

    def long_work(name: str, steps: int):  # type: ignore[no-untyped-def]
        for k in range(steps):
            order.append(f"{name}{k}")
            yield None

    def waiting():  # type: ignore[no-untyped-def]
        while not room.is_set():  # a full device buffer: retried, holding no thread
            yield WAIT
        order.append("w")

    def short() -> None:
        order.append("B")
        done.set()

    ex = FairExecutor(1, "test")
    gate = threading.Event()
    ex.submit("A", gate.wait)  # hold the only thread while the queues fill
    ex.submit("A", long_work, "a", 5)
    ex.submit("A", long_work, "x", 5)
    ex.submit("W", waiting)
    ex.submit("B", short)
    gate.set()
    assert done.wait(10)
    room.set()
    deadline = threading.Event()
    for _ in range(200):
        if len(order) == 12:
            break
        deadline.wait(0.05)
    ex.shutdown()
    assert order.index("B") <= 2, order  # not after A's ten steps
    assert sorted(order) == sorted(
        ["B", "w"] + [f"a{k}" for k in range(5)] + [f"x{k}" for k in range(5)]
    )
    # each client's own work stays in order
    assert [o for o in order if o[0] == "a"] == [f"a{k}" for k in range(5)]
