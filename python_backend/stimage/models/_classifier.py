"""The high/low expression classifier of the STImage paper.

Per gene, a spot is *high* when its log-normalised expression is above the mean of its
section (z-score > 0, computed within each section so that section-wide shifts do not
decide the label). An elastic-net logistic regression (SAGA, C = 0.1, l1_ratio = 0.5, the
paper's settings) on standardised encoder features gives P(high) per tile.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field

import numpy as np

from stimage.errors import ConfigError

__all__ = ["HighLowClassifier", "high_low_labels"]

logger = logging.getLogger(__name__)


def high_low_labels(log_expr: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
    """``(n, g)`` booleans: expression above the mean of its section (z-score > 0)."""
    x = np.asarray(log_expr, np.float64)
    out = np.zeros(x.shape, bool)
    grp = np.zeros(len(x), int) if groups is None else np.unique(groups, return_inverse=True)[1]
    for gi in np.unique(grp):
        idx = grp == gi
        out[idx] = x[idx] > x[idx].mean(axis=0, keepdims=True)
    return out


@dataclass
class HighLowClassifier:
    """One elastic-net logistic regression per gene on standardised features.

    Attributes:
        c: Inverse regularisation strength (paper: 0.1).
        l1_ratio: Elastic-net mixing (paper: 0.5).
        max_iter: SAGA iterations.
        genes: Genes with a classifier.
        mean: Feature means.
        scale: Feature standard deviations.
        coef: ``(g, d)`` coefficients (zero rows for genes with one class only).
        intercept: ``(g,)`` intercepts.
    """

    c: float = 0.1
    l1_ratio: float = 0.5
    max_iter: int = 200
    genes: list[str] = field(default_factory=list)
    mean: np.ndarray | None = None
    scale: np.ndarray | None = None
    coef: np.ndarray | None = None
    intercept: np.ndarray | None = None

    def fit(self, x: np.ndarray, labels: np.ndarray, genes: list[str]) -> HighLowClassifier:
        """Fit one classifier per gene on ``(n, d)`` features and ``(n, g)`` boolean labels."""
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression

        x = np.asarray(x, np.float64)
        labels = np.asarray(labels, bool)
        if labels.shape != (len(x), len(genes)):
            raise ConfigError(
                f"labels {labels.shape} do not match {len(x)} spots x {len(genes)} genes"
            )
        self.genes = list(genes)
        self.mean = x.mean(axis=0)
        sd = x.std(axis=0)
        self.scale = np.where(sd > 1e-8, sd, 1.0)
        z = (x - self.mean) / self.scale
        coef = np.zeros((len(genes), x.shape[1]))
        icpt = np.zeros(len(genes))
        for j in range(len(genes)):
            y = labels[:, j]
            frac = y.mean()
            if frac in (0.0, 1.0):
                icpt[j] = 10.0 if frac == 1.0 else -10.0
                continue
            clf = LogisticRegression(
                solver="saga",
                l1_ratio=self.l1_ratio,
                C=self.c,
                max_iter=self.max_iter,
                random_state=0,
                penalty="elasticnet",
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                warnings.simplefilter("ignore", FutureWarning)
                clf.fit(z, y)
            coef[j] = clf.coef_[0]
            icpt[j] = clf.intercept_[0]
        self.coef, self.intercept = coef, icpt
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """``(n, g)`` probability that each gene is high."""
        if self.coef is None or self.mean is None or self.scale is None or self.intercept is None:
            raise ConfigError("the classifier is not fitted")
        z = (np.asarray(x, np.float64) - self.mean) / self.scale
        logits = z @ self.coef.T + self.intercept
        return 1.0 / (1.0 + np.exp(-np.clip(logits, -50, 50)))
