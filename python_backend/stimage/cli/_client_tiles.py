"""``stimage client predict IMAGE``: an image read here, cut into the served model's tiles.

An image (or region) the size of one model tile, within the server's scale tolerance, is
sent as that one tile, tissue or not: whoever cut it chose it. A larger one is laid out on
the model's grid where there is tissue; tissue pieces count from a quarter of the image's
area, so a small crop of dense tissue is not dropped as debris.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from stimage.cli._common import ProgressBars

if TYPE_CHECKING:
    from stimage.data import Slide

__all__ = ["TileClient", "predict_image"]


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


def _served_model(info: dict[str, Any], model: str | None) -> _ServedModel:
    """The model asked for (the server's default when None), from the hello reply."""
    from stimage.errors import ConfigError

    models = info["models"]
    name = model or next(m["name"] for m in models if m["default"])
    spec = next((m for m in models if m["name"] == name), None)
    if spec is None:
        raise ConfigError(f"the server has no model {name!r}; it has {[m['name'] for m in models]}")
    tol = float((info.get("limits") or {}).get("scale_tolerance", _SCALE_TOLERANCE))
    return _ServedModel(name, float(spec["tile_um"]), int(spec["tile_px"]), tol)


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
        if _is_one_tile(area, slide.mpp, served):
            boxes = np.asarray([area], dtype=np.float64)
        else:
            bars.stage(f"{image.name}: finding tissue and laying tiles ...")
            boxes = _tissue_tiles(slide, image, box, served, min_coverage)
        image_id = f"{image.resolve()}:{image.stat().st_size}"
        features: list[dict[str, Any]] = []
        bars(image.stem, 0, len(boxes))
        try:
            for b0 in range(0, len(boxes), batch):
                part = boxes[b0 : b0 + batch]
                side = (served.tile_px, served.tile_px)
                tiles = [slide.read_region(x, y, w, h, out_size=side) for x, y, w, h in part]
                res = c.predict(
                    tiles,
                    part,
                    served.tile_um / served.tile_px,
                    model=served.name,
                    genes=genes,
                    image_id=image_id,
                )
                features += res["geojson"]["features"]
                bars(image.stem, min(b0 + batch, len(boxes)), len(boxes))
        finally:
            bars.close()
    return features


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


def _tissue_tiles(
    slide: Slide,
    image: Path,
    box: tuple[float, float, float, float] | None,
    served: _ServedModel,
    min_coverage: float,
) -> np.ndarray:
    """Grid tiles of the image (or box) with enough tissue."""
    from shapely.geometry import box as shapely_box

    from stimage.errors import NoTissueError
    from stimage.tiles import TissueParams, detect_tissue, grid_tile_qc

    w, h = slide.dimensions
    image_um2 = w * h * slide.mpp**2
    params = TissueParams(min_area_um2=min(TissueParams().min_area_um2, image_um2 / 4))
    try:
        mask = detect_tissue(slide, params)
    except NoTissueError:
        raise NoTissueError(
            f"{image}: no tissue found (optical density threshold {params.min_od:g}); check that "
            "it is a stained brightfield H&E image at the right --mpp, or send one model tile "
            f"({served.tile_um:g} µm, {served.tile_um / slide.mpp:.0f} px) to predict it as it is"
        ) from None
    geom = shapely_box(box[0], box[1], box[0] + box[2], box[1] + box[3]) if box else None
    grid, qc = grid_tile_qc(slide, mask, served.tile_um, min_coverage, region=geom)
    boxes = np.asarray(grid.boxes[qc.kept], dtype=np.float64)
    if not len(boxes):
        raise NoTissueError(f"{image}: no tile has {min_coverage:.0%} tissue; lower --min-coverage")
    return boxes
