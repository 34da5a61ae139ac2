"""Build QuPath GeoJSON Features: tiles, detections, cells and annotations.

Every builder yields plain ``dict`` Features (JSON-ready: Python floats and strings only) in
the layout QuPath's own writer uses (``QuPathTypeAdapters.PathObjectTypeAdapter.write``):
``type``, ``id`` (a fresh UUID starting with :data:`STIMAGE_MARKER`, which marks the object
as STImage's), ``geometry``, ``nucleusGeometry`` (cells), then ``properties`` with
``objectType``, ``name``, ``classification`` (name and colour), ``isLocked``,
``measurements`` (object name -> number) and ``metadata`` (annotations always; other
objects only when asked). Builders are generators, so a million tiles never become a list.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, cast

import numpy as np
import pandas as pd
from shapely.geometry.base import BaseGeometry

from stimage._version import __version__
from stimage.constants import ObjectType
from stimage.qupath._colors import class_color
from stimage.qupath._format import (
    COORD_DECIMALS,
    METADATA_KEY,
    GeoJSONError,
    encode_number,
    stimage_ids,
)
from stimage.qupath._geometry import (
    box_geometries,
    clean_polygons,
    geometry_dict,
    polygonal_dict,
)

__all__ = [
    "annotation_feature",
    "cell_features",
    "classification_dict",
    "polygon_features",
    "tile_features",
]

logger = logging.getLogger(__name__)

#: Rows of a measurement table converted to floats at a time (bounds the extra memory).
_CHUNK = 4096

Classes = Sequence[str | None] | str | None


def classification_dict(name: str) -> dict[str, Any]:
    """A classification as QuPath writes it: ``{"name", "color"}``, or ``{"names", "color"}``.

    ``": "`` separates the parts of a derived class (``"COX6C: High"``), which QuPath writes
    as ``"names"`` (``GsonTools.PathClassTypeAdapter.write``).

    Raises:
        GeoJSONError: An empty name or a part with a line break.
    """
    if not isinstance(name, str):
        raise GeoJSONError(f"a class name must be a string, got {name!r}")
    parts = [p.strip() for p in name.split(":")]
    if not all(parts) or any("\n" in p or "\r" in p for p in parts):
        raise GeoJSONError(
            f"class name {name!r} is empty, has an empty part or a line break; QuPath rejects it"
        )
    color = list(class_color(name))
    if len(parts) == 1:
        return {"name": parts[0], "color": color}
    return {"names": parts, "color": color}


def _metadata(extra: Mapping[str, Any] | None, always: bool) -> dict[str, str] | None:
    """``properties.metadata``: the STImage marker and ``extra``; None when not wanted.

    Detections, tiles and cells get metadata only when ``extra`` asks for it: QuPath 0.6+
    keeps it at a memory cost per object, QuPath 0.5 drops it with a warning per object.
    """
    if not always and not extra:
        return None
    md = {METADATA_KEY: __version__}
    for k, v in (extra or {}).items():
        if not isinstance(k, str) or not k:
            raise GeoJSONError(f"metadata key {k!r} must be a non-empty string")
        if not isinstance(v, str | int | float | bool):
            raise GeoJSONError(
                f"metadata {k!r}: {v!r} is not a string or number; QuPath keeps strings only"
            )
        if k != METADATA_KEY:
            md[k] = str(v)
    return md


def _per_object(values: Classes | Sequence[str | None], n: int, what: str) -> Iterator[Any]:
    """An iterator of one value per object (a single value repeats without a list of n)."""
    if values is None or isinstance(values, str):
        return itertools.repeat(values, n)
    out = list(values)
    if len(out) != n:
        raise GeoJSONError(f"{len(out)} {what} for {n} objects; give one per object")
    return iter(out)


def _classes(values: Classes, n: int, what: str) -> Iterator[str | None]:
    """Like :func:`_per_object`, with every distinct class name checked before the first Feature."""
    if isinstance(values, str):
        classification_dict(values)
        return itertools.repeat(values, n)
    if values is None:
        return itertools.repeat(None, n)
    # None, NaN and pd.NA (a pandas column with gaps) all mean "unclassified"
    out = [None if v is None or (not isinstance(v, str) and pd.isna(v)) else v for v in values]
    for name in set(out) - {None}:
        classification_dict(name)  # type: ignore[arg-type]
    return _per_object(out, n, what)


#: Object types the box and polygon builders make (cells come from cell_features).
_PLAIN_TYPES = (ObjectType.TILE, ObjectType.DETECTION, ObjectType.ANNOTATION)


def _check_object_type(object_type: str) -> None:
    if object_type == ObjectType.CELL:
        raise GeoJSONError("cells need a nucleus; build them with cell_features()")
    if object_type not in _PLAIN_TYPES:
        raise GeoJSONError(
            f"unknown objectType {object_type!r}; use 'tile', 'detection' or 'annotation' "
            "(cells: cell_features())"
        )


def _measurement_rows(
    measurements: pd.DataFrame | None, n: int
) -> Iterator[dict[str, float | str] | None]:
    """Yield each row of ``measurements`` as a dict name -> number ("NaN" etc. for non-finite)."""
    if measurements is None:
        for _ in range(n):
            yield None
        return
    if not isinstance(measurements, pd.DataFrame):
        raise GeoJSONError(
            f"measurements must be a pandas DataFrame (one row per object), got "
            f"{type(measurements).__name__}"
        )
    if len(measurements) != n:
        raise GeoJSONError(
            f"measurements have {len(measurements)} rows for {n} objects; give one row per object"
        )
    names = [_measurement_name(c) for c in measurements.columns]
    if len(set(names)) != len(names):
        raise GeoJSONError("measurement names repeat; QuPath keeps one value per name")
    for start in range(0, n, _CHUNK):
        block = measurements.iloc[start : start + _CHUNK]
        try:
            values = block.to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError) as e:
            bad = [c for c in measurements.columns if not pd.api.types.is_numeric_dtype(block[c])]
            raise GeoJSONError(
                f"measurement columns {bad} are not numeric; QuPath measurements are numbers"
            ) from e
        finite = np.isfinite(values).all(axis=1)
        for row, ok in zip(values.tolist(), finite.tolist(), strict=True):
            if ok:
                yield dict(zip(names, row, strict=True))
            else:
                yield {k: encode_number(v) for k, v in zip(names, row, strict=True)}


def _measurement_name(c: object) -> str:
    if not isinstance(c, str) or not c.strip():
        raise GeoJSONError(
            f"measurement name {c!r} is not a non-empty string; name columns with "
            "stimage.constants.Measurement"
        )
    return c


def _measurement_mapping(m: Mapping[str, Any] | pd.Series | None) -> dict[str, float | str] | None:
    if m is None:
        return None
    if isinstance(m, pd.Series):
        m = m.to_dict()
    out: dict[str, float | str] = {}
    for k, v in m.items():
        name = _measurement_name(k)
        try:
            x = float(v)
        except (TypeError, ValueError) as e:
            raise GeoJSONError(f"measurement {name!r}: {v!r} is not a number") from e
        out[name] = encode_number(x)
    return out


def _feature(
    geometry: dict[str, Any],
    object_type: str,
    *,
    fid: str | None = None,
    nucleus: dict[str, Any] | None = None,
    name: str | None = None,
    classification: str | None = None,
    locked: bool = False,
    measurements: dict[str, float | str] | None = None,
    metadata: dict[str, str] | None,
) -> dict[str, Any]:
    props: dict[str, Any] = {"objectType": object_type}
    if name is not None:
        props["name"] = str(name)
    if classification is not None:
        props["classification"] = classification_dict(classification)
    if locked:
        props["isLocked"] = True
    if measurements:
        props["measurements"] = measurements
    if metadata:
        props["metadata"] = dict(metadata)
    f: dict[str, Any] = {
        "type": "Feature",
        "id": fid if fid is not None else next(stimage_ids(1)),
        "geometry": geometry,
    }
    if nucleus is not None:
        f["nucleusGeometry"] = nucleus
    f["properties"] = props
    return f


def tile_features(
    boxes: np.ndarray,
    measurements: pd.DataFrame | None,
    *,
    classification: Classes = None,
    names: Sequence[str | None] | None = None,
    object_type: str = ObjectType.TILE,
    extra: Mapping[str, Any] | None = None,
) -> Iterator[dict[str, Any]]:
    """Rectangular tiles as QuPath Features, one per box, lazily.

    Args:
        boxes: ``(n, 4)`` array of ``x, y, w, h`` in full-resolution pixels.
        measurements: One row per box (matched by position, not index); columns are measurement
            names (:class:`stimage.constants.Measurement`), values numbers (NaN allowed).
        classification: One class for all tiles, one per tile (None: unclassified), or None.
        names: Optional object name per tile.
        object_type: ``"tile"`` (default), ``"detection"`` or ``"annotation"``.
        extra: ``properties.metadata`` entries (values become strings), e.g.
            ``{ObjectMarker.TASK: "expression"}``. Off by default for tiles, detections and
            cells: QuPath >= 0.6 keeps it at a memory cost per object; QuPath 0.5 drops it
            with a warning per object. The id marks the object as STImage's either way.

    Yields:
        Feature dicts.

    Raises:
        GeoJSONError: Bad boxes, measurements or classes (checked before the first Feature).

    Example:
        >>> import numpy as np
        >>> f = next(tile_features(np.array([[0, 0, 224, 224]]), None))
        >>> f["properties"]["objectType"], f["geometry"]["coordinates"][0][2]
        ('tile', [224.0, 224.0])
    """
    b = box_geometries(boxes)
    n = len(b)
    _check_object_type(object_type)
    classes = _classes(classification, n, "classifications")
    name_list = _per_object(names, n, "names")
    rows = _measurement_rows(measurements, n)
    md = _metadata(extra, always=False)
    return _tiles(b, rows, classes, name_list, object_type, md)


def _tiles(
    b: np.ndarray,
    rows: Iterator[dict[str, float | str] | None],
    classes: Iterator[str | None],
    names: Iterator[str | None],
    object_type: str,
    md: dict[str, str] | None,
) -> Iterator[dict[str, Any]]:
    n = len(b)
    ids = stimage_ids(max(1, min(n, _CHUNK)))
    for start in range(0, n, _CHUNK):
        block = b[start : start + _CHUNK]
        corners = cast(
            "list[list[float]]",
            np.round(np.c_[block[:, :2], block[:, :2] + block[:, 2:]], COORD_DECIMALS).tolist(),
        )
        for x0, y0, x1, y1 in corners:
            yield _feature(
                {
                    "type": "Polygon",
                    "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]],
                },
                object_type,
                fid=next(ids),
                name=next(names),
                classification=next(classes),
                measurements=next(rows),
                metadata=md,
            )


def polygon_features(
    polygons: Sequence[BaseGeometry],
    measurements: pd.DataFrame | None,
    *,
    object_type: str = ObjectType.DETECTION,
    classifications: Classes = None,
    names: Sequence[str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Iterator[dict[str, Any]]:
    """Polygons (detections by default) as QuPath Features, lazily.

    Each polygon is made valid (a self-crossing ring becomes a MultiPolygon), snapped to
    0.01 px and oriented; one with no area left is skipped with a warning (its measurement row
    with it), so a million segmentation outlines never stop on one degenerate outline.

    Args:
        polygons: Shapely Polygons or MultiPolygons in full-resolution pixels.
        measurements: One row per polygon (by position), or None.
        object_type: ``"detection"`` (default), ``"tile"`` or ``"annotation"``.
        classifications: One class for all, one per polygon (None: unclassified), or None.
        names: Optional object name per polygon.
        extra: ``properties.metadata`` entries, as for :func:`tile_features`.

    Yields:
        Feature dicts.

    Raises:
        GeoJSONError: Bad inputs (lengths, types, measurement columns).
    """
    _check_object_type(object_type)
    n = len(polygons)
    classes = _classes(classifications, n, "classifications")
    name_list = _per_object(names, n, "names")
    rows = _measurement_rows(measurements, n)
    md = _metadata(extra, always=False)
    return _polygons(polygons, rows, classes, name_list, object_type, md)


def _polygons(
    polygons: Sequence[BaseGeometry],
    rows: Iterator[dict[str, float | str] | None],
    classes: Iterator[str | None],
    names: Iterator[str | None],
    object_type: str,
    md: dict[str, str] | None,
) -> Iterator[dict[str, Any]]:
    n = len(polygons)
    ids = stimage_ids(max(1, min(n, _CHUNK)))
    for start in range(0, n, _CHUNK):
        cleaned = clean_polygons(polygons[start : start + _CHUNK])
        for g in cleaned:
            m, nm, c = next(rows), next(names), next(classes)
            if g is None:
                continue
            yield _feature(
                polygonal_dict(g),
                object_type,
                fid=next(ids),
                name=nm,
                classification=c,
                measurements=m,
                metadata=md,
            )


def cell_features(
    nuclei: Sequence[BaseGeometry],
    cells: Sequence[BaseGeometry | None] | None,
    classes: Classes,
    measurements: pd.DataFrame | None,
    *,
    names: Sequence[str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Iterator[dict[str, Any]]:
    """Cells as QuPath Features (objectType ``"cell"``), lazily.

    ``geometry`` is the cell boundary, or the nucleus where there is none; ``nucleusGeometry``
    is always the nucleus (QuPath's ``PathCellObject``). A cell whose nucleus has no area
    once made valid is skipped with a warning; an unusable boundary falls back to the nucleus.

    Args:
        nuclei: Nucleus polygons in full-resolution pixels.
        cells: Cell boundary per nucleus (None entries allowed), or None for none at all.
        classes: Cell type per cell (None: unclassified), one for all, or None.
        measurements: One row per cell (by position), e.g. type probabilities, or None.
        names: Optional object name per cell.
        extra: ``properties.metadata`` entries, as for :func:`tile_features`.

    Yields:
        Feature dicts.

    Raises:
        GeoJSONError: Bad inputs (lengths, types, measurement columns).
    """
    n = len(nuclei)
    if cells is not None and len(cells) != n:
        raise GeoJSONError(f"{len(cells)} cell boundaries for {n} nuclei; give one per nucleus")
    class_list = _classes(classes, n, "classes")
    name_list = _per_object(names, n, "names")
    rows = _measurement_rows(measurements, n)
    md = _metadata(extra, always=False)
    return _cells(nuclei, cells, rows, class_list, name_list, md)


def _cells(
    nuclei: Sequence[BaseGeometry],
    cells: Sequence[BaseGeometry | None] | None,
    rows: Iterator[dict[str, float | str] | None],
    classes: Iterator[str | None],
    names: Iterator[str | None],
    md: dict[str, str] | None,
) -> Iterator[dict[str, Any]]:
    n = len(nuclei)
    ids = stimage_ids(max(1, min(n, _CHUNK)))
    for start in range(0, n, _CHUNK):
        stop = min(start + _CHUNK, n)
        nuc = clean_polygons(nuclei[start:stop])
        if cells is None:
            cel: list[BaseGeometry | None] = [None] * (stop - start)
        else:
            chunk = list(cells[start:stop])
            present = [k for k, c in enumerate(chunk) if c is not None]
            cel = [None] * (stop - start)
            for k, c in zip(present, clean_polygons([chunk[k] for k in present]), strict=True):
                cel[k] = c
        for nj, cj in zip(nuc, cel, strict=True):
            m, nm, cls = next(rows), next(names), next(classes)
            if nj is None:
                continue
            nucleus = polygonal_dict(nj)
            yield _feature(
                polygonal_dict(cj) if cj is not None else nucleus,
                ObjectType.CELL,
                fid=next(ids),
                nucleus=nucleus,
                name=nm,
                classification=cls,
                measurements=m,
                metadata=md,
            )


def annotation_feature(
    polygon: BaseGeometry,
    name: str | None = None,
    classification: str | None = None,
    measurements: Mapping[str, Any] | pd.Series | None = None,
    locked: bool = False,
    *,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One annotation as a QuPath Feature (e.g. the region a prediction covered).

    Args:
        polygon: Any shapely geometry in full-resolution pixels (polygons are made valid).
        name: Name shown in QuPath's annotation list.
        classification: Class name, or None.
        measurements: Mapping name -> number (NaN allowed), or None.
        locked: Lock the annotation against accidental edits in QuPath.
        extra: Extra ``properties.metadata`` entries; annotations always carry
            ``{"stimage": <version>}`` (QuPath >= 0.5 keeps annotation metadata).

    Returns:
        The Feature dict.

    Raises:
        GeoJSONError: An empty or degenerate geometry, or a bad measurement.
    """
    if not isinstance(polygon, BaseGeometry):
        raise GeoJSONError(f"expected a shapely geometry, got {type(polygon).__name__}")
    return _feature(
        geometry_dict(polygon),
        ObjectType.ANNOTATION,
        name=name,
        classification=classification,
        locked=bool(locked),
        measurements=_measurement_mapping(measurements),
        metadata=_metadata(extra, always=True),
    )
