"""Builders of QuPath Features: layout, numbers, geometry cleaning, classes and colours."""

from __future__ import annotations

import json
import math
import uuid

import numpy as np
import pandas as pd
import pytest
import shapely

from stimage.constants import Measurement, ObjectMarker
from stimage.qupath import (
    STIMAGE_MARKER,
    GeoJSONError,
    annotation_feature,
    cell_features,
    class_color,
    is_stimage_id,
    polygon_features,
    tile_features,
    validate_feature,
)


def _strict_json(obj: object) -> object:
    """Serialise as strict JSON (fails on NaN and on numpy scalars) and parse back."""
    return json.loads(json.dumps(obj, allow_nan=False))


def _exact_floats(x: object) -> None:
    """Every number is a Python float or int (no numpy scalar), recursively."""
    if isinstance(x, dict):
        for v in x.values():
            _exact_floats(v)
    elif isinstance(x, list):
        for v in x:
            _exact_floats(v)
    else:
        assert x is None or type(x) in (str, float, int, bool), type(x)


# --- tiles -------------------------------------------------------------------------------


def test_tiles_layout_and_numbers() -> None:
    boxes = np.array([[0, 0, 224, 224], [224.5, 10, 100.333, 50]], dtype=np.float32)
    gene = "COX6C"
    df = pd.DataFrame(
        {
            Measurement.of(gene, Measurement.MEAN): np.array([1.5, np.nan], dtype=np.float32),
            Measurement.of(gene, Measurement.ALEATORIC_SD): np.array([np.inf, -np.inf]),
            Measurement.of(gene, Measurement.P_HIGH): np.array([0, 1], dtype=np.int64),
            "flag": np.array([True, False]),
        },
        index=[10, 3],  # rows match boxes by position, not by index
    )
    feats = list(tile_features(boxes, df))
    assert len(feats) == 2
    for f in feats:
        validate_feature(f)
        _exact_floats(f)
        assert _strict_json(f) == f
        assert list(f) == ["type", "id", "geometry", "properties"]
        assert f["properties"]["objectType"] == "tile"
        assert "metadata" not in f["properties"]  # none on tiles unless asked
    a, b = feats
    assert a["geometry"] == {
        "type": "Polygon",
        "coordinates": [[[0.0, 0.0], [224.0, 0.0], [224.0, 224.0], [0.0, 224.0], [0.0, 0.0]]],
    }
    ring = b["geometry"]["coordinates"][0]
    assert ring[0] == ring[-1] == [224.5, 10.0]
    assert ring[2] == [324.83, 60.0]  # 224.5 + 100.333, rounded to QuPath's 2 decimals
    assert shapely.Polygon(ring).exterior.is_ccw
    assert a["properties"]["measurements"] == {
        "COX6C: mean": 1.5,
        "COX6C: aleatoric sd": "Infinity",
        "COX6C: P(high)": 0.0,
        "flag": 1.0,
    }
    assert b["properties"]["measurements"] == {
        "COX6C: mean": "NaN",
        "COX6C: aleatoric sd": "-Infinity",
        "COX6C: P(high)": 1.0,
        "flag": 0.0,
    }


def test_ids_mark_stimage_objects_and_are_unique_uuids() -> None:
    feats = list(tile_features(np.tile([0, 0, 10, 10], (5000, 1)), None))
    ids = [f["id"] for f in feats]
    assert len(set(ids)) == len(ids)
    for s in ids[:50]:
        u = uuid.UUID(s)
        assert str(u) == s and u.version == 8 and u.variant == uuid.RFC_4122
        assert s.startswith(STIMAGE_MARKER) and is_stimage_id(s)
    assert STIMAGE_MARKER == ObjectMarker.ID_PREFIX
    assert not is_stimage_id(str(uuid.uuid4()))  # QuPath's own ids are version 4
    assert not is_stimage_id(None)


