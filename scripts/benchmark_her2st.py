"""Reproduce the expression-model numbers of docs/benchmarks.md on the HER2ST data.

    .venv/bin/python scripts/benchmark_her2st.py [--her2st ../shared/data/her2st] [--work .bench/her2st]
        [--part cv|speed|all] [--scheme section|patient|both] [--members 5]

Parts:
- ``cv``: leave-one-section-out over all sections and leave-one-patient-out, for the
  training-mean baseline, stimage-paper, HEST's PCA+ridge, ridge with alpha by inner CV and
  ours (NB ensemble), all on EfficientNet-Lite0 features and the same folds; gene sets fixed
  per fold from its training sections. Reports go to WORK/report-section and
  WORK/report-patient (genes.csv, summary.json, plots); markdown tables are printed.
- ``speed``: feature extraction tiles/s against the bare encoder forward on the same batches;
  NB head training time for about 1000 spots x 250 genes; peak memory of prediction as the
  number of spots grows tenfold (the data repeated), each in a fresh process.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import sys
import time
from pathlib import Path

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "2")

REPO = Path(__file__).resolve().parents[1]


def _store(her2st: str, work: Path, tile_px: int | None = None):  # type: ignore[no-untyped-def]
    from stimage.data import load_dataset
    from stimage.tiles import TileSettings, TileStore, prepare_dataset

    settings = TileSettings() if tile_px is None else TileSettings(tile_px=tile_px)
    prepare_dataset(load_dataset(her2st), work / "store", settings)
    return TileStore(work / "store")


def _table(summary: list[dict], title: str) -> str:
    import pandas as pd

    df = pd.DataFrame(summary)
    names = {
        "mean": "(a) training mean",
        "paper": "(b) stimage-paper",
        "ridge": "(c) PCA+ridge (HEST)",
        "ridge_cv": "(c') PCA+ridge, alpha by inner CV",
        "ridge_cv_tile": "(c'') (c') on the spot's own features, without context",
        "nb": "(d) NB ensemble (ours)",
    }
    lines = [
        f"**{title}**",
        "",
        "| method | gene set | genes | mean PCC | median PCC | MSE |",
        "|---|---|---|---|---|---|",
    ]
    for gs in ("paper_panel", "hvg50", "mean250"):
        for m in ("mean", "paper", "ridge", "ridge_cv", "ridge_cv_tile", "nb"):
            row = df[(df.method == m) & (df.gene_set == gs)]
            if row.empty:
                continue
            r = row.iloc[0]
            fmt = lambda v: "n/a (constant)" if v != v else f"{v:.3f}"  # noqa: E731
            lines.append(
                f"| {names[m]} | {gs} | {r.genes} | {fmt(r.mean_pcc)} | {fmt(r.median_pcc)} | {r.mean_mse:.3f} |"
            )
    return "\n".join(lines)


def part_cv(args: argparse.Namespace) -> None:
    from stimage.encoders import create_encoder
    from stimage.evaluation import (
        cross_validate,
        leave_one_patient_out,
        leave_one_section_out,
        write_report,
    )
    from stimage.models import NBEnsembleConfig, SpatialContext
    from stimage.training import TrainConfig, load_spot_set

    store = _store(args.her2st, args.work, args.tile_px)
    ctx = SpatialContext(args.context) if args.context else None
    spots = load_spot_set(store, [create_encoder(args.encoder, device="cpu")], context=ctx)
    config = TrainConfig(
        encoders=(args.encoder,), ensemble=NBEnsembleConfig(members=args.members), context=ctx
    )
    schemes = (
        ("section", leave_one_section_out(spots.sample_ids)),
        ("patient", leave_one_patient_out(spots.patients)),
    )
    for kind, folds in schemes:
        if args.scheme not in ("both", kind):
            continue
        t0 = time.perf_counter()
        methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
        res = cross_validate(
            spots,
            folds,
            config,
            methods=methods,
            progress=lambda m: print(f"  {m}", file=sys.stderr, flush=True),
        )
        doc = write_report(
            res,
            spots,
            args.work / f"report-{kind}{args.report_suffix}",
            extra={
                "cv": kind,
                "members": args.members,
                "encoder": args.encoder,
                "context": None if ctx is None else ctx.to_dict(),
            },
        )
        print(
            _table(
                doc["summary"],
                f"leave-one-{kind}-out ({len(folds)} folds, {time.perf_counter() - t0:.0f} s)",
            )
        )
        print(
            "\ninterval coverage of (d), nominal -> observed:",
            {k: round(v, 3) for k, v in doc.get("coverage", {}).items()},
        )
        print(
            "randomised-PIT coverage of (d), nominal -> observed:",
            {k: round(v, 3) for k, v in doc.get("coverage_pit", {}).items()},
        )
        print(
            "uncertainty of (d):",
            {k: round(v, 3) for k, v in doc.get("nb_uncertainty", {}).items()},
        )
        print(
            "seconds per method (all folds):",
            {k: round(v) for k, v in res.timings.items()},
            "\n",
            flush=True,
        )


def _peak() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _extract_speed(store_path: str, q: mp.Queue) -> None:
    import numpy as np
    import torch

    from stimage.encoders import create_encoder
    from stimage.tiles import TileStore
    from stimage.training._features import _batches

    torch.set_num_threads(2)
    store = TileStore(store_path)
    enc = create_encoder("efficientnet_lite0", device="cpu")
    sid = store.sample_ids[0]
    tiles = store.tiles(sid)
    n = int(tiles.shape[0])
    batches = [np.asarray(tiles[i : i + 32]) for i in range(0, n, 32)]
    list(enc.encode_batches(batches[:1]))  # warm up
    # Bare forward: preprocessed tensors already in memory, model only.
    xs = [enc.preprocess(b) for b in batches]
    t0 = time.perf_counter()
    with torch.inference_mode():
        for x in xs:
            enc.forward_features(x)
    bare = n / (time.perf_counter() - t0)
    # Pipeline: read tiles from the store (zarr), preprocess, forward, copy out.
    t0 = time.perf_counter()
    for _ in enc.encode_batches(_batches(tiles, n, 32)):
        pass
    pipe = n / (time.perf_counter() - t0)
    q.put({"tiles": n, "bare": bare, "pipeline": pipe, "precision": enc.precision})


def _nb_speed(q: mp.Queue) -> None:
    import numpy as np
    import torch

    from stimage.models import NBEnsemble, NBEnsembleConfig, NBGLMConfig

    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    n, d, g = 1000, 1280, 250
    x = rng.normal(size=(n, d)).astype(np.float32)
    w = rng.normal(size=(d, g)) * 0.02
    lib = rng.uniform(2000, 20000, n)
    mu = lib[:, None] / 1e4 * np.exp(x @ w + 1.0)
    y = rng.negative_binomial(3.0, 3.0 / (3.0 + mu))
    groups = np.repeat(["a", "b", "c", "d"], n // 4)
    out = {}
    for members in (1, 5):
        t0 = time.perf_counter()
        NBEnsemble(NBEnsembleConfig(members=members, glm=NBGLMConfig())).fit(
            x, y, lib, [str(i) for i in range(g)], groups
        )
        out[members] = time.perf_counter() - t0
    q.put(out)


def _predict_memory(store_path: str, model: str, repeat: int, q: mp.Queue) -> None:
    import numpy as np
    import torch

    from stimage.models import Predictor
    from stimage.tiles import TileStore

    torch.set_num_threads(2)
    store = TileStore(store_path)
    pred = Predictor(model, device="cpu")
    tiles = store.tiles(store.sample_ids[0])
    n = min(128, int(tiles.shape[0]))  # the base; repeated x1 and x10
    before = _peak()
    t0 = time.perf_counter()
    done = 0
    for _ in range(repeat):
        for i in range(0, n, 64):
            pred.predict_tiles(np.asarray(tiles[i : i + 64]))
            done += min(64, n - i)
    q.put(
        {
            "tiles": done,
            "seconds": time.perf_counter() - t0,
            "peak_mib": _peak(),
            "before_mib": before,
        }
    )


def _child(fn, *a):  # type: ignore[no-untyped-def]
    q: mp.Queue = mp.get_context("fork").Queue()
    p = mp.get_context("fork").Process(target=fn, args=(*a, q))
    p.start()
    while True:
        try:
            return q.get(timeout=5)
        except Exception:  # noqa: BLE001 - queue.Empty: check the child is alive
            if not p.is_alive():
                raise SystemExit(f"{fn.__name__} failed (exit code {p.exitcode})") from None


def part_speed(args: argparse.Namespace) -> None:
    store = _store(args.her2st, args.work, args.tile_px)
    r = _child(_extract_speed, str(store.path))
    print(
        f"feature extraction ({r['tiles']} tiles, EfficientNet-Lite0 {r['precision']}, 2 threads): "
        f"bare forward {r['bare']:.1f} tiles/s, pipeline from the store {r['pipeline']:.1f} tiles/s "
        f"({r['pipeline'] / r['bare']:.0%} of bare)"
    )
    t = _child(_nb_speed)
    print(
        f"NB head training, 1000 spots x 250 genes, 1280 features, penalty by 4-fold group CV: "
        f"1 member {t[1]:.1f} s, 5 members {t[5]:.1f} s"
    )
    model = str(REPO / "python_backend" / "stimage" / "models" / "default")
    if not Path(model, "manifest.json").exists():
        print("no bundled default model: skipping the memory check")
        return
    rows = [_child(_predict_memory, str(store.path), model, k) for k in (1, 10)]
    for k, m in zip((1, 10), rows, strict=True):
        print(
            f"prediction x{k}: {m['tiles']} tiles in {m['seconds']:.1f} s ({m['tiles'] / m['seconds']:.1f} tiles/s), "
            f"peak RSS {m['peak_mib']:.0f} MiB"
        )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--her2st", default=str(REPO.parent / "shared" / "data" / "her2st"))
    ap.add_argument("--work", type=Path, default=REPO / ".bench" / "her2st")
    ap.add_argument("--part", choices=["cv", "speed", "all"], default="all")
    ap.add_argument("--members", type=int, default=5)
    ap.add_argument(
        "--tile-px",
        type=int,
        default=None,
        help="tile side in px of the store (default 224; e.g. 260 for Lite2 at its own size)",
    )
    ap.add_argument(
        "--encoder",
        default="efficientnet_lite0",
        help="encoder of every method (e.g. efficientnet_lite0_stages: head and pooled stages)",
    )
    ap.add_argument(
        "--context",
        type=lambda v: tuple(float(x) for x in v.split(",")) if v != "none" else None,
        default=None,
        help="spatial context rings in µm, e.g. 300,500 (default none: each spot alone)",
    )
    ap.add_argument(
        "--methods",
        default="mean,paper,ridge,ridge_cv,ridge_cv_tile,nb",
        help="comma-separated methods of the cv part (e.g. nb to re-measure ours only)",
    )
    ap.add_argument(
        "--report-suffix",
        default="",
        help="write WORK/report-<scheme><suffix> (keeps earlier reports)",
    )
    ap.add_argument(
        "--scheme",
        choices=["section", "patient", "both"],
        default="both",
        help="which cross-validation of --part cv to run",
    )
    args = ap.parse_args()
    if not (Path(args.her2st) / "ST-cnts").is_dir():
        sys.exit(f"HER2ST data not found at {args.her2st}; pass --her2st PATH")
    args.work.mkdir(parents=True, exist_ok=True)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, threads capped at 2; python {platform.python_version()}"
    )
    if args.part in ("cv", "all"):
        part_cv(args)
    if args.part in ("speed", "all"):
        part_speed(args)
    (args.work / "ran.json").write_text(json.dumps({"argv": sys.argv, "time": time.ctime()}))


if __name__ == "__main__":
    main()
