"""Make the bundled example: a crop of HER2ST section B4 in the HER2ST layout.

Reproduces python_backend/stimage/examples/her2st_B4_crop/ from the full data:

    .venv/bin/python scripts/make_example.py ../shared/data/her2st

The crop keeps every spot whose 200 µm tile lies inside it, shifts the pixel positions into
the crop, and re-encodes the image as JPEG (quality 90).
"""

from __future__ import annotations

import argparse
import gzip
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

SECTION, PATIENT = "B4", "B"
# Level-0 pixel box of the crop (x0, y0, x1, y1): tumour, stroma and fat of B4's lower left.
BOX = (1150, 5300, 4350, 8500)
OUT = (
    Path(__file__).resolve().parents[1]
    / "python_backend"
    / "stimage"
    / "examples"
    / "her2st_B4_crop"
)

README = """# Bundled example: a crop of HER2ST section B4

A {w} x {h} px crop (about {mm_w:.1f} x {mm_h:.1f} mm at 0.69 µm/px) of section B4 of the
HER2-positive breast cancer spatial transcriptomics study, with the {n} spots that lie
inside it: raw counts, spot positions (shifted into the crop) and the study's cell-type
proportions. Made by `scripts/make_example.py` (crop box x {x0}-{x1}, y {y0}-{y1} of the
original image BT10737_D2_HE.jpg, re-encoded as JPEG quality 90).

Source: Andersson A. et al. Spatial deconvolution of HER2-positive breast cancer delineates
tumor-associated cell type interactions. Nat Commun 12, 6012 (2021).
https://doi.org/10.1038/s41467-021-26271-2. Data: Zenodo record 3957257 and the authors'
repository "her2st". Please cite that paper when you use these data.
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("her2st", type=Path)
    args = ap.parse_args()
    root = args.her2st
    x0, y0, x1, y1 = BOX
    spots = pd.read_csv(root / "ST-spotfiles" / f"{SECTION}_selection.tsv", sep="\t")
    counts = pd.read_csv(root / "ST-cnts" / f"{SECTION}.tsv.gz", sep="\t", index_col=0)
    prop = pd.read_csv(
        root / "ST-deconv-major" / f"{SECTION}-proportion.tsv", sep="\t", index_col=0
    )
    # Half a 200 µm tile at ~0.69 µm/px, plus a margin.
    half = 160
    inside = (
        (spots.pixel_x - half >= x0)
        & (spots.pixel_x + half < x1)
        & (spots.pixel_y - half >= y0)
        & (spots.pixel_y + half < y1)
    )
    sp = spots[inside].copy()
    sp["pixel_x"] = (sp["pixel_x"] - x0).round(2)
    sp["pixel_y"] = (sp["pixel_y"] - y0).round(2)
    ids = sp.x.astype(str) + "x" + sp.y.astype(str)
    keep = [i for i in ids if i in counts.index]
    c = counts.loc[keep]
    c = c.loc[:, c.sum(axis=0) > 0]
    OUT.mkdir(parents=True, exist_ok=True)
    for sub in ("ST-cnts", "ST-spotfiles", f"ST-imgs/{PATIENT}/{SECTION}", "ST-deconv-major"):
        (OUT / sub).mkdir(parents=True, exist_ok=True)
    with gzip.open(OUT / "ST-cnts" / f"{SECTION}.tsv.gz", "wt", compresslevel=9) as fh:
        c.to_csv(fh, sep="\t")
    sp.to_csv(OUT / "ST-spotfiles" / f"{SECTION}_selection.tsv", sep="\t", index=False)
    prop.loc[keep].to_csv(OUT / "ST-deconv-major" / f"{SECTION}-proportion.tsv", sep="\t")
    Image.MAX_IMAGE_PIXELS = None
    with Image.open(root / "ST-imgs" / PATIENT / SECTION / "BT10737_D2_HE.jpg") as im:
        crop = im.crop(BOX)
        crop.save(
            OUT / "ST-imgs" / PATIENT / SECTION / f"{SECTION}_crop.jpg", quality=90, optimize=True
        )
    w, h = x1 - x0, y1 - y0
    (OUT / "README.md").write_text(
        README.format(
            w=w,
            h=h,
            mm_w=w * 0.69 / 1000,
            mm_h=h * 0.69 / 1000,
            n=len(keep),
            x0=x0,
            x1=x1,
            y0=y0,
            y1=y1,
        )
    )
    print(f"{OUT}: {len(keep)} spots ({int(inside.sum())} positions), {c.shape[1]} genes")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
