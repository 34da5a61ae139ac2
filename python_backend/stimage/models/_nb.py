"""Negative-binomial regression of raw counts with a library-size offset.

For spot ``n`` and gene ``g`` with count ``y``, library size ``s_n`` (total UMIs of the spot)
and features ``x_n``::

    log mu_ng = log(s_n / 1e4) + b_g + x_n . w_g        (a rate per 10,000 UMIs)
    y_ng ~ NB(mean mu_ng, dispersion theta_g)          var = mu + mu^2 / theta

The likelihood is on the counts themselves (the published STImage code fitted the NB
likelihood to log1p values; we do not). Normalised expression is derived from the
distribution: the rate per 10k is ``exp(b + x.w)``, its log1p is what is compared with
log-normalised truth. Dispersion is per gene by default, or per spot and gene from the same
features (``dispersion="spot"``), which makes aleatoric uncertainty depend on the tile
beyond its mean.

Fitting is full-batch L-BFGS on the penalised mean negative log-likelihood (the problem is
convex in ``w`` and ``b`` for fixed ``theta``). The L2 strength is chosen per gene by
leave-one-section-out cross-validation inside the training sections, by default on the
held-out correlation of the predicted log rate with log-normalised expression (what users
read); ``select="nll"`` chooses on the held-out likelihood instead. On HER2ST the likelihood
criterion over-shrinks sparse, highly variable genes (mean PCC on the HVG-50 set 0.042
against 0.052; see docs/benchmarks.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

import numpy as np

from stimage.errors import ConfigError, InvalidSampleError
from stimage.models._nb_steps import (
    autograd_closure,
    fit_minibatch,
    gene_dispersion_closure,
    sample_rows,
)

if TYPE_CHECKING:
    import torch

    from stimage.models._nb_select import HeldOut

__all__ = ["NBGLM", "SCALE", "NBGLMConfig", "nb_nll"]

logger = logging.getLogger(__name__)

#: Counts are modelled as rates per this many UMIs (the usual "per 10k" normalisation).
SCALE = 1e4
#: Spots above which the final fit runs in minibatches (a full-batch step over all spots and
#: genes costs too much), started from a full-batch fit on this many of them.
FULL_BATCH_SPOTS = 30_000


def nb_nll(
    y: torch.Tensor, log_mu: torch.Tensor, log_theta: torch.Tensor, constant: bool = True
) -> torch.Tensor:
    """Element-wise negative log-likelihood of counts under NB(mean exp(log_mu), dispersion exp(log_theta)).

    Stable for large and small means (log-space throughout). ``constant=False`` leaves out
    ``log y!``, which does not depend on the parameters (faster for fitting).
    """
    import torch

    theta = torch.exp(log_theta)
    log_theta_mu = torch.logaddexp(log_theta, log_mu)
    ll = (
        torch.lgamma(y + theta)
        - torch.lgamma(theta)
        + theta * (log_theta - log_theta_mu)
        + y * (log_mu - log_theta_mu)
    )
    if constant:
        ll = ll - torch.lgamma(y + 1.0)
    return -ll


@dataclass(frozen=True)
class NBGLMConfig:
    """Settings of :class:`NBGLM`.

    Attributes:
        l2: Penalty on the weights (mean NLL per spot and gene + l2/2 * mean squared weight
            per gene). A tuple is a grid searched by leave-one-group-out cross-validation.
        dispersion: ``gene`` (one theta per gene) or ``spot`` (log theta linear in features).
        per_gene: Choose the penalty per gene (else one for all genes).
        select: Criterion of the penalty's cross-validation: held-out NB negative log-likelihood
            (``nll``) or held-out Pearson correlation with log-normalised expression (``pcc``).
        max_iter: L-BFGS iterations of a fit.
        select_max_iter: L-BFGS iterations of each held-out fit of the penalty search (in
            float32: these rank penalties; the final fit runs to ``max_iter`` in float64).
        tol: Stop when the relative change of the loss is below this.
        calibrate: Scale each gene's dispersion by the multiplier that best describes
            held-out sections (when penalties are chosen by leave-one-section-out), so that
            intervals hold on new sections.
    """

    l2: float | tuple[float, ...] = (1e1, 1e2, 1e3, 1e4, 1e5, 1e6)
    dispersion: str = "gene"
    per_gene: bool = True
    select: str = "pcc"
    max_iter: int = 300
    select_max_iter: int = 100
    tol: float = 1e-9
    calibrate: bool = True

    def __post_init__(self) -> None:
        if self.select not in ("nll", "pcc"):
            raise ConfigError(f"select must be 'nll' or 'pcc', got {self.select!r}")
        if self.dispersion not in ("gene", "spot"):
            raise ConfigError(f"dispersion must be 'gene' or 'spot', got {self.dispersion!r}")
        grid = self.l2 if isinstance(self.l2, tuple) else (self.l2,)
        if not grid or any(v < 0 for v in grid):
            raise ConfigError(f"l2 must be non-negative, got {self.l2}")


@dataclass
class NBGLM:
    """A penalised negative-binomial GLM for many genes at once.

    Attributes:
        config: Settings.
        weight: ``(d, g)`` feature weights.
        bias: ``(g,)`` intercepts (log rate per 10k at the mean feature vector).
        log_theta: ``(g,)`` log dispersions (``dispersion="gene"``) or the intercepts of log
            theta (``"spot"``).
        theta_weight: ``(d, g)`` weights of log theta (``"spot"`` only).
        l2_chosen: The median penalty used (after cross-validation).
        l2: The penalty of each gene.
        cv_loss: Held-out mean criterion per candidate penalty.
        theta_scale: ``(g,)`` multiplier of the dispersion calibrated on held-out sections
            (see :mod:`stimage.models._nb_select`); None: none.
        held_out: What the leave-one-section-out fits said per gene (fitting only).
    """

    config: NBGLMConfig = field(default_factory=NBGLMConfig)
    weight: np.ndarray | None = None
    bias: np.ndarray | None = None
    log_theta: np.ndarray | None = None
    theta_weight: np.ndarray | None = None
    l2_chosen: float = float("nan")
    cv_loss: dict[float, float] = field(default_factory=dict)
    l2: np.ndarray | None = None
    theta_scale: np.ndarray | None = None
    held_out: HeldOut | None = None

    # -- fitting ---------------------------------------------------------------------------
    def fit(
        self,
        x: np.ndarray,
        counts: np.ndarray,
        library_size: np.ndarray,
        groups: np.ndarray | None = None,
        sample_weight: np.ndarray | None = None,
        penalties: np.ndarray | None = None,
        init: NBGLM | None = None,
        *,
        fast: bool = False,
        select_rows: np.ndarray | None = None,
    ) -> NBGLM:
        """Fit to features and raw counts.

        Args:
            x: ``(n, d)`` features (standardised; see :class:`FeaturePipeline`).
            counts: ``(n, g)`` raw integer counts.
            library_size: ``(n,)`` total UMIs per spot (over all genes, not just these).
            groups: Section of each spot, for choosing the penalty by leave-one-section-out.
            sample_weight: ``(n,)`` weights (bootstrap multiplicities).
            penalties: ``(g,)`` penalties to use as they are (no cross-validation).
            init: A fitted model to start from (warm start).
            fast: Fit in float32 with at most ``config.select_max_iter`` iterations (for a
                warm start near the optimum, e.g. a bootstrap member started from the fit
                on all spots; weights are saved in float32 anyway).
            select_rows: The spots the penalty search uses (all by default): a sample
                bounds its cost on large data; the final fit uses every spot.
        """
        x, y, log_s = _check(x, counts, library_size)
        grid = sorted(
            self.config.l2 if isinstance(self.config.l2, tuple) else (self.config.l2,), reverse=True
        )
        n_genes = y.shape[1]
        if penalties is not None:
            lam_vec = np.broadcast_to(np.asarray(penalties, np.float64), (n_genes,)).copy()
        elif len(grid) > 1 and groups is not None and len(np.unique(groups)) >= 2:
            # Held-out criterion per penalty and gene over leave-one-section-out folds; the
            # same fits give held-out accuracy, a calibrated dispersion and coverage per gene.
            from stimage.models._nb_select import select_penalties

            sel = slice(None) if select_rows is None else np.asarray(select_rows)
            lam_vec, self.cv_loss, self.held_out = select_penalties(
                x[sel],
                y[sel],
                log_s[sel],
                np.asarray(groups)[sel],
                grid,
                self.config,
                None if sample_weight is None else sample_weight[sel],
                partial(_fit, fast=True),
            )
            logger.debug("NB GLM: penalties chosen by leave-one-section-out (%s)", self.cv_loss)
        else:
            lam_vec = np.full(n_genes, float(grid[len(grid) // 2]), np.float64)
        start: dict[str, np.ndarray] | None = None
        if init is not None and init.weight is not None:
            start = {
                "w": np.asarray(init.weight),
                "b": np.asarray(init.bias),
                "lt": np.asarray(init.log_theta),
            }
            if init.theta_weight is not None:
                start["tw"] = init.theta_weight
        if len(x) > FULL_BATCH_SPOTS and self.config.dispersion == "gene":
            if start is None:  # start from a full-batch fit on a sample of the spots
                sel = sample_rows(len(x), FULL_BATCH_SPOTS, select_rows)
                start = _fit(
                    x[sel],
                    y[sel],
                    log_s[sel],
                    lam_vec,
                    self.config,
                    None if sample_weight is None else sample_weight[sel],
                    None,
                    fast=True,
                )
            params = fit_minibatch(x, y, log_s, lam_vec, sample_weight, start)
        else:
            params = _fit(x, y, log_s, lam_vec, self.config, sample_weight, start, fast=fast)
        self.weight, self.bias, self.log_theta, self.theta_weight = (
            params["w"],
            params["b"],
            params["lt"],
            params.get("tw"),
        )
        self.l2 = lam_vec
        self.l2_chosen = float(np.median(lam_vec))
        if self.held_out is not None and self.config.calibrate:
            self.theta_scale = self.held_out.theta_scale.copy()
        return self

    @staticmethod
    def concat(parts: list[NBGLM]) -> NBGLM:
        """One model of the genes of several, fitted on the same spots (gene chunks)."""
        if len(parts) == 1:
            return parts[0]
        for p in parts:
            p._fitted()
        l2 = np.concatenate([np.asarray(p.l2) for p in parts])
        sizes = [float(np.asarray(p.weight).shape[1]) for p in parts]
        keys = set(parts[0].cv_loss)
        cv = {
            k: float(np.average([p.cv_loss[k] for p in parts], weights=sizes))
            for k in keys
            if all(k in p.cv_loss for p in parts)
        }
        scales = [p.theta_scale for p in parts]
        tws = [p.theta_weight for p in parts]
        return NBGLM(
            parts[0].config,
            weight=np.concatenate([np.asarray(p.weight) for p in parts], axis=1),
            bias=np.concatenate([np.asarray(p.bias) for p in parts]),
            log_theta=np.concatenate([np.asarray(p.log_theta) for p in parts]),
            theta_weight=None
            if any(t is None for t in tws)
            else np.concatenate([np.asarray(t) for t in tws], axis=1),
            l2_chosen=float(np.median(l2)),
            cv_loss=cv,
            l2=l2,
            theta_scale=None
            if any(t is None for t in scales)
            else np.concatenate([np.asarray(t) for t in scales]),
        )

    # -- prediction ------------------------------------------------------------------------
    def log_rate(self, x: np.ndarray) -> np.ndarray:
        """``(n, g)`` log of the predicted rate per 10k UMIs."""
        self._fitted()
        return np.asarray(x, np.float64) @ self.weight + self.bias  # type: ignore[operator]

    def theta(self, x: np.ndarray) -> np.ndarray:
        """``(n, g)`` dispersion per spot and gene."""
        self._fitted()
        lt = self.log_theta[None, :]  # type: ignore[index]
        if self.theta_weight is not None:
            lt = lt + np.asarray(x, np.float64) @ self.theta_weight
        theta = np.exp(np.clip(lt, -10, 15)) * np.ones((len(x), 1))
        return theta if self.theta_scale is None else theta * self.theta_scale

    def _fitted(self) -> None:
        if self.weight is None:
            raise ConfigError("the NB model is not fitted")


def _check(
    x: np.ndarray, counts: np.ndarray, library_size: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.asarray(x, np.float64)
    y = np.asarray(counts, np.float64)
    s = np.asarray(library_size, np.float64).ravel()
    if x.ndim != 2 or y.ndim != 2 or len(x) != len(y) or len(s) != len(y):
        raise ConfigError(
            f"shapes disagree: features {x.shape}, counts {y.shape}, library sizes {s.shape}"
        )
    if not np.isfinite(x).all():
        raise InvalidSampleError("features contain NaN or infinite values; re-extract them")
    if not np.isfinite(y).all() or (y < 0).any():
        raise InvalidSampleError(
            "counts contain NaN, infinite or negative values; raw UMI counts are needed"
        )
    if (s <= 0).any():
        raise InvalidSampleError(
            f"{int((s <= 0).sum())} spots have no UMIs; drop empty spots before fitting"
        )
    return x, y, np.log(s / SCALE)


def _loss(
    params: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray, log_s: np.ndarray, dispersion: str
) -> np.ndarray:
    import torch

    with torch.no_grad():
        xt = torch.as_tensor(x)
        eta = xt @ torch.as_tensor(params["w"]) + torch.as_tensor(params["b"])
        lt = torch.as_tensor(params["lt"]).expand_as(eta)
        if dispersion == "spot":
            lt = lt + xt @ torch.as_tensor(params["tw"])
        lt = lt.clamp(-10, 15)
        nll = nb_nll(torch.as_tensor(y), eta + torch.as_tensor(log_s)[:, None], lt)
        return nll.numpy()


def _fit(
    x: np.ndarray,
    y: np.ndarray,
    log_s: np.ndarray,
    lam: float | np.ndarray,
    config: NBGLMConfig,
    sample_weight: np.ndarray | None,
    init: dict[str, np.ndarray] | None = None,
    *,
    fast: bool = False,
) -> dict[str, np.ndarray]:
    """Fit one penalised NB GLM (all genes at once) by L-BFGS.

    ``fast`` (the penalty search's held-out fits, which need the ranking of penalties, not
    the last digit): float32 and at most ``config.select_max_iter`` iterations, a few times
    faster than the float64 fit of the final model.
    """
    import torch

    dt = torch.float32 if fast else torch.float64

    n, d = x.shape
    g = y.shape[1]
    xt = torch.as_tensor(x, dtype=dt)
    yt = torch.as_tensor(y, dtype=dt)
    off = torch.as_tensor(log_s, dtype=dt)[:, None]
    sw = (
        torch.ones(n, dtype=dt)
        if sample_weight is None
        else torch.as_tensor(sample_weight, dtype=dt)
    )
    sw = sw / sw.mean()
    # Start at the mean rate and a moment estimate of the dispersion.
    rate = (y / np.exp(log_s)[:, None]).mean(axis=0) + 1e-3
    b = torch.tensor(np.log(rate), dtype=dt, requires_grad=True)
    mu0 = rate[None, :] * np.exp(log_s)[:, None]
    excess = np.maximum(((y - mu0) ** 2 - mu0).mean(axis=0), 1e-3)
    theta0 = np.clip((mu0**2).mean(axis=0) / excess, 0.05, 1e3)
    lt = torch.tensor(np.log(theta0), dtype=dt, requires_grad=True)
    w = torch.zeros((d, g), dtype=dt, requires_grad=True)
    tw = torch.zeros((d, g), dtype=dt, requires_grad=True) if config.dispersion == "spot" else None
    if init is not None:
        with torch.no_grad():
            w.copy_(torch.as_tensor(init["w"]))
            b.copy_(torch.as_tensor(init["b"]))
            lt.copy_(torch.as_tensor(init["lt"]))
            if tw is not None and "tw" in init:
                tw.copy_(torch.as_tensor(init["tw"]))
    lam_t = torch.as_tensor(np.broadcast_to(np.asarray(lam, np.float64), (g,)).copy(), dtype=dt)
    # The objective is a sum of independent per-gene problems, so scaling each gene's term
    # leaves every optimum unchanged; scaling by the inverse of its Fisher information per
    # spot (mu theta / (mu + theta) under the log link) equalises curvature across genes and
    # lets one L-BFGS run converge for highly and lowly expressed genes alike.
    info = (mu0 * theta0 / (mu0 + theta0)).mean(axis=0)
    scale = torch.as_tensor(1.0 / np.clip(info, 1e-3, None), dtype=dt)
    scale = scale / scale.mean()
    params = [w, b, lt] + ([tw] if tw is not None else [])
    opt = torch.optim.LBFGS(
        params,
        lr=1.0,
        max_iter=config.select_max_iter if fast else config.max_iter,
        tolerance_change=max(config.tol, 1e-6) if fast else config.tol,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    if tw is None:  # one dispersion per gene: loss and gradient in closed form
        closure = gene_dispersion_closure(xt, yt, off, sw, lam_t, scale, w, b, lt)
    else:
        closure = autograd_closure(opt, xt, yt, off, sw, lam_t, scale, w, b, lt, tw)
    opt.step(closure)
    out = {
        "w": w.detach().double().numpy().copy(),
        "b": b.detach().double().numpy().copy(),
        "lt": lt.detach().double().numpy().copy(),
    }
    if tw is not None:
        out["tw"] = tw.detach().double().numpy().copy()
    if not all(np.isfinite(v).all() for v in out.values()):
        raise ConfigError("the NB fit diverged (non-finite parameters); use a larger l2 penalty")
    return out
