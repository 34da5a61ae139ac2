"""Tiles per second for cut + tissue QC + stain normalisation of one HER2ST section.

    .venv/bin/python benchmarks/bench_tiles.py [--her2st ../shared/data/her2st] [--section B4]

Runs `prepare_dataset` (the code behind `stimage prepare`) on one section with the default
settings (200 µm tiles -> 224 px, 70% tissue, Vahadane with a per-slide fit) twice: with a
cold decoded-image cache (includes decoding the 9272 x 9923 JPEG once) and warm. Beside it,
in the same run, a naive reference on a subset of tiles: PIL opens and crops the JPEG for each
tile and staintools' VahadaneNormalizer transforms it (what the published code does per
tile). Reports tiles/s, the ratio, and peak resident memory of each phase (measured in child
processes so the phases do not share a peak).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "2")

REPO = Path(__file__).resolve().parents[1]


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _ours(her2st: str, section: str, cache: str, q: mp.Queue) -> None:
    os.environ["STIMAGE_CACHE"] = cache
    from stimage.data import load_dataset
    from stimage.tiles import TileSettings, prepare_dataset

    ds = load_dataset(her2st).select([section])
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        rep = prepare_dataset(ds, out, TileSettings(), workers=2)
        dt = time.perf_counter() - t0
    s = rep.samples[0]
    q.put({"seconds": dt, "tiles": s.kept, "spots": s.tiles, "peak_mib": _peak_mib()})


def _reference(her2st: str, section: str, n: int, q: mp.Queue) -> None:
    import numpy as np
    import staintools
    from PIL import Image

    from stimage.data import read_her2st
    from stimage.tiles import load_stain_target

    a = read_her2st(her2st, section)
    path = a.uns["stimage"]["slide_path"]
    mpp = a.uns["stimage"]["mpp"]
    side = 200 / mpp
    # Same target as ours: the bundled template's stain appearance, rendered as a reference tile.
    target_img = np.array(
        Image.open(REPO / "python_backend/stimage/examples/her2st_B4_crop/ST-imgs/B/B4/B4_crop.jpg")
    )[1000:1600, 1000:1600]
    norm = staintools.StainNormalizer(method="vahadane")
    norm.fit(target_img)
    _ = load_stain_target  # the reference does not use our code for tiles
    Image.MAX_IMAGE_PIXELS = None
    xy = a.obsm["spatial"][:n]
    t0 = time.perf_counter()
    done = 0
    for x, y in xy:
        with Image.open(path) as im:
            tile = im.crop(
                (int(x - side / 2), int(y - side / 2), int(x + side / 2), int(y + side / 2))
            ).resize((224, 224))
            arr = np.array(tile.convert("RGB"))
        with contextlib.suppress(Exception):  # staintools raises bare Exceptions on pale tiles
            norm.transform(arr)
        done += 1
    dt = time.perf_counter() - t0
    q.put({"seconds": dt, "tiles": done, "peak_mib": _peak_mib()})


def _in_child(fn, *args):  # type: ignore[no-untyped-def]
    q: mp.Queue = mp.Queue()
    p = mp.get_context("fork").Process(target=fn, args=(*args, q))
    p.start()
    while True:
        try:
            return q.get(timeout=5)
        except Exception:  # noqa: BLE001 - queue.Empty: check the child is alive
            if not p.is_alive():
                raise SystemExit(
                    f"benchmark phase {fn.__name__} failed (exit code {p.exitcode}); see above"
                ) from None


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--her2st", default=str(REPO.parent / "shared" / "data" / "her2st"))
    ap.add_argument("--section", default="B4")
    ap.add_argument("--reference-tiles", type=int, default=30)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if not (Path(args.her2st) / "ST-cnts").is_dir():
        sys.exit(f"HER2ST data not found at {args.her2st}; pass --her2st PATH")
    with tempfile.TemporaryDirectory() as cache:
        cold = _in_child(_ours, args.her2st, args.section, cache)
        warm = _in_child(_ours, args.her2st, args.section, cache)
    ref = _in_child(_reference, args.her2st, args.section, args.reference_tiles)
    rows = {
        "ours (cold cache: decodes the JPEG once)": cold,
        "ours (warm cache)": warm,
        f"reference: PIL crop + staintools per tile ({ref['tiles']} tiles)": ref,
    }
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, threads capped at 2; "
        f"python {platform.python_version()}"
    )
    print(f"section {args.section}: {cold['spots']} spots, {cold['tiles']} tiles kept\n")
    print("| pipeline | tiles | seconds | tiles/s | peak RSS (MiB) |")
    print("|---|---|---|---|---|")
    for name, r in rows.items():
        print(
            f"| {name} | {r['tiles']} | {r['seconds']:.1f} | {r['tiles'] / r['seconds']:.1f} | {r['peak_mib']:.0f} |"
        )
    ratio = (warm["tiles"] / warm["seconds"]) / (ref["tiles"] / ref["seconds"])
    print(f"\nspeed-up of ours (warm) over the reference: {ratio:.0f}x")
    if args.json:
        args.json.write_text(
            json.dumps({"cold": cold, "warm": warm, "reference": ref, "ratio": ratio}, indent=2)
        )


if __name__ == "__main__":
    main()
