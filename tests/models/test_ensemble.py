from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import nbinom

from stimage.models import (
    ExpressionPrediction,
    NBEnsemble,
    NBEnsembleConfig,
    NBGLMConfig,
    mixture_pit,
    mixture_quantiles,
)
from stimage.models._depth import DepthModel, log1p_moments
from stimage.models._nb_mlp import NBMLP


def simulate(n=360, d=20, g=10, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    w = rng.normal(size=(d, g)) * 0.3
    lib = rng.uniform(3000, 15000, n)
    mu = lib[:, None] / 1e4 * np.exp(x @ w + 1.5)
    y = rng.negative_binomial(3.0, 3.0 / (3.0 + mu))
    return x, y, lib, w


def _direct_log1p_moments(mu, theta, c):
    """Mean and variance of log1p(c Y), Y ~ NB(mu, theta), by sums over the NB's mass."""
    mu, theta, c = np.broadcast_arrays(mu, theta, c)
    mean, var = np.empty(mu.shape), np.empty(mu.shape)
    for i in np.ndindex(mu.shape):
        sd = np.sqrt(mu[i] + mu[i] ** 2 / theta[i])
        y = np.arange(int(mu[i] + 60 * sd) + 50)
        pmf = nbinom.pmf(y, theta[i], theta[i] / (theta[i] + mu[i]))
        f = np.log1p(c[i] * y)
        mean[i] = (pmf * f).sum()
        var[i] = (pmf * f * f).sum() - mean[i] ** 2
    return mean, var


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
    # With the predicted depth s: per member, the moments of log1p(10k Y / s).
    s = np.exp(p.log_depth)[None, :, None]
    mk, vk = _direct_log1p_moments(m * s / 1e4, p.theta, 1e4 / s)
    # Exact sums where the counts stay small; a quadrature (within 0.02) for large means.
    exact = p._summary(None).exact
    assert exact.mean() > 0.5
    for sel, tol in ((exact, 1e-7), (~exact, 0.02)):
        np.testing.assert_allclose(p.mean[sel], mk.mean(axis=0)[sel], atol=tol)
        np.testing.assert_allclose(p.epistemic_var[sel], mk.var(axis=0)[sel], atol=tol)
        np.testing.assert_allclose(p.aleatoric_var[sel], vk.mean(axis=0)[sel], atol=tol)
    assert (p.epistemic_var > 0).all()
    # Without a depth: log1p(rate per 10k) and the delta method.
    q = ExpressionPrediction(p.genes, p.log_rate, p.theta)
    np.testing.assert_allclose(q.epistemic_var, np.log1p(m).var(axis=0))
    np.testing.assert_allclose(q.aleatoric_var, ((m + m**2 / p.theta) / (1 + m) ** 2).mean(axis=0))


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


def test_log1p_moments_match_direct_sums_over_the_nb() -> None:
    rng = np.random.default_rng(3)
    mu = np.exp(rng.uniform(-4, 7, 300))
    theta = np.exp(rng.uniform(-1.5, 5, 300))
    c = np.exp(rng.uniform(-1, 2.5, 300))
    mean, var = log1p_moments(mu, theta, c)
    for i in range(300):
        sd = np.sqrt(mu[i] + mu[i] ** 2 / theta[i])
        y = np.arange(int(mu[i] + 60 * sd) + 50)
        pmf = nbinom.pmf(y, theta[i], theta[i] / (theta[i] + mu[i]))
        f = np.log1p(c[i] * y)
        m1 = (pmf * f).sum()
        assert abs(mean[i] - m1) < 0.02, (mu[i], theta[i], c[i])
        assert abs(np.sqrt(var[i]) - np.sqrt((pmf * f * f).sum() - m1**2)) < 0.08


def test_depth_model_learns_library_size_from_features() -> None:
    rng = np.random.default_rng(4)
    z = rng.normal(size=(300, 8))
    log_lib = 8.5 + z[:, 0] * 0.5 + rng.normal(0, 0.2, 300)
    groups = np.repeat(["a", "b", "c"], 100)
    dm = DepthModel().fit(z[:200], np.exp(log_lib[:200]), groups[:200])
    pred = dm.predict(z[200:])
    assert np.corrcoef(pred, log_lib[200:])[0, 1] > 0.85
    assert 0.1 < dm.sd < 0.35
    back = DepthModel.from_state(dm.state())
    np.testing.assert_allclose(back.predict(z[200:]), pred, rtol=1e-5)


def test_predicted_depth_explains_the_depth_effect_on_rare_genes() -> None:
    """Log-normalised truth of a rare gene depends on depth; modelling depth recovers it."""
    rng = np.random.default_rng(5)
    n = 900
    x = rng.normal(size=(n, 6))
    lib = np.exp(8.0 + 0.8 * x[:, 0])  # depth follows the image (cellularity)
    rate = np.exp(-0.5 + 0.3 * x[:, 1])  # per 10k: rare
    y = rng.negative_binomial(2.0, 2.0 / (2.0 + rate[:, None] * lib[:, None] / 1e4))
    groups = np.repeat(["a", "b", "c"], n // 3)
    tr, te = slice(0, 600), slice(600, None)
    truth = np.log1p(y[te] / lib[te, None] * 1e4)[:, 0]
    r = {}
    for depth in (False, True):
        cfg = NBEnsembleConfig(members=2, pca_dim=None, depth=depth, glm=NBGLMConfig(l2=1.0))
        p = NBEnsemble(cfg).fit(x[tr], y[tr], lib[tr], ["g"], groups=groups[tr]).predict(x[te])
        assert (p.log_depth is not None) == depth
        r[depth] = np.corrcoef(p.mean[:, 0], truth)[0, 1]
    assert r[True] > r[False] + 0.05


@pytest.mark.slow
def test_shared_hidden_layer_learns_what_a_linear_model_cannot() -> None:
    """Genes driven by a non-linear function of the features: the hidden layer fits them."""
    rng = np.random.default_rng(6)
    n, g = 900, 8
    x = rng.normal(size=(n, 5))
    signal = np.abs(x[:, 0]) + x[:, 1] * x[:, 2]  # no linear trace
    lib = rng.uniform(4000, 12000, n)
    load = rng.uniform(0.4, 0.8, g)
    mu = lib[:, None] / 1e4 * np.exp(1.5 + signal[:, None] * load[None, :])
    y = rng.negative_binomial(5.0, 5.0 / (5.0 + mu))
    groups = np.repeat(["a", "b", "c"], n // 3)
    tr, te = slice(0, 600), slice(600, None)
    truth = np.log1p(y[te] / lib[te, None] * 1e4)
    genes = [f"g{i}" for i in range(g)]
    r = {}
    for hidden in (None, 32):
        cfg = NBEnsembleConfig(members=2, pca_dim=None, hidden=hidden, glm=NBGLMConfig(l2=1.0))
        ens = NBEnsemble(cfg).fit(x[tr], y[tr], lib[tr], genes, groups=groups[tr])
        p = ens.predict(x[te])
        r[hidden] = np.mean([np.corrcoef(p.mean[:, j], truth[:, j])[0, 1] for j in range(g)])
    assert r[None] < 0.3
    assert r[32] > r[None] + 0.25
    assert all(isinstance(m, NBMLP) for m in ens.members) and ens.members[0].steps >= 1
    # Members differ (bootstrap and initialisation), so there is epistemic uncertainty.
    assert (p.epistemic_var > 0).all()


def test_randomised_pit_is_uniform_for_discrete_counts_where_intervals_over_cover() -> None:
    rng = np.random.default_rng(7)
    mu = np.exp(rng.uniform(-2.5, 1.5, (1, 20000)))  # mostly 0-3 counts
    theta = np.full_like(mu, 2.0)
    y = rng.negative_binomial(theta[0], theta[0] / (theta[0] + mu[0]))
    pit = mixture_pit(mu, theta, y, seed=1)
    assert pit.min() >= 0 and pit.max() <= 1
    for level in (0.5, 0.8, 0.9):
        assert abs((np.abs(pit - 0.5) <= level / 2).mean() - level) < 0.015
    lo, hi = mixture_quantiles(mu, theta, 0.25), mixture_quantiles(mu, theta, 0.75)
    assert ((y >= lo) & (y <= hi)).mean() > 0.6  # the plain 50% interval of counts over-covers


def test_novelty_is_about_one_in_training_and_large_far_away(fitted) -> None:
    ens, x, _, _ = fitted
    pipe = ens.pipeline
    z_train = pipe.transform(x[:300])
    nov = pipe.novelty(z_train)
    assert np.quantile(nov, 0.99) == pytest.approx(1.0, rel=0.05)
    held = pipe.novelty(pipe.transform(x[300:]))
    far = pipe.novelty(pipe.transform(x[300:] * 6.0))
    assert np.median(held) < 1.0 < np.median(far) / 5
    p = ens.predict(x[300:] * 6.0)
    np.testing.assert_allclose(p.novelty, far)
    # Saved and loaded with the pipeline; pipelines saved without the statistics give NaN.
    from stimage.models import FeaturePipeline

    back = FeaturePipeline.from_state(pipe.state())
    np.testing.assert_allclose(back.novelty(z_train), nov, rtol=1e-5)
    old = {k: v for k, v in pipe.state().items() if not k.startswith("novelty")}
    assert np.isnan(FeaturePipeline.from_state(old).novelty(z_train)).all()


def test_high_low_classifier_solves_scikit_learns_elastic_net() -> None:
    """The joint FISTA solve gives scikit-learn's SAGA solution (C 0.1, l1_ratio 0.5), sparsity too."""
    import warnings

    from sklearn.linear_model import LogisticRegression

    from stimage.models import HighLowClassifier

    rng = np.random.default_rng(0)
    n, d, g = 400, 40, 6
    x = rng.normal(size=(n, d)) * rng.uniform(0.5, 3, d) + 2.0
    w_true = rng.normal(size=(d, g)) * (rng.random((d, g)) < 0.15)
    z_true = (x - x.mean(0)) / x.std(0)
    labels = z_true @ w_true + rng.logistic(size=(n, g)) > 0
    labels[:, -1] = True  # one class only: a constant classifier
    clf = HighLowClassifier().fit(x, labels, [f"G{j}" for j in range(g)])
    assert clf.coef is not None and clf.intercept is not None
    for j in range(g - 1):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = LogisticRegression(
                solver="saga", penalty="elasticnet", l1_ratio=0.5, C=0.1, max_iter=20000, tol=1e-10
            ).fit(z_true, labels[:, j])
        np.testing.assert_allclose(clf.coef[j], ref.coef_[0], atol=1e-4)
        assert clf.intercept[j] == pytest.approx(ref.intercept_[0], abs=1e-4)
        assert ((clf.coef[j] == 0) == (np.abs(ref.coef_[0]) < 1e-8)).mean() > 0.95
    assert (clf.coef[-1] == 0).all() and clf.predict_proba(x)[:, -1].min() > 0.99
