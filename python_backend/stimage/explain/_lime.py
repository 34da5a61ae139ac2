"""Which nuclei drove a prediction: LIME with nuclei as superpixels, and occlusion.

Both explain one model tile for several targets at once (a gene's predicted mean, or its
P(high)). LIME (the ``lime`` package, the paper's defaults: hide colour 0, kernel width 0.25)
perturbs the tile by switching random subsets of nuclei off, predicts every perturbed tile and
fits one weighted ridge model per target on the same perturbations. Occlusion switches each
nucleus off alone, in batches: one forward pass per nucleus instead of ``num_samples``, so it
is several times faster, and its scores agree with LIME's in sign and rank on most tiles
(``docs/benchmarks.md``).

The background (every pixel outside a nucleus) is a feature of its own for LIME, as in the
reference code, and is reported apart from the nuclei.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from stimage.errors import ConfigError, StimageError

__all__ = [
    "NoNucleiError",
    "NucleusExplanation",
    "agreement",
    "explain_lime",
    "explain_occlusion",
]

logger = logging.getLogger(__name__)

#: Target kinds: the predicted log-normalised mean of a gene, or its P(high).
TARGETS = ("mean", "p_high")


class NoNucleiError(StimageError, ValueError):
    """A tile without nuclei cannot be explained by nuclei."""


@dataclass
class NucleusExplanation:
    """Scores of every nucleus of one tile for several targets.

    Attributes:
        method: ``lime`` or ``occlusion``.
        targets: Target names, e.g. ``["VEGFA", "ERBB2"]`` (means) or ``["VEGFA P(high)"]``.
        scores: ``(n_nuclei, n_targets)`` contribution of each nucleus: LIME's coefficient (the
            change of the target when the nucleus is present), or for occlusion the drop of the
            target when the nucleus alone is hidden.
        prediction: ``(n_targets,)`` the model's output on the intact tile.
        background: ``(n_targets,)`` the score of the non-nuclear area (LIME only; NaN otherwise).
        intercept: ``(n_targets,)`` LIME's intercept (NaN for occlusion).
        fit_r2: ``(n_targets,)`` weighted R² of LIME's local model (NaN for occlusion).
        num_samples: Perturbed tiles predicted.
        seconds: Wall time.
        settings: The settings used (kernel width, hide colour, seed, ...).
    """

    method: str
    targets: list[str]
    scores: np.ndarray
    prediction: np.ndarray
    background: np.ndarray
    intercept: np.ndarray
    fit_r2: np.ndarray
    num_samples: int
    seconds: float
    settings: dict[str, Any] = field(default_factory=dict)

    def table(self) -> pd.DataFrame:
        """One row per nucleus, one column per target."""
        return pd.DataFrame(self.scores, columns=self.targets)


def _check_inputs(tile: np.ndarray, labels: np.ndarray) -> np.ndarray:
    if tile.ndim != 3 or tile.shape[2] != 3 or tile.dtype != np.uint8:
        raise ConfigError(f"expected an (h, w, 3) uint8 tile, got {tile.shape} {tile.dtype}")
    if labels.shape != tile.shape[:2]:
        raise ConfigError(f"label image {labels.shape} does not match the tile {tile.shape[:2]}")
    ids = np.unique(labels)
    ids = ids[ids > 0]
    if not len(ids):
        raise NoNucleiError(
            "no nuclei in this tile, so there is nothing to explain; pick a tile with cells"
        )
    return ids


def _predict_batched(
    fn: Callable[[np.ndarray], np.ndarray],
    make: Callable[[int, int], np.ndarray],
    n: int,
    batch_size: int,
    progress: Callable[[int, int], None] | None,
    cancel: threading.Event | None,
) -> np.ndarray:
    out = []
    for start in range(0, n, batch_size):
        if cancel is not None and cancel.is_set():
            raise StimageError("explanation cancelled")
        stop = min(n, start + batch_size)
        out.append(fn(make(start, stop)))
        if progress:
            progress(stop, n)
    return np.concatenate(out)


def explain_lime(
    tile: np.ndarray,
    labels: np.ndarray,
    fn: Callable[[np.ndarray], np.ndarray],
    targets: list[str],
    *,
    num_samples: int = 1000,
    kernel_width: float = 0.25,
    hide_color: int = 0,
    batch_size: int = 50,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
) -> NucleusExplanation:
    """LIME over nuclei for several targets from one set of perturbations.

    Args:
        tile: ``(h, w, 3)`` uint8 tile as the model sees it (cut and stain-normalised).
        labels: ``(h, w)`` label image of the tile: 0 background, ``i + 1`` nucleus ``i``.
        fn: Tiles -> ``(n, len(targets))`` outputs (see :func:`target_function`).
        targets: Names of the outputs.
        num_samples: Perturbed tiles (the first is the intact tile, as in lime).
        kernel_width: Width of lime's exponential kernel on cosine distance.
        hide_color: Grey level a hidden superpixel is filled with (the paper: 0).
        batch_size: Tiles per model call.
        seed: Seed of the perturbations.
        progress: Called with (done, total) tiles.
        cancel: Set to stop between batches.

    Raises:
        NoNucleiError: The label image has no nuclei.
    """
    if num_samples < 10:
        raise ConfigError(f"num_samples must be at least 10, got {num_samples}")
    t0 = time.perf_counter()
    ids = _check_inputs(tile, labels)
    n_nuclei = int(labels.max())
    # Superpixel 0 is the background, 1..n the nuclei; a nucleus id with no pixel in the
    # tile has no effect on the output and its score is set to 0 below.
    n_feat = n_nuclei + 1
    rng = np.random.RandomState(seed)
    data = rng.randint(0, 2, size=(num_samples, n_feat)).astype(np.float64)
    data[0, :] = 1
    hidden = np.full_like(tile, hide_color)

    def make(start: int, stop: int) -> np.ndarray:
        rows = data[start:stop]
        batch = np.empty((stop - start, *tile.shape), dtype=np.uint8)
        for k, row in enumerate(rows):
            off = np.flatnonzero(row == 0)
            mask = np.isin(labels, off)
            batch[k] = np.where(mask[..., None], hidden, tile)
        return batch

    outputs = _predict_batched(fn, make, num_samples, batch_size, progress, cancel)
    if outputs.shape != (num_samples, len(targets)):
        raise StimageError(
            f"the explained function returned {outputs.shape}, expected ({num_samples}, {len(targets)})"
        )
    scores, background, intercept, r2 = _fit_local_models(
        data, outputs, n_nuclei, kernel_width, seed
    )
    present = np.zeros(n_nuclei, dtype=bool)
    present[ids - 1] = True
    scores[~present] = 0.0
    return NucleusExplanation(
        "lime",
        list(targets),
        scores,
        outputs[0].copy(),
        background,
        intercept,
        r2,
        num_samples,
        time.perf_counter() - t0,
        {
            "kernel_width": kernel_width,
            "hide_color": hide_color,
            "seed": seed,
            "distance": "cosine",
            "regressor": "ridge(alpha=1)",
        },
    )


def _fit_local_models(
    data: np.ndarray, outputs: np.ndarray, n_nuclei: int, kernel_width: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """LIME's weighted ridge per target: nucleus scores, background score, intercept, R²."""
    import sklearn.metrics
    from lime.lime_base import LimeBase
    from sklearn.linear_model import Ridge

    distances = sklearn.metrics.pairwise_distances(data, data[:1], metric="cosine").ravel()

    def kernel(d: np.ndarray) -> np.ndarray:
        return np.sqrt(np.exp(-(d**2) / kernel_width**2))

    n_targets = outputs.shape[1]
    base = LimeBase(kernel, random_state=np.random.RandomState(seed))
    scores = np.zeros((n_nuclei, n_targets))
    background = np.zeros(n_targets)
    intercept = np.zeros(n_targets)
    r2 = np.zeros(n_targets)
    for j in range(n_targets):
        icpt, local, score, _ = base.explain_instance_with_data(
            data,
            outputs,
            distances,
            j,
            num_features=n_nuclei + 1,
            feature_selection="none",
            model_regressor=Ridge(alpha=1.0, random_state=seed),
        )
        intercept[j], r2[j] = icpt, score
        for f, w in local:
            if f == 0:
                background[j] = w
            else:
                scores[f - 1, j] = w
    return scores, background, intercept, r2


