"""``stimage predict-slides``: a cohort of slides, in-process or on a Ray cluster, resumable."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from stimage.cli._common import ProgressBars, is_quiet, write_run_metadata
from stimage.cli._options import (
    batch_size_option,
    device_option,
    encoder_weights_option,
    genes_option,
    level_option,
    model_option,
    options,
    out_option,
    overwrite_option,
)
from stimage.constants import DEFAULT_GEOJSON_GENES

if TYPE_CHECKING:
    from stimage.pipelines import CohortProgress, Runner, SlideSpec

#: Where the slides run: in-process (the default) or on Ray, and how often a slide is tried.
RAY_OPTIONS = options(
    click.option(
        "--ray",
        "ray_address",
        default=None,
        metavar="auto|local|ADDRESS",
        help="Run on Ray: 'auto' joins a running cluster (RAY_ADDRESS, `ray start`) or starts "
        "one on this machine, 'local' always starts one here, or a head's address "
        "(ray://HOST:10001). Needs `pip install 'stimage[ray]'`. [default: in-process]",
    ),
    click.option(
        "--workers",
        type=click.IntRange(1, 4096),
        default=None,
        help="Ray workers, each loading the model once [default: one per GPU, else per CPU].",
    ),
    click.option(
        "--gpus-per-worker",
        type=click.FloatRange(0, 64),
        default=None,
        help="GPUs each Ray worker reserves [default: 1 when the cluster has GPUs, else 0].",
    ),
)


@click.command("predict-slides")
@click.argument("slides", metavar="MANIFEST|FOLDER", type=click.Path(path_type=Path))
@model_option()
@out_option(
    "Cohort folder: slides/<id>/ (GeoJSON, h5ad, heatmaps, run_metadata.json per slide), "
    "ledger.jsonl, summary.csv.",
    file_okay=False,
)
@genes_option(
    f"Genes for each GeoJSON (comma-separated or a file) [default: the model's first "
    f"{DEFAULT_GEOJSON_GENES}]. The h5ad files hold all the model's genes."
)
@click.option("--heatmaps", default=None, help="Genes to draw as heatmap PNGs (comma-separated).")
@level_option
@batch_size_option()
@click.option(
    "--chunk-batches",
    type=click.IntRange(1, 100000),
    default=16,
    show_default=True,
    help="Batches per chunk of each slide's resumable store.",
)
@click.option(
    "--retries",
    type=click.IntRange(0, 100),
    default=2,
    show_default=True,
    help="Further attempts at a slide that fails, before it is reported.",
)
@RAY_OPTIONS
@click.option(
    "--only-index",
    type=click.IntRange(0, None),
    default=None,
    metavar="N",
    help="Only the slide at 0-based position N of the manifest (a Slurm array task: "
    "--only-index $SLURM_ARRAY_TASK_ID); the ledger in --out is shared.",
)
@click.option(
    "--slides-per-task",
    type=click.IntRange(1, 100000),
    default=1,
    show_default=True,
    help="With --only-index N: slides N*K to N*K+K-1 (fewer array tasks for many small slides).",
)
@click.option(
    "--status", "status_only", is_flag=True, help="Only report the cohort from its ledger."
)
@click.option("--keep-stores", is_flag=True, help="Keep each slide's store (OUT/work/<id>/).")
@device_option()
@encoder_weights_option
@overwrite_option("Redo slides finished before.")
@click.pass_context
def predict_slides(
    ctx: click.Context,
    slides: Path,
    model: Path | None,
    out: Path,
    genes: str | None,
    heatmaps: str | None,
    level: float,
    batch_size: int,
    chunk_batches: int,
    retries: int,
    ray_address: str | None,
    workers: int | None,
    gpus_per_worker: float | None,
    only_index: int | None,
    slides_per_task: int,
    status_only: bool,
    keep_stores: bool,
    device: str | None,
    encoder_weights: tuple[str, ...],
    overwrite: bool,
) -> None:
    """Predict every slide of a MANIFEST (CSV/TSV: slide, id, region, mpp) or of a FOLDER.

    One task per slide: each slide gets exactly the files `stimage predict-slide` writes for
    it (GeoJSON, h5ad, heatmaps), moved into OUT/slides/<id>/ whole when it is done, with
    the model and settings in its run_metadata.json. Every attempt is recorded in
    OUT/ledger.jsonl: run the same command again and finished slides are skipped, an
    interrupted slide resumes at its last chunk. A slide that fails is tried --retries more
    times, then reported in OUT/summary.csv with its reason; the others go on. Exit status
    2 when some slide failed. See docs/cohorts.md (Ray clusters, Slurm arrays).
    """
    from stimage.cli._common import parse_encoder_weights, parse_genes, read_region_geojson
    from stimage.pipelines import (
        CohortSettings,
        ModelSpec,
        cohort_slides,
        run_cohort,
    )

    specs = cohort_slides(slides)
    if status_only:
        _print_status(out, specs)
        return
    chosen = _select(specs, only_index, slides_per_task)
    settings = CohortSettings(
        genes=tuple(parse_genes(genes)) if genes else None,
        heatmaps=tuple(parse_genes(heatmaps)) if heatmaps else (),
        level=level,
        batch_size=batch_size,
        chunk_batches=chunk_batches,
        retries=retries,
        keep_stores=keep_stores,
    )
    spec = ModelSpec(model, device, tuple(sorted(parse_encoder_weights(encoder_weights).items())))
    bars = ProgressBars.of(ctx)
    runner = _runner(ray_address, workers, gpus_per_worker, bars)
    quiet = is_quiet(ctx)
    where = f"Ray ({ray_address})" if ray_address else "in-process"
    if not quiet:
        click.echo(f"{len(chosen)} slide(s) of {len(specs)} in {slides}; {where}", err=True)
    t0 = time.perf_counter()
    outcomes = run_cohort(
        chosen,
        out,
        spec,
        settings,
        runner=runner,
        read_region=read_region_geojson,
        overwrite=overwrite,
        cohort=specs,  # the summary covers every slide of the manifest, not only this task's
        on_progress=None if quiet else lambda p: _echo_progress(p, bars),
    )
    bars.close()
    summary = out / "summary.csv"
    write_run_metadata(
        out,
        "predict-slides",
        ctx.params,
        {"model": str(model), "seconds": time.perf_counter() - t0},
    )
    done = sum(o.status == "done" for o in outcomes)
    skipped = sum(o.status == "skipped" for o in outcomes)
    failed = [o for o in outcomes if o.status == "failed"]
    click.echo(f"{done} done, {skipped} done before, {len(failed)} failed; summary: {summary}")
    for o in failed[:20]:
        click.echo(f"failed: {o.id}: {o.error}", err=True)
    if failed:
        ctx.exit(2)


def _runner(
    ray_address: str | None, workers: int | None, gpus: float | None, bars: ProgressBars
) -> Runner:
    """In-process (tile bars shown), or Ray: said at once when Ray is missing."""
    from stimage.errors import ConfigError
    from stimage.pipelines import InProcessRunner, RayRunner, import_ray

    if ray_address is None:
        if workers is not None or gpus is not None:
            raise ConfigError(
                "--workers and --gpus-per-worker go with --ray (in-process is one worker)"
            )
        return InProcessRunner(tile_progress=bars)
    import_ray()
    return RayRunner(ray_address, workers=workers, gpus_per_worker=gpus)


def _select(specs: list[SlideSpec], only_index: int | None, per_task: int) -> list[SlideSpec]:
    """All slides, or the ``per_task`` slides of array task ``--only-index``."""
    from stimage.errors import ConfigError

    if only_index is None:
        if per_task != 1:
            raise ConfigError("--slides-per-task goes with --only-index (a Slurm array task)")
        return specs
    tasks = -(-len(specs) // per_task)
    if only_index >= tasks:
        raise ConfigError(
            f"--only-index {only_index}: the manifest has {len(specs)} slides, "
            f"{per_task} a task, so tasks 0 to {tasks - 1}; size the Slurm array as "
            f"--array=0-{tasks - 1}"
        )
    return specs[only_index * per_task : (only_index + 1) * per_task]


def _echo_progress(p: CohortProgress, bars: ProgressBars) -> None:
    """One line per finished attempt: the slide, then the cohort's counts, speed and time left."""
    bars.close()
    o = p.last
    if o is None:
        return
    what = f"done, {o.tiles} tiles in {o.seconds:.1f} s" if o.status == "done" else o.status
    if o.error:
        what += f": {o.error[:200]}"
    eta = "" if p.eta_s is None else f", ~{_duration(p.eta_s)} left"
    click.echo(
        f"[{p.done + p.failed + p.skipped}/{p.total}] {o.id}: {what} | {p.done} done, "
        f"{p.failed} failed, {p.skipped} before | {p.tiles_per_s:.1f} tiles/s{eta}",
        err=True,
    )


def _duration(s: float) -> str:
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def _print_status(out: Path, specs: list[SlideSpec]) -> None:
    """Counts by status, and the failures, from the ledger (nothing is predicted)."""
    from collections import Counter

    from stimage.pipelines import cohort_status, write_summary

    rows = cohort_status(out, specs)
    counts = Counter(r["status"] for r in rows)
    click.echo(
        ", ".join(f"{counts.get(k, 0)} {k}" for k in ("done", "failed", "started", "pending"))
    )
    for r in rows:
        if r["status"] == "failed":
            click.echo(f"failed: {r['id']}: {r.get('error')}")
    if out.is_dir():
        click.echo(f"summary: {write_summary(out, specs)}")
