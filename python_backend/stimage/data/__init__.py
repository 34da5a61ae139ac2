"""Slides, physical scale, spatial samples and datasets."""

from stimage.data._dataset import Dataset, SampleSpec, detect_format, load_dataset, read_sample
from stimage.data._legacy_st import her2st_sections, is_her2st_root, read_her2st, read_legacy_st
from stimage.data._sample import (
    check_spots_inside,
    make_sample,
    open_sample_slide,
    sample_info,
    validate_sample,
)
from stimage.data._scale import GridScale, mpp_from_spot_grid
from stimage.data._slide import OpenSlideSlide, RasterSlide, Slide, TiffSlide, open_slide

__all__ = [
    "Dataset",
    "SampleSpec",
    "detect_format",
    "load_dataset",
    "read_sample",
    "GridScale",
    "OpenSlideSlide",
    "RasterSlide",
    "Slide",
    "TiffSlide",
    "check_spots_inside",
    "her2st_sections",
    "is_her2st_root",
    "make_sample",
    "mpp_from_spot_grid",
    "open_sample_slide",
    "open_slide",
    "read_her2st",
    "read_legacy_st",
    "sample_info",
    "validate_sample",
]
