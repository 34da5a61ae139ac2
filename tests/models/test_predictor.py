from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from shapely.geometry import box

from _synth import render_he, write_pyramid_tiff
from stimage.constants import Key, Measurement
from stimage.data import read_her2st
from stimage.errors import StimageError
from stimage.models import ModelBundle, Predictor, UnknownGeneError
from stimage.pipelines import predict_slide, predict_spots


@pytest.fixture(scope="module")
def predictor(bundle: ModelBundle) -> Predictor:
    return Predictor(bundle, device="cpu")


def test_predict_spots_of_a_held_out_section(predictor: Predictor, three_sections: Path) -> None:
    sample = read_her2st(three_sections, "S3")
    seen = []
    a = predict_spots(predictor, sample, progress=lambda d, t: seen.append((d, t)))
    assert a.n_obs == sample.n_obs and list(a.var_names) == predictor.bundle.genes
    assert seen[-1] == (sample.n_obs, sample.n_obs)
    for layer in (
        "aleatoric_sd",
        "epistemic_sd",
        "lower",
        "upper",
        "rate_per_10k",
        "observed_counts",
    ):
        assert a.layers[layer].shape == a.shape
    assert (a.layers["lower"] <= a.X + 1e-6).mean() > 0.95 and (
        a.layers["upper"] >= a.X - 1e-6
    ).mean() > 0.95
    assert (a.layers["epistemic_sd"] > 0).all()
    np.testing.assert_allclose(a.obsm[Key.SPATIAL], sample.obsm[Key.SPATIAL])
    assert Key.KEPT in a.obs and a.uns["stimage"]["scale"] == "log1p(counts per 10k)"
    # The genes driven by nuclei density are predicted with the right sign of correlation.
    truth = np.log1p(a.layers["observed_counts"] / a.obs["total_counts"].to_numpy()[:, None] * 1e4)
    r = [np.corrcoef(a.X[:, j], truth[:, j])[0, 1] for j in range(a.n_vars)]
    assert np.nanmean(r) > 0.1


def test_predict_tiles_measurements_and_gene_choice(predictor: Predictor) -> None:
    tiles = np.stack([render_he(64, 64, np.ones((64, 64), bool), seed=s) for s in range(3)])
    genes = predictor.bundle.genes[:2]
    p = predictor.predict_tiles(tiles, genes, level=0.8)
    df = p.measurements()
    assert (
        Measurement.of(genes[0], Measurement.MEAN) in df and Measurement.lower(genes[1], 0.8) in df
    )
    assert df.shape[0] == 3
    assert Measurement.of(genes[0], Measurement.P_HIGH) in df
    with pytest.raises(UnknownGeneError):
        predictor.predict_tiles(tiles, ["NOT_A_GENE"])


def test_predict_slide_grid_inside_a_region(predictor: Predictor, tmp_path: Path) -> None:
    img = render_he(900, 1200, seed=5)
    p = write_pyramid_tiff(tmp_path / "wsi.tif", img, mpp=2.0)
    a = predict_slide(predictor, p, region=box(300, 200, 900, 700))
    # 200 µm tiles = 100 px at 2 µm/px: 6 x 5 tiles in the region, all on tissue.
    assert a.n_obs == 30
    assert a.obs["width"].iloc[0] == pytest.approx(100)
    assert (a.obs["x"] >= 300 - 1e-6).all()
    whole = predict_slide(predictor, p)
    assert whole.n_obs > a.n_obs


def test_wrong_encoder_weights_are_refused(tmp_path: Path) -> None:
    from types import SimpleNamespace

    f = tmp_path / "w.pth"
    f.write_bytes(b"some weights")
    enc = SimpleNamespace(
        weights_path=str(f), weights_sha256=None, spec=SimpleNamespace(name="resnet50")
    )
    with pytest.raises(StimageError, match="--encoder-weights"):
        Predictor._check_weights({"weights_sha256": "0" * 64}, enc)  # type: ignore[arg-type]
    import hashlib

    Predictor._check_weights({"weights_sha256": hashlib.sha256(b"some weights").hexdigest()}, enc)  # type: ignore[arg-type]
