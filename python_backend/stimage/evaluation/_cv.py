"""Honest cross-validation of expression models against baselines.

Folds hold out sections or patients; gene sets are fixed per fold from the training sections
only; every method runs on the same features and folds.

Methods:
* ``mean``: the training-mean baseline (every spot gets the training mean);
* ``paper``: ``stimage-paper``, the published recipe (per-gene Dense(2) NB on log1p counts);
* ``ridge``: HEST-Benchmark's head (standardise, PCA 256, ridge with alpha = 100/(256 g));
* ``ridge_cv``: the same with alpha chosen by leave-one-section-out inside the training data
  (a stronger baseline, so that claims are not made against a weak one);
* ``ridge_cv_tile``: ``ridge_cv`` on each spot's own features only, leaving out the spatial
  context the other methods see (the same as ``ridge_cv`` when the spots have no context):
  beside ``ridge_cv`` it tells the gain of context from the gain of the model;
* ``nb``: ours, the bootstrap ensemble of penalised NB GLMs on counts with a library-size
  offset, with uncertainty and the high/low classifier.

All methods are scored on log-normalised expression ``log1p(counts / total * 1e4)``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from stimage.constants import Key, Platform
from stimage.errors import ConfigError
from stimage.evaluation._agreement import (
    pearson_per_gene,
    spearman_per_gene,
    uncertainty_error_spearman,
)
from stimage.evaluation._classification import roc_auc_per_gene
from stimage.evaluation._sparsification import sparsification_auc
from stimage.evaluation._spatial import bivariate_morans_i, grid_neighbours, iou_per_gene, morans_i
from stimage.models import ModelBundle, PaperNB, PCARidge, high_low_labels, mixture_pit
from stimage.training import choose_genes, fit_bundle

if TYPE_CHECKING:
    import anndata as ad

    from stimage.models import ExpressionPrediction
    from stimage.training import SpotSet, TrainConfig

__all__ = [
    "METHODS",
    "CVResult",
    "cross_validate",
    "leave_one_patient_out",
    "leave_one_section_out",
]

logger = logging.getLogger(__name__)

METHODS = ("mean", "paper", "ridge", "ridge_cv", "ridge_cv_tile", "nb")
LEVELS = (0.5, 0.8, 0.9, 0.95)


@dataclass
class _OwnTile:
    """A ridge fitted on the first ``d`` feature columns: a spot's own, without context."""

    model: PCARidge
    d: int

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predictions from the own-feature columns of ``x``."""
        return self.model.predict(x[:, : self.d])


#: What a method fits: the training mean (``mean``), a model with ``predict`` (``paper``,
#: ``ridge``, ``ridge_cv``, ``ridge_cv_tile``) or a model bundle (``nb``).
_Fitted = np.ndarray | PaperNB | PCARidge | _OwnTile | ModelBundle


def leave_one_section_out(sample_ids: list[str]) -> list[tuple[list[str], list[str]]]:
    """Folds holding out one section each.

    Raises:
        ConfigError: Fewer than two sections.
    """
    if len(sample_ids) < 2:
        raise ConfigError(
            f"cross-validation needs at least 2 sections, the data has {len(sample_ids)} ({sample_ids}); "
            "evaluate with two or more sections, or train on this one with `stimage train` (its "
            "held-out accuracy per gene needs two sections too)"
        )
    return [([s for s in sample_ids if s != t], [t]) for t in sample_ids]


def leave_one_patient_out(patients: dict[str, str]) -> list[tuple[list[str], list[str]]]:
    """Folds holding out all sections of one patient each.

    Raises:
        ConfigError: Fewer than two patients.
    """
    by_patient: dict[str, list[str]] = {}
    for s, p in patients.items():
        by_patient.setdefault(p, []).append(s)
    if len(by_patient) < 2:
        raise ConfigError(
            f"leave-one-patient-out needs at least 2 patients, the data has {len(by_patient)}; use --cv section"
        )
    return [([s for s in patients if patients[s] != p], ids) for p, ids in by_patient.items()]


@dataclass
class CVResult:
    """Per-gene results of a cross-validation.

    Attributes:
        genes: One row per (fold, test section, method, gene) with the metrics.
        coverage: One row per (fold, test section, level): observed coverage of ``nb``'s intervals.
        gene_sets: Fold -> gene set name -> genes.
        timings: Method -> seconds of fitting and predicting, summed over folds.
        predictions: Test section -> method -> ``(n, g)`` predictions (and ``truth``, ``genes``,
            ``epistemic_sd``, ``aleatoric_sd`` for ``nb``), for plots.
    """

    genes: pd.DataFrame
    coverage: pd.DataFrame
    gene_sets: dict[str, dict[str, list[str]]]
    timings: dict[str, float]
    predictions: dict[str, dict[str, Any]] = field(default_factory=dict)

    def summary(self) -> pd.DataFrame:
        """Mean and median PCC per method and gene set.

        ``mean_pcc``: mean over test sections of the mean PCC over the set's genes;
        ``median_pcc``: median over all (section, gene) pairs; ``mean_mse``: mean squared error
        of log-normalised expression (defined for the constant training-mean baseline too).
        """
        rows = []
        g = self.genes
        for (method, gs), df in _explode_sets(g).groupby(["method", "gene_set"]):
            per_section = df.groupby("section")["pcc"].mean()
            valid = df["pcc"].dropna()
            rows.append(
                {
                    "method": method,
                    "gene_set": gs,
                    "mean_pcc": float(per_section.mean()),
                    "median_pcc": float(valid.median()) if len(valid) else float("nan"),
                    "mean_mse": float(df["mse"].mean()),
                    "sections": int(per_section.size),
                    "genes": int(df["gene"].nunique()),
                }
            )
        return pd.DataFrame(rows).sort_values(["gene_set", "method"]).reset_index(drop=True)


def _explode_sets(df: pd.DataFrame) -> pd.DataFrame:
    out = df.assign(gene_set=df["gene_sets"].str.split(","))
    return out.explode("gene_set")


def cross_validate(
    spots: SpotSet,
    folds: list[tuple[list[str], list[str]]],
    config: TrainConfig,
    methods: tuple[str, ...] = METHODS,
    *,
    keep_predictions: bool = True,
    progress: Callable[[str], None] | None = None,
) -> CVResult:
    """Run every method on every fold and score each held-out section.

    Args:
        spots: Spots and features of all samples (features of ``config.encoders[0]`` are used
            by the baselines; ``nb`` uses all of ``config.encoders``).
        folds: ``(train ids, test ids)`` pairs.
        config: Training settings of ``nb`` (and the gene sets of every method).
        methods: Methods to run (:data:`METHODS`).
        keep_predictions: Keep per-spot predictions for plots.
        progress: Called with a message as each fold and method starts.
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ConfigError(f"unknown method(s) {unknown}; choose from {', '.join(METHODS)}")
    run = _Run(spots, config, methods, progress)
    for fi, (train, test) in enumerate(folds):
        run.fold(f"fold{fi}:" + "+".join(test), train, test, keep_predictions)
    return CVResult(
        pd.DataFrame(run.rows),
        pd.DataFrame(run.coverage),
        run.gene_sets,
        run.timings,
        run.predictions,
    )


