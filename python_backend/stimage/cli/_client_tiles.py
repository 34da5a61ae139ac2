"""``stimage client predict IMAGE``: an image read here, cut into the served model's tiles.

An image (or region) the size of one model tile, within the server's scale tolerance, is
sent as that one tile, tissue or not: whoever cut it chose it. A larger one is laid out on
the model's grid where there is tissue; tissue pieces count from a quarter of the image's
area, so a small crop of dense tissue is not dropped as debris.

For a model with spatial context (hello's ``context_um``) each tile's prediction joins the
tiles of the same request within that reach. So the tiles go in square blocks, each sent
with every tile within reach of it (other blocks' tiles and the margin of tissue tiles of the
grid around the region) flagged ``context_only``, as ``predict-slide --region`` reads them
and as the QuPath extension sends them: a tile gets the same neighbours in every block.
``stimage client explain IMAGE`` sends the explained tile's margin as its ``neighbours`` and the
tile as predict reads it as its ``model_tile``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from stimage.cli._common import ProgressBars

if TYPE_CHECKING:
    from stimage.data import Slide

__all__ = ["TileClient", "context_blocks", "explain_inputs", "margin_tiles", "predict_image"]


class TileClient(Protocol):
    """What :func:`predict_image` needs of a client (:class:`stimage.server.client.Client`)."""

    def hello(self) -> dict[str, Any]:
        """The server's models and limits."""
        ...

    def predict(
        self,
        tiles: Sequence[np.ndarray],
        boxes: np.ndarray,
        mpp: float,
        *,
        model: str | None = None,
        genes: Sequence[str] | None = None,
        image_id: str | None = None,
        context_only: Sequence[bool] | None = None,
    ) -> dict[str, Any]:
        """Predictions of tiles read here."""
        ...


#: Scale tolerance of a server that does not say its own.
_SCALE_TOLERANCE = 0.05


@dataclass(frozen=True)
class _ServedModel:
    name: str
    tile_um: float
    tile_px: int
    tolerance: float
    context_um: float = 0.0
    max_tiles: int = 512


def _served_model(info: dict[str, Any], model: str | None) -> _ServedModel:
    """The model asked for (the server's default when None), from the hello reply."""
    from stimage.errors import ConfigError

    models = info["models"]
    name = model or next(m["name"] for m in models if m["default"])
    spec = next((m for m in models if m["name"] == name), None)
    if spec is None:
        raise ConfigError(f"the server has no model {name!r}; it has {[m['name'] for m in models]}")
    limits = info.get("limits") or {}
    tol = float(limits.get("scale_tolerance", _SCALE_TOLERANCE))
    return _ServedModel(
        name,
        float(spec["tile_um"]),
        int(spec["tile_px"]),
        tol,
        float(spec.get("context_um") or 0.0),
        int(limits.get("max_tiles", 512)),
    )


def predict_image(
    c: TileClient,
    image: Path,
    box: tuple[float, float, float, float] | None,
    mpp: float | None,
    model: str | None,
    genes: list[str] | None,
    min_coverage: float,
    batch: int,
) -> list[dict[str, Any]]:
    """Tile an image here on the served model's grid and send the tiles in batches.

    Raises:
        ConfigError: The image or region is smaller than one model tile.
        NoTissueError: No tissue, or no tile with ``min_coverage`` tissue.
    """
    served = _served_model(c.hello(), model)
    bars = ProgressBars.of()
    from stimage.data import open_slide

    with open_slide(image, mpp=mpp) as slide:
        area = box or (0.0, 0.0, float(slide.dimensions[0]), float(slide.dimensions[1]))
        mask = None
        if _is_one_tile(area, slide.mpp, served):
            boxes = np.asarray([area], dtype=np.float64)
        else:
            bars.stage(f"{image.name}: finding tissue and laying tiles ...")
            mask = _tissue_mask(slide, image, served)
            boxes = _tissue_tiles(slide, mask, image, box, served, min_coverage)
        n = len(boxes)
        requests = [
            (np.arange(b0, min(b0 + batch, n)), np.zeros(0, int)) for b0 in range(0, n, batch)
        ]
        if served.context_um > 0:
            margin = margin_tiles(slide, mask, image, boxes, served, min_coverage)
            boxes = np.vstack([boxes, margin])
            requests = context_blocks(boxes, n, served, slide.mpp, batch)
        image_id = f"{image.resolve()}:{image.stat().st_size}"
        features: list[dict[str, Any]] = []
        done = 0
        bars(image.stem, 0, n)
        try:
            for pred, ctx in requests:
                rows = np.concatenate([pred, ctx])
                res = c.predict(
                    _read_tiles(slide, boxes[rows], served),
                    boxes[rows],
                    served.tile_um / served.tile_px,
                    model=served.name,
                    genes=genes,
                    image_id=image_id,
                    context_only=[False] * len(pred) + [True] * len(ctx) if len(ctx) else None,
                )
                features += res["geojson"]["features"]
                done += len(pred)
                bars(image.stem, done, n)
        finally:
            bars.close()
    return features


def explain_inputs(
    info: dict[str, Any],
    slide: Slide,
    image: Path,
    box: tuple[float, float, float, float],
    model: str | None,
    min_coverage: float,
) -> tuple[np.ndarray, list[tuple[np.ndarray, tuple[float, ...]]]]:
    """What explain sends besides the full-resolution tile, read as ``predict_image`` reads tiles.

    Returns the tile at the model's resolution (explain's ``model_tile``: the model then sees
    the tile it predicted) and, for a model with spatial context, ``(tile, box)`` of the
    tissue tiles around it (explain's ``neighbours``; none without context or tissue near it).
    """
    served = _served_model(info, model)
    (view,) = _read_tiles(slide, np.asarray([box], np.float64), served)
    if served.context_um <= 0:
        return view, []
    around = margin_tiles(slide, None, image, np.asarray([box], np.float64), served, min_coverage)
    tiles = _read_tiles(slide, around, served)
    return view, [(t, tuple(float(v) for v in b)) for t, b in zip(tiles, around, strict=True)]


