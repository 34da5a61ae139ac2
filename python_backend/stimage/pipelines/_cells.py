"""Detect cells: nuclei of a region segmented and typed, one way for every caller.

``stimage cells``, the server's ``cells`` operation and the project batch all call
:func:`detect_cells`. The region is a box or a polygon of a slide; an image a client sent is seen as a slide of its
own (:class:`stimage.data.ArraySlide`) and its cells mapped back to the slide's pixels.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from stimage.models import Cells

if TYPE_CHECKING:
    from shapely.geometry.base import BaseGeometry

    from stimage.data import Slide
    from stimage.models import CellTypeClassifier

__all__ = ["cells_in_image", "detect_cells", "plot_cells", "region_cell_features"]

logger = logging.getLogger(__name__)


def detect_cells(
    slide: Slide,
    region: Any,
    *,
    model: CellTypeClassifier | None = None,
    segmenter: str = "classical",
    progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
) -> Cells:
    """Segment the nuclei of a region and type them.

    Args:
        slide: The slide (µm per pixel known).
        region: ``(x, y, w, h)`` or a shapely polygon in full-resolution pixels.
        model: A cell-type model (:func:`stimage.models.load_celltype_model`); None to only
            segment.
        segmenter: Nucleus segmentation backend.
        progress: Called with (done, total) segmentation tiles.
        cancel: Set to stop between tiles.

    Raises:
        RegionOutsideImageError: The region does not overlap the image.
    """
    from stimage.explain import segment_nuclei

    nuclei = segment_nuclei(slide, region, segmenter=segmenter, progress=progress, cancel=cancel)
    types = None
    if model is not None and len(nuclei):
        from stimage.models import classify_nuclei

        types = classify_nuclei(model, nuclei, slide=slide).reset_index(drop=True)
    elif model is not None:
        types = pd.DataFrame(columns=["class", "entropy"])
    logger.info("%d nuclei in the region", len(nuclei))
    name = model.training.get("name", "cell-type model") if model is not None else None
    return Cells(nuclei, types, name)


def region_cell_features(
    slide: Slide,
    region: BaseGeometry,
    model: Any,
    *,
    progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
) -> Iterator[dict[str, Any]]:
    """Cell Features (nuclei with their types) of a region, polygon by polygon.

    Args:
        slide: The slide.
        region: A shapely Polygon or MultiPolygon in full-resolution pixels.
        model: A cell-type model (:func:`stimage.models.load_celltype_model`).
        progress: Called with (done, total) segmentation tiles of each polygon.
        cancel: Set to stop between segmentation tiles.
    """
    for poly in getattr(region, "geoms", [region]):
        yield from detect_cells(
            slide, poly, model=model, progress=progress, cancel=cancel
        ).features()


#: Normalised entropy from which a cell's type is drawn as uncertain (dashed outline).
UNCERTAIN_ENTROPY = 0.8


def plot_cells(slide: Slide, cells: Cells, path: Any, *, max_px: int = 1600) -> Any:
    """Overlay PNG: the region's H&E with each nucleus outlined in its cell type's colour.

    Each cell's uncertainty shows in its outline: the more certain its type (lower
    normalised entropy of the class probabilities), the thicker the line; cells at or above
    :data:`UNCERTAIN_ENTROPY` are dashed. The legend gives the share of each class and of
    uncertain cells.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.collections import PolyCollection
    from matplotlib.patches import Patch

    from stimage.qupath import class_color

    if not len(cells):
        raise ValueError("no cells to draw")
    b = cells.nuclei.bounds
    x0, y0, x1, y1 = b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max()
    pad = 20.0
    x0, y0, x1, y1 = x0 - pad, y0 - pad, x1 + pad, y1 + pad
    w, h = x1 - x0, y1 - y0
    scale = min(1.0, max_px / max(w, h))
    out_w, out_h = max(1, round(w * scale)), max(1, round(h * scale))
    rgb = slide.read_region(x0, y0, w, h, out_size=(out_w, out_h))
    classes = cells.classes
    polys, colours = [], []
    for poly, c in zip(cells.nuclei.polygons, classes, strict=True):
        geom = max(getattr(poly, "geoms", [poly]), key=lambda g: g.area)
        xy = np.asarray(geom.exterior.coords)
        polys.append(np.column_stack([(xy[:, 0] - x0) * scale, (xy[:, 1] - y0) * scale]))
        colours.append(np.asarray(class_color(c or "Nucleus")) / 255.0)
    fig, ax = plt.subplots(figsize=(8, 8 * out_h / out_w + 0.6))
    ax.imshow(rgb)
    entropy = _entropy(cells)
    sure = entropy < UNCERTAIN_ENTROPY
    colours_a = np.array(colours)
    widths = 0.5 + 1.5 * (1.0 - entropy)
    for mask, style in ((sure, "solid"), (~sure, (0, (2.0, 1.5)))):
        if mask.any():
            ax.add_collection(
                PolyCollection(
                    [polys[i] for i in np.flatnonzero(mask)],
                    facecolor="none",
                    edgecolor=colours_a[mask],
                    linewidth=widths[mask],
                    linestyle=style,
                )
            )
    comp = cells.composition()
    if len(comp):
        handles = [
            Patch(edgecolor=_rgb01(class_color(str(k))), facecolor="none", label=f"{k} {v:.0%}")
            for k, v in comp.items()
        ]
        if cells.types is not None and len(cells.types):
            handles.append(
                Patch(
                    edgecolor="black",
                    facecolor="none",
                    linestyle="--",
                    label=f"dashed: uncertain {float((~sure).mean()):.0%}",
                )
            )
        ax.legend(handles=handles, loc="upper right", fontsize=8, framealpha=0.8)
    title = f"{len(cells)} cells"
    if cells.types is not None and len(cells.types):
        title += f"; line width = certainty of the type, dashed = entropy >= {UNCERTAIN_ENTROPY}"
    ax.set_title(title, fontsize=10)
    ax.set_axis_off()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _entropy(cells: Cells) -> np.ndarray:
    """Normalised entropy per cell (0 where cells have no types: drawn as certain)."""
    t = cells.types
    if t is None or "entropy" not in getattr(t, "columns", ()) or len(t) != len(cells):
        return np.zeros(len(cells))
    e = pd.to_numeric(t["entropy"], errors="coerce").to_numpy(np.float64)
    return np.clip(np.nan_to_num(e, nan=1.0), 0.0, 1.0)


