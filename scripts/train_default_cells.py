"""Train the bundled default cell-type model from the HER2ST spot proportions.

    .venv/bin/python scripts/train_default_cells.py [--her2st ../shared/data/her2st] [--cache .bench/celltypes]

Nuclei inside every spot of all HER2ST sections (classical segmenter, cached as Parquet in
--cache, shared with scripts/benchmark_celltypes.py), features of each nucleus and of a 20 µm
patch around it, a one-hidden-layer classifier trained so that each spot's nuclei match the
spot's stereoscope proportions (8 types mapped onto immune / stromal / epithelial /
endothelial). The held-out numbers of this configuration come from
scripts/benchmark_celltypes.py (docs/benchmarks.md). Writes
python_backend/stimage/models/default_cells/ (a few kB).
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
OUT = REPO / "python_backend" / "stimage" / "models" / "default_cells"


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--her2st", default=str(REPO.parent / "shared" / "data" / "her2st"))
    ap.add_argument("--cache", type=Path, default=REPO / ".bench" / "celltypes")
    args = ap.parse_args()
    if not (Path(args.her2st) / "ST-cnts").is_dir():
        sys.exit(f"HER2ST data not found at {args.her2st}; pass --her2st PATH")
    from stimage.models import train_celltypes_from_dataset

    model = train_celltypes_from_dataset(
        args.her2st, cache_dir=args.cache, margin_um=30.0, verbose=True
    )
    model.training["name"] = "stimage-default-cells-her2st"
    model.training["data"] = (
        "HER2ST (Andersson et al., Nat Commun 12, 6012 (2021)), stereoscope proportions"
    )
    if OUT.exists():
        shutil.rmtree(OUT)
    model.save(OUT)
    size = sum(p.stat().st_size for p in OUT.iterdir()) / 1e3
    print(f"wrote {OUT} ({size:.1f} kB, classes {list(model.classes)})")


if __name__ == "__main__":
    main()
