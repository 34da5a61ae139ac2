"""Streaming writer, reader round trips, and QuPath's own exports (fixtures/README.md)."""

from __future__ import annotations

import gzip
import io
import json
import math
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import geojson
import numpy as np
import pytest
import shapely

from stimage.constants import Measurement, ObjectMarker
from stimage.errors import InputFileNotFoundError
from stimage.qupath import (
    STIMAGE_MARKER,
    FeatureCollectionWriter,
    GeoJSONError,
    feature_collection,
    read_geojson,
    tile_features,
    validate_geojson,
    write_geojson,
)

FIXTURES = Path(__file__).parent / "fixtures"


# --- writer ------------------------------------------------------------------------------


def test_streamed_file_equals_in_memory_collection(
    tmp_path: Path, sample_features: list[dict[str, Any]]
) -> None:
    feats = sample_features
    path = tmp_path / "out.geojson"
    assert write_geojson(path, iter(feats), validate=True) == len(feats)
    text = path.read_text(encoding="utf-8")
    assert json.loads(text) == feature_collection(feats)
    assert validate_geojson(path) == len(feats)
    parsed = geojson.loads(text)
    assert parsed.is_valid, parsed.errors()
    assert len(parsed["features"]) == len(feats)
    assert not (tmp_path / "out.geojson.part").exists()


def test_writer_to_a_stream_and_gzip(tmp_path: Path, sample_features: list[dict[str, Any]]) -> None:
    feats = sample_features
    buf = io.StringIO()
    with FeatureCollectionWriter(buf) as w:
        w.write(feats[0])
        assert w.write_all(feats[1:]) == len(feats) - 1
    assert w.count == len(feats)
    assert not buf.closed
    assert json.loads(buf.getvalue()) == feature_collection(feats)

    gz = tmp_path / "out.geojson.gz"
    write_geojson(gz, feats)
    with gzip.open(gz, "rt", encoding="utf-8") as fh:
        assert json.load(fh) == feature_collection(feats)
    assert validate_geojson(gz) == len(feats)
    assert [o.id for o in read_geojson(gz)] == [f["id"] for f in feats]


def test_empty_collection_is_valid(tmp_path: Path) -> None:
    p = tmp_path / "empty.geojson"
    assert write_geojson(p, []) == 0
    assert json.loads(p.read_text()) == {"type": "FeatureCollection", "features": []}
    assert validate_geojson(p) == 0


def test_failed_run_leaves_no_file(tmp_path: Path, sample_features: list[dict[str, Any]]) -> None:
    p = tmp_path / "out.geojson"
    with pytest.raises(RuntimeError), FeatureCollectionWriter(p) as w:
        w.write(sample_features[0])
        raise RuntimeError("model crashed")
    assert list(tmp_path.iterdir()) == []


def test_writer_rejects_bad_features(tmp_path: Path, sample_features: list[dict[str, Any]]) -> None:
    f = sample_features[0]
    bad = dict(f, properties=dict(f["properties"], objectType="spot"))
    with pytest.raises(GeoJSONError, match="unknown objectType"):
        write_geojson(tmp_path / "a.geojson", [f, bad], validate=True)
    nan_coord = dict(f, geometry={"type": "Point", "coordinates": [math.nan, 0.0]})
    with pytest.raises(GeoJSONError, match="NaN or infinite"):
        write_geojson(tmp_path / "b.geojson", [nan_coord])
    with pytest.raises(GeoJSONError, match="not JSON-serialisable"):
        write_geojson(tmp_path / "c.geojson", [dict(f, extra=object())])
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(GeoJSONError, match="not open"):
        FeatureCollectionWriter(tmp_path / "d.geojson").write(f)


def test_writer_consumes_features_one_at_a_time() -> None:
    """Each feature is written before the next is asked for: nothing piles up."""
    n = 10_000
    sink = io.StringIO()
    writer = FeatureCollectionWriter(sink)

    def lockstep() -> Iterator[dict[str, Any]]:
        for k, f in enumerate(tile_features(np.tile([0.0, 0.0, 8.0, 8.0], (n, 1)), None)):
            assert writer.count == k
            yield f

    with writer:
        writer.write_all(lockstep())
    assert writer.count == n
    assert validate_geojson(json.loads(sink.getvalue())) == n


class _NullSink(io.TextIOBase):
    def __init__(self) -> None:
        self.chars = 0

    def write(self, s: str) -> int:
        self.chars += len(s)
        return len(s)


@pytest.mark.slow
def test_20k_tiles_stream_in_bounded_memory() -> None:
    n = 20_000
    rng = np.random.default_rng(0)
    boxes = np.c_[rng.uniform(0, 1e5, (n, 2)), np.full((n, 2), 224.0)]
    sink = _NullSink()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        count = write_geojson(sink, tile_features(boxes, None))
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert count == n
    # ~5 MB of JSON went through; holding the 20k feature dicts would take tens of MB.
    assert sink.chars > 4_000_000
    assert peak < 3_000_000, f"peak {peak / 1e6:.1f} MB while streaming"


# --- reader ------------------------------------------------------------------------------


