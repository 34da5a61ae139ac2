"""``stimage annotate-project``: predict over every image of a QuPath project, objects into it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from stimage.cli._common import ProgressBars, write_run_metadata
from stimage.cli._options import (
    batch_size_option,
    device_option,
    encoder_weights_option,
    folder_option,
    genes_option,
    level_option,
    model_option,
    mpp_option,
    options,
    overwrite_option,
)
from stimage.cli.predict_slides import RAY_OPTIONS
from stimage.constants import DEFAULT_GEOJSON_GENES

if TYPE_CHECKING:
    from stimage.pipelines import ImageResult, ModelSpec, Runner
    from stimage.qupath import GeoJSONDirProject, PaquoProject, ProjectImage


#: What is done: which images, over annotations or tissue, with or without cells.
_WHAT_OPTIONS = options(
    click.option(
        "--images",
        "-i",
        multiple=True,
        metavar="NAME|GLOB|ID",
        help="Images to do: a name, a glob ('*HE*', quoted) or an entry id (id:3); repeat for "
        "more [default: all].",
    ),
    click.option(
        "--tissue", is_flag=True, help="Predict over the tissue even where there are annotations."
    ),
    click.option(
        "--cells", is_flag=True, help="Also detect and type the cells of each annotation."
    ),
)

#: Files: per-image GeoJSON outputs and regions instead of the project; the resumable stores.
_FILE_OPTIONS = options(
    folder_option(
        "--geojson-dir",
        help="Write one GeoJSON file per image here instead of into the project (no QuPath needed).",
    ),
    folder_option(
        "--regions-dir",
        help="With --geojson-dir: GeoJSON annotations per image (named after it) to predict over.",
    ),
    folder_option(
        "--work-dir",
        help="Resumable prediction stores [default: .stimage-jobs beside the outputs].",
    ),
)


@click.command("annotate-project")
@click.argument("project", type=click.Path(path_type=Path))
@model_option()
@_WHAT_OPTIONS
@genes_option(
    "Genes the tiles carry (comma-separated or a file) "
    f"[default: the model's first {DEFAULT_GEOJSON_GENES}]."
)
@overwrite_option("Redo images done before, replacing STImage objects.")
@click.option("--dry-run", is_flag=True, help="Only list what would be done.")
@_FILE_OPTIONS
@mpp_option("µm per pixel for images without a pixel size in the project.")
@level_option
@batch_size_option()
@device_option()
@encoder_weights_option
@RAY_OPTIONS
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
    ray_address: str | None,
    workers: int | None,
    gpus_per_worker: float | None,
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
    resumes. With --ray the images' predictions run first on Ray workers (the work folder
    must be on a file system they all see), then the objects go into the project here.
    """
    from stimage.cli._common import load_predictor, parse_genes
    from stimage.pipelines import annotate_project as run_batch
    from stimage.pipelines import format_summary
    from stimage.qupath import select_images

    proj, out_root = _open_project(project, geojson_dir, regions_dir, tissue, cells)
    select_images(proj.images(), list(images))  # a bad name fails before the model loads
    gene_list = parse_genes(genes) if genes else None
    report = _Report(ProgressBars.of(ctx))
    predictor = load_predictor(
        model, device=device, encoder_weights=encoder_weights, genes=[gene_list], bars=report.bars
    )
    runner = _ray_runner(ray_address, workers, gpus_per_worker, model, device, encoder_weights)
    try:
        run_batch(
            proj,
            predictor,
            work_dir=work_dir or out_root / ".stimage-jobs",
            images=images,
            genes=gene_list,
            cells=cells,
            tissue=tissue,
            overwrite=overwrite,
            dry_run=dry_run,
            mpp=mpp,
            level=level,
            batch_size=batch_size,
            progress=report.bars,
            on_image=report.started,
            on_result=report.finished,
            runner=runner,
        )
    except KeyboardInterrupt:
        report.bars.close()
        if report.results:
            click.echo(format_summary(report.results))
        raise
    finally:
        report.bars.close()
    click.echo(format_summary(report.results))
    if geojson_dir is not None and not dry_run:
        write_run_metadata(
            geojson_dir, "annotate-project", ctx.params, {"model": str(predictor.bundle.path)}
        )
        click.echo(f"GeoJSON files in {geojson_dir} (QuPath: File > Import objects)")
    failed = sum(r.status == "failed" for r in report.results)
    if failed:
        click.echo(f"error: {failed} image(s) failed; see the table", err=True)
        ctx.exit(2)


def _ray_runner(
    address: str | None,
    workers: int | None,
    gpus: float | None,
    model: Path | None,
    device: str | None,
    encoder_weights: tuple[str, ...],
) -> tuple[Runner, ModelSpec] | None:
    """``--ray``: Ray workers that each load the model once (None: in-process)."""
    from stimage.cli._common import parse_encoder_weights
    from stimage.errors import ConfigError
    from stimage.pipelines import ModelSpec, RayRunner, import_ray

    if address is None:
        if workers is not None or gpus is not None:
            raise ConfigError("--workers and --gpus-per-worker go with --ray")
        return None
    import_ray()  # a missing Ray is said before the model loads
    weights = tuple(sorted(parse_encoder_weights(encoder_weights).items()))
    return RayRunner(address, workers=workers, gpus_per_worker=gpus), ModelSpec(
        model, device, weights
    )


def _open_project(
    project: Path, geojson_dir: Path | None, regions_dir: Path | None, tissue: bool, cells: bool
) -> tuple[GeoJSONDirProject | PaquoProject, Path]:
    """The project (QuPath's or GeoJSON files) and the folder its outputs go beside."""
    from stimage.errors import ConfigError
    from stimage.qupath import GeoJSONDirProject, PaquoProject

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
        return GeoJSONDirProject(project, geojson_dir, regions_dir=regions_dir), geojson_dir
    proj = PaquoProject(project)
    return proj, proj.path.parent


class _Report:
    """Progress of the batch on stderr: one line per image, its bars, its outcome."""

    def __init__(self, bars: ProgressBars) -> None:
        self.bars = bars
        self.results: list[ImageResult] = []

    def started(self, k: int, n: int, image: ProjectImage) -> None:
        self.bars.stage(f"[{k}/{n}] {image.name}")

    def finished(self, r: ImageResult) -> None:
        self.results.append(r)
        if r.status != "to do":
            extra = f": {r.note}" if r.note else ""
            self.bars.stage(f"      {r.status}{extra}")
