"""Negative-binomial regression with a hidden layer shared by all genes.

The same likelihood as :class:`~stimage.models._nb.NBGLM` (raw counts, library-size offset,
a dispersion per gene), with the linear predictor replaced by one hidden layer that all genes
share::

    h_n = GELU(x_n W1 + b1)                              (hidden units, shared)
    log mu_ng = log(s_n / 1e4) + b_g + h_n . w_g

Genes that move together (a cell type's programme) then share features learnt from all of
them. Fitted by AdamW, full batch; the number of steps is chosen on a held-out section (or a
random 15% of spots without sections) and the model is then refitted on all spots for that
many steps. Members of an ensemble differ by bootstrap resampling and by initialisation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from stimage.errors import ConfigError
from stimage.models._nb import _check, nb_nll

__all__ = ["NBMLP", "NBMLPConfig"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class NBMLPConfig:
    """Settings of :class:`NBMLP`.

    Attributes:
        hidden: Hidden units shared by all genes.
        weight_decay: AdamW weight decay.
        dropout: Dropout on the hidden layer while training.
        lr: Learning rate.
        max_steps: Most full-batch steps.
        seed: Seed of the initialisation (and of the validation split without sections).
    """

    hidden: int = 256
    weight_decay: float = 1e-2
    dropout: float = 0.1
    lr: float = 3e-3
    max_steps: int = 400
    seed: int = 0

    def __post_init__(self) -> None:
        if self.hidden < 1:
            raise ConfigError(f"hidden must be at least 1, got {self.hidden}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.max_steps < 1 or self.lr <= 0 or self.weight_decay < 0:
            raise ConfigError("max_steps, lr and weight_decay must be positive")


@dataclass
class NBMLP:
    """An NB model with one hidden layer shared by all genes.

    Attributes:
        config: Settings.
        scale: ``(d,)`` input scale (features are divided by it).
        w1: ``(d, h)`` hidden weights.
        b1: ``(h,)`` hidden biases.
        weight: ``(h, g)`` output weights.
        bias: ``(g,)`` output biases (log rate per 10k).
        log_theta: ``(g,)`` log dispersions.
        steps: Training steps chosen on held-out spots.
    """

    config: NBMLPConfig = field(default_factory=NBMLPConfig)
    scale: np.ndarray | None = None
    w1: np.ndarray | None = None
    b1: np.ndarray | None = None
    weight: np.ndarray | None = None
    bias: np.ndarray | None = None
    log_theta: np.ndarray | None = None
    steps: int = 0

    def fit(
        self,
        x: np.ndarray,
        counts: np.ndarray,
        library_size: np.ndarray,
        groups: np.ndarray | None = None,
        sample_weight: np.ndarray | None = None,
        steps: int | None = None,
    ) -> NBMLP:
        """Fit to features and raw counts.

        Args:
            x: ``(n, d)`` features.
            counts: ``(n, g)`` raw counts.
            library_size: ``(n,)`` total UMIs per spot.
            groups: Section of each spot (one section is held out to choose the steps).
            sample_weight: ``(n,)`` weights (bootstrap multiplicities).
            steps: Steps to train (no validation) when given.
        """
        x, y, log_s = _check(x, counts, library_size)
        sd = x.std(axis=0)
        self.scale = np.where(sd > 1e-8, sd, 1.0) * np.sqrt(x.shape[1])
        xs = x / self.scale
        sw = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, np.float64)
        if steps is None:
            val = _validation_mask(groups, len(y), self.config.seed)
            _, curve = _train(
                xs[~val], y[~val], log_s[~val], sw[~val], self.config, (xs[val], y[val], log_s[val])
            )
            steps = int(np.argmin(curve)) + 1
            logger.debug("NB MLP: %d steps (held-out NLL %.4f)", steps, float(np.min(curve)))
        params, _ = _train(xs, y, log_s, sw, self.config, None, steps)
        self.w1, self.b1, self.weight, self.bias, self.log_theta = params
        self.steps = steps
        return self

    def log_rate(self, x: np.ndarray) -> np.ndarray:
        """``(n, g)`` log of the predicted rate per 10k UMIs."""
        self._fitted()
        assert self.scale is not None and self.w1 is not None and self.weight is not None
        h = _gelu(np.asarray(x, np.float64) / self.scale @ self.w1 + self.b1)
        out: np.ndarray = h @ self.weight + self.bias
        return out

    def theta(self, x: np.ndarray) -> np.ndarray:
        """``(n, g)`` dispersion per spot and gene."""
        self._fitted()
        assert self.log_theta is not None
        return np.exp(np.clip(self.log_theta, -10, 15))[None, :] * np.ones((len(x), 1))

    def state(self) -> dict[str, np.ndarray]:
        """Arrays for saving."""
        self._fitted()
        return {
            "scale": np.asarray(self.scale, np.float32),
            "w1": np.asarray(self.w1, np.float32),
            "b1": np.asarray(self.b1, np.float32),
            "weight": np.asarray(self.weight, np.float32),
            "bias": np.asarray(self.bias, np.float32),
            "log_theta": np.asarray(self.log_theta, np.float32),
        }

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray], config: NBMLPConfig) -> NBMLP:
        """Rebuild from :meth:`state`."""
        f = {k: np.asarray(v, np.float64) for k, v in state.items()}
        return cls(config, f["scale"], f["w1"], f["b1"], f["weight"], f["bias"], f["log_theta"])

    def _fitted(self) -> None:
        if self.w1 is None:
            raise ConfigError("the NB MLP is not fitted")


def _gelu(a: np.ndarray) -> np.ndarray:
    from scipy.special import erf

    return 0.5 * a * (1.0 + erf(a / np.sqrt(2.0)))


def _validation_mask(groups: np.ndarray | None, n: int, seed: int) -> np.ndarray:
    if groups is not None and len(np.unique(groups)) >= 2:
        sections, sizes = np.unique(groups, return_counts=True)
        # The smallest section, so that most spots stay for training.
        return np.asarray(groups) == sections[int(np.argmin(sizes))]
    rng = np.random.default_rng(seed)
    return rng.random(n) < 0.15


def _train(
    x: np.ndarray,
    y: np.ndarray,
    log_s: np.ndarray,
    sw: np.ndarray,
    config: NBMLPConfig,
    val: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
    steps: int | None = None,
) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    import torch

    gen = torch.Generator().manual_seed(config.seed)
    d, g = x.shape[1], y.shape[1]
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    off = torch.as_tensor(log_s)[:, None]
    w = torch.as_tensor(sw / sw.mean())[:, None]
    rate = (y / np.exp(log_s)[:, None]).mean(axis=0) + 1e-3
    w1 = torch.nn.Parameter(
        torch.randn(d, config.hidden, generator=gen, dtype=torch.float64) * np.sqrt(2.0)
    )
    b1 = torch.nn.Parameter(torch.zeros(config.hidden, dtype=torch.float64))
    w2 = torch.nn.Parameter(torch.zeros(config.hidden, g, dtype=torch.float64))
    b2 = torch.nn.Parameter(torch.as_tensor(np.log(rate)))
    lt = torch.nn.Parameter(torch.zeros(g, dtype=torch.float64))
    opt = torch.optim.AdamW(
        [
            {"params": [w1, w2], "weight_decay": config.weight_decay},
            {"params": [b1, b2, lt], "weight_decay": 0.0},
        ],
        lr=config.lr,
    )
    drop = torch.nn.Dropout(config.dropout)
    n_steps = steps if steps is not None else config.max_steps
    curve = np.zeros(n_steps)
    if val is not None:
        xv, yv, ov = (
            torch.as_tensor(val[0]),
            torch.as_tensor(val[1]),
            torch.as_tensor(val[2])[:, None],
        )
    for step in range(n_steps):
        opt.zero_grad()
        h = drop(torch.nn.functional.gelu(xt @ w1 + b1))
        nll = nb_nll(yt, h @ w2 + b2 + off, lt.clamp(-10, 15).expand(len(yt), g), constant=False)
        loss = (nll * w).mean()
        loss.backward()
        opt.step()
        if val is not None:
            with torch.no_grad():
                hv = torch.nn.functional.gelu(xv @ w1 + b1)
                curve[step] = float(
                    nb_nll(yv, hv @ w2 + b2 + ov, lt.clamp(-10, 15).expand(len(yv), g)).mean()
                )
    out = tuple(p.detach().numpy().copy() for p in (w1, b1, w2, b2, lt))
    if not all(np.isfinite(v).all() for v in out):
        raise ConfigError("the NB MLP fit diverged; lower the learning rate")
    return out, curve
