#!/usr/bin/env python
"""Would averaging the NB model's mean with ridge-with-context's lift hvg50? (HER2ST, LOSO)

    .venv/bin/python benchmarks/blend_ridge.py

The default recipe (Lite0 + pooled stages, context 300/500 µm, 5 members) and PCA + ridge with
tuned alpha on the same features, leave one section out on the cached store
(``.bench/her2st/store``, made by ``scripts/benchmark_her2st.py --part cv``); then, per
held-out section, ``w * ridge + (1 - w) * nb`` of the predicted log-normalised expression,
mean PCC per gene set. The weight is read off the test folds: an optimistic check of whether
a blend is worth building, not a result to quote as held out.
"""

import sys
import time

import numpy as np

from stimage.encoders import create_encoder
from stimage.evaluation import cross_validate, leave_one_section_out, pearson_per_gene
from stimage.models import NBEnsembleConfig, SpatialContext
from stimage.tiles import TileStore
from stimage.training import TrainConfig, load_spot_set

store = TileStore(".bench/her2st/store")
ctx = SpatialContext((300.0, 500.0))
enc = "efficientnet_lite0_stages"
spots = load_spot_set(store, [create_encoder(enc, device="cpu")], context=ctx)
config = TrainConfig(encoders=(enc,), ensemble=NBEnsembleConfig(members=5), context=ctx)
folds = leave_one_section_out(spots.sample_ids)
t0 = time.time()
res = cross_validate(
    spots,
    folds,
    config,
    methods=("ridge_cv", "nb"),
    progress=lambda m: print(m, file=sys.stderr, flush=True),
)
print("cv s", time.time() - t0)
print(res.summary().to_string())
for w in (0.0, 0.25, 0.5, 0.75, 1.0):
    out = {}
    for fi, (_, test) in enumerate(folds):
        t = test[0]
        sec = res.predictions[t]
        fold = f"fold{fi}:" + "+".join(test)
        genes = sec["genes"]
        blend = w * sec["ridge_cv"] + (1 - w) * sec["nb"]
        pcc = pearson_per_gene(blend, sec["truth"])
        for gs, members in res.gene_sets[fold].items():
            idx = [genes.index(g) for g in members if g in genes]
            out.setdefault(gs, []).append(np.nanmean(pcc[idx]))
    print(f"ridge weight {w}:", {k: round(float(np.mean(v)), 4) for k, v in out.items()})
