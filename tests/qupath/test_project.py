"""QuPath projects without QuPath: reading project.qpproj, choosing images, GeoJSON-file output."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import shapely

from qupath._project_helpers import FakeProject, QpImage, make_qpproj, user_annotation
from stimage.errors import InputFileNotFoundError, MissingDependencyError
from stimage.pipelines import ImageResult, format_summary
from stimage.pipelines._project import _assign_tiles, _skip_reason
from stimage.qupath import (
    GeoJSONDirProject,
    ObjectGroup,
    PaquoProject,
    ProjectError,
    ProjectImage,
    ProjectLike,
    QuPathNotFoundError,
    annotation_feature,
    read_qpproj,
    select_images,
    tile_features,
    validate_geojson,
)
from stimage.qupath._project_geojson import image_file_stem


def _touch(p: Path) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"not read here")
    return p


def test_read_qpproj_as_qupath_writes_it(tmp_path: Path) -> None:
    a = _touch(tmp_path / "slides" / "B4 section.tif")  # a space: percent-encoded in the URI
    b = _touch(tmp_path / "slides" / "C2.svs")
    qp = make_qpproj(
        tmp_path / "proj",
        [
            QpImage(a, mpp=0.69, metadata={"patient": "B"}, annotations=3),
            QpImage(b, name="C2 renamed", mpp=None, builder="pyramidize"),
            QpImage(tmp_path / "slides" / "gone.tif", mpp=0.5),
            QpImage(a, name="rotated", builder="rotated"),
            QpImage("remote.svs", name="remote", builder="http"),
        ],
    )
    ims = read_qpproj(qp.parent)  # the folder works as well as the file
    assert [im.id for im in ims] == ["1", "2", "3", "4", "5"]
    assert [im.name for im in ims] == [
        "B4 section.tif",
        "C2 renamed",
        "gone.tif",
        "rotated",
        "remote",
    ]
    first = ims[0]
    assert first.path == a.resolve() and first.uri.startswith("file:/") and "%20" in first.uri
    assert first.mpp == pytest.approx(0.69) and first.problem is None
    assert first.metadata == {"patient": "B"} and first.annotation_count == 3
    assert ims[1].path == b.resolve() and ims[1].mpp is None  # uncalibrated: "px"
    assert ims[1].annotation_count == 0
    assert ims[2].path is not None and not ims[2].path.exists() and ims[2].problem is None
    assert ims[3].path is None and "rotated" in ims[3].problem
    assert ims[4].path is None and "not a local file" in ims[4].problem
    assert isinstance(FakeProject(qp), ProjectLike)


def test_moved_project_finds_images_beside_it(tmp_path: Path) -> None:
    old = tmp_path / "old_place" / "proj"
    new = tmp_path / "new_place" / "proj"
    _touch(new.parent / "slides" / "a.tif")
    qp = make_qpproj(new, [QpImage(old.parent / "slides" / "a.tif")], moved_from=old)
    (im,) = read_qpproj(qp)
    assert im.path == (new.parent / "slides" / "a.tif").resolve()


def test_bad_projects_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(InputFileNotFoundError, match=r"project\.qpproj"):
        read_qpproj(tmp_path)
    (tmp_path / "project.qpproj").write_text("{not json")
    with pytest.raises(ProjectError, match="not a QuPath project"):
        read_qpproj(tmp_path)
    (tmp_path / "project.qpproj").write_text(json.dumps({"images": []}))
    with pytest.raises(ProjectError, match="version"):
        read_qpproj(tmp_path)


def _ims(*names: str) -> list[ProjectImage]:
    return [ProjectImage(str(i + 1), n, None, None, None) for i, n in enumerate(names)]


def test_select_images_by_name_glob_and_id() -> None:
    ims = _ims("A1.svs", "B1.svs", "B2.svs", "7")
    assert select_images(ims, []) == ims
    assert [i.name for i in select_images(ims, ["B*"])] == ["B1.svs", "B2.svs"]
    # project order, each once, however given
    assert [i.name for i in select_images(ims, ["B2.svs", "A1.svs", "B*"])] == [
        "A1.svs",
        "B1.svs",
        "B2.svs",
    ]
    assert [i.name for i in select_images(ims, ["id:2"])] == ["B1.svs"]
    assert [i.name for i in select_images(ims, ["3"])] == ["B2.svs"]
    assert [i.name for i in select_images(ims, ["7"])] == ["7"]  # a name wins over an id
    with pytest.raises(ProjectError) as e:
        select_images(ims, ["A1.svs", "C*", "nope"])
    msg = str(e.value)
    assert "'C*'" in msg and "'nope'" in msg and "'B2.svs' (id 3)" in msg and "\n" not in msg


def test_geojson_dir_project_writes_files_and_remembers(tmp_path: Path) -> None:
    slides = [_touch(tmp_path / n) for n in ("x/a.tif", "y/a.svs", "b.jpg")]
    qp = make_qpproj(tmp_path / "proj", [QpImage(s) for s in slides])
    regions = tmp_path / "regions"
    regions.mkdir()
    roi = user_annotation(shapely.box(10, 10, 200, 150))
    (regions / "b.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [roi]}))
    out = tmp_path / "out"
    p = GeoJSONDirProject(qp, out, regions_dir=regions)
    assert isinstance(p, ProjectLike)
    a1, a2, b = p.images()
    # same stem twice: the entry id keeps them apart
    assert [p.output(i).name for i in (a1, a2, b)] == ["a-1.geojson", "a-2.geojson", "b.geojson"]
    assert p.annotations(a1) == [] and not p.reads_annotations(a1)
    assert p.reads_annotations(b)
    (ann,) = p.annotations(b)
    assert ann.id == roi["id"] and ann.geometry.bounds == (10, 10, 200, 150)
    assert p.count_stimage_objects(b) == 0
    tiles = list(tile_features(np.array([[10, 10, 50, 50], [60, 10, 50, 50]]), None))
    region = annotation_feature(shapely.box(0, 0, 300, 300), name="STImage region")
    n = p.replace_objects(b, [ObjectGroup(roi["id"], tiles[:1]), ObjectGroup(region, tiles[1:])])
    assert n == 3 and validate_geojson(p.output(b)) == 3
    assert p.count_stimage_objects(b) == 3
    p.set_metadata(b, {"stimage.model": "tiny sha256:abc"})
    p.save(b)
    index = json.loads((out / "stimage_project.json").read_text())
    assert index["images"]["3"]["file"] == "b.geojson"
    again = GeoJSONDirProject(qp, out)  # a later run sees what was done
    assert again.images()[2].metadata["stimage.model"] == "tiny sha256:abc"
    assert not again.reads_annotations(b) and again.annotations(again.images()[2]) == []
    with pytest.raises(ProjectError, match="regions-dir"):
        GeoJSONDirProject(qp, out, regions_dir=tmp_path / "nowhere")


def test_image_file_stems() -> None:
    assert image_file_stem("B4.svs") == "B4"
    assert image_file_stem("x.ome.tiff") == "x"
    assert image_file_stem("a/b:c?.tif") == "a_b_c_"
    assert image_file_stem("  ") == "image"


def test_tiles_go_where_qupath_would_put_them() -> None:
    big = shapely.box(0, 0, 400, 400)
    small = shapely.box(100, 100, 200, 200)
    boxes = np.array(
        [
            [120, 120, 100, 100],  # centre in small (and big): the smaller one
            [0, 0, 100, 100],  # centre in big only
            [50, 100, 100, 100],  # centre on small's edge: not inside it
            [380, 380, 50, 50],  # centre outside both, overlaps big
            [900, 900, 50, 50],  # nowhere
        ]
    )
    # smallest first, as the batch orders them
    owner = _assign_tiles(boxes, [small, big])
    assert owner.tolist() == [0, 1, 1, 1, -1]


def test_skip_rules() -> None:
    im = ProjectImage("1", "a", None, None, None)
    assert _skip_reason(im, "m sha256:1", "s1", overwrite=False) is None
    im.metadata.update({"stimage.model": "m sha256:1", "stimage.settings": "s1"})
    assert _skip_reason(im, "m sha256:1", "s1", overwrite=False) == "already done with this model"
    assert "other settings" in _skip_reason(im, "m sha256:1", "s2", overwrite=False)
    assert "m sha256:1" in _skip_reason(im, "n sha256:2", "s1", overwrite=False)
    assert _skip_reason(im, "n sha256:2", "s1", overwrite=True) is None


def test_summary_table() -> None:
    text = format_summary(
        [
            ImageResult("1", "A long image name.svs", "done", "2 annotation(s)", 120, 3400, 61.2),
            ImageResult("2", "B.svs", "failed", note="no pixel size: set it in QuPath"),
        ]
    )
    lines = text.splitlines()
    assert lines[0].split() == ["image", "status", "regions", "tiles", "cells", "time", "note"]
    assert lines[1].index("done") == lines[2].index("failed") == lines[0].index("status")
    assert "120" in lines[1] and "61s" in lines[1] and lines[2].endswith("set it in QuPath")
    assert lines[-1] == "1 done, 0 skipped, 1 failed"


def test_paquo_without_qupath_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if os.environ.get("PAQUO_QUPATH_DIR"):
        pytest.skip("a QuPath installation is configured")
    pytest.importorskip("paquo")
    qp = make_qpproj(tmp_path / "proj", [QpImage(_touch(tmp_path / "a.tif"))])
    monkeypatch.setenv("PAQUO_QUPATH_DIR", str(tmp_path / "no-qupath-here"))
    with pytest.raises(QuPathNotFoundError) as e:
        PaquoProject(qp)
    msg = str(e.value)
    assert isinstance(e.value, MissingDependencyError)
    assert "PAQUO_QUPATH_DIR" in msg and "--geojson-dir" in msg and "\n" not in msg
