"""Held-out records of the NB GLM's penalty selection: accuracy, calibration and coverage."""

from __future__ import annotations

import numpy as np

from stimage.models import NBGLM, NBGLMConfig


def _sections(shift: float, seed: int = 0, n_sec: int = 4, n: int = 150, d: int = 8, g: int = 6):
    """Counts of several sections; each section has an offset the features do not explain."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(d, g)) * 0.4
    xs, ys, libs, grp = [], [], [], []
    for s in range(n_sec):
        x = rng.normal(size=(n, d))
        lib = rng.uniform(2000, 8000, n)
        off = rng.normal(0, shift, g)  # the section's own level per gene
        mu = lib[:, None] / 1e4 * np.exp(x @ w + 1.5 + off)
        ys.append(rng.negative_binomial(8.0, 8.0 / (8.0 + mu)))
        xs.append(x)
        libs.append(lib)
        grp += [f"S{s}"] * n
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(libs), np.array(grp)


def test_held_out_record_measures_accuracy_and_calibrates_the_dispersion() -> None:
    x, y, lib, grp = _sections(shift=0.6)
    m = NBGLM(NBGLMConfig(l2=(1e3, 1e1))).fit(x, y, lib, groups=grp)
    h = m.held_out
    assert h is not None and h.sections == ["S0", "S1", "S2", "S3"]
    assert (h.pcc > 0.3).all()  # the features explain most of the signal
    # Section offsets make held-out counts more variable than in-sample: the held-out
    # likelihood asks for a smaller theta (wider intervals), which covers at least as much.
    assert np.median(h.theta_scale) < 0.8
    assert (h.coverage >= h.coverage_uncalibrated).all()
    assert h.coverage.mean() > h.coverage_uncalibrated.mean()
    assert 0.85 < h.coverage.mean() < 0.99
    np.testing.assert_allclose(m.theta_scale, h.theta_scale)
    assert set(h.per_gene([f"g{i}" for i in range(6)])["g0"]) == {
        "pcc",
        "coverage",
        "coverage_uncalibrated",
        "theta_scale",
    }


def test_without_section_effects_no_calibration_is_needed() -> None:
    x, y, lib, grp = _sections(shift=0.0, seed=1)
    m = NBGLM(NBGLMConfig(l2=(1e3, 1e1))).fit(x, y, lib, groups=grp)
    assert m.held_out is not None
    assert 0.7 < np.median(m.held_out.theta_scale) <= 1.3
    # whole counts: an interval holds at least its nominal mass
    assert 0.88 < m.held_out.coverage.mean() < 0.99


def test_calibration_can_be_turned_off_and_needs_sections() -> None:
    x, y, lib, grp = _sections(shift=0.6, seed=2)
    off = NBGLM(NBGLMConfig(l2=(1e3, 1e1), calibrate=False)).fit(x, y, lib, groups=grp)
    assert off.theta_scale is None and off.held_out is not None
    single = NBGLM(NBGLMConfig(l2=(1e3, 1e1))).fit(x, y, lib)
    assert single.held_out is None and single.theta_scale is None
