"""Training time and memory: the default recipe on HER2ST, and a synthetic cohort at scale.

    .venv/bin/python benchmarks/bench_train.py --part her2st [--load 2]
    .venv/bin/python benchmarks/bench_train.py --part scale [--spots 150000 --genes 2000]

``her2st``: ``fit_bundle`` of the default recipe (EfficientNet-Lite0 head + pooled stages,
spatial context 300/500 µm, 5 NB members with the leave-one-section-out penalty search and
calibration, the high/low classifier) on the four shared sections, features already cached
in the tile store (``.bench/her2st/store``; scripts/benchmark_her2st.py prepares it). Run
idle, then with ``--load N`` busy processes (``yes``) competing for the cores, so the
machine is shared as a lab's would be.

``scale``: a synthetic cohort of ``--spots`` spots in sections of 3,750 (40 sections for
150,000) with ``--genes`` genes: features of 1,776 dimensions (the default encoder's) in
float32 ``.npy`` files read through memory maps, as the tile store's feature cache is read;
counts from a negative binomial whose rates follow a few feature directions, stored sparse.
The default recipe fits it through the same ``fit_bundle``; the child process reports its
peak resident memory (``ru_maxrss``) and the time of each stage. Gene chunks are logged as
they finish, so a run cut short still tells the time per chunk.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _her2st_fit(store: Path) -> dict[str, float]:
    from stimage.encoders import create_encoder
    from stimage.tiles import TileStore
    from stimage.training import TrainConfig, choose_genes, fit_bundle, load_spot_set

    cfg = TrainConfig()
    t0 = time.perf_counter()
    spots = load_spot_set(
        TileStore(store),
        [create_encoder(e, device="cpu") for e in cfg.encoders],
        context=cfg.context,
    )
    ids = spots.sample_ids
    genes, _ = choose_genes(spots, ids, cfg)
    t1 = time.perf_counter()
    c0 = time.process_time()
    specs = {e: {"name": e} for e in cfg.encoders}
    fit_bundle(spots, ids, genes, cfg, tiles={}, stain_target=None, encoder_specs=specs)
    return {
        "load_s": t1 - t0,
        "fit_s": time.perf_counter() - t1,
        "fit_cpu_s": time.process_time() - c0,
        "genes": len(genes),
        "spots": int(sum(spots.adatas[s].n_obs for s in ids)),
    }


def part_her2st(args: argparse.Namespace) -> None:
    store = args.work / "store"
    if not (store / "store.json").exists():
        sys.exit(f"no tile store at {store}; run scripts/benchmark_her2st.py --part cv first")
    rows = []
    for load in sorted({0, args.load}):
        busy = [subprocess.Popen(["yes"], stdout=subprocess.DEVNULL) for _ in range(load)]
        try:
            r = _child("her2st", str(store))
        finally:
            for p in busy:
                p.kill()
        rows.append({"busy_processes": load, **r})
        print(json.dumps(rows[-1]), flush=True)
    _save(args, "train_her2st", rows)


def _synthetic(root: Path, n_spots: int, n_genes: int, seed: int = 0):  # type: ignore[no-untyped-def]
    import anndata as ad
    import numpy as np
    import pandas as pd
    from scipy import sparse

    from stimage.constants import Key
    from stimage.models import SpatialContext
    from stimage.training import SpotSet
    from stimage.training._data import JoinedFeatures

    rng = np.random.default_rng(seed)
    per, d, k = 3750, 1776, 8
    n_sec = max(2, -(-n_spots // per))
    basis = rng.normal(size=(k, d)).astype(np.float32)
    load = rng.normal(size=(k, n_genes)) * 0.3
    base = rng.normal(-1.0, 1.5, n_genes)
    genes = [f"G{j}" for j in range(n_genes)]
    adatas, raw, xy = {}, {}, {}
    side = int(np.ceil(np.sqrt(per)))
    for s in range(n_sec):
        m = min(per, n_spots - s * per) if s < n_sec - 1 else n_spots - per * (n_sec - 1)
        name = f"S{s:02d}"
        latent = rng.normal(size=(m, k)).astype(np.float32)
        f = latent @ basis + rng.normal(size=(m, d)).astype(np.float32)
        path = root / f"{name}.npy"
        np.save(path, f.astype(np.float32))
        del f
        raw[name] = np.load(path, mmap_mode="r")
        lib = rng.lognormal(8.0, 0.5, m)
        rate = np.exp(base + latent @ load)
        mu = rate * lib[:, None] / 1e4
        counts = rng.negative_binomial(2.0, 2.0 / (2.0 + mu)).astype(np.float32)
        grid = np.stack([np.arange(m) % side, np.arange(m) // side], axis=1) * 200.0
        a = ad.AnnData(
            X=sparse.csr_matrix(counts),
            obs=pd.DataFrame(index=[f"{name}_{i}" for i in range(m)]),
            var=pd.DataFrame(index=genes),
        )
        # the library is the total over all genes: the sum here plus genes not modelled
        a.obsm[Key.SPATIAL] = grid / 1.0
        a.uns[Key.UNS] = {Key.MPP: 1.0}
        adatas[name] = a
        xy[name] = grid
        del counts, mu, rate
    ctx = SpatialContext()
    feats = {"efficientnet_lite0_stages": JoinedFeatures(raw, xy, ctx)}
    return SpotSet(adatas, feats, {s: s for s in adatas}, ctx), genes


def _scale_fit(n_spots: int, n_genes: int) -> dict[str, float]:
    from stimage.training import TrainConfig, fit_bundle

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        spots, genes = _synthetic(Path(tmp), n_spots, n_genes)
        t1 = time.perf_counter()
        rss_data = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        cfg = TrainConfig(genes=tuple(genes))
        ids = spots.sample_ids
        c0 = time.process_time()
        specs = {e: {"name": e} for e in cfg.encoders}
        b = fit_bundle(spots, ids, genes, cfg, tiles={}, stain_target=None, encoder_specs=specs)
        t2 = time.perf_counter()
        return {
            "spots": n_spots,
            "genes": n_genes,
            "sections": len(ids),
            "make_data_s": t1 - t0,
            "peak_rss_mb_after_data": rss_data,
            "fit_s": t2 - t1,
            "fit_cpu_s": time.process_time() - c0,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "held_out_mean_pcc": float(b.metrics.get("held_out", {}).get("mean_pcc", float("nan"))),
        }


def part_scale(args: argparse.Namespace) -> None:
    r = _child("scale", str(args.spots), str(args.genes))
    print(json.dumps(r), flush=True)
    _save(args, "train_scale", [r])


def _child(kind: str, *a: str) -> dict[str, float]:
    """Run one measurement in a fresh process (its own peak memory); return its JSON line."""
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, *a],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def _save(args: argparse.Namespace, name: str, rows: list[dict]) -> None:
    res = REPO / "benchmarks" / "results"
    res.mkdir(parents=True, exist_ok=True)
    doc = {
        "command": " ".join(sys.argv),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d"),
        "rows": rows,
    }
    (res / f"{name}.json").write_text(json.dumps(doc, indent=1))


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        kind = sys.argv[2]
        r = (
            _her2st_fit(Path(sys.argv[3]))
            if kind == "her2st"
            else _scale_fit(int(sys.argv[3]), int(sys.argv[4]))
        )
        print(json.dumps(r), flush=True)
        return
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--part", choices=["her2st", "scale"], required=True)
    ap.add_argument("--work", type=Path, default=REPO / ".bench" / "her2st")
    ap.add_argument("--load", type=int, default=2, help="busy processes of the shared run")
    ap.add_argument("--spots", type=int, default=150_000)
    ap.add_argument("--genes", type=int, default=2_000)
    args = ap.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores; python {platform.python_version()}"
    )
    part_her2st(args) if args.part == "her2st" else part_scale(args)


if __name__ == "__main__":
    main()
