"""Choosing the NB GLM's penalties by leave-one-section-out, and what the held-out fits tell.

The penalty of each gene is chosen on held-out sections: every section is left out in turn
and the GLM is fitted on the others along the penalty path (strong to weak, warm-started).
The same held-out fits, which cost nothing more, give three things a bundle carries:

* **held-out accuracy per gene**: for each section, the penalty is chosen on the *other*
  sections' scores only, and the gene's Pearson correlation on the left-out section at that
  penalty is its score there (the mean over sections is the gene's reliability);
* **a calibrated dispersion per gene**: the NB dispersion fitted in-sample describes counts
  around a mean the model knows; on a new section the mean itself is off, and intervals from
  the in-sample dispersion are too narrow. The held-out likelihood over a grid of multipliers
  ``c`` of theta (``theta * c``, ``c <= 1`` widens) picks the multiplier that describes
  held-out counts; the final model's dispersion is scaled by it (the calibration of the
  intervals, on held-out residuals, per gene);
* **held-out interval coverage per gene**, with and without that calibration.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from stimage.models._nb import NBGLMConfig

__all__ = ["LEVEL", "THETA_SCALES", "HeldOut", "select_penalties"]

#: Multipliers of the dispersion theta tried on held-out sections (1: no calibration).
THETA_SCALES = np.round(np.exp(np.linspace(np.log(0.05), np.log(2.0), 25)), 6)
#: Held-out spots per section kept for the coverage of intervals (bounds memory).
_COVERAGE_SPOTS = 4000
#: Interval level whose coverage is reported.
LEVEL = 0.9


@dataclass
class HeldOut:
    """What the leave-one-section-out fits said about each gene.

    Attributes:
        pcc: ``(g,)`` mean held-out Pearson correlation (log rate against log-normalised
            counts), the penalty chosen without the scored section.
        coverage: ``(g,)`` held-out coverage of the central :data:`LEVEL` interval of the
            counts with the calibrated dispersion.
        coverage_uncalibrated: ``(g,)`` the same with the in-sample dispersion.
        theta_scale: ``(g,)`` the dispersion multiplier chosen on held-out likelihood.
        sections: Sections left out.
    """

    pcc: np.ndarray
    coverage: np.ndarray
    coverage_uncalibrated: np.ndarray
    theta_scale: np.ndarray
    sections: list[str] = field(default_factory=list)

    @staticmethod
    def concat(parts: list[HeldOut]) -> HeldOut:
        """The record of several gene chunks, fitted on the same sections."""
        if len(parts) == 1:
            return parts[0]
        return HeldOut(
            np.concatenate([p.pcc for p in parts]),
            np.concatenate([p.coverage for p in parts]),
            np.concatenate([p.coverage_uncalibrated for p in parts]),
            np.concatenate([p.theta_scale for p in parts]),
            list(parts[0].sections),
        )

    def per_gene(self, genes: list[str]) -> dict[str, dict[str, float | None]]:
        """``gene -> {"pcc", "coverage", "coverage_uncalibrated", "theta_scale"}`` (JSON-ready)."""
        out = {}
        for j, g in enumerate(genes):
            out[g] = {
                "pcc": _num(self.pcc[j]),
                "coverage": _num(self.coverage[j]),
                "coverage_uncalibrated": _num(self.coverage_uncalibrated[j]),
                "theta_scale": _num(self.theta_scale[j]),
            }
        return out


def _num(v: float) -> float | None:
    return float(round(float(v), 4)) if np.isfinite(v) else None


def select_penalties(
    x: np.ndarray,
    y: np.ndarray,
    log_s: np.ndarray,
    groups: np.ndarray,
    grid: list[float],
    config: NBGLMConfig,
    sample_weight: np.ndarray | None,
    fit: Any,
) -> tuple[np.ndarray, dict[float, float], HeldOut]:
    """Per-gene penalties by leave-one-section-out, and the held-out record.

    Args:
        x: ``(n, d)`` features.
        y: ``(n, g)`` counts.
        log_s: ``(n,)`` log library size / 10k.
        groups: Section of each spot (two or more sections).
        grid: Penalties, strongest first.
        config: The GLM's settings (criterion ``pcc`` or ``nll``, per gene or shared).
        sample_weight: Spot weights, or None.
        fit: The GLM fitting function ``fit(x, y, log_s, lam, config, weights, warm)``.

    Returns:
        Penalty per gene, the mean held-out criterion per penalty, and the record.
    """
    sections = [str(s) for s in np.unique(groups)]
    n_pen, n_fold, g = len(grid), len(sections), y.shape[1]
    crit = np.zeros((n_pen, n_fold, g))  # lower is better
    pcc = np.full((n_pen, n_fold, g), np.nan)
    nll = np.zeros((n_pen, n_fold, len(THETA_SCALES), g))
    kept: list[list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]] = []
    rng = np.random.default_rng(0)
    for f, sec in enumerate(sections):
        tr, te = groups != sec, groups == sec
        te_idx = np.flatnonzero(te)
        sub = (
            te_idx
            if len(te_idx) <= _COVERAGE_SPOTS
            else rng.choice(te_idx, _COVERAGE_SPOTS, replace=False)
        )
        truth = np.log1p(y[te] / np.exp(log_s[te])[:, None])
        warm = None
        per_pen = []
        for li, lam in enumerate(grid):
            w_tr = None if sample_weight is None else sample_weight[tr]
            warm = fit(x[tr], y[tr], log_s[tr], lam, config, w_tr, warm)
            eta = x[te] @ warm["w"] + warm["b"]
            pcc[li, f] = _pcc(eta, truth)
            if config.select == "pcc":
                crit[li, f] = -np.nan_to_num(pcc[li, f]) * te.sum()
            mu_log = eta + log_s[te][:, None]
            nll[li, f] = _nll_by_scale(y[te], mu_log, warm["lt"])
            if config.select != "pcc":
                crit[li, f] = nll[li, f, _unit_scale()]
            per_pen.append(
                (x[sub] @ warm["w"] + warm["b"] + log_s[sub][:, None], warm["lt"], y[sub], sub)
            )
        kept.append(per_pen)
    total = crit.sum(axis=1) / len(y)  # (pen, g)
    mean_crit = {float(lam): float(total[li].mean()) for li, lam in enumerate(grid)}
    chosen = (
        np.argmin(total, axis=0)
        if config.per_gene
        else np.full(g, int(np.argmin(total.mean(axis=1))))
    )
    lam_vec = np.asarray(grid, np.float64)[chosen]
    record = _held_out(crit, pcc, nll, kept, sections)
    return lam_vec, mean_crit, record


def _held_out(
    crit: np.ndarray,
    pcc: np.ndarray,
    nll: np.ndarray,
    kept: list[list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]],
    sections: list[str],
) -> HeldOut:
    """Nested scores: each section's penalty chosen on the other sections only."""
    _n_pen, n_fold, g = crit.shape
    cols = np.arange(g)
    fold_pcc = np.full((n_fold, g), np.nan)
    fold_nll = np.zeros((len(THETA_SCALES), g))
    nested = np.zeros((n_fold, g), dtype=int)
    for f in range(n_fold):
        others = [k for k in range(n_fold) if k != f]
        nested[f] = np.argmin(crit[:, others, :].sum(axis=1), axis=0)
        fold_pcc[f] = pcc[nested[f], f, cols]
        fold_nll += nll[nested[f], f, :, cols].T
    theta_scale = THETA_SCALES[np.argmin(fold_nll, axis=0)]
    inside = np.zeros(g)
    inside_raw = np.zeros(g)
    count = 0
    for f in range(n_fold):
        for li in np.unique(nested[f]):
            genes_f = np.flatnonzero(nested[f] == li)
            mu_log, lt, yy, _ = kept[f][li]
            inside[genes_f] += _covered(
                mu_log[:, genes_f], lt[genes_f] + np.log(theta_scale[genes_f]), yy[:, genes_f]
            )
            inside_raw[genes_f] += _covered(mu_log[:, genes_f], lt[genes_f], yy[:, genes_f])
        count += len(kept[f][0][2])
    with np.errstate(invalid="ignore"):
        mean_pcc = np.nanmean(fold_pcc, axis=0) if n_fold else np.full(g, np.nan)
    return HeldOut(mean_pcc, inside / count, inside_raw / count, theta_scale, sections)


