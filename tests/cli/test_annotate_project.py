"""``stimage annotate-project``: a QuPath project batched to GeoJSON files, end to end."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import shapely
from click.testing import CliRunner

from _synth import render_he, write_pyramid_tiff
from qupath._project_helpers import QpImage, make_qpproj, user_annotation
from stimage.cli._main import cli
from stimage.models import ModelBundle
from stimage.qupath import is_stimage_id, read_geojson, validate_geojson

#: The tiny model (trained once per session in tests/conftest.py) makes this module slow.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model_dir(bundle: ModelBundle, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bundle.save(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """Two calibrated slides, one whose file is gone, one with an annotation export beside."""
    slides = tmp_path / "slides"
    slides.mkdir()
    a = write_pyramid_tiff(slides / "A 1.tif", render_he(800, 1000, seed=3), 1.0)
    b = write_pyramid_tiff(slides / "B2.tif", render_he(800, 1000, seed=4), 1.0)
    regions = tmp_path / "regions"
    regions.mkdir()
    roi = user_annotation(shapely.box(250, 200, 650, 600))
    (regions / "B2.geojson").write_text(
        json.dumps({"type": "FeatureCollection", "features": [roi]})
    )
    return make_qpproj(
        tmp_path / "proj",
        [
            QpImage(a, mpp=1.0, annotations=1),
            QpImage(b, mpp=1.0),
            QpImage(slides / "lost.tif", mpp=1.0),
        ],
    )


def _run(*args: object) -> object:
    return CliRunner().invoke(cli, ["-q", "annotate-project", *map(str, args)])


def test_geojson_dir_end_to_end(
    model_dir: Path, bundle: ModelBundle, project: Path, tmp_path: Path
) -> None:
    g0, g1, g2 = bundle.genes[:3]
    out = tmp_path / "out"
    common = ("--model", model_dir, "--geojson-dir", out, "--device", "cpu", "--batch-size", 8)
    regions = ("--regions-dir", tmp_path / "regions", "--genes", f"{g0},{g1}")
    r = _run(project, *common, *regions)
    assert r.exit_code == 2, r.output  # one image failed: reported, the others done
    lines = r.output.splitlines()
    head = next(i for i, ln in enumerate(lines) if ln.startswith("image"))
    rows = {ln.split()[0]: ln for ln in lines[head + 1 : head + 4]}
    assert "done" in rows["A"] and "tissue" in rows["A"]
    assert "1 annotation(s) in the project need QuPath" in rows["A"]  # none exported for A
    assert "done" in rows["B2.tif"] and "1 annotation(s)" in rows["B2.tif"]
    assert "failed" in rows["lost.tif"] and "missing" in rows["lost.tif"]
    assert "2 done, 0 skipped, 1 failed" in r.output
    assert "error: 1 image(s) failed" in r.output

    fa, fb = out / "A 1.geojson", out / "B2.geojson"
    assert validate_geojson(fa) > 1 and validate_geojson(fb) > 0
    objs_a = read_geojson(fa)
    assert objs_a[0].object_type == "annotation" and objs_a[0].name == "STImage region"
    assert all(is_stimage_id(o.id) for o in objs_a)
    tiles_b = [o for o in read_geojson(fb) if o.object_type == "tile"]
    assert tiles_b and all(o.geometry.intersects(shapely.box(250, 200, 650, 600)) for o in tiles_b)
    assert {k.split(":")[0] for k in tiles_b[0].measurements} == {g0, g1, "Tile"}
    index = json.loads((out / "stimage_project.json").read_text())
    assert set(index["images"]) == {"1", "2"}
    assert index["images"]["1"]["metadata"]["stimage.model"].startswith("tiny sha256:")
    assert not (out / ".stimage-jobs").exists()
    assert (out / "run_metadata.json").exists()
    # the project itself is never written
    assert json.loads(project.read_text())["images"][0]["metadata"] == {}

    mtime = fa.stat().st_mtime_ns
    r2 = _run(project, *common, *regions, "-i", "A*", "-i", "id:2")
    assert r2.exit_code == 0, r2.output
    assert "0 done, 2 skipped, 0 failed" in r2.output and "already done" in r2.output
    assert fa.stat().st_mtime_ns == mtime

    r3 = _run(project, *common, "-i", "A 1.tif", "--genes", g2, "--overwrite")
    assert r3.exit_code == 0, r3.output
    tiles_a = [o for o in read_geojson(fa) if o.object_type == "tile"]
    assert {k.split(":")[0] for o in tiles_a for k in o.measurements} == {g2, "Tile"}


def test_dry_run_and_bad_arguments(model_dir: Path, project: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = _run(project, "--model", model_dir, "--geojson-dir", out, "--dry-run", "-i", "B2.tif")
    assert r.exit_code == 0, r.output
    assert "to do" in r.output and "0 done, 0 skipped, 0 failed, 1 to do" in r.output
    assert not out.exists() or not any(out.glob("*.geojson"))

    r = _run(project, "--model", model_dir, "--geojson-dir", out, "-i", "nope*")
    assert r.exit_code == 2 and r.output.count("\n") == 1
    assert "'nope*'" in r.output and "'B2.tif' (id 2)" in r.output

    r = _run(project, "--model", model_dir, "--regions-dir", tmp_path)
    assert r.exit_code == 2 and "--geojson-dir" in r.output

    r = _run(project, "--model", model_dir, "--geojson-dir", out, "--tissue", "--cells")
    assert r.exit_code == 2 and "--cells" in r.output

    r = _run(tmp_path / "no_project", "--model", model_dir, "--geojson-dir", out)
    assert r.exit_code == 2 and "project.qpproj" in r.output


def test_into_the_project_needs_qupath(model_dir: Path, project: Path) -> None:
    if os.environ.get("PAQUO_QUPATH_DIR"):
        pytest.skip("a QuPath installation is configured")
    r = _run(project, "--model", model_dir)
    assert r.exit_code == 2, r.output
    assert r.output.count("\n") == 1 and "PAQUO_QUPATH_DIR" in r.output
    assert "--geojson-dir" in r.output
