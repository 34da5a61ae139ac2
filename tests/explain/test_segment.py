"""Nucleus segmentation: synthetic nuclei of known size, tiling without duplicates, errors."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from shapely.geometry import Polygon, box

from _synth import STAINS
from stimage.errors import (
    ConfigError,
    InputFileNotFoundError,
    MissingDependencyError,
    StimageError,
    UnsupportedFormatError,
)
from stimage.explain import (
    INTENSITY_FEATURES,
    MORPHOLOGY_FEATURES,
    NUCLEUS_COLUMNS,
    CellposeSegmenter,
    ClassicalSegmenter,
    Nuclei,
    NucleusSegmenter,
    RegionOutsideImageError,
    SegmentationCancelledError,
    create_segmenter,
    find_cellpose_weights,
    rgb_to_hed,
    segment_nuclei,
    segment_tile,
)


# ---------------------------------------------------------------------------------------------
# synthetic H&E with known nuclei
# ---------------------------------------------------------------------------------------------
def render_nuclei(
    size_um: float,
    mpp: float,
    *,
    n: int,
    seed: int = 0,
    semi_um: tuple[float, float] = (2.5, 4.5),
    gap_um: float = 2.5,
    pairs: int = 0,
    margin_um: float = 6.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Dark-purple ellipses (haematoxylin) on pink stroma (eosin); returns RGB and true labels.

    ``n`` nuclei that do not touch, then ``pairs`` pairs of round nuclei in contact.
    """
    import cv2

    rng = np.random.default_rng(seed)
    side = round(size_um / mpp)
    labels = np.zeros((side, side), np.int32)
    placed: list[tuple[float, float, float]] = []  # centre and outer radius, in µm

    def free(cx: float, cy: float, r: float) -> bool:
        inside = margin_um <= min(cx, cy) and max(cx, cy) <= size_um - margin_um
        return inside and all(np.hypot(cx - x, cy - y) > r + q + gap_um for x, y, q in placed)

    def draw(cx: float, cy: float, a: float, b: float, angle: float) -> None:
        k = int(labels.max()) + 1
        one = np.zeros((side, side), np.uint8)
        axes = (round(a / mpp * 16), round(b / mpp * 16))
        centre = (round(cx / mpp * 16), round(cy / mpp * 16))
        cv2.ellipse(one, centre, axes, angle, 0, 360, 1, -1, lineType=cv2.LINE_8, shift=4)
        labels[(one > 0) & (labels == 0)] = k

    for _ in range(20000):
        if len(placed) >= n:
            break
        a, b = sorted(rng.uniform(*semi_um, 2), reverse=True)
        cx, cy = rng.uniform(margin_um, size_um - margin_um, 2)
        if free(cx, cy, a):
            draw(cx, cy, a, b, float(rng.uniform(0, 180)))
            placed.append((cx, cy, a))
    done = 0
    for _ in range(20000):
        if done >= pairs:
            break
        r = float(np.mean(semi_um))
        cx, cy = rng.uniform(margin_um, size_um - margin_um, 2)
        ang = rng.uniform(0, np.pi)
        dx, dy = r * np.cos(ang), r * np.sin(ang)
        if free(cx, cy, 2 * r):
            draw(cx - dx, cy - dy, r, r, 0.0)
            draw(cx + dx, cy + dy, r, r, 0.0)
            placed.append((cx, cy, 2 * r))
            done += 1
    k = int(labels.max())
    field = cv2.GaussianBlur(rng.random((side, side)).astype(np.float32), (0, 0), 4.0 / mpp)
    field = (field - field.mean()) / (field.std() + 1e-6)
    eosin = 0.35 + 0.05 * field
    haem = np.zeros((side, side), np.float32)
    strength = rng.uniform(1.0, 1.5, k + 1)
    haem[labels > 0] = strength[labels[labels > 0]]
    od = haem[..., None] * STAINS[0] + (eosin + 0.1 * (labels > 0))[..., None] * STAINS[1]
    img = np.array([240.0, 236.0, 240.0]) * np.exp(-od)
    img = cv2.GaussianBlur(img.astype(np.float32), (0, 0), 0.35 / mpp)
    img += rng.normal(0, 2.0, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), labels


