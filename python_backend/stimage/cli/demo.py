"""``stimage demo``: the main job on the bundled example.

Today it runs the data pipeline (read the sample, derive the scale, detect tissue, cut,
check and stain-normalise tiles into a tile store) and draws what it did. Later it grows
into the full demo: expression with uncertainty, cells and an explanation.
"""

from __future__ import annotations

from pathlib import Path

import click

from stimage.cli._common import ProgressBars, write_run_metadata


@click.command()
@click.option(
    "--out",
    "-o",
    type=click.Path(path_type=Path),
    default=Path("stimage-demo-output"),
    show_default=True,
    help="Output folder.",
)
@click.option("--overwrite", is_flag=True, help="Redo everything instead of reusing finished work.")
@click.pass_context
def demo(ctx: click.Context, out: Path, overwrite: bool) -> None:
    """Run the pipeline on the bundled HER2ST example and say what it produced."""
    import time

    import cv2
    import numpy as np

    from stimage.constants import Key
    from stimage.data import load_dataset, open_sample_slide
    from stimage.examples import example_path
    from stimage.tiles import TileSettings, TileStore, detect_tissue, prepare_dataset
    from stimage.tiles._preview import contact_sheet, qc_overview

    t0 = time.perf_counter()
    example = example_path()
    ds = load_dataset(example)
    click.echo(
        f"example: {example.name} ({len(ds)} section, see {example / 'README.md'} for its source)"
    )
    settings = TileSettings()
    bars = ProgressBars(disable=ctx.obj.get("quiet", False))
    try:
        report = prepare_dataset(ds, out / "tiles", settings, overwrite=overwrite, progress=bars)
    finally:
        bars.close()
    store = TileStore(out / "tiles")
    sid = ds.ids[0]
    spots = store.spots(sid, kept_only=False)
    meta = spots.uns[Key.UNS]
    kept = spots.obs[Key.KEPT].to_numpy(bool)
    slide = open_sample_slide(spots)
    mask = detect_tissue(slide, settings.tissue)
    thumb = slide.thumbnail(max_side=1200)
    overview = qc_overview(thumb, mask, np.asarray(spots.obsm["tile_box"]), kept)
    cv2.imwrite(str(out / "tiles_overview.png"), overview[..., ::-1])
    kept_spots = spots[kept]
    pick = np.linspace(0, kept_spots.n_obs - 1, num=min(8, kept_spots.n_obs)).round().astype(int)
    boxes = np.asarray(kept_spots.obsm["tile_box"])[pick]
    raw = np.stack([slide.read_region(*b, out_size=(settings.tile_px,) * 2) for b in boxes])
    normalised = np.asarray(store.tiles(sid)[kept_spots.obs[Key.TILE_INDEX].to_numpy()[pick]])
    cv2.imwrite(
        str(out / "tiles_raw_vs_normalised.png"), contact_sheet([raw, normalised])[..., ::-1]
    )
    slide.close()
    write_run_metadata(out, "demo", ctx.params)
    r = report.samples[0]
    click.echo(
        f"scale: {meta[Key.MPP]:.4f} µm/px, from the {meta[Key.MPP_SOURCE]} (200 µm legacy ST pitch)"
    )
    click.echo(f"tissue: {mask.area_mm2:.1f} mm² on the slide")
    click.echo(
        f"tiles: {r.kept} of {r.tiles} spots kept at {meta['tile_um']:g} µm -> {settings.tile_px} px, "
        f"stain-normalised ({settings.stain}); dropped: {r.dropped or 'none'}"
    )
    click.echo("wrote:")
    click.echo(
        f"  {out / 'tiles'}  tile store (train with it; `stimage prepare` makes one from your data)"
    )
    click.echo(f"  {out / 'tiles_overview.png'}  tissue outline and tiles (blue kept, red dropped)")
    click.echo(
        f"  {out / 'tiles_raw_vs_normalised.png'}  8 tiles before (top) and after stain normalisation"
    )
    click.echo(f"done in {time.perf_counter() - t0:.1f} s")
