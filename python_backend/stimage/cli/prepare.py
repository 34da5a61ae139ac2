"""``stimage prepare``: cut, check and normalise spot tiles once into a tile store."""

from __future__ import annotations

from pathlib import Path

import click

from stimage.cli._common import (
    ProgressBars,
    parse_ids,
    settings_from_options,
    write_run_metadata,
)
from stimage.cli._options import (
    TILE_SETTING_OPTIONS,
    out_option,
    overwrite_option,
    samples_option,
    tile_options,
)


@click.command()
@click.argument("dataset", type=click.Path(path_type=Path))
@out_option("Tile store folder.")
@tile_options
@samples_option("Comma-separated sample ids to prepare (default: all).")
@click.option(
    "--workers", type=click.IntRange(1, 64), default=2, show_default=True, help="Reader threads."
)
@overwrite_option(
    "Rebuild the selected samples (all by default); with other tile settings than the "
    "store's, every sample of the store must be selected."
)
@click.pass_context
def prepare(
    ctx: click.Context,
    dataset: Path,
    out: Path,
    tile_um: float | None,
    tile_px: int,
    min_coverage: float,
    stain: str,
    stain_target: str,
    tissue_min_od: float,
    mpp: float | None,
    samples: str | None,
    workers: int,
    overwrite: bool,
) -> None:
    """Cut the spot tiles of DATASET into a tile store, once.

    DATASET is a HER2ST-layout folder, a Space Ranger or Xenium output folder, a folder of
    those or of .h5ad files, or a manifest (.csv/.tsv/.yaml/.json) with columns sample_id,
    patient_id, format, path, image, mpp. Tiles are centred on spots, cut at a physical size,
    dropped when they hold too little tissue, stain-normalised, and stored with the spot
    table. Finished samples are skipped; an interrupted run resumes where it stopped. Adding
    samples to an existing store without tile options uses the store's settings.
    """
    from click.core import ParameterSource

    from stimage.data import load_dataset
    from stimage.tiles import prepare_dataset

    settings = settings_from_options(
        tile_um, tile_px, min_coverage, stain, stain_target, tissue_min_od
    )
    if (out / "store.json").exists() and all(
        ctx.get_parameter_source(n) is ParameterSource.DEFAULT for n in TILE_SETTING_OPTIONS
    ):
        from stimage.tiles import TileStore

        settings = TileStore(out).settings
    ds = load_dataset(dataset, mpp=mpp)
    ids = parse_ids(samples)
    if ids:
        ds = ds.select(ids)
    bars = ProgressBars.of(ctx)
    try:
        report = prepare_dataset(
            ds, out, settings, overwrite=overwrite, progress=bars, workers=workers
        )
    finally:
        bars.close()
    for line in report.lines():
        click.echo(line)
    click.echo(f"tile store: {out} ({report.kept} tiles from {len(report.samples)} samples)")
    write_run_metadata(
        out, "prepare", ctx.params, {"samples": [s.__dict__ for s in report.samples]}
    )
