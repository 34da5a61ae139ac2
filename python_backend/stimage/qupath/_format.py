"""The facts of QuPath's GeoJSON dialect that writer, reader and validator share.

Everything here follows QuPath's own reader and writer (v0.5-v0.7):
``qupath-core/src/main/java/qupath/lib/io/QuPathTypeAdapters.java`` (features, measurements,
metadata), ``GsonTools.java`` (classifications) and ``ROITypeAdapters.java`` (geometries).
See docs/geojson.md.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator
from typing import Final

from stimage.constants import ObjectMarker, ObjectType
from stimage.errors import StimageError

__all__ = [
    "COORD_DECIMALS",
    "GEOMETRY_TYPES",
    "OBJECT_TYPES",
    "STIMAGE_MARKER",
    "GeoJSONError",
    "encode_number",
    "is_stimage_id",
    "normalise_object_type",
    "stimage_ids",
]


class GeoJSONError(StimageError, ValueError):
    """GeoJSON that QuPath would reject or misread, or input that cannot become QuPath objects."""


#: Prefix of the ``id`` of every object STImage writes (see :class:`ObjectMarker`).
STIMAGE_MARKER: Final = ObjectMarker.ID_PREFIX
#: ``properties.metadata`` key on STImage annotations.
METADATA_KEY: Final = ObjectMarker.METADATA_KEY

#: Decimals of written coordinates (QuPath's own ``ROITypeAdapter`` writes 2).
COORD_DECIMALS: Final = 2

#: ``objectType`` values QuPath's ``PathObjectTypeAdapter.parseObject`` creates objects from.
OBJECT_TYPES: Final = frozenset(
    {
        ObjectType.TILE,
        ObjectType.CELL,
        ObjectType.DETECTION,
        ObjectType.ANNOTATION,
        ObjectType.TMA_CORE,
        ObjectType.ROOT,
    }
)

#: Older spellings QuPath still reads, mapped to the current one.
LEGACY_OBJECT_TYPES: Final = {
    "PathTileObject": ObjectType.TILE,
    "PathCellObject": ObjectType.CELL,
    "PathDetectionObject": ObjectType.DETECTION,
    "PathAnnotationObject": ObjectType.ANNOTATION,
    "TMACoreObject": ObjectType.TMA_CORE,
    "tma_core": ObjectType.TMA_CORE,
    "PathRootObject": ObjectType.ROOT,
}

#: Geometry types of ``ROITypeAdapters.parseGeometry``.
GEOMETRY_TYPES: Final = frozenset(
    {
        "Point",
        "MultiPoint",
        "LineString",
        "MultiLineString",
        "Polygon",
        "MultiPolygon",
        "GeometryCollection",
    }
)

#: How QuPath (>= 0.5, ``MeasurementListTypeAdapter.write``) writes non-finite measurements.
NAN: Final = "NaN"
POS_INF: Final = "Infinity"
NEG_INF: Final = "-Infinity"


def encode_number(value: float) -> float | str:
    """A measurement value as QuPath writes it: finite floats as numbers, others as strings."""
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return NAN
    return POS_INF if value > 0 else NEG_INF


def decode_number(value: object) -> float | None:
    """A measurement value as QuPath's ``MeasurementListTypeAdapter.read`` accepts it, else None.

    Numbers; the strings ``nan``, ``inf``, ``-inf`` in any case; and strings Java's
    ``Double.parseDouble`` accepts (``"NaN"``, ``"Infinity"``, ``"-Infinity"``, ``"1.5"``).
    Booleans, ``null`` and anything else QuPath drops with a warning: None here.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        low = value.lower()
        if low == "nan":
            return math.nan
        if low == "inf":
            return math.inf
        if low == "-inf":
            return -math.inf
        m = _JAVA_DOUBLE.fullmatch(value.strip())
        if m is None:
            return None
        return float(m.group(1))
    return None


# What Double.parseDouble accepts (decimal forms; hexadecimal ones are not worth the trouble).
_JAVA_DOUBLE = re.compile(r"([+-]?(?:NaN|Infinity|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?))[fFdD]?")


def normalise_object_type(value: object) -> str | None:
    """The current spelling of an ``objectType`` QuPath knows, else None."""
    if not isinstance(value, str):
        return None
    if value in OBJECT_TYPES:
        return value
    return LEGACY_OBJECT_TYPES.get(value)


def stimage_ids(block: int = 4096) -> Iterator[str]:
    """Endless STImage object ids: version-8 UUID strings starting with :data:`STIMAGE_MARKER`.

    74 random bits each (from ``os.urandom``); made a block at a time, which is several times
    faster than ``uuid.uuid4()`` per object.
    """
    head = STIMAGE_MARKER  # "5714a9e0-0001-8": 48 fixed bits, then the version nibble 8
    while True:
        raw = bytearray(os.urandom(10 * block))
        raw[2::10] = bytes((b & 0x3F) | 0x80 for b in raw[2::10])  # RFC 9562 variant 10xx
        h = raw.hex()
        for i in range(0, 20 * block, 20):
            yield f"{head}{h[i : i + 3]}-{h[i + 4 : i + 8]}-{h[i + 8 : i + 20]}"


def is_stimage_id(value: object) -> bool:
    """Whether an object id marks an object STImage wrote."""
    return isinstance(value, str) and value.lower().startswith(STIMAGE_MARKER)
