"""Check GeoJSON against what QuPath's reader accepts (and what STImage promises on top).

Each rule names the QuPath source it follows; see docs/geojson.md. The validator is strict
where QuPath would silently misread an object (an unknown ``objectType`` becomes an
annotation, a non-UUID ``id`` is dropped, a measurement it cannot parse is skipped), because
for STImage output those are bugs.
"""

from __future__ import annotations

import gzip
import json
import math
import uuid
from collections.abc import Mapping
from os import PathLike
from pathlib import Path
from typing import Any

from stimage.constants import ObjectType
from stimage.qupath._format import GEOMETRY_TYPES, GeoJSONError, decode_number

__all__ = ["validate_feature", "validate_geojson"]


def validate_feature(feature: Mapping[str, Any]) -> None:
    """Check one Feature as QuPath (0.5-0.7) reads it; raise on the first problem.

    Checks: ``type`` is ``"Feature"``; a ``geometry`` of a type QuPath reads, with finite
    coordinates, closed polygon rings of at least 4 positions; an optional ``id`` that is a UUID
    string; ``properties`` with a known ``objectType``; a ``classification`` with a name (or
    names) and a colour of 0-255 integers; ``measurements`` as an object name -> number (or
    ``"NaN"``/``"Infinity"``/``"-Infinity"``), or the older list of ``{"name", "value"}``;
    ``metadata`` with primitive values; ``name`` a string and ``isLocked`` a boolean;
    ``nucleusGeometry`` only on cells; ``childObjects`` (if any) valid Features.

    Args:
        feature: A decoded GeoJSON Feature.

    Raises:
        GeoJSONError: Naming the first problem and how to fix it.

    Example:
        >>> validate_feature({"type": "Feature", "geometry": {"type": "Point",
        ...     "coordinates": [1.0, 2.0]}, "properties": {"objectType": "annotation"}})
    """
    _check_feature(feature, "feature")


def validate_geojson(data: Mapping[str, Any] | list[Any] | str | PathLike[str]) -> int:
    """Check a FeatureCollection, a list of Features or one Feature; return the feature count.

    A path (``.geojson``, ``.json``, or either gzipped as ``.gz``) is read as strict JSON:
    bare ``NaN`` or ``Infinity`` tokens, which are not JSON, are an error.

    Args:
        data: Decoded GeoJSON, or the path of a file holding it.

    Returns:
        The number of top-level features (child objects not counted).

    Raises:
        GeoJSONError: Naming the first problem.
    """
    if isinstance(data, str | PathLike):
        data = _load_strict(Path(data))
    if isinstance(data, list):
        features: Any = data
        where = "list"
    elif isinstance(data, Mapping):
        kind = data.get("type")
        if kind == "Feature":
            _check_feature(data, "feature")
            return 1
        if kind != "FeatureCollection":
            raise GeoJSONError(
                f"top-level type is {kind!r}; expected 'FeatureCollection' or 'Feature' "
                "(QuPath also imports a bare geometry, but STImage always writes Features)"
            )
        features = data.get("features")
        where = "features"
        if not isinstance(features, list):
            raise GeoJSONError(
                "FeatureCollection without a 'features' list; QuPath reads no objects from it"
            )
    else:
        raise GeoJSONError(f"expected a GeoJSON object or list, got {type(data).__name__}")
    for i, f in enumerate(features):
        _check_feature(f, f"{where}[{i}]")
    return len(features)


def _load_strict(path: Path) -> Any:
    def _reject(token: str) -> Any:
        raise GeoJSONError(
            f"{path}: contains the bare token {token}, which is not JSON; write non-finite "
            'measurements as the strings "NaN", "Infinity", "-Infinity" as QuPath does'
        )

    opener: Any = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            return json.load(fh, parse_constant=_reject)
    except OSError as e:
        raise GeoJSONError(f"{path}: cannot read the file ({e})") from e
    except json.JSONDecodeError as e:
        raise GeoJSONError(f"{path}: not valid JSON ({e})") from e


