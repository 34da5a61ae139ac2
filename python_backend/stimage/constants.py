"""Canonical names shared by AnnData objects, files on disk, GeoJSON and the Java client.

Spell a key through these constants, never as a literal, so that Python, GeoJSON and Java
agree (compare squidpy's ``Key``).
"""

from __future__ import annotations

from typing import Final

__all__ = ["Key", "Measurement", "ObjectMarker", "ObjectType", "Platform"]


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

    #: How far a tile's features lie from the training tiles (1: the training's 99th percentile).
    TILE_NOVELTY: Final = "Tile: novelty"
    #: 1 when a tile is unlike the training tiles (its predictions deserve caution), else 0.
    TILE_OUTSIDE_TRAINING: Final = "Tile: outside training"
    #: Neighbouring tiles that gave a tile its spatial context (0: predicted from the tile alone).
    TILE_CONTEXT: Final = "Tile: context tiles"

    # Cell typing: the subject is the cell type, or "Cell" for the whole cell.
    PROBABILITY: Final = "probability"
    #: Shannon entropy (nats) of a cell's type probabilities: 0 when one type is certain.
    CELL_TYPE_ENTROPY: Final = "Cell: type entropy"

    @staticmethod
    def class_probability(cell_type: str) -> str:
        """Probability of one cell type, e.g. ``"Immune: probability"``."""
        return f"{cell_type}: probability"

    # Explanations
    LIME: Final = "LIME"

    @staticmethod
    def lime(gene: str) -> str:
        """LIME weight of a nucleus for one gene's prediction, e.g. ``"LIME: VEGFA"``."""
        return f"LIME: {gene}"

    @staticmethod
    def occlusion(target: str) -> str:
        """Drop of a target when a nucleus alone is hidden, e.g. ``"Occlusion: VEGFA"``."""
        return f"Occlusion: {target}"

    @staticmethod
    def prediction(target: str) -> str:
        """The model's output for an explained tile, e.g. ``"VEGFA: prediction"``."""
        return f"{target}: prediction"

    # Morphology, spelled exactly as QuPath's own shape measurements
    # (qupath-core-processing ObjectMeasurements.addShapeMeasurements / addCellShapeMeasurements,
    # with the unit GeneralTools.SYMBOL_MICROMETER = "µm"), so that ours sort beside QuPath's.
    NUCLEUS_AREA: Final = "Nucleus: Area µm^2"
    NUCLEUS_LENGTH: Final = "Nucleus: Length µm"
    NUCLEUS_CIRCULARITY: Final = "Nucleus: Circularity"
    NUCLEUS_SOLIDITY: Final = "Nucleus: Solidity"
    NUCLEUS_MAX_DIAMETER: Final = "Nucleus: Max diameter µm"
    NUCLEUS_MIN_DIAMETER: Final = "Nucleus: Min diameter µm"
    CELL_AREA: Final = "Cell: Area µm^2"
    CELL_LENGTH: Final = "Cell: Length µm"
    NUCLEUS_CELL_AREA_RATIO: Final = "Nucleus/Cell area ratio"

    @staticmethod
    def split(name: str) -> tuple[str, str]:
        """The subject and the quantity of a measurement name (inverse of :meth:`of`).

        ``"COX6C: mean"`` -> ``("COX6C", "mean")``; a name without ``": "`` gives ``("", name)``.
        """
        subject, sep, quantity = name.partition(": ")
        return (subject, quantity) if sep else ("", name)


class ObjectType:
    """``properties.objectType`` values of QuPath GeoJSON (QuPath ``QuPathTypeAdapters.MAP_TYPES``)."""

    TILE: Final = "tile"
    DETECTION: Final = "detection"
    CELL: Final = "cell"
    ANNOTATION: Final = "annotation"
    TMA_CORE: Final = "tmaCore"
    ROOT: Final = "root"


class ObjectMarker:
    """How STImage recognises its own QuPath objects after a round trip through QuPath.

    QuPath keeps an object's UUID ``id`` through GeoJSON import and export and in saved
    projects (since QuPath 0.4), for every kind of object and at no memory cost, so the ids
    STImage writes carry a fixed prefix: RFC 9562 version-8 ("custom") UUIDs whose first 48
    bits are ``5714a9e0-0001``; QuPath's own ids are random version-4 UUIDs and never match.
    Annotations also carry ``properties.metadata[METADATA_KEY]``. See docs/geojson.md.
    """

    #: Every id STImage writes starts with this (``str(path_object.getID()).startsWith(...)``).
    ID_PREFIX: Final = "5714a9e0-0001-8"
    #: ``properties.metadata`` key on STImage annotations (value: the stimage version).
    METADATA_KEY: Final = "stimage"
    #: Optional metadata: what produced the object ("expression", "cells", "explain", ...).
    TASK: Final = "stimage.task"
    #: Optional metadata: the model bundle that produced the object.
    MODEL: Final = "stimage.model"


#: Genes written to QuPath GeoJSON and heatmaps when none are chosen (the model's first N;
#: predict-slide and annotate-project).
DEFAULT_GEOJSON_GENES: Final = 10
