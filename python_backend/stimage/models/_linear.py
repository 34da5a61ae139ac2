"""Feature preprocessing and the PCA + ridge baseline, stored as plain arrays.

:class:`FeaturePipeline` standardises encoder features and projects them on their first
principal components (fitted on training data only); its state is a handful of arrays that
go into a model bundle's safetensors file. :class:`PCARidge` is HEST-Benchmark's head
(standardise, PCA to 256, ridge regression without intercept, alpha = 100 / (256 * genes),
on log-normalised expression): a strong simple baseline on small data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stimage.errors import ConfigError, InvalidSampleError

__all__ = ["FeaturePipeline", "PCARidge"]


@dataclass
class FeaturePipeline:
    """Standardise, then project on the top principal components.

    Attributes:
        n_components: Components kept (None: no PCA, only standardisation).
        mean: Feature means.
        scale: Feature standard deviations.
        components: ``(k, d)`` principal axes.
        explained_variance_ratio: Variance explained per component.
    """

    n_components: int | None = 256
    mean: np.ndarray | None = None
    scale: np.ndarray | None = None
    components: np.ndarray | None = None
    explained_variance_ratio: np.ndarray | None = None

    def fit(self, x: np.ndarray) -> FeaturePipeline:
        """Fit on ``(n, d)`` training features."""
        x = _finite(x)
        self.mean = x.mean(axis=0)
        sd = x.std(axis=0)
        self.scale = np.where(sd > 1e-8, sd, 1.0)
        z = (x - self.mean) / self.scale
        if self.n_components is not None:
            k = min(self.n_components, z.shape[0] - 1, z.shape[1])
            if k < 1:
                raise ConfigError(f"too few spots ({z.shape[0]}) for PCA")
            _, s, vt = np.linalg.svd(z, full_matrices=False)
            self.components = vt[:k]
            var = s**2
            self.explained_variance_ratio = var[:k] / var.sum()
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Project ``(n, d)`` features."""
        if self.mean is None or self.scale is None:
            raise ConfigError("the feature pipeline is not fitted")
        x = _finite(x)
        if x.shape[1] != len(self.mean):
            raise ConfigError(
                f"features have {x.shape[1]} columns, the model expects {len(self.mean)}"
            )
        z = (x - self.mean) / self.scale
        return z @ self.components.T if self.components is not None else z

    def fit_transform(self, x: np.ndarray) -> np.ndarray:
        """Fit and project."""
        return self.fit(x).transform(x)

    def state(self) -> dict[str, np.ndarray]:
        """Arrays to save."""
        out = {"mean": self.mean, "scale": self.scale}
        if self.components is not None:
            out["components"] = self.components
        return {k: np.asarray(v, np.float32) for k, v in out.items() if v is not None}

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> FeaturePipeline:
        """Rebuild from :meth:`state`."""
        comp = state.get("components")
        return cls(
            n_components=None if comp is None else int(comp.shape[0]),
            mean=np.asarray(state["mean"], np.float64),
            scale=np.asarray(state["scale"], np.float64),
            components=None if comp is None else np.asarray(comp, np.float64),
        )


def _finite(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    if x.ndim != 2:
        raise ConfigError(f"features must be (n, d), got {x.shape}")
    if not np.isfinite(x).all():
        raise InvalidSampleError("features contain NaN or infinite values; re-extract them")
    return x


@dataclass
class PCARidge:
    """HEST-Benchmark's regression head: standardise, PCA(256), ridge without intercept.

    alpha = 100 / (n_components * n_genes), as in HEST-Benchmark (``train_test_reg``), unless
    ``alpha`` is given. Targets are log-normalised expression.
    """

    n_components: int = 256
    alpha: float | None = None
    pipeline: FeaturePipeline | None = None
    coef: np.ndarray | None = None

    def fit(self, x: np.ndarray, y: np.ndarray) -> PCARidge:
        """Fit on features and ``(n, g)`` log-normalised expression."""
        from sklearn.linear_model import Ridge

        self.pipeline = FeaturePipeline(self.n_components).fit(x)
        z = self.pipeline.transform(x)
        alpha = self.alpha if self.alpha is not None else 100.0 / (z.shape[1] * y.shape[1])
        reg = Ridge(alpha=alpha, solver="lsqr", fit_intercept=False, max_iter=1000, random_state=0)
        reg.fit(z, y)
        self.coef = np.asarray(reg.coef_).T
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predicted log-normalised expression."""
        if self.pipeline is None or self.coef is None:
            raise ConfigError("the ridge model is not fitted")
        return self.pipeline.transform(x) @ self.coef
