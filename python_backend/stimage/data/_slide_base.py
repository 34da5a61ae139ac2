"""The slide interface: a read-only image pyramid with a physical scale.

:class:`Slide` holds what every backend shares: geometry of the levels, µm per pixel and
where it came from, and reading a level-0 rectangle resampled to any output size. A backend
(:mod:`._openslide`, :mod:`._tiff`, :mod:`._raster`) only fills ``level_dimensions`` and
reads in-bounds windows of one level (:meth:`Slide._read_level`).

All coordinates are level-0 (full-resolution) pixels, ``(x, y)`` order, as in QuPath.
"""

from __future__ import annotations

import abc
from pathlib import Path

import numpy as np

from stimage.errors import UnknownScaleError, UnsupportedFormatError

__all__ = ["MPP_RANGE", "Slide"]

#: Plausible range of µm per pixel for a microscope image; outside it, metadata is ignored.
MPP_RANGE = (0.05, 50.0)


def _plausible_mpp(value: float | None) -> float | None:
    if value is None or not np.isfinite(value):
        return None
    return float(value) if MPP_RANGE[0] <= value <= MPP_RANGE[1] else None


class Slide(abc.ABC):
    """A read-only image pyramid with a physical scale.

    Subclasses fill ``level_dimensions`` (width, height per level, level 0 first) and
    implement :meth:`_read_level`.

    Attributes:
        path: The file the slide was opened from.
        mpp_source: Where :attr:`mpp` came from: ``"metadata"``, ``"user"``, ``"spot grid"``
            or ``"unknown"``.
    """

    path: Path
    level_dimensions: list[tuple[int, int]]

    def __init__(self, path: Path, mpp: float | None, mpp_source: str) -> None:
        self.path = path
        self._mpp = mpp
        self.mpp_source = mpp_source if mpp is not None else "unknown"

    def _init_scale(self, path: Path, metadata_mpp: float | None, user_mpp: float | None) -> None:
        """Initialise with the user's µm per pixel when given, else the file's metadata."""
        if user_mpp is not None:
            Slide.__init__(self, path, None, "unknown")
            self.set_mpp(user_mpp, "user")
        else:
            Slide.__init__(self, path, metadata_mpp, "metadata")

    # -- geometry -------------------------------------------------------------------------
    @property
    def dimensions(self) -> tuple[int, int]:
        """Width and height of level 0 in pixels."""
        return self.level_dimensions[0]

    @property
    def level_count(self) -> int:
        """Number of pyramid levels."""
        return len(self.level_dimensions)

    @property
    def level_downsamples(self) -> list[float]:
        """Downsample of each level relative to level 0 (mean of x and y)."""
        w0, h0 = self.dimensions
        return [((w0 / w) + (h0 / h)) / 2.0 for w, h in self.level_dimensions]

    # -- scale ----------------------------------------------------------------------------
    @property
    def mpp(self) -> float:
        """µm per level-0 pixel.

        Raises:
            UnknownScaleError: The slide carries no usable scale and none was given.
        """
        if self._mpp is None:
            raise UnknownScaleError(
                f"{self.path}: the pixel size (µm per pixel) is not in the image metadata. "
                "Give it with --mpp (e.g. --mpp 0.5), in the dataset manifest's 'mpp' column, "
                "or let it be derived from the spot grid of a spatial sample."
            )
        return self._mpp

    @property
    def has_mpp(self) -> bool:
        """Whether :attr:`mpp` is known."""
        return self._mpp is not None

    def set_mpp(self, mpp: float, source: str = "user") -> None:
        """Set µm per pixel (from the user or derived from a spot grid).

        Raises:
            UnknownScaleError: ``mpp`` is outside the plausible range of microscope images.
        """
        if _plausible_mpp(mpp) is None:
            raise UnknownScaleError(
                f"{self.path}: {mpp!r} µm per pixel is not a plausible microscope scale "
                f"(expected {MPP_RANGE[0]}-{MPP_RANGE[1]}); check the value given."
            )
        self._mpp = float(mpp)
        self.mpp_source = source

    # -- reading --------------------------------------------------------------------------
    def best_level_for_downsample(self, downsample: float) -> int:
        """The coarsest level whose downsample does not exceed ``downsample`` (plus 1%)."""
        best = 0
        for i, d in enumerate(self.level_downsamples):
            if d <= downsample * 1.01:
                best = i
        return best

    def read_region(
        self,
        x: float,
        y: float,
        width: float,
        height: float,
        out_size: tuple[int, int] | None = None,
        downsample: float | None = None,
        mpp: float | None = None,
    ) -> np.ndarray:
        """Read a level-0 rectangle, resampled to an output size, a downsample or a µm per pixel.

        Parts outside the image are white. The pyramid level closest to (and not coarser
        than) the requested resolution is read, then resized with area interpolation.

        Args:
            x: Left edge in level-0 pixels.
            y: Top edge in level-0 pixels.
            width: Width in level-0 pixels.
            height: Height in level-0 pixels.
            out_size: Output ``(width, height)`` in pixels. Exclusive with ``downsample``.
            downsample: Output pixels per level-0 pixel, inverted (2 = half resolution).
            mpp: Output resolution in µm per pixel (needs the slide's scale).

        Returns:
            An ``(H, W, 3)`` uint8 RGB array.
        """
        if width <= 0 or height <= 0:
            raise ValueError(f"region size must be positive, got {width} x {height}")
        if mpp is not None:
            if out_size is not None or downsample is not None:
                raise ValueError("give one of out_size, downsample and mpp")
            if mpp <= 0:
                raise ValueError(f"mpp must be positive, got {mpp}")
            downsample = mpp / self.mpp
        if out_size is None:
            d = 1.0 if downsample is None else float(downsample)
            if d <= 0:
                raise ValueError(f"downsample must be positive, got {downsample}")
            out_size = (max(1, round(width / d)), max(1, round(height / d)))
        elif downsample is not None:
            raise ValueError("give out_size or downsample, not both")
        out_w, out_h = int(out_size[0]), int(out_size[1])
        eff = min(width / out_w, height / out_h)
        level = self.best_level_for_downsample(eff)
        lw, lh = self.level_dimensions[level]
        sx, sy = self.dimensions[0] / lw, self.dimensions[1] / lh
        # Integer window at the chosen level covering the request, then exact resample.
        lx0, ly0 = int(np.floor(x / sx)), int(np.floor(y / sy))
        lx1, ly1 = int(np.ceil((x + width) / sx)), int(np.ceil((y + height) / sy))
        window = self._read_padded(level, lx0, ly0, lx1 - lx0, ly1 - ly0)
        # Sub-pixel offsets of the request inside the integer window.
        fx, fy = x / sx - lx0, y / sy - ly0
        fw, fh = width / sx, height / sy
        return _resample(window, fx, fy, fw, fh, out_w, out_h)

    def read_um(self, cx: float, cy: float, size_um: float, out_px: int) -> np.ndarray:
        """Read a square of ``size_um`` µm centred on level-0 pixel ``(cx, cy)``.

        Returns:
            An ``(out_px, out_px, 3)`` uint8 RGB array.
        """
        side = size_um / self.mpp
        return self.read_region(cx - side / 2, cy - side / 2, side, side, out_size=(out_px, out_px))

    def thumbnail(self, mpp: float | None = None, max_side: int | None = None) -> np.ndarray:
        """The whole slide at ``mpp`` µm per pixel or with its longer side ``max_side`` px."""
        w0, h0 = self.dimensions
        if mpp is not None:
            d = max(mpp / self.mpp, 1.0)
        elif max_side is not None:
            d = max(max(w0, h0) / max_side, 1.0)
        else:
            raise ValueError("give mpp or max_side")
        return self.read_region(
            0, 0, w0, h0, out_size=(max(1, round(w0 / d)), max(1, round(h0 / d)))
        )

    def _read_padded(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        lw, lh = self.level_dimensions[level]
        out = np.full((h, w, 3), 255, dtype=np.uint8)
        ix0, iy0 = max(x, 0), max(y, 0)
        ix1, iy1 = min(x + w, lw), min(y + h, lh)
        if ix1 > ix0 and iy1 > iy0:
            out[iy0 - y : iy1 - y, ix0 - x : ix1 - x] = self._read_level(
                level, ix0, iy0, ix1 - ix0, iy1 - iy0
            )
        return out

    @abc.abstractmethod
    def _read_level(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        """Read an in-bounds window of one level as ``(h, w, 3)`` uint8 RGB."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release file handles."""

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        mpp = f"{self._mpp:.4g} µm/px ({self.mpp_source})" if self._mpp else "scale unknown"
        w, h = self.dimensions
        return (
            f"{type(self).__name__}({self.path.name!r}, {w}x{h}, {self.level_count} levels, {mpp})"
        )


def _resample(
    window: np.ndarray, fx: float, fy: float, fw: float, fh: float, out_w: int, out_h: int
) -> np.ndarray:
    import cv2

    h, w = window.shape[:2]
    aligned = abs(fx) < 1e-6 and abs(fy) < 1e-6 and abs(fw - w) < 1e-6 and abs(fh - h) < 1e-6
    if aligned and (w, h) == (out_w, out_h):
        return np.ascontiguousarray(window)
    if aligned:
        interp = cv2.INTER_AREA if out_w < w else cv2.INTER_LINEAR
        return cv2.resize(window, (out_w, out_h), interpolation=interp)
    # Sub-pixel crop: box-filter first when shrinking (anti-aliasing), then an affine warp.
    scale = min(out_w / fw, out_h / fh)
    src = window
    if scale < 0.5:
        k = max(1, int(1.0 / scale))
        src = cv2.resize(window, (max(1, w // k), max(1, h // k)), interpolation=cv2.INTER_AREA)
        rx, ry = src.shape[1] / w, src.shape[0] / h
        fx, fy, fw, fh = fx * rx, fy * ry, fw * rx, fh * ry
    ax, ay = out_w / fw, out_h / fh
    m = np.array([[ax, 0.0, -fx * ax + 0.5 * ax - 0.5], [0.0, ay, -fy * ay + 0.5 * ay - 0.5]])
    return cv2.warpAffine(
        src, m, (out_w, out_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


def _to_rgb8(data: np.ndarray, path: Path) -> np.ndarray:
    if data.ndim == 2:
        data = np.repeat(data[..., None], 3, axis=2)
    if data.shape[2] == 4:
        data = data[..., :3]
    elif data.shape[2] == 1:
        data = np.repeat(data, 3, axis=2)
    elif data.shape[2] != 3:
        raise UnsupportedFormatError(
            f"{path}: {data.shape[2]} channels; an RGB (brightfield H&E) image is expected."
        )
    if data.dtype != np.uint8:
        if data.dtype == np.uint16:
            data = (data >> 8).astype(np.uint8)
        elif np.issubdtype(data.dtype, np.floating):
            scale = 255.0 if float(np.nanmax(data, initial=0.0)) <= 1.0 else 1.0
            data = np.clip(data * scale, 0, 255).astype(np.uint8)
        else:
            data = np.clip(data, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(data)
