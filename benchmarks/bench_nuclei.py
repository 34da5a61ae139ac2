"""Nuclei per second and megapixels per second of nucleus segmentation on a HER2ST region.

    .venv/bin/python benchmarks/bench_nuclei.py [--her2st ../shared/data/her2st] [--section B4]
        [--size 4000] [--reference-tiles 4]

Segments a size x size px region (full resolution, centred on the section's spots) with
``segment_nuclei`` and the default classical segmenter: 1024 px tiles with 20 µm overlap,
merged without duplicates, outlines and features for every nucleus. The slide's decoded-image
cache is warmed first, so JPEG decoding is not timed. Beside it, in the same run, the STImage
reference code's watershed on a few 1024 px tiles of the same region (rgb2hed, haematoxylin
rescaled, 0.7 x Otsu, fill holes, distance transform, peak_local_max 5 x 5, watershed, objects
under 64 px removed) with skimage ``regionprops_table`` for the same features and
``find_contours`` for the outlines. Also reports
nuclei per 100 µm spot (centroid within 50 µm of a spot centre) and nucleus areas, as a
sanity check of the segmentation. Prints machine information and markdown rows for
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "2")

import numpy as np  # noqa: E402  (after the thread caps)

REPO = Path(__file__).resolve().parents[1]


def _reference_tile(rgb: np.ndarray) -> int:
    """The STImage reference code's segmentation plus skimage features; returns the count."""
    from scipy import ndimage as ndi
    from skimage.color import rgb2hed
    from skimage.exposure import rescale_intensity
    from skimage.feature import peak_local_max
    from skimage.filters import threshold_otsu
    from skimage.measure import regionprops_table
    from skimage.segmentation import relabel_sequential, watershed

    hed = rgb2hed(rgb)
    h = rescale_intensity(hed[..., 0], out_range=(0.0, 1.0))
    mask = ndi.binary_fill_holes(h > 0.7 * threshold_otsu(h))
    dist = ndi.distance_transform_edt(mask)
    peaks = peak_local_max(dist, footprint=np.ones((5, 5)), labels=mask.astype(np.int32))
    markers = np.zeros(mask.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    labels = watershed(-dist, markers, mask=mask)
    small = np.bincount(labels.ravel()) < 64
    small[0] = True
    labels = relabel_sequential(np.where(small[labels], 0, labels))[0]
    if labels.max() == 0:
        return 0
    props = regionprops_table(
        labels,
        intensity_image=np.dstack([hed[..., 0], hed[..., 1], rgb]),
        properties=(
            "area",
            "perimeter",
            "eccentricity",
            "solidity",
            "axis_major_length",
            "axis_minor_length",
            "centroid",
            "intensity_mean",
            "image",
        ),
    )
    from skimage.measure import find_contours

    outlines = [
        max(find_contours(np.pad(im, 1).astype(float), 0.5), key=len) for im in props["image"]
    ]
    return len(outlines)


def _machine() -> str:
    import cv2
    import skimage

    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical cores, "
        f"threads capped at {os.environ['OMP_NUM_THREADS']}; python {platform.python_version()}, "
        f"numpy {np.__version__}, scikit-image {skimage.__version__}, OpenCV {cv2.__version__}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--her2st", default=str(REPO.parent / "shared" / "data" / "her2st"))
    ap.add_argument("--section", default=None, help="section id (default: the first found)")
    ap.add_argument("--size", type=int, default=4000, help="region side in full-res pixels")
    ap.add_argument("--tile-px", type=int, default=1024)
    ap.add_argument("--reference-tiles", type=int, default=4, help="0 skips the reference")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if not (Path(args.her2st) / "ST-cnts").is_dir():
        sys.exit(f"HER2ST data not found at {args.her2st}; pass --her2st PATH")

    from stimage.data import her2st_sections, open_sample_slide, read_her2st
    from stimage.explain import segment_nuclei

    sections = her2st_sections(args.her2st)
    section = args.section or sections[0]
    if section not in sections:
        sys.exit(f"section {section!r} not in {args.her2st}; there are {', '.join(sections)}")
    adata = read_her2st(args.her2st, section)
    slide = open_sample_slide(adata)  # decodes the JPEG into the cache once (not timed below)
    mpp = slide.mpp
    spots = np.asarray(adata.obsm["spatial"], dtype=float)
    w, h = slide.dimensions
    size = min(args.size, w, h)
    cx, cy = np.median(spots, axis=0)
    x0 = int(np.clip(cx - size / 2, 0, w - size))
    y0 = int(np.clip(cy - size / 2, 0, h - size))
    slide.read_region(x0, y0, size, size, downsample=8)  # touch the memory map

    t0 = time.perf_counter()
    nuclei = segment_nuclei(slide, (x0, y0, size, size), tile_px=args.tile_px)
    dt = time.perf_counter() - t0
    mp = size * size / 1e6
    f = nuclei.features
    inside = (
        (spots[:, 0] > x0 + 50 / mpp)
        & (spots[:, 0] < x0 + size - 50 / mpp)
        & (spots[:, 1] > y0 + 50 / mpp)
        & (spots[:, 1] < y0 + size - 50 / mpp)
    )
    from scipy.spatial import cKDTree

    tree = cKDTree(nuclei.centroids)
    per_spot = np.array([len(v) for v in tree.query_ball_point(spots[inside], 50 / mpp)])
    ours = {
        "section": section,
        "mpp": mpp,
        "region": [x0, y0, size, size],
        "tiles": nuclei.info["tiles"],
        "nuclei": len(nuclei),
        "seconds": dt,
        "nuclei_per_s": len(nuclei) / dt,
        "mpix_per_s": mp / dt,
        "spots": int(inside.sum()),
        "nuclei_per_spot_median": float(np.median(per_spot)) if len(per_spot) else None,
        "nuclei_per_spot_p10_p90": np.percentile(per_spot, [10, 90]).tolist()
        if len(per_spot)
        else None,
        "area_um2_median": float(f["area_um2"].median()),
        "area_um2_p10_p90": f["area_um2"].quantile([0.1, 0.9]).tolist(),
    }
    ref = None
    if args.reference_tiles > 0:
        tp = args.tile_px
        grid = [(x0 + i * tp, y0 + j * tp) for j in range(size // tp) for i in range(size // tp)]
        rng = np.random.default_rng(0)
        pick = [grid[k] for k in rng.permutation(len(grid))[: args.reference_tiles]]
        n_ref, t_ref = 0, 0.0
        for tx, ty in pick:
            rgb = slide.read_region(tx, ty, tp, tp)
            t1 = time.perf_counter()
            n_ref += _reference_tile(rgb)
            t_ref += time.perf_counter() - t1
        ref = {
            "tiles": len(pick),
            "nuclei": n_ref,
            "seconds": t_ref,
            "nuclei_per_s": n_ref / t_ref,
            "mpix_per_s": len(pick) * tp * tp / 1e6 / t_ref,
        }

    print(f"machine: {_machine()}")
    print(
        f"section {section} ({mpp:.3f} µm/px): region x {x0}, y {y0}, {size} x {size} px "
        f"({size * mpp / 1000:.2f} mm square), {ours['tiles']} tiles of {args.tile_px} px"
    )
    if ours["nuclei_per_spot_median"] is not None:
        lo, hi = ours["nuclei_per_spot_p10_p90"]
        print(
            f"nuclei per 100 µm spot ({ours['spots']} spots): median "
            f"{ours['nuclei_per_spot_median']:.0f} (10-90%: {lo:.0f}-{hi:.0f}); nucleus area "
            f"median {ours['area_um2_median']:.0f} µm² (10-90%: "
            f"{ours['area_um2_p10_p90'][0]:.0f}-{ours['area_um2_p10_p90'][1]:.0f})\n"
        )
    print("| pipeline | section | megapixels | nuclei | seconds | nuclei/s | megapixels/s |")
    print("|---|---|---|---|---|---|---|")
    print(
        f"| ours: segment_nuclei, classical, tiles merged | {section} | {mp:.1f} | "
        f"{len(nuclei)} | {dt:.1f} | {ours['nuclei_per_s']:.0f} | {ours['mpix_per_s']:.2f} |"
    )
    if ref is not None:
        print(
            f"| reference watershed + regionprops ({ref['tiles']} tiles, no merging) | {section} | "
            f"{ref['tiles'] * args.tile_px**2 / 1e6:.1f} | {ref['nuclei']} | {ref['seconds']:.1f} | "
            f"{ref['nuclei_per_s']:.0f} | {ref['mpix_per_s']:.2f} |"
        )
        print(
            f"\nmegapixels/s of ours over the reference: {ours['mpix_per_s'] / ref['mpix_per_s']:.1f}x"
        )
    if args.json:
        args.json.write_text(json.dumps({"ours": ours, "reference": ref}, indent=2))


if __name__ == "__main__":
    main()
