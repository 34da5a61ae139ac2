from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from _synth import make_legacy_st, render_he, write_pyramid_tiff
from stimage.cli import cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("clidata")
    make_legacy_st(root, "S1", "P1", seed=31)
    make_legacy_st(root, "S2", "P2", seed=32)
    return root


def run(*args: str):  # type: ignore[no-untyped-def]
    r = CliRunner().invoke(cli, ["-q", *args])
    return r


def test_prepare_train_predict_evaluate(data: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    assert (
        run(
            "prepare", str(data), "--out", str(store), "--tile-px", "64", "--stain", "macenko"
        ).exit_code
        == 0
    )
    model = tmp_path / "model"
    r = run(
        "train",
        str(store),
        "--out",
        str(model),
        "--encoder",
        "test_tiny_cnn",
        "--members",
        "2",
        "--pca",
        "16",
        "--gene-sets",
        "mean250",
        "--samples",
        "S1",
    )
    assert r.exit_code == 0, r.output
    assert "model:" in r.stdout
    manifest = json.loads((model / "manifest.json").read_text())
    assert manifest["training"]["samples"] == ["S1"] and manifest["tiles"]["stain"] == "macenko"
    r = run("train", str(store), "--out", str(model), "--encoder", "test_tiny_cnn")
    assert r.exit_code == 2 and "--overwrite" in r.output
    # Predict spots of a dataset, then a slide without spots.
    out = tmp_path / "pred"
    genes = manifest["genes"][:3]
    r = run(
        "predict", str(data), "--model", str(model), "--out", str(out), "--genes", ",".join(genes)
    )
    assert r.exit_code == 0, r.output
    df = pd.read_csv(out / "S2.csv", index_col=0)
    assert (
        f"{genes[0]}: mean" in df
        and f"{genes[0]}: epistemic sd" in df
        and f"{genes[2]}: 90% upper" in df
    )
    assert (out / "S2.h5ad").exists()
    r = run("predict", str(data), "--model", str(model), "--out", str(out))
    assert "already predicted" in r.stdout
    # Sections of a dataset picked without a manifest.
    one = tmp_path / "one"
    r = run("predict", str(data), "--model", str(model), "--out", str(one), "--samples", "S2")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in one.glob("*.h5ad")) == ["S2.h5ad"]
    slide = write_pyramid_tiff(tmp_path / "slide.tif", render_he(600, 800, seed=2), mpp=2.0)
    r = run("predict", str(slide), "--model", str(model), "--out", str(out))
    assert r.exit_code == 0, r.output
    assert len(pd.read_csv(out / "slide.csv")) > 5
    r = run(
        "predict", str(slide), "--model", str(model), "--out", str(out), "--genes", "NOT_A_GENE"
    )
    assert r.exit_code == 2 and "does not predict ['NOT_A_GENE']" in r.stderr
    # Evaluate: leave-one-section-out over both sections.
    rep = tmp_path / "report"
    r = run(
        "evaluate",
        str(store),
        "--out",
        str(rep),
        "--encoder",
        "test_tiny_cnn",
        "--members",
        "2",
        "--gene-sets",
        "mean250",
        "--methods",
        "mean,ridge,nb",
    )
    assert r.exit_code == 0, r.output
    summary = json.loads((rep / "summary.json").read_text())
    assert {row["method"] for row in summary["summary"]} == {"mean", "ridge", "nb"}
    for f in (
        "genes.csv",
        "coverage.csv",
        "pcc_mean250.png",
        "calibration.png",
        "maps_S1.png",
        "maps_S2.png",
    ):
        assert (rep / f).exists(), f


def test_model_errors_are_one_line(data: Path, tmp_path: Path) -> None:
    r = run(
        "predict", str(data), "--model", str(tmp_path / "missing"), "--out", str(tmp_path / "o")
    )
    assert r.exit_code == 2 and "not a model bundle" in r.stderr
    r = run("train", str(tmp_path / "nowhere"), "--out", str(tmp_path / "m"))
    assert r.exit_code == 2 and "no such dataset" in r.stderr
    r = run("train", str(data), "--out", str(tmp_path / "m"), "--encoder", "uni")
    assert r.exit_code == 2 and "pytorch_model.bin" in r.stderr


def test_models_show_marks_unreliable_genes(bundle, tmp_path: Path) -> None:
    from stimage.models import RELIABLE_PCC

    folder = bundle.save(tmp_path / "m")
    r = run("models", "show", str(folder), "--genes")
    assert r.exit_code == 0, r.output
    assert "held-out per gene" in r.stdout and "before calibration" in r.stdout
    assert "spatial context: none (each tile alone)" in r.stdout  # the tiny model has none
    r_default = run("models", "show")
    assert "spatial context: mean features of the neighbouring tiles within 300, 500 µm" in (
        r_default.stdout
    )
    bad = bundle.unreliable_genes()
    assert f"unreliable genes (held-out PCC under {RELIABLE_PCC:g}): {len(bad)} of" in r.stdout
    for g, rel in bundle.gene_reliability().items():
        line = next(ln for ln in r.stdout.splitlines() if ln.strip().startswith(g + " "))
        assert ("UNRELIABLE" in line) == (rel["reliable"] is False), line