def test_tile_classes_names_and_metadata() -> None:
    boxes = np.array([[0, 0, 5, 5], [5, 0, 5, 5], [10, 0, 5, 5]])
    feats = list(
        tile_features(
            boxes,
            None,
            classification=["COX6C: High", None, "Low"],
            names=["a", "b", "c"],
            extra={ObjectMarker.TASK: "expression", "n": 3},
        )
    )
    p0, p1, p2 = (f["properties"] for f in feats)
    assert p0["classification"] == {"names": ["COX6C", "High"], "color": [220, 50, 50]}
    assert "classification" not in p1
    assert p2["classification"] == {"name": "Low", "color": list(class_color("Low"))}
    assert [p["name"] for p in (p0, p1, p2)] == ["a", "b", "c"]
    assert p0["metadata"] == {
        "stimage": p0["metadata"]["stimage"],
        "stimage.task": "expression",
        "n": "3",
    }
    one = list(tile_features(boxes, None, classification="Tumor", object_type="detection"))
    assert all(f["properties"]["classification"]["name"] == "Tumor" for f in one)
    assert all(f["properties"]["objectType"] == "detection" for f in one)
    assert "measurements" not in one[0]["properties"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"boxes": np.zeros((2, 3))}, "shape"),
        ({"boxes": np.array([[0, 0, np.nan, 5]])}, "non-finite"),
        ({"boxes": np.array([[0, 0, 0, 5]])}, "positive width"),
        ({"measurements": pd.DataFrame({"a": [1.0]})}, "1 rows for 2 objects"),
        ({"measurements": pd.DataFrame({"a": ["x", "y"]})}, "not numeric"),
        ({"measurements": pd.DataFrame({0: [1.0, 2.0]})}, "not a non-empty string"),
        ({"classification": ["A"]}, "1 classifications for 2"),
        ({"classification": "bad\nname"}, "line break"),
        ({"classification": "Tumor: "}, "empty part"),
        ({"object_type": "tiles"}, "unknown objectType"),
        ({"object_type": "tmaCore"}, "unknown objectType"),
        ({"object_type": "cell"}, "cell_features"),
        ({"extra": {"k": [1]}}, "strings only"),
    ],
)
def test_tile_input_errors(kwargs: dict, match: str) -> None:
    args = {"boxes": np.array([[0, 0, 5, 5], [5, 0, 5, 5]]), "measurements": None} | kwargs
    boxes, meas = args.pop("boxes"), args.pop("measurements")
    with pytest.raises(GeoJSONError, match=match):
        list(tile_features(boxes, meas, **args))


def test_errors_come_before_the_first_feature() -> None:
    """Bad input fails at the call, not half way through writing a file."""
    with pytest.raises(GeoJSONError, match="shape"):
        tile_features(np.zeros((3, 2)), None)
    boxes = np.tile([0, 0, 5, 5], (3, 1))
    with pytest.raises(GeoJSONError, match="line break"):
        tile_features(boxes, None, classification=["A", "B", "bad\rname"])


def test_missing_classes_in_a_pandas_column_mean_unclassified() -> None:
    classes = pd.Series(["Immune", np.nan, None], dtype=object)
    feats = list(tile_features(np.tile([0, 0, 5, 5], (3, 1)), None, classification=classes))
    assert [f["properties"].get("classification", {}).get("name") for f in feats] == [
        "Immune",
        None,
        None,
    ]


# --- polygons ----------------------------------------------------------------------------


