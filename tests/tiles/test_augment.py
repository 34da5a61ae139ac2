from __future__ import annotations

import numpy as np
import pytest

from _synth import render_he
from stimage.errors import ConfigError
from stimage.tiles import Augmenter


@pytest.fixture
def tile() -> np.ndarray:
    return render_he(64, 64, np.ones((64, 64), bool), seed=9)


def test_reproducible_from_seed_epoch_index(tile: np.ndarray) -> None:
    a = Augmenter(seed=7)
    np.testing.assert_array_equal(a(tile, 5, epoch=2), Augmenter(seed=7)(tile, 5, epoch=2))
    outs = {a(tile, 5, epoch=e).tobytes() for e in range(8)}
    assert len(outs) > 4, "each epoch must augment afresh"
    assert a(tile, 5).tobytes() != Augmenter(seed=8)(tile, 5).tobytes()


def test_geometry_only_keeps_the_pixels(tile: np.ndarray) -> None:
    a = Augmenter(hue=0, saturation=0, brightness=0, contrast=0, blur_prob=0, seed=1)
    seen = set()
    for i in range(40):
        out = a(tile, i)
        np.testing.assert_array_equal(
            np.sort(out.reshape(-1, 3), axis=0), np.sort(tile.reshape(-1, 3), axis=0)
        )
        seen.add(out.tobytes())
    assert len(seen) >= 6  # of the 8 flips x rotations


def test_colour_jitter_is_mild(tile: np.ndarray) -> None:
    a = Augmenter(flips=False, rot90=False, blur_prob=0, seed=2)
    diffs = [np.abs(a(tile, i).astype(int) - tile).mean() for i in range(20)]
    assert 0 < np.mean(diffs) < 20


def test_batch_and_input_checks(tile: np.ndarray) -> None:
    a = Augmenter()
    b = a.batch(np.stack([tile, tile]), np.array([0, 1]))
    assert b.shape == (2, 64, 64, 3) and b.dtype == np.uint8
    with pytest.raises(ValueError, match="uint8"):
        a(tile.astype(np.float32), 0)
    with pytest.raises(ConfigError):
        Augmenter(hue=2.0)
