"""``stimage explain``: which nuclei of a tile drove the predicted expression."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from stimage.cli._common import ProgressBars, write_run_metadata
from stimage.cli._options import (
    device_option,
    encoder_weights_option,
    explain_options,
    model_option,
    mpp_option,
    out_option,
    segmenter_option,
)

if TYPE_CHECKING:
    from stimage.pipelines import TileExplanation


@click.command()
@click.argument("slide", type=click.Path(path_type=Path))
@model_option()
@click.option(
    "--tile",
    "tile",
    required=True,
    metavar="CX,CY | X,Y,W,H",
    help="The tile: its centre (the model's tile size) or its box, in full-resolution pixels.",
)
@click.option(
    "--gene", "genes", multiple=True, required=True, help="Gene to explain (repeat for several)."
)
@explain_options(both=True)
@segmenter_option()
@mpp_option()
@out_option("Output folder (made when the explanation is written).")
@encoder_weights_option
@device_option()
@click.pass_context
def explain(
    ctx: click.Context,
    slide: Path,
    model: Path | None,
    tile: str,
    genes: tuple[str, ...],
    method: str,
    target: str,
    num_samples: int,
    seed: int,
    segmenter: str,
    mpp: float | None,
    out: Path,
    encoder_weights: tuple[str, ...],
    device: str | None,
) -> None:
    """Score every nucleus of one tile of SLIDE for what it adds to the prediction of each --gene.

    Writes into OUT: explain.geojson (the nuclei as QuPath detections with "LIME: GENE"
    measurements, and the tile), explain.csv (one row per nucleus) and one overlay per method,
    explain_lime.png and/or explain_occlusion.png.
    """
    from stimage.cli._common import check_image, load_predictor
    from stimage.data import open_slide
    from stimage.errors import ConfigError
    from stimage.pipelines import explain_tile, tile_box

    try:
        spec = [float(v) for v in tile.split(",")]
    except ValueError:
        raise ConfigError(f"--tile takes numbers, CX,CY or X,Y,W,H; got {tile!r}") from None
    if len(spec) not in (2, 4):
        raise ConfigError(f"--tile takes CX,CY (its centre) or X,Y,W,H; got {tile!r}")
    check_image(slide, mpp)
    bars = ProgressBars.of(ctx)
    predictor = load_predictor(
        model, device=device, encoder_weights=encoder_weights, genes=[list(genes)], bars=bars
    )
    methods = ["lime", "occlusion"] if method == "both" else [method]
    results: dict[str, TileExplanation] = {}
    try:
        with open_slide(slide, mpp=mpp) as s:
            box = tile_box(s, predictor.tile_um, spec)
            for m in methods:

                def progress(done: int, total: int, key: str = m) -> None:
                    bars(key, done, total)

                bars.stage(f"{m}: segmenting the nuclei of tile {tuple(round(v) for v in box)} ...")
                results[m] = explain_tile(
                    predictor,
                    s,
                    box,
                    list(genes),
                    target=target,
                    method=m,
                    num_samples=num_samples,
                    segmenter=segmenter,
                    seed=seed,
                    progress=progress,
                )
    finally:
        bars.close()
    written = _write(results, out)
    write_run_metadata(out, "explain", ctx.params, {"model": str(predictor.bundle.path)})
    first = results[methods[0]]
    click.echo(
        f"tile {tuple(round(v) for v in first.box)}: {len(first.nuclei)} nuclei explained for "
        f"{', '.join(genes)}"
    )
    pred = ", ".join(
        f"{t} {v:.3g}"
        for t, v in zip(first.explanation.targets, first.explanation.prediction, strict=True)
    )
    if first.context_tiles is None:
        click.echo(f"prediction: {pred}")
    elif first.context_tiles:
        click.echo(
            f"prediction: {pred} (with the tile's {first.context_tiles} neighbouring tissue tiles "
            "held fixed, as predict-slide predicts it)"
        )
    else:
        click.echo(
            f"prediction: {pred} (the tile alone: no tissue tile around it within the model's "
            "spatial context)"
        )
    for r in results.values():
        e = r.explanation
        click.echo(f"{e.method}: {e.num_samples} model inputs in {e.seconds:.1f} s")
    for w in written:
        click.echo(f"wrote {w}")


def _write(results: dict[str, TileExplanation], out: Path) -> list[Path]:
    """The GeoJSON, the table and one overlay per method, into ``out`` (made now)."""
    import pandas as pd

    from stimage.pipelines import plot_explanation, score_name, write_explanation_geojson

    out.mkdir(parents=True, exist_ok=True)
    written = [write_explanation_geojson(list(results.values()), out / "explain.geojson")]
    first = next(iter(results.values()))
    table = first.nuclei.features[["centroid_x", "centroid_y"]].copy()
    for m, r in results.items():
        for j, t in enumerate(r.explanation.targets):
            table[score_name(m, t)] = r.explanation.scores[:, j]
    table.to_csv(out / "explain.csv", index_label="nucleus", float_format="%.5g")
    written.append(out / "explain.csv")
    for m, r in results.items():
        written.append(plot_explanation(r, out / f"explain_{m}.png"))
    if len(results) == 2:
        from stimage.explain import agreement

        agr = agreement(results["lime"].explanation, results["occlusion"].explanation)
        click.echo(pd.DataFrame(agr).to_string(index=False))
    return written