def explain_occlusion(
    tile: np.ndarray,
    labels: np.ndarray,
    fn: Callable[[np.ndarray], np.ndarray],
    targets: list[str],
    *,
    hide_color: int = 0,
    batch_size: int = 50,
    progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
) -> NucleusExplanation:
    """Occlusion: the drop of each target when one nucleus alone is hidden.

    One forward pass per nucleus (plus the intact tile), batched. Positive scores mean the
    nucleus raises the prediction, as LIME's coefficients do.

    Raises:
        NoNucleiError: The label image has no nuclei.
    """
    t0 = time.perf_counter()
    ids = _check_inputs(tile, labels)
    n_nuclei = int(labels.max())
    order = np.concatenate([[0], ids])  # 0 = the intact tile

    def make(start: int, stop: int) -> np.ndarray:
        batch = np.repeat(tile[None], stop - start, axis=0)
        for k, i in enumerate(order[start:stop]):
            if i:
                batch[k][labels == i] = hide_color
        return batch

    outputs = _predict_batched(fn, make, len(order), batch_size, progress, cancel)
    base = outputs[0]
    scores = np.zeros((n_nuclei, len(targets)))
    scores[ids - 1] = base[None, :] - outputs[1:]
    nan = np.full(len(targets), np.nan)
    return NucleusExplanation(
        "occlusion",
        list(targets),
        scores,
        base.copy(),
        nan,
        nan.copy(),
        nan.copy(),
        len(order),
        time.perf_counter() - t0,
        {"hide_color": hide_color},
    )


def agreement(a: NucleusExplanation, b: NucleusExplanation) -> pd.DataFrame:
    """Per target: Spearman correlation of two explanations' nucleus scores and sign agreement."""
    from scipy.stats import spearmanr

    if a.scores.shape != b.scores.shape:
        raise ConfigError("explanations of different tiles or targets cannot be compared")
    rows = []
    for j, t in enumerate(a.targets):
        x, y = a.scores[:, j], b.scores[:, j]
        keep = (x != 0) | (y != 0)
        rho = float(spearmanr(x[keep], y[keep]).statistic) if keep.sum() > 2 else float("nan")
        big = keep & (np.abs(x) >= np.quantile(np.abs(x[keep]), 0.5)) if keep.any() else keep
        sign = float(np.mean(np.sign(x[big]) == np.sign(y[big]))) if big.any() else float("nan")
        rows.append({"target": t, "spearman": rho, "sign_agreement_top_half": sign})
    return pd.DataFrame(rows)
