"""``stimage predict``: expression with uncertainty for every spot of a dataset or tile of a slide."""

from __future__ import annotations

from pathlib import Path

import click

from stimage.cli._common import write_run_metadata


@click.command()
@click.argument("target", type=click.Path(path_type=Path))
@click.option(
    "--model",
    "-m",
    "model",
    type=click.Path(path_type=Path),
    default=None,
    help="Model folder [default: the bundled default model].",
)
@click.option("--out", "-o", type=click.Path(path_type=Path), required=True, help="Output folder.")
@click.option(
    "--genes", default=None, help="Comma-separated genes (default: all the model predicts)."
)
@click.option(
    "--region",
    type=click.Path(path_type=Path),
    default=None,
    help="GeoJSON with the region(s) to tile on a slide (default: all tissue).",
)
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
@click.option(
    "--encoder-weights", multiple=True, metavar="NAME=PATH", help="Weights file of an encoder."
)
@click.option("--device", default=None, help="cpu, cuda ... [default: GPU if available].")
@click.option("--overwrite", is_flag=True, help="Redo samples already predicted.")
@click.pass_context
def predict(
    ctx: click.Context,
    target: Path,
    model: Path | None,
    out: Path,
    genes: str | None,
    region: Path | None,
    mpp: float | None,
    level: float,
    encoder_weights: tuple[str, ...],
    device: str | None,
    overwrite: bool,
) -> None:
    """Predict expression for TARGET: a dataset (every spot) or a slide image (grid tiles).

    Writes, per sample or slide, NAME.h5ad (AnnData: predicted log-normalised expression in X;
    aleatoric_sd, epistemic_sd, lower, upper, rate_per_10k and p_high layers; observed counts
    for spots) and NAME.csv (one row per spot or tile, one column per measurement).
    """
    from stimage.cli._common import ProgressBars, parse_encoder_weights, parse_genes
    from stimage.data import detect_format, load_dataset
    from stimage.errors import UnsupportedFormatError
    from stimage.models import Predictor, default_model_path
    from stimage.pipelines import predict_slide, predict_spots, write_predictions

    predictor = Predictor(
        model or default_model_path(),
        device=device,
        encoder_weights=parse_encoder_weights(encoder_weights),
    )
    gene_list = parse_genes(genes) if genes else None
    predictor.bundle.check_genes(gene_list)
    out.mkdir(parents=True, exist_ok=True)
    bars = ProgressBars(disable=ctx.obj.get("quiet", False))
    written = []
    try:
        is_dataset = True
        try:
            detect_format(target)
        except UnsupportedFormatError:
            is_dataset = target.is_dir() or target.suffix.lower() in (
                ".csv",
                ".tsv",
                ".yaml",
                ".yml",
                ".json",
            )
        if is_dataset:
            for spec in load_dataset(target, mpp=mpp):
                dest = out / f"{spec.sample_id}.h5ad"
                if dest.exists() and not overwrite:
                    click.echo(f"{spec.sample_id}: already predicted ({dest}); --overwrite to redo")
                    continue
                a = predict_spots(
                    predictor,
                    spec.load(),
                    genes=gene_list,
                    level=level,
                    progress=lambda d, t, s=spec.sample_id: bars(s, d, t),
                )
                written += write_predictions(a, out, spec.sample_id)
        else:
            geom = None
            if region is not None:
                from stimage.cli._common import read_region_geojson

                geom = read_region_geojson(region)
            a = predict_slide(
                predictor,
                target,
                region=geom,
                mpp=mpp,
                genes=gene_list,
                level=level,
                progress=lambda d, t: bars(target.stem, d, t),
            )
            written += write_predictions(a, out, target.stem)
    finally:
        bars.close()
    write_run_metadata(out, "predict", ctx.params, {"model": str(predictor.bundle.path)})
    for w in written:
        click.echo(f"wrote {w}")
