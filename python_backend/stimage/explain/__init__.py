"""Explanations at the level of nuclei: segmentation backends, LIME and occlusion per nucleus.

Nuclei come back as :class:`Nuclei`: outlines in full-resolution pixel coordinates and one
row of morphology and stain features per nucleus. :func:`explain_lime` and
:func:`explain_occlusion` score every nucleus of a tile for several targets at once, with
LIME (nuclei as superpixels, the paper's defaults) or the faster occlusion, given any
function from tiles to outputs (:func:`stimage.pipelines.explain_tile` gives them the model).
This room knows nothing of models: it works on pixels, label images and callables.

Example:
    >>> from stimage.explain import segment_nuclei, segment_tile
    >>> nuclei = segment_nuclei("section.jpg", (4000, 4000, 2000, 2000), mpp=0.69)  # doctest: +SKIP
    >>> nuclei.features[["area_um2", "hematoxylin_mean"]].median()  # doctest: +SKIP
"""

from stimage.explain._cellpose import CELLPOSE_ENV, CellposeSegmenter, find_cellpose_weights
from stimage.explain._classical import HER2ST_STAINS, RUIFROK_STAINS, ClassicalSegmenter
from stimage.explain._errors import RegionOutsideImageError, SegmentationCancelledError
from stimage.explain._hed import QUPATH_HE_DEFAULT, qupath_stain_od, rgb_to_hed
from stimage.explain._lime import (
    TARGETS,
    NoNucleiError,
    NucleusExplanation,
    agreement,
    explain_lime,
    explain_occlusion,
)
from stimage.explain._nuclei import (
    INTENSITY_FEATURES,
    MORPHOLOGY_FEATURES,
    NUCLEUS_COLUMNS,
    NUCLEUS_FEATURES,
    POSITION_COLUMNS,
    QUPATH_STAIN_FEATURES,
    Nuclei,
    measure_nuclei,
)
from stimage.explain._segment import (
    SEGMENTERS,
    NucleusSegmenter,
    create_segmenter,
    is_blank,
    segment_nuclei,
    segment_tile,
)

__all__ = [
    "CELLPOSE_ENV",
    "HER2ST_STAINS",
    "INTENSITY_FEATURES",
    "MORPHOLOGY_FEATURES",
    "NUCLEUS_COLUMNS",
    "NUCLEUS_FEATURES",
    "POSITION_COLUMNS",
    "QUPATH_HE_DEFAULT",
    "QUPATH_STAIN_FEATURES",
    "RUIFROK_STAINS",
    "SEGMENTERS",
    "TARGETS",
    "CellposeSegmenter",
    "ClassicalSegmenter",
    "NoNucleiError",
    "Nuclei",
    "NucleusExplanation",
    "NucleusSegmenter",
    "RegionOutsideImageError",
    "SegmentationCancelledError",
    "agreement",
    "create_segmenter",
    "explain_lime",
    "explain_occlusion",
    "find_cellpose_weights",
    "is_blank",
    "measure_nuclei",
    "qupath_stain_od",
    "rgb_to_hed",
    "segment_nuclei",
    "segment_tile",
]
