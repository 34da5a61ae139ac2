"""Plain raster images (JPEG, PNG, ...) as slides, decoded once into a memory-mapped cache.

A plain image has no tiles: reading any region means decoding the whole file. So
:class:`RasterSlide` decodes it once into ``<cache>/decoded/<key>/`` (with a few
downsampled levels for thumbnails) and later opens, in this or any process, map those
files. The cache is pruned to a size limit, least recently used first.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import threading
from pathlib import Path
from typing import Any

import numpy as np

from stimage.data._slide_base import Slide, _plausible_mpp, _to_rgb8
from stimage.errors import ImageTooLargeError, UnreadableImageError

__all__ = [
    "MAX_CACHE_BYTES",
    "MAX_RASTER_PIXELS",
    "RasterSlide",
    "cache_dir",
    "max_raster_pixels",
    "prune_cache",
]

logger = logging.getLogger(__name__)

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
        self._init_scale(path, _raster_mpp(path), mpp)

    @classmethod
    def _load(cls, path: Path, use_cache: bool) -> list[np.ndarray]:
        st = path.stat()
        key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
        folder = cache_dir() / "decoded" / hashlib.sha1(key.encode()).hexdigest()[:20]
        names = ["level0.npy"] + [f"level_ds{d}.npy" for d in cls.PYRAMID]
        if use_cache and (folder / "complete").exists():
            cached = _load_cached(folder, names)
            if cached is not None:
                return cached
            logger.warning("decoded cache %s is damaged; decoding %s again", folder, path)
        levels = _build_pyramid(_decode_raster(path), cls.PYRAMID)
        if not use_cache:
            return levels
        try:
            return _save_cached(folder, names, levels, path)
        except OSError as e:
            logger.info("cannot cache decoded %s in %s (%s); keeping it in memory", path, folder, e)
            return levels

    def _read_level(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        return np.array(self._levels[level][y : y + h, x : x + w])


def _load_cached(folder: Path, names: list[str]) -> list[np.ndarray] | None:
    """Map the decoded levels of a complete cache entry, or return None if it is damaged."""
    try:
        levels = [np.load(folder / n, mmap_mode="r") for n in names if (folder / n).exists()]
    except (OSError, ValueError):
        return None
    with contextlib.suppress(OSError):
        (folder / "complete").touch()  # recently used: pruned last
    return levels


def _build_pyramid(base: np.ndarray, downsamples: tuple[int, ...]) -> list[np.ndarray]:
    """``base`` and its area-downsampled copies, stopping before a side falls under 16 px."""
    import cv2

    levels = [base]
    h, w = base.shape[:2]
    for d in downsamples:
        if min(h, w) // d < 16:
            break
        levels.append(cv2.resize(base, (w // d, h // d), interpolation=cv2.INTER_AREA))
    return levels


def _save_cached(
    folder: Path, names: list[str], levels: list[np.ndarray], source: Path
) -> list[np.ndarray]:
    """Write the levels into a cache entry (atomically per file) and map them back."""
    folder.mkdir(parents=True, exist_ok=True)
    for n, arr in zip(names, levels, strict=False):
        tmp = folder / (n + ".tmp")
        with open(tmp, "wb") as fh:
            np.save(fh, arr)
        tmp.replace(folder / n)
    (folder / "source.txt").write_text(str(source.resolve()) + "\n")
    (folder / "complete").touch()
    prune_cache()
    return [np.load(folder / n, mmap_mode="r") for n in names[: len(levels)]]


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
    try:
        with _open_raster(path) as im:
            dpi = im.info.get("dpi")
            unit = im.info.get("jfif_unit")
            density = im.info.get("jfif_density")
    except (OSError, SyntaxError, ValueError):
        return None
    if unit == 2 and density and density[0]:  # dots per centimetre
        return _plausible_mpp(1e4 / float(density[0]))
    if dpi and dpi[0]:
        return _plausible_mpp(25400.0 / float(dpi[0]))
    return None
