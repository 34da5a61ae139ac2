"""``stimage predict-slide``: a whole H&E slide to QuPath GeoJSON, AnnData and heatmaps."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from stimage.cli._common import ProgressBars, write_run_metadata
from stimage.cli._options import (
    batch_size_option,
    device_option,
    encoder_weights_option,
    genes_option,
    level_option,
    model_option,
    mpp_option,
    options,
    out_option,
    overwrite_option,
    region_option,
)
from stimage.constants import DEFAULT_GEOJSON_GENES

if TYPE_CHECKING:
    from stimage.models import Predictor
    from stimage.pipelines import SlideFiles


#: How tiles are batched through the encoders and stored (memory and resume granularity).
_BATCH_OPTIONS = options(
    batch_size_option(),
    click.option(
        "--chunk-batches",
        type=click.IntRange(1, 100000),
        default=16,
        show_default=True,
        help="Batches per chunk of the resumable store.",
    ),
)


@click.command("predict-slide")
@click.argument("slide", type=click.Path(path_type=Path))
@model_option()
@out_option(
    "Output GeoJSON (OUT.geojson; .geojson.gz to compress). Beside it: OUT.h5ad, "
    "OUT.heatmaps/ and the resumable store OUT.parts/."
)
@region_option("GeoJSON with the region(s) to tile (a QuPath annotation export).")
@click.option("--tissue", is_flag=True, help="Tile all detected tissue (the default).")
@genes_option(
    f"Genes for the GeoJSON (comma-separated or a file) [default: the model's first "
    f"{DEFAULT_GEOJSON_GENES}]. The h5ad holds all the model's genes."
)
@click.option("--heatmaps", default=None, help="Genes to draw as heatmap PNGs (comma-separated).")
@mpp_option()
@level_option
@click.option("--cells", is_flag=True, help="Also detect and type cells (needs --region).")
@_BATCH_OPTIONS
@device_option()
@encoder_weights_option
@overwrite_option("Start again, discarding earlier results.")
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
    --overwrite. Writes OUT (QuPath GeoJSON tiles with "GENE: mean", "GENE: aleatoric sd",
    "GENE: epistemic sd" and interval measurements), OUT.h5ad (all genes; held whole in
    memory at the end, n_tiles x n_genes x 6 float32), and with --heatmaps one PNG per gene
    in OUT.heatmaps/.
    """
    import time

    from stimage.cli._common import (
        check_image,
        load_predictor,
        parse_genes,
        read_region_geojson,
    )
    from stimage.pipelines import predict_slide_files

    t0 = time.perf_counter()
    _check_area(region, tissue, cells)
    check_image(slide, mpp)
    geom = read_region_geojson(region) if region is not None else None
    gene_list = parse_genes(genes) if genes else None
    heat_list = parse_genes(heatmaps) if heatmaps else []
    bars = ProgressBars.of(ctx)
    predictor = load_predictor(
        model,
        device=device,
        encoder_weights=encoder_weights,
        genes=[gene_list, heat_list or None],
        bars=bars,
    )
    bars.stage(f"{slide.name}: finding tissue and laying tiles ...")
    try:
        res = predict_slide_files(
            predictor,
            slide,
            out,
            region=geom,
            genes=gene_list,
            heatmaps=heat_list,
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
    _report(ctx, slide, out, predictor, res, time.perf_counter() - t0)


def _check_area(region: Path | None, tissue: bool, cells: bool) -> None:
    """--region or --tissue (the default), and --cells only with a region."""
    from stimage.errors import ConfigError

    if region is not None and tissue:
        raise ConfigError("give --region or --tissue, not both")
    if cells and region is None:
        raise ConfigError(
            "--cells needs --region: cell detection over a whole slide is unbounded; "
            "draw the regions of interest and export them as GeoJSON"
        )


def _report(
    ctx: click.Context,
    slide: Path,
    out: Path,
    predictor: Predictor,
    res: SlideFiles,
    seconds: float,
) -> None:
    """Say what was done, record the run beside the store, and write the HTML report."""
    from stimage.pipelines import output_paths

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
    report = _html_report(ctx, slide, predictor, res, seconds)
    click.echo(f"{res.n_objects} objects")
    for w in [*res.written, report]:
        click.echo(f"wrote {w}")


def _html_report(
    ctx: click.Context, slide: Path, predictor: Predictor, res: SlideFiles, seconds: float
) -> Path:
    """``OUT.report.html`` beside the GeoJSON: model, numbers, heatmaps, warnings, settings."""
    from stimage.pipelines import slide_report

    settings = {"slide": str(slide), **{k: v for k, v in ctx.params.items() if k != "slide"}}
    report = slide_report(
        predictor, slide, res, seconds, settings, region_given=bool(ctx.params.get("region"))
    )
    return report.write(res.h5ad.with_suffix(".report.html"))
