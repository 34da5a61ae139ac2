"""Tiles in physical units: geometry, tissue QC, stain normalisation, augmentation, the store."""

from stimage.tiles._augment import Augmenter
from stimage.tiles._cut import (
    SpotTileQC,
    TileSettings,
    default_tile_um,
    fit_slide_normalizer,
    grid_tile_qc,
    iter_tiles,
    load_stain_target,
    sample_tissue_patches,
    spot_tile_qc,
)
from stimage.tiles._geometry import (
    TileGrid,
    grid_margin,
    grid_tile_boxes,
    spot_tile_boxes,
    tile_side_px,
)
from stimage.tiles._preview import contact_sheet, qc_overview
from stimage.tiles._stain import (
    STAIN_METHODS,
    StainFit,
    StainNormalizer,
    StainParams,
    build_stain_template,
    estimate_stain_matrix,
    list_stain_templates,
    stain_concentrations,
)
from stimage.tiles._store import PrepareReport, TileStore, prepare_dataset
from stimage.tiles._tissue import TissueMask, TissueParams, detect_tissue, tissue_mask_from_image

__all__ = [
    "STAIN_METHODS",
    "Augmenter",
    "PrepareReport",
    "SpotTileQC",
    "StainFit",
    "StainNormalizer",
    "StainParams",
    "TileGrid",
    "TileSettings",
    "TileStore",
    "TissueMask",
    "TissueParams",
    "build_stain_template",
    "contact_sheet",
    "default_tile_um",
    "detect_tissue",
    "estimate_stain_matrix",
    "fit_slide_normalizer",
    "grid_margin",
    "grid_tile_boxes",
    "grid_tile_qc",
    "iter_tiles",
    "list_stain_templates",
    "load_stain_target",
    "prepare_dataset",
    "qc_overview",
    "sample_tissue_patches",
    "spot_tile_boxes",
    "spot_tile_qc",
    "stain_concentrations",
    "tile_side_px",
    "tissue_mask_from_image",
]
