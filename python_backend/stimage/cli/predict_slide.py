"""``stimage predict-slide``: a whole H&E slide to QuPath GeoJSON, AnnData and heatmaps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from stimage.cli._common import write_run_metadata
from stimage.constants import DEFAULT_GEOJSON_GENES


@click.command("predict-slide")
@click.argument("slide", type=click.Path(path_type=Path))
@click.option(
    "--model",
    "-m",
    "model",
    type=click.Path(path_type=Path),
    default=None,
    help="Model folder [default: the bundled default model].",
)
@click.option(
    "--out",
    "-o",
    type=click.Path(path_type=Path),
    required=True,
    help="Output GeoJSON (OUT.geojson; .geojson.gz to compress). Beside it: OUT.h5ad, "
    "OUT.heatmaps/ and the resumable store OUT.parts/.",
)
@click.option(
    "--region",
    type=click.Path(path_type=Path),
    default=None,
    help="GeoJSON with the region(s) to tile (a QuPath annotation export).",
)
@click.option("--tissue", is_flag=True, help="Tile all detected tissue (the default).")
@click.option(
    "--genes",
    default=None,
    help=f"Genes for the GeoJSON (comma-separated or a file) [default: the model's first "
    f"{DEFAULT_GEOJSON_GENES}]. The h5ad holds all the model's genes.",
)
@click.option("--heatmaps", default=None, help="Genes to draw as heatmap PNGs (comma-separated).")
@click.option(
    "--mpp", type=click.FloatRange(min=0.01), default=None, help="µm per pixel of the slide."
)
@click.option(
    "--level",
    type=click.FloatRange(0.01, 0.99),
    default=0.9,
    show_default=True,
    help="Level of the predictive intervals.",
)
@click.option("--cells", is_flag=True, help="Also detect and type cells (needs --region).")
@click.option(
    "--batch-size",
    type=click.IntRange(1, 4096),
    default=64,
    show_default=True,
    help="Tiles per encoder batch (memory bound).",
)
@click.option(
    "--chunk-batches",
    type=click.IntRange(1, 100000),
    default=16,
    show_default=True,
    help="Batches per chunk of the resumable store.",
)
@click.option("--device", default=None, help="cpu, cuda ... [default: GPU if available].")
@click.option(
    "--encoder-weights", multiple=True, metavar="NAME=PATH", help="Weights file of an encoder."
)
@click.option("--overwrite", is_flag=True, help="Start again, discarding earlier results.")
@click.pass_context
def predict_slide(
    ctx: click.Context,
    slide: Path,
    model: Path | None,
    out: Path,
    region: Path | None,
    tissue: bool,
    genes: str | None,
    heatmaps: str | None,
    mpp: float | None,
    level: float,
    cells: bool,
    batch_size: int,
    chunk_batches: int,
    device: str | None,
    encoder_weights: tuple[str, ...],
    overwrite: bool,
) -> None:
    """Predict expression with uncertainty on grid tiles of a whole SLIDE without spatial data.

    Tiles are the model's µm size on a grid over the tissue (or --region); tiles with too
    little tissue are left out. Results go chunk by chunk into OUT.parts/, so an interrupted
    run resumes where it stopped when run again with the same settings. A finished run is
    skipped; one that changes only --genes, --heatmaps or --cells rewrites the outputs from
    the stored predictions; other changes (model, region, mpp, level, batching) need
    --overwrite. Writes OUT (QuPath GeoJSON tiles with "GENE: mean",
    "GENE: aleatoric sd", "GENE: epistemic sd" and interval measurements), OUT.h5ad (all
    genes; held whole in memory at the end, n_tiles x n_genes x 6 float32), and with
    --heatmaps one PNG per gene in OUT.heatmaps/.
    """
    from stimage.cli._common import ProgressBars, parse_encoder_weights, parse_genes
    from stimage.errors import ConfigError
    from stimage.models import Predictor, default_model_path
    from stimage.pipelines import SlideJob, SlideJobChangedError, run_slide_job

    if region is not None and tissue:
        raise ConfigError("give --region or --tissue, not both")
    if cells and region is None:
        raise ConfigError(
            "--cells needs --region: cell detection over a whole slide is unbounded; "
            "draw the regions of interest and export them as GeoJSON"
        )
    stem = _stem(out)
    parts, h5ad, heat_dir = (
        out.with_name(stem + ".parts"),
        out.with_name(stem + ".h5ad"),
        out.with_name(stem + ".heatmaps"),
    )
    predictor = Predictor(
        model or default_model_path(),
        device=device,
        encoder_weights=parse_encoder_weights(encoder_weights),
    )
    bundle = predictor.bundle
    geo_genes = parse_genes(genes) if genes else None
    heat_genes = parse_genes(heatmaps) if heatmaps else []
    bundle.check_genes(geo_genes)
    bundle.check_genes(heat_genes or None)
    geom = None
    if region is not None:
        from stimage.cli._common import read_region_geojson

        geom = read_region_geojson(region)

    default_genes = geo_genes is None
    if geo_genes is None:
        geo_genes = list(bundle.genes[:DEFAULT_GEOJSON_GENES])
    # What the outputs are made of; the predictions in the store do not depend on it.
    outputs = {"geojson_genes": geo_genes, "heatmaps": heat_genes, "cells": cells}
    was_complete = (
        not overwrite and (parts / "state.json").exists() and SlideJob.open(parts).complete
    )
    bars = ProgressBars(disable=ctx.obj.get("quiet", False) if ctx.obj else False)
    try:
        job = run_slide_job(
            predictor,
            slide,
            parts,
            region=geom,
            mpp=mpp,
            level=level,
            batch_size=batch_size,
            chunk_batches=chunk_batches,
            overwrite=overwrite,
            progress=lambda d, t: bars(slide.name, d, t),
        )
    finally:
        bars.close()
    previous = job.read_outputs() if was_complete else None
    if was_complete:
        if previous == outputs and out.exists() and h5ad.exists():
            click.echo(f"{slide.name}: already predicted ({out}); --overwrite to redo")
            return
        missing = [g for g in dict.fromkeys(geo_genes + heat_genes) if g not in job.genes]
        if missing:
            raise SlideJobChangedError(
                f"{parts}: the stored predictions lack {missing[:5]}; use --overwrite to predict again"
            )
        click.echo(
            f"{slide.name}: reusing the finished predictions in {parts}; rewriting the outputs "
            "from them (nothing is predicted again)",
            err=True,
        )
    if default_genes and len(bundle.genes) > len(geo_genes):
        click.echo(
            f"GeoJSON: the model's first {len(geo_genes)} of {len(bundle.genes)} genes "
            "(--genes to choose; the h5ad holds all)",
            err=True,
        )
    n = _write_geojson(job, out, geo_genes, slide, geom, cells, mpp)
    job.to_anndata().write_h5ad(h5ad)
    written = [out, h5ad]
    for old in (previous or {}).get("heatmaps", []):
        if old not in heat_genes:
            (heat_dir / f"{_safe(old)}.png").unlink(missing_ok=True)
    if heat_genes:
        written += _write_heatmaps(job, slide, mpp, heat_genes, heat_dir)
    job.record_outputs(outputs)
    write_run_metadata(
        parts,
        "predict-slide",
        ctx.params,
        {"model": str(bundle.path), "tiles": job.state["n_tiles"]},
    )
    click.echo(f"{n} objects")
    for w in written:
        click.echo(f"wrote {w}")


def _stem(out: Path) -> str:
    name = out.name
    for suf in (".geojson.gz", ".json.gz", ".geojson", ".json", ".gz"):
        if name.lower().endswith(suf):
            return name[: -len(suf)]
    return name


def _write_geojson(
    job: Any, out: Path, genes: list[str], slide: Path, geom: Any, cells: bool, mpp: float | None
) -> int:
    """Stream tile Features chunk by chunk (and cells per region polygon) into ``out``."""
    from stimage.pipelines import region_cell_features, slide_job_features
    from stimage.qupath import FeatureCollectionWriter

    with FeatureCollectionWriter(out) as w:
        w.write_all(slide_job_features(job, genes))
        if cells:
            from stimage.data import open_slide
            from stimage.models import default_celltype_model_path, load_celltype_model

            ct = load_celltype_model(default_celltype_model_path())
            with open_slide(slide, mpp=mpp) as s:
                w.write_all(region_cell_features(s, geom, ct))
        return int(w.count)


def _write_heatmaps(
    job: Any, slide: Path, mpp: float | None, genes: list[str], folder: Path
) -> list[Path]:
    """One PNG per gene: the predicted mean per tile over a slide thumbnail, with a colour bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from stimage.data import open_slide

    with open_slide(slide, mpp=mpp) as s:
        thumb = s.thumbnail(max_side=1024)
        w0, h0 = s.dimensions
    t = job.tiles()
    rows, cols, boxes = t["rows"], t["cols"], t["boxes"]
    r0, c0 = rows.min(), cols.min()
    grid = np.full((len(genes), rows.max() - r0 + 1, cols.max() - c0 + 1), np.nan, np.float32)
    for idx, pred in job.iter_chunks(genes):
        grid[:, rows[idx] - r0, cols[idx] - c0] = pred.mean.T
    # Grid extent in level-0 pixels (tiles are the same size on a regular grid).
    x0 = boxes[cols == c0, 0].min()
    y0 = boxes[rows == r0, 1].min()
    tw, th = boxes[0, 2], boxes[0, 3]
    extent = (x0, x0 + tw * grid.shape[2], y0 + th * grid.shape[1], y0)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, g in enumerate(genes):
        fig, ax = plt.subplots(figsize=(6, 6 * h0 / max(w0, 1) + 0.5))
        ax.imshow(thumb, extent=(0, w0, h0, 0))
        im = ax.imshow(grid[k], extent=extent, cmap="viridis", alpha=0.75, interpolation="nearest")
        ax.set_xlim(0, w0)
        ax.set_ylim(h0, 0)
        ax.set_axis_off()
        ax.set_title(f"{g}: predicted log1p(CP10k)")
        fig.colorbar(im, ax=ax, shrink=0.8)
        p = folder / f"{_safe(g)}.png"
        fig.savefig(p, dpi=100, bbox_inches="tight")
        plt.close(fig)
        paths.append(p)
    return paths


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
