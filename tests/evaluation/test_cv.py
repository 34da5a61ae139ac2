from __future__ import annotations

import numpy as np
import pytest

from _synth import make_legacy_st
from stimage.data import load_dataset
from stimage.encoders import create_encoder
from stimage.errors import ConfigError
from stimage.evaluation import cross_validate, leave_one_patient_out, leave_one_section_out
from stimage.models import NBEnsembleConfig, NBGLMConfig
from stimage.tiles import TileSettings, TileStore, prepare_dataset
from stimage.training import TrainConfig, load_spot_set

FAST = TrainConfig(
    encoders=("test_tiny_cnn",),
    gene_sets=("mean250", "hvg50"),
    ensemble=NBEnsembleConfig(
        members=2, pca_dim=16, glm=NBGLMConfig(l2=(10.0, 1000.0), max_iter=60)
    ),
    context=None,
)


@pytest.fixture(scope="module")
def spots(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("cv")
    make_legacy_st(root, "S1", "P1", seed=21)
    make_legacy_st(root, "S2", "P1", seed=22)
    make_legacy_st(root, "S3", "P2", seed=23)
    out = tmp_path_factory.mktemp("cvstore")
    prepare_dataset(load_dataset(root), out, TileSettings(tile_px=64, stain=None))
    return load_spot_set(TileStore(out), [create_encoder("test_tiny_cnn", device="cpu")])


def test_folds() -> None:
    assert leave_one_section_out(["a", "b", "c"])[1] == (["a", "c"], ["b"])
    assert leave_one_patient_out({"a": "P1", "b": "P1", "c": "P2"}) == [
        (["c"], ["a", "b"]),
        (["a", "b"], ["c"]),
    ]
    with pytest.raises(ConfigError, match="at least 2 sections"):
        leave_one_section_out(["a"])
    with pytest.raises(ConfigError, match="2 patients"):
        leave_one_patient_out({"a": "P1", "b": "P1"})


def test_cross_validation_scores_every_method_on_held_out_sections(spots) -> None:
    folds = leave_one_section_out(spots.sample_ids)
    res = cross_validate(spots, folds, FAST)
    g = res.genes
    assert set(g["method"]) == {"mean", "paper", "ridge", "ridge_cv", "ridge_cv_tile", "nb"}
    assert set(g["section"]) == {"S1", "S2", "S3"}
    # Without spatial context the own-tile ridge is the ridge.
    by = g.set_index(["section", "gene", "method"])["pcc"].unstack()
    np.testing.assert_allclose(by["ridge_cv_tile"], by["ridge_cv"])
    # Gene sets come from each fold's training sections only.
    for _fold, sets in res.gene_sets.items():
        assert set(sets) == {
            "mean250",
            "hvg50",
            "hvg1000",
            "paper_panel",
            "paper_text_panel",
        } & set(sets)
    nb = g[g["method"] == "nb"]
    for col in (
        "pcc",
        "spearman",
        "moran_pred",
        "moran_truth",
        "moran_bv",
        "iou",
        "coverage_90",
        "epistemic_error_spearman",
        "auc",
    ):
        assert col in nb and np.isfinite(nb[col]).any(), col
    # Training-mean predictions are constant: their PCC is undefined.
    assert g[g["method"] == "mean"]["pcc"].isna().all()
    s = res.summary()
    nb_pcc = s[(s.method == "nb") & (s.gene_set == "mean250")]["mean_pcc"].item()
    assert nb_pcc > 0.1  # the synthetic genes follow nuclei density, which the image shows
    cov = res.coverage.groupby("level")["observed"].mean()
    assert 0.75 <= cov[0.9] <= 1.0
    assert set(res.predictions["S3"]) >= {
        "truth",
        "genes",
        "nb",
        "ridge",
        "epistemic_sd",
        "aleatoric_sd",
    }


def test_unknown_method(spots) -> None:
    with pytest.raises(ConfigError, match="unknown method"):
        cross_validate(spots, leave_one_section_out(spots.sample_ids), FAST, ("nb", "magic"))


def test_own_tile_ridge_leaves_the_context_out(spots) -> None:
    import dataclasses

    from stimage.constants import Key
    from stimage.models import SpatialContext

    ctx = SpatialContext((300.0, 500.0))
    feats = {}
    for enc, by in spots.features.items():
        feats[enc] = {}
        for s, f in by.items():
            a = spots.adatas[s]
            xy = np.asarray(a.obsm[Key.SPATIAL]) * float(a.uns[Key.UNS][Key.MPP])
            feats[enc][s] = ctx.augment(f, xy)[0]
    with_ctx = dataclasses.replace(spots, features=feats, context=ctx)
    folds = leave_one_section_out(spots.sample_ids)
    methods = ("ridge_cv", "ridge_cv_tile")
    plain = cross_validate(spots, folds, FAST, methods, keep_predictions=False).genes
    cfg = dataclasses.replace(FAST, context=ctx)
    ctxed = cross_validate(with_ctx, folds, cfg, methods, keep_predictions=False).genes
    key = ["section", "gene", "method"]
    a = plain.set_index(key)["pcc"].unstack()
    b = ctxed.set_index(key)["pcc"].unstack()
    np.testing.assert_allclose(b["ridge_cv_tile"], a["ridge_cv"], rtol=1e-6)
    assert not np.allclose(b["ridge_cv"], a["ridge_cv"])
