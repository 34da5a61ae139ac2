"""The validator accepts what QuPath's reader reads and rejects each real problem."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import shapely

from stimage.errors import StimageError
from stimage.qupath import (
    GeoJSONError,
    annotation_feature,
    cell_features,
    feature_collection,
    tile_features,
    validate_feature,
    validate_geojson,
)


def _cell() -> dict[str, Any]:
    (f,) = cell_features(
        [shapely.Point(5, 5).buffer(2)], [shapely.Point(5, 5).buffer(4)], ["Immune"], None
    )
    f["properties"]["measurements"] = {"Immune: probability": 0.7, "Cell: type entropy": "NaN"}
    return f


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    keys = path.split(".")

    def edit(f: dict[str, Any]) -> None:
        d = f
        for k in keys[:-1]:
            d = d[k]
        d[keys[-1]] = value

    return edit


def _del(path: str) -> Callable[[dict[str, Any]], None]:
    keys = path.split(".")

    def edit(f: dict[str, Any]) -> None:
        d = f
        for k in keys[:-1]:
            d = d[k]
        del d[keys[-1]]

    return edit


_SQUARE = [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]

REJECTED = {
    "not a Feature": (_set("type", "Polygon"), "expected 'Feature'"),
    "classification without color": (_del("properties.classification.color"), "no 'color'"),
    "classification as a bare string": (_set("properties.classification", "Immune"), "bare string"),
    "classification without name": (_del("properties.classification.name"), "no 'name'"),
    "colour out of range": (_set("properties.classification.color", [300, 0, 0]), "0-255"),
    "colour as floats": (_set("properties.classification.color", [1.0, 2.0, 3.0]), "integer"),
    "colour of 2 values": (_set("properties.classification.color", [1, 2]), r"\[r, g, b\]"),
    "class name with a line break": (_set("properties.classification.name", "a\nb"), "line break"),
    "measurements as a list of numbers": (_set("properties.measurements", [0.7, 0.1]), "name"),
    "measurements as a number": (_set("properties.measurements", 0.7), "expected an object"),
    "measurement value a bool": (_set("properties.measurements.x", True), "not a number"),
    "measurement value null": (_set("properties.measurements.x", None), "not a number"),
    "measurement value text": (_set("properties.measurements.x", "high"), "not a number"),
    "measurement value a bare NaN": (_set("properties.measurements.x", float("nan")), "bare token"),
    "measurement value a dict": (_set("properties.measurements.x", {"v": 1}), "not a number"),
    "NaN coordinate": (
        _set("geometry.coordinates", [[[0, 0], [float("nan"), 0], [1, 1], [0, 0]]]),
        "finite",
    ),
    "infinite coordinate": (
        _set("geometry.coordinates", [[[0, 0], [float("inf"), 0], [1, 1], [0, 0]]]),
        "finite",
    ),
    "text coordinate": (
        _set("geometry.coordinates", [[[0, 0], ["1", 0], [1, 1], [0, 0]]]),
        "finite",
    ),
    "unclosed ring": (
        _set("geometry.coordinates", [[[0, 0], [1, 0], [1, 1], [0, 1]]]),
        "not closed",
    ),
    "ring of 3 positions": (_set("geometry.coordinates", [[[0, 0], [1, 0], [0, 0]]]), "at least 4"),
    "unknown geometry type": (_set("geometry.type", "Circle"), "not one QuPath reads"),
    "no geometry": (_del("geometry"), "no 'geometry'"),
    "null geometry": (_set("geometry", None), "no 'geometry'"),
    "bad nucleus": (_set("nucleusGeometry.coordinates", []), "list of rings"),
    "unknown objectType": (_set("properties.objectType", "nucleus"), "unknown objectType"),
    "no objectType": (_del("properties.objectType"), "no 'objectType'"),
    "nucleus on a detection": (_set("properties.objectType", "detection"), "nucleusGeometry"),
    "id not a UUID": (_set("id", "cell-1"), "not a UUID"),
    "id a number": (_set("id", 12), "not a UUID"),
    "no properties": (_del("properties"), "no 'properties'"),
    "metadata nested": (_set("properties.metadata", {"k": {"a": 1}}), "primitives"),
    "metadata a list": (_set("properties.metadata", ["a"]), "key -> string"),
    "isLocked a string": (_set("properties.isLocked", "yes"), "true or false"),
    "name a number": (_set("properties.name", 3), "must be a string"),
    "bad child": (_set("properties.childObjects", [{"type": "Feature"}]), r"childObjects\[0\]"),
}


@pytest.mark.parametrize("case", list(REJECTED))
def test_rejects(case: str) -> None:
    edit, match = REJECTED[case]
    f = _cell()
    validate_feature(f)  # valid before the edit
    edit(f)
    with pytest.raises(GeoJSONError, match=match) as info:
        validate_feature(f)
    assert isinstance(info.value, StimageError) and isinstance(info.value, ValueError)


ACCEPTED = {
    # QuPath's reader takes these too (QuPathTypeAdapters / GsonTools), so we do.
    "measurements as the legacy list": _set(
        "properties.measurements", [{"name": "a", "value": 1.0}, {"name": "b", "value": "NaN"}]
    ),
    "measurement strings QuPath parses": _set(
        "properties.measurements",
        {"a": "Infinity", "b": "-Infinity", "c": "nan", "d": "-inf", "e": "2.5"},
    ),
    "cell without nucleusGeometry": _del("nucleusGeometry"),
    "no id": _del("id"),
    "derived class as names": _set(
        "properties.classification", {"names": ["Tumor", "Positive"], "color": [1, 2, 3]}
    ),
    "colour with alpha": _set("properties.classification.color", [1, 2, 3, 128]),
    "packed colour": _set("properties.classification.color", -3670016),
    "legacy classification": _set(
        "properties.classification", {"name": "Tumor", "colorRGB": -3670016}
    ),
    "null classification": _set("properties.classification", None),
    "object colour": _set("properties.color", [255, 0, 0]),
    "integer coordinates": _set("geometry", {"type": "Polygon", "coordinates": _SQUARE}),
    "3D coordinates": _set("geometry", {"type": "Point", "coordinates": [1, 2, 0]}),
    "MultiPolygon": _set("geometry", {"type": "MultiPolygon", "coordinates": [_SQUARE, _SQUARE]}),
    "a plane and isEllipse": _set(
        "geometry",
        {
            "type": "Polygon",
            "coordinates": _SQUARE,
            "plane": {"c": -1, "z": 1, "t": 0},
            "isEllipse": True,
        },
    ),
    "metadata numbers": _set("properties.metadata", {"a": 1, "b": "x"}),
    "tmaCore": lambda f: (f.pop("nucleusGeometry"), f["properties"].update(objectType="tmaCore")),
}


@pytest.mark.parametrize("case", list(ACCEPTED))
def test_accepts(case: str) -> None:
    f = _cell()
    ACCEPTED[case](f)
    validate_feature(f)


def test_validate_geojson_forms_and_count(tmp_path: Path) -> None:
    feats = list(tile_features(np.array([[0, 0, 5, 5], [5, 5, 5, 5]]), None))
    feats.append(annotation_feature(shapely.box(0, 0, 20, 20), name="r"))
    assert validate_geojson(feature_collection(feats)) == 3
    assert validate_geojson(feats) == 3
    assert validate_geojson(feats[0]) == 1
    p = tmp_path / "x.geojson"
    p.write_text(json.dumps(feature_collection(feats)))
    assert validate_geojson(p) == 3
    assert validate_geojson(str(p)) == 3

    bad = copy.deepcopy(feats)
    bad[1]["properties"]["objectType"] = "spot"
    with pytest.raises(GeoJSONError, match=r"features\[1\]: unknown objectType 'spot'"):
        validate_geojson(feature_collection(bad))
    with pytest.raises(GeoJSONError, match="'features' list"):
        validate_geojson({"type": "FeatureCollection"})
    with pytest.raises(GeoJSONError, match="bare geometry"):
        validate_geojson({"type": "Polygon", "coordinates": _SQUARE})


def test_validate_geojson_file_must_be_strict_json(tmp_path: Path) -> None:
    f = _cell()
    f["properties"]["measurements"] = {"x": float("nan")}
    p = tmp_path / "nan.geojson"
    p.write_text(json.dumps([f]))  # json writes a bare NaN token
    with pytest.raises(GeoJSONError, match="bare token NaN"):
        validate_geojson(p)
    (tmp_path / "broken.geojson").write_text('{"type": "FeatureCollection", "features": [')
    with pytest.raises(GeoJSONError, match="not valid JSON"):
        validate_geojson(tmp_path / "broken.geojson")
    with pytest.raises(GeoJSONError, match="cannot read"):
        validate_geojson(tmp_path / "missing.geojson")
