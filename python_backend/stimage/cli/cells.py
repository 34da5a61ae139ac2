"""``stimage cells``: nuclei of a slide region with their cell types, as QuPath cells."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from stimage.cli._common import ProgressBars, write_run_metadata
from stimage.cli._options import (
    model_option,
    mpp_option,
    out_option,
    overwrite_option,
    region_option,
    segmenter_option,
)

if TYPE_CHECKING:
    import pandas as pd

    from stimage.models import Cells, CellTypeClassifier


@click.command()
@click.argument("slide", type=click.Path(path_type=Path))
@region_option("GeoJSON with the region(s) (e.g. QuPath annotations exported).")
@click.option(
    "--box", default=None, metavar="X,Y,W,H", help="A rectangular region in full-resolution pixels."
)
@model_option("Cell-type model folder [default: the bundled one; none: only segment].")
@click.option("--no-types", is_flag=True, help="Only segment nuclei; do not type them.")
@segmenter_option("classical or cellpose.")
@mpp_option()
@out_option(
    "Output GeoJSON (cells.geojson); a CSV with one row per cell and an overlay PNG are "
    "written beside it."
)
@overwrite_option("Replace an existing output.")
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
    A CSV (one row per cell, the same class and measurement names) and an overlay PNG are
    written beside it. The outputs appear together when the run succeeds; a failed run
    leaves none of them, so running it again needs no --overwrite.
    """
    from stimage.data import open_slide
    from stimage.errors import ConfigError
    from stimage.pipelines import detect_cells

    area = _area(region, box)
    if out.suffix.lower() not in (".geojson", ".json", ".gz"):
        raise ConfigError(f"--out must be a .geojson file, got {out}")
    if out.exists() and not overwrite:
        raise ConfigError(f"{out} exists; use --overwrite to replace it")
    clf = None if no_types else _celltype_model(model)
    bars = ProgressBars.of(ctx)
    bars.stage(f"{slide.name}: segmenting nuclei ...")
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
    csv = out.with_suffix(".csv") if out.suffix != ".gz" else out.with_name(out.stem + ".csv")
    png = csv.with_suffix(".png")
    n, written = _write_outputs(result, slide, mpp, out, csv, png)
    write_run_metadata(out.parent, "cells", ctx.params, {"celltype_model": result.model})
    click.echo(f"{n} cells in the region")
    comp = result.composition()
    if len(comp):
        click.echo(", ".join(f"{k}: {v:.0%}" for k, v in comp.items()))
    for w in written:
        click.echo(f"wrote {w}")


def _area(region: Path | None, box: str | None) -> Any:
    """The region to analyse: a box ``(x, y, w, h)`` or the polygons of a GeoJSON file."""
    from stimage.cli._common import read_region_geojson
    from stimage.errors import ConfigError

    if region is not None and box is not None:
        raise ConfigError("give either --region or --box, not both")
    if region is not None:
        return read_region_geojson(region)
    if box is None:
        raise ConfigError(
            "give the region to analyse: --region FILE.geojson (e.g. a QuPath annotation) or "
            "--box X,Y,W,H in full-resolution pixels"
        )
    try:
        values = tuple(float(v) for v in box.split(","))
    except ValueError:
        raise ConfigError(f"--box takes four numbers X,Y,W,H; got {box!r}") from None
    if len(values) != 4:
        raise ConfigError(f"--box takes four numbers X,Y,W,H; got {box!r}")
    return values


def _celltype_model(model: Path | None) -> CellTypeClassifier:
    """The cell-type model given, or the bundled one."""
    from stimage.errors import ConfigError
    from stimage.models import default_celltype_model_path, load_celltype_model

    path = model
    if path is None:
        try:
            path = default_celltype_model_path()
        except FileNotFoundError as e:
            raise ConfigError(f"{e}; or use --no-types to only segment") from None
    return load_celltype_model(path)


def _cell_table(result: Cells) -> pd.DataFrame:
    """One row per cell: centroid, morphology and stain, and with a model its type.

    The class and its probabilities carry the GeoJSON's names (``Immune``,
    ``Immune: probability``, ``Cell: type entropy``), so the CSV and QuPath agree.
    """
    from stimage.constants import Measurement
    from stimage.models import display_class

    table = result.nuclei.features.copy()
    if result.types is None:
        return table
    types = result.types.drop(columns=["centroid_x", "centroid_y"], errors="ignore")
    names: dict[str, str] = {"entropy": Measurement.CELL_TYPE_ENTROPY}
    for c in types.columns:
        if c.startswith("P(") and c.endswith(")"):
            names[c] = Measurement.class_probability(display_class(c[2:-1]))
    types = types.rename(columns=names)
    types["class"] = types["class"].map(lambda c: display_class(str(c)))
    return table.join(types)


def _write_outputs(
    result: Cells, slide: Path, mpp: float | None, out: Path, csv: Path, png: Path
) -> tuple[int, list[Path]]:
    """GeoJSON, CSV and PNG written under temporary names, renamed into place at the end.

    A failure on the way removes what was written, so no half result blocks a re-run.

    Returns:
        The cells in the GeoJSON, and the files written.
    """
    from stimage.qupath import write_geojson

    out.parent.mkdir(parents=True, exist_ok=True)
    targets = [out, csv] + ([png] if len(result) else [])
    temps = {t: t.with_name(f".partial-{t.name}") for t in targets}
    try:
        n = write_geojson(temps[out], result.features())
        _cell_table(result).to_csv(temps[csv], index_label="cell", float_format="%.5g")
        if len(result):
            from stimage.data import open_slide
            from stimage.pipelines import plot_cells

            with open_slide(slide, mpp=mpp) as s:
                plot_cells(s, result, temps[png])
        for final, temp in temps.items():
            temp.replace(final)
    finally:
        for temp in temps.values():
            temp.unlink(missing_ok=True)
    if not len(result):
        png.unlink(missing_ok=True)  # an overlay of an earlier run would belong to other cells
    return n, targets
