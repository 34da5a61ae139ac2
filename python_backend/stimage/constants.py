"""Canonical names shared by AnnData objects, files on disk, GeoJSON and the Java client.

Spell a key through these constants, never as a literal, so that Python, GeoJSON and Java
agree (compare squidpy's ``Key``).
"""

from __future__ import annotations

from typing import Final

__all__ = ["Key", "Measurement", "Platform"]


class Key:
    """Keys of a spatial sample (:class:`anndata.AnnData`).

    A sample holds raw integer counts in ``X`` (spots x genes), spot centres in
    full-resolution pixels ``(x, y)`` in ``obsm[Key.SPATIAL]`` and its metadata in
    ``uns[Key.UNS]``.
    """

    # obsm
    SPATIAL: Final = "spatial"
    CELLTYPE_PROPORTIONS: Final = "celltype_proportions"
    # obs columns
    SECTION: Final = "section_id"
    PATIENT: Final = "patient_id"
    ARRAY_ROW: Final = "array_row"
    ARRAY_COL: Final = "array_col"
    IN_TISSUE: Final = "in_tissue"
    N_CELLS: Final = "n_cells"
    # var columns
    GENE_ID: Final = "gene_ids"
    # uns
    UNS: Final = "stimage"
    SLIDE_PATH: Final = "slide_path"
    MPP: Final = "mpp"
    MPP_SOURCE: Final = "mpp_source"
    SPOT_DIAMETER_UM: Final = "spot_diameter_um"
    SPOT_PITCH_UM: Final = "spot_pitch_um"
    PLATFORM: Final = "platform"
    SOURCE_PATH: Final = "source_path"
    # tile store additions (obs)
    TILE_INDEX: Final = "tile_index"
    TISSUE_COVERAGE: Final = "tissue_coverage"
    KEPT: Final = "kept"
    DROP_REASON: Final = "drop_reason"


class Platform:
    """Spatial platforms and their physical constants (µm)."""

    LEGACY_ST: Final = "legacy_st"
    VISIUM: Final = "visium"
    XENIUM: Final = "xenium"
    ANNDATA: Final = "anndata"

    #: Centre-to-centre distance of neighbouring spots.
    PITCH_UM: Final = {LEGACY_ST: 200.0, VISIUM: 100.0}
    #: Spot diameter.
    DIAMETER_UM: Final = {LEGACY_ST: 100.0, VISIUM: 55.0}


class Measurement:
    """Measurement names of predictions, as QuPath shows them and CSV/AnnData columns use.

    Readable and sortable: the gene first, then the quantity (``"COX6C: mean"``).
    """

    MEAN: Final = "mean"
    ALEATORIC_SD: Final = "aleatoric sd"
    EPISTEMIC_SD: Final = "epistemic sd"
    TOTAL_SD: Final = "total sd"
    P_HIGH: Final = "P(high)"

    @staticmethod
    def of(gene: str, quantity: str) -> str:
        """``"<gene>: <quantity>"``."""
        return f"{gene}: {quantity}"

    @staticmethod
    def lower(gene: str, level: float) -> str:
        """Lower end of the central ``level`` predictive interval, e.g. ``"COX6C: 90% lower"``."""
        return f"{gene}: {round(level * 100)}% lower"

    @staticmethod
    def upper(gene: str, level: float) -> str:
        """Upper end of the central ``level`` predictive interval."""
        return f"{gene}: {round(level * 100)}% upper"
