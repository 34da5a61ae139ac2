from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import nbinom

from stimage.models import NBEnsemble, NBEnsembleConfig, NBGLMConfig, mixture_quantiles


def simulate(n=360, d=20, g=10, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    w = rng.normal(size=(d, g)) * 0.3
    lib = rng.uniform(3000, 15000, n)
    mu = lib[:, None] / 1e4 * np.exp(x @ w + 1.5)
    y = rng.negative_binomial(3.0, 3.0 / (3.0 + mu))
    return x, y, lib, w


def test_mixture_quantiles_of_one_member_are_nbinom_ppf() -> None:
    mu = np.array([[0.5, 3.0, 40.0]])
    th = np.array([[1.0, 2.0, 5.0]])
    for q in (0.05, 0.5, 0.95):
        np.testing.assert_array_equal(
            mixture_quantiles(mu, th, q)[...], nbinom.ppf(q, th[0], th[0] / (th[0] + mu[0]))
        )


def test_mixture_quantiles_bracket_the_members() -> None:
    mu = np.array([[2.0], [50.0]])
    th = np.array([[5.0], [5.0]])
    med = mixture_quantiles(mu, th, 0.5)[0]
    assert nbinom.median(5, 5 / 7) <= med <= nbinom.median(5, 5 / 55)


@pytest.fixture(scope="module")
def fitted():
    x, y, lib, _w = simulate()
    groups = np.repeat(["a", "b", "c"], 120)
    cfg = NBEnsembleConfig(members=4, pca_dim=None, glm=NBGLMConfig(l2=(1.0, 100.0)))
    ens = NBEnsemble(cfg).fit(
        x[:300], y[:300], lib[:300], [f"g{i}" for i in range(10)], groups=groups[:300]
    )
    return ens, x, y, lib


def test_members_differ_and_uncertainties_follow_their_definitions(fitted) -> None:
    ens, x, _, _ = fitted
    assert len(ens.members) == 4
    assert not np.allclose(ens.members[0].weight, ens.members[1].weight)
    p = ens.predict(x[300:])
    m = np.exp(p.log_rate)
    np.testing.assert_allclose(p.epistemic_var, np.log1p(m).var(axis=0))
    np.testing.assert_allclose(p.aleatoric_var, ((m + m**2 / p.theta) / (1 + m) ** 2).mean(axis=0))
    assert (p.epistemic_var > 0).all()


def test_intervals_are_calibrated_on_held_out_spots(fitted) -> None:
    ens, x, y, lib = fitted
    p = ens.predict(x[300:])
    lo = p.count_quantiles(0.05, lib[300:])
    hi = p.count_quantiles(0.95, lib[300:])
    cover = ((y[300:] >= lo) & (y[300:] <= hi)).mean()
    assert 0.85 <= cover <= 0.97


def test_epistemic_uncertainty_grows_away_from_the_training_data(fitted) -> None:
    ens, x, _, _ = fitted
    near = ens.predict(x[300:]).epistemic_var.mean()
    far = ens.predict(x[300:] * 4.0).epistemic_var.mean()
    assert far > 3 * near


def test_prediction_tracks_truth(fitted) -> None:
    ens, x, y, lib = fitted
    p = ens.predict(x[300:])
    truth = np.log1p(y[300:] / lib[300:, None] * 1e4)
    r = [np.corrcoef(p.mean[:, j], truth[:, j])[0, 1] for j in range(10)]
    assert np.mean(r) > 0.5
