"""``stimage explain``: which nuclei of a tile drove the predicted expression."""

from __future__ import annotations

from pathlib import Path

import click

from stimage.cli._common import write_run_metadata


@click.command()
@click.argument("slide", type=click.Path(path_type=Path))
@click.option(
    "--model",
    "-m",
    type=click.Path(path_type=Path),
    default=None,
    help="Model folder [default: the bundled default model].",
)
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
@click.option(
    "--target",
    type=click.Choice(["mean", "p_high"]),
    default="mean",
    show_default=True,
    help="Explain the predicted expression or P(high).",
)
@click.option(
    "--method",
    type=click.Choice(["lime", "occlusion", "both"]),
    default="lime",
    show_default=True,
    help="LIME (the paper's method) or the faster per-nucleus occlusion.",
)
@click.option(
    "--num-samples",
    type=click.IntRange(min=10),
    default=1000,
    show_default=True,
    help="LIME perturbations.",
)
@click.option(
    "--segmenter", default="classical", show_default=True, help="Nucleus segmentation backend."
)
@click.option(
    "--mpp", type=click.FloatRange(min=0.01), default=None, help="µm per pixel of the slide."
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", "-o", type=click.Path(path_type=Path), required=True, help="Output folder.")
@click.option(
    "--encoder-weights", multiple=True, metavar="NAME=PATH", help="Weights file of an encoder."
)
@click.option("--device", default=None, help="cpu, cuda ... [default: GPU if available].")
@click.pass_context
def explain(
    ctx: click.Context,
    slide: Path,
    model: Path | None,
    tile: str,
    genes: tuple[str, ...],
    target: str,
    method: str,
    num_samples: int,
    segmenter: str,
    mpp: float | None,
    seed: int,
    out: Path,
    encoder_weights: tuple[str, ...],
    device: str | None,
) -> None:
    """Score every nucleus of one tile of SLIDE for what it adds to the prediction of each --gene.

    Writes explain.geojson (the nuclei as QuPath detections with "LIME: GENE" measurements,
    and the tile), explain.csv (one row per nucleus) and explain.png (overlays).
    """
    from stimage.cli._common import ProgressBars, parse_encoder_weights
    from stimage.data import open_slide
    from stimage.errors import ConfigError
    from stimage.models import Predictor, default_model_path
    from stimage.pipelines import (
        explain_tile,
        plot_explanation,
        tile_box,
        write_explanation_geojson,
    )

    try:
        spec = [float(v) for v in tile.split(",")]
    except ValueError:
        raise ConfigError(f"--tile takes numbers, CX,CY or X,Y,W,H; got {tile!r}") from None
    predictor = Predictor(
        model or default_model_path(),
        device=device,
        encoder_weights=parse_encoder_weights(encoder_weights),
    )
    gene_list = predictor.bundle.check_genes(list(genes))
    out.mkdir(parents=True, exist_ok=True)
    bars = ProgressBars(disable=ctx.obj.get("quiet", False))
    methods = ["lime", "occlusion"] if method == "both" else [method]
    results = {}
    try:
        with open_slide(slide, mpp=mpp) as s:
            box = tile_box(s, predictor.tile_um, spec)
            for m in methods:
                results[m] = explain_tile(
                    predictor,
                    s,
                    box,
                    gene_list,
                    target=target,
                    method=m,
                    num_samples=num_samples,
                    segmenter=segmenter,
                    seed=seed,
                    progress=lambda d, t, m=m: bars(m, d, t),
                )
    finally:
        bars.close()
    first = results[methods[0]]
    written = [write_explanation_geojson(list(results.values()), out / "explain.geojson")]
    import pandas as pd

    table = first.nuclei.features[["centroid_x", "centroid_y"]].copy()
    for m, r in results.items():
        for j, t in enumerate(r.explanation.targets):
            table[f"{m.upper()}: {t}"] = r.explanation.scores[:, j]
    table.to_csv(out / "explain.csv", index_label="nucleus", float_format="%.5g")
    written.append(out / "explain.csv")
    for m, r in results.items():
        written.append(plot_explanation(r, out / f"explain_{m}.png"))
    if len(results) == 2:
        from stimage.explain import agreement

        agr = agreement(results["lime"].explanation, results["occlusion"].explanation)
        click.echo(pd.DataFrame(agr).to_string(index=False))
    write_run_metadata(out, "explain", ctx.params, {"model": str(predictor.bundle.path)})
    n = len(first.nuclei)
    click.echo(
        f"tile {tuple(round(v) for v in first.box)}: {n} nuclei explained for {', '.join(gene_list)}"
    )
    for r in results.values():
        e = r.explanation
        click.echo(f"{e.method}: {e.num_samples} model inputs in {e.seconds:.1f} s")
    for w in written:
        click.echo(f"wrote {w}")
