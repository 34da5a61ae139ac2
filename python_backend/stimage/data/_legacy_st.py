"""Legacy Spatial Transcriptomics (ST) samples, as published for HER2ST.

One section is three files: a counts table (spots x genes, spot ids ``<x>x<y>``), a spot
file with array ``x``, ``y``, pixel centres ``pixel_x``, ``pixel_y`` and ``selected``
(1 under tissue), and the full-resolution H&E image. The HER2ST layout groups them as::

    ROOT/ST-cnts/<section>.tsv.gz
    ROOT/ST-spotfiles/<section>_selection.tsv
    ROOT/ST-imgs/<patient>/<section>/<image>.jpg
    ROOT/ST-deconv-major/<section>-proportion.tsv     (optional cell-type proportions)

Spots are 100 µm wide on a 200 µm grid; µm per pixel is derived from that grid.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from stimage.constants import Key, Platform
from stimage.data._grid import SpotTable, make_grid_sample, resolve_scale
from stimage.data._tables import read_text_table
from stimage.errors import InputFileNotFoundError, InvalidSampleError, SpotMismatchError

if TYPE_CHECKING:
    import anndata as ad

__all__ = ["her2st_sections", "is_her2st_root", "read_her2st", "read_legacy_st"]

_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")
_SPOT_COLUMNS = ("x", "y", "pixel_x", "pixel_y")


def _need(path: Path, what: str, fix: str) -> Path:
    if not path.exists():
        raise InputFileNotFoundError(f"{path}: {what} not found; {fix}")
    return path


def _read_counts(path: Path) -> pd.DataFrame:
    """The counts table: spots ``<x>x<y>`` as rows (the first column), genes as columns."""
    table = read_text_table(path, "counts table")
    table = table.set_index(table.columns[0])
    table.index = table.index.astype(str)
    _check_numeric(table, path)
    return table


def _check_numeric(table: pd.DataFrame, path: Path) -> None:
    """Raise naming the first cell of ``table`` that is empty or not a number."""
    bad = table.isna().to_numpy()
    for c, dtype in enumerate(table.dtypes):
        if not pd.api.types.is_numeric_dtype(dtype):
            bad[:, c] |= pd.to_numeric(table.iloc[:, c], errors="coerce").isna().to_numpy()
    if bad.any():
        r, c = (int(v[0]) for v in np.nonzero(bad))
        raise InvalidSampleError(
            f"{path}: spot {table.index[r]!r}, gene {table.columns[c]!r} holds "
            f"{table.iat[r, c]!r}, not a count; every cell of the counts table must be a number"
        )


def _read_spots(path: Path) -> SpotTable:
    """The spot file as a :class:`SpotTable`: ids ``<x>x<y>``, array row ``y``, column ``x``."""
    sp = read_text_table(path, "spot file")
    missing = [c for c in _SPOT_COLUMNS if c not in sp.columns]
    if missing:
        raise InvalidSampleError(
            f"{path}: spot file lacks column(s) {missing}; expected x, y, pixel_x, pixel_y, selected"
        )
    empty = sp[list(_SPOT_COLUMNS)].isna().any(axis=1).to_numpy()
    if empty.any():
        i = int(np.flatnonzero(empty)[0])
        raise InvalidSampleError(
            f"{path}: the spot in data row {i + 1} has empty {', '.join(_SPOT_COLUMNS)} values; "
            "every spot needs its array position and pixel centre"
        )
    ids = sp["x"].astype(int).astype(str) + "x" + sp["y"].astype(int).astype(str)
    if ids.duplicated().any():
        raise InvalidSampleError(
            f"{path}: array positions repeat (e.g. {ids[ids.duplicated()].iloc[0]})"
        )
    tissue = sp["selected"].to_numpy() == 1 if "selected" in sp.columns else np.ones(len(sp), bool)
    spots = pd.DataFrame(
        {
            "array_row": sp["y"].to_numpy(int),
            "array_col": sp["x"].to_numpy(int),
            "x": sp["pixel_x"].to_numpy(float),
            "y": sp["pixel_y"].to_numpy(float),
            "in_tissue": tissue,
        },
        index=pd.Index(ids, name=None),
    )
    return SpotTable(spots, path, Platform.LEGACY_ST, tissue_flag="selected")


def _add_proportions(adata: ad.AnnData, path: Path) -> None:
    """Attach per-spot cell-type proportions in ``obsm[Key.CELLTYPE_PROPORTIONS]``."""
    prop = read_text_table(path, "cell-type proportions")
    prop = prop.set_index(prop.columns[0])
    prop.index = prop.index.astype(str)
    absent = adata.obs_names.difference(prop.index)
    if len(absent):
        raise SpotMismatchError(
            f"{path}: {len(absent)} spots of the counts have no proportions (e.g. {list(absent[:3])})"
        )
    adata.obsm[Key.CELLTYPE_PROPORTIONS] = prop.loc[adata.obs_names].astype(np.float64)


def read_legacy_st(
    counts: str | os.PathLike[str],
    spots: str | os.PathLike[str],
    image: str | os.PathLike[str] | None,
    *,
    section_id: str,
    patient_id: str | None = None,
    mpp: float | None = None,
    proportions: str | os.PathLike[str] | None = None,
    only_in_tissue: bool = True,
) -> ad.AnnData:
    """Read one legacy ST section.

    Args:
        counts: Counts table (tsv, optionally gzipped): spots as rows ``<x>x<y>``, genes
            as columns.
        spots: Spot file with columns ``x``, ``y``, ``pixel_x``, ``pixel_y`` and optionally
            ``selected``.
        image: The full-resolution H&E image the pixel positions refer to.
        section_id: Section id.
        patient_id: Patient id (the section id when unknown).
        mpp: µm per pixel; derived from the 200 µm spot grid when not given.
        proportions: Optional per-spot cell-type proportions (spots x types), stored in
            ``obsm[Key.CELLTYPE_PROPORTIONS]``.
        only_in_tissue: Keep only spots with ``selected == 1``.

    Raises:
        InputFileNotFoundError: A file is missing.
        SpotMismatchError: Spots in the counts have no position in the spot file.
        InvalidSampleError: A file is cut short or malformed: a gzip stream that ends early,
            a row with missing columns, or many spots under tissue without counts.
    """
    counts_p = _need(Path(counts), "counts table", "give the ST counts .tsv(.gz)")
    spots_p = _need(Path(spots), "spot file", "give the *_selection.tsv spot file")
    image_p = _need(Path(image), "H&E image", "give the full-resolution image") if image else None

    table = _read_counts(counts_p)
    spot_table = _read_spots(spots_p)
    keep = spot_table.match(
        table.index,
        counts_p,
        what="spots in the counts",
        fix="spot ids must be '<x>x<y>' array positions matching the spot file's x and y "
        "columns - check both files are of the same section",
        only_in_tissue=only_in_tissue,
    )
    table = table.iloc[keep]
    scale = resolve_scale(
        spot_table, mpp, None, unstated="the ST files state no pixel size", where=str(spots_p)
    )
    adata = make_grid_sample(
        table.to_numpy(),
        list(table.columns),
        table.index,
        spot_table,
        scale,
        section_id=section_id,
        patient_id=patient_id,
        slide_path=image_p,
        source_path=counts_p,
    )
    if proportions is not None:
        prop_p = _need(Path(proportions), "cell-type proportions", "give the *-proportion.tsv file")
        _add_proportions(adata, prop_p)
    return adata


def is_her2st_root(root: str | os.PathLike[str]) -> bool:
    """Whether a folder has the HER2ST layout (``ST-cnts`` and ``ST-spotfiles``)."""
    r = Path(root)
    return (r / "ST-cnts").is_dir() and (r / "ST-spotfiles").is_dir()


def her2st_sections(root: str | os.PathLike[str]) -> list[str]:
    """Section ids present in a HER2ST-layout folder, discovered from the counts files."""
    r = Path(root)
    if not is_her2st_root(r):
        raise InputFileNotFoundError(
            f"{r}: not a HER2ST-layout folder (expected ST-cnts/ and ST-spotfiles/ inside)"
        )
    ids = sorted(
        re.sub(r"\.tsv(\.gz)?$", "", p.name)
        for p in (r / "ST-cnts").iterdir()
        if re.search(r"\.tsv(\.gz)?$", p.name)
    )
    return [s for s in ids if (r / "ST-spotfiles" / f"{s}_selection.tsv").exists()]


def _find_image(root: Path, section: str) -> tuple[Path, str | None]:
    imgs = root / "ST-imgs"
    if imgs.is_dir():
        for folder in sorted(imgs.glob(f"*/{section}")):
            files = sorted(p for p in folder.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
            if files:
                return files[0], folder.parent.name
    raise InputFileNotFoundError(
        f"{imgs}/<patient>/{section}/: no H&E image for section {section!r}; "
        "place the full-resolution image there (jpg, png or tif)"
    )


def read_her2st(
    root: str | os.PathLike[str],
    section: str,
    *,
    mpp: float | None = None,
    patient_id: str | None = None,
    only_in_tissue: bool = True,
) -> ad.AnnData:
    """Read one section of a HER2ST-layout folder.

    The patient id is the folder above the section in ``ST-imgs`` (``ST-imgs/B/B4`` gives
    patient ``B``). Cell-type proportions are attached when ``ST-deconv-major`` has them.

    Example:
        >>> adata = read_her2st("../shared/data/her2st", "B4")  # doctest: +SKIP
        >>> adata.uns["stimage"]["mpp"]  # doctest: +SKIP
        0.69...
    """
    r = Path(root)
    counts = r / "ST-cnts" / f"{section}.tsv.gz"
    if not counts.exists():
        counts = r / "ST-cnts" / f"{section}.tsv"
    _need(counts, "counts table", f"expected ST-cnts/{section}.tsv.gz in the HER2ST folder")
    spots = _need(
        r / "ST-spotfiles" / f"{section}_selection.tsv",
        "spot file",
        f"expected ST-spotfiles/{section}_selection.tsv in the HER2ST folder",
    )
    image, patient = _find_image(r, section)
    prop = r / "ST-deconv-major" / f"{section}-proportion.tsv"
    return read_legacy_st(
        counts,
        spots,
        image,
        section_id=section,
        patient_id=patient_id or patient,
        mpp=mpp,
        proportions=prop if prop.exists() else None,
        only_in_tissue=only_in_tissue,
    )
