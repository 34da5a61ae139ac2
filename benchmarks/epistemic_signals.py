"""Which signal flags the errors of a held-out section? A check of candidates for the epistemic sd.

    .venv/bin/python benchmarks/epistemic_signals.py

Leave-one-section-out on the four HER2ST sections with the default features (Lite0 head and
pooled stages, spatial context 300/500 µm, PCA 256, features cached in .bench/her2st/store)
and one NB GLM per fold at a fixed penalty (1e3). For each held-out section and gene, the
Spearman correlation between a candidate signal and the absolute error of the predicted
log1p rate, averaged over genes, for: the spread of 4 bootstrap members (what the default
model uses), the spread of 4 members each trained without one training section ("members
that differ in more than a bootstrap"), the tile's feature novelty (its Mahalanobis
distance to the training tiles, PCA space), the prediction itself, a delta-method aleatoric
sd, and the leave-one-section-out spread scaled by novelty.

And the ceiling ("oracle"): counts simulated from each fold's fitted model (real library
sizes and dispersions) with the true log-rate off the model's by a per-gene normal error
sized so that the simulated MSE matches the held-out section's; the Spearman of each spot's
realised model error (which no sd can know: an sd knows at most its distribution) with the
simulated absolute error bounds what any epistemic signal could reach at this count noise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.stats import nbinom, spearmanr

from stimage.encoders import create_encoder
from stimage.models import FeaturePipeline, NBGLMConfig, SpatialContext
from stimage.models._nb import _check, _fit
from stimage.tiles import TileStore
from stimage.training import TrainConfig, choose_genes, load_spot_set

REPO = Path(__file__).resolve().parents[1]
SCALES = np.linspace(0.0, 3.0, 31)


def _oracle(rate, lib, theta, err, rng) -> float:  # type: ignore[no-untyped-def]
    """Mean over genes of Spearman(|realised model error|, |error|) on simulated counts."""
    mu0 = rate * lib[:, None] / 1e4
    pred = np.log1p(rate)
    want = (err**2).mean(0)
    z = rng.standard_normal(rate.shape)
    u = rng.random(rate.shape)  # common random numbers across the scales
    best = np.full(rate.shape[1], np.inf)
    out = np.full(rate.shape[1], np.nan)
    for sc in SCALES:
        mu = mu0 * np.exp(sc * z)
        y = nbinom.ppf(u, theta, theta / (theta + mu))
        e = np.abs(np.log1p(y / lib[:, None] * 1e4) - pred)
        gap = np.abs((e**2).mean(0) - want)
        better = gap < best
        if better.any():
            truth = np.abs(np.log1p(rate * np.exp(sc * z)) - pred)
            for j in np.flatnonzero(better):
                if np.std(truth[:, j]) > 0 and np.std(e[:, j]) > 0:
                    out[j] = spearmanr(truth[:, j], e[:, j])[0]
            best = np.where(better, gap, best)
    return float(np.nanmean(out))


store = TileStore(REPO / ".bench" / "her2st" / "store")
enc = "efficientnet_lite0_stages"
ctx = SpatialContext((300.0, 500.0))
spots = load_spot_set(store, [create_encoder(enc, device="cpu")], context=ctx)
cfg = TrainConfig(encoders=(enc,), context=ctx)
ids = spots.sample_ids
res = {k: [] for k in ("boot", "loso", "novelty", "mean", "aleatoric", "loso_x_nov", "oracle")}
for test in ids:
    train = [s for s in ids if s != test]
    genes, _ = choose_genes(spots, train, cfg)
    genes = [g for g in genes if g in spots.adatas[test].var_names]
    x = spots.stack_features(enc, train)
    y = spots.counts(train, genes)
    lib = spots.library_size(train)
    grp = spots.groups(train)
    pipe = FeaturePipeline(256).fit(x)
    z = pipe.transform(x)
    xt = pipe.transform(spots.features[enc][test])
    yt = spots.counts([test], genes)
    libt = spots.library_size([test])
    truth = np.log1p(yt / libt[:, None] * 1e4)
    conf = NBGLMConfig()
    lam = 1e3
    _, yy, log_s = _check(z, y, lib)
    full = _fit(z, yy, log_s, lam, conf, None)
    rng = np.random.default_rng(0)
    boot = []
    for _ in range(4):
        wts = np.zeros(len(z))
        for s in np.unique(grp):
            idx = np.flatnonzero(grp == s)
            wts[rng.choice(idx, len(idx))] += 1
        boot.append(_fit(z, yy, log_s, lam, conf, wts, full, fast=True))
    loso = [
        _fit(z[grp != s], yy[grp != s], log_s[grp != s], lam, conf, None, full, fast=True)
        for s in np.unique(grp)
    ]

    def logn(p, xt=xt):  # type: ignore[no-untyped-def]
        return np.log1p(np.exp(xt @ p["w"] + p["b"]))

    pm = logn(full)
    err = np.abs(pm - truth)
    sb = np.std([logn(p) for p in boot], axis=0)
    sl = np.std([logn(p) for p in loso], axis=0)
    nov = pipe.novelty(xt)
    th = np.exp(full["lt"])
    rate = np.exp(xt @ full["w"] + full["b"])
    mu = rate * libt[:, None] / 1e4
    ale = np.sqrt(mu + mu**2 / th) / (mu + 1)  # delta-method sd of log1p-ish

    def sp(a, err=err):  # type: ignore[no-untyped-def]
        out = []
        for j in range(err.shape[1]):
            aj = a[:, j] if a.ndim == 2 else a
            if np.std(aj) > 0 and np.std(err[:, j]) > 0:
                out.append(spearmanr(aj, err[:, j])[0])
        return np.nanmean(out)

    # The ceiling: counts simulated from the fitted model with the real libraries and
    # dispersions, the true log-rate off the model's by a per-gene normal error sized so that
    # the simulated MSE matches this section's. An "oracle" that knows each spot's realised
    # model error (more than any sd can know) is then ranked against the simulated errors.
    sim = _oracle(rate, libt, th, err, np.random.default_rng(1))
    res["oracle"].append(sim)
    for k, a in (
        ("boot", sb),
        ("loso", sl),
        ("novelty", nov),
        ("mean", pm),
        ("aleatoric", ale),
        ("loso_x_nov", sl * (1 + nov[:, None])),
    ):
        res[k].append(sp(a))
    print(test, {k: round(v[-1], 3) for k, v in res.items()}, flush=True)
print({k: round(float(np.mean(v)), 3) for k, v in res.items()})
