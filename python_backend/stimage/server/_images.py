"""Tiles from clients: safe decoding, physical-size check, resizing, stain fits per image."""

from __future__ import annotations

import io
import logging
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from stimage.server._protocol import ErrorCode, ProtocolError

if TYPE_CHECKING:
    from stimage.tiles import StainNormalizer

__all__ = ["StainCache", "decode_tile", "encode_tile", "fit_to_model", "pick_stain_tiles"]

logger = logging.getLogger(__name__)

_PNG = b"\x89PNG\r\n\x1a\n"
_JPEG = b"\xff\xd8\xff"
#: Tissue: LAB lightness / 255 below this (staintools' threshold, as the stain fit uses).
_TISSUE_L = 0.8
#: Tiles used to fit a stain source: at most this many, the most tissue-rich first.
_STAIN_TILES = 16


def decode_tile(data: bytes, max_px: int, what: str = "tile") -> np.ndarray:
    """Decode a PNG or JPEG tile to RGB uint8, refusing anything else.

    The size is read from the image header first: an image with a side over ``max_px``
    (a decompression bomb) is refused before any pixel is decoded. Truncated or corrupt
    data is refused, never padded.

    Raises:
        ProtocolError: ``bad_image`` (not PNG/JPEG, corrupt, truncated, odd mode) or
            ``too_large`` (a side over ``max_px``).
    """
    from PIL import Image

    if not (data.startswith(_PNG) or data.startswith(_JPEG)):
        raise ProtocolError(
            ErrorCode.BAD_IMAGE,
            f"{what}: not a PNG or JPEG image (first bytes {data[:8].hex()}); encode tiles as PNG or JPEG",
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=("PNG", "JPEG"))
            w, h = im.size
            if max(w, h) > max_px or min(w, h) < 1:
                raise ProtocolError(
                    ErrorCode.TOO_LARGE,
                    f"{what}: {w} x {h} px; this server decodes tiles of at most {max_px} px a side",
                )
            if im.mode not in ("RGB", "RGBA", "L", "LA", "P", "I;16", "CMYK", "YCbCr"):
                raise ProtocolError(
                    ErrorCode.BAD_IMAGE, f"{what}: unsupported image mode {im.mode}"
                )
            im.load()
            rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except ProtocolError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Warning) as e:
        raise ProtocolError(
            ErrorCode.BAD_IMAGE, f"{what}: cannot decode the image ({type(e).__name__}: {e})"
        ) from e
    if rgb.shape != (h, w, 3):
        raise ProtocolError(
            ErrorCode.BAD_IMAGE, f"{what}: decoded to shape {rgb.shape}, expected {(h, w, 3)}"
        )
    return rgb


def encode_tile(tile: np.ndarray, fmt: str = "png", quality: int = 90) -> bytes:
    """Encode an RGB uint8 tile as PNG (lossless, fast compression) or JPEG."""
    import cv2

    from stimage.errors import UnsupportedFormatError

    arr = np.asarray(tile)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise UnsupportedFormatError(
            f"tiles must be RGB uint8 arrays of shape (h, w, 3); got {arr.dtype} {arr.shape}"
        )
    bgr = np.ascontiguousarray(arr[..., ::-1])
    if fmt == "png":
        ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    elif fmt in ("jpg", "jpeg"):
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    else:
        raise UnsupportedFormatError(f"tile format {fmt!r}: use 'png' or 'jpeg'")
    if not ok:
        raise UnsupportedFormatError("OpenCV could not encode the tile")
    return buf.tobytes()


def fit_to_model(
    tile: np.ndarray, mpp: float, tile_um: float, tile_px: int, tolerance: float, what: str = "tile"
) -> np.ndarray:
    """Check a tile's physical size against the model's and resize it to ``tile_px``.

    Raises:
        ProtocolError: ``wrong_scale`` when a side's µm differ from ``tile_um`` by more
            than ``tolerance`` (relative).
    """
    import cv2

    h, w = tile.shape[:2]
    for side in (w, h):
        um = side * mpp
        if abs(um - tile_um) > tolerance * tile_um:
            raise ProtocolError(
                ErrorCode.WRONG_SCALE,
                f"{what}: {w} x {h} px at {mpp:g} µm/px is {w * mpp:.1f} x {h * mpp:.1f} µm; the model "
                f"needs {tile_um:g} µm square tiles (within {tolerance:.0%}): read "
                f"{tile_um / mpp:.0f} px tiles at this resolution",
                {"tile_um": tile_um, "tile_px": tile_px},
            )
    if (h, w) == (tile_px, tile_px):
        return tile
    interp = cv2.INTER_AREA if max(h, w) > tile_px else cv2.INTER_LINEAR
    return cv2.resize(tile, (tile_px, tile_px), interpolation=interp)


def tissue_fraction(tile: np.ndarray) -> float:
    """Fraction of pixels whose LAB lightness is below the stain fit's tissue threshold."""
    import cv2

    lightness = cv2.cvtColor(tile, cv2.COLOR_RGB2LAB)[..., 0]
    return float((lightness < _TISSUE_L * 255).mean())


def pick_stain_tiles(tiles: Sequence[np.ndarray], min_fraction: float = 0.5) -> list[np.ndarray]:
    """The tiles to fit a stain source on: the most tissue-rich ones (up to 16).

    Raises:
        ProtocolError: ``no_tissue`` when no tile holds enough tissue.
    """
    fractions = np.array([tissue_fraction(t) for t in tiles])
    order = np.argsort(-fractions, kind="stable")
    chosen = [tiles[i] for i in order[:_STAIN_TILES] if fractions[i] >= min_fraction]
    if not chosen:
        raise ProtocolError(
            ErrorCode.NO_TISSUE,
            f"none of the {len(tiles)} tiles is at least {min_fraction:.0%} tissue (best "
            f"{fractions.max():.0%}), so the stain normalisation of this image cannot be fitted; "
            "send tiles with tissue first (the fit is kept for later requests with the same image_id)",
        )
    return chosen


class StainCache:
    """Stain normalisers fitted per (model, image id), least recently used dropped.

    The first request of an image fits the source stains on the tissue of its tiles; later
    requests with the same ``image_id`` reuse that fit, so all tiles of one image are
    normalised alike. Concurrent first requests of one image fit once.

    Args:
        maxsize: Fits kept.
    """

    def __init__(self, maxsize: int = 64) -> None:
        self.maxsize = maxsize
        self._fits: OrderedDict[tuple[str, str], StainNormalizer] = OrderedDict()
        self._lock = threading.Lock()
        self._key_locks: dict[tuple[str, str], threading.Lock] = {}

    def __len__(self) -> int:
        with self._lock:
            return len(self._fits)

    def __contains__(self, key: tuple[str, str]) -> bool:
        with self._lock:
            return key in self._fits

    def get_or_fit(
        self, key: tuple[str, str], fit: Callable[[], StainNormalizer]
    ) -> StainNormalizer:
        """The cached normaliser of ``key``, or ``fit()`` stored under it."""
        with self._lock:
            if key in self._fits:
                self._fits.move_to_end(key)
                return self._fits[key]
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._fits:
                    self._fits.move_to_end(key)
                    return self._fits[key]
            try:
                norm = fit()
            except BaseException:
                with self._lock:
                    self._key_locks.pop(key, None)
                raise
            with self._lock:
                self._fits[key] = norm
                self._key_locks.pop(key, None)
                while len(self._fits) > self.maxsize:
                    old, _ = self._fits.popitem(last=False)
                    logger.debug("stain fit of %s dropped from the cache", old)
            return norm
