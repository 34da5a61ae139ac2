#!/usr/bin/env python
"""Cell-type composition from predicted nuclei on HER2ST, leave one section out.

For every section with ``ST-deconv-major`` proportions, nuclei are segmented inside each spot
disc (plus a margin for their neighbourhood) and cached under ``.bench/celltypes/``. Each
fold trains a cell-type model from the spot proportions (learning from label proportions)
of the other sections and predicts the nuclei of the held-out one; a spot's predicted
composition is the mean of its nuclei's class probabilities. Reported per class: Pearson
over the held-out spots and mean absolute error, against the baseline that predicts the
training-average composition for every spot (its Pearson is undefined: a constant).

``--reference`` adds a spot-level ridge regression from the spot's mean nucleus features
to its proportions (no per-nucleus answer; it shows how much of the signal a per-nucleus
model keeps).

Usage::

    python scripts/benchmark_celltypes.py [--data ../shared/data/her2st] [--patch-um 20]
        [--context-um 0] [--hidden 16] [--variants] [--reference]
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from stimage.evaluation._celltypes import composition_metrics, spot_composition
from stimage.models import (
    DEFAULT_CELL_CLASSES,
    SpotNuclei,
    collect_spot_nuclei,
    map_proportions,
    train_celltypes_from_dataset,
)


def _reference(train: SpotNuclei, test: SpotNuclei, features: list[str]) -> np.ndarray:
    """Spot-level ridge: mean nucleus features (and count) of a spot -> its proportions."""
    from sklearn.linear_model import RidgeCV

    def spot_x(d: SpotNuclei) -> np.ndarray:
        f = d.features[d.features["bag"] >= 0]
        g = f.groupby("bag")[features].mean()
        x = g.reindex(range(len(d.spots))).to_numpy()
        n = np.bincount(f["bag"].to_numpy(int), minlength=len(d.spots))[:, None]
        return np.nan_to_num(np.c_[x, np.log1p(n)])

    xtr, xte = spot_x(train), spot_x(test)
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-9
    ytr = map_proportions(train.proportions)
    keep = train.spots["nuclei"].to_numpy() > 0
    r = RidgeCV(alphas=np.logspace(-2, 3, 12)).fit((xtr[keep] - mu) / sd, ytr[keep])
    p = np.clip(r.predict((xte - mu) / sd), 0, None)
    return p / np.maximum(p.sum(1, keepdims=True), 1e-9)


def _fold(
    data: SpotNuclei, held: str, hidden: int, reference: bool, options: dict
) -> tuple[pd.DataFrame, dict]:
    train = data.select([s for s in data.sections if s != held])
    test = data.select([held])
    t0 = time.perf_counter()
    model = train_celltypes_from_dataset(train, hidden=hidden, **options)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    proba = model.predict_proba(test.features)
    pred_s = time.perf_counter() - t0
    q_train = map_proportions(train.proportions, model.classes, model.mapping)
    q_test = map_proportions(test.proportions, model.classes, model.mapping)
    baseline = q_train.mean(0)
    m = composition_metrics(proba, test.bag_index, q_test, baseline, model.classes)
    if reference:
        ref = _reference(train, test, model.feature_names)
        use = test.spots["nuclei"].to_numpy() > 0
        for j, c in enumerate(model.classes):
            a, b = ref[use, j], q_test[use, j]
            m.loc[c, "pearson_ref"] = float(np.corrcoef(a, b)[0, 1]) if np.ptp(a) > 0 else np.nan
            m.loc[c, "mae_ref"] = float(np.mean(np.abs(a - b)))
        m.loc["mean", ["pearson_ref", "mae_ref"]] = (
            m.loc[list(model.classes), ["pearson_ref", "mae_ref"]].mean().to_numpy()
        )
    calls = _call_quality(model, proba, test.bag_index, q_test)
    comp, counts = spot_composition(proba, test.bag_index, len(test.spots))
    info = {
        "held": held,
        "train_nuclei": int((train.bag_index >= 0).sum()),
        "test_nuclei": int((test.bag_index >= 0).sum()),
        "test_spots": int((counts > 0).sum()),
        "fit_s": fit_s,
        "predict_s": pred_s,
        "entropy_mean": float(model.entropy(test.features).mean()),
        "pred_share": dict(zip(model.classes, np.nanmean(comp, 0).round(3).tolist(), strict=True)),
        "true_share": dict(zip(model.classes, q_test.mean(0).round(3).tolist(), strict=True)),
        "calls": calls,
    }
    return m, info


def _call_quality(model, proba: np.ndarray, bag: np.ndarray, q: np.ndarray) -> pd.DataFrame:
    """Per-class quality of the called classes, by calling rule (rows) and measure (columns).

    ``share``: the share of held-out nuclei called the class; ``mae``/``pearson``: the spots'
    called composition (fraction of their nuclei called each class) against the given
    proportions; ``dominant``: over the spots whose given proportions are led by the class,
    the fraction of their nuclei called that class (``n_dominant`` such spots).
    """
    k = len(model.classes)
    inside = bag >= 0
    n = np.bincount(bag[inside], minlength=len(q))
    use = n > 0
    lead = q.argmax(1)
    rows = []
    for rule in ("argmax", "composition"):
        c = proba.argmax(1) if rule == "argmax" else model.call(proba)
        if rule == "composition" and model.call_bias is None:
            continue
        comp = np.zeros((len(q), k))
        np.add.at(comp, (bag[inside], c[inside]), 1.0)
        comp /= np.maximum(n, 1)[:, None]
        for j, cls in enumerate(model.classes):
            a, b = comp[use, j], q[use, j]
            sel = use & (lead == j)
            rows.append(
                {
                    "rule": rule,
                    "class": cls,
                    "share": float((c[inside] == j).mean()),
                    "mae": float(np.abs(a - b).mean()),
                    "pearson": float(np.corrcoef(a, b)[0, 1]) if np.ptp(a) > 0 else np.nan,
                    "dominant": float((comp[sel, j] * n[sel]).sum() / n[sel].sum())
                    if sel.any()
                    else np.nan,
                    "n_dominant": int(sel.sum()),
                    "dominant_nuclei": int(n[sel].sum()),
                }
            )
    return pd.DataFrame(rows)


def _table(m: pd.DataFrame, reference: bool) -> str:
    cols = ["class", "Pearson model", "Pearson baseline", "MAE model", "MAE baseline"]
    if reference:
        cols += ["Pearson spot-ridge", "MAE spot-ridge"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for c, r in m.iterrows():
        vals = [
            f"{r['pearson_model']:.3f}",
            "n/a (constant)",
            f"{r['mae_model']:.4f}",
            f"{r['mae_baseline']:.4f}",
        ]
        if reference:
            vals += [f"{r['pearson_ref']:.3f}", f"{r['mae_ref']:.4f}"]
        lines.append(f"| {c} | " + " | ".join(vals) + " |")
    return "\n".join(lines)


def _calls_table(calls: pd.DataFrame) -> str:
    """Pooled over folds: share called, mean MAE/Pearson, dominant-class fraction."""
    lines = [
        "| rule | class | share called | MAE called | Pearson called | dominant spots "
        "(nuclei) | their nuclei called the class |",
        "|---|---|---|---|---|---|---|",
    ]
    for (rule, cls), g in calls.groupby(["rule", "class"], sort=False):
        w = g["dominant_nuclei"].to_numpy(float)
        dom = float(np.nansum(g["dominant"] * w) / w.sum()) if w.sum() else float("nan")
        lines.append(
            f"| {rule} | {cls} | {g['share'].mean():.3f} | {g['mae'].mean():.3f} | "
            f"{g['pearson'].mean():.3f} | {int(g['n_dominant'].sum())} ({int(w.sum())}) | "
            f"{dom:.2f} |"
        )
    return "\n".join(lines)


def _run(
    data: SpotNuclei, hidden: int, reference: bool, options: dict, show: bool
) -> tuple[pd.DataFrame, pd.DataFrame]:
    folds, calls = [], []
    for held in data.sections:
        m, info = _fold(data, held, hidden, reference, options)
        folds.append(m.assign(fold=held))
        calls.append(info["calls"].assign(fold=held))
        if show:
            print(
                f"\n### Held out {held}: {info['test_spots']} spots, {info['test_nuclei']} nuclei "
                f"(trained on {info['train_nuclei']}); fit {info['fit_s']:.1f} s, predict "
                f"{info['predict_s'] * 1000:.0f} ms; mean entropy {info['entropy_mean']:.2f}\n"
            )
            print(f"predicted mean composition {info['pred_share']}, given {info['true_share']}\n")
            print(_table(m, reference))
    allf = pd.concat(folds)
    return allf.drop(columns="fold").groupby(level=0, sort=False).mean(), pd.concat(calls)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="../shared/data/her2st")
    ap.add_argument("--cache", default=".bench/celltypes")
    ap.add_argument("--segmenter", default="classical")
    ap.add_argument("--target-mpp", type=float, default=0.5)
    ap.add_argument("--margin-um", type=float, default=30.0)
    ap.add_argument("--context-um", type=float, default=0.0, help="0: no neighbourhood features")
    ap.add_argument("--patch-um", type=float, default=20.0, help="0: no patch colour features")
    ap.add_argument("--hidden", type=int, default=16, help="0: linear model")
    ap.add_argument("--entropy-weight", type=float, default=None)
    ap.add_argument("--prior-weight", type=float, default=None)
    ap.add_argument("--weight-decay", type=float, default=None)
    ap.add_argument(
        "--anchor-weight", type=float, default=None, help="weight of the morphology anchors"
    )
    ap.add_argument("--reference", action="store_true", help="add the spot-level ridge")
    ap.add_argument(
        "--variants", action="store_true", help="also compare context / hidden-layer variants"
    )
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    if not Path(args.data).is_dir():
        print(f"HER2ST data not found at {args.data}; give --data", file=sys.stderr)
        return 2
    options = {
        k: v
        for k, v in {
            "entropy_weight": args.entropy_weight,
            "prior_weight": args.prior_weight,
            "weight_decay": args.weight_decay,
            "anchor_weight": args.anchor_weight,
        }.items()
        if v is not None
    }
    context = args.context_um or None
    t0 = time.perf_counter()
    base = collect_spot_nuclei(
        args.data,
        context_um=None,
        patch_um=None,
        segmenter=args.segmenter,
        target_mpp=args.target_mpp,
        margin_um=args.margin_um,
        cache_dir=args.cache,
        verbose=args.verbose,
    )
    seg_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    patch = _patch_columns(base, args.data, args.patch_um) if args.patch_um else None
    patch_s = time.perf_counter() - t0
    data = _with_context(base, context, patch, args.patch_um)
    import torch

    print("# Cell-type composition on HER2ST, leave one section out\n")
    print("Command: `python " + " ".join(sys.argv) + "`\n")
    print(
        f"Machine: {platform.platform()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, torch {torch.__version__} (CPU, 1 thread)\n"
    )
    n_in = int((data.bag_index >= 0).sum())
    print(
        f"Data: sections {data.sections}; {len(data.spots)} spots, {n_in} nuclei inside spot "
        f"discs (median {np.median(data.spots['nuclei']):.0f} per spot), segmenter "
        f"{args.segmenter} at {args.target_mpp} µm/px; nuclei loaded in {seg_s:.0f} s "
        f"(cache {args.cache}), patch features in {patch_s:.0f} s. Classes "
        f"{list(DEFAULT_CELL_CLASSES)} from the 8 deconvolution types. Neighbourhood radius "
        f"{context} µm, patch {args.patch_um or None} µm, hidden {args.hidden}.\n"
    )
    mean, calls = _run(data, args.hidden, args.reference, options, show=True)
    print("\n## Mean over folds\n")
    print(_table(mean, args.reference))
    print("\n## Called classes per nucleus (mean over folds; dominant: pooled)\n")
    print(_calls_table(calls))
    beats = [
        c for c in DEFAULT_CELL_CLASSES if mean.loc[c, "mae_model"] < mean.loc[c, "mae_baseline"]
    ]
    worse = [c for c in DEFAULT_CELL_CLASSES if c not in beats]
    print(f"\nModel MAE below the baseline for: {beats or 'none'}; not for: {worse or 'none'}.")
    if args.variants:
        print("\n## Variants (mean over folds)\n")
        print("| variant | mean Pearson | mean MAE | MAE baseline |\n|---|---|---|---|")
        if patch is None:
            patch = _patch_columns(base, args.data, 20.0)
        for name, ctx, pat, hid in [
            ("linear: morphology + intensity", None, None, 0),
            ("linear: + neighbourhood 25 µm", 25.0, None, 0),
            ("linear: + patch 20 µm", None, patch, 0),
            ("linear: + neighbourhood + patch", 25.0, patch, 0),
            ("hidden 16: morphology + intensity", None, None, 16),
            ("hidden 16: + patch 20 µm (default)", None, patch, 16),
            ("hidden 16: + neighbourhood + patch", 25.0, patch, 16),
        ]:
            m, _ = _run(_with_context(base, ctx, pat), hid, False, options, show=False)
            r = m.loc["mean"]
            print(
                f"| {name} | {r['pearson_model']:.3f} | {r['mae_model']:.4f} | "
                f"{r['mae_baseline']:.4f} |"
            )
    return 0


def _with_context(
    base: SpotNuclei, context_um: float | None, patch: pd.DataFrame | None, patch_um: float = 20.0
) -> SpotNuclei:
    from stimage.models import celltype_features

    feats = base.features
    if patch is not None:
        feats = pd.concat([feats, patch], axis=1)
    if context_um is not None:
        parts = []
        for s in base.sections:
            f = feats[feats["section"] == s]
            parts.append(celltype_features(f, base.mpp[s], context_um))
        feats = pd.concat(parts).loc[base.features.index]
    return SpotNuclei(
        feats,
        base.proportions,
        base.spots,
        base.mpp,
        context_um,
        None if patch is None else patch_um,
    )


def _patch_columns(base: SpotNuclei, data_root: str, patch_um: float) -> pd.DataFrame:
    """Patch colour features of every nucleus, read section by section from the slides."""
    from stimage.data import open_sample_slide, read_her2st
    from stimage.models import patch_features
    from stimage.models._celltype_features import PATCH_COLUMNS

    parts = []
    for s in base.sections:
        f = base.features[base.features["section"] == s]
        with open_sample_slide(read_her2st(data_root, s)) as slide:
            parts.append(patch_features(slide, f, patch_um)[list(PATCH_COLUMNS)])
    return pd.concat(parts).loc[base.features.index]


if __name__ == "__main__":
    raise SystemExit(main())
