"""Explanations at the level of nuclei: segmentation backends, LIME and occlusion per nucleus.

Nuclei come back as :class:`Nuclei`: outlines in full-resolution pixel coordinates and one
row of morphology and stain features per nucleus. :func:`explain_tile` scores every nucleus
of a model tile for several genes at once, with LIME (nuclei as superpixels, the paper's
defaults) or the faster occlusion.

Example:
    >>> from stimage.explain import segment_nuclei, segment_tile
    >>> nuclei = segment_nuclei("section.jpg", (4000, 4000, 2000, 2000), mpp=0.69)  # doctest: +SKIP
    >>> nuclei.features[["area_um2", "hematoxylin_mean"]].median()  # doctest: +SKIP
"""

from stimage.explain._cellpose import CELLPOSE_ENV, CellposeSegmenter, find_cellpose_weights
from stimage.explain._cells import Cells, cell_measurements, detect_cells, plot_cells
from stimage.explain._classical import HER2ST_STAINS, RUIFROK_STAINS, ClassicalSegmenter
from stimage.explain._errors import RegionOutsideImageError, SegmentationCancelledError
from stimage.explain._hed import rgb_to_hed
from stimage.explain._lime import (
    NoNucleiError,
    NucleusExplanation,
    agreement,
    explain_lime,
    explain_occlusion,
    target_function,
)
from stimage.explain._nuclei import (
    INTENSITY_FEATURES,
    MORPHOLOGY_FEATURES,
    NUCLEUS_COLUMNS,
    NUCLEUS_FEATURES,
    POSITION_COLUMNS,
    Nuclei,
    measure_nuclei,
)
from stimage.explain._segment import (
    SEGMENTERS,
    NucleusSegmenter,
    create_segmenter,
    segment_nuclei,
    segment_tile,
)
from stimage.explain._tile import (
    TileExplanation,
    explain_tile,
    plot_explanation,
    tile_box,
    write_explanation_geojson,
)

__all__ = [
    "CELLPOSE_ENV",
    "HER2ST_STAINS",
    "INTENSITY_FEATURES",
    "MORPHOLOGY_FEATURES",
    "NUCLEUS_COLUMNS",
    "NUCLEUS_FEATURES",
    "POSITION_COLUMNS",
    "RUIFROK_STAINS",
    "SEGMENTERS",
    "CellposeSegmenter",
    "Cells",
    "ClassicalSegmenter",
    "NoNucleiError",
    "Nuclei",
    "NucleusExplanation",
    "NucleusSegmenter",
    "RegionOutsideImageError",
    "SegmentationCancelledError",
    "TileExplanation",
    "agreement",
    "cell_measurements",
    "create_segmenter",
    "detect_cells",
    "explain_lime",
    "explain_occlusion",
    "explain_tile",
    "find_cellpose_weights",
    "measure_nuclei",
    "plot_cells",
    "plot_explanation",
    "rgb_to_hed",
    "segment_nuclei",
    "segment_tile",
    "target_function",
    "tile_box",
    "write_explanation_geojson",
]
