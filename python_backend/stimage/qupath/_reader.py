"""Read QuPath GeoJSON (ours and QuPath's own exports) into small Python objects.

Follows QuPath's reader: ``PathIO.readObjects`` / ``GsonTools.parseObjectsFromGeoJSON``
(a FeatureCollection, a list of Features, one Feature, or a bare geometry, which becomes an
annotation) and ``QuPathTypeAdapters.PathObjectTypeAdapter.parseObject`` (object types with
their legacy spellings, measurements as an object or a ``{name, value}`` list, metadata,
``childObjects``). Lenient like QuPath's: bare ``NaN`` tokens from QuPath 0.4 parse too.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shapely.affinity import scale
from shapely.geometry import Point, shape
from shapely.geometry.base import BaseGeometry

from stimage.constants import ObjectType
from stimage.errors import InputFileNotFoundError
from stimage.qupath._format import (
    GEOMETRY_TYPES,
    LEGACY_OBJECT_TYPES,
    METADATA_KEY,
    GeoJSONError,
    decode_number,
    is_stimage_id,
    normalise_object_type,
)

__all__ = ["QuPathObject", "read_geojson"]

logger = logging.getLogger(__name__)


@dataclass
class QuPathObject:
    """One object of a QuPath GeoJSON file.

    Attributes:
        geometry: Shape in full-resolution pixels (None for QuPath's root object).
        object_type: ``"tile"``, ``"detection"``, ``"cell"``, ``"annotation"``, ``"tmaCore"``
            or ``"root"`` (legacy spellings normalised; unknown or missing -> annotation, as
            QuPath does).
        classification: Class name, derived classes joined by ``": "`` (QuPath's
            ``PathClass.toString``), or None.
        name: Object name, or None.
        measurements: Name -> float (NaN where QuPath stored NaN).
        nucleus: Nucleus of a cell, or None.
        properties: The raw ``properties`` object.
        is_stimage: Whether STImage wrote the object (its id starts with
            :data:`STIMAGE_MARKER`, or its metadata holds the ``"stimage"`` key).
        id: The object's UUID string, or None.
        metadata: ``properties.metadata`` as strings.
        is_locked: QuPath's lock flag.
        children: Child objects (from a hierarchy export), usually empty.
    """

    geometry: BaseGeometry | None
    object_type: str
    classification: str | None = None
    name: str | None = None
    measurements: dict[str, float] = field(default_factory=dict)
    nucleus: BaseGeometry | None = None
    properties: dict[str, Any] = field(default_factory=dict)
    is_stimage: bool = False
    id: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    is_locked: bool = False
    children: list[QuPathObject] = field(default_factory=list)


def read_geojson(
    source: str | os.PathLike[str] | Mapping[str, Any] | list[Any],
) -> list[QuPathObject]:
    """Read QuPath objects from GeoJSON.

    Args:
        source: A path (``.geojson``, ``.json``, either as ``.gz``), JSON text, or decoded JSON:
            a FeatureCollection, a list of Features, one Feature, or a bare geometry.

    Returns:
        The objects, top-level ones in file order (children under ``children``).

    Raises:
        InputFileNotFoundError: The path does not exist.
        GeoJSONError: Not JSON, or a Feature QuPath could not read (no geometry, a bad
            classification); the message names the feature.

    Example:
        >>> objs = read_geojson('{"type": "Polygon", "coordinates": [[[0,0],[1,0],[1,1],[0,0]]]}')
        >>> objs[0].object_type
        'annotation'
    """
    data = _load(source)
    out: list[QuPathObject] = []
    _collect(data, out, "input")
    return out


def _load(source: str | os.PathLike[str] | Mapping[str, Any] | list[Any]) -> Any:
    if isinstance(source, Mapping | list):
        return source
    if isinstance(source, str) and source.lstrip()[:1] in ("{", "["):
        try:
            return json.loads(source)
        except json.JSONDecodeError as e:
            raise GeoJSONError(f"the text is not valid JSON ({e})") from e
    path = Path(source)
    if not path.is_file():
        raise InputFileNotFoundError(f"{path}: no such GeoJSON file")
    opener: Any = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, EOFError) as e:
        raise GeoJSONError(f"{path}: cannot read the file ({e})") from e
    except json.JSONDecodeError as e:
        raise GeoJSONError(f"{path}: not valid JSON ({e})") from e


def _collect(element: Any, out: list[QuPathObject], where: str) -> None:
    if isinstance(element, list):
        for i, e in enumerate(element):
            _collect(e, out, f"{where}[{i}]")
        return
    if not isinstance(element, Mapping):
        return
    kind = element.get("type")
    if kind == "Feature":
        out.append(_parse_feature(element, where))
    elif kind == "FeatureCollection":
        features = element.get("features")
        if isinstance(features, list):
            for i, f in enumerate(features):
                out.append(_parse_feature(f, f"features[{i}]"))
    elif kind in GEOMETRY_TYPES:
        logger.info("creating an annotation from a bare GeoJSON %s (as QuPath does)", kind)
        out.append(
            QuPathObject(geometry=_geometry(element, where), object_type=ObjectType.ANNOTATION)
        )
    # anything else: ignored, as QuPath ignores it


def _geometry(g: Any, where: str) -> BaseGeometry | None:
    if not isinstance(g, Mapping) or "type" not in g:
        return None  # QuPath writes the root object's missing ROI as {}
    try:
        geom = shape(g)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as e:
        raise GeoJSONError(f"{where}: unreadable geometry ({e})") from e
    if g.get("isEllipse") is True and not geom.is_empty:
        # QuPath writes ellipses as polygons flagged isEllipse and rebuilds them from the
        # bounding box (ROITypeAdapters.ROITypeAdapter.read); so do we.
        x0, y0, x1, y1 = geom.bounds
        circle = Point((x0 + x1) / 2, (y0 + y1) / 2).buffer(1.0, quad_segs=32)
        geom = scale(circle, (x1 - x0) / 2, (y1 - y0) / 2)
    return geom


def _parse_feature(f: Any, where: str) -> QuPathObject:
    if not isinstance(f, Mapping):
        raise GeoJSONError(f"{where}: expected a Feature object, got {type(f).__name__}")
    props = f.get("properties")
    props = dict(props) if isinstance(props, Mapping) else {}

    obj_type = ObjectType.ANNOTATION
    fid = f.get("id")
    if isinstance(fid, str) and fid in LEGACY_OBJECT_TYPES:  # QuPath 0.2 stored the type in "id"
        obj_type = LEGACY_OBJECT_TYPES[fid]
        fid = None
    raw_type = props.get("objectType", props.get("object_type", props.get("type")))
    if raw_type is not None:
        t = normalise_object_type(raw_type)
        if t is None:
            logger.warning(
                "%s: unknown objectType %r; read as an annotation, as QuPath does", where, raw_type
            )
        else:
            obj_type = t

    geometry = _geometry(f.get("geometry"), f"{where}.geometry")
    if geometry is None and obj_type != ObjectType.ROOT:
        raise GeoJSONError(f"{where}: no geometry; QuPath cannot create the object")
    nucleus = _geometry(f.get("nucleusGeometry"), f"{where}.nucleusGeometry")

    metadata: dict[str, str] = {}
    md = props.get("metadata")
    if isinstance(md, Mapping):
        for k, v in md.items():
            if isinstance(v, str | int | float | bool):
                metadata[str(k)] = _java_string(v)

    children: list[QuPathObject] = []
    kids = props.get("childObjects", props.get("children"))
    if isinstance(kids, list):
        children = [_parse_feature(c, f"{where}.childObjects[{i}]") for i, c in enumerate(kids)]

    name = props.get("name")
    locked = props.get("isLocked")
    return QuPathObject(
        geometry=geometry,
        object_type=obj_type,
        classification=_classification(props.get("classification"), where),
        name=str(name) if name is not None else None,
        measurements=_measurements(props.get("measurements"), where),
        nucleus=nucleus if obj_type == ObjectType.CELL else None,
        properties=props,
        is_stimage=is_stimage_id(fid) or METADATA_KEY in metadata,
        id=fid if isinstance(fid, str) else None,
        metadata=metadata,
        is_locked=locked is True,
        children=children,
    )


def _java_string(v: str | float | bool) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _classification(c: Any, where: str) -> str | None:
    if c is None:
        return None
    if isinstance(c, str):
        parts = [p.strip() for p in c.split(":")]
    elif isinstance(c, Mapping):
        if len(c) == 0:
            return None  # QuPath's NULL_CLASS
        if isinstance(c.get("parentClass"), Mapping):  # Gson's default form, before QuPath 0.4
            parent = _classification(c["parentClass"], where)
            own = c.get("name")
            return ": ".join(p for p in (parent, own if isinstance(own, str) else None) if p)
        if "name" in c and isinstance(c["name"], str):
            parts = [p.strip() for p in c["name"].split(":")]
        elif isinstance(c.get("names"), list):
            parts = [str(p).strip() for p in c["names"]]
        else:
            raise GeoJSONError(f"{where}: classification {c!r} has no name; QuPath rejects it")
    else:
        raise GeoJSONError(f"{where}: unreadable classification {c!r}")
    parts = [p for p in parts if p]
    return ": ".join(parts) if parts else None


def _measurements(m: Any, where: str) -> dict[str, float]:
    if isinstance(m, Mapping):
        items = list(m.items())
    elif isinstance(m, list):
        items = [(e.get("name"), e.get("value")) for e in m if isinstance(e, Mapping)]
    else:
        return {}
    out: dict[str, float] = {}
    for k, v in items:
        x = decode_number(v)
        if x is None or not isinstance(k, str):
            logger.warning(
                "%s: cannot read measurement %r = %r; skipped, as QuPath does", where, k, v
            )
            continue
        out[k] = x
    return out