@dataclass
class _Training:
    """One fold's training spots: first-encoder features, counts, library sizes, sections."""

    x: np.ndarray
    counts: np.ndarray
    lib: np.ndarray
    groups: np.ndarray

    @property
    def logn(self) -> np.ndarray:
        """Log-normalised expression ``log1p(counts / total * 1e4)``."""
        return np.log1p(self.counts / self.lib[:, None] * 1e4)


@dataclass
class _Output:
    """A method's predictions for one section: the mean, and for ``nb`` the rest."""

    mean: np.ndarray
    prediction: ExpressionPrediction | None = None
    p_high: np.ndarray | None = None


class _Run:
    """The tables of a cross-validation, filled one fold at a time."""

    def __init__(
        self,
        spots: SpotSet,
        config: TrainConfig,
        methods: tuple[str, ...],
        progress: Callable[[str], None] | None,
    ) -> None:
        self.spots, self.config, self.methods, self.progress = spots, config, methods, progress
        self.enc0 = config.encoders[0]
        self.rows: list[dict[str, Any]] = []
        self.coverage: list[dict[str, Any]] = []
        self.gene_sets: dict[str, dict[str, list[str]]] = {}
        self.timings = dict.fromkeys(methods, 0.0)
        self.predictions: dict[str, dict[str, Any]] = {}

    def fold(self, fold: str, train: list[str], test: list[str], keep_predictions: bool) -> None:
        """Fix the genes on ``train``, fit every method there and score each ``test`` section."""
        spots = self.spots
        genes, sets = choose_genes(spots, train, self.config)
        test_genes = [g for g in genes if all(g in spots.adatas[t].var_names for t in test)]
        self.gene_sets[fold] = sets
        membership = {g: ",".join(k for k, v in sets.items() if g in v) for g in genes}
        data = _Training(
            spots.stack_features(self.enc0, train),
            spots.counts(train, genes),
            spots.library_size(train),
            spots.groups(train),
        )
        logn = data.logn
        models: dict[str, _Fitted] = {}
        for m in self.methods:
            if self.progress:
                self.progress(f"{fold} {m}")
            t0 = time.perf_counter()
            models[m] = self._fit(m, train, genes, data, logn)
            self.timings[m] += time.perf_counter() - t0
        for t in test:
            section = self._score_section(fold, t, models, genes, test_genes, membership)
            if keep_predictions:
                self.predictions[t] = section

    def _fit(
        self, m: str, train: list[str], genes: list[str], data: _Training, logn: np.ndarray
    ) -> _Fitted:
        if m == "mean":
            return logn.mean(axis=0)
        if m == "paper":
            return PaperNB().fit(data.x, data.counts)
        if m == "ridge":
            return PCARidge().fit(data.x, logn)
        if m == "ridge_cv":
            return _ridge_cv(data.x, logn, data.groups)
        if m == "ridge_cv_tile":
            ctx = self.spots.context
            d = data.x.shape[1] if ctx is None else data.x.shape[1] // (1 + len(ctx.rings_um))
            return _OwnTile(_ridge_cv(data.x[:, :d], logn, data.groups), d)
        return fit_bundle(
            self.spots,
            train,
            genes,
            self.config,
            tiles={},
            stain_target=None,
            encoder_specs={e: {"name": e} for e in self.config.encoders},
        )

    def _score_section(
        self,
        fold: str,
        t: str,
        models: dict[str, _Fitted],
        genes: list[str],
        test_genes: list[str],
        membership: dict[str, str],
    ) -> dict[str, Any]:
        """Score every method on held-out section ``t``; its predictions, for plots."""
        spots = self.spots
        a = spots.adatas[t]
        idx = [genes.index(g) for g in test_genes]
        counts_te = spots.counts([t], test_genes)
        lib_te = spots.library_size([t])
        truth = np.log1p(counts_te / lib_te[:, None] * 1e4)
        rows_, cols_ = _grid(a)
        platform = a.uns[Key.UNS].get(Key.PLATFORM, Platform.LEGACY_ST)
        section: dict[str, Any] = {"truth": truth, "genes": test_genes}
        for m in self.methods:
            t0 = time.perf_counter()
            out = _predict(models[m], spots, t, self.enc0)
            self.timings[m] += time.perf_counter() - t0
            pred = out.mean[:, idx]
            section[m] = pred
            metrics = _metrics(pred, truth, rows_, cols_, platform)
            if out.prediction is not None:
                nb_pred = out.prediction.subset(test_genes)
                nb_metrics, coverage = _nb_metrics(nb_pred, counts_te, lib_te, truth, pred)
                metrics.update(nb_metrics)
                self.coverage += [{"fold": fold, "section": t, **c} for c in coverage]
                section["epistemic_sd"] = np.sqrt(nb_pred.epistemic_var)
                section["aleatoric_sd"] = np.sqrt(nb_pred.aleatoric_var)
                clf = model.classifier if isinstance(model := models[m], ModelBundle) else None
                if clf is not None and out.p_high is not None:
                    metrics["auc"] = _auc(out.p_high, clf.genes, test_genes, truth)
            for j, g in enumerate(test_genes):
                self.rows.append(
                    {
                        "fold": fold,
                        "section": t,
                        "patient": spots.patients[t],
                        "method": m,
                        "gene": g,
                        "gene_sets": membership[g],
                        **{k: float(v[j]) for k, v in metrics.items()},
                    }
                )
        return section


