"""Fixtures writing small synthetic Space Ranger and Xenium outputs into tmp_path.

Every fixture returns a factory so that a test can vary one aspect (the positions file
variant, the scale factors, the alignment) and knows the exact values it wrote.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
import pytest
import tifffile

#: Size of the synthetic H&E images (width, height).
IMAGE_W, IMAGE_H = 2000, 1500


def _write_image(path: Path, width: int = IMAGE_W, height: int = IMAGE_H) -> Path:
    img = np.full((height, width, 3), 235, np.uint8)
    img[height // 3 : 2 * height // 3, width // 4 : 3 * width // 4] = (180, 90, 160)
    tifffile.imwrite(path, img, photometric="rgb", compression="zlib")
    return path


@pytest.fixture
def write_image() -> Callable[..., Path]:
    """Write a small RGB TIFF (default 2000 x 1500 px) and return its path."""
    return _write_image


def _write_10x_h5(
    path: Path,
    counts: np.ndarray,
    barcodes: list[str],
    names: list[str],
    ids: list[str] | None = None,
    types: list[str] | None = None,
    vlen: bool = False,
) -> Path:
    """Write ``counts`` (barcodes x features) in the 10x HDF5 layout (CSC per barcode)."""
    from scipy import sparse

    csc = sparse.csc_matrix(np.asarray(counts).T)  # features x barcodes, column per barcode
    ids = ids or [f"ENSG{i:011d}" for i in range(len(names))]
    types = types or ["Gene Expression"] * len(names)

    def strings(values: list[str]) -> Any:
        if vlen:
            return np.array(values, dtype=h5py.string_dtype())
        return np.array([v.encode() for v in values], dtype=f"S{max(1, *map(len, values))}")

    with h5py.File(path, "w") as f:
        g = f.create_group("matrix")
        g["barcodes"] = strings(barcodes)
        g["data"] = csc.data.astype(np.int32)
        g["indices"] = csc.indices.astype(np.int64)
        g["indptr"] = csc.indptr.astype(np.int64)
        g["shape"] = np.array(csc.shape, dtype=np.int32)
        fg = g.create_group("features")
        fg["id"] = strings(ids)
        fg["name"] = strings(names)
        fg["feature_type"] = strings(types)
        fg["genome"] = strings(["GRCh38"] * len(names))
    return path


@pytest.fixture
def write_10x_h5() -> Callable[..., Path]:
    """Write a 10x feature-barcode matrix .h5: ``(path, counts, barcodes, names, ...)``."""
    return _write_10x_h5


def _barcode(i: int) -> str:
    letters = "ACGT"
    return "".join(letters[(i >> (2 * k)) & 3] for k in range(16)) + "-1"


@dataclass
class VisiumCase:
    """A synthetic Space Ranger output and the values written into it."""

    root: Path
    outs: Path
    image: Path | None
    positions: pd.DataFrame  # all spots, indexed by barcode
    counts: pd.DataFrame  # in-tissue spots x genes (the filtered matrix)
    genes: list[str]
    gene_ids: list[str]
    mpp: float
    extra: dict[str, Any] = field(default_factory=dict)


def _make_visium(
    tmp_path: Path,
    *,
    variant: str = "csv",
    mpp: float = 0.5,
    spot_diameter_fullres: float | None = None,
    scalefactors: bool = True,
    image: str | None = "outs",
    raw_matrix: bool = False,
    extra_barcodes: int = 0,
    name: str = "sample1",
) -> VisiumCase:
    """Write ``<tmp>/<name>/outs`` with a 6 x 16 hexagonal Visium array at ``mpp`` µm/px.

    Neighbouring spots are 100 µm apart: array columns step 100 / 2 µm in x, rows
    100 * sqrt(3) / 2 µm in y. The spots of rows 1-4 and columns 2-13 are under tissue.
    """
    root = tmp_path / name
    outs = root / "outs"
    spatial = outs / "spatial"
    spatial.mkdir(parents=True)
    px_per_um = 1.0 / mpp
    rows, cols = [], []
    for r in range(6):
        for c in range(r % 2, 16, 2):
            rows.append(r)
            cols.append(c)
    rows_a, cols_a = np.array(rows), np.array(cols)
    x = np.round(40 + cols_a * 50.0 * px_per_um).astype(int)
    y = np.round(60 + rows_a * 50.0 * np.sqrt(3) * px_per_um).astype(int)
    in_tissue = ((rows_a >= 1) & (rows_a <= 4) & (cols_a >= 2) & (cols_a <= 13)).astype(int)
    barcodes = [_barcode(i) for i in range(len(rows))]
    pos = pd.DataFrame(
        {
            "barcode": barcodes,
            "in_tissue": in_tissue,
            "array_row": rows_a,
            "array_col": cols_a,
            "pxl_row_in_fullres": y,
            "pxl_col_in_fullres": x,
        }
    )
    if variant == "csv":
        pos.to_csv(spatial / "tissue_positions.csv", index=False)
    else:
        pos.to_csv(spatial / "tissue_positions_list.csv", index=False, header=False)
    if scalefactors:
        d = 65.0 / mpp if spot_diameter_fullres is None else spot_diameter_fullres
        (spatial / "scalefactors_json.json").write_text(
            json.dumps(
                {
                    "spot_diameter_fullres": d,
                    "tissue_hires_scalef": 0.25,
                    "fiducial_diameter_fullres": d * 1.615,
                    "tissue_lowres_scalef": 0.075,
                }
            )
        )
    rng = np.random.default_rng(0)
    genes = ["GAPDH", "ERBB2", "ACTB", "KRT19", "CD74"]
    gene_ids = [f"ENSG0000000000{i}" for i in range(len(genes))]
    all_counts = rng.poisson(3.0, size=(len(barcodes), len(genes))).astype(np.int32)
    all_df = pd.DataFrame(all_counts, index=barcodes, columns=genes)
    tissue_bc = [b for b, t in zip(barcodes, in_tissue, strict=True) if t]
    filtered = all_df.loc[tissue_bc]
    mat_bc = tissue_bc + [_barcode(10_000 + i) for i in range(extra_barcodes)]
    mat = np.vstack([filtered.to_numpy(), np.ones((extra_barcodes, len(genes)), np.int32)])
    _write_10x_h5(outs / "filtered_feature_bc_matrix.h5", mat, mat_bc, genes, gene_ids)
    if raw_matrix:
        _write_10x_h5(outs / "raw_feature_bc_matrix.h5", all_counts, barcodes, genes, gene_ids)
    img = None
    if image == "outs":
        img = _write_image(outs / "he_fullres.tif")
    elif image == "root":
        img = _write_image(root / "he_fullres.tif")
    return VisiumCase(
        root=root,
        outs=outs,
        image=img,
        positions=pos.set_index("barcode"),
        counts=filtered,
        genes=genes,
        gene_ids=gene_ids,
        mpp=mpp,
        extra={"all_counts": all_df},
    )


@pytest.fixture
def make_visium(tmp_path: Path) -> Callable[..., VisiumCase]:
    """Factory writing a synthetic Space Ranger output (see :func:`_make_visium`)."""
    return lambda **kw: _make_visium(tmp_path, **kw)


#: Xenium morphology pixel size (µm) used by the synthetic runs.
PIXEL_SIZE = 0.2125
#: H&E pixels -> Xenium morphology pixels: 2 morphology px per H&E px, shifted.
ALIGNMENT = np.array([[2.0, 0.0, -100.0], [0.0, 2.0, -50.0], [0.0, 0.0, 1.0]])


@dataclass
class XeniumCase:
    """A synthetic Xenium output and the values written into it."""

    folder: Path
    image: Path | None
    alignment_path: Path | None
    cells: pd.DataFrame  # indexed by cell_id: x_centroid, y_centroid (µm)
    counts: pd.DataFrame  # cells x genes (gene-expression features only)
    matrix: np.ndarray
    pixel_size: float
    alignment: np.ndarray | None
    image_size: tuple[int, int] = (IMAGE_W, IMAGE_H)


def _make_xenium(
    tmp_path: Path,
    *,
    xy_um: np.ndarray | None = None,
    n_cells: int = 300,
    alignment: np.ndarray | str | None = None,
    pixel_size: float | None = PIXEL_SIZE,
    image: bool = True,
    cells_format: str = "csv.gz",
    extra_matrix_cells: int = 0,
    seed: int = 1,
) -> XeniumCase:
    """Write a Xenium output folder: matrix with control features, cells table, manifest,
    an OME-TIFF H&E (2000 x 1500 px) and its alignment CSV.

    Cells lie uniformly in 0-600 x 0-500 µm unless ``xy_um`` is given; with the default
    alignment that region is inside the H&E (0.425 µm per H&E pixel).
    """
    folder = tmp_path / "xenium_run"
    folder.mkdir()
    rng = np.random.default_rng(seed)
    if xy_um is None:
        xy_um = np.c_[rng.uniform(0, 600, n_cells), rng.uniform(0, 500, n_cells)]
    xy_um = np.asarray(xy_um, dtype=float)
    ids = [f"cell{i:04d}-1" for i in range(len(xy_um))]
    cells = pd.DataFrame(
        {
            "cell_id": ids,
            "x_centroid": xy_um[:, 0],
            "y_centroid": xy_um[:, 1],
            "transcript_counts": 0,
            "cell_area": 50.0,
        }
    )
    genes = ["EPCAM", "PTPRC", "VIM", "KRT8"]
    names = [*genes, "NegControlProbe_00042", "NegControlCodeword_0500", "BLANK_0006"]
    types = ["Gene Expression"] * 4 + [
        "Negative Control Probe",
        "Negative Control Codeword",
        "Blank Codeword",
    ]
    counts = rng.poisson(2.0, size=(len(ids), len(names))).astype(np.int32)
    cells["transcript_counts"] = counts[:, :4].sum(axis=1)
    mat_ids = ids + [f"ghost{i}" for i in range(extra_matrix_cells)]
    mat = np.vstack([counts, np.ones((extra_matrix_cells, len(names)), np.int32)])
    _write_10x_h5(folder / "cell_feature_matrix.h5", mat, mat_ids, names, types=types)
    if cells_format == "csv.gz":
        cells.to_csv(folder / "cells.csv.gz", index=False, compression="gzip")
    elif cells_format == "parquet":
        cells.to_parquet(folder / "cells.parquet")
    if pixel_size is not None:
        (folder / "experiment.xenium").write_text(
            json.dumps(
                {
                    "major_version": 5,
                    "run_name": "synthetic",
                    "pixel_size": pixel_size,
                    "analysis_sw_version": "xenium-3.0.0.15",
                }
            )
        )
    img = _write_image(folder / "run_he_image.ome.tif") if image else None
    align_p = None
    if alignment is None:
        alignment = ALIGNMENT
    if not isinstance(alignment, str):
        align_p = folder / "run_he_imagealignment.csv"
        np.savetxt(align_p, alignment, delimiter=",")
    return XeniumCase(
        folder=folder,
        image=img,
        alignment_path=align_p,
        cells=cells.set_index("cell_id"),
        counts=pd.DataFrame(counts[:, :4], index=ids, columns=genes),
        matrix=counts,
        pixel_size=pixel_size or PIXEL_SIZE,
        alignment=None if isinstance(alignment, str) else np.asarray(alignment, float),
    )


@pytest.fixture
def make_xenium(tmp_path: Path) -> Callable[..., XeniumCase]:
    """Factory writing a synthetic Xenium output (see :func:`_make_xenium`)."""
    return lambda **kw: _make_xenium(tmp_path, **kw)


@pytest.fixture
def visium_muscle() -> Path:
    """The real Space Ranger 1.0 output ``Vis5A`` (``$STIMAGE_VISIUM_MUSCLE`` or
    ``../shared/data/visium_muscle/Vis5A``); the test is skipped when it is absent."""
    import os

    from _synth import REPO

    env = os.environ.get("STIMAGE_VISIUM_MUSCLE")
    p = Path(env) if env else REPO.parent / "shared" / "data" / "visium_muscle" / "Vis5A"
    if not (p / "outs" / "spatial").is_dir():
        pytest.skip(
            "real Visium data not found (set STIMAGE_VISIUM_MUSCLE or provide "
            "../shared/data/visium_muscle/Vis5A)"
        )
    return p
