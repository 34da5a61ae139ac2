"""Cell-type classes, and the mapping of source types (labels, proportion columns) onto them.

Classes default to ``immune, stromal, epithelial, endothelial``. Source types (the eight
HER2ST deconvolution types, QuPath's default classes) map onto them through a mapping the
user can replace; a value of None drops that type. Matching is exact or case-insensitive.
Anything neither a class nor a key of the mapping raises :class:`UnknownCellTypeError`,
naming it, the known classes and how to map it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from stimage.errors import ConfigError, StimageError

__all__ = [
    "DEFAULT_CELLTYPE_MAPPING",
    "DEFAULT_CELL_CLASSES",
    "HER2ST_CELLTYPE_MAPPING",
    "UnknownCellTypeError",
    "map_labels",
    "map_proportions",
]


#: The classes predicted by default.
DEFAULT_CELL_CLASSES: tuple[str, ...] = ("immune", "stromal", "epithelial", "endothelial")

#: The eight major types of the HER2ST deconvolution (``ST-deconv-major``) -> default classes.
HER2ST_CELLTYPE_MAPPING: dict[str, str | None] = {
    "B-cells": "immune",
    "T-cells": "immune",
    "Myeloid": "immune",
    "Plasma Cells": "immune",
    "CAFs": "stromal",
    "PVL": "stromal",
    "Epithelial": "epithelial",
    "Endothelial": "endothelial",
}

#: HER2ST types plus QuPath's default classes; a value of None drops nuclei of that label.
DEFAULT_CELLTYPE_MAPPING: dict[str, str | None] = {
    **HER2ST_CELLTYPE_MAPPING,
    "Tumor": "epithelial",
    "Stroma": "stromal",
    "Immune cells": "immune",
}


class UnknownCellTypeError(StimageError, ValueError):
    """Labels or proportion columns that are neither a class nor a key of the mapping."""


def _resolver(classes: Sequence[str], mapping: Mapping[str, str | None]) -> dict[str, str | None]:
    """Lower-cased source name -> class (or None: drop); classes map to themselves."""
    bad = {k: v for k, v in mapping.items() if v is not None and v not in classes}
    if bad:
        raise ConfigError(
            f"the cell-type mapping sends {bad} to classes that are not among {list(classes)}; "
            "map every source type to one of the classes (or to None to drop it)"
        )
    out: dict[str, str | None] = {str(k).lower(): v for k, v in mapping.items()}
    out.update({c.lower(): c for c in classes})
    return out


def _unknown(
    names: Sequence[str], classes: Sequence[str], mapping: Mapping[str, Any], what: str
) -> UnknownCellTypeError:
    shown = ", ".join(repr(n) for n in list(names)[:5])
    more = f" (and {len(names) - 5} more)" if len(names) > 5 else ""
    example = next(iter(names))
    return UnknownCellTypeError(
        f"unknown cell type {what} {shown}{more}: known classes are {list(classes)} and the "
        f"mapping knows {sorted(mapping)}; map it to a class, e.g. mapping={{{example!r}: "
        f"{classes[0]!r}}} (command line: --map '{example}={classes[0]}'), or to None to drop it"
    )


def map_labels(
    labels: Sequence[Any] | np.ndarray | pd.Series,
    classes: Sequence[str] = DEFAULT_CELL_CLASSES,
    mapping: Mapping[str, str | None] | None = None,
) -> np.ndarray:
    """Class index per label; -1 for missing labels (None, NaN, "") and labels mapped to None.

    Matching is exact first, then case-insensitive, against the class names and the keys of
    ``mapping`` (default :data:`DEFAULT_CELLTYPE_MAPPING`).

    Raises:
        UnknownCellTypeError: Naming the unknown labels, the known classes and how to map them.

    Example:
        >>> map_labels(["T-cells", "epithelial", None, "CAFs"]).tolist()
        [0, 2, -1, 1]
    """
    mapping = DEFAULT_CELLTYPE_MAPPING if mapping is None else mapping
    res = _resolver(classes, mapping)
    index = {c: i for i, c in enumerate(classes)}
    values = pd.Series(np.asarray(labels, dtype=object))
    missing = values.isna() | (values.astype(str).str.strip() == "")
    keys = values.astype(str).str.strip().str.lower()
    unknown = sorted({str(values[i]) for i in np.flatnonzero(~missing & ~keys.isin(res.keys()))})
    if unknown:
        raise _unknown(unknown, classes, mapping, "label(s)")
    out = np.full(len(values), -1, np.int64)
    for i in np.flatnonzero(~missing):
        target = res[keys.iat[i]]
        if target is not None:
            out[i] = index[target]
    return out


def map_proportions(
    proportions: pd.DataFrame | np.ndarray,
    classes: Sequence[str] = DEFAULT_CELL_CLASSES,
    mapping: Mapping[str, str | None] | None = None,
) -> np.ndarray:
    """Spot proportions of source types summed into classes, rows renormalised to one.

    Args:
        proportions: A DataFrame with one column per source type (or class), or an array
            already in class order ``(n_spots, len(classes))``.
        classes: Target classes.
        mapping: Source type -> class (None drops the type); default
            :data:`DEFAULT_CELLTYPE_MAPPING`.

    Raises:
        UnknownCellTypeError: A column is neither a class nor a key of the mapping.
        ConfigError: Negative or non-finite values, or a spot with nothing left after mapping.
    """
    if isinstance(proportions, pd.DataFrame):
        mapping = DEFAULT_CELLTYPE_MAPPING if mapping is None else mapping
        res = _resolver(classes, mapping)
        cols = [str(c) for c in proportions.columns]
        unknown = [c for c in cols if c.strip().lower() not in res]
        if unknown:
            raise _unknown(unknown, classes, mapping, "column(s)")
        src = proportions.to_numpy(np.float64)
        out = np.zeros((len(src), len(classes)))
        for j, c in enumerate(cols):
            target = res[c.strip().lower()]
            if target is not None:
                out[:, classes.index(target)] += src[:, j]
    else:
        out = np.asarray(proportions, np.float64)
        if out.ndim != 2 or out.shape[1] != len(classes):
            raise ConfigError(
                f"proportions of shape {out.shape} do not match {len(classes)} classes "
                f"{list(classes)}; give a DataFrame with named columns to map source types"
            )
    if not np.isfinite(out).all() or (out < -1e-9).any():
        raise ConfigError("cell-type proportions must be finite and non-negative")
    tot = out.sum(axis=1, keepdims=True)
    if (tot <= 0).any():
        i = int(np.flatnonzero(tot[:, 0] <= 0)[0])
        raise ConfigError(
            f"spot {i} has no proportion left in the classes {list(classes)} after mapping; "
            "check the mapping covers its cell types"
        )
    return np.clip(out, 0.0, None) / tot
