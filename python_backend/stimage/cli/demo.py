"""``stimage demo``: the main job on the bundled example.

Reads the bundled HER2ST crop, derives its scale, detects tissue, cuts and stain-normalises
tiles into a tile store, then predicts marker-gene expression with aleatoric and epistemic
uncertainty with the bundled default model, and draws what it did. Later work adds cells and
an explanation.
"""

from __future__ import annotations

from pathlib import Path

import click

from stimage.cli._common import ProgressBars, write_run_metadata

#: Marker genes shown by the demo (those of the paper's panel that the model predicts).
DEMO_GENES = ("COX6C", "FASN", "CD74", "SPARC", "B2M", "TFF3")


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
    r = report.samples[0]
    click.echo(
        f"scale: {meta[Key.MPP]:.4f} µm/px, from the {meta[Key.MPP_SOURCE]} (200 µm legacy ST pitch)"
    )
    click.echo(f"tissue: {mask.area_mm2:.1f} mm² on the slide")
    click.echo(
        f"tiles: {r.kept} of {r.tiles} spots kept at {meta['tile_um']:g} µm -> {settings.tile_px} px, "
        f"stain-normalised ({settings.stain}); dropped: {r.dropped or 'none'}"
    )
    wrote = [
        (out / "tiles", "tile store (train with it; `stimage prepare` makes one from your data)"),
        (out / "tiles_overview.png", "tissue outline and tiles (blue kept, red dropped)"),
        (out / "tiles_raw_vs_normalised.png", "8 tiles before (top) and after stain normalisation"),
    ]
    wrote += _expression(ds, out, overwrite, ctx.obj.get("quiet", False))
    write_run_metadata(out, "demo", ctx.params)
    click.echo("wrote:")
    for p, what in wrote:
        click.echo(f"  {p}  {what}")
    click.echo(f"done in {time.perf_counter() - t0:.1f} s")


def _expression(ds, out: Path, overwrite: bool, quiet: bool) -> list[tuple[Path, str]]:  # type: ignore[no-untyped-def]
    """Predict marker genes with the default model; maps and tables."""
    import anndata as ad
    import numpy as np

    from stimage.cli.predict import _write
    from stimage.constants import Key
    from stimage.data import open_sample_slide
    from stimage.errors import InputFileNotFoundError
    from stimage.evaluation import expression_maps
    from stimage.models import Predictor, default_model_path, predict_spots

    try:
        model = default_model_path()
    except InputFileNotFoundError as e:
        click.echo(f"expression: skipped ({e})")
        return []
    spec = ds.samples[0]
    h5 = out / f"{spec.sample_id}.h5ad"
    predictor = Predictor(model)
    genes = [g for g in DEMO_GENES if g in predictor.bundle.genes]
    if h5.exists() and not overwrite:
        a = ad.read_h5ad(h5)
    else:
        bars = ProgressBars(disable=quiet)
        try:
            a = predict_spots(
                predictor, spec.load(), progress=lambda d, t: bars("expression", d, t)
            )
        finally:
            bars.close()
        _write(a, out, spec.sample_id)
    sample = spec.load()
    with open_sample_slide(sample) as slide:
        thumb = slide.thumbnail(max_side=1000)
        scale = thumb.shape[1] / slide.dimensions[0]
        um_per_px = slide.mpp / scale
    idx = [list(a.var_names).index(g) for g in genes]
    expression_maps(
        thumb,
        np.asarray(a.obsm[Key.SPATIAL]) * scale,
        {
            "prediction": a.X[:, idx],
            "epistemic sd": a.layers["epistemic_sd"][:, idx],
            "aleatoric sd": a.layers["aleatoric_sd"][:, idx],
        },
        genes,
        shared=("prediction",),
        um_per_px=um_per_px,
        path=out / "expression_maps.png",
    )
    trained_on = predictor.bundle.training.get("samples", [])
    note = " (this section was in its training data)" if spec.sample_id in trained_on else ""
    click.echo(
        f"expression: {len(predictor.bundle.genes)} genes predicted per spot by {predictor.bundle.name}{note}; "
        f"log1p(counts per 10k) with aleatoric and epistemic sd, 90% intervals, P(high)"
    )
    for g, j in zip(genes, idx, strict=True):
        click.echo(
            f"  {g:7s} mean {a.X[:, j].mean():.2f}  aleatoric sd {a.layers['aleatoric_sd'][:, j].mean():.2f}  "
            f"epistemic sd {a.layers['epistemic_sd'][:, j].mean():.3f}"
        )
    return [
        (
            out / f"{spec.sample_id}.csv",
            'per-spot measurements ("COX6C: mean", "...: epistemic sd", ...)',
        ),
        (h5, "the same as AnnData"),
        (
            out / "expression_maps.png",
            f"maps of {', '.join(genes)}: prediction, epistemic and aleatoric sd",
        ),
    ]
