from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

from stimage.errors import InvalidSampleError, SpotMismatchError
from stimage.evaluation._metrics import coverage_curve, nb_quantiles
from stimage.evaluation._plots import calibration_plot, expression_maps, pcc_boxplot

PNG = b"\x89PNG\r\n\x1a\n"


def is_png(p: Path) -> bool:
    return p.is_file() and p.read_bytes()[:8] == PNG


def test_expression_maps_png_axes_and_shared_scales(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    r, c = np.meshgrid(np.arange(8), np.arange(10), indexing="ij")
    xy = np.stack([20 + 10 * c.ravel(), 30 + 10 * r.ravel()], axis=1).astype(float)
    he = np.full((150, 160, 3), 235, np.uint8)
    truth = rng.poisson(5, (80, 2)).astype(float)
    values = {
        "truth": truth,
        "prediction": truth * 2 + 10,
        "epistemic sd": rng.random((80, 2)),
        "aleatoric sd": rng.random((80, 2)) + 3,
    }
    backend = matplotlib.get_backend()
    out = tmp_path / "maps" / "maps.png"
    fig = expression_maps(
        he, xy, values, ["ERBB2", "CD74"], um_per_px=20.0, panel_size=1.5, path=out, dpi=50
    )
    assert is_png(out)
    assert len(fig.axes) == 2 * 2 * 4  # maps and their colour bars
    assert matplotlib.get_backend() == backend
    maps = [ax for ax in fig.axes if ax.collections]
    norms = [(m.collections[0].norm.vmin, m.collections[0].norm.vmax) for m in maps[:4]]
    assert norms[0] == norms[1]  # truth and prediction share the scale
    assert norms[2] != norms[0] and norms[3] != norms[2]
    assert maps[0].get_title() == "truth" and maps[0].get_ylabel() == "ERBB2"
    assert maps[4].get_ylabel() == "CD74"


def test_expression_maps_checks_inputs() -> None:
    xy = np.zeros((4, 2))
    he = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(SpotMismatchError):
        expression_maps(he, xy, {"truth": np.zeros(5)})
    with pytest.raises(InvalidSampleError):
        expression_maps(he, xy, {"truth": np.zeros((4, 2))}, genes=["a"])
    with pytest.raises(InvalidSampleError):
        expression_maps(he, xy, {})


def test_pcc_boxplot_one_box_per_method_and_section(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    rows = [
        {
            "section": s,
            "method": m,
            "gene": f"g{k}",
            "pcc": rng.uniform(-0.2, 0.7),
            "gene_set": "hvg50",
        }
        for s in ("A1", "B1", "C1")
        for m in ("stimage", "ridge")
        for k in range(20)
    ]
    rows.append(
        {"section": "A1", "method": "ridge", "gene": "flat", "pcc": np.nan, "gene_set": "hvg50"}
    )
    out = tmp_path / "pcc.png"
    fig = pcc_boxplot(pd.DataFrame(rows), path=out, dpi=50)
    assert is_png(out)
    (ax,) = fig.axes
    assert "hvg50" in ax.get_title()
    assert len(ax.patches) == 6
    assert [t.get_text() for t in ax.get_xticklabels()] == ["A1", "B1", "C1"]
    with pytest.raises(InvalidSampleError, match="pcc"):
        pcc_boxplot(pd.DataFrame({"section": ["A"], "method": ["m"], "gene": ["g"]}))


def test_calibration_plot_of_coverage_tables(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    mu = rng.uniform(20, 60, (500, 3))
    y = rng.negative_binomial(5.0, 5.0 / (5.0 + mu))
    tables = {
        "calibrated": coverage_curve(y, nb_quantiles(mu, 5.0)),
        "overconfident": coverage_curve(y, nb_quantiles(mu, 500.0)),
    }
    out = tmp_path / "calibration.png"
    fig = calibration_plot(tables, path=out, dpi=50)
    assert is_png(out)
    (ax,) = fig.axes
    assert len(ax.lines) == 3  # the diagonal and one curve per model
    assert len(calibration_plot(tables["calibrated"]).axes) == 1
