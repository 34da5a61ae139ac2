"""What commands leave on disk: all outputs or none, and the same names as the GeoJSON."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner

from stimage.cli import cli
from stimage.errors import StimageError
from stimage.tiles import TileStore

CLASSES = ("Immune", "Stromal", "Epithelial", "Endothelial")


@pytest.fixture(scope="module")
def crop_image() -> Path:
    from stimage.examples import example_path

    (img,) = Path(example_path()).glob("ST-imgs/*/*/*.jpg")
    return img


def _cells(img: Path, out: Path, *extra: str) -> Any:
    box = ["--box", "1000,1000,300,300", "--mpp", "0.69"]
    return CliRunner().invoke(cli, ["-q", "cells", str(img), *box, "-o", str(out), *extra])


def test_cells_csv_names_classes_as_the_geojson(crop_image: Path, tmp_path: Path) -> None:
    out = tmp_path / "cells.geojson"
    r = _cells(crop_image, out)
    assert r.exit_code == 0, r.output
    table = pd.read_csv(tmp_path / "cells.csv", index_col=0)
    feats = json.loads(out.read_text())["features"]
    assert len(table) == len(feats)
    geo_classes = [f["properties"]["classification"]["name"] for f in feats]
    assert set(table["class"]) <= set(CLASSES) and list(table["class"]) == geo_classes
    names = set(feats[0]["properties"]["measurements"])
    typed = [c for c in table.columns if c.endswith(": probability") or c.startswith("Cell:")]
    assert {f"{c}: probability" for c in CLASSES} | {"Cell: type entropy"} == set(typed)
    assert set(typed) <= names
    assert not any(c.startswith("P(") for c in table.columns)


def test_a_failed_cells_run_leaves_nothing_and_reruns(
    crop_image: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import stimage.pipelines

    def broken(*args: object, **kwargs: object) -> None:
        raise StimageError("drawing failed")

    out = tmp_path / "res" / "cells.geojson"
    with monkeypatch.context() as m:
        m.setattr(stimage.pipelines, "plot_cells", broken)
        r = _cells(crop_image, out)
    assert r.exit_code == 2 and "drawing failed" in r.output
    assert sorted(p.name for p in out.parent.iterdir()) == []  # no half result, no temporaries
    r = _cells(crop_image, out)  # no --overwrite needed
    assert r.exit_code == 0, r.output
    written = sorted(p.name for p in out.parent.iterdir())
    assert written == ["cells.csv", "cells.geojson", "cells.png", "run_metadata.json"]
    r = _cells(crop_image, out)
    assert r.exit_code == 2 and "--overwrite" in r.output


def test_a_failed_explain_leaves_no_folder(
    crop_image: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import stimage.cli._common
    import stimage.pipelines

    fake = SimpleNamespace(tile_um=200.0, bundle=SimpleNamespace(path=tmp_path))

    def explain_fails(*args: object, **kwargs: object) -> None:
        raise StimageError("no nuclei in this tile")

    monkeypatch.setattr(stimage.cli._common, "load_predictor", lambda *a, **k: fake)
    monkeypatch.setattr(stimage.pipelines, "explain_tile", explain_fails)
    out = tmp_path / "explained"
    args = ["--mpp", "0.69", "--tile", "900,900", "--gene", "X", "--out", str(out)]
    r = CliRunner().invoke(cli, ["-q", "explain", str(crop_image), *args])
    assert r.exit_code == 2 and "no nuclei" in r.output
    assert not out.exists()


def test_prepare_adds_samples_with_the_stores_settings(legacy_st_two: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    base = ["-q", "prepare", str(legacy_st_two), "--out", str(store)]
    r = CliRunner().invoke(cli, [*base, "--tile-px", "32", "--stain", "none", "--samples", "S1"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, base)  # no tile option: the store's settings, not the defaults
    assert r.exit_code == 0, r.output
    assert "S1: skipped" in r.stdout and "S2: done" in r.stdout
    s = TileStore(store)
    assert s.sample_ids == ["S1", "S2"] and s.settings.tile_px == 32 and s.settings.stain is None
    r = CliRunner().invoke(cli, [*base, "--tile-px", "48", "--samples", "S2"])
    assert r.exit_code == 2 and "other settings" in r.output


def test_predict_samples_is_for_datasets_and_checked_first(
    legacy_st_two: Path, crop_image: Path, tmp_path: Path
) -> None:
    out = str(tmp_path / "o")
    r = CliRunner().invoke(cli, ["predict", str(legacy_st_two), "--samples", "S9", "-o", out])
    assert r.exit_code == 2 and "unknown sample id(s) ['S9']" in r.output
    r = CliRunner().invoke(
        cli, ["predict", str(crop_image), "--mpp", "0.69", "--samples", "S1", "-o", out]
    )
    assert r.exit_code == 2 and "--samples picks sections of a dataset" in r.output
    assert not (tmp_path / "o").exists()
