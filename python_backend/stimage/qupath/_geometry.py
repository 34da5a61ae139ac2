"""Shapely geometries to GeoJSON geometry dicts as QuPath reads them, cleaned and rounded."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from stimage.qupath._format import COORD_DECIMALS, GeoJSONError

__all__ = ["box_geometries", "clean_polygons", "geometry_dict", "polygonal_dict"]

logger = logging.getLogger(__name__)

#: Grid the coordinates are snapped to; snapping with shapely keeps polygons valid.
GRID = 10.0**-COORD_DECIMALS


def _ring(coords: np.ndarray) -> list[list[float]]:
    return np.round(coords[:, :2], COORD_DECIMALS).tolist()


def _polygon_coords(p: shapely.Polygon) -> list[list[list[float]]]:
    rings = [_ring(np.asarray(p.exterior.coords))]
    rings.extend(_ring(np.asarray(r.coords)) for r in p.interiors)
    return rings


def polygonal_dict(g: BaseGeometry) -> dict[str, Any]:
    """GeoJSON dict of a Polygon or MultiPolygon (already cleaned), coordinates as floats."""
    if isinstance(g, shapely.Polygon):
        return {"type": "Polygon", "coordinates": _polygon_coords(g)}
    if isinstance(g, shapely.MultiPolygon):
        return {"type": "MultiPolygon", "coordinates": [_polygon_coords(p) for p in g.geoms]}
    raise GeoJSONError(f"expected a Polygon or MultiPolygon, got {g.geom_type}")


def geometry_dict(g: BaseGeometry) -> dict[str, Any]:
    """GeoJSON dict of any shapely geometry, polygons cleaned, coordinates rounded to floats."""
    if g.is_empty:
        raise GeoJSONError(f"empty {g.geom_type}; QuPath cannot show an object without a shape")
    if isinstance(g, shapely.Polygon | shapely.MultiPolygon):
        cleaned = clean_polygons([g])[0]
        if cleaned is None:
            raise GeoJSONError("the polygon has no area once made valid; give it a real shape")
        return polygonal_dict(cleaned)
    if isinstance(g, shapely.Point):
        return {"type": "Point", "coordinates": _ring(np.asarray(g.coords))[0]}
    if isinstance(g, shapely.LineString):
        return {"type": "LineString", "coordinates": _ring(np.asarray(g.coords))}
    if isinstance(g, shapely.MultiPoint | shapely.MultiLineString | shapely.GeometryCollection):
        kind = g.geom_type
        if kind == "GeometryCollection":
            return {"type": kind, "geometries": [geometry_dict(p) for p in g.geoms]}
        parts = [geometry_dict(p)["coordinates"] for p in g.geoms]
        return {"type": kind, "coordinates": parts}
    raise GeoJSONError(f"cannot write a {g.geom_type} as QuPath GeoJSON")


def clean_polygons(geoms: Sequence[Any]) -> list[BaseGeometry | None]:
    """Valid, grid-snapped, consistently oriented polygons; None where nothing polygonal is left.

    Each input is made valid (``shapely.make_valid``: a bow-tie becomes a MultiPolygon),
    reduced to its polygonal parts, snapped to the coordinate grid of the output (which keeps
    it valid) and oriented as RFC 7946 asks (outer rings counter-clockwise). Vectorised over
    the whole sequence.

    Raises:
        GeoJSONError: An input is not a shapely Polygon or MultiPolygon.
    """
    arr = np.empty(len(geoms), dtype=object)
    arr[:] = list(geoms)
    for i, g in enumerate(arr):
        if not isinstance(g, shapely.Polygon | shapely.MultiPolygon):
            raise GeoJSONError(
                f"object {i}: expected a shapely Polygon or MultiPolygon, got "
                f"{getattr(g, 'geom_type', type(g).__name__)}"
            )
    out: list[BaseGeometry | None] = [None] * len(arr)
    if len(arr) == 0:
        return out
    xy, owner = shapely.get_coordinates(arr, return_index=True)
    non_finite = np.zeros(len(arr), dtype=bool)
    non_finite[owner[~np.isfinite(xy).all(axis=1)]] = True
    for bad in np.flatnonzero(non_finite).tolist():
        logger.warning("object %d: non-finite coordinates; it is left out", bad)
    idx = np.flatnonzero(~non_finite)
    g = arr[idx]
    invalid = ~shapely.is_valid(g)
    if invalid.any():
        g[invalid] = shapely.make_valid(g[invalid])
    g = shapely.set_precision(g, GRID)
    keep: list[int] = []
    for i, gi in zip(idx.tolist(), g, strict=True):
        poly = _polygonal_part(gi)
        if poly is None:
            logger.warning("object %d: no area left once made valid; it is left out", i)
            continue
        out[i] = poly
        keep.append(i)
    if keep:
        oriented = shapely.orient_polygons(np.asarray([out[i] for i in keep], dtype=object))
        for i, gi in zip(keep, oriented, strict=True):
            out[i] = gi
    return out


def _polygonal_part(g: BaseGeometry) -> BaseGeometry | None:
    if g is None or g.is_empty:
        return None
    if isinstance(g, shapely.Polygon | shapely.MultiPolygon):
        return g
    if isinstance(g, shapely.GeometryCollection):
        polys: list[shapely.Polygon] = []
        for p in g.geoms:
            if isinstance(p, shapely.Polygon) and not p.is_empty:
                polys.append(p)
            elif isinstance(p, shapely.MultiPolygon):
                polys.extend(q for q in p.geoms if not q.is_empty)
        if not polys:
            return None
        return polys[0] if len(polys) == 1 else shapely.MultiPolygon(polys)
    return None


def box_geometries(boxes: np.ndarray) -> np.ndarray:
    """Check ``(n, 4)`` boxes ``x, y, w, h``; return them as float64 (rectangles are built lazily).

    Raises:
        GeoJSONError: Wrong shape, non-finite values, or a box without positive width and height.
    """
    b = np.asarray(boxes, dtype=np.float64)
    if b.ndim != 2 or b.shape[1] != 4:
        raise GeoJSONError(f"boxes must have shape (n, 4) as x, y, w, h; got {b.shape}")
    bad = ~np.isfinite(b).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise GeoJSONError(f"box {i} has non-finite values {b[i].tolist()}")
    bad = (b[:, 2] <= 0) | (b[:, 3] <= 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise GeoJSONError(f"box {i} has no positive width and height: {b[i].tolist()}")
    return b
