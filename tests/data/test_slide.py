from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stimage.data import OpenSlideSlide, RasterSlide, Slide, TiffSlide, open_slide
from stimage.data import _raster as raster_mod
from stimage.errors import InputFileNotFoundError, UnknownScaleError, UnreadableImageError


def test_openslide_pyramid_reads_exact_pixels_and_scale(
    pyramid_tiff: Path, he_image: np.ndarray
) -> None:
    with open_slide(pyramid_tiff) as s:
        assert isinstance(s, OpenSlideSlide)
        assert s.dimensions == (1600, 1200)
        assert s.level_count == 3
        assert s.mpp == pytest.approx(0.5)
        assert s.mpp_source == "metadata"
        region = s.read_region(300, 200, 256, 128)
        np.testing.assert_array_equal(region, he_image[200:328, 300:556])


def test_ome_tiff_through_tifffile(tmp_path: Path, he_image: np.ndarray) -> None:
    from conftest import write_pyramid_tiff

    p = write_pyramid_tiff(tmp_path / "s.ome.tif", he_image, 0.25, ome=True)
    with open_slide(p) as s:
        assert isinstance(s, TiffSlide)
        assert s.level_dimensions == [(1600, 1200), (800, 600), (400, 300)]
        assert s.mpp == pytest.approx(0.25)
        np.testing.assert_array_equal(s.read_region(10, 20, 64, 32), he_image[20:52, 10:74])


def test_downsampled_read_uses_pyramid_and_matches_area_resize(
    pyramid_tiff: Path, he_image: np.ndarray
) -> None:
    import cv2

    with open_slide(pyramid_tiff) as s:
        assert s.best_level_for_downsample(4.0) == 2
        assert s.best_level_for_downsample(3.0) == 1
        out = s.read_region(0, 0, 1600, 1200, downsample=4)
        assert out.shape == (300, 400, 3)
        ref = cv2.resize(he_image, (400, 300), interpolation=cv2.INTER_AREA)
        assert np.abs(out.astype(int) - ref).mean() < 2.0


def test_read_um_gives_physical_size(pyramid_tiff: Path, he_image: np.ndarray) -> None:
    import cv2

    with open_slide(pyramid_tiff) as s:
        tile = s.read_um(800, 600, size_um=100, out_px=50)  # 100 µm = 200 px at 0.5 µm/px
        assert tile.shape == (50, 50, 3)
        ref = cv2.resize(he_image[500:700, 700:900], (50, 50), interpolation=cv2.INTER_AREA)
        assert np.abs(tile.astype(int) - ref).mean() < 3.0


def test_outside_the_image_reads_white(pyramid_tiff: Path, he_image: np.ndarray) -> None:
    with open_slide(pyramid_tiff) as s:
        r = s.read_region(-50, -20, 100, 60)
        assert (r[:20] == 255).all() and (r[:, :50] == 255).all()
        np.testing.assert_array_equal(r[20:, 50:], he_image[0:40, 0:50])


def test_subpixel_region_is_interpolated_not_shifted() -> None:
    img = np.zeros((100, 100, 3), np.uint8)
    img[:, 50:] = 200

    class Mem(Slide):
        def __init__(self) -> None:
            self.level_dimensions = [(100, 100)]
            super().__init__(Path("mem"), 1.0, "user")

        def _read_level(self, level, x, y, w, h):  # type: ignore[no-untyped-def]
            return img[y : y + h, x : x + w]

    s = Mem()
    # A 20 px window centred on the edge at x = 50: left half dark, right half bright.
    out = s.read_region(40.5, 10, 20, 20, out_size=(20, 20))
    assert out[:, :9].max() < 30 and out[:, 11:].min() > 170


