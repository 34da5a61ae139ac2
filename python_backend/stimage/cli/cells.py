"""``stimage cells``: nuclei of a slide region with their cell types, as QuPath cells."""

from __future__ import annotations

from pathlib import Path

import click

from stimage.cli._common import write_run_metadata


@click.command()
@click.argument("slide", type=click.Path(path_type=Path))
@click.option(
    "--region",
    type=click.Path(path_type=Path),
    default=None,
    help="GeoJSON with the region(s) (e.g. QuPath annotations exported).",
)
@click.option(
    "--box", default=None, metavar="X,Y,W,H", help="A rectangular region in full-resolution pixels."
)
@click.option(
    "--model",
    "-m",
    type=click.Path(path_type=Path),
    default=None,
    help="Cell-type model folder [default: the bundled one; none: only segment].",
)
@click.option("--no-types", is_flag=True, help="Only segment nuclei; do not type them.")
@click.option("--segmenter", default="classical", show_default=True, help="classical or cellpose.")
@click.option(
    "--mpp", type=click.FloatRange(min=0.01), default=None, help="µm per pixel of the slide."
)
@click.option(
    "--out",
    "-o",
    type=click.Path(path_type=Path),
    required=True,
    help="Output GeoJSON (cells.geojson); a CSV with one row per cell is written beside it.",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
@click.pass_context
def cells(
    ctx: click.Context,
    slide: Path,
    region: Path | None,
    box: str | None,
    model: Path | None,
    no_types: bool,
    segmenter: str,
    mpp: float | None,
    out: Path,
    overwrite: bool,
) -> None:
    """Segment the nuclei of a region of SLIDE and classify each cell's type.

    Cells come back as QuPath cell objects (nucleus outline, class, "Immune: probability" ...,
    "Cell: type entropy", nucleus morphology): drag the GeoJSON onto the image in QuPath.
    A CSV (one row per cell) and an overlay PNG are written beside it.
    """
    from stimage.cli._common import ProgressBars, read_region_geojson
    from stimage.data import open_slide
    from stimage.errors import ConfigError
    from stimage.models import default_celltype_model_path, load_celltype_model
    from stimage.pipelines import detect_cells
    from stimage.qupath import write_geojson

    if region is not None and box is not None:
        raise ConfigError("give either --region or --box, not both")
    if region is None and box is None:
        raise ConfigError(
            "give the region to analyse: --region FILE.geojson (e.g. a QuPath annotation) or "
            "--box X,Y,W,H in full-resolution pixels"
        )
    if out.suffix.lower() not in (".geojson", ".json", ".gz"):
        raise ConfigError(f"--out must be a .geojson file, got {out}")
    if out.exists() and not overwrite:
        raise ConfigError(f"{out} exists; use --overwrite to replace it")
    if box is not None:
        try:
            area: object = tuple(float(v) for v in box.split(","))
        except ValueError:
            raise ConfigError(f"--box takes four numbers X,Y,W,H; got {box!r}") from None
        if len(area) != 4:  # type: ignore[arg-type]
            raise ConfigError(f"--box takes four numbers X,Y,W,H; got {box!r}")
    else:
        assert region is not None
        area = read_region_geojson(region)
    clf = None
    if not no_types:
        path = model
        if path is None:
            try:
                path = default_celltype_model_path()
            except FileNotFoundError as e:
                raise ConfigError(f"{e}; or use --no-types to only segment") from None
        clf = load_celltype_model(path)
    bars = ProgressBars(disable=ctx.obj.get("quiet", False))
    try:
        with open_slide(slide, mpp=mpp) as s:
            result = detect_cells(
                s,
                area,
                model=clf,
                segmenter=segmenter,
                progress=lambda d, t: bars("segmenting", d, t),
            )
    finally:
        bars.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    n = write_geojson(out, result.features())
    table = result.nuclei.features.copy()
    if result.types is not None:
        table = table.join(result.types.drop(columns=["centroid_x", "centroid_y"], errors="ignore"))
    csv = out.with_suffix(".csv") if out.suffix != ".gz" else out.with_name(out.stem + ".csv")
    table.to_csv(csv, index_label="cell", float_format="%.5g")
    png = csv.with_suffix(".png")
    if len(result):
        from stimage.pipelines import plot_cells

        with open_slide(slide, mpp=mpp) as s:
            plot_cells(s, result, png)
    write_run_metadata(out.parent, "cells", ctx.params, {"celltype_model": result.model})
    click.echo(f"{n} cells in the region")
    comp = result.composition()
    if len(comp):
        click.echo(", ".join(f"{k}: {v:.0%}" for k, v in comp.items()))
    click.echo(f"wrote {out}")
    click.echo(f"wrote {csv}")
    if png.exists():
        click.echo(f"wrote {png}")
