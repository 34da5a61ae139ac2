"""Errors raised by stimage.

Every error a user can cause derives from :class:`StimageError`, and also from the builtin
exception it refines, so callers may catch either. Messages say what was expected, what was
found and how to fix it; the command line prints them as one line.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "ImageTooLargeError",
    "InputFileNotFoundError",
    "InvalidSampleError",
    "MissingDependencyError",
    "NoTissueError",
    "SpotMismatchError",
    "SpotsOutsideImageError",
    "StimageError",
    "UnknownScaleError",
    "UnreadableImageError",
    "UnsupportedFormatError",
]


class StimageError(Exception):
    """Base class of errors a user can cause and fix."""


class InputFileNotFoundError(StimageError, FileNotFoundError):
    """A file or folder the user named, or one a format requires, does not exist."""


class UnreadableImageError(StimageError, OSError):
    """An image exists but cannot be decoded (truncated, corrupt or of an unknown format)."""


class ImageTooLargeError(StimageError, ValueError):
    """An image that would have to be decoded whole is larger than the configured limit."""


class UnsupportedFormatError(StimageError, ValueError):
    """Input of a kind no reader handles."""


class UnknownScaleError(StimageError, ValueError):
    """The µm per pixel of a slide is unknown and cannot be derived."""


class SpotMismatchError(StimageError, ValueError):
    """Spot ids of the counts and of the positions do not match."""


class SpotsOutsideImageError(StimageError, ValueError):
    """Spot centres lie outside the image they are said to belong to."""


class InvalidSampleError(StimageError, ValueError):
    """A spatial sample breaks the conventions of :mod:`stimage.data` (counts, keys, shapes)."""


class NoTissueError(StimageError, ValueError):
    """No tissue was found where tissue was required."""


class ConfigError(StimageError, ValueError):
    """A setting or a manifest is invalid."""


class MissingDependencyError(StimageError, ImportError):
    """An optional dependency needed for the requested feature is not installed."""
