"""Does a wider view help beside spatial context? Ridge with and without a 400 µm view of each spot.

    .venv/bin/python benchmarks/wider_view.py

Prepares a second tile store of the four HER2ST sections at 400 µm per tile (224 px, the same
centres; ``.bench/her2st/store400``), extracts the default encoder's features there (Lite0 head
and pooled stages), and compares, leave one section out, PCA + ridge with alpha by inner
leave-one-section-out (the same features for both; spots kept in both stores) on: the default
features (200 µm stages + context rings), and the same with the 400 µm view's features
appended (twice the encoder's cost).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

from stimage.data import load_dataset
from stimage.encoders import create_encoder
from stimage.evaluation import cross_validate, leave_one_section_out
from stimage.models import SpatialContext
from stimage.tiles import TileSettings, TileStore, prepare_dataset
from stimage.training import TrainConfig, load_spot_set

REPO = Path(__file__).resolve().parents[1]
w = REPO / ".bench" / "her2st" / "store400"
t = time.time()
if not (w / "store.json").exists():
    prepare_dataset(
        load_dataset(REPO.parent / "shared" / "data" / "her2st"), w, TileSettings(tile_um=400.0)
    )
print("prepare", time.time() - t, flush=True)
enc = "efficientnet_lite0_stages"
ctx = SpatialContext((300.0, 500.0))
base = load_spot_set(
    TileStore(REPO / ".bench" / "her2st" / "store"),
    [create_encoder(enc, device="cpu")],
    context=ctx,
)
wide = load_spot_set(TileStore(w), [create_encoder(enc, device="cpu")])
print("features", time.time() - t, flush=True)
feats = {}
adatas = {}
for s in base.sample_ids:
    a, b = base.adatas[s], wide.adatas[s]
    common = [o for o in a.obs_names if o in set(b.obs_names)]
    ia = [a.obs_names.get_loc(o) for o in common]
    ib = [b.obs_names.get_loc(o) for o in common]
    feats[s] = np.hstack([base.features[enc][s][ia], wide.features[enc][s][ib]])
    adatas[s] = a[ia].copy()
    print(s, a.n_obs, b.n_obs, len(common))
both = dataclasses.replace(base, adatas=adatas, features={enc: feats})
cfg = TrainConfig(encoders=(enc,), context=ctx)
folds = leave_one_section_out(both.sample_ids)
for name, sp in (
    (
        "stages+rings",
        dataclasses.replace(
            base, adatas=adatas, features={enc: {s: feats[s][:, :5328] for s in feats}}
        ),
    ),
    ("stages+rings+400um view", both),
):
    res = cross_validate(sp, folds, cfg, methods=("ridge_cv",), keep_predictions=False)
    df = res.genes.assign(gs=res.genes.gene_sets.str.split(",")).explode("gs")
    print(name, df.groupby("gs").pcc.mean().round(3).to_dict(), flush=True)
