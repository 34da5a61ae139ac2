"""Prediction of spatial samples and slide regions held in memory (AnnData out).

:func:`predict_spots` predicts every spot of a spatial sample (the observed counts kept
beside); :func:`predict_slide` every grid tile of a slide's tissue or of a region. Both cut
tiles as the model's training did and predict them in bounded batches. For whole slides
too large for memory, use the resumable job of :mod:`stimage.pipelines._slide_job`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from stimage.constants import Key
from stimage.models import (
    Predictor,
    TilePredictions,
    anndata_values,
    measurement_columns,
    to_anndata,
)

if TYPE_CHECKING:
    import anndata as ad

__all__ = ["predict_slide", "predict_spots", "write_predictions"]


def predict_spots(
    predictor: Predictor,
    sample: ad.AnnData,
    *,
    genes: list[str] | None = None,
    level: float = 0.9,
    batch_size: int = 64,
    progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
) -> ad.AnnData:
    """Predict every spot of a spatial sample; the result keeps the observed counts beside.

    Spots whose tile holds less tissue than the model's minimum are predicted too and
    flagged in ``obs["kept"]`` (False) with their coverage.
    """
    from stimage.data import check_spots_inside, open_sample_slide, sample_info
    from stimage.tiles import detect_tissue, spot_tile_qc

    meta = dict(sample_info(sample))
    with open_sample_slide(sample) as slide:
        check_spots_inside(sample, *slide.dimensions, where=str(slide.path))
        mask = detect_tissue(slide)
        qc = spot_tile_qc(
            sample.obsm[Key.SPATIAL],
            predictor.tile_um,
            slide.mpp,
            *slide.dimensions,
            mask,
            float(predictor.bundle.tiles.get("min_coverage", 0.7)),
        )
        normalizer = predictor.normalizer_for(slide, mask)
        parts = [
            p
            for _, p in predictor.predict_boxes(
                slide,
                qc.boxes,
                normalizer,
                genes=genes,
                batch_size=batch_size,
                level=level,
                progress=progress,
                cancel=cancel,
                context_from=qc.kept,  # as in training: spots with enough tissue give context
            )
        ]
    pred = TilePredictions.concat(parts)
    obs = sample.obs.copy()
    obs[Key.TISSUE_COVERAGE] = qc.coverage
    obs[Key.KEPT] = qc.kept
    meta.update(
        {
            "model": predictor.bundle.name,
            "genes": pred.genes,
            "interval_level": level,
            "tile_um": predictor.tile_um,
            "scale": "log1p(counts per 10k)",
        }
    )
    a = to_anndata(pred, obs, sample.obsm[Key.SPATIAL], meta)
    common = [g for g in pred.genes if g in sample.var_names]
    counts = np.zeros(pred.mean.shape, np.float32)
    if common:
        idx = [pred.genes.index(g) for g in common]
        counts[:, idx] = sample[:, common].X.toarray()
    a.layers["observed_counts"] = counts
    a.obs["total_counts"] = np.asarray(sample.X.sum(axis=1)).ravel()
    return a


def predict_slide(
    predictor: Predictor,
    slide_path: str | os.PathLike[str],
    *,
    region: Any | None = None,
    mpp: float | None = None,
    genes: list[str] | None = None,
    level: float = 0.9,
    batch_size: int = 64,
    progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
) -> ad.AnnData:
    """Predict every grid tile of a slide's tissue, or of a region (a shapely geometry in pixels).

    Tiles are the model's µm size on a grid; tiles with less tissue than the model's minimum
    are left out. For a model with spatial context, the tissue tiles of the same grid around
    a region are read too, for the context of the region's edge tiles (not predicted).
    """
    from stimage.data import open_slide

    with open_slide(slide_path, mpp=mpp) as slide:
        tiles = predictor.grid_tiles(slide, region)
        boxes = tiles.boxes
        normalizer = predictor.normalizer_for(slide, tiles.mask)
        parts = [
            p
            for _, p in predictor.predict_boxes(
                slide,
                boxes,
                normalizer,
                genes=genes,
                batch_size=batch_size,
                level=level,
                progress=progress,
                cancel=cancel,
                context_boxes=tiles.context_boxes,
            )
        ]
        uns = {
            "slide_path": str(slide.path.resolve()),
            Key.MPP: slide.mpp,
            Key.MPP_SOURCE: slide.mpp_source,
            "model": predictor.bundle.name,
            "tile_um": predictor.tile_um,
            "interval_level": level,
            "scale": "log1p(counts per 10k)",
        }
    pred = TilePredictions.concat(parts)
    obs = pd.DataFrame(
        {
            "x": boxes[:, 0],
            "y": boxes[:, 1],
            "width": boxes[:, 2],
            "height": boxes[:, 3],
            "grid_row": tiles.rows,
            "grid_col": tiles.cols,
            Key.TISSUE_COVERAGE: tiles.coverage,
        },
        index=[f"tile_{r}_{c}" for r, c in zip(tiles.rows, tiles.cols, strict=True)],
    )
    return to_anndata(pred, obs, boxes[:, :2] + boxes[:, 2:] / 2, uns)


def write_predictions(a: ad.AnnData, out: Path, name: str) -> list[Path]:
    """Write predictions as ``OUT/NAME.h5ad`` and ``OUT/NAME.csv`` (one row per spot or tile).

    The CSV has the position (``x``, ``y``), the tile QC columns of ``obs`` when present
    (``kept``, tissue coverage) and every measurement column of the output schema.
    """
    h5 = out / f"{name}.h5ad"
    a.write_h5ad(h5)
    level = float(a.uns[Key.UNS]["interval_level"])
    cols = measurement_columns(list(a.var_names), level, anndata_values(a))
    xy = a.obsm[Key.SPATIAL]
    qc = {k: a.obs[k].to_numpy() for k in (Key.KEPT, Key.TISSUE_COVERAGE) if k in a.obs}
    df = pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], **qc, **cols}, index=a.obs_names)
    csv = out / f"{name}.csv"
    df.to_csv(csv, index_label="id", float_format="%.5g")
    return [h5, csv]
