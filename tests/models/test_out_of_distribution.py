"""Tiles unlike anything the model saw get finite, bounded predictions, in bounded time.

Half-resolution tiles and a small greyscale JPEG once drove the default model's mean to 1e21
counts and froze the interval's bisection for good (hardening issue, item 2).
"""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest

from _synth import render_he
from stimage.models import Predictor, default_model_path
from stimage.models._ensemble import LOG_RATE_RANGE


@pytest.fixture(scope="module")
def default_predictor() -> Predictor:
    return Predictor(default_model_path(), device="cpu")


def _odd_tiles(px: int) -> dict[str, np.ndarray]:
    from PIL import Image

    he = render_he(px, px, np.ones((px, px), bool), seed=3)
    half = cv2.resize(cv2.resize(he, (px // 2, px // 2)), (px, px))  # sent at half resolution
    buf = io.BytesIO()
    Image.fromarray(he).convert("L").resize((48, 48)).save(buf, "JPEG", quality=30)
    grey = np.asarray(Image.open(buf).convert("RGB").resize((px, px)))
    pen = he.copy()
    pen[:, px // 3 : px // 2] = (20, 120, 40)  # a green pen stroke
    rng = np.random.default_rng(0)
    return {
        "half resolution": half,
        "small greyscale jpeg": grey,
        "black": np.zeros((px, px, 3), np.uint8),
        "white": np.full((px, px, 3), 255, np.uint8),
        "pen mark": pen,
        "blurred": cv2.GaussianBlur(he, (0, 0), 12),
        "noise": rng.integers(0, 256, (px, px, 3), dtype=np.uint8),
        "saturated": np.dstack(
            [np.full((px, px), 255), np.zeros((px, px)), np.full((px, px), 255)]
        ).astype(np.uint8),
    }


def test_out_of_distribution_tiles_get_bounded_predictions(default_predictor: Predictor) -> None:
    p = default_predictor
    tiles = _odd_tiles(p.tile_px)
    arr = np.stack(list(tiles.values()))
    pred = p.predict_tiles(arr)
    for name in ("mean", "aleatoric_sd", "epistemic_sd", "lower", "upper", "rate"):
        v = getattr(pred, name)
        assert np.isfinite(v).all(), name
    assert (pred.rate <= np.exp(LOG_RATE_RANGE[1]) * (1 + 1e-9)).all()
    # log1p of at most all of a spot's UMIs per 10k
    assert (pred.upper <= np.log1p(1e4 * 1e4 / 10) + 1e-6).all()
    assert (pred.lower <= pred.upper).all()
    # Tiles whose predictions had to be bounded are flagged, per tile.
    names = list(tiles)
    flagged = pred["outside_training"]
    for name in ("small greyscale jpeg", "blurred"):
        assert flagged[names.index(name)] == 1.0, name
    # The same model still predicts ordinary tissue afterwards.
    again = p.predict_tiles(np.stack([render_he(p.tile_px, p.tile_px, seed=9)]))
    assert np.isfinite(again.mean).all()


def test_ensemble_bounds_an_exploding_linear_predictor(default_predictor: Predictor) -> None:
    """Features 1e6 times larger than any seen (a broken encoder) still give bounded rates."""
    p = default_predictor
    comp = p.bundle.components[0]
    x = np.random.default_rng(1).normal(size=(3, len(comp.ensemble.pipeline.mean))) * 1e6
    pred = comp.ensemble.predict(x)
    assert (pred.log_rate <= LOG_RATE_RANGE[1]).all() and (pred.log_rate >= LOG_RATE_RANGE[0]).all()
    lo, hi = pred.interval(0.9)
    assert np.isfinite(lo).all() and np.isfinite(hi).all() and np.isfinite(pred.mean).all()
    assert (
        comp.ensemble.depth is None
        or (pred.log_depth <= comp.ensemble.depth.log_range[1] + 1e-9).all()
    )
