"""``stimage annotate-project``: predict over every image of a QuPath project, objects into it."""

from __future__ import annotations

from pathlib import Path

import click

from stimage.cli._common import write_run_metadata


@click.command("annotate-project")
@click.argument("project", type=click.Path(path_type=Path))
@click.option(
    "--model",
    "-m",
    type=click.Path(path_type=Path),
    default=None,
    help="Model folder [default: the bundled default model].",
)
@click.option(
    "--images",
    "-i",
    multiple=True,
    metavar="NAME|GLOB|ID",
    help="Images to do: a name, a glob ('*HE*', quoted) or an entry id (id:3); repeat for more "
    "[default: all].",
)
@click.option(
    "--tissue", is_flag=True, help="Predict over the tissue even where there are annotations."
)
@click.option("--cells", is_flag=True, help="Also detect and type the cells of each annotation.")
@click.option(
    "--genes",
    default=None,
    help="Genes the tiles carry (comma-separated or a file) [default: the model's first 10].",
)
@click.option(
    "--overwrite", is_flag=True, help="Redo images done before, replacing STImage objects."
)
@click.option("--dry-run", is_flag=True, help="Only list what would be done.")
@click.option(
    "--geojson-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Write one GeoJSON file per image here instead of into the project (no QuPath needed).",
)
@click.option(
    "--regions-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="With --geojson-dir: GeoJSON annotations per image (named after it) to predict over.",
)
@click.option(
    "--mpp",
    type=click.FloatRange(min=0.01),
    default=None,
    help="µm per pixel for images without a pixel size in the project.",
)
@click.option(
    "--level",
    type=click.FloatRange(0.01, 0.99),
    default=0.9,
    show_default=True,
    help="Level of the predictive intervals.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1, 4096),
    default=64,
    show_default=True,
    help="Tiles per encoder batch (memory bound).",
)
@click.option(
    "--work-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Resumable prediction stores [default: .stimage-jobs beside the outputs].",
)
@click.option("--device", default=None, help="cpu, cuda ... [default: GPU if available].")
@click.option(
    "--encoder-weights", multiple=True, metavar="NAME=PATH", help="Weights file of an encoder."
)
@click.pass_context
def annotate_project(
    ctx: click.Context,
    project: Path,
    model: Path | None,
    images: tuple[str, ...],
    tissue: bool,
    cells: bool,
    genes: str | None,
    overwrite: bool,
    dry_run: bool,
    geojson_dir: Path | None,
    regions_dir: Path | None,
    mpp: float | None,
    level: float,
    batch_size: int,
    work_dir: Path | None,
    device: str | None,
    encoder_weights: tuple[str, ...],
) -> None:
    """Predict expression (and cells) over the images of a QuPath PROJECT (.qpproj or its folder).

    Each image's annotations (or its tissue, when it has none or with --tissue) are tiled at
    the model's µm size; the tiles become QuPath tiles below their annotation with
    "GENE: mean", "GENE: aleatoric sd", "GENE: epistemic sd" and interval measurements, cells
    (--cells) below theirs. Earlier STImage objects are replaced, the user's never. Each image
    is saved before the next starts, with the model in its metadata (stimage.model); images
    done with the same model and settings are skipped unless --overwrite. Writing into the
    project needs QuPath (paquo, PAQUO_QUPATH_DIR); --geojson-dir needs neither and writes
    files for File > Import objects. Ctrl-C stops; finished images stay saved and the next run
    resumes.
    """
    from stimage.cli._common import ProgressBars, parse_encoder_weights, parse_genes
    from stimage.errors import ConfigError
    from stimage.pipelines import ImageResult, format_summary
    from stimage.pipelines import annotate_project as run_batch
    from stimage.qupath import GeoJSONDirProject, PaquoProject, ProjectImage, select_images

    if regions_dir is not None and geojson_dir is None:
        raise ConfigError(
            "--regions-dir goes with --geojson-dir; with QuPath the annotations are read from "
            "the project"
        )
    if tissue and cells:
        raise ConfigError(
            "--cells needs annotations: cell detection over whole tissue is unbounded; draw the "
            "regions of interest in QuPath and leave out --tissue"
        )
    if geojson_dir is not None:
        proj: GeoJSONDirProject | PaquoProject = GeoJSONDirProject(
            project, geojson_dir, regions_dir=regions_dir
        )
        out_root = geojson_dir
    else:
        proj = PaquoProject(project)
        out_root = proj.path.parent
    select_images(proj.images(), list(images))  # a bad name fails before the model loads

    from stimage.models import Predictor, default_model_path

    predictor = Predictor(
        model or default_model_path(),
        device=device,
        encoder_weights=parse_encoder_weights(encoder_weights),
    )
    quiet = bool(ctx.obj.get("quiet", False)) if ctx.obj else False
    bars = ProgressBars(disable=quiet)
    results: list[ImageResult] = []

    def started(k: int, n: int, image: ProjectImage) -> None:
        bars.close()
        if not quiet:
            click.echo(f"[{k}/{n}] {image.name}", err=True)

    def finished(r: ImageResult) -> None:
        results.append(r)
        bars.close()
        if not quiet and r.status != "to do":
            extra = f": {r.note}" if r.note else ""
            click.echo(f"      {r.status}{extra}", err=True)

    try:
        run_batch(
            proj,
            predictor,
            work_dir=work_dir or out_root / ".stimage-jobs",
            images=images,
            genes=parse_genes(genes) if genes else None,
            cells=cells,
            tissue=tissue,
            overwrite=overwrite,
            dry_run=dry_run,
            mpp=mpp,
            level=level,
            batch_size=batch_size,
            progress=bars,
            on_image=started,
            on_result=finished,
        )
    except KeyboardInterrupt:
        bars.close()
        if results:
            click.echo(format_summary(results))
        raise
    finally:
        bars.close()
    click.echo(format_summary(results))
    if geojson_dir is not None and not dry_run:
        write_run_metadata(
            geojson_dir, "annotate-project", ctx.params, {"model": str(predictor.bundle.path)}
        )
        click.echo(f"GeoJSON files in {geojson_dir} (QuPath: File > Import objects)")
    failed = sum(r.status == "failed" for r in results)
    if failed:
        click.echo(f"error: {failed} image(s) failed; see the table", err=True)
        ctx.exit(2)
