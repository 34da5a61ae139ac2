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
from stimage.models._nb import SCALE, nb_nll

if TYPE_CHECKING:
    from stimage.models import ModelBundle
    from stimage.tiles import TileStore
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

    Raises:
        ConfigError: Fewer than two samples (one is needed for early stopping), or several
            encoders (fine-tuning trains one).
    """
    import torch

    from stimage.encoders import create_encoder
    from stimage.models._bundle import Component, ModelBundle
    from stimage.models._ensemble import NBEnsemble, NBEnsembleConfig
    from stimage.models._linear import FeaturePipeline
    from stimage.models._nb import NBGLM, NBGLMConfig
    from stimage.tiles import Augmenter, load_stain_target
    from stimage.training._data import SpotSet
    from stimage.training._train import choose_genes, store_tile_settings

    ft = finetune or FinetuneConfig()
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
    train_ids = [s for s in ids if s != val_id]
    torch.manual_seed(ft.seed)
    enc = create_encoder(
        config.encoders[0], config.encoder_weights.get(config.encoders[0]), device=config.device
    )
    adatas = {s: store.spots(s) for s in ids}
    spots = SpotSet(adatas, {}, {s: store.patient_of(s) for s in ids})
    genes, sets = choose_genes(spots, train_ids, config)
    tiles = {s: store.tiles(s) for s in ids}
    index = {s: adatas[s].obs["tile_index"].to_numpy() for s in ids}
    counts = {s: spots.counts([s], genes) for s in ids}
    libs = {s: spots.library_size([s]) for s in ids}
    model = enc.model
    model.train()
    d = enc.feature_dim
    g = len(genes)
    rate = (
        np.concatenate([counts[s] / libs[s][:, None] * SCALE for s in train_ids]).mean(axis=0)
        + 1e-3
    )
    head = torch.nn.Linear(d, g).to(enc.device)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(torch.as_tensor(np.log(rate), dtype=torch.float32))
    log_theta = torch.nn.Parameter(torch.zeros(g, device=enc.device))
    opt = torch.optim.AdamW(
        [
            {"params": model.parameters(), "lr": ft.lr * ft.encoder_lr_factor},
            {"params": [*head.parameters(), log_theta], "lr": ft.lr},
        ],
        weight_decay=ft.weight_decay,
    )
    aug = Augmenter(seed=ft.seed, **ft.augment)
    rng = np.random.default_rng(ft.seed)
    items = [(s, i) for s in train_ids for i in range(len(index[s]))]

    def batch_loss(sample_items: list[tuple[str, int]], epoch: int | None) -> torch.Tensor:
        imgs, ys, ls = [], [], []
        for k, (s, i) in enumerate(sample_items):
            t = np.asarray(tiles[s][int(index[s][i])])
            imgs.append(
                aug(t, index=hash((s, i)) % (2**31), epoch=epoch) if epoch is not None else t
            )
            ys.append(counts[s][i])
            ls.append(libs[s][i])
            del k
        x = enc.preprocess(np.stack(imgs))
        feats = enc.forward_features(x).float()
        eta = head(feats)
        off = torch.log(
            torch.as_tensor(np.asarray(ls) / SCALE, dtype=torch.float32, device=enc.device)
        )[:, None]
        y = torch.as_tensor(np.stack(ys), dtype=torch.float32, device=enc.device)
        return nb_nll(y, eta + off, log_theta.clamp(-10, 15).expand_as(eta)).mean()

    val_items = [(val_id, i) for i in range(len(index[val_id]))]
    best, best_state, bad = np.inf, None, 0
    total_steps = ft.epochs * ((len(items) + ft.batch_size - 1) // ft.batch_size)
    step = 0
    for epoch in range(ft.epochs):
        model.train()
        order = rng.permutation(len(items))
        for b0 in range(0, len(order), ft.batch_size):
            if cancel is not None and cancel.is_set():
                raise StimageError("fine-tuning cancelled")
            opt.zero_grad()
            loss = batch_loss([items[j] for j in order[b0 : b0 + ft.batch_size]], epoch)
            loss.backward()
            opt.step()
            step += 1
            if progress:
                progress("fine-tune", step, total_steps)
        model.eval()
        with torch.no_grad():
            v = float(
                np.mean(
                    [
                        float(batch_loss(val_items[i : i + ft.batch_size], None))
                        for i in range(0, len(val_items), ft.batch_size)
                    ]
                )
            )
        logger.info("fine-tune epoch %d: held-out NLL %.4f", epoch + 1, v)
        if v < best - 1e-5:
            best, bad = v, 0
            best_state = (
                {k: t.detach().cpu().clone() for k, t in model.state_dict().items()},
                head.weight.detach().cpu().numpy().T.copy(),
                head.bias.detach().cpu().numpy().copy(),
                log_theta.detach().cpu().numpy().copy(),
            )
        else:
            bad += 1
            if bad >= ft.patience:
                break
    assert best_state is not None
    enc_state, w, b, lt = best_state
    model.load_state_dict(enc_state)
    model.eval()
    d_pipe = FeaturePipeline(None, mean=np.zeros(d), scale=np.ones(d))
    member = NBGLM(
        NBGLMConfig(l2=0.0),
        weight=w.astype(np.float64),
        bias=b.astype(np.float64),
        log_theta=lt.astype(np.float64),
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
    bundle = ModelBundle(
        name=config.name,
        genes=list(genes),
        tiles=store_tile_settings(store, ids),
        stain_target=target,
        components=[Component(spec, ens)],
        classifier=None,
        training={
            "samples": train_ids,
            "validation_sample": val_id,
            "mode": "finetune",
            "patients": {s: spots.patients[s] for s in ids},
            "gene_sets": sets,
            "epochs_run": epoch + 1,
            "best_validation_nll": best,
            "n_spots": int(sum(len(index[s]) for s in train_ids)),
        },
        description=config.description,
        encoder_states={0: enc_state},
    )
    return bundle
