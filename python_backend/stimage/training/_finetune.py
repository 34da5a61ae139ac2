"""Fine-tuning an encoder end to end with the negative-binomial head and augmentation.

The encoder and a linear NB head (log rate per 10k UMIs and a per-gene dispersion) are
trained together on raw counts with the library-size offset, tiles augmented afresh every
epoch (flips, 90° rotations, colour jitter, blur; reproducible from the seed). The encoder
gets a tenth of the head's learning rate; one training section is held out for early
stopping on the NB likelihood (never a random split of spots, which leaks neighbours). The
result is a model bundle like any other, whose component carries the fine-tuned encoder
weights in its safetensors file.

This is the slow, GPU-friendly mode; the frozen mode (cached features) is the default.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from stimage.errors import ConfigError, StimageError
from stimage.models import SCALE, nb_nll

if TYPE_CHECKING:
    import torch

    from stimage.encoders import Encoder
    from stimage.models import ModelBundle
    from stimage.tiles import TileStore
    from stimage.training._data import SpotSet
    from stimage.training._train import TrainConfig

__all__ = ["FinetuneConfig", "finetune_model"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FinetuneConfig:
    """Settings of end-to-end fine-tuning.

    Attributes:
        epochs: Maximum epochs.
        batch_size: Tiles per step.
        lr: Learning rate of the head (the encoder gets ``lr * encoder_lr_factor``).
        encoder_lr_factor: Ratio of the encoder's learning rate to the head's.
        weight_decay: AdamW weight decay.
        patience: Epochs without improvement of the held-out NLL before stopping.
        validation_sample: Section held out for early stopping (default: the last one).
        seed: Seed of initialisation, shuffling and augmentation.
        augment: Augmentation settings (keyword arguments of :class:`~stimage.tiles.Augmenter`).
    """

    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    encoder_lr_factor: float = 0.1
    weight_decay: float = 1e-4
    patience: int = 3
    validation_sample: str | None = None
    seed: int = 0
    augment: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ConfigError("epochs, batch size and learning rate must be positive")


def finetune_model(
    store: TileStore,
    config: TrainConfig,
    finetune: FinetuneConfig | None = None,
    sample_ids: list[str] | None = None,
    *,
    progress: Callable[[str, int, int], None] | None = None,
    cancel: threading.Event | None = None,
) -> ModelBundle:
    """Fine-tune ``config.encoders[0]`` with a linear NB head on a tile store's samples.

    The encoder learns from each tile alone: the config's spatial context does not apply
    (the bundle records none).

    Raises:
        ConfigError: Fewer than two samples (one is needed for early stopping), or several
            encoders (fine-tuning trains one).
    """
    import torch

    from stimage.encoders import create_encoder
    from stimage.training._data import SpotSet
    from stimage.training._train import choose_genes

    ft = finetune or FinetuneConfig()
    ids, val_id, train_ids = _split_samples(store, config, ft, sample_ids)
    torch.manual_seed(ft.seed)
    enc = create_encoder(
        config.encoders[0], config.encoder_weights.get(config.encoders[0]), device=config.device
    )
    adatas = {s: store.spots(s) for s in ids}
    spots = SpotSet(adatas, {}, {s: store.patient_of(s) for s in ids})
    genes, sets = choose_genes(spots, train_ids, config)
    data = _TileCounts.load(store, spots, ids, genes)
    run = _Run(enc, data, train_ids, len(genes), ft)
    best = run.fit([(val_id, i) for i in range(len(data.index[val_id]))], progress, cancel)
    training = {
        "samples": train_ids,
        "validation_sample": val_id,
        "mode": "finetune",
        "patients": {s: spots.patients[s] for s in ids},
        "gene_sets": sets,
        "epochs_run": best.epochs_run,
        "best_validation_nll": best.nll,
        "n_spots": int(sum(len(data.index[s]) for s in train_ids)),
    }
    return _finetuned_bundle(store, config, enc, genes, best, ids, training)


def _split_samples(
    store: TileStore, config: TrainConfig, ft: FinetuneConfig, sample_ids: list[str] | None
) -> tuple[list[str], str, list[str]]:
    """``(all samples, the validation sample, the training samples)``, checked."""
    if len(config.encoders) != 1:
        raise ConfigError("fine-tuning trains one encoder; give a single --encoder")
    ids = sample_ids or store.sample_ids
    if len(ids) < 2:
        raise ConfigError(
            "fine-tuning holds one section out for early stopping; it needs at least 2 sections"
        )
    val_id = ft.validation_sample or ids[-1]
    if val_id not in ids:
        raise ConfigError(f"validation sample {val_id!r} is not among {ids}")
    return ids, val_id, [s for s in ids if s != val_id]


@dataclass
class _TileCounts:
    """Per sample: its tiles (lazy), each spot's tile index, counts of the genes, library sizes."""

    tiles: dict[str, Any]
    index: dict[str, np.ndarray]
    counts: dict[str, np.ndarray]
    libs: dict[str, np.ndarray]

    @classmethod
    def load(
        cls, store: TileStore, spots: SpotSet, ids: list[str], genes: list[str]
    ) -> _TileCounts:
        """The spots' tiles, tile indices, counts of ``genes`` and library sizes, by sample."""
        return cls(
            tiles={s: store.tiles(s) for s in ids},
            index={s: spots.adatas[s].obs["tile_index"].to_numpy() for s in ids},
            counts={s: spots.counts([s], genes) for s in ids},
            libs={s: spots.library_size([s]) for s in ids},
        )

    def mean_rate(self, sample_ids: list[str]) -> np.ndarray:
        """Mean counts per :data:`SCALE` UMIs of each gene over the samples' spots (plus 1e-3)."""
        per_spot = [self.counts[s] / self.libs[s][:, None] * SCALE for s in sample_ids]
        return np.concatenate(per_spot).mean(axis=0) + 1e-3


