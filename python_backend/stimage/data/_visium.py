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
from stimage.data._grid import SpotTable, make_grid_sample, resolve_scale
from stimage.data._tables import read_text_table
from stimage.data._tenx import read_10x_h5
from stimage.errors import InputFileNotFoundError, InvalidSampleError

if TYPE_CHECKING:
    import anndata as ad

__all__ = ["is_visium_folder", "mpp_from_scalefactors", "read_visium"]

logger = logging.getLogger(__name__)

#: µm spanned by ``spot_diameter_fullres`` pixels, as 10x defines that scale factor.
SCALEFACTOR_SPOT_UM = 65.0

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


def _read_positions(spatial: Path) -> SpotTable:
    """The spot positions file (with or without its header) as a :class:`SpotTable`."""
    path = next((spatial / n for n in _POSITION_FILES if (spatial / n).is_file()), None)
    if path is None:
        raise InputFileNotFoundError(
            f"{spatial}: no tissue_positions.csv or tissue_positions_list.csv; expected the "
            "spatial/ folder of a Space Ranger output"
        )
    try:
        with open(path, encoding="utf-8") as fh:
            header = fh.readline().split(",")[0].strip().strip('"') == "barcode"
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidSampleError(f"{path}: cannot read the spot positions ({e})") from e
    df = read_text_table(
        path,
        "spot positions",
        header=0 if header else None,
        dtype={"barcode" if header else 0: str},
    )
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
    return _spot_table(df, path)


def _spot_table(df: pd.DataFrame, path: Path) -> SpotTable:
    barcodes = df["barcode"].astype(str)
    if barcodes.duplicated().any():
        raise InvalidSampleError(
            f"{path}: barcode {barcodes[barcodes.duplicated()].iloc[0]!r} appears more than once"
        )
    empty = df[_POSITION_COLUMNS[1:]].isna().any(axis=1).to_numpy()
    if empty.any():
        raise InvalidSampleError(
            f"{path}: spot {barcodes.iloc[int(np.flatnonzero(empty)[0])]!r} has empty values; "
            f"every spot needs {', '.join(_POSITION_COLUMNS[1:])}"
        )
    spots = pd.DataFrame(
        {
            "array_row": df["array_row"].to_numpy(int),
            "array_col": df["array_col"].to_numpy(int),
            "x": df["pxl_col_in_fullres"].to_numpy(float),
            "y": df["pxl_row_in_fullres"].to_numpy(float),
            "in_tissue": df["in_tissue"].to_numpy() == 1,
        },
        index=pd.Index(barcodes.to_numpy(), name="barcode"),
    )
    return SpotTable(spots, path, Platform.VISIUM)


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
            "it; spatial/tissue_hires_image.png and tissue_lowres_image.png are downscaled "
            "copies, too small); pass the image given to Space Ranger with image= (in a manifest: its 'image' "
            "column; see the README's manifest example)"
        )
    raise InputFileNotFoundError(
        f"{where}: {len(found)} candidate images ({', '.join(p.name for p in found[:4])}); "
        "pass the full-resolution H&E with image= (in a manifest: its 'image' column; see the README's manifest example)"
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

    Returns:
        The sample; ``uns["spatial"][section]["scalefactors"]`` holds the numeric scale
        factors of ``scalefactors_json.json``, where scanpy and squidpy look for them (e.g.
        ``tissue_lowres_scalef`` maps ``obsm["spatial"]`` onto ``tissue_lowres_image.png``).

    Raises:
        InputFileNotFoundError: A Space Ranger file or the H&E image is missing.
        SpotMismatchError: Barcodes of the matrix have no row in the positions file.
        InvalidSampleError: The positions file is cut short or malformed, or over 10% of the
            spots under tissue have no counts in the matrix.
        UnknownScaleError: No scale given, no scale factors and too few spots for the grid.

    Example:
        >>> adata = read_visium("sample1/outs", "sample1/he.tif")  # doctest: +SKIP
        >>> adata.uns["stimage"]["mpp_source"]  # doctest: +SKIP
        'scalefactors'

    """
    outs, matrix_p, image_p = _locate(Path(folder), image, only_in_tissue)
    section = section_id or (outs.parent.name if outs.name == "outs" else outs.name)
    m = read_10x_h5(matrix_p)
    spots = _read_positions(outs / "spatial")
    keep = spots.match(
        m.barcodes,
        matrix_p,
        what="barcodes",
        fix="the matrix and spatial/ must come from the same Space Ranger run",
        only_in_tissue=only_in_tissue,
    )
    sf = _read_scalefactors(outs / "spatial")
    sf_mpp = mpp_from_scalefactors(sf)
    scale = resolve_scale(
        spots,
        mpp,
        None if sf_mpp is None else (sf_mpp, "scalefactors"),
        unstated="scalefactors_json.json has no spot_diameter_fullres",
        where=str(outs),
    )
    adata = make_grid_sample(
        m.counts[keep],
        m.genes,
        m.barcodes[keep],
        spots,
        scale,
        section_id=section,
        patient_id=patient_id,
        slide_path=image_p,
        source_path=outs,
        var=pd.DataFrame({Key.GENE_ID: m.gene_ids.to_numpy()}),
    )
    factors = {k: float(v) for k, v in sf.items() if _is_number(v)}
    if factors:  # as scanpy and squidpy keep them: uns["spatial"][library]["scalefactors"]
        adata.uns["spatial"] = {str(section): {"scalefactors": factors}}
    return adata


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and np.isfinite(value)


def _locate(
    root: Path, image: str | os.PathLike[str] | None, only_in_tissue: bool
) -> tuple[Path, Path, Path]:
    """The Space Ranger files of a section: the ``outs`` folder, the matrix and the image."""
    if not root.is_dir():
        raise InputFileNotFoundError(
            f"{root}: no such folder; give the Space Ranger output folder (outs/)"
        )
    outs = _outs(root)
    if not (outs / "spatial").is_dir():
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
    if image is None:
        return outs, matrix_p, _find_image([outs, root] if outs != root else [root])
    image_p = Path(image)
    if not image_p.is_file():
        raise InputFileNotFoundError(
            f"{image_p}: H&E image not found; give the full-resolution image that was given "
            "to Space Ranger"
        )
    return outs, matrix_p, image_p
