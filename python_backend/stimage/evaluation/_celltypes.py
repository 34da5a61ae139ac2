"""Metrics of per-nucleus cell types: spot composition against given proportions, and labels.

Composition. The predicted composition of a spot is the mean of the class probabilities of
the nuclei inside it (``hard=True``: the fraction of nuclei of each predicted class). Over the
spots of a held-out section it is compared per class with the given proportions (e.g. the
HER2ST deconvolution): Pearson correlation over spots and mean absolute error. The baseline
predicts the same composition everywhere (the average of the training spots): its MAE is the
bar to beat, and its Pearson is undefined (NaN), since a constant does not correlate; a
model's Pearson is to be read against 0.

Labels. F1 per class, macro F1, accuracy and the confusion matrix (rows: true class,
columns: predicted class).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from stimage.errors import ConfigError

__all__ = ["composition_metrics", "label_metrics", "spot_composition"]


def spot_composition(
    pred_proba: np.ndarray, bag_index: np.ndarray, n_bags: int, *, hard: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Mean class probabilities (or predicted-class fractions) of the nuclei of each spot.

    Args:
        pred_proba: ``(n, K)`` class probabilities per nucleus.
        bag_index: Spot of each nucleus (-1: none).
        n_bags: Number of spots.
        hard: Fractions of the most probable class instead of mean probabilities.

    Returns:
        ``(n_bags, K)`` compositions (NaN rows for spots without nuclei) and ``(n_bags,)``
        nuclei counts.
    """
    p = np.asarray(pred_proba, np.float64)
    bag = np.asarray(bag_index, np.int64)
    if p.ndim != 2 or bag.shape != (len(p),):
        raise ConfigError(f"pred_proba {p.shape} and bag_index {bag.shape} do not match")
    if (bag >= n_bags).any():
        raise ConfigError(f"bag_index holds spots beyond the {n_bags} given")
    if hard:
        p = np.eye(p.shape[1])[p.argmax(1)]
    keep = bag >= 0
    sums = np.zeros((n_bags, p.shape[1]))
    np.add.at(sums, bag[keep], p[keep])
    counts = np.bincount(bag[keep], minlength=n_bags)
    with np.errstate(invalid="ignore", divide="ignore"):
        comp = sums / counts[:, None]
    comp[counts == 0] = np.nan
    return comp, counts


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 2 or np.ptp(a) <= 1e-12 or np.ptp(b) <= 1e-12:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def composition_metrics(
    pred_proba: np.ndarray,
    bag_index: np.ndarray,
    true_props: np.ndarray,
    baseline_props: np.ndarray,
    classes: Sequence[str] | None = None,
    *,
    min_nuclei: int = 1,
    hard: bool = False,
) -> pd.DataFrame:
    """Per-class Pearson over spots and MAE of the predicted spot composition, model and baseline.

    Args:
        pred_proba: ``(n, K)`` class probabilities per nucleus.
        bag_index: Spot (row of ``true_props``) of each nucleus; -1 for none.
        true_props: ``(n_spots, K)`` given proportions in class order.
        baseline_props: ``(K,)`` composition predicted for every spot (the training average),
            or ``(n_spots, K)``.
        classes: Class names (``class0``... by default).
        min_nuclei: Spots with fewer nuclei are left out.
        hard: Composition from predicted classes instead of mean probabilities.

    Returns:
        One row per class and a last row ``mean`` (over classes), with columns
        ``pearson_model``, ``pearson_baseline``, ``mae_model``, ``mae_baseline``, ``spots``.

    Example:
        >>> p = np.array([[0.9, 0.1], [0.2, 0.8], [0.8, 0.2]])
        >>> m = composition_metrics(p, np.array([0, 1, 2]), np.array([[1, 0], [0, 1], [0.7, 0.3]]),
        ...                         np.array([0.5, 0.5]), ["a", "b"])
        >>> m.loc["a", ["mae_model", "mae_baseline"]].round(3).tolist()
        [0.133, 0.4]
    """
    q = np.asarray(true_props, np.float64)
    if q.ndim != 2:
        raise ConfigError(f"true_props must be spots x classes, got shape {q.shape}")
    n_spots, k = q.shape
    comp, counts = spot_composition(pred_proba, bag_index, n_spots, hard=hard)
    if comp.shape[1] != k:
        raise ConfigError(f"predictions have {comp.shape[1]} classes, true_props {k}")
    base = np.asarray(baseline_props, np.float64)
    base = np.broadcast_to(base, q.shape) if base.ndim == 1 else base
    if base.shape != q.shape:
        raise ConfigError(f"baseline_props {base.shape} do not match true_props {q.shape}")
    names = list(classes) if classes is not None else [f"class{j}" for j in range(k)]
    if len(names) != k:
        raise ConfigError(f"{len(names)} class names for {k} classes")
    use = counts >= max(int(min_nuclei), 1)
    rows: dict[str, dict[str, Any]] = {}
    for j, c in enumerate(names):
        t, m, b = q[use, j], comp[use, j], base[use, j]
        rows[c] = {
            "pearson_model": _pearson(m, t),
            "pearson_baseline": _pearson(b, t),
            "mae_model": float(np.mean(np.abs(m - t))) if use.any() else float("nan"),
            "mae_baseline": float(np.mean(np.abs(b - t))) if use.any() else float("nan"),
            "spots": int(use.sum()),
        }
    out = pd.DataFrame.from_dict(rows, orient="index")
    mean = out.drop(columns="spots").mean(axis=0, skipna=True)
    mean["spots"] = int(use.sum())
    out.loc["mean"] = mean
    out["spots"] = out["spots"].astype(int)
    return out


