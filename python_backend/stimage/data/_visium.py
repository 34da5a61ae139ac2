"""10x Visium samples from Space Ranger output.

One section is a Space Ranger ``outs/`` folder plus the full-resolution H&E image given to
Space Ranger (the image itself is not part of the output)::

    outs/filtered_feature_bc_matrix.h5      counts of spots under tissue
    outs/raw_feature_bc_matrix.h5           counts of all spots (optional)
    outs/spatial/tissue_positions.csv       Space Ranger >= 2.0, with a header
    outs/spatial/tissue_positions_list.csv  older, no header; same columns:
        barcode, in_tissue, array_row, array_col, pxl_row_in_fullres, pxl_col_in_fullres
    outs/spatial/scalefactors_json.json     spot_diameter_fullres, tissue_hires_scalef, ...

``pxl_row_in_fullres`` is the pixel *row* (y) and ``pxl_col_in_fullres`` the pixel *column*
(x) of the spot centre in the full-resolution image, so ``obsm["spatial"]`` is
``(pxl_col, pxl_row)``.

Scale. 10x documents ``spot_diameter_fullres`` as "the number of pixels that span the diameter
of a theoretical 65 µm spot in the original, full-resolution image" and derives µm per pixel
as ``65 / spot_diameter_fullres`` (Space Ranger "Spatial outputs" page). The physical capture
spot is 55 µm wide on a 100 µm hexagonal grid; stimage stores those as spot diameter and
pitch. Where ``scalefactors_json.json`` carries ``microns_per_pixel`` (Visium HD, newer Space
Ranger) that value is used directly. The result is cross-checked against the 100 µm spot grid.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from stimage.constants import Key, Platform
from stimage.data._sample import make_sample
from stimage.data._scale import mpp_from_spot_grid
from stimage.data._tenx import read_10x_h5
from stimage.errors import (
    InputFileNotFoundError,
    InvalidSampleError,
    SpotMismatchError,
    UnknownScaleError,
)

if TYPE_CHECKING:
    import anndata as ad

__all__ = ["is_visium_folder", "mpp_from_scalefactors", "read_visium"]

logger = logging.getLogger(__name__)

#: µm spanned by ``spot_diameter_fullres`` pixels, as 10x defines that scale factor.
SCALEFACTOR_SPOT_UM = 65.0
#: Relative disagreement between two scale estimates above which a warning is logged.
SCALE_TOLERANCE = 0.10

_POSITION_COLUMNS = [
    "barcode",
    "in_tissue",
    "array_row",
    "array_col",
    "pxl_row_in_fullres",
    "pxl_col_in_fullres",
]
_POSITION_FILES = ("tissue_positions.csv", "tissue_positions_list.csv")
#: Image files that may be the full-resolution H&E (what open_slide reads).
IMAGE_SUFFIXES = (
    ".tif",
    ".tiff",
    ".btf",
    ".jpg",
    ".jpeg",
    ".png",
    ".svs",
    ".ndpi",
    ".scn",
    ".mrxs",
    ".vms",
    ".bif",
)


def _outs(folder: Path) -> Path:
    """Return the folder holding the Space Ranger files: ``folder`` or ``folder/outs``."""
    if not (folder / "spatial").is_dir() and (folder / "outs" / "spatial").is_dir():
        return folder / "outs"
    return folder


def is_visium_folder(path: str | os.PathLike[str]) -> bool:
    """Whether a folder is Space Ranger output (or holds it in ``outs/``).

    It needs a feature-barcode matrix ``.h5`` and ``spatial/tissue_positions*.csv``.
    """
    p = Path(path)
    if not p.is_dir():
        return False
    outs = _outs(p)
    has_matrix = any(
        (outs / n).is_file() for n in ("filtered_feature_bc_matrix.h5", "raw_feature_bc_matrix.h5")
    )
    return has_matrix and any((outs / "spatial" / n).is_file() for n in _POSITION_FILES)


def _read_positions(spatial: Path) -> tuple[pd.DataFrame, Path]:
    for name in _POSITION_FILES:
        path = spatial / name
        if path.is_file():
            break
    else:
        raise InputFileNotFoundError(
            f"{spatial}: no tissue_positions.csv or tissue_positions_list.csv; expected the "
            "spatial/ folder of a Space Ranger output"
        )
    try:
        with open(path, encoding="utf-8") as fh:
            first = fh.readline()
        header = first.split(",")[0].strip().strip('"') == "barcode"
        key = "barcode" if header else 0
        df = pd.read_csv(path, header=0 if header else None, dtype={key: str})
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise InvalidSampleError(f"{path}: cannot read the spot positions ({e})") from e
    if not header:
        if df.shape[1] != len(_POSITION_COLUMNS):
            raise InvalidSampleError(
                f"{path}: {df.shape[1]} columns, expected {len(_POSITION_COLUMNS)}: "
                f"{', '.join(_POSITION_COLUMNS)}"
            )
        df.columns = _POSITION_COLUMNS
    missing = [c for c in _POSITION_COLUMNS if c not in df.columns]
    if missing:
        raise InvalidSampleError(
            f"{path}: lacks column(s) {missing}; expected {', '.join(_POSITION_COLUMNS)}"
        )
    df["barcode"] = df["barcode"].astype(str)
    if df["barcode"].duplicated().any():
        dup = df["barcode"][df["barcode"].duplicated()].iloc[0]
        raise InvalidSampleError(f"{path}: barcode {dup!r} appears more than once")
    return df.set_index("barcode"), path


def _read_scalefactors(spatial: Path) -> dict[str, Any]:
    path = spatial / "scalefactors_json.json"
    if not path.is_file():
        return {}
    try:
        out = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InvalidSampleError(f"{path}: not valid JSON ({e}); copy it again") from e
    if not isinstance(out, dict):
        raise InvalidSampleError(f"{path}: expected a JSON object of scale factors")
    return out


def mpp_from_scalefactors(scalefactors: Mapping[str, Any]) -> float | None:
    """µm per full-resolution pixel from Space Ranger scale factors, if they hold it.

    ``microns_per_pixel`` when present, else ``65 / spot_diameter_fullres`` (10x's definition
    of that factor: the pixels spanning a theoretical 65 µm spot).

    Example:
        >>> round(mpp_from_scalefactors({"spot_diameter_fullres": 89.43834961}), 4)
        0.7268

    """
    for key, num in (("microns_per_pixel", None), ("spot_diameter_fullres", SCALEFACTOR_SPOT_UM)):
        try:
            value = float(scalefactors[key])
        except (KeyError, TypeError, ValueError):
            continue
        if np.isfinite(value) and value > 0:
            return value if num is None else num / value
    return None


def _find_image(folders: list[Path]) -> Path:
    found: list[Path] = []
    for folder in folders:
        if folder.is_dir():
            found += [
                p
                for p in sorted(folder.iterdir())
                if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
            ]
    found = list(dict.fromkeys(p.resolve() for p in found))
    if len(found) == 1:
        return found[0]
    where = " or ".join(str(f) for f in dict.fromkeys(folders))
    if not found:
        raise InputFileNotFoundError(
            f"{where}: no full-resolution H&E image found (Space Ranger output does not include "
            "it; spatial/tissue_hires_image.png is too small); pass the image given to Space "
            "Ranger with image= (CLI flag --image, manifest column 'image')"
        )
    raise InputFileNotFoundError(
        f"{where}: {len(found)} candidate images ({', '.join(p.name for p in found[:4])}); "
        "pass the full-resolution H&E with image= (CLI flag --image, manifest column 'image')"
    )


def cross_check_mpp(mpp: float, source: str, grid_mpp: float | None, where: str) -> None:
    """Log a warning when two µm-per-pixel estimates disagree by more than 10%."""
    if grid_mpp is None:
        return
    rel = abs(mpp - grid_mpp) / grid_mpp
    if rel > SCALE_TOLERANCE:
        logger.warning(
            "%s: µm per pixel from %s (%.4f) and from the spot grid (%.4f) differ by %.0f%%; "
            "using %s. Check the image is the full-resolution one given to Space Ranger, or "
            "give --mpp.",
            where,
            source,
            mpp,
            grid_mpp,
            100 * rel,
            source,
        )


def read_visium(
    folder: str | os.PathLike[str],
    image: str | os.PathLike[str] | None = None,
    *,
    section_id: str | None = None,
    patient_id: str | None = None,
    mpp: float | None = None,
    only_in_tissue: bool = True,
) -> ad.AnnData:
    """Read one Visium section from a Space Ranger output folder.

    Args:
        folder: The Space Ranger ``outs/`` folder (or the folder that holds ``outs/``).
        image: The full-resolution H&E image given to Space Ranger. By default the single
            image file (tif, tiff, btf, jpg, png, svs...) in ``folder`` (or beside ``outs/``).
        section_id: Section id; the name of the sample folder by default.
        patient_id: Patient id (the section id when unknown).
        mpp: µm per full-resolution pixel; else from ``scalefactors_json.json``, else from
            the 100 µm spot grid.
        only_in_tissue: Keep only spots under tissue. With ``False`` all spots of
            ``raw_feature_bc_matrix.h5`` are read when that file exists.

    Raises:
        InputFileNotFoundError: A Space Ranger file or the H&E image is missing.
        SpotMismatchError: Barcodes of the matrix have no row in the positions file.
        UnknownScaleError: No scale given, no scale factors and too few spots for the grid.

    Example:
        >>> adata = read_visium("sample1/outs", "sample1/he.tif")  # doctest: +SKIP
        >>> adata.uns["stimage"]["mpp_source"]  # doctest: +SKIP
        'scalefactors'

    """
    root = Path(folder)
    if not root.is_dir():
        raise InputFileNotFoundError(
            f"{root}: no such folder; give the Space Ranger output folder (outs/)"
        )
    outs = _outs(root)
    spatial = outs / "spatial"
    if not spatial.is_dir():
        raise InputFileNotFoundError(
            f"{outs}: no spatial/ folder; expected a Space Ranger output folder (outs/) with "
            "spatial/tissue_positions.csv and filtered_feature_bc_matrix.h5"
        )
    matrix_p = outs / "filtered_feature_bc_matrix.h5"
    if not only_in_tissue and (outs / "raw_feature_bc_matrix.h5").is_file():
        matrix_p = outs / "raw_feature_bc_matrix.h5"
    if not matrix_p.is_file():
        raise InputFileNotFoundError(
            f"{matrix_p}: feature-barcode matrix not found; expected it in the Space Ranger "
            "output folder"
        )
    if image is not None:
        image_p = Path(image)
        if not image_p.is_file():
            raise InputFileNotFoundError(
                f"{image_p}: H&E image not found; give the full-resolution image that was given "
                "to Space Ranger"
            )
    else:
        image_p = _find_image([outs, root] if outs != root else [root])
    section = section_id or (outs.parent.name if outs.name == "outs" else outs.name)

    m = read_10x_h5(matrix_p)
    pos, pos_p = _read_positions(spatial)
    no_pos = m.barcodes.difference(pos.index)
    if len(no_pos):
        raise SpotMismatchError(
            f"{matrix_p}: {len(no_pos)} of {len(m.barcodes)} barcodes have no row in "
            f"{pos_p.name} (e.g. {list(no_pos[:3])}); the matrix and spatial/ must come from the "
            "same Space Ranger run"
        )
    sp = pos.loc[m.barcodes]
    in_tissue = sp["in_tissue"].to_numpy() == 1
    keep = in_tissue if only_in_tissue else np.ones(len(sp), bool)
    if not keep.any():
        raise InvalidSampleError(f"{pos_p}: no spot of the matrix is marked in_tissue")
    counts, sp = m.counts[np.flatnonzero(keep)], sp.loc[keep]
    xy = sp[["pxl_col_in_fullres", "pxl_row_in_fullres"]].to_numpy(dtype=np.float64)

    # Scale: user, else scale factors, else the spot grid; cross-checked against the grid.
    grid_mpp: float | None = None
    grid_error: UnknownScaleError | None = None
    try:
        grid = mpp_from_spot_grid(
            pos["array_row"].to_numpy(int),
            pos["array_col"].to_numpy(int),
            pos[["pxl_col_in_fullres", "pxl_row_in_fullres"]].to_numpy(float),
            Platform.VISIUM,
            source=str(pos_p),
        )
        grid_mpp = grid.mpp
    except UnknownScaleError as e:
        logger.debug("no spot-grid scale for %s: %s", pos_p, e)
        grid_error = e
    sf = _read_scalefactors(spatial)
    if mpp is not None:
        mpp_v, mpp_src = float(mpp), "user"
    elif (sf_mpp := mpp_from_scalefactors(sf)) is not None:
        mpp_v, mpp_src = sf_mpp, "scalefactors"
    elif grid_mpp is not None:
        mpp_v, mpp_src = grid_mpp, "spot grid"
    else:
        raise UnknownScaleError(
            f"{spatial}: scalefactors_json.json has no spot_diameter_fullres and the spot grid "
            f"gives no scale ({grid_error}); give the µm per pixel with mpp= (--mpp)"
        )
    if mpp_src != "spot grid":
        cross_check_mpp(mpp_v, mpp_src, grid_mpp, str(outs))

    obs = pd.DataFrame(
        {
            Key.ARRAY_ROW: sp["array_row"].to_numpy(int),
            Key.ARRAY_COL: sp["array_col"].to_numpy(int),
            Key.IN_TISSUE: in_tissue[keep],
        },
        index=sp.index,
    )
    var = pd.DataFrame({Key.GENE_ID: m.gene_ids.to_numpy()})
    return make_sample(
        counts,
        m.genes,
        sp.index,
        xy,
        section_id=section,
        patient_id=patient_id,
        platform=Platform.VISIUM,
        slide_path=image_p,
        mpp=mpp_v,
        mpp_source=mpp_src,
        spot_diameter_um=Platform.DIAMETER_UM[Platform.VISIUM],
        spot_pitch_um=Platform.PITCH_UM[Platform.VISIUM],
        obs=obs,
        var=var,
        source_path=outs,
    )