def _grid(a: ad.AnnData) -> tuple[np.ndarray, np.ndarray]:
    if Key.ARRAY_ROW in a.obs and Key.ARRAY_COL in a.obs:
        return a.obs[Key.ARRAY_ROW].to_numpy(int), a.obs[Key.ARRAY_COL].to_numpy(int)
    xy = np.asarray(a.obsm[Key.SPATIAL])
    pitch = float(a.uns[Key.UNS].get(Key.SPOT_PITCH_UM, np.nan)) / float(a.uns[Key.UNS][Key.MPP])
    if not np.isfinite(pitch):
        raise ConfigError(
            "spots have no array coordinates and no pitch; spatial metrics need a grid"
        )
    return np.round(xy[:, 1] / pitch).astype(int), np.round(xy[:, 0] / pitch).astype(int)


def _ridge_cv(x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> PCARidge:
    best, best_alpha = -np.inf, 1.0
    alphas = (1e-2, 1.0, 1e2, 1e3, 1e4, 1e5)
    if len(np.unique(groups)) >= 2:
        for alpha in alphas:
            scores = []
            for g in np.unique(groups):
                tr, te = groups != g, groups == g
                r = PCARidge(alpha=alpha).fit(x[tr], y[tr])
                pcc = pearson_per_gene(r.predict(x[te]), y[te])
                scores.append(float(np.nanmean(pcc)) if np.isfinite(pcc).any() else 0.0)
            if np.mean(scores) > best:
                best, best_alpha = float(np.mean(scores)), alpha
    return PCARidge(alpha=best_alpha).fit(x, y)


def _predict(model: _Fitted, spots: SpotSet, t: str, enc0: str) -> _Output:
    if isinstance(model, ModelBundle):
        feats = {e: spots.features[e][t] for e in model.encoders}
        pred = model.predict_features(feats)
        return _Output(pred.mean, pred, model.predict_high(feats))
    x = spots.features[enc0][t]
    if isinstance(model, np.ndarray):
        return _Output(np.repeat(model[None, :], len(x), axis=0))
    return _Output(model.predict(x))


def _metrics(
    pred: np.ndarray, truth: np.ndarray, rows: np.ndarray, cols: np.ndarray, platform: str
) -> dict[str, np.ndarray]:
    w = grid_neighbours(rows, cols, platform)
    return {
        "pcc": pearson_per_gene(pred, truth),
        "spearman": spearman_per_gene(pred, truth),
        "moran_pred": morans_i(pred, w),
        "moran_truth": morans_i(truth, w),
        "moran_bv": bivariate_morans_i(truth, pred, w),
        "iou": iou_per_gene(pred, truth, rows, cols, platform=platform),
        "mse": ((pred - truth) ** 2).mean(axis=0),
    }


def _nb_metrics(
    pred: ExpressionPrediction,
    counts: np.ndarray,
    lib: np.ndarray,
    truth: np.ndarray,
    point: np.ndarray,
) -> tuple[dict[str, np.ndarray], list[dict[str, float]]]:
    """Per-gene coverage and uncertainty metrics of ``nb``, and one coverage row per level."""
    out: dict[str, np.ndarray] = {}
    coverage: list[dict[str, float]] = []
    mu = np.exp(pred.log_rate) * (np.asarray(lib, np.float64)[None, :, None] / 1e4)
    pit = mixture_pit(mu, pred.theta, counts)
    for level in LEVELS:
        lo = pred.count_quantiles((1 - level) / 2, lib)
        hi = pred.count_quantiles((1 + level) / 2, lib)
        inside = (counts >= lo) & (counts <= hi)
        inside_pit = np.abs(pit - 0.5) <= level / 2
        out[f"coverage_{int(level * 100)}"] = inside.mean(axis=0)
        out[f"pit_coverage_{int(level * 100)}"] = inside_pit.mean(axis=0)
        coverage.append(
            {
                "level": level,
                "observed": float(inside.mean()),
                "observed_pit": float(inside_pit.mean()),
            }
        )
    err = np.abs(point - truth)
    epi = np.sqrt(pred.epistemic_var)
    tot = np.sqrt(pred.epistemic_var + pred.aleatoric_var)
    out["epistemic_error_spearman"] = uncertainty_error_spearman(epi, err)
    out["total_error_spearman"] = uncertainty_error_spearman(tot, err)
    out["ause_epistemic"] = sparsification_auc(epi, err)
    out["aleatoric_sd"] = np.sqrt(pred.aleatoric_var).mean(axis=0)
    out["epistemic_sd"] = epi.mean(axis=0)
    return out, coverage


def _auc(
    p_high: np.ndarray, classifier_genes: list[str], genes: list[str], truth: np.ndarray
) -> np.ndarray:
    labels = high_low_labels(truth)
    auc = np.full(len(genes), np.nan)
    pos = {g: i for i, g in enumerate(classifier_genes)}
    sel = [(j, pos[g]) for j, g in enumerate(genes) if g in pos]
    if sel:
        j_idx, c_idx = zip(*sel, strict=True)
        auc[list(j_idx)] = roc_auc_per_gene(p_high[:, list(c_idx)], labels[:, list(j_idx)])
    return auc
