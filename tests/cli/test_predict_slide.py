"""``stimage predict-slide`` and the resumable slide job behind it."""

from __future__ import annotations

import json
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from _synth import render_he, tiny_slide_model, write_pyramid_tiff
from stimage.cli._main import cli
from stimage.cli.predict_slide import predict_slide as predict_slide_cmd
from stimage.models import Predictor
from stimage.pipelines import SlideJob, SlideJobChangedError, run_slide_job
from stimage.qupath import validate_geojson

if "predict-slide" not in cli.commands:  # until the lead registers it in _main._register()
    cli.add_command(predict_slide_cmd)

MPP = 1.0

#: Trains a tiny model once per module (mostly imports: ~15 s on a busy CPU).
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_slide_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1000 x 800 px H&E-like slide at 1 µm/px: 200 µm tiles on a 5 x 4 grid."""
    d = tmp_path_factory.mktemp("slide")
    return write_pyramid_tiff(d / "slide.tif", render_he(800, 1000, seed=3), MPP)


@pytest.fixture(scope="module")
def predictor(model_dir: Path) -> Predictor:
    return Predictor(model_dir, device="cpu")


def doc_genes(feats: list[dict]) -> set[str]:
    """Genes with a mean measurement in some Feature."""
    return {
        k.split(": ")[0]
        for f in feats
        for k in f["properties"].get("measurements", {})
        if k.endswith(": mean")
    }


def _run(*args: object) -> object:
    return CliRunner().invoke(cli, ["-q", "predict-slide", *map(str, args)])


def test_geojson_h5ad_heatmaps_and_skip(model_dir: Path, slide: Path, tmp_path: Path) -> None:
    out = tmp_path / "res.geojson"
    genes = Predictor(model_dir, device="cpu").bundle.genes
    r = _run(
        slide,
        "--model",
        model_dir,
        "--out",
        out,
        "--batch-size",
        2,
        "--chunk-batches",
        1,
        "--device",
        "cpu",
        "--genes",
        ",".join(genes[:3]),
        "--heatmaps",
        genes[0],
    )
    assert r.exit_code == 0, r.output
    job = SlideJob.open(tmp_path / "res.parts")
    n_tiles = job.state["n_tiles"]
    assert 0 < n_tiles <= 20 and job.n_chunks == -(-n_tiles // 2)
    assert validate_geojson(out) == n_tiles
    doc = json.loads(out.read_text())
    feats = doc["features"]
    meta = doc["stimage"]  # the model, and how far each gene written can be trusted
    assert meta["model_id"].startswith("tiny ") and set(meta["genes"]) <= set(doc_genes(feats))
    assert all({"pcc", "coverage", "reliable"} <= set(v) for v in meta["genes"].values())
    m = feats[0]["properties"]["measurements"]
    for g in genes[:3]:
        for k in ("mean", "aleatoric sd", "epistemic sd"):
            assert f"{g}: {k}" in m
    assert not any(k.startswith(f"{genes[3]}:") for k in m)
    boxes = job.tiles()["boxes"]
    xs = sorted(f["geometry"]["coordinates"][0][0][0] for f in feats)
    assert xs == sorted(boxes[:, 0].astype(float).tolist())
    a = ad.read_h5ad(tmp_path / "res.h5ad")
    assert a.shape == (n_tiles, len(genes))
    assert np.isfinite(a.X).all() and (a.layers["epistemic_sd"] >= 0).all()
    png = tmp_path / "res.heatmaps" / f"{genes[0]}.png"
    assert Image.open(png).size[0] > 100
    # The run's report: numbers, the model's per-gene reliability, the heatmap embedded.
    page = (tmp_path / "res.report.html").read_text()
    assert f"<th>tiles predicted</th><td class='n'>{n_tiles}</td>" in page
    assert page.count("<img src='data:image/") == 1 and f"<td>{genes[0]}</td>" in page
    assert "wrote " + str(tmp_path / "res.report.html") in r.output
    mtime = out.stat().st_mtime_ns
    r2 = _run(
        slide,
        "--model",
        model_dir,
        "--out",
        out,
        "--batch-size",
        2,
        "--chunk-batches",
        1,
        "--device",
        "cpu",
        "--genes",
        ",".join(genes[:3]),
        "--heatmaps",
        genes[0],
    )
    assert r2.exit_code == 0 and "already predicted" in r2.output
    assert out.stat().st_mtime_ns == mtime
    # Other settings on the same output are refused, not mixed in.
    r3 = _run(slide, "--model", model_dir, "--out", out, "--batch-size", 4, "--device", "cpu")
    assert r3.exit_code == 2 and "other settings" in r3.output
    r4 = _run(
        slide,
        "--model",
        model_dir,
        "--out",
        out,
        "--batch-size",
        4,
        "--device",
        "cpu",
        "--overwrite",
    )
    assert r4.exit_code == 0 and "wrote" in r4.output
    assert SlideJob.open(tmp_path / "res.parts").state["settings"]["batch_size"] == 4
    assert validate_geojson(out) == n_tiles


def test_new_genes_or_heatmaps_reuse_the_finished_store(
    model_dir: Path, slide: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "res.geojson"
    genes = Predictor(model_dir, device="cpu").bundle.genes
    base = (slide, "--model", model_dir, "--out", out, "--batch-size", 4, "--device", "cpu")
    r = _run(*base, "--genes", genes[0], "--heatmaps", genes[0])
    assert r.exit_code == 0, r.output
    parts = tmp_path / "res.parts"
    chunks = {p: p.stat().st_mtime_ns for p in parts.glob("chunk_*.npz")}
    state = (parts / "state.json").read_text()
    assert chunks

    def no_prediction(*a: object, **k: object) -> None:
        raise AssertionError("predicted again")

    monkeypatch.setattr(Predictor, "predict_boxes", no_prediction)
    r2 = _run(*base, "--genes", ",".join(genes[1:3]), "--heatmaps", genes[1])
    assert r2.exit_code == 0, r2.output
    assert "reusing the finished predictions" in r2.output and "wrote" in r2.output
    assert {p: p.stat().st_mtime_ns for p in parts.glob("chunk_*.npz")} == chunks
    assert (parts / "state.json").read_text() == state
    m = json.loads(out.read_text())["features"][0]["properties"]["measurements"]
    assert {k.split(":")[0] for k in m} == {*genes[1:3], "Tile"}  # Tile: novelty ...
    heat = tmp_path / "res.heatmaps"
    assert sorted(p.name for p in heat.glob("*.png")) == [f"{genes[1]}.png"]
    assert ad.read_h5ad(tmp_path / "res.h5ad").shape[1] == len(genes)
    # the same outputs again: nothing to do
    r3 = _run(*base, "--genes", ",".join(genes[1:3]), "--heatmaps", genes[1])
    assert r3.exit_code == 0 and "already predicted" in r3.output
    # a setting the predictions depend on is still refused without --overwrite
    r4 = _run(*base, "--genes", genes[0], "--level", 0.8)
    assert r4.exit_code == 2 and "other settings" in r4.output


def test_interrupted_job_resumes_identically(
    predictor: Predictor, slide: Path, tmp_path: Path
) -> None:
    full = run_slide_job(predictor, slide, tmp_path / "full", batch_size=2, chunk_batches=1)
    calls = []

    def stop_after_first_chunk(done: int, total: int) -> None:
        calls.append(done)
        if done >= 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_slide_job(
            predictor,
            slide,
            tmp_path / "cut",
            batch_size=2,
            chunk_batches=1,
            progress=stop_after_first_chunk,
        )
    cut = SlideJob.open(tmp_path / "cut")
    assert not cut.complete and cut.chunk_path(0).exists() and not cut.chunk_path(1).exists()
    seen = []
    resumed = run_slide_job(
        predictor,
        slide,
        tmp_path / "cut",
        batch_size=2,
        chunk_batches=1,
        progress=lambda d, t: seen.append(d),
    )
    assert resumed.complete and seen[0] == 2  # started after the finished chunk
    a, b = full.to_anndata(), resumed.to_anndata()
    np.testing.assert_array_equal(a.X, b.X)
    for k in ("aleatoric_sd", "epistemic_sd", "lower", "upper"):
        np.testing.assert_array_equal(a.layers[k], b.layers[k])
    assert list(a.obs_names) == list(b.obs_names)
    with pytest.raises(SlideJobChangedError, match=r"\(level changed\)"):
        run_slide_job(predictor, slide, tmp_path / "cut", batch_size=2, chunk_batches=1, level=0.8)
    with pytest.raises(SlideJobChangedError, match=r"\(mpp changed\)"):
        run_slide_job(predictor, slide, tmp_path / "cut", batch_size=2, chunk_batches=1, mpp=1.1)


def test_region_restricts_tiles(model_dir: Path, slide: Path, tmp_path: Path) -> None:
    region = tmp_path / "roi.geojson"
    poly = [[[300, 200], [700, 200], [700, 600], [300, 600], [300, 200]]]
    region.write_text(
        json.dumps({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": poly}})
    )
    out = tmp_path / "roi_out.geojson"
    r = _run(
        slide, "--model", model_dir, "--out", out, "--region", region, "--device", "cpu", "--cells"
    )
    assert r.exit_code == 0, r.output
    assert validate_geojson(out) > 0
    every = json.loads(out.read_text())["features"]
    feats = [f for f in every if f["properties"]["objectType"] == "tile"]
    cells = [f for f in every if f["properties"]["objectType"] == "cell"]
    assert 1 <= len(feats) <= 4 and len(cells) > 5
    for f in cells:
        cx, cy = np.array(f["geometry"]["coordinates"][0]).mean(axis=0)
        assert 290 <= cx <= 710 and 190 <= cy <= 610
    for f in feats:
        pts = np.array(f["geometry"]["coordinates"][0])
        cx, cy = pts[:4].mean(axis=0)
        assert 300 <= cx <= 700 and 200 <= cy <= 600


def test_bad_inputs_exit_2(model_dir: Path, slide: Path, tmp_path: Path) -> None:
    png = tmp_path / "nompp.png"
    Image.fromarray(render_he(200, 200, seed=4)).save(png)
    r = _run(png, "--model", model_dir, "--out", tmp_path / "a.geojson", "--device", "cpu")
    assert r.exit_code == 2, r.output
    assert r.output.strip().count("\n") == 0 and "error:" in r.output and "--mpp" in r.output
    region = tmp_path / "far.geojson"
    poly = [[[5000, 5000], [6000, 5000], [6000, 6000], [5000, 6000], [5000, 5000]]]
    region.write_text(json.dumps({"type": "Polygon", "coordinates": poly}))
    r = _run(
        slide,
        "--model",
        model_dir,
        "--out",
        tmp_path / "b.geojson",
        "--region",
        region,
        "--device",
        "cpu",
    )
    assert r.exit_code == 2, r.output
    assert r.output.strip().count("\n") == 0 and "error:" in r.output
    r = _run(
        slide, "--model", model_dir, "--out", tmp_path / "c.geojson", "--cells", "--device", "cpu"
    )
    assert r.exit_code == 2 and "--region" in r.output