def label_metrics(
    y_true: Sequence[Any] | np.ndarray, y_pred: Sequence[Any] | np.ndarray, classes: Sequence[str]
) -> dict[str, Any]:
    """F1 per class, macro F1, accuracy and the confusion matrix of predicted class names.

    Args:
        y_true: True class per nucleus (names among ``classes``).
        y_pred: Predicted class per nucleus.
        classes: The classes, in the order of the report.

    Returns:
        ``{"f1": Series by class, "macro_f1": float, "accuracy": float,
        "confusion": DataFrame (rows true, columns predicted), "support": Series}``.
        F1 of a class that is neither present nor predicted is NaN and left out of the macro.

    Example:
        >>> r = label_metrics(["a", "a", "b"], ["a", "b", "b"], ["a", "b"])
        >>> r["f1"].round(3).tolist(), round(r["accuracy"], 3)
        ([0.667, 0.667], 0.667)
    """
    t = np.asarray(y_true, dtype=object)
    p = np.asarray(y_pred, dtype=object)
    if t.shape != p.shape:
        raise ConfigError(f"{len(t)} true labels and {len(p)} predictions")
    names = list(classes)
    index = {c: i for i, c in enumerate(names)}
    bad = sorted({str(v) for v in np.concatenate([t, p]) if v not in index})
    if bad:
        raise ConfigError(f"labels {bad[:5]} are not among the classes {names}; map them first")
    ti = np.array([index[v] for v in t], np.int64)
    pi = np.array([index[v] for v in p], np.int64)
    k = len(names)
    cm = np.zeros((k, k), np.int64)
    np.add.at(cm, (ti, pi), 1)
    tp = np.diag(cm).astype(np.float64)
    denom = cm.sum(0) + cm.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(denom > 0, 2 * tp / denom, np.nan)
    return {
        "f1": pd.Series(f1, index=names, name="f1"),
        "macro_f1": float(np.nanmean(f1)) if np.isfinite(f1).any() else float("nan"),
        "accuracy": float(tp.sum() / max(len(t), 1)),
        "confusion": pd.DataFrame(
            cm,
            index=pd.Index(names, name="true"),
            columns=pd.Index(names, name="predicted"),
        ),
        "support": pd.Series(cm.sum(1), index=names, name="support"),
    }
