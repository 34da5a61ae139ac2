"""``stimage predict``: expression with uncertainty for every spot of a dataset or tile of a slide."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from stimage.cli._common import ProgressBars, write_run_metadata
from stimage.cli._options import (
    device_option,
    encoder_weights_option,
    genes_option,
    level_option,
    model_option,
    mpp_option,
    out_option,
    overwrite_option,
    region_option,
    samples_option,
)

if TYPE_CHECKING:
    from stimage.data import Dataset
    from stimage.models import Predictor

_DATASET_SUFFIXES = (".csv", ".tsv", ".yaml", ".yml", ".json")


@click.command()
@click.argument("target", type=click.Path(path_type=Path))
@model_option()
@out_option("Output folder.")
@genes_option(
    "Comma-separated genes, or a file with one per line (default: all the model predicts)."
)
@region_option("GeoJSON with the region(s) to tile on a slide (default: all tissue).")
@samples_option("Comma-separated sample ids of a dataset TARGET to predict (default: all).")
@mpp_option()
@level_option
@encoder_weights_option
@device_option()
@overwrite_option("Redo samples already predicted.")
@click.pass_context
def predict(
    ctx: click.Context,
    target: Path,
    model: Path | None,
    out: Path,
    genes: str | None,
    region: Path | None,
    samples: str | None,
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
    from stimage.cli._common import (
        check_image,
        load_predictor,
        parse_genes,
        parse_ids,
        read_region_geojson,
    )
    from stimage.errors import ConfigError

    dataset = _dataset(target, mpp, parse_ids(samples))
    if dataset is None:
        check_image(target, mpp)
        if samples:
            raise ConfigError(f"--samples picks sections of a dataset; {target} is a slide image")
    geom = read_region_geojson(region) if region is not None and dataset is None else None
    gene_list = parse_genes(genes) if genes else None
    bars = ProgressBars.of(ctx)
    predictor = load_predictor(
        model, device=device, encoder_weights=encoder_weights, genes=[gene_list], bars=bars
    )
    out.mkdir(parents=True, exist_ok=True)
    try:
        if dataset is not None:
            written = _predict_dataset(predictor, dataset, out, gene_list, level, overwrite, bars)
        else:
            from stimage.pipelines import predict_slide, write_predictions

            name = target.stem
            bars.stage(f"{name}: finding tissue and laying tiles ...")
            a = predict_slide(
                predictor,
                target,
                region=geom,
                mpp=mpp,
                genes=gene_list,
                level=level,
                progress=lambda d, t: bars(name, d, t),
            )
            written = write_predictions(a, out, name)
    finally:
        bars.close()
    write_run_metadata(out, "predict", ctx.params, {"model": str(predictor.bundle.path)})
    for w in written:
        click.echo(f"wrote {w}")


def _dataset(target: Path, mpp: float | None, samples: list[str] | None) -> Dataset | None:
    """TARGET as a dataset (its chosen samples), or None when it is a slide image."""
    from stimage.data import detect_format, load_dataset
    from stimage.errors import UnsupportedFormatError

    try:
        detect_format(target)
    except UnsupportedFormatError:
        if not (target.is_dir() or target.suffix.lower() in _DATASET_SUFFIXES):
            return None
    ds = load_dataset(target, mpp=mpp)
    return ds.select(samples) if samples else ds


def _predict_dataset(
    predictor: Predictor,
    dataset: Dataset,
    out: Path,
    genes: list[str] | None,
    level: float,
    overwrite: bool,
    bars: ProgressBars,
) -> list[Path]:
    """Every spot of each sample not predicted yet (all with ``overwrite``)."""
    from stimage.pipelines import predict_spots, write_predictions

    written: list[Path] = []
    for spec in dataset:
        sid = spec.sample_id
        dest = out / f"{sid}.h5ad"
        if dest.exists() and not overwrite:
            click.echo(f"{sid}: already predicted ({dest}); --overwrite to redo")
            continue

        def progress(done: int, total: int, key: str = sid) -> None:
            bars(key, done, total)

        bars.stage(f"{sid}: reading the sample ...")
        a = predict_spots(predictor, spec.load(), genes=genes, level=level, progress=progress)
        written += write_predictions(a, out, sid)
    return written
