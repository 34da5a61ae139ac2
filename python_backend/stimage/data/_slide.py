"""Slides: whole-slide images and large plain images behind one small interface.

Three backends share :class:`Slide`:

* :class:`OpenSlideSlide` for what OpenSlide reads (svs, ndpi, mrxs, scn, vms, bif, tiled
  pyramidal TIFF),
* :class:`TiffSlide` for other TIFF files (OME-TIFF pyramids, strip TIFFs) through tifffile,
  reading regions lazily through zarr,
* :class:`RasterSlide` for JPEG, PNG and other plain images, decoded once into a memory-mapped
  cache so that a tile read never decodes the whole image again.

All coordinates are level-0 (full-resolution) pixels, ``(x, y)`` order, as in QuPath.
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
import logging
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from stimage.errors import (
    ImageTooLargeError,
    InputFileNotFoundError,
    UnknownScaleError,
    UnreadableImageError,
    UnsupportedFormatError,
)

__all__ = [
    "OpenSlideSlide",
    "RasterSlide",
    "Slide",
    "TiffSlide",
    "open_slide",
]

logger = logging.getLogger(__name__)

#: Plausible range of µm per pixel for a microscope image; outside it, metadata is ignored.
MPP_RANGE = (0.05, 50.0)

_RASTER_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
_TIFF_SUFFIXES = {".tif", ".tiff", ".btf"}


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


# ---------------------------------------------------------------------------------------------
# OpenSlide
# ---------------------------------------------------------------------------------------------
class OpenSlideSlide(Slide):
    """A slide read by OpenSlide (svs, ndpi, mrxs, scn, tiled pyramidal TIFF, ...)."""

    def __init__(self, path: Path, mpp: float | None = None) -> None:
        import openslide

        try:
            self._osr = openslide.OpenSlide(str(path))
        except openslide.OpenSlideError as e:
            raise UnreadableImageError(
                f"{path}: OpenSlide cannot read this slide ({e}); check that the file is complete."
            ) from e
        props = self._osr.properties
        meta = None
        try:
            mx = props.get(openslide.PROPERTY_NAME_MPP_X)
            my = props.get(openslide.PROPERTY_NAME_MPP_Y)
            if mx is not None:
                vals = [float(mx)] + ([float(my)] if my is not None else [])
                meta = _plausible_mpp(float(np.mean(vals)))
        except ValueError:
            meta = None
        self.level_dimensions = [tuple(map(int, d)) for d in self._osr.level_dimensions]
        self.vendor = props.get(openslide.PROPERTY_NAME_VENDOR)
        if mpp is not None:
            super().__init__(path, None, "unknown")
            self.set_mpp(mpp, "user")
        else:
            super().__init__(path, meta, "metadata")
        bg = props.get(openslide.PROPERTY_NAME_BACKGROUND_COLOR)
        self._background = (
            tuple(int(bg[i : i + 2], 16) for i in (0, 2, 4)) if bg else (255, 255, 255)
        )

    def _read_level(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        ds = self._osr.level_downsamples[level]
        img = self._osr.read_region((round(x * ds), round(y * ds)), level, (w, h))
        rgba = np.asarray(img)
        rgb = rgba[..., :3].astype(np.float32)
        alpha = rgba[..., 3:4].astype(np.float32) / 255.0
        bg = np.asarray(self._background, dtype=np.float32)
        return np.clip(rgb * alpha + bg * (1 - alpha) + 0.5, 0, 255).astype(np.uint8)

    def close(self) -> None:
        """Close the OpenSlide handle."""
        self._osr.close()


# ---------------------------------------------------------------------------------------------
# TIFF through tifffile
# ---------------------------------------------------------------------------------------------
class TiffSlide(Slide):
    """A TIFF read with tifffile: OME-TIFF pyramids, tiled or strip TIFFs, RGB or RGBA."""

    def __init__(self, path: Path, mpp: float | None = None) -> None:
        import tifffile
        import zarr

        try:
            self._tif = tifffile.TiffFile(str(path))
            series = self._tif.series[0]
            levels = list(series.levels)
        except (tifffile.TiffFileError, OSError, IndexError, ValueError) as e:
            raise UnreadableImageError(
                f"{path}: not a readable TIFF ({e}); check that the file is complete."
            ) from e
        self._axes = series.axes
        self._arrays = []
        dims = []
        for i, lvl in enumerate(levels):
            store = series.aszarr(level=i)
            self._arrays.append(zarr.open_array(store, mode="r"))
            shape = dict(zip(lvl.axes, lvl.shape, strict=True))
            dims.append((int(shape["X"]), int(shape["Y"])))
        self.level_dimensions = dims
        if "Y" not in self._axes or "X" not in self._axes:
            raise UnsupportedFormatError(f"{path}: TIFF series has axes {self._axes!r}, no Y/X")
        meta = _tiff_mpp(self._tif)
        if mpp is not None:
            super().__init__(path, None, "unknown")
            self.set_mpp(mpp, "user")
        else:
            super().__init__(path, meta, "metadata")

    def _read_level(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        arr = self._arrays[level]
        index: list[Any] = []
        for ax in self._axes:
            if ax == "Y":
                index.append(slice(y, y + h))
            elif ax == "X":
                index.append(slice(x, x + w))
            elif ax in "CS":
                index.append(slice(None))
            else:
                index.append(0)
        data = np.asarray(arr[tuple(index)])
        kept = [ax for ax in self._axes if ax in "YXCS"]
        if len(kept) == 3 and kept.index("Y") != 0:  # channels first -> last
            data = np.moveaxis(data, kept.index("Y"), 0)
            if data.shape[1] != h:
                data = np.moveaxis(data, 1, 2)
        return _to_rgb8(data, self.path)

    def close(self) -> None:
        """Close the TIFF file."""
        self._tif.close()


def _tiff_mpp(tif: Any) -> float | None:
    """µm per pixel from OME metadata or the TIFF resolution tags, if plausible."""
    import tifffile

    if tif.is_ome and tif.ome_metadata:
        try:
            meta = tifffile.xml2dict(tif.ome_metadata)
            pixels = meta["OME"]["Image"]
            pixels = (pixels[0] if isinstance(pixels, list) else pixels)["Pixels"]
            unit = pixels.get("PhysicalSizeXUnit", "µm")
            value = float(pixels["PhysicalSizeX"])
            factor = {"µm": 1.0, "um": 1.0, "nm": 1e-3, "mm": 1e3, "cm": 1e4}.get(unit)
            if factor is not None:
                return _plausible_mpp(value * factor)
        except (KeyError, TypeError, ValueError):
            pass
    page = tif.pages[0]
    desc = page.description or ""
    if "Aperio" in desc and "MPP" in desc:
        for part in desc.split("|"):
            k, _, v = part.partition("=")
            if k.strip() == "MPP":
                try:
                    return _plausible_mpp(float(v))
                except ValueError:
                    break
    tags = page.tags
    if "XResolution" in tags and "ResolutionUnit" in tags:
        num, den = tags["XResolution"].value
        unit = int(tags["ResolutionUnit"].value)
        if num > 0 and den > 0:
            px_per_unit = num / den
            per_unit_um = {2: 25400.0, 3: 10000.0}.get(unit)  # inch, centimetre
            if per_unit_um is not None:
                return _plausible_mpp(per_unit_um / px_per_unit)
    return None


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


# ---------------------------------------------------------------------------------------------
# Plain raster images (JPEG, PNG) decoded once into a memory-mapped cache
# ---------------------------------------------------------------------------------------------
_PIL_LOCK = threading.Lock()
#: Default most pixels of a plain image decoded whole (16,000 x 16,000; 750 MB as RGB).
MAX_RASTER_PIXELS = 256_000_000
#: Default most bytes of decoded images kept in the cache; the least recently used go first.
MAX_CACHE_BYTES = 8 << 30


def _env_number(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = int(float(raw))
    except ValueError:
        logger.warning("%s=%r is not a number; using %d", name, raw, default)
        return default
    return value if value > 0 else default


def max_raster_pixels() -> int:
    """Most pixels of a plain image decoded whole: ``$STIMAGE_MAX_IMAGE_PIXELS`` or 256 M."""
    return _env_number("STIMAGE_MAX_IMAGE_PIXELS", MAX_RASTER_PIXELS)


def cache_dir() -> Path:
    """Folder for decoded-image caches: ``$STIMAGE_CACHE`` or ``~/.cache/stimage``."""
    env = os.environ.get("STIMAGE_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "stimage"


def prune_cache(limit: int | None = None) -> int:
    """Delete the least recently used decoded images until the cache holds at most ``limit`` bytes.

    ``limit`` defaults to ``$STIMAGE_CACHE_MAX_BYTES`` or 8 GiB. Returns the bytes freed.
    """
    import shutil

    limit = _env_number("STIMAGE_CACHE_MAX_BYTES", MAX_CACHE_BYTES) if limit is None else limit
    root = cache_dir() / "decoded"
    if not root.is_dir():
        return 0
    entries = []
    for d in root.iterdir():
        marker = d / "complete"
        try:
            size = sum(f.stat().st_size for f in d.iterdir() if f.is_file())
            used = marker.stat().st_mtime if marker.exists() else 0.0
        except OSError:
            continue
        entries.append((used, size, d))
    entries.sort()
    total = sum(e[1] for e in entries)
    freed = 0
    for _, size, d in entries:
        if total - freed <= limit:
            break
        shutil.rmtree(d, ignore_errors=True)
        freed += size
        logger.info("decoded-image cache: removed %s (%d MB)", d.name, size >> 20)
    return freed


class RasterSlide(Slide):
    """A plain image (JPEG, PNG, ...) of any size, decoded once.

    The first open decodes the image (no decompression-bomb limit: these are microscope
    images) into ``<cache>/decoded/<key>/`` as memory-mapped arrays, with a few
    downsampled levels for thumbnails; later opens, in this or any process, map those
    files. The key covers the file's absolute path, size and modification time, so an
    edited image is decoded afresh. Where the cache cannot be written, the decoded image
    stays in memory.
    """

    #: Downsamples of the extra pyramid levels built on first decode.
    PYRAMID = (4, 16, 64)

    def __init__(self, path: Path, mpp: float | None = None, use_cache: bool = True) -> None:
        self._levels = self._load(path, use_cache)
        self.level_dimensions = [(a.shape[1], a.shape[0]) for a in self._levels]
        meta = _raster_mpp(path)
        if mpp is not None:
            super().__init__(path, None, "unknown")
            self.set_mpp(mpp, "user")
        else:
            super().__init__(path, meta, "metadata")

    @classmethod
    def _load(cls, path: Path, use_cache: bool) -> list[np.ndarray]:
        st = path.stat()
        key = hashlib.sha1(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[
            :20
        ]
        folder = cache_dir() / "decoded" / key
        names = ["level0.npy"] + [f"level_ds{d}.npy" for d in cls.PYRAMID]
        if use_cache and (folder / "complete").exists():
            try:
                levels = [
                    np.load(folder / n, mmap_mode="r") for n in names if (folder / n).exists()
                ]
                with contextlib.suppress(OSError):
                    (folder / "complete").touch()  # recently used: pruned last
                return levels
            except (OSError, ValueError):
                logger.warning("decoded cache %s is damaged; decoding %s again", folder, path)
        base = _decode_raster(path)
        levels = [base]
        h, w = base.shape[:2]
        import cv2

        for d in cls.PYRAMID:
            if min(h, w) // d < 16:
                break
            levels.append(cv2.resize(base, (w // d, h // d), interpolation=cv2.INTER_AREA))
        if not use_cache:
            return levels
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for n, arr in zip(names, levels, strict=False):
                tmp = folder / (n + ".tmp")
                with open(tmp, "wb") as fh:
                    np.save(fh, arr)
                tmp.replace(folder / n)
            (folder / "source.txt").write_text(str(path.resolve()) + "\n")
            (folder / "complete").touch()
            prune_cache()
            return [np.load(folder / n, mmap_mode="r") for n in names[: len(levels)]]
        except OSError as e:
            logger.info("cannot cache decoded %s in %s (%s); keeping it in memory", path, folder, e)
            return levels

    def _read_level(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        return np.array(self._levels[level][y : y + h, x : x + w])


def _open_raster(path: Path) -> Any:
    """Open a plain image (its header only), without Pillow's decompression-bomb limit.

    Only the header is read under the lock (Pillow's limit is a global); the caller checks
    the size against :func:`max_raster_pixels` before decoding anything.
    """
    from PIL import Image

    with _PIL_LOCK:
        old = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None  # microscope images are large by nature
        try:
            return Image.open(path)
        finally:
            Image.MAX_IMAGE_PIXELS = old


def _decode_raster(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        im = _open_raster(path)
    except Image.UnidentifiedImageError as e:
        raise UnreadableImageError(
            f"{path}: not an image format Pillow can read; convert it to TIFF, JPEG or PNG."
        ) from e
    except (OSError, SyntaxError, ValueError) as e:
        raise UnreadableImageError(
            f"{path}: cannot decode the image ({e}); the file may be truncated - "
            "copy or export it again."
        ) from e
    with im:
        w, h = im.size
        limit = max_raster_pixels()
        if w * h > limit:
            raise ImageTooLargeError(
                f"{path}: {w} x {h} px ({w * h / 1e6:.0f} M pixels); a plain {im.format or 'image'} "
                f"file is decoded whole, and this is over the limit of {limit / 1e6:.0f} M pixels. "
                "Convert it to a tiled pyramidal TIFF (for example `vips tiffsave IN OUT.tif --tile "
                "--pyramid`), or raise the limit with STIMAGE_MAX_IMAGE_PIXELS if memory allows."
            )
        try:
            im.load()
            if im.mode not in ("RGB", "L", "RGBA"):
                im = im.convert("RGB")
            arr = np.asarray(im)
        except (OSError, SyntaxError, ValueError) as e:
            raise UnreadableImageError(
                f"{path}: cannot decode the image ({e}); the file may be truncated - "
                "copy or export it again."
            ) from e
    return _to_rgb8(arr, path)


def _raster_mpp(path: Path) -> float | None:
    """µm per pixel from a PNG pHYs chunk or JPEG density given in dots per cm, if plausible.

    Dots-per-inch values (72, 96, 300 dpi) are screen or print defaults, not microscope scales,
    and fall outside the plausible range anyway.
    """
    from PIL import Image

    with _PIL_LOCK:
        old = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            with Image.open(path) as im:
                dpi = im.info.get("dpi")
                unit = im.info.get("jfif_unit")
                density = im.info.get("jfif_density")
        except (OSError, SyntaxError, ValueError):
            return None
        finally:
            Image.MAX_IMAGE_PIXELS = old
    if unit == 2 and density and density[0]:  # dots per centimetre
        return _plausible_mpp(1e4 / float(density[0]))
    if dpi and dpi[0]:
        return _plausible_mpp(25400.0 / float(dpi[0]))
    return None


# ---------------------------------------------------------------------------------------------
def open_slide(path: str | os.PathLike[str], mpp: float | None = None) -> Slide:
    """Open an image as a :class:`Slide`, choosing the backend from the file.

    Args:
        path: A whole-slide image, TIFF, JPEG or PNG.
        mpp: µm per pixel, overriding the metadata (needed when the file has none).

    Raises:
        InputFileNotFoundError: The file does not exist.
        UnreadableImageError: The file cannot be decoded.
        UnsupportedFormatError: No backend reads this kind of file.

    Example:
        >>> with open_slide("section.svs") as slide:  # doctest: +SKIP
        ...     tile = slide.read_um(cx=5000, cy=4000, size_um=100, out_px=224)
    """
    p = Path(path)
    if not p.exists():
        raise InputFileNotFoundError(f"{p}: no such image file; check the path.")
    if p.is_dir() and p.suffix.lower() != ".mrxs":
        raise UnsupportedFormatError(f"{p}: is a folder; give the image file inside it.")
    if not p.is_file() and not p.is_dir():
        # A FIFO, socket or device would block (or never end) when read.
        raise UnsupportedFormatError(
            f"{p}: is not a regular file (a pipe, socket or device); give an image file."
        )
    suffix = p.suffix.lower()
    if suffix in _RASTER_SUFFIXES:
        return RasterSlide(p, mpp)
    import openslide

    try:
        fmt = openslide.OpenSlide.detect_format(str(p))
    except openslide.OpenSlideError:
        fmt = None
    is_ome = p.name.lower().endswith((".ome.tif", ".ome.tiff"))
    if fmt is not None and not (fmt == "generic-tiff" and is_ome):
        try:
            return OpenSlideSlide(p, mpp)
        except UnreadableImageError:
            if p.suffix.lower() not in _TIFF_SUFFIXES:
                raise
    if suffix in _TIFF_SUFFIXES:
        return TiffSlide(p, mpp)
    # Unknown suffix: try Pillow last.
    try:
        return RasterSlide(p, mpp)
    except UnreadableImageError as e:
        raise UnsupportedFormatError(
            f"{p}: unknown image format; supported are OpenSlide formats (svs, ndpi, mrxs, "
            "scn, tiled TIFF), TIFF/OME-TIFF, JPEG and PNG."
        ) from e
