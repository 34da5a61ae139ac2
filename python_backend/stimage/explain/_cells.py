"""Cells of a region: nuclei segmented, typed by a cell-type model, ready for QuPath.

:func:`detect_cells` is what ``stimage cells``, the server's ``cells`` operation and the
project batch call, so a cell looks the same wherever it lands.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from stimage.data import Slide
    from stimage.explain._nuclei import Nuclei
    from stimage.models import CellTypeClassifier

__all__ = ["Cells", "cell_measurements", "detect_cells", "display_class", "plot_cells"]

logger = logging.getLogger(__name__)

#: Our nucleus feature column -> QuPath-style measurement name (see stimage.constants).
_MORPHOLOGY_NAMES = {
    "area_um2": "NUCLEUS_AREA",
    "perimeter_um": "NUCLEUS_LENGTH",
    "solidity": "NUCLEUS_SOLIDITY",
    "major_axis_um": "NUCLEUS_MAX_DIAMETER",
    "minor_axis_um": "NUCLEUS_MIN_DIAMETER",
}
_OTHER_NAMES = {
    "eccentricity": "Nucleus: Eccentricity",
    "hematoxylin_mean": "Nucleus: Hematoxylin OD mean",
    "hematoxylin_sd": "Nucleus: Hematoxylin OD std dev",
    "eosin_mean": "Nucleus: Eosin OD mean",
    "eosin_sd": "Nucleus: Eosin OD std dev",
}


def display_class(name: str) -> str:
    """A class name as QuPath shows it: capitalised ("immune" -> "Immune")."""
    return name[:1].upper() + name[1:]


@dataclass
class Cells:
    """Nuclei of a region with their cell types.

    Attributes:
        nuclei: The segmented nuclei (full-resolution pixels).
        types: One row per nucleus: ``class``, ``P(<class>)`` per class, ``entropy`` (0 certain,
            1 uniform); None when no cell-type model was given.
        model: Name of the cell-type model, if any.
    """

    nuclei: Nuclei
    types: pd.DataFrame | None
    model: str | None = None

    def __len__(self) -> int:
        return len(self.nuclei)

    @property
    def classes(self) -> list[str | None]:
        """Cell type per nucleus as QuPath shows it ("Immune"; None without a model)."""
        if self.types is None:
            return [None] * len(self.nuclei)
        return [display_class(str(c)) for c in self.types["class"]]

    def composition(self) -> pd.Series:
        """Fraction of each cell type (empty without a model)."""
        if self.types is None or not len(self.types):
            return pd.Series(dtype=float)
        return self.types["class"].map(display_class).value_counts(normalize=True)

    def features(self, extra: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """QuPath GeoJSON cell Features (nucleus outline, type, measurements)."""
        from stimage.qupath import cell_features

        return cell_features(
            self.nuclei.polygons, None, self.classes, cell_measurements(self), extra=extra
        )


def cell_measurements(cells: Cells) -> pd.DataFrame:
    """Measurements per cell with QuPath-style names: morphology, stain, type probabilities."""
    from stimage.constants import Measurement

    f = cells.nuclei.features
    cols: dict[str, np.ndarray] = {}
    for c, attr in _MORPHOLOGY_NAMES.items():
        if c in f:
            cols[getattr(Measurement, attr)] = f[c].to_numpy(dtype=float)
    for c, name in _OTHER_NAMES.items():
        if c in f:
            cols[name] = f[c].to_numpy(dtype=float)
    if cells.types is not None:
        for c in cells.types.columns:
            if c.startswith("P(") and c.endswith(")"):
                name = display_class(c[2:-1])
                cols[Measurement.class_probability(name)] = cells.types[c].to_numpy(float)
        cols[Measurement.CELL_TYPE_ENTROPY] = cells.types["entropy"].to_numpy(float)
    return pd.DataFrame(cols)


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
    from stimage.explain._segment import segment_nuclei

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


def plot_cells(slide: Slide, cells: Cells, path: Any, *, max_px: int = 1600) -> Any:
    """Overlay PNG: the region's H&E with each nucleus outlined in its cell type's colour."""
    from pathlib import Path

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
    ax.add_collection(PolyCollection(polys, facecolor="none", edgecolor=colours, linewidth=0.8))
    comp = cells.composition()
    if len(comp):
        ax.legend(
            handles=[
                Patch(
                    edgecolor=np.asarray(class_color(k)) / 255,
                    facecolor="none",
                    label=f"{k} {v:.0%}",
                )
                for k, v in comp.items()
            ],
            loc="upper right",
            fontsize=8,
            framealpha=0.8,
        )
    ax.set_title(f"{len(cells)} cells", fontsize=10)
    ax.set_axis_off()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
