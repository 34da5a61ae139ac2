"""Prediction at the encoder's speed: predict_tiles against the bare encoder on the same batches.

    .venv/bin/python benchmarks/bench_predict.py [--her2st ../shared/data/her2st] [--batches 8]

Cuts real tissue tiles of one HER2ST section (or the bundled example when the data are absent)
at the default model's 200 µm, 224 px, and times, alternating batch by batch so both see the
same load: ``Predictor.features`` (the encoder alone) and ``Predictor.predict_tiles`` (the
encoder, the NB ensemble, the depth model, every output of the schema with its exact 90%
interval and P(high), for all 301 genes). Reports tiles/s of each and their ratio (the
target: prediction at 80% or more of the encoder's throughput), and the time of the head
alone (the NB mixture summary) per batch.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "2")

REPO = Path(__file__).resolve().parents[1]


def _tiles(her2st: str, n: int, px: int):  # type: ignore[no-untyped-def]
    import numpy as np

    from stimage.data import load_dataset, open_sample_slide
    from stimage.examples import example_path

    root = her2st if Path(her2st).is_dir() else example_path()
    spec = next(iter(load_dataset(root)))
    sample = spec.load()
    xy = sample.obsm["spatial"]
    with open_sample_slide(sample) as slide:
        side = 200.0 / slide.mpp
        tiles = [
            slide.read_region(x - side / 2, y - side / 2, side, side, out_size=(px, px))
            for x, y in xy[: max(n, 1)]
        ]
    while len(tiles) < n:
        tiles += tiles[: n - len(tiles)]
    return np.stack(tiles[:n]), spec.sample_id


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--her2st", default=str(REPO.parent / "shared" / "data" / "her2st"))
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = ap.parse_args()
    import numpy as np
    import torch

    from stimage.models import Predictor, default_model_path

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    p = Predictor(default_model_path(), device="cpu")
    tiles, section = _tiles(args.her2st, args.batch_size * args.batches, p.tile_px)
    p.predict_tiles(tiles[:8])  # warm-up
    # Each batch as a block of touching tiles, so a model with spatial context joins every
    # tile with its neighbours (as in a slide or region), at 200 µm between centres.
    side = int(np.ceil(np.sqrt(args.batch_size)))
    xy = np.stack(np.divmod(np.arange(args.batch_size), side), axis=1)[:, ::-1] * 200.0

    def predict(batch):  # type: ignore[no-untyped-def]
        return p.predict_tiles(batch, xy_um=xy[: len(batch)])

    t_feat = t_pred = t_head = 0.0
    for k in range(args.batches):
        batch = tiles[k * args.batch_size : (k + 1) * args.batch_size]
        # alternate the order, so neither side always runs first under changing load
        first, second = (p.features, predict) if k % 2 == 0 else (predict, p.features)
        t0 = time.perf_counter()
        first(batch)
        t1 = time.perf_counter()
        second(batch)
        t2 = time.perf_counter()
        a, b = (t1 - t0, t2 - t1) if k % 2 == 0 else (t2 - t1, t1 - t0)
        feats = p.features(batch)
        t3 = time.perf_counter()
        p.predict_encoded(feats, xy_um=xy[: len(batch)])
        t4 = time.perf_counter()
        t_feat, t_pred, t_head = t_feat + a, t_pred + b, t_head + t4 - t3
    n = args.batch_size * args.batches
    out = {
        "tiles": n,
        "section": section,
        "genes": len(p.bundle.genes),
        "encoder_tiles_per_s": round(n / t_feat, 1),
        "predict_tiles_per_s": round(n / t_pred, 1),
        "ratio": round(t_feat / t_pred, 3),
        "head_ms_per_batch": round(1000 * t_head / args.batches, 1),
        "threads": torch.get_num_threads(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "load_average": [round(v, 2) for v in os.getloadavg()],
    }
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
