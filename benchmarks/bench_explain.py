"""LIME over nuclei versus occlusion: seconds per tile and agreement, on HER2ST tiles.

    .venv/bin/python benchmarks/bench_explain.py [--her2st ../shared/data/her2st] [--section C3]
        [--tiles 3] [--num-samples 1000] [--genes ERBB2,COX6C,FASN]

The bundled default model; the spot tiles of one section with the most nuclei-dense
epithelium (highest ERBB2 counts), each explained for several genes at once by LIME (the
paper's defaults, ``--num-samples`` perturbations) and by occlusion (one forward pass per
nucleus). Prints a markdown table: nuclei, seconds, model inputs, per-gene Spearman between
the two methods' nucleus scores and sign agreement on the larger half of LIME's scores.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "2")

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--her2st", default=str(REPO.parent / "shared" / "data" / "her2st"))
    ap.add_argument("--section", default="C3")
    ap.add_argument("--tiles", type=int, default=3)
    ap.add_argument("--num-samples", type=int, default=1000)
    ap.add_argument("--genes", default="ERBB2,COX6C,FASN")
    args = ap.parse_args()
    if not (Path(args.her2st) / "ST-cnts").is_dir():
        sys.exit(f"HER2ST data not found at {args.her2st}; pass --her2st PATH")

    import numpy as np
    import torch

    from stimage.data import load_dataset, open_sample_slide
    from stimage.explain import agreement
    from stimage.models import Predictor, default_model_path
    from stimage.pipelines import explain_tile, tile_box

    torch.set_num_threads(2)
    genes = args.genes.split(",")
    predictor = Predictor(default_model_path(), device="cpu")
    spec = next(s for s in load_dataset(args.her2st) if s.sample_id == args.section)
    sample = spec.load()
    j = list(sample.var_names).index(genes[0])
    order = np.argsort(
        -np.asarray(
            sample.X[:, j].todense() if hasattr(sample.X, "todense") else sample.X[:, j]
        ).ravel()
    )
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"threads {torch.get_num_threads()}; model {predictor.bundle.name}"
    )
    print(f"command: {' '.join(sys.argv)}\n")
    print(
        "| tile (spot) | nuclei | LIME s | LIME inputs | occlusion s | occlusion inputs | speed-up | "
        + " | ".join(f"Spearman {g}" for g in genes)
        + " | sign agreement (mean) |"
    )
    print("|" + "---|" * (7 + len(genes)))
    rows = []
    with open_sample_slide(sample) as slide:
        for i in order[: args.tiles]:
            cx, cy = sample.obsm["spatial"][i]
            box = tile_box(slide, predictor.tile_um, (cx, cy))
            lime = explain_tile(
                predictor, slide, box, genes, method="lime", num_samples=args.num_samples
            )
            occ = explain_tile(predictor, slide, box, genes, method="occlusion")
            agr = agreement(lime.explanation, occ.explanation)
            le, oe = lime.explanation, occ.explanation
            rows.append((le.seconds, oe.seconds, agr))
            print(
                f"| {sample.obs_names[i]} | {len(lime.nuclei)} | {le.seconds:.1f} | {le.num_samples} | {oe.seconds:.1f} | "
                f"{oe.num_samples} | {le.seconds / oe.seconds:.1f}x | "
                + " | ".join(f"{v:.2f}" for v in agr["spearman"])
                + f" | {agr['sign_agreement_top_half'].mean():.2f} |",
                flush=True,
            )
    ls = np.mean([r[0] for r in rows])
    os_ = np.mean([r[1] for r in rows])
    rho = np.mean([r[2]["spearman"].mean() for r in rows])
    print(
        f"\nmean: LIME {ls:.1f} s/tile, occlusion {os_:.1f} s/tile ({ls / os_:.1f}x faster), mean Spearman {rho:.2f}"
    )


if __name__ == "__main__":
    main()
