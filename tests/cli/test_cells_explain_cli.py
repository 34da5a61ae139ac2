"""``stimage cells`` and ``stimage explain`` on the bundled HER2ST crop."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from stimage.cli import cli


def run(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(cli, ["-q", *args], catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


@pytest.fixture(scope="module")
def crop_image() -> Path:
    from stimage.examples import example_path

    (img,) = Path(example_path()).glob("ST-imgs/*/*/*.jpg")
    return img


def test_cells_writes_typed_qupath_cells(crop_image: Path, tmp_path: Path) -> None:
    from stimage.qupath import read_geojson, validate_geojson

    out = tmp_path / "cells.geojson"
    code, stdout, stderr = run(
        "cells", str(crop_image), "--box", "1000,1000,400,400", "--mpp", "0.69", "--out", str(out)
    )
    assert code == 0, stderr
    n = validate_geojson(out)
    assert 50 < n < 2000, n  # 276 x 276 µm of breast tissue
    objs = read_geojson(out)
    assert {o.object_type for o in objs} == {"cell"}
    assert all(o.nucleus is not None and o.is_stimage for o in objs)
    classes = {o.classification for o in objs}
    assert classes <= {"Immune", "Stromal", "Epithelial", "Endothelial"} and classes
    m = objs[0].measurements
    probs = [m[f"{c}: probability"] for c in ("Immune", "Stromal", "Epithelial", "Endothelial")]
    assert sum(probs) == pytest.approx(1.0, abs=1e-4)
    assert 0 <= m["Cell: type entropy"] <= 1 and m["Nucleus: Area µm^2"] > 5
    assert (tmp_path / "cells.csv").read_text().count("\n") == n + 1
    assert f"{n} cells in the region" in stdout
    # refuses to overwrite, says how
    code, _, stderr = run(
        "cells", str(crop_image), "--box", "1000,1000,400,400", "--mpp", "0.69", "--out", str(out)
    )
    assert code == 2 and "--overwrite" in stderr


def test_cells_bad_input_is_one_clear_line(crop_image: Path, tmp_path: Path) -> None:
    out = str(tmp_path / "c.geojson")
    for args, needle in [
        (["--box", "1e6,1e6,10,10"], "outside the image"),
        (["--box", "1,2,3"], "four numbers"),
        ([], "give the region"),
    ]:
        code, _, stderr = run("cells", str(crop_image), "--mpp", "0.69", "--out", out, *args)
        assert code == 2, stderr
        assert needle in stderr and "Traceback" not in stderr
        assert stderr.count("\n") == 1


@pytest.mark.slow
def test_explain_writes_nuclei_scores_overlay_and_geojson(crop_image: Path, tmp_path: Path) -> None:
    from stimage.models import default_model_path

    try:
        default_model_path()
    except FileNotFoundError:
        pytest.skip("no bundled default model")
    from stimage.qupath import validate_geojson

    code, stdout, stderr = run(
        "explain",
        str(crop_image),
        "--tile",
        "1600,1600",
        "--gene",
        "ERBB2",
        "--gene",
        "COX6C",
        "--method",
        "both",
        "--num-samples",
        "40",
        "--mpp",
        "0.69",
        "--out",
        str(tmp_path),
    )
    assert code == 0, stderr
    assert validate_geojson(tmp_path / "explain.geojson") > 5
    doc = json.loads((tmp_path / "explain.geojson").read_text())
    names = set().union(*(f["properties"].get("measurements", {}).keys() for f in doc["features"]))
    assert {"LIME: ERBB2", "Occlusion: COX6C"} <= names
    assert (tmp_path / "explain_lime.png").stat().st_size > 10_000
    assert "spearman" in stdout and "nuclei explained" in stdout
    code, _, stderr = run(
        "explain",
        str(crop_image),
        "--tile",
        "1600,1600",
        "--gene",
        "NOTAGENE",
        "--mpp",
        "0.69",
        "--out",
        str(tmp_path),
    )
    assert code == 2 and "NOTAGENE" in stderr
