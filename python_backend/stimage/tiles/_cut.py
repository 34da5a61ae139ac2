"""Cutting tiles: settings, tissue QC per tile, the per-slide stain fit and batched reads.

:class:`TileSettings` is the one description of how tiles are made; the tile store records
it and model bundles will carry it, so that prediction cuts tiles exactly as training did.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from stimage.errors import ConfigError, NoTissueError
from stimage.tiles._geometry import TileGrid, grid_tile_boxes, spot_tile_boxes, tile_side_px
from stimage.tiles._tissue import TissueMask, TissueParams

if TYPE_CHECKING:
    import anndata as ad
    from shapely.geometry.base import BaseGeometry

    from stimage.data import Slide
    from stimage.tiles._stain import StainNormalizer

__all__ = [
    "SpotTileQC",
    "TileSettings",
    "default_tile_um",
    "fit_slide_normalizer",
    "grid_tile_qc",
    "iter_tiles",
    "load_stain_target",
    "spot_tile_qc",
]

logger = logging.getLogger(__name__)

STAIN_METHODS = ("vahadane", "macenko", "reinhard")


@dataclass(frozen=True)
class TileSettings:
    """How tiles are cut, checked and normalised.

    Attributes:
        tile_um: Tile side in µm; None picks the spot pitch of the platform (tiles of
            neighbouring spots touch without overlapping: 200 µm for legacy ST, 100 µm for
            Visium), or twice the spot diameter when no pitch is known.
        tile_px: Tile side in pixels after resizing (the encoder's input size).
        min_coverage: Minimum tissue fraction of a tile (the paper's 70%).
        stain: Stain normalisation method (``vahadane``, ``macenko``, ``reinhard``) or None.
        stain_target: A bundled template name (``default``), a template JSON file, or a
            reference H&E image to fit the target on.
        stain_patches: Tissue patches sampled per slide to fit its source stains.
        tissue: Tissue detection settings.
        seed: Seed of the patch sampling.
    """

    tile_um: float | None = None
    tile_px: int = 224
    min_coverage: float = 0.7
    stain: str | None = "vahadane"
    stain_target: str = "default"
    stain_patches: int = 24
    tissue: TissueParams = field(default_factory=TissueParams)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.tile_um is not None and self.tile_um <= 0:
            raise ConfigError(f"tile_um must be positive, got {self.tile_um}")
        if not 16 <= self.tile_px <= 4096:
            raise ConfigError(f"tile_px must be between 16 and 4096, got {self.tile_px}")
        if not 0 <= self.min_coverage <= 1:
            raise ConfigError(f"min_coverage must be in [0, 1], got {self.min_coverage}")
        if self.stain is not None and self.stain not in STAIN_METHODS:
            raise ConfigError(
                f"unknown stain normalisation {self.stain!r}; choose one of {', '.join(STAIN_METHODS)} or none"
            )
        if self.stain_patches < 1:
            raise ConfigError(f"stain_patches must be at least 1, got {self.stain_patches}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TileSettings:
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        tissue = d.pop("tissue", None) or {}
        if isinstance(tissue, dict) and tissue.get("background") is not None:
            tissue["background"] = tuple(tissue["background"])
        return cls(**d, tissue=TissueParams(**tissue))

    def resolved(self, spot_pitch_um: float | None, spot_diameter_um: float | None) -> TileSettings:
        """These settings with ``tile_um`` filled in from a sample's spot geometry."""
        if self.tile_um is not None:
            return self
        return replace(self, tile_um=default_tile_um(spot_pitch_um, spot_diameter_um))


def default_tile_um(spot_pitch_um: float | None, spot_diameter_um: float | None) -> float:
    """Default tile side: the spot pitch, else twice the spot diameter.

    Raises:
        ConfigError: Neither is known.
    """
    if spot_pitch_um and np.isfinite(spot_pitch_um):
        return float(spot_pitch_um)
    if spot_diameter_um and np.isfinite(spot_diameter_um):
        return 2.0 * float(spot_diameter_um)
    raise ConfigError("the tile size is unknown for this data; give it with --tile-um")


@dataclass
class SpotTileQC:
    """Tissue QC of the tiles of a sample's spots.

    Attributes:
        boxes: ``(n, 4)`` level-0 boxes of all spots.
        coverage: Tissue fraction of each tile.
        kept: Tiles that pass QC.
        reason: Why a tile was dropped (empty when kept).
    """

    boxes: np.ndarray
    coverage: np.ndarray
    kept: np.ndarray
    reason: np.ndarray

    def summary(self) -> dict[str, int]:
        """Counts of kept and dropped tiles by reason."""
        out = {"tiles": len(self.kept), "kept": int(self.kept.sum())}
        for r, n in pd.Series(self.reason[~self.kept]).value_counts().items():
            out[str(r)] = int(n)
        return out


def spot_tile_qc(
    centres_xy: np.ndarray,
    tile_um: float,
    mpp: float,
    width: int,
    height: int,
    mask: TissueMask,
    min_coverage: float,
) -> SpotTileQC:
    """Boxes and tissue QC of tiles centred on spots."""
    boxes = spot_tile_boxes(centres_xy, tile_um, mpp)
    cov = mask.coverage(boxes)
    c = np.asarray(centres_xy, dtype=np.float64).reshape(-1, 2)
    outside = (c[:, 0] < 0) | (c[:, 1] < 0) | (c[:, 0] >= width) | (c[:, 1] >= height)
    low = cov < min_coverage
    reason = np.full(len(c), "", dtype=object)
    reason[low] = f"tissue coverage below {min_coverage:.0%}"
    reason[outside] = "centre outside the image"
    return SpotTileQC(boxes=boxes, coverage=cov, kept=~(low | outside), reason=reason)


def grid_tile_qc(
    slide: Slide,
    mask: TissueMask,
    tile_um: float,
    min_coverage: float,
    *,
    region: object | None = None,
    stride_um: float | None = None,
) -> tuple[TileGrid, SpotTileQC]:
    """Grid tiles over a region (or the whole slide) with tissue QC, for slides without spots.

    Tiles are laid on a grid inside ``region`` (a shapely geometry in level-0 pixels, e.g. an
    annotation) or over the whole slide, then those with less than ``min_coverage`` tissue
    are marked dropped. Which grid tiles are listed follows :func:`grid_tile_boxes`: a tile
    lies wholly on the image, and belongs to ``region`` when its centre is inside it. Over a
    whole slide, tiles far from tissue are not even listed: the grid starts at the corner of
    the tissue's bounding box and lists the tiles that touch that box.
    """
    w, h = slide.dimensions
    if region is None:
        region = _tissue_box(slide, mask, tile_side_px(tile_um, slide.mpp))
    grid = grid_tile_boxes(w, h, tile_um, slide.mpp, region=region, stride_um=stride_um)
    cov = mask.coverage(grid.boxes)
    low = cov < min_coverage
    reason = np.full(len(grid), "", dtype=object)
    reason[low] = f"tissue coverage below {min_coverage:.0%}"
    return grid, SpotTileQC(boxes=grid.boxes, coverage=cov, kept=~low, reason=reason)


def _tissue_box(slide: Slide, mask: TissueMask, side: float) -> BaseGeometry:
    """The tissue's bounding box on the image's tile grid, grown by half a tile right and down.

    Grid tiles start at the box's top-left corner, which lies on the grid of tiles counted
    from the image's origin (so an image of one tile is that one tile, whatever the
    thumbnail's rounding of the tissue's edge); a tile's centre lies in the grown box
    exactly when the tile touches the tissue's box.
    """
    from shapely.geometry import box

    ys, xs = np.nonzero(mask.mask)
    if not len(xs):
        raise NoTissueError(f"{slide.path}: no tissue to tile")
    dx, dy = mask.downsample
    x0, y0, x1, y1 = xs.min() * dx, ys.min() * dy, (xs.max() + 1) * dx, (ys.max() + 1) * dy
    x0, y0 = np.floor(x0 / side) * side, np.floor(y0 / side) * side
    return box(x0, y0, x1 + side / 2.0, y1 + side / 2.0)


def load_stain_target(spec: str, method: str, tile_mpp: float | None = None) -> StainNormalizer:
    """A stain normaliser fitted to a target: a bundled template, a template JSON, or an image.

    Args:
        spec: Template name (``default``), path to a template ``.json``, or path to a
            reference H&E image.
        method: ``vahadane``, ``macenko`` or ``reinhard``.
        tile_mpp: Resolution of tiles (µm per output pixel); a reference image with a known
            scale is read at this resolution.
    """
    from stimage.tiles._stain import StainNormalizer

    p = Path(spec)
    if p.suffix.lower() == ".json" and p.exists():
        return StainNormalizer.from_template(str(p), method=method)
    if p.exists() and p.is_file():
        from stimage.data import open_slide
        from stimage.tiles._tissue import detect_tissue

        with open_slide(p) as ref:
            if ref.has_mpp:
                mask = detect_tissue(ref)
                patches = sample_tissue_patches(
                    ref, mask, 224 * (tile_mpp or ref.mpp), 224, 16, seed=0
                )
            else:
                patches = [ref.thumbnail(max_side=2048)]
        return StainNormalizer(method).fit_target(patches if len(patches) > 1 else patches[0])
    if os.sep in spec or p.suffix:
        from stimage.errors import InputFileNotFoundError

        raise InputFileNotFoundError(
            f"{spec}: stain target not found; give a template name (default), a template .json, "
            "or a reference H&E image"
        )
    return StainNormalizer.from_template(spec, method=method)


def sample_tissue_patches(
    slide: Slide, mask: TissueMask, patch_side_px: float, out_px: int, n: int, seed: int = 0
) -> list[np.ndarray]:
    """Read ``n`` patches centred on random tissue pixels (deterministic for a seed)."""
    ys, xs = np.nonzero(mask.mask)
    if not len(xs):
        raise NoTissueError(f"{slide.path}: no tissue to sample stain patches from")
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(xs), size=min(n, len(xs)), replace=False)
    cx = (xs[pick] + 0.5) * mask.downsample[0]
    cy = (ys[pick] + 0.5) * mask.downsample[1]
    s = patch_side_px
    return [
        slide.read_region(x - s / 2, y - s / 2, s, s, out_size=(out_px, out_px))
        for x, y in zip(cx, cy, strict=True)
    ]


def fit_slide_normalizer(
    slide: Slide, mask: TissueMask, settings: TileSettings, target: StainNormalizer
) -> StainNormalizer:
    """Fit a slide's source stains once, on tissue patches at the tile resolution.

    Returns a copy of ``target`` whose source side is fitted to this slide; its
    :meth:`~StainNormalizer.transform` is then cheap per tile.
    """
    if settings.tile_um is None:
        raise ConfigError("resolve tile_um before fitting the stain normaliser")
    side = settings.tile_um / slide.mpp
    patches = sample_tissue_patches(
        slide, mask, side, settings.tile_px, settings.stain_patches, seed=settings.seed
    )
    return target.copy().fit_source(patches)


def iter_tiles(
    slide: Slide,
    boxes: np.ndarray,
    out_px: int,
    *,
    normalizer: StainNormalizer | None = None,
    batch_size: int = 64,
    workers: int = 2,
    start: int = 0,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Read tiles in batches, in order.

    Args:
        slide: The slide.
        boxes: ``(n, 4)`` level-0 boxes.
        out_px: Output side in pixels.
        normalizer: Applied to each tile when given (fitted to this slide).
        batch_size: Tiles per yielded batch.
        workers: Threads reading and normalising tiles (OpenSlide, tifffile, OpenCV and
            numpy release the GIL).
        start: Index of the first tile to read (for resuming).

    Yields:
        ``(indices, tiles)`` with tiles of shape ``(len(indices), out_px, out_px, 3)``.
    """

    def one(i: int) -> np.ndarray:
        x, y, w, h = boxes[i]
        t = slide.read_region(x, y, w, h, out_size=(out_px, out_px))
        return normalizer.transform(t) if normalizer is not None else t

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for b0 in range(start, len(boxes), batch_size):
            idx = np.arange(b0, min(b0 + batch_size, len(boxes)))
            tiles = list(pool.map(one, idx))
            yield idx, np.stack(tiles) if tiles else np.zeros((0, out_px, out_px, 3), np.uint8)


def tile_qc_frame(adata: ad.AnnData, qc: SpotTileQC) -> pd.DataFrame:
    """Per-spot QC table (coverage, kept, reason) indexed like ``adata``."""
    from stimage.constants import Key

    return pd.DataFrame(
        {
            Key.TISSUE_COVERAGE: qc.coverage,
            Key.KEPT: qc.kept,
            Key.DROP_REASON: pd.Categorical(qc.reason.astype(str)),
        },
        index=adata.obs_names,
    )