def _check_feature(f: Any, where: str) -> None:
    if not isinstance(f, Mapping):
        raise GeoJSONError(f"{where}: expected a Feature object, got {type(f).__name__}")
    if f.get("type") != "Feature":
        raise GeoJSONError(f"{where}: 'type' is {f.get('type')!r}; expected 'Feature'")
    if "id" in f and not _is_uuid(f["id"]):
        raise GeoJSONError(
            f"{where}: 'id' {f['id']!r} is not a UUID string; QuPath would drop it "
            "(write str(uuid.uuid4()) or leave 'id' out)"
        )
    if "geometry" not in f or f["geometry"] is None:
        raise GeoJSONError(f"{where}: no 'geometry'; QuPath needs one to create an object")
    check_geometry(f["geometry"], f"{where}.geometry")

    props = f.get("properties")
    if not isinstance(props, Mapping):
        raise GeoJSONError(f"{where}: no 'properties' object (it holds objectType and the rest)")
    obj_type = props.get("objectType")
    if obj_type is None:
        raise GeoJSONError(
            f"{where}: properties has no 'objectType'; QuPath would make an annotation "
            "(set one of 'tile', 'detection', 'cell', 'annotation')"
        )
    if obj_type not in (
        ObjectType.TILE,
        ObjectType.DETECTION,
        ObjectType.CELL,
        ObjectType.ANNOTATION,
        ObjectType.TMA_CORE,
    ):
        raise GeoJSONError(
            f"{where}: unknown objectType {obj_type!r}; QuPath would turn it into an annotation "
            "(use 'tile', 'detection', 'cell' or 'annotation')"
        )
    if "nucleusGeometry" in f:
        if obj_type != ObjectType.CELL:
            raise GeoJSONError(
                f"{where}: 'nucleusGeometry' on a {obj_type}; QuPath keeps a nucleus only on "
                "cells (use objectType 'cell')"
            )
        check_geometry(f["nucleusGeometry"], f"{where}.nucleusGeometry")
    if "name" in props and not isinstance(props["name"], str):
        raise GeoJSONError(f"{where}: 'name' must be a string, got {props['name']!r}")
    if "isLocked" in props and not isinstance(props["isLocked"], bool):
        raise GeoJSONError(f"{where}: 'isLocked' must be true or false, got {props['isLocked']!r}")
    if "color" in props:
        _check_color(props["color"], f"{where}.properties.color")
    if "classification" in props:
        _check_classification(props["classification"], f"{where}.properties.classification")
    if "measurements" in props:
        _check_measurements(props["measurements"], f"{where}.properties.measurements")
    if "metadata" in props:
        _check_metadata(props["metadata"], f"{where}.properties.metadata")
    children = props.get("childObjects", props.get("children"))
    if children is not None:
        if not isinstance(children, list):
            raise GeoJSONError(f"{where}: 'childObjects' must be a list of Features")
        for i, c in enumerate(children):
            _check_feature(c, f"{where}.childObjects[{i}]")