def test_polygons_made_valid_degenerate_skipped_and_rows_stay_aligned(caplog) -> None:
    bowtie = shapely.Polygon([(0, 0), (10, 10), (10, 0), (0, 10)])
    line_like = shapely.Polygon([(0, 0), (1, 1), (2, 2)])
    holed = shapely.box(0, 0, 10, 10).difference(shapely.box(2, 2, 4, 4))
    cw = shapely.Polygon([(0, 0), (0, 5), (5, 5), (5, 0)])  # clockwise outer ring
    df = pd.DataFrame({Measurement.lime("VEGFA"): [0.1, 0.2, 0.3, 0.4]})
    feats = list(
        polygon_features(
            [bowtie, line_like, holed, cw],
            df,
            classifications=["Immune", "Tumor", None, "Stromal"],
            names=["n1", "n2", "n3", "n4"],
        )
    )
    assert [f["properties"]["name"] for f in feats] == ["n1", "n3", "n4"]
    assert [f["properties"]["measurements"]["LIME: VEGFA"] for f in feats] == [0.1, 0.3, 0.4]
    assert [f["properties"].get("classification", {}).get("name") for f in feats] == [
        "Immune",
        None,
        "Stromal",
    ]
    assert "object 1" in caplog.text
    g0 = shapely.geometry.shape(feats[0]["geometry"])
    assert feats[0]["geometry"]["type"] == "MultiPolygon" and g0.is_valid
    assert g0.area == pytest.approx(50.0)
    g2 = shapely.geometry.shape(feats[1]["geometry"])
    assert len(feats[1]["geometry"]["coordinates"]) == 2 and g2.area == pytest.approx(96.0)
    for f in feats:
        validate_feature(f)
        assert f["properties"]["objectType"] == "detection"
        g = shapely.geometry.shape(f["geometry"])
        for p in getattr(g, "geoms", [g]):
            assert p.exterior.is_ccw
            assert all(not r.is_ccw for r in p.interiors)


def test_polygon_coordinates_rounded_to_two_decimals() -> None:
    p = shapely.Polygon([(0.123456, 0.0), (10.987654, 0.0), (10.5, 7.777777)])
    (f,) = polygon_features([p], None)
    for x, y in f["geometry"]["coordinates"][0]:
        assert round(x, 2) == x and round(y, 2) == y
    assert shapely.geometry.shape(f["geometry"]).is_valid


def test_polygon_input_errors() -> None:
    with pytest.raises(GeoJSONError, match="Polygon or MultiPolygon"):
        list(polygon_features([shapely.Point(0, 0)], None))
    with pytest.raises(GeoJSONError, match="cell_features"):
        polygon_features([shapely.box(0, 0, 1, 1)], None, object_type="cell")
    with pytest.raises(GeoJSONError, match="2 names for 1"):
        polygon_features([shapely.box(0, 0, 1, 1)], None, names=["a", "b"])


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_polygon_with_non_finite_coordinates_is_left_out() -> None:
    bad = shapely.Polygon([(0, 0), (np.nan, 1), (1, 1)])
    feats = list(polygon_features([bad, shapely.box(0, 0, 1, 1)], None, names=["bad", "ok"]))
    assert [f["properties"]["name"] for f in feats] == ["ok"]


# --- cells -------------------------------------------------------------------------------


def test_cells_have_boundary_and_nucleus() -> None:
    nuclei = [shapely.Point(10, 10).buffer(3), shapely.Point(40, 10).buffer(3)]
    cells = [shapely.Point(10, 10).buffer(8), None]
    df = pd.DataFrame(
        {
            Measurement.class_probability("Immune"): [0.9, 0.2],
            Measurement.CELL_TYPE_ENTROPY: [0.3, np.nan],
        }
    )
    feats = list(cell_features(nuclei, cells, ["Immune", None], df))
    assert len(feats) == 2
    for f in feats:
        validate_feature(f)
        assert list(f) == ["type", "id", "geometry", "nucleusGeometry", "properties"]
        assert f["properties"]["objectType"] == "cell"
    a, b = feats
    assert shapely.geometry.shape(a["geometry"]).area == pytest.approx(math.pi * 64, rel=0.02)
    assert shapely.geometry.shape(a["nucleusGeometry"]).area == pytest.approx(math.pi * 9, rel=0.03)
    assert b["geometry"] == b["nucleusGeometry"]  # no boundary: the nucleus is the cell
    assert a["properties"]["classification"]["name"] == "Immune"
    assert "classification" not in b["properties"]
    assert b["properties"]["measurements"] == {
        "Immune: probability": 0.2,
        "Cell: type entropy": "NaN",
    }
    no_cells = list(cell_features(nuclei, None, "Tumor", None))
    assert all(f["geometry"] == f["nucleusGeometry"] for f in no_cells)
    with pytest.raises(GeoJSONError, match="1 cell boundaries for 2 nuclei"):
        cell_features(nuclei, cells[:1], None, None)


