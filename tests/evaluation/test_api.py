"""The room's public names and the private paths other code imports keep working."""

from __future__ import annotations

import importlib

import pytest

import stimage.evaluation as ev

# Private modules other rooms, scripts or older code import names from.
PRIVATE = {
    "stimage.evaluation._metrics": ["coverage_curve", "nb_quantiles", "pearson_per_gene"],
    "stimage.evaluation._genesets": ["PAPER_PANEL", "gene_sets", "top_hvg", "top_mean"],
    "stimage.evaluation._celltypes": ["composition_metrics", "spot_composition"],
    "stimage.evaluation._plots": ["calibration_plot", "expression_maps", "pcc_boxplot"],
}


@pytest.mark.parametrize("name", ev.__all__)
def test_public_names_resolve(name: str) -> None:
    assert getattr(ev, name) is not None


@pytest.mark.parametrize("module", sorted(PRIVATE))
def test_private_paths_still_import(module: str) -> None:
    mod = importlib.import_module(module)
    for name in PRIVATE[module]:
        assert getattr(mod, name) is getattr(ev, name)


def test_metrics_module_gathers_every_metric() -> None:
    from stimage.evaluation import _metrics

    assert set(_metrics.__all__) <= set(dir(_metrics))
    assert {n for n in ev.__all__ if n in _metrics.__all__} == set(_metrics.__all__) - {
        "QuantileFn"
    }
