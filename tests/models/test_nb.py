from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import nbinom

from stimage.errors import ConfigError, InvalidSampleError
from stimage.models import NBGLM, NBGLMConfig, nb_nll


def simulate(n: int = 400, d: int = 8, g: int = 12, theta: float = 4.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    w = rng.normal(size=(d, g)) * 0.4
    b = rng.normal(size=g) + 1.0
    lib = rng.uniform(2000, 20000, n)
    mu = lib[:, None] / 1e4 * np.exp(x @ w + b)
    y = rng.negative_binomial(theta, theta / (theta + mu))
    return x, y, lib, w, b


def test_nll_matches_scipy() -> None:
    y = torch.tensor([0.0, 1, 5, 40, 200], dtype=torch.float64)
    mu = torch.tensor([0.5, 2.0, 5.0, 30.0, 150.0], dtype=torch.float64)
    theta = torch.tensor([0.3, 1.0, 4.0, 10.0, 100.0], dtype=torch.float64)
    ours = nb_nll(y, mu.log(), theta.log()).numpy()
    ref = -nbinom.logpmf(y.numpy(), theta.numpy(), (theta / (theta + mu)).numpy())
    np.testing.assert_allclose(ours, ref, rtol=1e-5)


def test_recovers_coefficients_and_dispersion_on_counts_with_library_sizes() -> None:
    x, y, lib, w, b = simulate()
    m = NBGLM(NBGLMConfig(l2=1.0)).fit(x, y, lib)
    assert np.corrcoef(m.weight.ravel(), w.ravel())[0, 1] > 0.97
    np.testing.assert_allclose(m.bias, b, atol=0.15)
    assert np.median(np.exp(m.log_theta)) == pytest.approx(4.0, rel=0.3)
    # The rate is per 10k UMIs: library size does not enter the prediction.
    np.testing.assert_allclose(m.log_rate(x[:5]), x[:5] @ m.weight + m.bias)


def test_library_offset_matters() -> None:
    """A model without the offset would attribute depth to the features."""
    x, y, lib, _w, _ = simulate(seed=1)
    depth = np.log(lib)
    x_dep = np.c_[x, (depth - depth.mean()) / depth.std()]  # a feature that only tracks depth
    m = NBGLM(NBGLMConfig(l2=1.0)).fit(x_dep, y, lib)
    no_offset = NBGLM(NBGLMConfig(l2=1.0)).fit(x_dep, y, np.full_like(lib, 1e4))
    assert abs(np.mean(m.weight[-1])) < 0.05  # the offset already explains depth
    assert np.mean(no_offset.weight[-1]) == pytest.approx(depth.std(), rel=0.25)


def test_penalty_chosen_per_gene_by_leave_one_section_out() -> None:
    x, y, lib, _, _ = simulate(n=300, g=6, seed=2)
    y[:, -1] = np.random.default_rng(0).poisson(2.0, len(y))  # a gene with no signal
    groups = np.repeat(["a", "b", "c"], 100)
    m = NBGLM(NBGLMConfig(l2=(1.0, 1e3, 1e6))).fit(x, y, lib, groups=groups)
    assert set(m.cv_loss) == {1.0, 1e3, 1e6}
    assert m.l2.shape == (6,)
    assert m.l2[-1] >= 1e3  # the noise gene is shrunk hard
    assert np.median(m.l2[:-1]) <= 1e3


def test_spot_dispersion_learns_heteroscedasticity() -> None:
    rng = np.random.default_rng(3)
    n = 600
    x = rng.normal(size=(n, 2))
    lib = np.full(n, 1e4)
    theta = np.exp(1.0 + 1.5 * x[:, 0])
    y = rng.negative_binomial(theta[:, None], theta[:, None] / (theta[:, None] + 20.0))
    m = NBGLM(NBGLMConfig(l2=0.1, dispersion="spot")).fit(x, y, lib)
    th = m.theta(np.array([[-1.0, 0], [1.0, 0]]))[:, 0]
    assert th[1] > 5 * th[0]


def test_bad_input() -> None:
    x, y, lib, _, _ = simulate(n=50)
    with pytest.raises(InvalidSampleError, match="NaN"):
        NBGLM().fit(np.where(np.eye(50, 8) > 0, np.nan, x), y, lib)
    with pytest.raises(InvalidSampleError, match="raw UMI counts"):
        NBGLM().fit(x, -y - 1, lib)
    with pytest.raises(InvalidSampleError, match="no UMIs"):
        NBGLM().fit(x, y, np.zeros_like(lib))
    with pytest.raises(ConfigError, match="shapes"):
        NBGLM().fit(x[:10], y, lib)
    with pytest.raises(ConfigError):
        NBGLMConfig(dispersion="cell")
    with pytest.raises(ConfigError, match="not fitted"):
        NBGLM().log_rate(x)


def test_closed_form_gradient_is_autograds() -> None:
    """The hand-written loss and gradient (one dispersion per gene) equal autograd's, clamps included."""
    import torch

    from stimage.models._nb_steps import autograd_closure as _autograd_closure
    from stimage.models._nb_steps import gene_dispersion_closure as _gene_dispersion_closure

    rng = np.random.default_rng(0)
    n, d, g = 50, 7, 5
    dt = torch.float64
    xt = torch.tensor(rng.normal(size=(n, d)), dtype=dt)
    yt = torch.tensor(rng.poisson(3, size=(n, g)), dtype=dt)
    off = torch.tensor(rng.normal(size=(n, 1)) * 0.3, dtype=dt)
    sw = torch.tensor(rng.uniform(0.5, 1.5, n), dtype=dt)
    lam = torch.tensor(rng.uniform(1, 100, g), dtype=dt)
    scale = torch.tensor(rng.uniform(0.5, 2, g), dtype=dt)
    w = torch.tensor(rng.normal(size=(d, g)) * 0.1, dtype=dt, requires_grad=True)
    b = torch.tensor(rng.normal(size=g), dtype=dt, requires_grad=True)
    lt = torch.tensor([0.3, -1.0, 2.0, 16.0, -11.0], dtype=dt, requires_grad=True)  # 2 clamped
    opt = torch.optim.LBFGS([w, b, lt])
    auto = _autograd_closure(opt, xt, yt, off, sw, lam, scale, w, b, lt, None)().detach()
    ref = [p.grad.clone() for p in (w, b, lt)]
    mine = _gene_dispersion_closure(xt, yt, off, sw, lam, scale, w, b, lt)()
    assert float(mine) == pytest.approx(float(auto), rel=1e-12)
    for a, c in zip(ref, (w.grad, b.grad, lt.grad), strict=True):
        np.testing.assert_allclose(c.numpy(), a.numpy(), rtol=1e-10, atol=1e-14)


def test_minibatch_fit_of_many_spots_reaches_the_full_batch_optimum(monkeypatch) -> None:
    """Beyond FULL_BATCH_SPOTS the final fit runs in minibatches: the same model, near enough."""
    from stimage.models import _nb

    rng = np.random.default_rng(3)
    n, d, g = 6000, 12, 8
    x = rng.normal(size=(n, d))
    w = rng.normal(size=(d, g)) * 0.3
    lib = rng.lognormal(8, 0.4, n)
    mu = np.exp(x @ w - 1.0) * lib[:, None] / 1e4
    y = rng.negative_binomial(3.0, 3.0 / (3.0 + mu))
    cfg = NBGLMConfig(l2=100.0)
    full = NBGLM(cfg).fit(x, y, lib)
    monkeypatch.setattr(_nb, "FULL_BATCH_SPOTS", 1500)
    mini = NBGLM(cfg).fit(x, y, lib)
    a, b = full.log_rate(x), mini.log_rate(x)
    assert min(np.corrcoef(a[:, j], b[:, j])[0, 1] for j in range(g)) > 0.995
    assert np.abs(a - b).mean() < 0.05
    np.testing.assert_allclose(mini.log_theta, full.log_theta, atol=0.15)
