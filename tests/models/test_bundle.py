from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from stimage.encoders import create_encoder
from stimage.errors import ConfigError, InputFileNotFoundError, StimageError
from stimage.models import FORMAT_VERSION, ModelBundle, UnknownGeneError, load_bundle
from stimage.training import load_spot_set


def test_bundle_round_trip_predicts_the_same(bundle: ModelBundle, store3, tmp_path: Path) -> None:
    path = bundle.save(tmp_path / "m")
    assert sorted(p.name for p in path.iterdir()) == ["manifest.json", "weights.safetensors"]
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["format_version"] == FORMAT_VERSION
    assert manifest["tiles"]["tile_um"] == 200 and manifest["tiles"]["stain"] == "reinhard"
    assert manifest["stain_target"]["method"] == "reinhard"
    assert manifest["training"]["samples"] == ["S1", "S2"]
    assert manifest["components"][0]["encoder"]["name"] == "test_tiny_cnn"
    loaded = load_bundle(path)
    spots = load_spot_set(
        store3,
        [create_encoder("test_tiny_cnn", random_init=True, device="cpu")],
        ["S3"],
        context=bundle.context,
    )
    f = {"test_tiny_cnn": spots.features["test_tiny_cnn"]["S3"]}
    a, b = bundle.predict_features(f), loaded.predict_features(f)
    assert manifest["components"][0]["depth"] is True
    assert a.log_depth is not None and b.log_depth is not None
    np.testing.assert_allclose(a.log_depth, b.log_depth, rtol=1e-5)
    ens, back = bundle.components[0].ensemble, loaded.components[0].ensemble
    np.testing.assert_array_equal(ens.members[0].l2, back.members[0].l2)  # per-gene penalties
    np.testing.assert_allclose(a.mean, b.mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(a.epistemic_var, b.epistemic_var, rtol=1e-3, atol=1e-7)
    np.testing.assert_allclose(bundle.predict_high(f), loaded.predict_high(f), rtol=1e-4, atol=1e-5)


def test_saving_refuses_to_overwrite(bundle: ModelBundle, tmp_path: Path) -> None:
    bundle.save(tmp_path / "m")
    with pytest.raises(ConfigError, match="--overwrite"):
        bundle.save(tmp_path / "m")
    bundle.save(tmp_path / "m", overwrite=True)


def test_newer_format_damaged_weights_and_missing_files(
    bundle: ModelBundle, tmp_path: Path
) -> None:
    path = bundle.save(tmp_path / "m")
    mp = path / "manifest.json"
    manifest = json.loads(mp.read_text())
    mp.write_text(json.dumps({**manifest, "format_version": FORMAT_VERSION + 1}))
    with pytest.raises(ConfigError, match="newer than this stimage"):
        load_bundle(path)
    mp.write_text(json.dumps({**manifest, "genes": []}))
    with pytest.raises(ConfigError, match="invalid at genes"):
        load_bundle(path)
    mp.write_text(json.dumps(manifest))
    w = path / "weights.safetensors"
    w.write_bytes(w.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(StimageError, match="damaged"):
        load_bundle(path)
    with pytest.raises(InputFileNotFoundError, match="stimage train"):
        load_bundle(tmp_path / "nothing")


def test_unknown_genes(bundle: ModelBundle) -> None:
    assert bundle.check_genes(None) == bundle.genes
    with pytest.raises(UnknownGeneError, match="NOPE1"):
        bundle.check_genes(["NOPE1", bundle.genes[0]])


def test_finetuned_encoder_travels_in_the_bundle(store3, tmp_path: Path) -> None:
    import torch

    from stimage.models import NBEnsembleConfig, Predictor
    from stimage.training import FinetuneConfig, TrainConfig, finetune_model

    cfg = TrainConfig(
        encoders=("test_tiny_cnn",), gene_sets=("mean250",), ensemble=NBEnsembleConfig(members=1)
    )
    seen = []
    b = finetune_model(
        store3,
        cfg,
        FinetuneConfig(epochs=2, batch_size=16, lr=1e-2),
        ["S1", "S2"],
        progress=lambda k, d, t: seen.append(d),
    )
    assert b.training["mode"] == "finetune" and b.training["validation_sample"] == "S2"
    assert np.isfinite(b.training["best_validation_nll"]) and seen
    path = b.save(tmp_path / "ft")
    pred = Predictor(path, device="cpu")
    # The encoder in the predictor is the fine-tuned one, not a fresh random network.
    fresh = create_encoder("test_tiny_cnn", random_init=True, device="cpu")
    k = next(iter(b.encoder_states[0]))
    torch.testing.assert_close(
        pred.encoders["test_tiny_cnn"].model.state_dict()[k], b.encoder_states[0][k]
    )
    assert not torch.equal(
        fresh.model.state_dict()["conv_stem.weight"],
        pred.encoders["test_tiny_cnn"].model.state_dict()["conv_stem.weight"],
    )
    tiles = np.asarray(store3.tiles("S3")[:4])
    out = pred.predict_tiles(tiles)
    assert out.mean.shape == (4, len(b.genes)) and np.isfinite(out.mean).all()


def test_hidden_layer_bundle_round_trip(store3, tmp_path: Path) -> None:
    from dataclasses import replace

    from conftest import FAST
    from stimage.models import NBMLP
    from stimage.training import train_model

    cfg = replace(FAST, ensemble=replace(FAST.ensemble, hidden=16))
    bundle = train_model(store3, cfg, ["S1", "S2"])
    path = bundle.save(tmp_path / "mlp")
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["components"][0]["hidden"] == 16
    loaded = load_bundle(path)
    assert all(isinstance(m, NBMLP) for m in loaded.components[0].ensemble.members)
    spots = load_spot_set(
        store3,
        [create_encoder("test_tiny_cnn", random_init=True, device="cpu")],
        ["S3"],
        context=bundle.context,
    )
    f = {"test_tiny_cnn": spots.features["test_tiny_cnn"]["S3"]}
    a, b = bundle.predict_features(f), loaded.predict_features(f)
    np.testing.assert_allclose(a.mean, b.mean, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(a.epistemic_var, b.epistemic_var, rtol=1e-2, atol=1e-6)


def test_trained_bundles_carry_held_out_accuracy_per_gene(bundle, tmp_path) -> None:
    from stimage.models import load_bundle

    m = bundle.metrics
    assert set(m["genes"]) == set(bundle.genes)
    assert m["held_out"]["sections"] and 0.0 < m["held_out"]["coverage"] <= 1.0
    one = next(iter(m["genes"].values()))
    assert {"pcc", "coverage", "coverage_uncalibrated", "theta_scale"} <= set(one)
    back = load_bundle(bundle.save(tmp_path / "b"))
    assert back.metrics["genes"] == m["genes"]
    members = back.components[0].ensemble.members
    assert all(mm.theta_scale is not None for mm in members)


def test_one_section_is_split_into_spatial_blocks_for_held_out_fits(store3, tmp_path: Path) -> None:
    """Trained on one section, the penalty and intervals are chosen on its spatial blocks."""
    from conftest import FAST
    from stimage.training import train_model
    from stimage.training._data import SPATIAL_BLOCKS

    enc = create_encoder("test_tiny_cnn", random_init=True, device="cpu")
    spots = load_spot_set(store3, [enc], ["S1", "S2"])
    two = spots.cv_groups(["S1", "S2"])
    assert set(two) == {"S1", "S2"}  # two sections: the sections themselves
    one = spots.cv_groups(["S1"])
    names, sizes = np.unique(one, return_counts=True)
    assert list(names) == [f"S1/block{k}" for k in range(SPATIAL_BLOCKS)]
    assert sizes.min() >= len(one) // SPATIAL_BLOCKS - 2  # quadrants at the medians
    xy = np.asarray(spots.adatas["S1"].obsm["spatial"])
    for k in range(SPATIAL_BLOCKS):  # each block is one contiguous quadrant
        right, low = xy[one == f"S1/block{k}"].T
        assert len(set(right > np.median(xy[:, 0]))) == 1 == len(set(low > np.median(xy[:, 1])))
    bundle = train_model(store3, FAST, ["S1"])
    held = bundle.components[0].ensemble.held_out
    assert held is not None and held.sections == [f"S1/block{k}" for k in range(SPATIAL_BLOCKS)]
    assert np.isfinite(held.coverage).any() and (held.theta_scale > 0).all()
    assert "four spatial blocks" in bundle.metrics["held_out"]["scheme"]
    from click.testing import CliRunner

    from stimage.cli import cli

    r = CliRunner().invoke(cli, ["models", "show", str(bundle.save(tmp_path / "one"))])
    assert r.exit_code == 0, r.output
    assert "4 spatial blocks of its one section left out in turn" in r.output