# --- annotations -------------------------------------------------------------------------


def test_annotation_feature() -> None:
    region = shapely.box(0, 0, 100, 50)
    f = annotation_feature(
        region,
        name="STImage region",
        classification="STImage region",
        measurements={"Tiles": np.int64(12), "Mean": float("nan")},
        locked=True,
        extra={ObjectMarker.MODEL: "her2st-v1"},
    )
    validate_feature(f)
    _exact_floats(f)
    p = f["properties"]
    assert list(p) == [
        "objectType",
        "name",
        "classification",
        "isLocked",
        "measurements",
        "metadata",
    ]
    assert p["objectType"] == "annotation" and p["isLocked"] is True
    assert p["measurements"] == {"Tiles": 12.0, "Mean": "NaN"}
    assert p["metadata"]["stimage"] and p["metadata"]["stimage.model"] == "her2st-v1"
    assert is_stimage_id(f["id"])
    plain = annotation_feature(shapely.MultiPoint([(1, 2), (3.456, 4)]))
    validate_feature(plain)
    assert plain["geometry"] == {"type": "MultiPoint", "coordinates": [[1.0, 2.0], [3.46, 4.0]]}
    assert "isLocked" not in plain["properties"]
    with pytest.raises(GeoJSONError, match="empty"):
        annotation_feature(shapely.Polygon())
    with pytest.raises(GeoJSONError, match="not a number"):
        annotation_feature(region, measurements={"x": "high"})


# --- colours and names -------------------------------------------------------------------


def test_class_colours() -> None:
    # QuPath's own standard classes keep QuPath's colours (PathClass.StandardPathClasses).
    assert class_color("Tumor") == (200, 0, 0)
    assert class_color("Stroma") == (150, 200, 150)
    assert class_color("Immune cells") == (160, 90, 160)
    assert class_color("immune") == class_color("Immune")
    assert class_color("COX6C: High") == class_color("High")
    # A stable hash colour for unknown names: pinned, so a change of scheme is noticed.
    assert class_color("Mast cell") == class_color("Mast cell")
    assert class_color("Mast cell") == (45, 191, 62)
    colours = {class_color(f"type {i}") for i in range(50)}
    assert len(colours) > 45
    for c in colours:
        assert all(isinstance(v, int) and 0 <= v <= 255 for v in c)


def test_measurement_names() -> None:
    assert Measurement.class_probability("Immune") == "Immune: probability"
    assert Measurement.lime("VEGFA") == "LIME: VEGFA"
    assert Measurement.CELL_TYPE_ENTROPY == "Cell: type entropy"
    assert Measurement.of("COX6C", Measurement.EPISTEMIC_SD) == "COX6C: epistemic sd"
    assert Measurement.split("COX6C: P(high)") == ("COX6C", "P(high)")
    assert Measurement.split("Nucleus/Cell area ratio") == ("", "Nucleus/Cell area ratio")
    # Spelled as QuPath's ObjectMeasurements writes them (unit GeneralTools.SYMBOL_MICROMETER).
    assert Measurement.NUCLEUS_AREA == "Nucleus: Area \u00b5m^2"
    assert Measurement.NUCLEUS_MAX_DIAMETER == "Nucleus: Max diameter \u00b5m"
