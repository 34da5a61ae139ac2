"""PaquoProject against QuPath itself (paquo, PAQUO_QUPATH_DIR): objects into a real project.

Skipped without a QuPath installation. The project is written as QuPath writes it
(``make_qpproj``); QuPath opens it, a user's annotation is added with paquo, then STImage's
objects go in and come back out of the saved project the way QuPath stores them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import shapely

from _synth import render_he, write_pyramid_tiff
from qupath._project_helpers import QpImage, make_qpproj
from stimage.models import ModelBundle, Predictor
from stimage.pipelines import annotate_project, model_id
from stimage.qupath import (
    ObjectGroup,
    PaquoProject,
    annotation_feature,
    cell_features,
    is_stimage_id,
    tile_features,
)

pytestmark = [pytest.mark.qupath, pytest.mark.slow]


@pytest.fixture(scope="module")
def qupath() -> Any:
    if not os.environ.get("PAQUO_QUPATH_DIR"):
        pytest.skip("needs QuPath: set PAQUO_QUPATH_DIR to a QuPath installation")
    pytest.importorskip("paquo")
    from paquo.projects import QuPathProject

    return QuPathProject


@pytest.fixture
def project(qupath: Any, tmp_path: Path) -> Path:
    """A one-image project holding a user's annotation, saved by QuPath."""
    slide = write_pyramid_tiff(tmp_path / "a.tif", render_he(800, 1000, seed=3), 1.0)
    qp = make_qpproj(tmp_path / "proj", [QpImage(slide, mpp=1.0)])
    with qupath(qp, mode="r+") as p:
        p.images[0].hierarchy.add_annotation(shapely.box(200, 150, 800, 650))
    return qp


def _saved(qupath: Any, qp: Path) -> tuple[list[Any], dict[str, str]]:
    """(objects as (java class name, id, parent id), entry metadata) of the saved project."""
    with qupath(qp, mode="r") as p:
        entry = p.images[0]
        h = entry.hierarchy.java_object
        objs = [
            (str(o.getClass().getSimpleName()), str(o.getID()), str(o.getParent().getID()))
            for o in h.getFlattenedObjectList(None)
            if not o.isRootObject()
        ]
        root = str(h.getRootObject().getID())
        return [(c, i, None if par == root else par) for c, i, par in objs], dict(entry.metadata)


def test_objects_in_and_out_of_a_real_project(qupath: Any, project: Path) -> None:
    proj = PaquoProject(project)
    (im,) = proj.images()
    (user,) = proj.annotations(im)
    assert user.id and not is_stimage_id(user.id) and user.geometry.bounds == (200, 150, 800, 650)
    assert proj.count_stimage_objects(im) == 0
    tiles = list(tile_features(np.array([[200, 150, 200, 200], [400, 150, 200, 200]]), None))
    cells = list(cell_features([shapely.Point(300, 300).buffer(5)], None, ["Immune"], None))
    region = annotation_feature(shapely.box(0, 0, 100, 100), name="STImage region", locked=True)
    more = list(tile_features(np.array([[0, 0, 50, 50]]), None))
    n = proj.replace_objects(im, [ObjectGroup(user.id, tiles + cells), ObjectGroup(region, more)])
    assert n == 5 and proj.count_stimage_objects(im) == 5
    proj.set_metadata(im, {"stimage.model": "tiny sha256:0123"})
    proj.save(im)

    objs, md = _saved(qupath, project)
    assert md["stimage.model"] == "tiny sha256:0123"
    by_id = {i: (c, parent) for c, i, parent in objs}
    assert by_id[user.id] == ("PathAnnotationObject", None)
    for f in tiles:
        assert by_id[f["id"]] == ("PathTileObject", user.id)
    assert by_id[cells[0]["id"]] == ("PathCellObject", user.id)
    assert by_id[region["id"]] == ("PathAnnotationObject", None)
    assert by_id[more[0]["id"]] == ("PathTileObject", region["id"])

    # a second replace removes STImage's objects only
    again = PaquoProject(project)
    (im2,) = again.images()
    assert again.count_stimage_objects(im2) == 5
    again.replace_objects(im2, [ObjectGroup(user.id, tiles[:1])])
    again.save(im2)
    objs, _ = _saved(qupath, project)
    assert sorted(i for _, i, _ in objs) == sorted([user.id, tiles[0]["id"]])


def test_annotate_project_with_qupath(
    qupath: Any, project: Path, bundle: ModelBundle, tmp_path: Path
) -> None:
    predictor = Predictor(bundle, device="cpu")
    res = annotate_project(PaquoProject(project), predictor, work_dir=tmp_path / "w", batch_size=8)
    assert [r.status for r in res] == ["done"] and res[0].tiles > 0
    objs, md = _saved(qupath, project)
    assert md["stimage.model"] == model_id(predictor)
    (user,) = [i for c, i, _ in objs if not is_stimage_id(i)]
    tiles = [(i, parent) for c, i, parent in objs if c == "PathTileObject"]
    assert len(tiles) == res[0].tiles and all(parent == user for _, parent in tiles)
    res2 = annotate_project(PaquoProject(project), predictor, work_dir=tmp_path / "w")
    assert res2[0].status == "skipped"
