"""A whole slide to files: QuPath GeoJSON, AnnData and heatmaps, from a resumable job.

What ``stimage predict-slide`` does, as one call: the resumable slide job
(:func:`~stimage.pipelines.run_slide_job`) predicts into ``OUT.parts/``; the GeoJSON is
streamed from its chunks (tiles, and typed cells of the region when asked), the AnnData
holds every gene, and one heatmap PNG is drawn per gene asked for. A finished job whose
output options (GeoJSON genes, heatmaps, cells) changed rewrites the outputs from the store
without predicting again; a finished job with the same options is left as it is.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from stimage.constants import DEFAULT_GEOJSON_GENES
from stimage.errors import ConfigError
from stimage.pipelines._cells import region_cell_features
from stimage.pipelines._slide_job import (
    SlideJob,
    SlideJobChangedError,
    model_id,
    run_slide_job,
    slide_job_features,
)

if TYPE_CHECKING:
    from stimage.models import Predictor

__all__ = ["SlideFiles", "output_paths", "predict_slide_files"]

logger = logging.getLogger(__name__)


@dataclass
class SlideFiles:
    """What :func:`predict_slide_files` did.

    Attributes:
        job: The finished slide job (its store).
        geojson: The QuPath GeoJSON.
        h5ad: The AnnData of all genes.
        heatmaps: Heatmap PNGs written.
        n_objects: Objects in the GeoJSON (tiles and cells).
        status: ``predicted``, ``rewritten`` (outputs redone from a finished store) or
            ``unchanged`` (a finished run with the same outputs).
        geojson_genes: The genes the GeoJSON carries.
        default_genes: Whether those are the model's first genes, by default.
    """

    job: SlideJob
    geojson: Path
    h5ad: Path
    heatmaps: list[Path] = field(default_factory=list)
    n_objects: int = 0
    status: str = "predicted"
    geojson_genes: list[str] = field(default_factory=list)
    default_genes: bool = False

    @property
    def written(self) -> list[Path]:
        """Every file written."""
        return [self.geojson, self.h5ad, *self.heatmaps]


def _stem(out: Path) -> str:
    name = out.name
    for suf in (".geojson.gz", ".json.gz", ".geojson", ".json", ".gz"):
        if name.lower().endswith(suf):
            return name[: -len(suf)]
    return name


def output_paths(out: Path) -> tuple[Path, Path, Path]:
    """The job store, AnnData and heatmap folder beside an output GeoJSON."""
    stem = _stem(out)
    return (
        out.with_name(stem + ".parts"),
        out.with_name(stem + ".h5ad"),
        out.with_name(stem + ".heatmaps"),
    )


def safe_name(name: str) -> str:
    """A gene name usable as a file name."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def predict_slide_files(
    predictor: Predictor,
    slide: Path,
    out: Path,
    *,
    region: Any | None = None,
    genes: list[str] | None = None,
    heatmaps: list[str] | None = None,
    cells: bool = False,
    cell_model: Any = None,
    mpp: float | None = None,
    level: float = 0.9,
    batch_size: int = 64,
    chunk_batches: int = 16,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
) -> SlideFiles:
    """Predict a slide (or a region) and write GeoJSON, AnnData and heatmaps.

    Args:
        predictor: The model.
        slide: The slide file.
        out: The GeoJSON to write (``.geojson`` or ``.geojson.gz``); the store
            ``OUT.parts/``, ``OUT.h5ad`` and ``OUT.heatmaps/`` go beside it.
        region: A shapely geometry in full-resolution pixels; None for all tissue.
        genes: Genes the GeoJSON carries (default: the model's first
            :data:`~stimage.constants.DEFAULT_GEOJSON_GENES`); the AnnData holds all.
        heatmaps: Genes to draw as heatmap PNGs.
        cells: Also detect and type cells in the region (needs ``region``).
        cell_model: Cell-type model for ``cells`` (default: the bundled one).
        mpp: µm per pixel, overriding the slide's metadata.
        level: Level of the predictive intervals.
        batch_size: Tiles per encoder batch.
        chunk_batches: Batches per chunk of the resumable store.
        overwrite: Start again, discarding earlier results.
        progress: Called with (tiles done, tiles in all).
        cancel: Set to stop after the current batch (finished chunks are kept).

    Raises:
        ConfigError: ``cells`` without a region.
        UnknownGeneError: A gene the model does not predict.
        SlideJobChangedError: The store holds other settings (and not ``overwrite``).
    """
    bundle = predictor.bundle
    if cells and region is None:
        raise ConfigError(
            "cells need a region: cell detection over a whole slide is unbounded; draw the "
            "regions of interest and export them as GeoJSON"
        )
    heat_genes = list(heatmaps or [])
    bundle.check_genes(genes)
    bundle.check_genes(heat_genes or None)
    default_genes = not genes
    geo_genes = list(genes) if genes else list(bundle.genes[:DEFAULT_GEOJSON_GENES])
    parts, h5ad, heat_dir = output_paths(out)
    # What the outputs are made of; the predictions in the store do not depend on it.
    outputs = {"geojson_genes": geo_genes, "heatmaps": heat_genes, "cells": cells}
    was_complete = (
        not overwrite and (parts / "state.json").exists() and SlideJob.open(parts).complete
    )
    job = run_slide_job(
        predictor,
        slide,
        parts,
        region=region,
        mpp=mpp,
        level=level,
        batch_size=batch_size,
        chunk_batches=chunk_batches,
        overwrite=overwrite,
        progress=progress,
        cancel=cancel,
    )
    res = SlideFiles(job, out, h5ad, geojson_genes=geo_genes, default_genes=default_genes)
    previous = job.read_outputs() if was_complete else None
    if was_complete:
        if previous == outputs and out.exists() and h5ad.exists():
            res.status = "unchanged"
            return res
        missing = [g for g in dict.fromkeys(geo_genes + heat_genes) if g not in job.genes]
        if missing:
            raise SlideJobChangedError(
                f"{parts}: the stored predictions lack {missing[:5]}; use --overwrite to predict again"
            )
        res.status = "rewritten"
    res.n_objects = _write_geojson(
        job, out, (geo_genes, slide, region, mpp), cells, cell_model, predictor
    )
    job.to_anndata().write_h5ad(h5ad)
    for old in (previous or {}).get("heatmaps", []):
        if old not in heat_genes:
            (heat_dir / f"{safe_name(old)}.png").unlink(missing_ok=True)
    if heat_genes:
        res.heatmaps = write_heatmaps(job, slide, mpp, heat_genes, heat_dir)
    job.record_outputs(outputs)
    return res


