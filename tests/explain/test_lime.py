"""LIME and occlusion over nuclei on a function whose true nucleus effects are known."""

from __future__ import annotations

import numpy as np
import pytest

from stimage.errors import ConfigError
from stimage.explain._lime import NoNucleiError, agreement, explain_lime, explain_occlusion


def _tile_and_labels(n: int = 12, size: int = 96, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    tile = np.full((size, size, 3), (230, 170, 200), dtype=np.uint8)
    labels = np.zeros((size, size), dtype=np.int32)
    yy, xx = np.mgrid[:size, :size]
    centres = rng.uniform(8, size - 8, size=(n, 2))
    for i, (cx, cy) in enumerate(centres):
        disc = (xx - cx) ** 2 + (yy - cy) ** 2 <= 16
        labels[disc & (labels == 0)] = i + 1
        tile[disc] = (90, 40, 140)
    return tile, labels


def _additive(labels: np.ndarray, weights: np.ndarray):
    """Output j = sum_i weights[i, j] * (fraction of nucleus i still visible)."""
    n = weights.shape[0]
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:].astype(float)

    def fn(tiles: np.ndarray) -> np.ndarray:
        visible = np.stack(
            [
                np.bincount(labels.ravel(), weights=(t.sum(axis=2) > 0).ravel(), minlength=n + 1)[
                    1:
                ]
                / sizes
                for t in tiles
            ]
        )
        return visible @ weights

    return fn


def test_lime_recovers_known_nucleus_effects_for_several_targets() -> None:
    tile, labels = _tile_and_labels()
    n = int(labels.max())
    rng = np.random.default_rng(1)
    weights = rng.normal(size=(n, 2))
    exp = explain_lime(
        tile, labels, _additive(labels, weights), ["A", "B"], num_samples=300, seed=3
    )
    assert exp.scores.shape == (n, 2)
    assert exp.num_samples == 300
    for j in range(2):
        r = np.corrcoef(exp.scores[:, j], weights[:, j])[0, 1]
        assert r > 0.95, r
        assert exp.fit_r2[j] > 0.9
    # the intact tile's output is reported
    np.testing.assert_allclose(exp.prediction, weights.sum(axis=0), rtol=1e-6)


def test_occlusion_is_exact_for_an_additive_model_and_agrees_with_lime() -> None:
    tile, labels = _tile_and_labels(seed=2)
    n = int(labels.max())
    weights = np.random.default_rng(5).normal(size=(n, 1))
    fn = _additive(labels, weights)
    occ = explain_occlusion(tile, labels, fn, ["A"], batch_size=5)
    np.testing.assert_allclose(occ.scores[:, 0], weights[:, 0], atol=1e-9)
    assert occ.num_samples == n + 1
    lime = explain_lime(tile, labels, fn, ["A"], num_samples=200)
    agr = agreement(lime, occ)
    assert agr.loc[0, "spearman"] > 0.9
    assert agr.loc[0, "sign_agreement_top_half"] == 1.0


def test_no_nuclei_and_bad_inputs_are_clear_errors() -> None:
    tile, labels = _tile_and_labels()
    fn = _additive(labels, np.ones((int(labels.max()), 1)))
    with pytest.raises(NoNucleiError, match="no nuclei"):
        explain_lime(tile, np.zeros_like(labels), fn, ["A"])
    with pytest.raises(ConfigError, match="label image"):
        explain_occlusion(tile, labels[:10], fn, ["A"])
    with pytest.raises(ConfigError, match="num_samples"):
        explain_lime(tile, labels, fn, ["A"], num_samples=2)


def test_cancel_stops_between_batches() -> None:
    import threading

    from stimage.errors import StimageError

    tile, labels = _tile_and_labels()
    fn = _additive(labels, np.ones((int(labels.max()), 1)))
    ev = threading.Event()
    seen = []

    def progress(done: int, total: int) -> None:
        seen.append(done)
        ev.set()

    with pytest.raises(StimageError, match="cancelled"):
        explain_lime(
            tile, labels, fn, ["A"], num_samples=100, batch_size=10, progress=progress, cancel=ev
        )
    assert seen == [10]
