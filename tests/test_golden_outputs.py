"""Golden outputs: every format STImage writes, from fixed inputs, compared with stored files.

The inputs are made here (known prediction arrays, a drawn nucleus), so the outputs are fully
determined: a difference is a change of format (a renamed measurement, another column order,
another rounding, a missing layer) that users' scripts and QuPath projects would feel. The
protocol's replies have golden fixtures of their own (tests/fixtures/protocol, checked against
a live server by tests/server/test_protocol_fixtures.py).

After an intended change, regenerate with ``STIMAGE_UPDATE_GOLDEN=1`` and review the diff of
tests/fixtures/golden in the commit.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

GOLDEN = Path(__file__).resolve().parent / "fixtures" / "golden"
UPDATE = os.environ.get("STIMAGE_UPDATE_GOLDEN") == "1"


def _check(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return
    assert path.exists(), f"no golden file {path}; run with STIMAGE_UPDATE_GOLDEN=1"
    assert text == path.read_text(encoding="utf-8"), (
        f"{name} differs from its golden file; if the change is intended, regenerate with "
        "STIMAGE_UPDATE_GOLDEN=1 and say why in the commit"
    )


def _rounded(value: Any) -> Any:
    """Floats to 6 significant digits: the last bits of float32 maths differ between CPUs."""
    if isinstance(value, float):
        return float(f"{value:.6g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def _without_ids(geojson: dict[str, Any]) -> str:
    """The GeoJSON with object ids (fresh UUIDs on every run) replaced by their marker."""
    from stimage.qupath import is_stimage_id

    for f in geojson["features"]:
        if "id" in f:
            assert is_stimage_id(f["id"]), f["id"]
            f["id"] = "<stimage id>"
    return json.dumps(_rounded(geojson), indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def _predictions() -> Any:
    from stimage.models import GENE_OUTPUTS, TilePredictions

    genes = ["COX6C", "ERBB2", "CD74"]
    base = np.arange(12, dtype=np.float64).reshape(4, 3) / 7.0
    values = {o.key: base + k for k, o in enumerate(GENE_OUTPUTS)}
    values["p_high"][:, 2] = np.nan  # CD74 has no classifier
    values["novelty"] = np.array([0.5, 1.25, 4.0, np.nan])  # the last: a model without stats
    values["outside_training"] = np.array([0.0, 0.0, 1.0, 0.0])
    return TilePredictions(genes, 0.9, values)


def test_tile_geojson() -> None:
    from stimage.qupath import feature_collection, tile_features

    pred = _predictions()
    boxes = np.array(
        [[0, 0, 290, 290], [290, 0, 290, 290], [0, 290, 290, 290], [290, 290, 290, 290]]
    )
    feats = tile_features(boxes, pred.measurements(), names=[f"tile_{i}" for i in range(4)])
    _check("tiles.geojson", _without_ids(feature_collection(feats)))


def test_prediction_csv_and_anndata_schema(tmp_path: Path) -> None:
    from stimage.constants import Key
    from stimage.models import to_anndata
    from stimage.pipelines import write_predictions

    pred = _predictions()
    obs = pd.DataFrame(
        {Key.TISSUE_COVERAGE: [1.0, 0.9, 0.75, 0.5], Key.KEPT: [True, True, True, False]},
        index=[f"spot_{i}" for i in range(4)],
    )
    xy = np.array([[10.0, 20.0], [30.0, 20.0], [10.0, 40.0], [30.0, 40.0]])
    uns = {"model": "golden", "interval_level": 0.9, "scale": "log1p(counts per 10k)"}
    a = to_anndata(pred, obs, xy, uns)
    h5, csv = write_predictions(a, tmp_path, "S1")
    _check("predictions.csv", csv.read_text())
    import anndata as ad

    back = ad.read_h5ad(h5)
    schema = {
        "X": str(back.X.dtype),
        "var_names": list(back.var_names),
        "obs": {c: str(back.obs[c].dtype) for c in back.obs.columns},
        "layers": {k: str(v.dtype) for k, v in sorted(back.layers.items())},
        "obsm": sorted(back.obsm),
        "uns": sorted(back.uns[Key.UNS]),
    }
    _check("predictions_h5ad_schema.json", json.dumps(schema, indent=1) + "\n")


def test_cell_geojson() -> None:
    from stimage.explain import measure_nuclei
    from stimage.models import Cells
    from stimage.qupath import feature_collection

    rgb = np.full((40, 40, 3), 235, np.uint8)
    labels = np.zeros((40, 40), np.int32)
    rgb[5:15, 5:13] = (90, 60, 150)
    labels[5:15, 5:13] = 1
    rgb[22:34, 20:36] = (120, 80, 160)
    labels[22:34, 20:36] = 2
    nuclei = measure_nuclei(labels, rgb, 0.5, origin=(1000.0, 2000.0))
    types = pd.DataFrame(
        {
            "class": ["immune", "epithelial"],
            "P(immune)": [0.8, 0.1],
            "P(epithelial)": [0.2, 0.9],
            "entropy": [0.5, 0.33],
        }
    )
    cells = Cells(nuclei, types, "golden cell model")
    _check("cells.geojson", _without_ids(feature_collection(cells.features())))


def test_explanation_geojson(tmp_path: Path) -> None:
    from stimage.explain import NucleusExplanation, measure_nuclei
    from stimage.pipelines import TileExplanation, write_explanation_geojson

    rgb = np.full((30, 30, 3), 235, np.uint8)
    labels = np.zeros((30, 30), np.int32)
    labels[4:12, 4:12] = 1
    labels[16:26, 14:24] = 2
    rgb[labels > 0] = (90, 60, 150)
    nuclei = measure_nuclei(labels, rgb, 0.5, origin=(500.0, 600.0))
    exp = NucleusExplanation(
        "lime",
        ["VEGFA", "ERBB2"],
        np.array([[0.25, -0.5], [-0.125, 0.75]]),
        np.array([3.5, 1.25]),
        np.array([0.0, 0.0]),
        np.array([3.0, 1.0]),
        np.array([0.5, 0.25]),
        100,
        1.0,
    )
    result = TileExplanation((500.0, 600.0, 30.0, 30.0), nuclei, exp, rgb, labels)
    out = write_explanation_geojson([result], tmp_path / "why.geojson")
    _check("explanation.geojson", _without_ids(json.loads(out.read_text())))


@pytest.mark.skipif(UPDATE, reason="regenerating")
def test_every_golden_file_is_checked() -> None:
    names = {p.name for p in GOLDEN.iterdir()}
    assert names == {
        "tiles.geojson",
        "predictions.csv",
        "predictions_h5ad_schema.json",
        "cells.geojson",
        "explanation.geojson",
    }
