#!/usr/bin/env python
"""Nuclei segmentation and cell types against a small hand-labelled set (HER2ST B4).

``benchmarks/hand_labels/her2st_B4_nuclei.csv`` holds nucleus centres marked by eye in three
crops of section B4 (see that folder's README: who labelled them, how, and what the labels
can and cannot say). This script segments each crop (with a margin so that edge nuclei are
whole), matches detections to labels one to one within ``--match-um`` (Hungarian, on
centroid distance) and reports:

* detection: recall over every labelled nucleus; precision only in the crops labelled
  exhaustively (every nucleus marked), counting detections whose centroid lies in the crop;
* cell types: for the labelled stromal and immune nuclei, the share of each class called by
  a cell-type model trained on the other sections (C2, C3, C4: B4 held out), under the
  model's calling rule and, for comparison, the plain most-probable class.

Usage::

    python benchmarks/celltype_hand_labels.py [--data ../shared/data/her2st]
        [--cache .bench/celltypes] [--model DIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

LABELS = Path(__file__).with_name("hand_labels") / "her2st_B4_nuclei.csv"


def match(det: np.ndarray, lab: np.ndarray, radius_px: float) -> list[tuple[int, int]]:
    """One-to-one pairs (detection, label) within ``radius_px``, minimising total distance."""
    from scipy.optimize import linear_sum_assignment
    from scipy.spatial.distance import cdist

    if not len(det) or not len(lab):
        return []
    d = cdist(det, lab)
    big = 1e6
    r, c = linear_sum_assignment(np.where(d <= radius_px, d, big))
    return [(int(i), int(j)) for i, j in zip(r, c, strict=True) if d[i, j] <= radius_px]


def held_out_model(data_root: str, cache: str, held: str = "B4"):
    """A cell-type model trained (default settings) on every section but ``held``."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import benchmark_celltypes as bc

    from stimage.models import collect_spot_nuclei, train_celltypes_from_dataset

    base = collect_spot_nuclei(
        data_root,
        context_um=None,
        patch_um=None,
        segmenter="classical",
        target_mpp=0.5,
        margin_um=30.0,
        cache_dir=cache,
    )
    patch = bc._patch_columns(base, data_root, 20.0)
    data = bc._with_context(base, None, patch, 20.0)
    return train_celltypes_from_dataset(data.select([s for s in data.sections if s != held]))


def evaluate(model, data_root: str, match_um: float = 6.0) -> dict:
    """Detection and class shares on the hand labels (see the module docstring)."""
    from stimage.data import open_sample_slide, read_her2st
    from stimage.explain import segment_nuclei
    from stimage.models import classify_nuclei

    labels = pd.read_csv(LABELS)
    out: dict = {"crops": []}
    called_rows = []
    with open_sample_slide(read_her2st(data_root, "B4")) as slide:
        radius = match_um / slide.mpp
        for crop, lab in labels.groupby("crop", sort=False):
            x0, y0, size = (int(lab[c].iat[0]) for c in ("crop_x", "crop_y", "crop_size_px"))
            m = round(30.0 / slide.mpp)
            nuclei = segment_nuclei(slide, (x0 - m, y0 - m, size + 2 * m, size + 2 * m))
            f = nuclei.features
            det = f[["centroid_x", "centroid_y"]].to_numpy(float)
            pairs = match(det, lab[["x", "y"]].to_numpy(float), radius)
            inside = (
                (det[:, 0] >= x0)
                & (det[:, 0] < x0 + size)
                & (det[:, 1] >= y0)
                & (det[:, 1] < y0 + size)
            )
            matched_det = {i for i, _ in pairs}
            row = {
                "crop": crop,
                "labelled": len(lab),
                "found": len(pairs),
                "exhaustive": bool(lab["exhaustive"].iat[0]),
                "detections_in_crop": int(inside.sum()),
                "unmatched_in_crop": int(
                    sum(1 for i in np.flatnonzero(inside) if i not in matched_det)
                ),
            }
            out["crops"].append(row)
            if model is not None and len(f):
                types = classify_nuclei(model, nuclei, slide=slide)
                for i, j in pairs:
                    called_rows.append(
                        {
                            "crop": crop,
                            "truth": lab["class"].iat[j],
                            "called": types["class"].iat[i],
                            "argmax": model.classes[
                                int(
                                    np.argmax(
                                        types[[f"P({c})" for c in model.classes]].iloc[i].to_numpy()
                                    )
                                )
                            ],
                        }
                    )
    out["called"] = pd.DataFrame(called_rows)
    return out


def _md(df: pd.DataFrame, index: bool = True) -> str:
    """A Markdown table (no tabulate needed)."""
    d = df.reset_index() if index else df
    cols = [str(c) for c in d.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in d.itertuples(index=False):
        lines.append(
            "| " + " | ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in r) + " |"
        )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="../shared/data/her2st")
    ap.add_argument("--cache", default=".bench/celltypes")
    ap.add_argument("--model", help="a cell-type model folder (default: train one without B4)")
    ap.add_argument("--match-um", type=float, default=6.0)
    args = ap.parse_args()
    if not Path(args.data).is_dir():
        print(f"HER2ST data not found at {args.data}; give --data", file=sys.stderr)
        return 2
    if args.model:
        from stimage.models import load_celltype_model

        model = load_celltype_model(args.model)
    else:
        model = held_out_model(args.data, args.cache)
    res = evaluate(model, args.data, args.match_um)
    crops = pd.DataFrame(res["crops"])
    print("## Detection against the hand labels (B4)\n")
    print(_md(crops, index=False))
    rec = crops["found"].sum() / crops["labelled"].sum()
    ex = crops[crops["exhaustive"]]
    n_in = ex["detections_in_crop"].sum()
    prec = (n_in - ex["unmatched_in_crop"].sum()) / max(n_in, 1)
    print(f"\nrecall {rec:.2f} (all crops); precision {prec:.2f} (exhaustive crops)\n")
    c = res["called"]
    if len(c):
        c = c[c["truth"] != "unknown"]
        print("matched labelled nuclei:", c["truth"].value_counts().to_dict(), "\n")
        for rule in ("called", "argmax"):
            print(f"## Cell types of matched labelled nuclei: {rule}\n")
            print(_md(pd.crosstab(c["truth"], c[rule], normalize="index")))
            print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