def _rgb01(color: tuple[int, ...] | list[int]) -> tuple[float, float, float]:
    """A 0-255 colour as matplotlib's 0-1 RGB."""
    r, g, b = (float(v) / 255.0 for v in list(color)[:3])
    return (r, g, b)


def cells_in_image(
    rgb: np.ndarray,
    mpp: float,
    origin: tuple[float, float],
    downsample: float,
    model: CellTypeClassifier | None,
    *,
    segmenter: str = "classical",
    progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
) -> Cells:
    """The cells of an image in memory (a region's pixels sent by a client).

    Args:
        rgb: ``(h, w, 3)`` uint8 image.
        mpp: µm per pixel of ``rgb``.
        origin: Full-resolution ``(x, y)`` of its top-left pixel.
        downsample: Full-resolution pixels per image pixel.
        model: Cell-type model, or None to only segment.
        segmenter: Nucleus segmentation backend.
        progress: Called with (done, total) segmentation tiles.
        cancel: Set to stop between tiles.

    Returns:
        The cells, outlines in full-resolution pixels.
    """
    from stimage.data import ArraySlide

    h, w = rgb.shape[:2]
    cells = detect_cells(
        ArraySlide(rgb, mpp),
        (0, 0, w, h),
        model=model,
        segmenter=segmenter,
        progress=progress,
        cancel=cancel,
    )
    cells.nuclei = cells.nuclei.to_full_resolution(float(origin[0]), float(origin[1]), downsample)
    return cells