def _unit_scale() -> int:
    return int(np.argmin(np.abs(np.log(THETA_SCALES))))


def _nll_by_scale(y: np.ndarray, mu_log: np.ndarray, log_theta: np.ndarray) -> np.ndarray:
    """``(scales, g)`` held-out NB negative log-likelihood summed over spots, per theta scale."""
    from scipy.special import gammaln

    mu = np.exp(np.clip(mu_log, -30, 30))
    out = np.empty((len(THETA_SCALES), y.shape[1]))
    lgy = gammaln(y + 1.0)
    for k, c in enumerate(THETA_SCALES):
        th = np.exp(np.clip(log_theta, -10, 15)) * c
        ll = (
            gammaln(y + th)
            - gammaln(th)
            - lgy
            + th * (np.log(th) - np.log(th + mu))
            + y * (np.log(mu) - np.log(th + mu))
        )
        out[k] = -ll.sum(axis=0)
    return out


def _covered(mu_log: np.ndarray, log_theta: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``(g,)`` count of spots whose counts fall inside the central :data:`LEVEL` interval."""
    from stimage.models._nbmix import mixture_quantiles

    mu = np.exp(np.clip(mu_log, -30, 30))[None]
    th = np.broadcast_to(np.exp(np.clip(log_theta, -10, 15)), mu.shape[1:])[None]
    lo, hi = mixture_quantiles(mu, th, np.array([(1 - LEVEL) / 2, (1 + LEVEL) / 2]))
    return ((y >= lo) & (y <= hi)).sum(axis=0).astype(np.float64)


def _pcc(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    den = np.sqrt((a * a).sum(axis=0) * (b * b).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (a * b).sum(axis=0) / den, np.nan)
