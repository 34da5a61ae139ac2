"""The steps of fitting the NB GLM: its loss and gradient, and minibatch fits of many spots.

Split from :mod:`stimage.models._nb` (the model and its full-batch fit), which uses these.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from stimage.errors import ConfigError

if TYPE_CHECKING:
    import torch

__all__ = ["autograd_closure", "fit_minibatch", "gene_dispersion_closure", "sample_rows"]

#: Epochs (at least), steps (at least) and spots per minibatch of the minibatch fits (Adam,
#: from a full-batch start).
MINIBATCH_EPOCHS = 3
MINIBATCH_STEPS = 150
MINIBATCH_SPOTS = 4096


def gene_dispersion_closure(
    xt: torch.Tensor,
    yt: torch.Tensor,
    off: torch.Tensor,
    sw: torch.Tensor,
    lam: torch.Tensor,
    scale: torch.Tensor,
    w: torch.Tensor,
    b: torch.Tensor,
    lt: torch.Tensor,
) -> Callable[[], torch.Tensor]:
    """The penalised NB loss and its gradient, by hand, for one dispersion per gene.

    The same objective as the autograd closure, without its graph, and with every function of
    theta alone (``lgamma``, ``digamma``, ``exp``) computed once per gene instead of per spot
    and gene: about twice as fast. With ``m = mu``, ``t = theta``::

        d nll / d eta      = t (m - y) / (t + m)
        d nll / d log t    = -t [psi(y + t) - psi(t) + log t - log(t + m) + 1 - (y + t) / (t + m)]
    """
    import torch

    n, g = yt.shape
    coef = scale / g  # d loss / d per_gene
    wn = (sw / n)[:, None]

    def closure() -> torch.Tensor:
        with torch.no_grad():
            eta = torch.addmm(b, xt, w)
            log_mu = eta + off
            inside = (lt >= -10) & (lt <= 15)
            ltc = lt.clamp(-10, 15)
            t = torch.exp(ltc)
            log_tm = torch.logaddexp(ltc, log_mu)
            yt_t = yt + t
            ll = torch.lgamma(yt_t) - torch.lgamma(t) + t * (ltc - log_tm) + yt * (log_mu - log_tm)
            per_gene = -(ll * wn).sum(dim=0) + 0.5 * lam * (w * w).sum(dim=0) / n
            loss = (per_gene * coef).sum()
            ratio = torch.exp(log_mu - log_tm)  # m / (t + m)
            g_eta = (t * ratio - yt * (1 - ratio)) * (wn * coef)  # t (m - y) / (t + m)
            w.grad = torch.addmm(w * (lam * coef / n), xt.T, g_eta)
            b.grad = g_eta.sum(dim=0)
            one_minus = 1 - ratio  # t / (t + m)
            d_lt = torch.digamma(yt_t) - torch.digamma(t) + ltc - log_tm + 1 - yt_t / t * one_minus
            lt.grad = torch.where(inside, -t * (d_lt * wn).sum(dim=0) * coef, torch.zeros_like(lt))
        return loss

    return closure


def autograd_closure(
    opt: torch.optim.Optimizer,
    xt: torch.Tensor,
    yt: torch.Tensor,
    off: torch.Tensor,
    sw: torch.Tensor,
    lam_t: torch.Tensor,
    scale: torch.Tensor,
    w: torch.Tensor,
    b: torch.Tensor,
    lt: torch.Tensor,
    tw: torch.Tensor | None,
) -> Callable[[], torch.Tensor]:
    """The penalised NB loss by autograd (any dispersion model)."""
    from stimage.models._nb import nb_nll

    n = len(yt)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        eta = xt @ w + b
        log_theta = lt.expand_as(eta) if tw is None else lt + xt @ tw
        nll = nb_nll(yt, eta + off, log_theta.clamp(-10, 15), constant=False)
        per_gene = (nll * sw[:, None]).mean(dim=0) + 0.5 * lam_t * (w**2).sum(dim=0) / n
        if tw is not None:
            per_gene = per_gene + 0.5 * lam_t * (tw**2).sum(dim=0) / n
        loss = (per_gene * scale).mean()
        loss.backward()
        return loss

    return closure


def sample_rows(n: int, most: int, prefer: np.ndarray | None) -> np.ndarray:
    """``most`` spots of ``n``: the penalty search's when given, else drawn at random."""
    if prefer is not None and len(prefer) <= most:
        return np.asarray(prefer)
    return np.sort(np.random.default_rng(0).choice(n, most, replace=False))


def fit_minibatch(
    x: np.ndarray,
    y: np.ndarray,
    log_s: np.ndarray,
    lam: np.ndarray,
    sample_weight: np.ndarray | None,
    start: dict[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """The penalised NB GLM (one dispersion per gene) refined by Adam over minibatches.

    For data too large for full-batch steps: :data:`MINIBATCH_EPOCHS` passes over all spots
    (more when that makes fewer than :data:`MINIBATCH_STEPS` steps) in shuffled minibatches
    of :data:`MINIBATCH_SPOTS`, from a full-batch ``start`` on a sample. Each minibatch's
    objective is the full objective's unbiased estimate (the penalty scaled by the
    minibatch's share of the spots), its gradient in closed form.
    The number of steps is fixed: the loop ends by construction.
    """
    import torch

    dt = torch.float32
    n = len(x)
    rng = np.random.default_rng(0)
    w = torch.tensor(start["w"], dtype=dt, requires_grad=True)
    b = torch.tensor(start["b"], dtype=dt, requires_grad=True)
    lt = torch.tensor(start["lt"], dtype=dt, requires_grad=True)
    sw_all = np.ones(n) if sample_weight is None else np.asarray(sample_weight, np.float64)
    sw_all = sw_all / sw_all.mean()
    rate = (y / np.exp(log_s)[:, None]).mean(axis=0) + 1e-3
    theta0 = np.exp(np.clip(start["lt"], -10, 15))
    mu0 = rate[None, :] * np.exp(log_s[: min(n, 4096)])[:, None]
    info = (mu0 * theta0 / (mu0 + theta0)).mean(axis=0)
    scale = torch.as_tensor(1.0 / np.clip(info, 1e-3, None), dtype=dt)
    scale = scale / scale.mean()
    # the dispersion's start on a sample is rougher than the weights': it moves faster
    opt = torch.optim.Adam([{"params": [w, b], "lr": 3e-3}, {"params": [lt], "lr": 2e-2}])
    per_epoch = -(-n // MINIBATCH_SPOTS)
    for _ in range(max(MINIBATCH_EPOCHS, -(-MINIBATCH_STEPS // per_epoch))):
        order = rng.permutation(n)
        for b0 in range(0, n, MINIBATCH_SPOTS):
            idx = order[b0 : b0 + MINIBATCH_SPOTS]
            share = len(idx) / n
            closure = gene_dispersion_closure(
                torch.as_tensor(x[idx], dtype=dt),
                torch.as_tensor(y[idx], dtype=dt),
                torch.as_tensor(log_s[idx], dtype=dt)[:, None],
                torch.as_tensor(sw_all[idx], dtype=dt),
                torch.as_tensor(lam * share, dtype=dt),
                scale,
                w,
                b,
                lt,
            )
            closure()
            opt.step()
    out = {k: v.detach().double().numpy().copy() for k, v in (("w", w), ("b", b), ("lt", lt))}
    if not all(np.isfinite(v).all() for v in out.values()):
        raise ConfigError("the NB fit diverged (non-finite parameters); use a larger l2 penalty")
    return out
