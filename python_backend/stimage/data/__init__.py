"""Slides, physical scale, spatial samples and datasets."""

from stimage.data._array import ArraySlide
from stimage.data._dataset import Dataset, SampleSpec, detect_format, load_dataset, read_sample
from stimage.data._h5ad import read_h5ad_sample
from stimage.data._legacy_st import her2st_sections, is_her2st_root, read_her2st, read_legacy_st
from stimage.data._raster import cache_dir, prune_cache
from stimage.data._sample import (
    check_spots_inside,
    make_sample,
    open_sample_slide,
    sample_info,
    validate_sample,
)
from stimage.data._scale import GridScale, mpp_from_spot_grid
from stimage.data._slide import OpenSlideSlide, RasterSlide, Slide, TiffSlide, open_slide
from stimage.data._tenx import TenxMatrix, read_10x_h5
from stimage.data._visium import is_visium_folder, mpp_from_scalefactors, read_visium
from stimage.data._xenium import XeniumAlignment, is_xenium_folder, read_xenium, read_xenium_cells

__all__ = [
    "ArraySlide",
    "Dataset",
    "GridScale",
    "OpenSlideSlide",
    "RasterSlide",
    "SampleSpec",
    "Slide",
    "TenxMatrix",
    "TiffSlide",
    "XeniumAlignment",
    "cache_dir",
    "check_spots_inside",
    "detect_format",
    "her2st_sections",
    "is_her2st_root",
    "is_visium_folder",
    "is_xenium_folder",
    "load_dataset",
    "make_sample",
    "mpp_from_scalefactors",
    "mpp_from_spot_grid",
    "open_sample_slide",
    "open_slide",
    "prune_cache",
    "read_10x_h5",
    "read_h5ad_sample",
    "read_her2st",
    "read_legacy_st",
    "read_sample",
    "read_visium",
    "read_xenium",
    "read_xenium_cells",
    "sample_info",
    "validate_sample",
]
