"""Samples on a fixed spot array (Visium, legacy ST): counts matched to the spot table.

Both platforms describe a section with a counts table (spot ids x genes) and a spot table
(array row and column, pixel centre and an under-tissue flag per spot). Reading either takes
the same steps, done here once:

* every spot of the counts must have a row in the spot table;
* every spot under tissue should have counts. A few without happen in published data (the
  HER2ST sections B4, C3 and C4 lack counts for 1, 2 and 3 of their 180-284 spots under
  tissue) and are logged as a warning; more than :data:`MAX_MISSING_COUNTS` of them means
  the counts file was cut short (at a line end, so it reads cleanly) and is an error;
* spots not under tissue are dropped unless asked for;
* µm per pixel comes from the user, else from what the platform's files state, else from
  the spot grid; a scale not measured on the grid is cross-checked against it;
* the sample carries the platform's spot diameter and pitch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from stimage.constants import Key, Platform
from stimage.data._sample import make_sample
from stimage.data._scale import GridScale, mpp_from_spot_grid
from stimage.errors import InvalidSampleError, SpotMismatchError, UnknownScaleError

if TYPE_CHECKING:
    import anndata as ad

__all__ = ["MAX_MISSING_COUNTS", "SpotTable", "cross_check_mpp", "make_grid_sample"]

logger = logging.getLogger(__name__)

#: Largest fraction of the spots under tissue that may lack counts; above it, the counts
#: file is taken to be cut short and reading fails.
MAX_MISSING_COUNTS = 0.10
#: Relative disagreement between two scale estimates above which a warning is logged.
SCALE_TOLERANCE = 0.10
#: Columns of :attr:`SpotTable.spots`.
SPOT_COLUMNS = ("array_row", "array_col", "x", "y", "in_tissue")


@dataclass(frozen=True)
class SpotTable:
    """The spots of one section, as its positions file lists them.

    Attributes:
        spots: One row per spot, indexed by spot id, with ``array_row``, ``array_col``,
            ``x``, ``y`` (centre in full-resolution pixels) and ``in_tissue`` (bool).
        path: The positions file (named in messages).
        platform: :attr:`Platform.VISIUM` or :attr:`Platform.LEGACY_ST` (gives the grid).
        tissue_flag: The file's name for the under-tissue column (named in messages).
    """

    spots: pd.DataFrame
    path: Path
    platform: str
    tissue_flag: str = "in_tissue"

    def grid_scale(self) -> GridScale:
        """µm per pixel measured on all spots of the file (under tissue or not).

        Raises:
            UnknownScaleError: Too few neighbouring spots, or an implausible result.
        """
        s = self.spots
        return mpp_from_spot_grid(
            s["array_row"].to_numpy(int),
            s["array_col"].to_numpy(int),
            s[["x", "y"]].to_numpy(float),
            self.platform,
            source=str(self.path),
        )

    def match(
        self, ids: pd.Index, counts_path: Path, *, what: str, fix: str, only_in_tissue: bool
    ) -> np.ndarray:
        """Positions in ``ids`` (the counts' spots, in their order) of the spots to keep.

        Args:
            ids: Spot ids of the counts, in row order.
            counts_path: The counts file (named in messages).
            what: What the ids are called in messages (``"barcodes"``).
            fix: How to fix spots of the counts that have no position.
            only_in_tissue: Keep only spots under tissue.

        Raises:
            SpotMismatchError: Spots of the counts have no row in the spot table.
            InvalidSampleError: Too many spots under tissue lack counts (a counts file cut
                short), or no spot of the counts is under tissue.
        """
        no_pos = ids.difference(self.spots.index)
        if len(no_pos):
            raise SpotMismatchError(
                f"{counts_path}: {len(no_pos)} of {len(ids)} {what} have no row in "
                f"{self.path.name} (e.g. {list(no_pos[:3])}); {fix}"
            )
        self._check_tissue_has_counts(ids, counts_path)
        in_tissue = self.spots["in_tissue"].loc[ids].to_numpy(bool)
        if only_in_tissue and not in_tissue.any():
            raise InvalidSampleError(
                f"{self.path}: no spot of {counts_path.name} is marked under tissue "
                f"({self.tissue_flag} = 1)"
            )
        return np.flatnonzero(in_tissue) if only_in_tissue else np.arange(len(ids))

    def _check_tissue_has_counts(self, ids: pd.Index, counts_path: Path) -> None:
        tissue = self.spots.index[self.spots["in_tissue"].to_numpy(bool)]
        absent = tissue[~tissue.isin(ids)]
        if not len(absent):
            return
        head = (
            f"{counts_path}: {len(absent)} of {len(tissue)} spots under tissue in "
            f"{self.path.name} have no counts (e.g. {list(absent[:3])})"
        )
        if len(absent) > MAX_MISSING_COUNTS * len(tissue):
            raise InvalidSampleError(
                f"{head}; the counts file looks cut short (an interrupted download, copy or "
                "export): download or export it again. If these spots truly have no counts, "
                f"mark them as not under tissue ({self.tissue_flag} = 0) in {self.path.name}"
            )
        logger.warning(
            "%s; they are left out. A few such spots occur in published data; many would "
            "mean the counts file is cut short",
            head,
        )


def cross_check_mpp(mpp: float, source: str, grid_mpp: float | None, where: str) -> None:
    """Log a warning when two µm-per-pixel estimates disagree by more than 10%."""
    if grid_mpp is None:
        return
    rel = abs(mpp - grid_mpp) / grid_mpp
    if rel > SCALE_TOLERANCE:
        logger.warning(
            "%s: µm per pixel from %s (%.4f) and from the spot grid (%.4f) differ by %.0f%%; "
            "using %s. Check the image is the full-resolution one the spot positions refer "
            "to, or give --mpp.",
            where,
            source,
            mpp,
            grid_mpp,
            100 * rel,
            source,
        )


def resolve_scale(
    table: SpotTable,
    user: float | None,
    stated: tuple[float, str] | None,
    *,
    unstated: str,
    where: str,
) -> tuple[float, str]:
    """µm per pixel and its source: the user's, else the files' (``stated``), else the grid's.

    Args:
        table: The spot table whose grid measures the scale.
        user: µm per pixel given by the user.
        stated: µm per pixel the platform's files state and its source (e.g. Visium scale
            factors), if they do.
        unstated: Why the files state none, for the message when the grid gives none either.
        where: Named in messages.

    Raises:
        UnknownScaleError: No scale given, none stated, and none measurable on the grid.
    """
    grid_mpp: float | None = None
    grid_error: UnknownScaleError | None = None
    try:
        grid_mpp = table.grid_scale().mpp
    except UnknownScaleError as e:
        logger.debug("no spot-grid scale for %s: %s", table.path, e)
        grid_error = e
    if user is not None:
        scale = (float(user), "user")
    elif stated is not None:
        scale = stated
    elif grid_mpp is not None:
        return grid_mpp, "spot grid"
    else:
        raise UnknownScaleError(
            f"{where}: {unstated} and the spot grid gives no scale ({grid_error}); give the "
            "µm per pixel with mpp= (--mpp)"
        )
    cross_check_mpp(*scale, grid_mpp, where)
    return scale


def make_grid_sample(
    counts: Any,
    genes: list[str] | pd.Index,
    spot_ids: pd.Index,
    table: SpotTable,
    scale: tuple[float, str],
    *,
    section_id: str,
    patient_id: str | None,
    slide_path: Path | None,
    source_path: Path,
    var: pd.DataFrame | None = None,
) -> ad.AnnData:
    """A sample of the spots ``spot_ids`` of ``table``, with the platform's spot size and pitch.

    Args:
        counts: Counts of the spots ``spot_ids`` (rows) x ``genes``.
        genes: Gene names.
        spot_ids: The spots, all in ``table``.
        table: Their positions.
        scale: µm per pixel and its source (:func:`resolve_scale`).
        section_id: Section id.
        patient_id: Patient id (the section id when unknown).
        slide_path: The H&E image the pixel positions refer to.
        source_path: The file or folder the sample was read from.
        var: Extra per-gene columns, in the order of ``genes``.
    """
    sp = table.spots.loc[spot_ids]
    obs = pd.DataFrame(
        {
            Key.ARRAY_ROW: sp["array_row"].to_numpy(int),
            Key.ARRAY_COL: sp["array_col"].to_numpy(int),
            Key.IN_TISSUE: sp["in_tissue"].to_numpy(bool),
        },
        index=spot_ids,
    )
    return make_sample(
        counts,
        genes,
        spot_ids,
        sp[["x", "y"]].to_numpy(np.float64),
        section_id=section_id,
        patient_id=patient_id,
        platform=table.platform,
        slide_path=slide_path,
        mpp=scale[0],
        mpp_source=scale[1],
        spot_diameter_um=Platform.DIAMETER_UM[table.platform],
        spot_pitch_um=Platform.PITCH_UM[table.platform],
        obs=obs,
        var=var,
        source_path=source_path,
    )
