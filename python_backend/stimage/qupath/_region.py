"""Regions of interest from GeoJSON or boxes, parsed with bounded cost.

A region comes from a file (``--region tumour.geojson``) or from the network (a QuPath
annotation sent to the server). Both go through :func:`region_geometry`: vertices are counted
and checked finite before shapely sees them, and an invalid polygon (one that crosses itself)
is repaired only when it is small, because repairs cost time that grows with the square of
the crossings (a 1,800-vertex scribble takes GEOS 11 s). A larger invalid polygon is refused
with the place where it first crosses itself.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from stimage.qupath._format import GeoJSONError

__all__ = ["MAX_REGION_VERTICES", "MAX_REPAIR_VERTICES", "region_geometry", "union_regions"]

#: Most vertices of one region (QuPath's largest hand-drawn annotations have a few thousand).
MAX_REGION_VERTICES = 200_000
#: Invalid polygons with at most this many vertices are repaired (well under a second).
MAX_REPAIR_VERTICES = 500
_POLYGONAL = ("Polygon", "MultiPolygon")


def _count_vertices(coords: Any, depth: int, limit: int, where: str) -> int:
    """Vertices of nested GeoJSON coordinates of a given depth (3 Polygon, 4 MultiPolygon).

    Iterative, so hostile nesting costs no recursion; stops as soon as ``limit`` is passed.
    """
    count = 0
    stack: list[tuple[Any, int]] = [(coords, depth)]
    while stack:
        node, d = stack.pop()
        if not isinstance(node, list | tuple):
            raise GeoJSONError(f"{where}: coordinates must be nested arrays of [x, y] numbers")
        if d == 1:
            if len(node) < 2 or not all(
                type(v) in (int, float) and math.isfinite(v) for v in node[:2]
            ):
                raise GeoJSONError(f"{where}: a vertex must be [x, y] with two finite numbers")
            count += 1
            if count > limit:
                raise GeoJSONError(
                    f"{where}: more than {limit} vertices; simplify the region "
                    "(QuPath: Objects > Annotations > Simplify shape) or split it"
                )
            continue
        stack.extend((child, d - 1) for child in node)
    return count


def region_geometry(
    spec: Any,
    where: str = "region",
    *,
    max_vertices: int = MAX_REGION_VERTICES,
    max_repair_vertices: int = MAX_REPAIR_VERTICES,
) -> Any:
    """A shapely (Multi)Polygon from ``[x, y, w, h]`` or a GeoJSON Polygon / MultiPolygon.

    Args:
        spec: A box (four numbers, full-resolution pixels) or a GeoJSON geometry dict (a
            Feature's ``geometry``).
        where: Named in error messages (``params.slide.region``, a file name).
        max_vertices: Most vertices accepted.
        max_repair_vertices: Invalid polygons up to this size are repaired, larger refused.

    Raises:
        GeoJSONError: Not a box or polygon, too many vertices, non-finite numbers, empty, or
            invalid and too large to repair.
    """
    import shapely
    from shapely.geometry import box, shape

    if isinstance(spec, list | tuple):
        if len(spec) != 4 or not all(type(v) in (int, float) and math.isfinite(v) for v in spec):
            raise GeoJSONError(f"{where}: a box is [x, y, width, height], four finite numbers")
        x, y, w, h = (float(v) for v in spec)
        if not (w > 0 and h > 0) or not all(map(math.isfinite, (x + w, y + h))):
            raise GeoJSONError(f"{where}: the box [{x:g}, {y:g}, {w:g}, {h:g}] has no area")
        return box(x, y, x + w, y + h)
    if not isinstance(spec, dict) or spec.get("type") not in _POLYGONAL:
        raise GeoJSONError(f"{where}: expected a box or a GeoJSON Polygon or MultiPolygon")
    depth = 3 if spec["type"] == "Polygon" else 4
    n = _count_vertices(spec.get("coordinates"), depth, max_vertices, where)
    try:
        g = shape({"type": spec["type"], "coordinates": spec["coordinates"]})
    except (ValueError, TypeError, IndexError, AttributeError, KeyError) as e:
        raise GeoJSONError(f"{where}: not a valid polygon ({e})") from e
    except shapely.errors.ShapelyError as e:
        raise GeoJSONError(f"{where}: not a valid polygon ({e})") from e
    if not shapely.is_valid(g):
        if n > max_repair_vertices:
            reason = shapely.is_valid_reason(g)
            raise GeoJSONError(
                f"{where}: the polygon is invalid ({reason}) and has {n} vertices, too many to "
                f"repair here (at most {max_repair_vertices}); fix it in QuPath (for example "
                "Objects > Annotations > Simplify shape, or redraw the crossing) and send it again"
            )
        g = shapely.make_valid(g, method="structure")
        parts = [p for p in getattr(g, "geoms", [g]) if p.geom_type in _POLYGONAL]
        g = shapely.union_all(parts) if parts else shapely.Polygon()
    if g.is_empty or g.area <= 0:
        raise GeoJSONError(f"{where}: the region is empty (no area)")
    return g


def union_regions(specs: Sequence[Any], where: str = "region") -> Any:
    """The union of several regions (each as :func:`region_geometry`), bounded in total size."""
    import shapely

    geoms = []
    budget = MAX_REGION_VERTICES
    for i, s in enumerate(specs):
        g = region_geometry(s, f"{where} [{i}]", max_vertices=budget)
        budget -= int(shapely.get_num_coordinates(g))
        geoms.append(g)
    if not geoms:
        raise GeoJSONError(f"{where}: no region given")
    return geoms[0] if len(geoms) == 1 else shapely.union_all(geoms)
