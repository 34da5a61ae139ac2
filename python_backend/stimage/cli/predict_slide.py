"""``stimage predict-slide``: a whole H&E slide to QuPath GeoJSON, AnnData and heatmaps."""

from __future__ import annotations

from pathlib import Path

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
    from stimage.cli._common import (
        ProgressBars,
        parse_encoder_weights,
        parse_genes,
        read_region_geojson,
    )
    from stimage.errors import ConfigError
    from stimage.models import Predictor, default_model_path
    from stimage.pipelines import output_paths, predict_slide_files

    if region is not None and tissue:
        raise ConfigError("give --region or --tissue, not both")
    if cells and region is None:
        raise ConfigError(
            "--cells needs --region: cell detection over a whole slide is unbounded; "
            "draw the regions of interest and export them as GeoJSON"
        )
    predictor = Predictor(
        model or default_model_path(),
        device=device,
        encoder_weights=parse_encoder_weights(encoder_weights),
    )
    geom = read_region_geojson(region) if region is not None else None
    bars = ProgressBars(disable=ctx.obj.get("quiet", False) if ctx.obj else False)
    try:
        res = predict_slide_files(
            predictor,
            slide,
            out,
            region=geom,
            genes=parse_genes(genes) if genes else None,
            heatmaps=parse_genes(heatmaps) if heatmaps else [],
            cells=cells,
            mpp=mpp,
            level=level,
            batch_size=batch_size,
            chunk_batches=chunk_batches,
            overwrite=overwrite,
            progress=lambda d, t: bars(slide.name, d, t),
        )
    finally:
        bars.close()
    parts = output_paths(out)[0]
    if res.status == "unchanged":
        click.echo(f"{slide.name}: already predicted ({out}); --overwrite to redo")
        return
    if res.status == "rewritten":
        click.echo(
            f"{slide.name}: reusing the finished predictions in {parts}; rewriting the outputs "
            "from them (nothing is predicted again)",
            err=True,
        )
    n_genes = len(predictor.bundle.genes)
    if res.default_genes and n_genes > len(res.geojson_genes):
        click.echo(
            f"GeoJSON: the model's first {len(res.geojson_genes)} of {n_genes} genes "
            "(--genes to choose; the h5ad holds all)",
            err=True,
        )
    write_run_metadata(
        parts,
        "predict-slide",
        ctx.params,
        {"model": str(predictor.bundle.path), "tiles": res.job.state["n_tiles"]},
    )
    click.echo(f"{res.n_objects} objects")
    for w in res.written:
        click.echo(f"wrote {w}")
