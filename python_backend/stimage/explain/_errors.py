"""Errors of nucleus segmentation (candidates for :mod:`stimage.errors`)."""

from __future__ import annotations

from stimage.errors import StimageError

__all__ = ["RegionOutsideImageError", "SegmentationCancelledError"]


class RegionOutsideImageError(StimageError, ValueError):
    """A region to segment lies wholly outside the image."""


class SegmentationCancelledError(StimageError):
    """Segmentation stopped because the caller's cancel event was set."""