def margin_tiles(
    slide: Slide,
    mask: Any,
    image: Path,
    boxes: np.ndarray,
    served: _ServedModel,
    min_coverage: float,
) -> np.ndarray:
    """The tissue tiles of the boxes' grid within the model's context (none without tissue)."""
    from stimage.errors import NoTissueError
    from stimage.tiles import grid_margin

    w, h = slide.dimensions
    around = grid_margin(boxes, served.tile_um, slide.mpp, served.context_um, w, h)
    if not len(around):
        return around
    if mask is None:
        try:
            mask = _tissue_mask(slide, image, served)
        except NoTissueError:
            return np.zeros((0, 4))
    return around[mask.coverage(around) >= min_coverage]


def context_blocks(
    boxes: np.ndarray, n_region: int, served: _ServedModel, mpp: float, batch: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Requests of a model with spatial context: ``(predicted, context only)`` tile indices.

    The region's tiles (the first ``n_region`` of ``boxes``, one grid; the rest its margin)
    are cut into square blocks of grid cells, as large as keeps a block and every tile within
    reach of it within the server's ``max_tiles`` (and at most ``batch`` predicted); each
    block goes with the tiles within reach of one of its tiles. Only a server that takes fewer
    tiles than one tile and its neighbours cuts a tile's context to the nearest.
    """
    from scipy.spatial import cKDTree

    region = boxes[:n_region]
    side = float(region[0, 2])
    m = int(np.ceil(served.context_um / served.tile_um))
    block = max(1, min(math.isqrt(batch), math.isqrt(served.max_tiles) - 2 * m))
    cr = np.rint((region[:, :2] - region[0, :2]) / side).astype(np.int64)
    keys = [(int(r), int(c)) for c, r in (cr // block)]
    centres = boxes[:, :2] + boxes[:, 2:] / 2
    tree = cKDTree(centres)
    reach = served.context_um / mpp * (1 + 1e-9)
    out = []
    for key in sorted(set(keys)):
        pred = np.array([i for i, k in enumerate(keys) if k == key], np.int64)
        near = set().union(*tree.query_ball_point(centres[pred], reach)) - set(pred.tolist())
        ctx = np.array(sorted(near), np.int64)
        room = served.max_tiles - len(pred)
        if len(ctx) > room:  # the nearest to the block's tiles
            d, _ = cKDTree(centres[pred]).query(centres[ctx])
            ctx = np.sort(ctx[np.argsort(d, kind="stable")[: max(room, 0)]])
        out.append((pred, ctx))
    return out


def _read_tiles(slide: Slide, boxes: np.ndarray, served: _ServedModel) -> list[np.ndarray]:
    side = (served.tile_px, served.tile_px)
    return [slide.read_region(x, y, w, h, out_size=side) for x, y, w, h in boxes]


def _is_one_tile(area: tuple[float, float, float, float], mpp: float, served: _ServedModel) -> bool:
    """Whether a box is one model tile (each side within the scale tolerance).

    Raises:
        ConfigError: It is smaller than one tile.
    """
    from stimage.errors import ConfigError

    w_um, h_um = area[2] * mpp, area[3] * mpp
    low, high = served.tile_um * (1 - served.tolerance), served.tile_um * (1 + served.tolerance)
    if w_um < low or h_um < low:
        raise ConfigError(
            f"the image or region is {w_um:.0f} x {h_um:.0f} µm at {mpp:g} µm/px, smaller than one "
            f"tile of model {served.name!r} ({served.tile_um:g} µm, "
            f"{served.tile_um / mpp:.0f} px); send a larger image or --region, or check --mpp"
        )
    return w_um <= high and h_um <= high


def _tissue_mask(slide: Slide, image: Path, served: _ServedModel) -> Any:
    """The image's tissue (pieces count from a quarter of its area).

    Raises:
        NoTissueError: No tissue, with what to check.
    """
    from stimage.errors import NoTissueError
    from stimage.tiles import TissueParams, detect_tissue

    w, h = slide.dimensions
    image_um2 = w * h * slide.mpp**2
    params = TissueParams(min_area_um2=min(TissueParams().min_area_um2, image_um2 / 4))
    try:
        return detect_tissue(slide, params)
    except NoTissueError:
        raise NoTissueError(
            f"{image}: no tissue found (optical density threshold {params.min_od:g}); check that "
            "it is a stained brightfield H&E image at the right --mpp, or send one model tile "
            f"({served.tile_um:g} µm, {served.tile_um / slide.mpp:.0f} px) to predict it as it is"
        ) from None


def _tissue_tiles(
    slide: Slide,
    mask: Any,
    image: Path,
    box: tuple[float, float, float, float] | None,
    served: _ServedModel,
    min_coverage: float,
) -> np.ndarray:
    """Grid tiles of the image (or box) with enough tissue."""
    from shapely.geometry import box as shapely_box

    from stimage.errors import NoTissueError
    from stimage.tiles import grid_tile_qc

    geom = shapely_box(box[0], box[1], box[0] + box[2], box[1] + box[3]) if box else None
    grid, qc = grid_tile_qc(slide, mask, served.tile_um, min_coverage, region=geom)
    boxes = np.asarray(grid.boxes[qc.kept], dtype=np.float64)
    if not len(boxes):
        raise NoTissueError(f"{image}: no tile has {min_coverage:.0%} tissue; lower --min-coverage")
    return boxes
