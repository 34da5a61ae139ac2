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
from stimage.data._sample import make_sample
from stimage.data._scale import mpp_from_spot_grid
from stimage.errors import InputFileNotFoundError, InvalidSampleError, SpotMismatchError

if TYPE_CHECKING:
    import anndata as ad

__all__ = ["her2st_sections", "is_her2st_root", "read_her2st", "read_legacy_st"]

_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")


def _need(path: Path, what: str, fix: str) -> Path:
    if not path.exists():
        raise InputFileNotFoundError(f"{path}: {what} not found; {fix}")
    return path


def _read_table(path: Path, what: str) -> pd.DataFrame:
    sep = "," if ".csv" in path.name.lower() else "\t"
    try:
        return pd.read_csv(path, sep=sep)
    except (OSError, EOFError, pd.errors.ParserError, UnicodeDecodeError, ValueError) as e:
        raise InvalidSampleError(
            f"{path}: cannot read the {what} ({e}); check the file is complete"
        ) from e


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
    """
    counts_p = _need(Path(counts), "counts table", "give the ST counts .tsv(.gz)")
    spots_p = _need(Path(spots), "spot file", "give the *_selection.tsv spot file")
    image_p = _need(Path(image), "H&E image", "give the full-resolution image") if image else None

    table = _read_table(counts_p, "counts table")
    first = table.columns[0]
    table = table.set_index(first)
    table.index = table.index.astype(str)
    sp = _read_table(spots_p, "spot file")
    missing = [c for c in ("x", "y", "pixel_x", "pixel_y") if c not in sp.columns]
    if missing:
        raise InvalidSampleError(
            f"{spots_p}: spot file lacks column(s) {missing}; expected x, y, pixel_x, pixel_y, selected"
        )
    sp.index = sp["x"].astype(int).astype(str) + "x" + sp["y"].astype(int).astype(str)
    if sp.index.has_duplicates:
        raise InvalidSampleError(
            f"{spots_p}: array positions repeat (e.g. {sp.index[sp.index.duplicated()][0]})"
        )
    no_pos = table.index.difference(sp.index)
    if len(no_pos):
        raise SpotMismatchError(
            f"{counts_p}: {len(no_pos)} of {len(table)} spots in the counts have no row in {spots_p.name} "
            f"(e.g. {list(no_pos[:3])}); spot ids must be '<x>x<y>' array positions matching the "
            "spot file's x and y columns - check both files are of the same section"
        )
    sp = sp.loc[table.index]
    in_tissue = (
        (sp["selected"].to_numpy() == 1) if "selected" in sp.columns else np.ones(len(sp), bool)
    )
    keep = in_tissue if only_in_tissue else np.ones(len(sp), bool)
    if not keep.any():
        raise InvalidSampleError(f"{spots_p}: no spot is marked selected (under tissue)")
    table, sp = table.loc[keep], sp.loc[keep]
    in_tissue = in_tissue[keep]
    xy = sp[["pixel_x", "pixel_y"]].to_numpy(dtype=np.float64)
    rows, cols = sp["y"].to_numpy(int), sp["x"].to_numpy(int)
    if mpp is None:
        # Derive the scale from all spots of the file (tissue or not): more neighbour pairs.
        full = _read_table(spots_p, "spot file")
        scale = mpp_from_spot_grid(
            full["y"].to_numpy(int),
            full["x"].to_numpy(int),
            full[["pixel_x", "pixel_y"]].to_numpy(float),
            Platform.LEGACY_ST,
            source=str(spots_p),
        )
        mpp_v, mpp_src = scale.mpp, "spot grid"
    else:
        mpp_v, mpp_src = float(mpp), "user"
    obs = pd.DataFrame(
        {Key.ARRAY_ROW: rows, Key.ARRAY_COL: cols, Key.IN_TISSUE: in_tissue}, index=table.index
    )
    adata = make_sample(
        table.to_numpy(),
        list(table.columns),
        list(table.index),
        xy,
        section_id=section_id,
        patient_id=patient_id,
        platform=Platform.LEGACY_ST,
        slide_path=image_p,
        mpp=mpp_v,
        mpp_source=mpp_src,
        spot_diameter_um=Platform.DIAMETER_UM[Platform.LEGACY_ST],
        spot_pitch_um=Platform.PITCH_UM[Platform.LEGACY_ST],
        obs=obs,
        source_path=counts_p,
    )
    if proportions is not None:
        prop_p = _need(Path(proportions), "cell-type proportions", "give the *-proportion.tsv file")
        prop = _read_table(prop_p, "cell-type proportions")
        prop = prop.set_index(prop.columns[0])
        prop.index = prop.index.astype(str)
        absent = adata.obs_names.difference(prop.index)
        if len(absent):
            raise SpotMismatchError(
                f"{prop_p}: {len(absent)} spots of the counts have no proportions (e.g. {list(absent[:3])})"
            )
        adata.obsm[Key.CELLTYPE_PROPORTIONS] = prop.loc[adata.obs_names].astype(np.float64)
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