def _is_uuid(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def check_geometry(g: Any, where: str) -> None:
    """Raise unless ``g`` is a GeoJSON geometry QuPath's ``ROITypeAdapters`` reads."""
    if not isinstance(g, Mapping):
        raise GeoJSONError(f"{where}: expected a geometry object, got {type(g).__name__}")
    kind = g.get("type")
    if kind not in GEOMETRY_TYPES:
        raise GeoJSONError(
            f"{where}: geometry type {kind!r} is not one QuPath reads ({sorted(GEOMETRY_TYPES)})"
        )
    if kind == "GeometryCollection":
        parts = g.get("geometries")
        if not isinstance(parts, list):
            raise GeoJSONError(f"{where}: GeometryCollection without a 'geometries' list")
        for i, p in enumerate(parts):
            check_geometry(p, f"{where}.geometries[{i}]")
        return
    coords = g.get("coordinates")
    if not isinstance(coords, list):
        raise GeoJSONError(f"{where}: {kind} without a 'coordinates' list")
    if kind == "Point":
        _check_position(coords, where)
    elif kind in ("MultiPoint", "LineString"):
        _check_line(coords, where, 1 if kind == "MultiPoint" else 2)
    elif kind == "MultiLineString":
        for i, line in enumerate(coords):
            _check_line(line, f"{where}[{i}]", 2)
    elif kind == "Polygon":
        _check_polygon(coords, where)
    else:
        if not coords:
            raise GeoJSONError(f"{where}: MultiPolygon without polygons")
        for i, poly in enumerate(coords):
            _check_polygon(poly, f"{where}[{i}]")


def _check_position(p: Any, where: str) -> None:
    if not isinstance(p, list) or len(p) not in (2, 3):
        raise GeoJSONError(f"{where}: a position must be [x, y] (or [x, y, z]), got {p!r}")
    for v in p:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise GeoJSONError(
                f"{where}: coordinate {v!r} is not a finite number; QuPath cannot place the object"
            )


def _check_line(line: Any, where: str, min_len: int) -> None:
    if not isinstance(line, list) or len(line) < min_len:
        raise GeoJSONError(f"{where}: expected a list of at least {min_len} positions")
    for p in line:
        _check_position(p, where)


def _check_polygon(rings: Any, where: str) -> None:
    if not isinstance(rings, list) or not rings:
        raise GeoJSONError(f"{where}: a Polygon needs a list of rings (the outer ring first)")
    for i, ring in enumerate(rings):
        rw = f"{where} ring {i}"
        _check_line(ring, rw, 4)
        if ring[0] != ring[-1]:
            raise GeoJSONError(
                f"{rw}: not closed (first {ring[0]} != last {ring[-1]}); repeat the first position"
            )


def _check_color(c: Any, where: str) -> None:
    if isinstance(c, int) and not isinstance(c, bool):
        return  # a packed (A)RGB int, which QuPath also reads
    if not isinstance(c, list) or len(c) not in (3, 4):
        raise GeoJSONError(f"{where}: colour must be [r, g, b] (or [r, g, b, a]), got {c!r}")
    for v in c:
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 255:
            raise GeoJSONError(
                f"{where}: colour component {v!r} is not an integer in 0-255 "
                "(QuPath packs the low 8 bits only)"
            )


def _check_classification(c: Any, where: str) -> None:
    if c is None:
        return
    if isinstance(c, str):
        # QuPath reads a bare string too, but then picks a colour itself.
        raise GeoJSONError(
            f"{where}: a bare string {c!r}; write {{'name': ..., 'color': [r, g, b]}} so the "
            "colour is ours"
        )
    if not isinstance(c, Mapping):
        raise GeoJSONError(f"{where}: expected an object with 'name' and 'color'")
    if len(c) == 0 or "colorRGB" in c or "parentClass" in c:
        # Gson's default form of PathClass, written before QuPath 0.4; still read.
        if "colorRGB" in c:
            _check_color(c["colorRGB"], f"{where}.colorRGB")
        return
    if "color" not in c:
        raise GeoJSONError(
            f"{where}: no 'color'; QuPath rejects a classification without one "
            "(GsonTools.PathClassTypeAdapter); add 'color': [r, g, b]"
        )
    _check_color(c["color"], f"{where}.color")
    if "name" in c:
        names = [n.strip() for n in c["name"].split(":")] if isinstance(c["name"], str) else None
    elif "names" in c:
        names = c["names"] if isinstance(c["names"], list) else None
    else:
        raise GeoJSONError(f"{where}: no 'name' (or 'names'); QuPath rejects it")
    if not names or not all(isinstance(n, str) and n.strip() for n in names):
        raise GeoJSONError(f"{where}: class name must be a non-empty string, got {c!r}")
    for n in names:
        if "\n" in n or "\r" in n or ":" in n:
            raise GeoJSONError(
                f"{where}: class name part {n!r} contains a line break or ':', which QuPath forbids"
            )


def _check_measurements(m: Any, where: str) -> None:
    if isinstance(m, Mapping):
        items = list(m.items())
    elif isinstance(m, list):
        items = []
        for i, e in enumerate(m):
            if not isinstance(e, Mapping) or "name" not in e or "value" not in e:
                raise GeoJSONError(
                    f"{where}[{i}]: a measurement list needs {{'name', 'value'}} objects; "
                    "better, write measurements as an object name -> number"
                )
            items.append((e["name"], e["value"]))
    else:
        raise GeoJSONError(
            f"{where}: expected an object name -> number, got {type(m).__name__}; QuPath ignores it"
        )
    for name, value in items:
        if not isinstance(name, str) or not name:
            raise GeoJSONError(f"{where}: measurement name {name!r} is not a non-empty string")
        if isinstance(value, float) and not math.isfinite(value):
            raise GeoJSONError(
                f"{where}[{name!r}]: {value} would be written as a bare token, which is not JSON; "
                'use the string "NaN", "Infinity" or "-Infinity" as QuPath does'
            )
        if decode_number(value) is None:
            raise GeoJSONError(
                f"{where}[{name!r}]: {value!r} is not a number QuPath reads; it would be dropped"
            )


def _check_metadata(m: Any, where: str) -> None:
    if not isinstance(m, Mapping):
        raise GeoJSONError(f"{where}: expected an object key -> string; QuPath ignores it")
    for k, v in m.items():
        if not isinstance(v, str | int | float | bool):
            raise GeoJSONError(
                f"{where}[{k!r}]: {v!r} is not a string or number; QuPath keeps only primitives"
            )
