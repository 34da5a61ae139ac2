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


@pytest.mark.slow
def test_train_cells_from_qupath_labels_then_use_it(crop_image: Path, tmp_path: Path) -> None:
    """Label nuclei by size in a QuPath-style export, train, and the model learns the rule."""
    import numpy as np

    cells = tmp_path / "cells.geojson"
    code, _, stderr = run(
        "cells",
        str(crop_image),
        "--box",
        "1000,1000,500,500",
        "--mpp",
        "0.69",
        "--no-types",
        "--out",
        str(cells),
    )
    assert code == 0, stderr
    doc = json.loads(cells.read_text())
    for f in doc["features"]:
        big = f["properties"]["measurements"]["Nucleus: Area µm^2"] > 35
        f["properties"]["classification"] = {
            "name": "Tumor" if big else "Lymphocyte",
            "color": [200, 0, 0],
        }
    labels = tmp_path / "labels.geojson"
    labels.write_text(json.dumps(doc))
    model = tmp_path / "model"
    # an unmapped label is named, with the fix
    code, _, stderr = run(
        "train-cells",
        str(crop_image),
        "--labels",
        str(labels),
        "--mpp",
        "0.69",
        "--out",
        str(model),
    )
    assert code == 2 and "Lymphocyte" in stderr and "--map" in stderr
    code, stdout, stderr = run(
        "train-cells",
        str(crop_image),
        "--labels",
        str(labels),
        "--mpp",
        "0.69",
        "--map",
        "Tumor=epithelial",
        "--map",
        "Lymphocyte=immune",
        "--out",
        str(model),
    )
    assert code == 0, stderr
    assert "wrote" in stdout
    out = tmp_path / "typed.geojson"
    code, _, stderr = run(
        "cells",
        str(crop_image),
        "--box",
        "1000,1000,500,500",
        "--mpp",
        "0.69",
        "--model",
        str(model),
        "--out",
        str(out),
    )
    assert code == 0, stderr
    typed = json.loads(out.read_text())["features"]
    area = np.array([f["properties"]["measurements"]["Nucleus: Area µm^2"] for f in typed])
    epi = np.array([f["properties"]["classification"]["name"] == "Epithelial" for f in typed])
    acc = np.mean(epi == (area > 35))
    assert acc > 0.8, acc