@dataclass
class _Best:
    """The best state seen: held-out NLL, encoder weights and the head as numpy arrays."""

    nll: float
    encoder_state: dict[str, torch.Tensor]
    weight: np.ndarray
    bias: np.ndarray
    log_theta: np.ndarray
    epochs_run: int = 0


class _Run:
    """One fine-tuning run: the encoder, a linear NB head started at the mean rates, AdamW."""

    def __init__(
        self,
        enc: Encoder,
        data: _TileCounts,
        train_ids: list[str],
        n_genes: int,
        ft: FinetuneConfig,
    ) -> None:
        import torch

        from stimage.tiles import Augmenter

        self.enc, self.data, self.ft = enc, data, ft
        self.model = enc.model
        self.model.train()
        self.head = torch.nn.Linear(enc.feature_dim, n_genes).to(enc.device)
        with torch.no_grad():
            self.head.weight.zero_()
            self.head.bias.copy_(
                torch.as_tensor(np.log(data.mean_rate(train_ids)), dtype=torch.float32)
            )
        self.log_theta = torch.nn.Parameter(torch.zeros(n_genes, device=enc.device))
        self.opt = torch.optim.AdamW(
            [
                {"params": self.model.parameters(), "lr": ft.lr * ft.encoder_lr_factor},
                {"params": [*self.head.parameters(), self.log_theta], "lr": ft.lr},
            ],
            weight_decay=ft.weight_decay,
        )
        self.aug = Augmenter(seed=ft.seed, **ft.augment)
        self.rng = np.random.default_rng(ft.seed)
        self.items = [(s, i) for s in train_ids for i in range(len(data.index[s]))]
        self.step = 0

    def loss(self, items: list[tuple[str, int]], epoch: int | None) -> torch.Tensor:
        """Mean NB NLL of some spots' counts; tiles augmented for ``epoch`` (None: as they are)."""
        import torch

        d, dev = self.data, self.enc.device
        imgs = []
        for s, i in items:
            t = np.asarray(d.tiles[s][int(d.index[s][i])])
            imgs.append(
                self.aug(t, index=hash((s, i)) % (2**31), epoch=epoch) if epoch is not None else t
            )
        eta = self.head(self.enc.forward_features(self.enc.preprocess(np.stack(imgs))).float())
        libs = np.asarray([d.libs[s][i] for s, i in items])
        off = torch.log(torch.as_tensor(libs / SCALE, dtype=torch.float32, device=dev))[:, None]
        y = torch.as_tensor(
            np.stack([d.counts[s][i] for s, i in items]), dtype=torch.float32, device=dev
        )
        return nb_nll(y, eta + off, self.log_theta.clamp(-10, 15).expand_as(eta)).mean()

    def fit(
        self,
        val_items: list[tuple[str, int]],
        progress: Callable[[str, int, int], None] | None,
        cancel: threading.Event | None,
    ) -> _Best:
        """Train until ``patience`` epochs bring no better held-out NLL; load the best state."""
        ft = self.ft
        best: _Best | None = None
        bad = 0
        total_steps = ft.epochs * ((len(self.items) + ft.batch_size - 1) // ft.batch_size)
        for epoch in range(ft.epochs):
            self._train_epoch(epoch, total_steps, progress, cancel)
            v = self._validation_nll(val_items)
            logger.info("fine-tune epoch %d: held-out NLL %.4f", epoch + 1, v)
            if v < (np.inf if best is None else best.nll) - 1e-5:
                best, bad = self._snapshot(v), 0
            else:
                bad += 1
                if bad >= ft.patience:
                    break
        if best is None:
            raise StimageError(
                "fine-tuning found no finite held-out NLL; check the counts of the validation "
                "sample, or lower the learning rate"
            )
        best.epochs_run = epoch + 1
        self.model.load_state_dict(best.encoder_state)
        self.model.eval()
        return best

    def _train_epoch(
        self,
        epoch: int,
        total_steps: int,
        progress: Callable[[str, int, int], None] | None,
        cancel: threading.Event | None,
    ) -> None:
        """One pass over the training spots in a fresh random order, tiles augmented."""
        bs = self.ft.batch_size
        self.model.train()
        order = self.rng.permutation(len(self.items))
        for b0 in range(0, len(order), bs):
            if cancel is not None and cancel.is_set():
                raise StimageError("fine-tuning cancelled")
            self.opt.zero_grad()
            loss = self.loss([self.items[j] for j in order[b0 : b0 + bs]], epoch)
            loss.backward()
            self.opt.step()
            self.step += 1
            if progress:
                progress("fine-tune", self.step, total_steps)

    def _validation_nll(self, val_items: list[tuple[str, int]]) -> float:
        """Mean over batches of the held-out spots' NB NLL, tiles as they are."""
        import torch

        bs = self.ft.batch_size
        self.model.eval()
        with torch.no_grad():
            return float(
                np.mean(
                    [
                        float(self.loss(val_items[i : i + bs], None))
                        for i in range(0, len(val_items), bs)
                    ]
                )
            )

    def _snapshot(self, nll: float) -> _Best:
        """The current encoder and head, copied off the device."""
        return _Best(
            nll=nll,
            encoder_state={k: t.detach().cpu().clone() for k, t in self.model.state_dict().items()},
            weight=self.head.weight.detach().cpu().numpy().T.copy(),
            bias=self.head.bias.detach().cpu().numpy().copy(),
            log_theta=self.log_theta.detach().cpu().numpy().copy(),
        )


def _finetuned_bundle(
    store: TileStore,
    config: TrainConfig,
    enc: Encoder,
    genes: list[str],
    best: _Best,
    ids: list[str],
    training: dict[str, Any],
) -> ModelBundle:
    """A bundle whose one component is the fine-tuned encoder with its head as a one-member NB GLM."""
    from stimage.models import (
        NBGLM,
        Component,
        FeaturePipeline,
        ModelBundle,
        NBEnsemble,
        NBEnsembleConfig,
        NBGLMConfig,
    )
    from stimage.tiles import load_stain_target
    from stimage.training._train import store_tile_settings

    d = enc.feature_dim
    d_pipe = FeaturePipeline(None, mean=np.zeros(d), scale=np.ones(d))
    member = NBGLM(
        NBGLMConfig(l2=0.0),
        weight=best.weight.astype(np.float64),
        bias=best.bias.astype(np.float64),
        log_theta=best.log_theta.astype(np.float64),
        l2_chosen=0.0,
    )
    ens = NBEnsemble(
        NBEnsembleConfig(members=1, pca_dim=None, bootstrap=False), list(genes), d_pipe, [member]
    )
    spec = {**enc.spec.to_dict(), "finetuned": True, "weights_sha256": None, "weights_file": None}
    st = store.manifest["settings"]
    target = (
        load_stain_target(st["stain_target"], st["stain"]).to_dict() if st.get("stain") else None
    )
    return ModelBundle(
        name=config.name,
        genes=list(genes),
        tiles=store_tile_settings(store, ids),
        stain_target=target,
        components=[Component(spec, ens)],
        classifier=None,
        training=training,
        description=config.description,
        encoder_states={0: best.encoder_state},
    )
