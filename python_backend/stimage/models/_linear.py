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

__all__ = ["NOVELTY_COMPONENTS", "FeaturePipeline", "PCARidge"]

#: Leading projected features the novelty of a tile is measured on.
NOVELTY_COMPONENTS = 32


#: Elements of the standardised features above which the PCA is a randomised SVD.
_EXACT_SVD_SIZE = 8_000_000


@dataclass
class FeaturePipeline:
    """Standardise, then project on the top principal components.

    Attributes:
        n_components: Components kept (None: no PCA, only standardisation).
        mean: Feature means.
        scale: Feature standard deviations.
        components: ``(k, d)`` principal axes.
        explained_variance_ratio: Variance explained per component.
        novelty_var: Training variance of the leading projected features (the scale of
            :meth:`novelty`); None for pipelines saved before novelty existed.
        novelty_scale: The training tiles' 99th percentile of the raw novelty.
    """

    n_components: int | None = 256
    mean: np.ndarray | None = None
    scale: np.ndarray | None = None
    components: np.ndarray | None = None
    explained_variance_ratio: np.ndarray | None = None
    novelty_var: np.ndarray | None = None
    novelty_scale: float = float("nan")

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
            if z.size > _EXACT_SVD_SIZE and k < min(z.shape) // 2:
                # Large: randomised SVD of the leading components (bounded memory and time).
                from sklearn.utils.extmath import randomized_svd

                _, s, vt = randomized_svd(z, k, n_iter=4, random_state=0)
                total = float((z * z).sum())
            else:
                _, s, vt = np.linalg.svd(z, full_matrices=False)
                total = float((s**2).sum())
            self.components = vt[:k]
            var = s**2
            self.explained_variance_ratio = var[:k] / total
        zt = self.transform(x)[:, :NOVELTY_COMPONENTS]
        self.novelty_var = np.maximum(zt.var(axis=0), 1e-12)
        raw = ((zt**2) / self.novelty_var).mean(axis=1)
        self.novelty_scale = float(np.quantile(raw, 0.99)) or 1.0
        return self

    def novelty(self, z: np.ndarray) -> np.ndarray:
        """How far projected features lie from the training tiles, ``(n,)``.

        The mean squared whitened distance over the leading components (a Mahalanobis
        distance under the training's own spread), divided by its 99th percentile over the
        training tiles: about 1 or less in the training distribution, far above for a tile
        unlike any the model saw (glass, a pen mark, another stain or scale). NaN for a
        pipeline saved without the statistics.
        """
        z = np.asarray(z, np.float64)
        if self.novelty_var is None:
            return np.full(len(z), np.nan)
        k = len(self.novelty_var)
        raw = ((z[:, :k] ** 2) / self.novelty_var).mean(axis=1)
        return raw / self.novelty_scale

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
        arrays = {k: np.asarray(v, np.float32) for k, v in out.items() if v is not None}
        if self.components is not None:
            # The largest array of a bundle (PCA 256 x 5,328 for the default model) in half the
            # space: int16 per row, with the row's scale (relative error under 2e-5 of the
            # row's largest entry; float16 would keep 3 digits only).
            comp = np.asarray(self.components, np.float64)
            scale = np.abs(comp).max(axis=1) / 32767.0
            scale[scale == 0] = 1.0
            arrays["components_q"] = np.rint(comp / scale[:, None]).astype(np.int16)
            arrays["components_scale"] = scale.astype(np.float64)
        if self.novelty_var is not None:
            arrays["novelty_var"] = np.asarray(self.novelty_var, np.float64)
            arrays["novelty_scale"] = np.asarray([self.novelty_scale], np.float64)
        return arrays

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> FeaturePipeline:
        """Rebuild from :meth:`state` (components as int16 with row scales, or as floats)."""
        comp = state.get("components")
        if "components_q" in state:
            comp = (
                state["components_q"] * np.asarray(state["components_scale"], np.float64)[:, None]
            )
        nv = state.get("novelty_var")
        ns = state.get("novelty_scale")
        return cls(
            n_components=None if comp is None else int(comp.shape[0]),
            mean=np.asarray(state["mean"], np.float64),
            scale=np.asarray(state["scale"], np.float64),
            components=None if comp is None else np.asarray(comp, np.float64),
            novelty_var=None if nv is None else np.asarray(nv, np.float64),
            novelty_scale=float("nan") if ns is None else float(np.asarray(ns).ravel()[0]),
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