def test_jpeg_decoded_once_then_memory_mapped(
    tmp_path: Path, he_image: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = tmp_path / "big.jpg"
    Image.fromarray(he_image).save(p, quality=95)
    calls = []
    real = raster_mod._decode_raster
    monkeypatch.setattr(raster_mod, "_decode_raster", lambda path: calls.append(path) or real(path))
    a = open_slide(p, mpp=0.5)
    assert isinstance(a, RasterSlide)
    tiles = [a.read_region(100 * i, 100, 64, 64) for i in range(10)]
    b = open_slide(p, mpp=0.5)
    b.read_region(0, 0, 64, 64)
    assert len(calls) == 1, "the JPEG must be decoded once, not per tile or per open"
    assert isinstance(b._levels[0], np.memmap)
    assert np.abs(tiles[3].astype(int) - he_image[100:164, 300:364]).mean() < 3
    assert a.level_count >= 2  # a small pyramid for thumbnails


def test_jpeg_cache_invalidated_when_file_changes(tmp_path: Path, he_image: np.ndarray) -> None:
    p = tmp_path / "x.png"
    Image.fromarray(he_image).save(p, compress_level=1)
    first = open_slide(p, mpp=1).read_region(0, 0, 10, 10)
    Image.fromarray(255 - he_image).save(p, compress_level=1)
    import os

    os.utime(p, ns=(1, 10**18))
    second = open_slide(p, mpp=1).read_region(0, 0, 10, 10)
    np.testing.assert_array_equal(second, 255 - first)


def test_image_above_pillow_bomb_limit_opens(
    tmp_path: Path, he_image: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = tmp_path / "huge.jpg"
    Image.fromarray(he_image).save(p, compress_level=1)
    # Pretend the image is a decompression bomb for Pillow's default limit.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with open_slide(p, mpp=0.5) as s:
        assert s.dimensions == (1600, 1200)
    assert Image.MAX_IMAGE_PIXELS == 1000  # the global limit is restored


def test_truncated_jpeg_is_a_clear_error(tmp_path: Path, he_image: np.ndarray) -> None:
    p = tmp_path / "cut.jpg"
    Image.fromarray(he_image).save(p, compress_level=1)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 3])
    with pytest.raises(UnreadableImageError, match="truncated"):
        open_slide(p, mpp=0.5)


def test_garbage_file_is_a_clear_error(tmp_path: Path) -> None:
    p = tmp_path / "notanimage.jpg"
    p.write_bytes(b"hello" * 100)
    with pytest.raises(UnreadableImageError, match=r"notanimage\.jpg"):
        open_slide(p)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputFileNotFoundError, match=r"nope\.svs"):
        open_slide(tmp_path / "nope.svs")


def test_unknown_scale_says_how_to_give_it(tmp_path: Path, he_image: np.ndarray) -> None:
    p = tmp_path / "noscale.png"
    Image.fromarray(he_image).save(p, compress_level=1)
    s = open_slide(p)
    assert not s.has_mpp
    with pytest.raises(UnknownScaleError, match="--mpp"):
        _ = s.mpp
    with pytest.raises(UnknownScaleError):
        s.read_um(10, 10, 50, 32)
    s.set_mpp(0.7)
    assert s.mpp == 0.7 and s.mpp_source == "user"


def test_implausible_scales_are_refused_or_ignored(tmp_path: Path, he_image: np.ndarray) -> None:
    p = tmp_path / "dpi.png"
    Image.fromarray(he_image).save(
        p, dpi=(72, 72), compress_level=1
    )  # a screen default, not a microscope scale
    s = open_slide(p)
    assert not s.has_mpp
    with pytest.raises(UnknownScaleError, match="plausible"):
        s.set_mpp(500.0)


def test_user_mpp_overrides_metadata(pyramid_tiff: Path) -> None:
    with open_slide(pyramid_tiff, mpp=0.25) as s:
        assert s.mpp == 0.25 and s.mpp_source == "user"


def test_thumbnail_at_mpp(pyramid_tiff: Path) -> None:
    with open_slide(pyramid_tiff) as s:
        t = s.thumbnail(mpp=4.0)
        assert t.shape == (150, 200, 3)
        assert s.thumbnail(max_side=100).shape == (75, 100, 3)


def test_read_region_at_target_mpp(pyramid_tiff: Path) -> None:
    with open_slide(pyramid_tiff) as s:  # 0.5 µm/px
        out = s.read_region(0, 0, 800, 400, mpp=2.0)
        assert out.shape == (100, 200, 3)
        np.testing.assert_array_equal(out, s.read_region(0, 0, 800, 400, downsample=4))
        with pytest.raises(ValueError, match="one of"):
            s.read_region(0, 0, 10, 10, mpp=1.0, downsample=2)
