"""Cells: nuclei with their types, and their measurements as QuPath names them.

:func:`stimage.pipelines.detect_cells` makes them (what ``stimage cells``, the server's
``cells`` operation and the project batch call, so a cell looks the same wherever it lands).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from stimage.explain import Nuclei

__all__ = ["Cells", "cell_measurements", "display_class"]

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
    # QuPath's own names, computed as QuPath computes them (explain.QUPATH_STAIN_FEATURES).
    "hematoxylin_od_mean": "Nucleus: Hematoxylin OD mean",
    "hematoxylin_od_sd": "Nucleus: Hematoxylin OD std dev",
    "eosin_od_mean": "Nucleus: Eosin OD mean",
    "eosin_od_sd": "Nucleus: Eosin OD std dev",
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
