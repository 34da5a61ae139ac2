"""Explaining a real tile with the bundled default model: LIME and occlusion end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stimage.errors import ConfigError


@pytest.fixture(scope="module")
def predictor():
    from stimage.models import Predictor, default_model_path

    try:
        path = default_model_path()
    except FileNotFoundError:
        pytest.skip("no bundled default model in this installation")
    return Predictor(path, device="cpu")


@pytest.fixture(scope="module")
def crop():
    from stimage.data import load_dataset
    from stimage.examples import example_path

    spec = next(iter(load_dataset(example_path())))
    sample = spec.load()
    return sample


def _slide(sample):
    from stimage.data import open_sample_slide

    return open_sample_slide(sample)


@pytest.mark.slow
def test_lime_and_occlusion_on_a_real_tile(predictor, crop, tmp_path: Path) -> None:
    from shapely.geometry import box as shapely_box

    from stimage.explain import agreement
    from stimage.pipelines import (
        explain_tile,
        plot_explanation,
        predict_slide,
        tile_box,
        write_explanation_geojson,
    )
    from stimage.qupath import read_geojson, validate_geojson

    genes = [g for g in ("ERBB2", "COX6C") if g in predictor.bundle.genes][
        :2
    ] or predictor.bundle.genes[:2]
    # the most epithelial spot: most counts of the first gene
    j = list(crop.var_names).index(genes[0]) if genes[0] in crop.var_names else 0
    i = int(np.argmax(np.asarray(crop.X[:, j]).ravel()))
    cx, cy = crop.obsm["spatial"][i]
    with _slide(crop) as slide:
        box = tile_box(slide, predictor.tile_um, (cx, cy))
        lime = explain_tile(predictor, slide, box, genes, method="lime", num_samples=60, seed=1)
        occ = explain_tile(predictor, slide, box, genes, method="occlusion")
        slide_path, mpp = slide.path, slide.mpp
    n = len(lime.nuclei)
    assert n >= 10, n
    assert lime.explanation.scores.shape == (n, len(genes))
    assert lime.labels.shape == (predictor.tile_px, predictor.tile_px)
    assert set(np.unique(lime.labels)) - {0} <= set(range(1, n + 1))
    # the intact tile's prediction is the one on the map: predict-slide's for the same tile,
    # with the same neighbouring tiles held fixed (the bundled model has spatial context)
    x, y, w, h = box
    mapped = predict_slide(
        predictor, slide_path, mpp=mpp, region=shapely_box(x, y, x + w, y + h), genes=genes
    )
    assert len(mapped) == 1
    assert lime.context_tiles == occ.context_tiles == mapped.obs["context_tiles"].iloc[0] > 0
    np.testing.assert_allclose(lime.explanation.prediction, np.asarray(mapped.X)[0], rtol=1e-4)
    np.testing.assert_allclose(occ.explanation.prediction, np.asarray(mapped.X)[0], rtol=1e-4)
    assert np.isfinite(lime.explanation.scores).all() and np.abs(lime.explanation.scores).sum() > 0
    # the intact tile plus one input per nucleus present in the tile (label 0 is the background)
    assert occ.explanation.num_samples == len(np.unique(occ.labels))
    agr = agreement(lime.explanation, occ.explanation)
    assert len(agr) == len(genes)
    out = tmp_path / "explain.geojson"
    write_explanation_geojson([lime, occ], out)
    assert validate_geojson(out) >= n + 1
    objs = read_geojson(out)
    assert any(f"LIME: {genes[0]}" in o.measurements for o in objs)
    tile = [o for o in objs if "Tile: context tiles" in o.measurements]
    assert len(tile) == 1 and tile[0].measurements["Tile: context tiles"] == lime.context_tiles
    assert plot_explanation(lime, tmp_path / "lime.png").stat().st_size > 10_000


def test_tile_outside_the_image_is_a_clear_error(predictor, crop) -> None:
    from stimage.pipelines import tile_box

    with _slide(crop) as slide:
        with pytest.raises(ConfigError, match="outside the image"):
            tile_box(slide, predictor.tile_um, (1e7, 1e7))
        with pytest.raises(ConfigError, match="CX,CY"):
            tile_box(slide, predictor.tile_um, (1, 2, 3))


def test_unknown_gene_and_missing_classifier_are_clear(predictor) -> None:
    from stimage.models import UnknownGeneError
    from stimage.pipelines import target_function

    with pytest.raises(UnknownGeneError, match="NOTAGENE"):
        target_function(predictor, ["NOTAGENE"])
    with pytest.raises(ConfigError, match="unknown explanation target"):
        target_function(predictor, predictor.bundle.genes[:1], "variance")


@pytest.mark.slow
def test_one_pipeline_finds_the_same_nuclei_in_the_same_pixels(predictor, crop) -> None:
    """A slide box (the CLI, the server reading a slide) and the same pixels sent by a client
    with the tiles around it (the server's tile path) give the same nuclei (once 52 against
    49) and the same scores up to the resampling of the model's tile (the slide path cuts it
    as prediction does, the client path from the full-resolution pixels)."""
    from stimage.data import ArraySlide
    from stimage.pipelines import NeighbourTiles, explain_tile, tile_box
    from stimage.pipelines._explain_context import slide_neighbours

    genes = predictor.bundle.genes[:1]
    with _slide(crop) as slide:
        cx, cy = crop.obsm["spatial"][len(crop) // 2]
        box = tile_box(slide, predictor.tile_um, (cx, cy))
        a = explain_tile(predictor, slide, box, genes, method="occlusion", normalizer=None)
        w, h = round(box[2]), round(box[3])
        pixels = slide.read_region(*box, out_size=(w, h))
        around = slide_neighbours(predictor, slide, box, None)
        scale = w / box[2]
        sent = NeighbourTiles(around.tiles, (around.centres - np.array(box[:2])) * scale)
        b = explain_tile(
            predictor,
            ArraySlide(pixels, slide.mpp / scale),
            (0.0, 0.0, float(w), float(h)),
            genes,
            method="occlusion",
            normalizer=None,
            neighbours=sent,
            origin=(box[0], box[1]),
            downsample=1 / scale,
        )
    assert len(a.nuclei) == len(b.nuclei) > 5
    np.testing.assert_allclose(a.nuclei.centroids, b.nuclei.centroids, atol=1e-6)
    np.testing.assert_allclose(a.box, b.box)
    assert a.context_tiles == b.context_tiles > 0
    np.testing.assert_allclose(a.explanation.prediction, b.explanation.prediction, rtol=0.005)
    assert np.corrcoef(a.explanation.scores[:, 0], b.explanation.scores[:, 0])[0, 1] > 0.9
