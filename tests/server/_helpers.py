"""Helpers of the server tests."""

from __future__ import annotations

import numpy as np

from _synth import render_he
from stimage.models import Predictor
from stimage.server import Limits

#: Limits of the test servers: small frames so "huge" inputs stay cheap to make.
TEST_LIMITS = Limits(
    max_header_bytes=64 << 10,
    max_frame_bytes=256 << 10,
    max_request_bytes=8 << 20,
    max_frames=300,
    max_tiles=300,
    max_tile_px=2048,
    max_requests=16,
    batch_size=8,
    heartbeat_s=0.2,
)


def model_tiles(
    predictor: Predictor, n: int, seed: int = 0, px: int = 32
) -> tuple[list[np.ndarray], float]:
    """``n`` H&E tiles of ``px`` pixels covering the model's tile µm, and their µm/px."""
    tiles = [render_he(px, px, np.ones((px, px), bool), seed=seed + i) for i in range(n)]
    return tiles, predictor.tile_um / px


def boxes_for(n: int, side: float = 100.0, x0: float = 0.0, y0: float = 0.0) -> np.ndarray:
    """Boxes on a row."""
    return np.array([[x0 + i * side, y0, side, side] for i in range(n)], dtype=np.float64)


class GatedPredictor(Predictor):
    """A predictor whose batches wait for a gate (open by default): holds work in flight."""

    def __init__(self, base: Predictor) -> None:
        import threading

        self.__dict__.update(base.__dict__)
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def predict_tiles(self, tiles, genes=None, level=0.9):  # type: ignore[no-untyped-def]
        self.entered.set()
        if not self.gate.wait(60):
            raise TimeoutError("test gate never opened")
        return super().predict_tiles(tiles, genes, level)


def wait_for(cond, timeout: float = 20.0) -> bool:  # type: ignore[no-untyped-def]
    """Poll ``cond()`` until true or ``timeout`` seconds."""
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return bool(cond())


def as_header(result: dict) -> dict:
    """A client's table result as the server sent it (the values array back to its frame reference)."""
    v = result["values"]
    return {**result, "values": {"frame": 0, "dtype": "<f4", "shape": list(v.shape)}}
