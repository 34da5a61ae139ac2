"""``stimage-paper``: the published STImage recipe, for comparison.

As the published code does it: encoder features (frozen, unnormalised) go into one Dense(2)
layer per gene giving ``r = softplus(.)`` and ``p = sigmoid(.)`` of a negative binomial,
fitted to **log1p(counts)** (not counts: the flaw we keep here on purpose, to measure it),
with Adam (lr 1e-4), batches of 32, up to 100 epochs and early stopping on the loss of a
random 10% of training spots. The prediction is the NB mean ``r (1 - p) / p`` on the log1p
scale. No library-size normalisation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from stimage.errors import ConfigError, InvalidSampleError

__all__ = ["PaperConfig", "PaperNB"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PaperConfig:
    """Settings of the published recipe (its defaults)."""

    lr: float = 1e-4
    batch_size: int = 32
    max_epochs: int = 100
    patience: int = 10
    val_fraction: float = 0.1
    seed: int = 0


@dataclass
class PaperNB:
    """Per-gene Dense(2) negative binomial on log1p(counts), as the published code."""

    config: PaperConfig = field(default_factory=PaperConfig)
    weight: np.ndarray | None = None  # (d, g, 2)
    bias: np.ndarray | None = None  # (g, 2)
    epochs_run: int = 0

    def fit(self, x: np.ndarray, counts: np.ndarray) -> PaperNB:
        """Fit to raw features and raw counts (log1p is applied here, as the paper's code does)."""
        import torch

        x = np.asarray(x, np.float32)
        y = np.log1p(np.asarray(counts, np.float32))
        if not np.isfinite(x).all() or not np.isfinite(y).all():
            raise InvalidSampleError("features or counts contain NaN or infinite values")
        c = self.config
        rng = np.random.default_rng(c.seed)
        torch.manual_seed(c.seed)
        n, d = x.shape
        g = y.shape[1]
        if n < 10:
            raise ConfigError(f"too few spots ({n}) to train")
        perm = rng.permutation(n)
        n_val = max(1, round(c.val_fraction * n))
        val, tr = perm[:n_val], perm[n_val:]
        xt, yt = torch.as_tensor(x), torch.as_tensor(y)
        w = torch.nn.Parameter(torch.randn(d, g, 2) * (1.0 / np.sqrt(d)))
        b = torch.nn.Parameter(torch.zeros(g, 2))
        opt = torch.optim.Adam([w, b], lr=c.lr)

        def loss_of(idx: torch.Tensor) -> torch.Tensor:
            out = torch.einsum("nd,dgk->ngk", xt[idx], w) + b
            r = torch.nn.functional.softplus(out[..., 0]) + 1e-6
            logit_p = out[..., 1]
            yy = yt[idx]
            # log P(y) = lgamma(y+r) - lgamma(r) - lgamma(y+1) + r log p + y log(1-p)
            ll = (
                torch.lgamma(yy + r)
                - torch.lgamma(r)
                - torch.lgamma(yy + 1)
                + r * torch.nn.functional.logsigmoid(logit_p)
                + yy * torch.nn.functional.logsigmoid(-logit_p)
            )
            return -ll.sum(dim=1).mean()

        best, best_state, bad = np.inf, None, 0
        val_t = torch.as_tensor(val)
        for epoch in range(c.max_epochs):
            order = torch.as_tensor(rng.permutation(tr))
            for i in range(0, len(order), c.batch_size):
                opt.zero_grad()
                loss = loss_of(order[i : i + c.batch_size])
                loss.backward()
                opt.step()
            with torch.no_grad():
                v = float(loss_of(val_t))
            self.epochs_run = epoch + 1
            if v < best - 1e-6:
                best, bad = v, 0
                best_state = (w.detach().clone(), b.detach().clone())
            else:
                bad += 1
                if bad >= c.patience:
                    break
        assert best_state is not None
        self.weight, self.bias = best_state[0].numpy(), best_state[1].numpy()
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The NB mean ``r (1 - p) / p``, on the log1p(counts) scale the model was fitted to."""
        if self.weight is None or self.bias is None:
            raise ConfigError("the paper model is not fitted")
        out = np.einsum("nd,dgk->ngk", np.asarray(x, np.float32), self.weight) + self.bias
        r = np.logaddexp(0.0, out[..., 0]) + 1e-6
        p = 1.0 / (1.0 + np.exp(-out[..., 1]))
        return r * (1.0 - p) / np.clip(p, 1e-6, None)
