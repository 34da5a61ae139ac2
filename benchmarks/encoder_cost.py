#!/usr/bin/env python
"""Encoder throughput, several encoders measured interleaved in one run (ratios hold under load).

Each round encodes the same number of random tiles at each encoder's own input size, in
batches, on the CPU (bf16 autocast where the encoder uses it); rounds alternate the encoders
so that a change in machine load hits all of them. Reports the median tiles/s per encoder
and its ratio to the first.

Usage::

    python benchmarks/encoder_cost.py [--encoders efficientnet_lite0_stages,efficientnet_lite2_stages]
        [--tiles 256] [--batch-size 64] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--encoders", default="efficientnet_lite0_stages,efficientnet_lite2_stages")
    ap.add_argument("--tiles", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    import torch

    from stimage.encoders import create_encoder

    names = [n.strip() for n in args.encoders.split(",") if n.strip()]
    encoders = {n: create_encoder(n, device="cpu") for n in names}
    rng = np.random.default_rng(0)
    speeds: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(max(1, args.rounds)):
        for n, enc in encoders.items():
            s = enc.spec.input_size
            tiles = rng.integers(0, 256, (args.batch_size, s, s, 3), dtype=np.uint8)
            enc.encode(tiles[:2])  # warm
            t0 = time.perf_counter()
            done = 0
            while done < args.tiles:
                enc.encode(tiles)
                done += len(tiles)
            speeds[n].append(done / (time.perf_counter() - t0))
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; load {os.getloadavg()[0]:.1f}\n"
    )
    print("| encoder | input px | features | tiles/s (median) | ratio to the first |")
    print("|---|---|---|---|---|")
    base = float(np.median(speeds[names[0]]))
    for n in names:
        med = float(np.median(speeds[n]))
        spec = encoders[n].spec
        print(f"| {n} | {spec.input_size} | {spec.feature_dim} | {med:.1f} | {med / base:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