def test_round_trip_of_our_output(tmp_path: Path, sample_features: list[dict[str, Any]]) -> None:
    feats = sample_features
    p = tmp_path / "out.geojson"
    write_geojson(p, feats)
    objs = read_geojson(p)
    assert [o.id for o in objs] == [f["id"] for f in feats]
    assert all(o.is_stimage for o in objs)
    assert [o.object_type for o in objs] == [f["properties"]["objectType"] for f in feats]
    assert [o.classification for o in objs] == [
        "COX6C: High",
        None,
        "Immune",
        "Tumor",
        "Epithelial",
        "STImage region",
    ]
    t0, t1, d0, _, cell, region = objs
    assert t0.measurements == {"COX6C: mean": 1.5, "COX6C: P(high)": 0.25}
    assert math.isnan(t1.measurements["COX6C: mean"])
    assert t1.measurements["COX6C: P(high)"] == math.inf
    assert t0.metadata[ObjectMarker.TASK] == "expression"
    assert t0.geometry.equals(shapely.box(0, 0, 224, 224))
    assert d0.geometry.geom_type == "MultiPolygon" and d0.name == "n1"
    assert cell.nucleus is not None and cell.geometry.contains(cell.nucleus)
    assert region.is_locked and region.geometry.area == pytest.approx(990_000)
    assert region.metadata["stimage"]
    # every input form QuPath accepts
    fc = feature_collection(feats)
    assert len(read_geojson(fc)) == len(read_geojson(feats)) == len(feats)
    assert len(read_geojson(json.dumps(fc))) == len(feats)
    assert read_geojson(feats[0])[0].id == feats[0]["id"]


def test_reads_a_bare_geometry_as_annotation() -> None:
    (o,) = read_geojson({"type": "Polygon", "coordinates": [[[0, 0], [4, 0], [4, 4], [0, 0]]]})
    assert o.object_type == "annotation" and o.geometry.area == 8.0 and not o.is_stimage


def test_reader_errors(tmp_path: Path) -> None:
    with pytest.raises(InputFileNotFoundError):
        read_geojson(tmp_path / "missing.geojson")
    with pytest.raises(GeoJSONError, match="not valid JSON"):
        read_geojson('{"type": ')
    with pytest.raises(GeoJSONError, match="no geometry"):
        read_geojson({"type": "Feature", "properties": {"objectType": "detection"}})
    with pytest.raises(GeoJSONError, match="no name"):
        read_geojson(
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [0, 0]},
                "properties": {"classification": {"color": [1, 2, 3]}},
            }
        )


def test_reads_a_qupath_export() -> None:
    path = FIXTURES / "qupath_export_v06.geojson"
    assert validate_geojson(path) == 6
    ann, cell, det, tile, points, ellipse = read_geojson(path)
    assert (ann.object_type, ann.name, ann.classification) == (
        "annotation",
        "Tumour region",
        "Tumor",
    )
    assert ann.is_locked and not ann.is_stimage and ann.id == "7c7f4f5e-2b8f-4c0e-9d55-1d2e0d3f9a01"
    assert ann.geometry.area == pytest.approx(2000 * 1500 - 300 * 300)
    assert cell.object_type == "cell" and cell.classification == "Tumor: Positive"
    assert cell.nucleus is not None and cell.nucleus.area < cell.geometry.area
    assert cell.measurements["Nucleus: Area µm^2"] == pytest.approx(31.52)
    assert math.isnan(cell.measurements["Nucleus: DAB OD mean"])
    assert Measurement.NUCLEUS_AREA in cell.measurements
    assert det.classification is None
    assert det.measurements["Hematoxylin: Max"] == math.inf
    assert det.measurements["Eosin: Min"] == -math.inf
    # a tile written by STImage with metadata, after QuPath (metadata written twice by QuPath)
    assert tile.object_type == "tile" and tile.is_stimage
    assert tile.metadata == {"stimage": "0.1.0", "stimage.task": "expression"}
    assert tile.classification == "COX6C: High"
    assert points.geometry.geom_type == "MultiPoint" and points.classification == "Immune cells"
    assert ellipse.geometry.area == pytest.approx(math.pi * 100 * 100, rel=0.01)  # isEllipse
    assert not any(o.is_stimage for o in (ann, cell, det, points, ellipse))


def test_reads_qupath_0_2_legacy_export() -> None:
    path = FIXTURES / "qupath_export_v02_legacy.json"
    (o,) = read_geojson(path)
    assert o.object_type == "detection" and o.id is None
    assert o.classification == "Tumor: Positive"
    assert o.measurements["Area"] == 360.0 and math.isnan(o.measurements["Max"])
    with pytest.raises(GeoJSONError, match="bare token NaN"):
        validate_geojson(path)  # QuPath 0.2-0.4 wrote NaN unquoted, which is not JSON


@pytest.mark.parametrize(
    ("name", "tile_metadata"),
    [
        ("qupath070_reexport_of_stimage.geojson", True),
        ("qupath051_reexport_of_stimage.geojson", False),
    ],
)
def test_stimage_objects_survive_qupath(name: str, tile_metadata: bool) -> None:
    """Files QuPath's own reader and writer produced from our output (fixtures/README.md)."""
    path = FIXTURES / name
    assert validate_geojson(path) == 8
    objs = read_geojson(path)
    assert all(o.is_stimage and o.id.startswith(STIMAGE_MARKER) for o in objs)
    types = [o.object_type for o in objs]
    assert types == [
        "tile",
        "tile",
        "detection",
        "detection",
        "cell",
        "cell",
        "annotation",
        "annotation",
    ]
    assert ("stimage.task" in objs[0].metadata) is tile_metadata  # QuPath 0.5 drops it on tiles
    assert objs[6].metadata["stimage.task"] == "expression"  # annotations keep it
    assert math.isnan(objs[1].measurements["COX6C: mean"])
    assert objs[0].classification == "COX6C: High"
    assert objs[4].nucleus is not None
