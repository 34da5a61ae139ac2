#!/usr/bin/env python
"""Would the tile's image help call each nucleus's type? A tile-level composition prior (HER2ST).

The cell-type model calls each nucleus from its own features; its training signal is the
spot's deconvolved proportions. An expression encoder sees more of the tile (collagen, a
tumour nest). This checks, leave one section out, a product of experts: each nucleus's
probabilities times ``(q_tile / q_mean) ** w``, where ``q_tile`` is the tile's class
composition predicted from the encoder's cached spot features (PCA 64 + ridge, trained on the
other sections' proportions) and ``q_mean`` their mean; calls by the model's rule (per-class
offsets refitted on the training nuclei with priors cross-fitted by section). ``w = 0`` is
the default model.

Reported per class, as in ``scripts/benchmark_celltypes.py``: Pearson of the spots' mean
probabilities, MAE of their called composition (mean over folds), and over the spots led by
the class the share of their nuclei called it (pooled), beside the given share of the class
in those spots (what a perfect caller would reach by this reference).

Needs the nuclei cache of ``scripts/benchmark_celltypes.py`` and the feature cache of
``scripts/benchmark_her2st.py --part cv`` (``.bench/her2st/store``).

Usage::

    python benchmarks/celltype_tile_prior.py [--encoder efficientnet_lite0_stages] [--w 0,0.5,1,2]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))


def _features(store: Path, encoder: str, sections: list[str]) -> dict[str, pd.DataFrame]:
    from stimage.tiles import TileStore

    st = TileStore(store)
    folders = [p for p in (store / "features").iterdir() if p.name.rsplit("-", 1)[0] == encoder]
    if not folders:
        sys.exit(f"no cached {encoder} features under {store}/features")
    out = {}
    for s in sections:
        f = np.load(folders[0] / f"{s}.npy")
        out[s] = pd.DataFrame(f, index=[str(i) for i in st.spots(s).obs_names])
    return out


def _spot_x(feat: dict[str, pd.DataFrame], spots: pd.DataFrame) -> np.ndarray:
    """Each spot's features (a spot the tile store dropped gets its section's mean)."""
    rows = []
    for sec, sid in zip(spots["section"], spots["spot_id"], strict=True):
        f = feat[sec]
        rows.append(f.loc[sid].to_numpy() if sid in f.index else f.mean(0).to_numpy())
    return np.asarray(rows)


def _tile_prior(feat, train, test) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    from sklearn.decomposition import PCA
    from sklearn.linear_model import RidgeCV

    from stimage.models import map_proportions

    xtr, xte = _spot_x(feat, train.spots), _spot_x(feat, test.spots)
    y = map_proportions(train.proportions)
    pca = PCA(64, random_state=0).fit(xtr)
    z = pca.transform(xtr)
    m, sd = z.mean(0), z.std(0) + 1e-9
    r = RidgeCV(alphas=np.logspace(-1, 4, 16)).fit((z - m) / sd, y)
    p = np.clip(r.predict((pca.transform(xte) - m) / sd), 1e-3, None)
    return p / p.sum(1, keepdims=True), y.mean(0)


def _combine(p: np.ndarray, bag: np.ndarray, prior: np.ndarray, mean: np.ndarray, w: float):  # type: ignore[no-untyped-def]
    out = p.copy()
    inside = bag >= 0
    out[inside] = p[inside] * (prior[bag[inside]] / mean) ** w
    return out / out.sum(1, keepdims=True)


def main() -> int:
    import benchmark_celltypes as bc

    from stimage.models import collect_spot_nuclei, map_proportions, train_celltypes_from_dataset
    from stimage.models._celltype_calls import fit_call_bias

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "her2st"))
    ap.add_argument("--cache", default=str(REPO / ".bench" / "celltypes"))
    ap.add_argument("--store", default=str(REPO / ".bench" / "her2st" / "store"))
    ap.add_argument("--encoder", default="efficientnet_lite0_stages")
    ap.add_argument("--w", default="0,0.5,1,2")
    args = ap.parse_args()
    weights = [float(v) for v in args.w.split(",")]
    base = collect_spot_nuclei(
        args.data, context_um=None, patch_um=None, segmenter="classical", target_mpp=0.5,
        margin_um=30.0, cache_dir=args.cache,
    )  # fmt: skip
    data = bc._with_context(base, None, bc._patch_columns(base, args.data, 20.0), 20.0)
    feat = _features(Path(args.store), args.encoder, data.sections)
    rows = []
    for held in data.sections:
        others = [s for s in data.sections if s != held]
        train, test = data.select(others), data.select([held])
        model = train_celltypes_from_dataset(train, hidden=16)
        q = map_proportions(test.proportions, model.classes, model.mapping)
        proba, pr_train = model.predict_proba(test.features), model.predict_proba(train.features)
        prior, mean = _tile_prior(feat, train, test)
        prior_tr = np.full((len(train.spots), len(model.classes)), np.nan)
        for h2 in others:  # cross-fitted priors of the training spots, for the call offsets
            rows_h2 = np.flatnonzero(train.spots["section"].to_numpy() == h2)
            a = train.select([s for s in others if s != h2])
            prior_tr[rows_h2] = _tile_prior(feat, a, train.select([h2]))[0]
        bag, inside = test.bag_index, test.bag_index >= 0
        n = np.bincount(bag[inside], minlength=len(q))
        use, lead = n > 0, q.argmax(1)
        for w in weights:
            tr = _combine(pr_train, train.bag_index, prior_tr, mean, w)
            bias = fit_call_bias(tr[train.bag_index >= 0])
            comb = _combine(proba, bag, prior, mean, w)
            calls = (np.log(np.clip(comb, 1e-9, 1)) + bias).argmax(1)
            called = np.zeros_like(q)
            np.add.at(called, (bag[inside], calls[inside]), 1.0)
            called /= np.maximum(n, 1)[:, None]
            mprob = np.zeros_like(q)
            np.add.at(mprob, bag[inside], comb[inside])
            mprob /= np.maximum(n, 1)[:, None]
            for j, c in enumerate(model.classes):
                sel = use & (lead == j)
                rows.append({
                    "w": w, "held": held, "class": c,
                    "pearson": float(np.corrcoef(mprob[use, j], q[use, j])[0, 1]),
                    "mae_called": float(np.abs(called[use, j] - q[use, j]).mean()),
                    "led_nuclei": int(n[sel].sum()),
                    "led_called": float((called[sel, j] * n[sel]).sum()),
                    "led_given": float((q[sel, j] * n[sel]).sum()),
                })  # fmt: skip
        print(f"fold {held} done", file=sys.stderr, flush=True)
    df = pd.DataFrame(rows)
    print("# Tile-level composition prior for cell calls (HER2ST, leave one section out)\n")
    print(f"Command: `python {' '.join(sys.argv)}`\n")
    print(
        "| w | class | Pearson (probabilities) | MAE (called) | led spots' nuclei "
        "| called the class | given share |"
    )
    print("|---|---|---|---|---|---|---|")
    for w, g in df.groupby("w"):
        for c, h in g.groupby("class", sort=False):
            led = h["led_nuclei"].sum()
            called = f"{h['led_called'].sum() / led:.2f}" if led else "n/a"
            given = f"{h['led_given'].sum() / led:.2f}" if led else "n/a"
            print(
                f"| {w:g} | {c} | {h['pearson'].mean():.3f} | {h['mae_called'].mean():.3f} | "
                f"{led} | {called} | {given} |"
            )
        print(
            f"| {w:g} | mean | {g.groupby('class')['pearson'].mean().mean():.3f} | "
            f"{g.groupby('class')['mae_called'].mean().mean():.3f} | | | |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