def _write_geojson(
    job: SlideJob,
    out: Path,
    what: tuple[list[str], Path, Any, float | None],
    cells: bool,
    cell_model: Any,
    predictor: Predictor,
) -> int:
    """Stream tile Features chunk by chunk (and cells per region polygon) into ``out``.

    ``what`` is the genes, the slide, the region and the µm per pixel; the collection's
    ``"stimage"`` member records the model and how far each gene can be trusted.
    """
    from stimage.qupath import FeatureCollectionWriter

    genes, slide, region, mpp = what
    metadata = {**predictor.bundle.output_metadata(genes), "model_id": model_id(predictor)}

    with FeatureCollectionWriter(out, metadata=metadata) as w:
        w.write_all(slide_job_features(job, genes))
        if cells:
            from stimage.data import open_slide
            from stimage.models import default_celltype_model_path, load_celltype_model

            model = cell_model or load_celltype_model(default_celltype_model_path())
            with open_slide(slide, mpp=mpp) as s:
                w.write_all(region_cell_features(s, region, model))
        return int(w.count)


def write_heatmaps(
    job: SlideJob, slide: Path, mpp: float | None, genes: list[str], folder: Path
) -> list[Path]:
    """One PNG per gene: predicted mean and epistemic sd per tile over the H&E, side by side.

    Drawn at the extent of the predicted tiles (a region run shows the region, not the whole
    slide), the H&E read at up to 1,600 px on the long side, tiles translucent, colour bars in
    ``log1p(counts per 10k)``, a scale bar under the map (colour-blind-safe viridis / magma).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    from stimage.data import open_slide

    t = job.tiles()
    rows, cols, boxes = t["rows"], t["cols"], t["boxes"]
    r0, c0 = rows.min(), cols.min()
    shape = (len(genes), rows.max() - r0 + 1, cols.max() - c0 + 1)
    mean = np.full(shape, np.nan, np.float32)
    epi = np.full(shape, np.nan, np.float32)
    for idx, pred in job.iter_chunks(genes):
        mean[:, rows[idx] - r0, cols[idx] - c0] = pred.mean.T
        epi[:, rows[idx] - r0, cols[idx] - c0] = pred.epistemic_sd.T
    x0 = boxes[cols == c0, 0].min()
    y0 = boxes[rows == r0, 1].min()
    tw, th = boxes[0, 2], boxes[0, 3]
    x1, y1 = x0 + tw * shape[2], y0 + th * shape[1]
    pad = 0.5 * max(tw, th)
    view = (x0 - pad, y0 - pad, x1 - x0 + 2 * pad, y1 - y0 + 2 * pad)
    with open_slide(slide, mpp=mpp) as s:
        down = max(1.0, max(view[2], view[3]) / 1600)
        he = s.read_region(*view, downsample=down)
        um_per_px = s.mpp
    extent_he = (view[0], view[0] + view[2], view[1] + view[3], view[1])
    extent = (x0, x1, y1, y0)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    aspect = view[3] / max(view[2], 1.0)
    for k, g in enumerate(genes):
        fig, axes = plt.subplots(1, 2, figsize=(11, 5 * aspect + 0.8), layout="constrained")
        for ax, grid, title, cmap, unit in (
            (axes[0], mean[k], f"{g}: predicted mean", "viridis", "log1p(counts per 10k)"),
            (axes[1], epi[k], f"{g}: epistemic sd", "magma", "sd of log1p(counts per 10k)"),
        ):
            ax.imshow(he, extent=extent_he)
            im = ax.imshow(grid, extent=extent, cmap=cmap, alpha=0.6, interpolation="nearest")
            ax.set_xlim(extent_he[0], extent_he[1])
            ax.set_ylim(extent_he[2], extent_he[3])
            ax.set_axis_off()
            ax.set_title(title)
            bar = fig.colorbar(im, ax=ax, shrink=0.8)
            if bar.solids is not None:
                bar.solids.set_alpha(1.0)
            bar.set_label(unit)
            mm = _bar_mm(view[2] * um_per_px / 1000 / 4)
            ax.add_artist(
                AnchoredSizeBar(
                    ax.transData, mm * 1000 / um_per_px, f"{mm:g} mm", "upper right",
                    frameon=False, borderpad=0.0, pad=0.1, bbox_to_anchor=(1.0, 0.0),
                    bbox_transform=ax.transAxes, size_vertical=view[3] / 150,
                )
            )  # fmt: skip
        p = folder / f"{safe_name(g)}.png"
        fig.savefig(p, dpi=150, bbox_inches="tight", pad_inches=0.1)
        plt.close(fig)
        paths.append(p)
    return paths


def _bar_mm(target: float) -> float:
    """A round scale-bar length (mm) of at most ``target``."""
    steps = (0.05, 0.1, 0.2, 0.25, 0.5, 1.0, 2.0, 2.5, 5.0, 10.0, 20.0)
    return max([m for m in steps if m <= target], default=steps[0])