def match_iou(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """For each true label, the IoU with the predicted label that overlaps it most."""
    n = int(truth.max())
    out = np.zeros(n)
    for i in range(1, n + 1):
        t = truth == i
        ids, cnt = np.unique(pred[t], return_counts=True)
        cnt, ids = cnt[ids > 0], ids[ids > 0]
        if not len(ids):
            continue
        p = pred == ids[np.argmax(cnt)]
        out[i - 1] = (t & p).sum() / (t | p).sum()
    return out


def _write_png(path: Path, rgb: np.ndarray) -> Path:
    from PIL import Image

    Image.fromarray(rgb).save(path)
    return path


@pytest.fixture(scope="module")
def scene() -> tuple[np.ndarray, np.ndarray]:
    """300 x 300 µm at 0.5 µm/px with 80 separate nuclei."""
    return render_nuclei(300.0, 0.5, n=80, seed=3)


# ---------------------------------------------------------------------------------------------
def test_rgb_to_hed_matches_skimage() -> None:
    from skimage.color import rgb2hed

    rgb = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    np.testing.assert_allclose(rgb_to_hed(rgb), rgb2hed(rgb), atol=1e-5)


@pytest.mark.parametrize("mpp", [0.5, 0.3])
def test_counts_and_areas_are_right_at_two_resolutions(mpp: float) -> None:
    rgb, truth = render_nuclei(200.0, mpp, n=50, seed=1)
    n_true = int(truth.max())
    nuclei = segment_tile(rgb, mpp)
    assert abs(len(nuclei) - n_true) <= 0.1 * n_true, (len(nuclei), n_true)
    pred = nuclei.label_image(0, 0, rgb.shape[1], rgb.shape[0])
    iou = match_iou(truth, pred)
    assert np.median(iou) > 0.8, np.median(iou)
    # area in µm² of each true nucleus vs. its best match
    true_area = np.bincount(truth.ravel())[1:] * mpp**2
    matched = []
    for i in range(1, n_true + 1):
        ids, cnt = np.unique(pred[truth == i], return_counts=True)
        cnt, ids = cnt[ids > 0], ids[ids > 0]
        if len(ids):
            matched.append((true_area[i - 1], nuclei.features["area_um2"][ids[np.argmax(cnt)] - 1]))
    t, p = np.array(matched).T
    assert np.median(np.abs(p / t - 1)) < 0.15
    assert np.median(p) == pytest.approx(np.median(t), rel=0.15)


def test_touching_nuclei_are_split() -> None:
    rgb, truth = render_nuclei(150.0, 0.5, n=4, pairs=10, seed=4, semi_um=(3.0, 4.0))
    n_true = int(truth.max())
    assert n_true == 24
    nuclei = segment_tile(rgb, 0.5)
    assert abs(len(nuclei) - n_true) <= 0.1 * n_true, (len(nuclei), n_true)
    # no pair left whole: every nucleus is smaller than two
    assert (nuclei.features["area_um2"] < 1.5 * np.pi * 3.5**2).all()
    pred = nuclei.label_image(0, 0, rgb.shape[1], rgb.shape[0])
    assert np.median(match_iou(truth, pred)) > 0.75


def test_glass_and_stroma_only_give_no_nuclei() -> None:
    glass = np.random.default_rng(0).normal(238, 2, (256, 256, 3)).clip(0, 255).astype(np.uint8)
    rgb, truth = render_nuclei(100.0, 0.5, n=0, seed=2)
    assert truth.max() == 0
    for img in (glass, rgb):
        nuclei = segment_tile(img, 0.5)
        assert len(nuclei) == 0
        assert list(nuclei.features.columns) == list(NUCLEUS_COLUMNS)
        assert nuclei.label_image(0, 0, 10, 10).max() == 0


def test_features_are_sane(scene: tuple[np.ndarray, np.ndarray]) -> None:
    rgb, truth = scene
    nuclei = segment_tile(rgb, 0.5)
    f = nuclei.features
    assert list(f.columns) == list(NUCLEUS_COLUMNS)
    assert f.index.equals(pd.RangeIndex(len(f)))
    assert f[list(MORPHOLOGY_FEATURES + INTENSITY_FEATURES)].notna().all().all()
    assert ((f["eccentricity"] >= 0) & (f["eccentricity"] < 1)).all()
    assert (f["solidity"] > 0.85).all()
    assert (f["major_axis_um"] >= f["minor_axis_um"]).all()
    # perimeter of a near-ellipse: between that of the disc of the same area and 1.4 times it
    disc = 2 * np.sqrt(np.pi * f["area_um2"])
    assert ((f["perimeter_um"] > 0.85 * disc) & (f["perimeter_um"] < 1.4 * disc)).all()
    # nuclei are haematoxylin-rich and darker than the stroma around them
    hed = rgb_to_hed(rgb)
    stroma = truth == 0
    assert (f["hematoxylin_mean"] > 2 * hed[..., 0][stroma].mean()).all()
    assert (f["red_mean"] < rgb[..., 0][stroma].mean()).all()
    # centroids land on the true nuclei
    cx, cy = f["centroid_x"].to_numpy(), f["centroid_y"].to_numpy()
    assert (truth[(cy / 1).astype(int), (cx / 1).astype(int)] > 0).mean() > 0.95
    # polygons are in pixels and their areas agree with the pixel areas
    poly_area = np.array([p.area for p in nuclei.polygons]) * 0.5**2
    np.testing.assert_allclose(poly_area, f["area_um2"], rtol=0.2)


def test_origin_and_downsample_map_to_full_resolution(scene: tuple[np.ndarray, np.ndarray]) -> None:
    rgb, _ = scene
    a = segment_tile(rgb, 0.5)
    b = segment_tile(rgb, 0.5, origin=(1000.0, 200.0), downsample=2.0)
    assert len(a) == len(b)
    assert b.mpp == pytest.approx(0.25)
    np.testing.assert_allclose(b.centroids, a.centroids * 2 + [1000.0, 200.0])
    np.testing.assert_allclose(b.features["area_um2"], a.features["area_um2"])
    np.testing.assert_allclose(b.polygons[0].area, a.polygons[0].area * 4)


def test_label_image_round_trip(scene: tuple[np.ndarray, np.ndarray]) -> None:
    rgb, _ = scene
    labels = ClassicalSegmenter().segment(rgb, 0.5)
    nuclei = segment_tile(rgb, 0.5, origin=(500.0, 700.0), downsample=2.0)
    back = nuclei.label_image(500.0, 700.0, rgb.shape[1], rgb.shape[0], downsample=2.0)
    assert back.dtype == np.int32 and back.shape == labels.shape
    assert int(back.max()) == len(nuclei) == int(labels.max())
    # same labels (label i+1 = row i), pixel for pixel but for a few outline pixels
    assert ((back > 0) == (labels > 0)).mean() > 0.995
    both = (back > 0) & (labels > 0)
    assert (back[both] == labels[both]).mean() > 0.999
    # a window at half the resolution, shifted: nuclei keep their place
    half = nuclei.label_image(500.0 + 100, 700.0, 80, 150, downsample=4.0)
    edge = np.unique(np.concatenate([half[0], half[-1], half[:, 0], half[:, -1]]))
    inner = np.setdiff1d(np.unique(half[half > 0]), edge)
    assert len(inner) >= 5
    for i in inner:
        cy, cx = np.argwhere(half == i).mean(axis=0)
        x, y = nuclei.centroids[i - 1]
        assert abs((cx + 0.5) * 4 + 600 - x) < 6 and abs((cy + 0.5) * 4 + 700 - y) < 6


def test_nuclei_subset_within_concat(scene: tuple[np.ndarray, np.ndarray]) -> None:
    rgb, _ = scene
    nuclei = segment_tile(rgb, 0.5)
    n = len(nuclei)
    first = nuclei.subset(np.arange(n) < 10)
    assert len(first) == 10
    assert first.features.index.equals(pd.RangeIndex(10))
    pd.testing.assert_frame_equal(
        nuclei.subset([3, 1]).features, nuclei.features.iloc[[3, 1]].reset_index(drop=True)
    )
    left = nuclei.within(box(0, 0, 300, 600))
    right = nuclei.within((300, 0, 300, 600))
    assert len(left) + len(right) == n
    assert (left.centroids[:, 0] < 300).all() and (right.centroids[:, 0] >= 300).all()
    joined = Nuclei.concat([left, right])
    assert len(joined) == n and joined.features.index.equals(pd.RangeIndex(n))
    assert len(Nuclei.concat([Nuclei.empty(0.5), left])) == len(left)
    with pytest.raises(ConfigError, match="same full-resolution scale"):
        Nuclei.concat([left, Nuclei.empty(0.25)])
    with pytest.raises(ConfigError):
        nuclei.subset(np.ones(3, dtype=bool))
    with pytest.raises(ConfigError):
        Nuclei([Polygon([(0, 0), (1, 0), (1, 1)])], nuclei.features.iloc[:0], 0.5)


# ---------------------------------------------------------------------------------------------
# tiles and regions
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def slide_png(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    rgb, truth = render_nuclei(400.0, 0.5, n=160, seed=7)
    return _write_png(tmp_path_factory.mktemp("slide") / "slide.png", rgb), truth


def test_tiles_give_the_same_nuclei_as_one_piece(slide_png: tuple[Path, np.ndarray]) -> None:
    path, truth = slide_png
    fixed = ClassicalSegmenter(stains="ruifrok")  # the synthetic stains; no fit per tile
    whole = segment_nuclei(path, mpp=0.5, segmenter=fixed, tile_px=1024, overlap_um=10)
    calls: list[tuple[int, int]] = []
    tiled = segment_nuclei(
        path,
        mpp=0.5,
        segmenter=fixed,
        tile_px=330,
        overlap_um=15,
        progress=lambda d, t: calls.append((d, t)),
    )
    assert whole.info["tiles"] == 1 and tiled.info["tiles"] == 9
    assert calls == [(k, 9) for k in range(1, 10)]
    assert len(tiled) == len(whole)
    assert abs(len(whole) - truth.max()) <= 0.1 * truth.max()
    # no duplicates: no two centroids closer than a nucleus radius
    from scipy.spatial import cKDTree

    c = tiled.centroids
    assert not cKDTree(c).query_pairs(4.0)
    # each nucleus has a partner in the one-piece result with IoU > 0.9
    d, j = cKDTree(whole.centroids).query(c)
    ious = [
        tiled.polygons[i].intersection(whole.polygons[j[i]]).area
        / tiled.polygons[i].union(whole.polygons[j[i]]).area
        for i in range(len(c))
    ]
    assert min(ious) > 0.9 and np.median(d) < 0.5


def test_region_polygon_keeps_centroids_inside(slide_png: tuple[Path, np.ndarray]) -> None:
    path, _ = slide_png
    tri = Polygon([(100, 100), (700, 150), (300, 700)])
    fixed = ClassicalSegmenter(stains="ruifrok")
    inside = segment_nuclei(path, tri, mpp=0.5, segmenter=fixed, tile_px=400, overlap_um=15)
    whole = segment_nuclei(path, mpp=0.5, segmenter=fixed, tile_px=400, overlap_um=15)
    assert 0 < len(inside) < len(whole)
    assert len(inside) == len(whole.within(tri))
    # a box partly outside the image is clipped, not refused
    part = segment_nuclei(path, (600, 600, 1000, 1000), mpp=0.5, segmenter=fixed)
    assert len(part) == len(whole.within(box(600, 600, 800, 800)))
    assert part.info["region"] == [600, 600, 200, 200]


def test_region_outside_the_image_is_refused(slide_png: tuple[Path, np.ndarray]) -> None:
    path, _ = slide_png
    with pytest.raises(RegionOutsideImageError, match=r"outside the image \(800 x 800 px\)"):
        segment_nuclei(path, (5000, 5000, 100, 100), mpp=0.5)
    with pytest.raises(ConfigError, match="positive"):
        segment_nuclei(path, (10, 10, 0, 100), mpp=0.5)


def test_glass_region_gives_an_empty_result(tmp_path: Path) -> None:
    rgb, _ = render_nuclei(300.0, 0.5, n=60, seed=5)
    rgb[:, :300] = 238  # left 150 µm: glass
    path = _write_png(tmp_path / "half.png", rgb)
    empty = segment_nuclei(path, (0, 0, 200, 600), mpp=0.5)
    assert len(empty) == 0 and empty.info["tiles"] == 1 and empty.info["blank_tiles"] == 1
    assert empty.mpp == 0.5
    assert len(segment_nuclei(path, (300, 0, 300, 600), mpp=0.5)) > 10


def test_coarser_target_and_cancel(slide_png: tuple[Path, np.ndarray]) -> None:
    path, truth = slide_png
    coarse = segment_nuclei(path, mpp=0.5, target_mpp=1.0, tile_px=256)
    assert coarse.info["segment_mpp"] == 1.0 and coarse.mpp == 0.5
    assert coarse.info["tiles"] == 4 and np.shape(coarse.info["stains"]) == (2, 3)  # one fit
    assert abs(len(coarse) - truth.max()) <= 0.15 * truth.max()
    # areas stay in µm² whatever the working resolution
    fine = segment_nuclei(path, mpp=0.5)
    assert coarse.features["area_um2"].median() == pytest.approx(
        fine.features["area_um2"].median(), rel=0.2
    )
    stop = threading.Event()
    stop.set()
    with pytest.raises(SegmentationCancelledError, match="cancelled after 0 of"):
        segment_nuclei(path, mpp=0.5, tile_px=256, cancel=stop)


def test_bad_input_messages(scene: tuple[np.ndarray, np.ndarray]) -> None:
    rgb, _ = scene
    with pytest.raises(ConfigError, match="unknown nucleus segmenter 'stardist'"):
        create_segmenter("stardist")
    with pytest.raises(ConfigError, match="bad option for the classical segmenter"):
        create_segmenter("classical", min_area=3)
    with pytest.raises(ConfigError, match="max_area_um2"):
        ClassicalSegmenter(min_area_um2=50, max_area_um2=20)
    with pytest.raises(UnsupportedFormatError, match=r"\(h, w, 3\)"):
        segment_tile(rgb[..., 0], 0.5)
    with pytest.raises(UnsupportedFormatError, match="uint8"):
        segment_tile(rgb.astype(np.float32), 0.5)
    with pytest.raises(ConfigError, match="mpp"):
        segment_tile(rgb, 0.0)


def test_tile_too_small_for_overlap(slide_png: tuple[Path, np.ndarray]) -> None:
    path, _ = slide_png
    with pytest.raises(ConfigError, match="tile_px 64 leaves a core"):
        segment_nuclei(path, mpp=0.5, tile_px=64, overlap_um=20)


def test_custom_segmenter_is_used(scene: tuple[np.ndarray, np.ndarray]) -> None:
    rgb, truth = scene

    class Oracle:
        name = "oracle"

        def segment(self, image: np.ndarray, mpp: float) -> np.ndarray:
            return truth

    assert isinstance(Oracle(), NucleusSegmenter)
    nuclei = segment_tile(rgb, 0.5, Oracle())
    assert len(nuclei) == truth.max() and nuclei.info["segmenter"] == "oracle"
    np.testing.assert_array_equal(
        nuclei.features["area_um2"].to_numpy(), np.bincount(truth.ravel())[1:] * 0.25
    )

    class Broken:
        name = "broken"

        def segment(self, image: np.ndarray, mpp: float) -> np.ndarray:
            return np.zeros((3, 3), np.int32)

    with pytest.raises(ConfigError, match="returned int32 labels of shape"):
        segment_tile(rgb, 0.5, Broken())


# ---------------------------------------------------------------------------------------------
# Cellpose: clear messages without it; a fake package checks that nothing is downloaded
# ---------------------------------------------------------------------------------------------
def test_cellpose_missing_package_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cellpose", None)  # import cellpose -> ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install 'stimage\[cellpose\]'"):
        create_segmenter("cellpose")


_FAKE_MODELS = """
import numpy as np
CALLS = []
class CellposeModel:
    def __init__(self, gpu=False, pretrained_model=None, **kw):
        import os
        if not os.path.exists(str(pretrained_model)):
            raise RuntimeError("would download " + str(pretrained_model))
        CALLS.append(("init", str(pretrained_model), gpu))
    def eval(self, x, **kw):
        CALLS.append(("eval", x.shape, kw))
        masks = np.zeros(x.shape[:2], np.int32)
        masks[2:12, 2:12] = 1
        masks[20:22, 20:22] = 2  # too small: dropped
        return masks, None, None
"""


@pytest.fixture
def fake_cellpose(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "site"
    (root / "cellpose").mkdir(parents=True)
    (root / "cellpose" / "__init__.py").write_text("")
    (root / "cellpose" / "models.py").write_text(_FAKE_MODELS)
    dist = root / "cellpose-4.0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: cellpose\nVersion: 4.0.1\n")
    for mod in [m for m in sys.modules if m == "cellpose" or m.startswith("cellpose.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CELLPOSE_LOCAL_MODELS_PATH", raising=False)
    yield root
    for mod in [m for m in sys.modules if m == "cellpose" or m.startswith("cellpose.")]:
        del sys.modules[mod]


def test_cellpose_missing_weights_message(
    fake_cellpose: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stimage.encoders import MissingWeightsError

    with pytest.raises(MissingWeightsError) as e:
        create_segmenter("cellpose")
    msg = str(e.value)
    assert "'cpsam'" in msg and "CELLPOSE_LOCAL_MODELS_PATH (not set)" in msg
    assert "never downloads" in msg and "huggingface.co" in msg
    monkeypatch.setenv("CELLPOSE_LOCAL_MODELS_PATH", str(tmp_path / "models"))
    with pytest.raises(MissingWeightsError, match=r"models\)"):
        create_segmenter("cellpose", model="cpsam")
    with pytest.raises(InputFileNotFoundError, match="no Cellpose weights file there"):
        create_segmenter("cellpose", model=str(tmp_path / "nowhere" / "cpsam"))
    assert isinstance(e.value, StimageError) and isinstance(e.value, FileNotFoundError)


def test_cellpose_uses_the_local_file_and_never_a_name(
    fake_cellpose: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scene
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "cpsam").write_bytes(b"weights")
    monkeypatch.setenv("CELLPOSE_LOCAL_MODELS_PATH", str(models))
    assert find_cellpose_weights() == (models / "cpsam").resolve()
    seg = create_segmenter("cellpose", gpu=False, diameter_um=8.0)
    assert isinstance(seg, CellposeSegmenter) and isinstance(seg, NucleusSegmenter)
    rgb, _ = scene
    nuclei = segment_tile(rgb[:64, :64], 0.5, seg)
    import cellpose.models as cm

    init, ev = cm.CALLS
    assert init == ("init", str((models / "cpsam").resolve()), False)
    assert ev[1] == (64, 64, 3) and ev[2]["diameter"] == pytest.approx(16.0)
    assert len(nuclei) == 1 and nuclei.features["area_um2"][0] == pytest.approx(25.0)
    assert nuclei.info["segmenter"] == "cellpose"


def test_cellpose_real_weights_if_present() -> None:
    import importlib.util

    if importlib.util.find_spec("cellpose") is None:
        pytest.skip("cellpose is not installed")
    try:
        seg = create_segmenter("cellpose")
    except StimageError as e:
        pytest.skip(f"no Cellpose weights: {e}")
    rgb, truth = render_nuclei(100.0, 0.5, n=20, seed=9)
    nuclei = segment_tile(rgb, 0.5, seg)
    assert abs(len(nuclei) - truth.max()) <= 0.3 * truth.max()


# ---------------------------------------------------------------------------------------------
# real H&E: the bundled HER2ST crop, and a section of ../shared/data/her2st
# ---------------------------------------------------------------------------------------------
def _per_spot(nuclei: Nuclei, spots: np.ndarray, region: tuple, mpp: float) -> np.ndarray:
    """Nuclei within 50 µm of each spot centre whose 100 µm disc lies inside ``region``."""
    from scipy.spatial import cKDTree

    x, y, w, h = region
    r = 50 / mpp
    ok = (
        (spots[:, 0] > x + r)
        & (spots[:, 0] < x + w - r)
        & (spots[:, 1] > y + r)
        & (spots[:, 1] < y + h - r)
    )
    tree = cKDTree(nuclei.centroids)
    return np.array([len(v) for v in tree.query_ball_point(spots[ok], r)])


def test_bundled_her2st_crop_gives_plausible_nuclei_per_spot() -> None:
    from shapely.geometry import Point

    from stimage.data import mpp_from_spot_grid, open_slide
    from stimage.examples import example_path

    root = example_path("her2st_B4_crop")
    table = pd.read_csv(root / "ST-spotfiles" / "B4_selection.tsv", sep="\t")
    table = table[table["selected"] == 1]
    table.index = [f"{x}x{y}" for x, y in zip(table["x"], table["y"], strict=True)]
    xy = table[["pixel_x", "pixel_y"]].to_numpy(dtype=float)
    mpp = mpp_from_spot_grid(table["y"], table["x"], xy, "legacy_st").mpp
    # the three most epithelial (tumour) spots by the study's deconvolution
    prop = pd.read_csv(root / "ST-deconv-major" / "B4-proportion.tsv", sep="\t", index_col=0)
    tumour = prop["Epithelial"].reindex(table.index).nlargest(3).index
    with open_slide(root / "ST-imgs" / "B" / "B4" / "B4_crop.jpg", mpp=mpp) as slide:
        found = [
            segment_nuclei(slide, Point(*table.loc[s, ["pixel_x", "pixel_y"]]).buffer(50 / mpp))
            for s in tumour
        ]
    counts = [len(n) for n in found]
    # a 100 µm legacy ST spot in breast cancer holds some 20-60 nuclei
    assert all(20 <= c <= 80 for c in counts), counts
    areas = Nuclei.concat(found).features["area_um2"]
    assert 15 <= areas.median() <= 80
    assert areas.max() <= ClassicalSegmenter().max_area_um2


@pytest.mark.realdata
@pytest.mark.slow
def test_her2st_section_region(her2st: Path) -> None:
    from scipy.spatial import cKDTree

    from stimage.data import her2st_sections, open_sample_slide, read_her2st

    section = her2st_sections(her2st)[0]
    adata = read_her2st(her2st, section)
    spots = np.asarray(adata.obsm["spatial"])
    with open_sample_slide(adata) as slide:
        mpp = slide.mpp
        # a 0.6 mm square around the middle spot, in 4 tiles: no duplicates at the seams
        x, y = spots[np.argmin(np.hypot(*(spots - np.median(spots, axis=0)).T))]
        side = round(600 / mpp)
        region = (round(x - side / 2), round(y - side / 2), side, side)
        overlap_px = int(np.ceil(20 / mpp))
        nuclei = segment_nuclei(slide, region, tile_px=side // 2 + 1 + 2 * overlap_px)
    assert nuclei.info["tiles"] == 4
    counts = _per_spot(nuclei, spots, region, mpp)
    assert len(counts) >= 3
    # sections differ (B4's middle is sparse stroma, 2-40 nuclei per spot)
    assert 3 <= np.median(counts) <= 70, counts
    assert np.percentile(counts, 90) >= 15, counts
    assert 15 <= nuclei.features["area_um2"].median() <= 80
    assert len(cKDTree(nuclei.centroids).query_pairs(1.5 / mpp)) <= 0.002 * len(nuclei)


def test_every_outline_has_area_even_for_thin_spurs() -> None:
    """A contour that doubles back on a one-pixel spur once widened into several parts and lost
    its outline (POLYGON EMPTY): plots crashed and cells vanished from GeoJSON (seeded fuzz)."""
    import shapely
    from scipy import ndimage as ndi

    from stimage.explain._nuclei import _outlines

    rng = np.random.default_rng(0)
    for _ in range(300):
        lab, n = ndi.label(rng.random((14, 14)) < 0.45)
        if not n:
            continue
        out = _outlines(lab.astype(np.int32), n)
        assert not shapely.is_empty(out).any()
        assert (shapely.area(out) > 0).all() and shapely.is_valid(out).all()


def test_stain_od_is_qupaths_hematoxylin_and_eosin_od() -> None:
    """Values computed by QuPath's own ColorTransformer (getPixelValue with Stain_1/Stain_2
    of the "H&E default" stains, qupath-core at the QuPath source the project reads)."""
    from stimage.explain import qupath_stain_od

    qupath = {
        (100, 50, 150): (0.5962442, 0.26783937),
        (255, 255, 255): (0.0, 0.0),
        (0, 0, 0): (2.6770518, 1.4764773),
        (200, 120, 180): (0.09012435, 0.29156864),
        (60, 40, 110): (0.90501344, 0.20162702),
        (250, 180, 200): (-0.059230957, 0.23314138),
    }
    px = np.array([list(qupath)], np.uint8)
    np.testing.assert_allclose(qupath_stain_od(px)[0], list(qupath.values()), atol=2e-6)


def test_nuclei_carry_qupath_stain_ods_under_qupaths_names() -> None:
    from stimage.explain import QUPATH_STAIN_FEATURES, measure_nuclei, qupath_stain_od
    from stimage.models import Cells, cell_measurements

    rgb = np.full((20, 20, 3), 230, np.uint8)
    rgb[5:12, 5:12] = (80, 60, 140)
    rgb[8, 8] = (120, 90, 170)
    labels = np.zeros((20, 20), np.int32)
    labels[5:12, 5:12] = 1
    nuclei = measure_nuclei(labels, rgb, 0.5)
    od = qupath_stain_od(rgb)[labels == 1]
    f = nuclei.features.iloc[0]
    assert set(QUPATH_STAIN_FEATURES) <= set(nuclei.features.columns)
    assert f["hematoxylin_od_mean"] == pytest.approx(od[:, 0].mean(), rel=1e-5)
    assert f["hematoxylin_od_sd"] == pytest.approx(od[:, 0].std(ddof=1), rel=1e-4)
    assert f["eosin_od_mean"] == pytest.approx(od[:, 1].mean(), rel=1e-5)
    m = cell_measurements(Cells(nuclei, None))
    assert m["Nucleus: Hematoxylin OD mean"].iloc[0] == pytest.approx(od[:, 0].mean(), rel=1e-5)
    assert m["Nucleus: Eosin OD std dev"].iloc[0] == pytest.approx(od[:, 1].std(ddof=1), rel=1e-4)
