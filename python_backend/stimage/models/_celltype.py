"""Cell-type classification per nucleus, from labelled nuclei or from spot proportions.

A :class:`CellTypeClassifier` is a small multinomial model (one hidden layer of 16 GELU units
by default, or linear with ``hidden=0``) on standardised per-nucleus features: morphology and
stain intensities of the nucleus, plus by default the colour and texture of the 20 µm square
of tissue around it (``patch_um``), and optionally statistics of its neighbourhood
(``context_um``); see :mod:`stimage.models._celltype_features`. These defaults are what
measured best on HER2ST (leave one section out, ``scripts/benchmark_celltypes.py``): the
hidden layer and the patch each raised the mean composition Pearson (0.40 -> 0.44 -> 0.45),
the neighbourhood statistics did not. It is trained in one of two ways:

* :meth:`~CellTypeClassifier.fit_labels`: cross-entropy on labelled nuclei (QuPath objects
  with classes, Xenium cell types registered onto the H&E);
* :meth:`~CellTypeClassifier.fit_proportions`: learning from label proportions (LLP). Every
  spot is a *bag* of the nuclei inside it; the mean of the predicted class probabilities of
  a bag must match the spot's given cell-type proportions. The loss is the KL divergence
  ``KL(q_b || mean_i p_i)`` averaged over bags, plus a documented prior regulariser
  ``prior_weight * KL(q || mean over all nuclei of p_i)`` (default 0.1: the overall
  composition of the training spots, weighted by their nuclei, must be kept) and an optional
  entropy term ``entropy_weight * mean_i H(p_i) / log K``, a push towards confident
  per-nucleus answers against the degenerate fit that gives every nucleus its bag's average
  composition. The entropy term is off by default: on HER2ST it lowered the composition
  Pearson (0.455 -> 0.449 at 0.02) and it makes uncertainty look smaller than the data
  support. L2 weight decay (``weight_decay``) keeps the weights small. L-BFGS minimises the
  full-batch loss; gradients come from torch.

Classes default to ``immune, stromal, epithelial, endothelial``; source types (the eight
HER2ST deconvolution types, QuPath's default classes) are mapped onto them by a mapping the
user can replace (:mod:`stimage.models._celltype_mapping`). Labels that neither are a class
nor appear in the mapping raise :class:`UnknownCellTypeError`.

Calls, uncertainty and anchors: see :mod:`stimage.models._celltype_calls`.

A trained model is a folder (``celltype_manifest.json`` + ``celltype_weights.safetensors``,
:mod:`stimage.models._celltype_io`); loading never unpickles. The default model (20 features,
16 hidden units) takes about 4 kB.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stimage.errors import ConfigError
from stimage.models._celltype_calls import (
    CALLING_RULES,
    anchor_loss_fn,
    celltype_entropy,
    fit_call_bias,
)
from stimage.models._celltype_mapping import (
    DEFAULT_CELL_CLASSES,
    DEFAULT_CELLTYPE_MAPPING,
    _resolver,
    map_labels,
    map_proportions,
)

__all__ = ["CellTypeClassifier", "celltype_entropy"]


logger = logging.getLogger(__name__)


def _segment_mean(p: Any, bag: Any, n_bags: int) -> Any:
    import torch

    s = torch.zeros((n_bags, p.shape[1]), dtype=p.dtype).index_add_(0, bag, p)
    n = torch.zeros(n_bags, dtype=p.dtype).index_add_(0, bag, torch.ones_like(bag, dtype=p.dtype))
    return s / n.clamp_min(1.0)[:, None]


@dataclass
class CellTypeClassifier:
    """Per-nucleus cell types with probabilities and entropy.

    Attributes:
        classes: Class names, in output order.
        mapping: Source type -> class (None drops); used to map labels and proportions.
        hidden: Width of the hidden layer; 0 for a linear (multinomial logistic) model.
        context_um: Radius of the neighbourhood statistics added to the features (None:
            none); see :func:`stimage.models.celltype_features`.
        patch_um: Side of the square of tissue around each nucleus whose colour and texture
            are added to the features (None: none); see :func:`stimage.models.patch_features`.
        max_iter: Most L-BFGS iterations (full batch).
        weight_decay: L2 penalty on the weights.
        prior_weight: LLP regulariser weight: KL of the overall training composition to the
            mean prediction over all nuclei.
        entropy_weight: LLP regulariser weight: mean normalised entropy of the nuclei.
        anchor_weight: LLP: weight of the cross-entropy on the morphology anchors
            (:func:`~stimage.models.morphology_anchors`); 0: proportions alone.
        calling: ``"composition"`` (default: the most probable class after the offsets
            :attr:`call_bias`, which keep the expected composition) or ``"argmax"``.
        seed: Seed of the weight initialisation.
        call_bias: Log-offsets per class added before the call (set by fitting).
        feature_names: Feature columns the model reads (set by fitting).
        mean: Feature means (standardisation).
        scale: Feature standard deviations.
        weights: Layer arrays ``l0.weight``, ``l0.bias`` (and ``l1.*`` with a hidden layer).
        training: Provenance (how and on what it was trained).
        metrics: Metrics recorded with the model.
    """

    classes: tuple[str, ...] = DEFAULT_CELL_CLASSES
    mapping: dict[str, str | None] = field(default_factory=lambda: dict(DEFAULT_CELLTYPE_MAPPING))
    hidden: int = 16
    context_um: float | None = None
    patch_um: float | None = 20.0
    max_iter: int = 200
    weight_decay: float = 1e-3
    prior_weight: float = 0.1
    entropy_weight: float = 0.0
    anchor_weight: float = 0.0
    calling: str = "composition"
    seed: int = 0
    call_bias: np.ndarray | None = None
    feature_names: list[str] = field(default_factory=list)
    mean: np.ndarray | None = None
    scale: np.ndarray | None = None
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.classes = tuple(str(c) for c in self.classes)
        if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
            raise ConfigError(f"need two or more distinct classes, got {list(self.classes)}")
        if self.hidden < 0 or self.max_iter < 1:
            raise ConfigError("hidden must be >= 0 and max_iter >= 1")
        if min(self.weight_decay, self.prior_weight, self.entropy_weight, self.anchor_weight) < 0:
            raise ConfigError(
                "weight_decay, prior_weight, entropy_weight and anchor_weight must be >= 0"
            )
        if self.calling not in CALLING_RULES:
            raise ConfigError(f"calling={self.calling!r}: use one of {list(CALLING_RULES)}")
        if self.call_bias is not None:
            try:
                b = np.asarray(self.call_bias, np.float64).ravel()
            except (TypeError, ValueError) as e:
                raise ConfigError(f"call_bias must be numbers, one per class ({e})") from e
            if b.shape != (len(self.classes),) or not np.isfinite(b).all():
                raise ConfigError(
                    f"call_bias must be {len(self.classes)} finite numbers, one per class"
                )
            self.call_bias = b
        for name in ("context_um", "patch_um"):
            v = getattr(self, name)
            if v is not None and not (np.isfinite(v) and v > 0):
                raise ConfigError(f"{name}={v} must be positive µm or None")
        _resolver(self.classes, self.mapping)

    # -- features -------------------------------------------------------------------------
    @property
    def fitted(self) -> bool:
        """Whether the model has weights."""
        return bool(self.weights) and self.mean is not None

    def _matrix(self, features: pd.DataFrame | np.ndarray, fit: bool = False) -> np.ndarray:
        if isinstance(features, pd.DataFrame):
            if fit and not self.feature_names:
                from stimage.models._celltype_features import default_feature_columns

                self.feature_names = default_feature_columns(features)
            dup = features.columns[features.columns.duplicated()]
            if len(dup):
                raise ConfigError(f"the features repeat column(s) {sorted(set(map(str, dup)))[:6]}")
            missing = [c for c in self.feature_names if c not in features.columns]
            if missing:
                hint = (
                    " (context features: build the table with stimage.models.celltype_features"
                    " and patch_features, or use classify_nuclei)"
                    if any(c.startswith("ctx_") for c in missing)
                    else ""
                )
                raise ConfigError(f"the features lack column(s) {missing[:6]}{hint}")
            x = features[self.feature_names].to_numpy(np.float64)
        else:
            x = np.asarray(features, np.float64)
            if x.ndim != 2:
                raise ConfigError(f"features must be 2-D (nuclei x features), got {x.shape}")
            if fit and not self.feature_names:
                self.feature_names = [f"f{i}" for i in range(x.shape[1])]
            if x.shape[1] != len(self.feature_names):
                raise ConfigError(
                    f"features have {x.shape[1]} columns, the model reads {len(self.feature_names)}"
                )
        if not len(self.feature_names):
            raise ConfigError("no feature columns to train on")
        if fit:
            mu = np.nanmean(x, axis=0) if len(x) else np.zeros(x.shape[1])
            sd = np.nanstd(x, axis=0) if len(x) else np.ones(x.shape[1])
            self.mean = np.nan_to_num(mu)
            self.scale = np.where(np.isfinite(sd) & (sd > 1e-8), sd, 1.0)
        if self.mean is None or self.scale is None:
            raise ConfigError("the cell-type model is not fitted; train it or load one")
        z = (x - self.mean) / self.scale
        return np.clip(np.nan_to_num(z, nan=0.0), -8.0, 8.0)

    def _sync_context(self) -> None:
        """Record only the context features the model actually reads."""
        names = self.feature_names
        if not any(c.startswith("ctx_patch_") for c in names):
            self.patch_um = None
        if not any(c.startswith("ctx_") and not c.startswith("ctx_patch_") for c in names):
            self.context_um = None

    # -- network --------------------------------------------------------------------------
    def _init_weights(self, d: int, prior: np.ndarray) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(self.seed)
        k = len(self.classes)
        sizes = [(self.hidden, d), (k, self.hidden)] if self.hidden else [(k, d)]
        w: dict[str, np.ndarray] = {}
        for i, (out, inp) in enumerate(sizes):
            w[f"l{i}.weight"] = rng.normal(0.0, 0.1 / math.sqrt(inp), (out, inp))
            w[f"l{i}.bias"] = np.zeros(out)
        # The last bias starts at the log prior: the model starts at the average composition.
        w[f"l{len(sizes) - 1}.bias"] = np.log(np.clip(prior, 1e-4, None))
        return w

    def _logits(self, z: np.ndarray) -> np.ndarray:
        w = self.weights
        if not self.fitted:
            raise ConfigError("the cell-type model is not fitted; train it or load one")
        h = z @ w["l0.weight"].astype(np.float64).T + w["l0.bias"]
        if "l1.weight" in w:
            # GELU (erf form), as torch.nn.GELU.
            from scipy.special import erf

            h = 0.5 * h * (1.0 + erf(h / math.sqrt(2.0)))
            h = h @ w["l1.weight"].astype(np.float64).T + w["l1.bias"]
        return h

    def _train(self, z: np.ndarray, loss_fn: Any, prior: np.ndarray) -> list[float]:
        """Minimise ``loss_fn(log-probabilities)`` + L2 with L-BFGS (scipy), gradients by torch.

        scipy drives the optimisation rather than ``torch.optim``, whose first step imports
        torch's compiler stack (seconds) for a problem that itself takes milliseconds.
        """
        import torch
        from scipy.optimize import minimize

        init = self._init_weights(z.shape[1], prior)
        names = list(init)
        shapes = [init[n].shape for n in names]
        sizes = [int(np.prod(sh)) for sh in shapes]
        theta0 = np.concatenate([init[n].ravel() for n in names])
        xt = torch.as_tensor(z, dtype=torch.float64)
        history: list[float] = []

        def unpack(t: Any) -> dict[str, Any]:
            parts = torch.split(t, sizes)
            return {n: p.reshape(sh) for n, p, sh in zip(names, parts, shapes, strict=True)}

        def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
            t = torch.tensor(theta, dtype=torch.float64, requires_grad=True)
            w = unpack(t)
            h = xt @ w["l0.weight"].T + w["l0.bias"]
            if self.hidden:
                h = torch.nn.functional.gelu(h) @ w["l1.weight"].T + w["l1.bias"]
            loss = loss_fn(torch.log_softmax(h, dim=1))
            l2 = sum((w[n] ** 2).sum() for n in names if n.endswith("weight"))
            total = loss + self.weight_decay * l2
            total.backward()
            history.append(float(loss.detach()))
            grad = t.grad.numpy() if t.grad is not None else np.zeros_like(theta)
            return float(total.detach()), grad.astype(np.float64)

        threads = torch.get_num_threads()
        # One thread: these problems are small, and extra threads mostly wait on each other.
        torch.set_num_threads(1)
        try:
            res = minimize(
                objective,
                theta0,
                jac=True,
                method="L-BFGS-B",
                options={"maxiter": self.max_iter, "maxcor": 20, "gtol": 1e-6, "ftol": 1e-10},
            )
        finally:
            torch.set_num_threads(threads)
        theta = torch.as_tensor(res.x)
        self.weights = {n: p.numpy().astype(np.float32) for n, p in unpack(theta).items()}
        return history

    # -- fitting --------------------------------------------------------------------------
    def fit_labels(
        self,
        features: pd.DataFrame | np.ndarray,
        labels: Sequence[Any] | np.ndarray | pd.Series,
        *,
        class_weight: str | None = "balanced",
    ) -> CellTypeClassifier:
        """Train with cross-entropy on labelled nuclei.

        Args:
            features: Nuclei x features (a DataFrame with the feature columns, or an array).
            labels: One label per nucleus: a class, or a source type of :attr:`mapping`.
                Missing labels (None, NaN, "") and labels mapped to None are left out.
            class_weight: ``"balanced"`` weighs classes by inverse frequency; None does not.

        Raises:
            UnknownCellTypeError: A label is neither a class nor in the mapping.
            ConfigError: Shapes disagree or fewer than two classes are labelled.
        """
        import torch

        y = map_labels(labels, self.classes, self.mapping)
        if len(y) != len(features):
            raise ConfigError(f"{len(y)} labels for {len(features)} nuclei")
        keep = y >= 0
        if len(np.unique(y[keep])) < 2:
            raise ConfigError(
                f"labels cover {len(np.unique(y[keep]))} class(es) after mapping; need two or more"
            )
        features = (
            features.loc[keep] if isinstance(features, pd.DataFrame) else np.asarray(features)[keep]
        )
        z = self._matrix(features, fit=True)
        self._sync_context()
        y = y[keep]
        k = len(self.classes)
        counts = np.bincount(y, minlength=k).astype(np.float64)
        prior = (counts + 1.0) / (counts.sum() + k)
        if class_weight == "balanced":
            cw = np.where(counts > 0, counts.sum() / (k * np.maximum(counts, 1.0)), 0.0)
        elif class_weight is None:
            cw = np.ones(k)
        else:
            raise ConfigError(f"class_weight={class_weight!r}: use 'balanced' or None")
        yt = torch.as_tensor(y)
        wt = torch.as_tensor(cw)[yt]

        def loss(logp: Any) -> Any:
            return -(wt * logp.gather(1, yt[:, None])[:, 0]).sum() / wt.sum()

        history = self._train(z, loss, prior)
        self.call_bias = fit_call_bias(self._proba(z))
        self.training = {
            **self.training,
            "method": "labels",
            "loss": "cross-entropy" + (" (balanced class weights)" if class_weight else ""),
            "nuclei": len(y),
            "class_counts": dict(zip(self.classes, counts.astype(int).tolist(), strict=True)),
            "final_loss": history[-1],
        }
        logger.info("cell types: trained on %d labelled nuclei, loss %.4f", len(y), history[-1])
        return self

    def fit_proportions(
        self,
        features: pd.DataFrame | np.ndarray,
        bag_index: np.ndarray,
        bag_proportions: pd.DataFrame | np.ndarray,
        *,
        anchors: np.ndarray | None = None,
    ) -> CellTypeClassifier:
        """Train from spot proportions (learning from label proportions).

        Args:
            features: Nuclei x features.
            bag_index: The spot (row of ``bag_proportions``) of each nucleus; -1 leaves a
                nucleus out.
            bag_proportions: Spots x types: a DataFrame with source-type columns (mapped
                by :attr:`mapping`) or an array in class order. Rows are renormalised.
            anchors: Class index per nucleus from its morphology, -1 for none
                (:func:`~stimage.models.morphology_anchors`); used when
                :attr:`anchor_weight` > 0.

        Raises:
            UnknownCellTypeError: A proportion column is neither a class nor in the mapping.
            ConfigError: Shapes disagree, or no spot holds a nucleus.
        """
        import torch

        q = map_proportions(bag_proportions, self.classes, self.mapping)
        bag = np.asarray(bag_index, np.int64)
        if bag.shape != (len(features),):
            raise ConfigError(f"bag_index has shape {bag.shape}, expected ({len(features)},)")
        if (bag >= len(q)).any() or (bag < -1).any():
            raise ConfigError(f"bag_index must be -1 or a row of the {len(q)} spot proportions")
        keep = bag >= 0
        if not keep.any():
            raise ConfigError("no nucleus lies in a spot; check the spots and the nuclei overlap")
        features = (
            features.loc[keep] if isinstance(features, pd.DataFrame) else np.asarray(features)[keep]
        )
        z = self._matrix(features, fit=True)
        self._sync_context()
        used, bag = np.unique(bag[keep], return_inverse=True)
        q = q[used]
        n_b = np.bincount(bag, minlength=len(used)).astype(np.float64)
        prior = (q * n_b[:, None]).sum(0) / n_b.sum()
        qt, bt, pt = torch.as_tensor(q), torch.as_tensor(bag), torch.as_tensor(prior)
        k = len(self.classes)
        anchor_loss = anchor_loss_fn(anchors, keep, k) if self.anchor_weight > 0 else None
        log_q = torch.log(qt.clamp_min(1e-8))
        log_prior = torch.log(pt.clamp_min(1e-8))

        def loss(logp: Any) -> Any:
            p = logp.exp()
            pbar = _segment_mean(p, bt, len(used)).clamp_min(1e-8)
            kl = (qt * (log_q - torch.log(pbar))).sum(1).mean()
            pall = p.mean(0).clamp_min(1e-8)
            kl_prior = (pt * (log_prior - torch.log(pall))).sum()
            ent = -(p * logp).sum(1).mean() / math.log(k)
            out = kl + self.prior_weight * kl_prior + self.entropy_weight * ent
            if anchor_loss is not None:
                out = out + self.anchor_weight * anchor_loss(logp)
            return out

        history = self._train(z, loss, prior)
        self.call_bias = fit_call_bias(self._proba(z))
        n_anchor = 0 if anchors is None else int((np.asarray(anchors)[keep] >= 0).sum())
        weighting = (
            f"{self.anchor_weight} cross-entropy on {n_anchor} morphology anchors"
            if anchor_loss is not None
            else "no anchors"
        )
        self.training = {
            **self.training,
            "method": "proportions",
            "loss": "KL(spot proportions || mean nucleus probabilities) "
            f"+ {self.prior_weight} KL(prior || mean) + {self.entropy_weight} entropy/log K; "
            + weighting,
            "nuclei": len(bag),
            "spots": len(used),
            "training_composition": dict(zip(self.classes, prior.tolist(), strict=True)),
            "final_loss": history[-1],
        }
        logger.info(
            "cell types: trained on %d nuclei in %d spots, loss %.4f",
            len(bag),
            len(used),
            history[-1],
        )
        return self

    # -- prediction -----------------------------------------------------------------------
    def _proba(self, z: np.ndarray) -> np.ndarray:
        h = self._logits(z)
        h = h - h.max(axis=1, keepdims=True)
        e = np.exp(h)
        return e / e.sum(axis=1, keepdims=True)

    def predict_proba(self, features: pd.DataFrame | np.ndarray) -> np.ndarray:
        """``(n, K)`` class probabilities per nucleus."""
        return self._proba(self._matrix(features))

    def call(self, proba: np.ndarray) -> np.ndarray:
        """Class index per nucleus from its probabilities, by :attr:`calling`.

        ``"composition"`` adds :attr:`call_bias` to the log-probabilities before the
        argmax (a model without offsets, e.g. one saved by an older stimage, calls by
        argmax); ``"argmax"`` takes the most probable class.
        """
        p = np.asarray(proba, np.float64)
        if self.calling == "composition" and self.call_bias is not None:
            return (np.log(np.clip(p, 1e-12, 1.0)) + self.call_bias).argmax(axis=1)
        return p.argmax(axis=1)

    def predict(self, features: pd.DataFrame | np.ndarray) -> np.ndarray:
        """The called class name per nucleus (see :meth:`call`)."""
        return np.asarray(self.classes, dtype=object)[self.call(self.predict_proba(features))]

    def entropy(
        self, features: pd.DataFrame | np.ndarray, *, normalised: bool = True
    ) -> np.ndarray:
        """Entropy of the class probabilities: divided by ``log K`` (0..1, reported) or nats."""
        return celltype_entropy(self.predict_proba(features), normalised=normalised)

    def predict_frame(self, features: pd.DataFrame | np.ndarray) -> pd.DataFrame:
        """Class, ``P(<class>)`` per class and normalised ``entropy`` per nucleus."""
        p = self.predict_proba(features)
        index = features.index if isinstance(features, pd.DataFrame) else None
        out = pd.DataFrame(
            {"class": np.asarray(self.classes, dtype=object)[self.call(p)]}, index=index
        )
        for j, c in enumerate(self.classes):
            out[f"P({c})"] = p[:, j]
        out["entropy"] = celltype_entropy(p)
        return out

    # -- persistence ----------------------------------------------------------------------
    def save(self, folder: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write ``celltype_manifest.json`` and ``celltype_weights.safetensors`` into a folder.

        Raises:
            ConfigError: Not fitted, or the folder holds a model and ``overwrite`` is False.
        """
        from stimage.models._celltype_io import save_celltype_model

        return save_celltype_model(self, folder, overwrite=overwrite)
