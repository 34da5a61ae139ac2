"""``stimage demo``: the main job on the bundled example.

Reads the bundled HER2ST crop, derives its scale, detects tissue, cuts and stain-normalises
tiles into a tile store, then predicts marker-gene expression with aleatoric and epistemic
uncertainty with the bundled default model, finds and types the cells around the most
epithelial spot, explains that spot's prediction by its nuclei with LIME, and writes QuPath
GeoJSON, PNGs and a one-page HTML report.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from stimage.cli._common import ProgressBars, write_run_metadata
from stimage.cli._options import out_option, overwrite_option

if TYPE_CHECKING:
    import anndata as ad
    import numpy as np
    import pandas as pd

    from stimage.data import Dataset
    from stimage.models import Predictor
    from stimage.pipelines import RunReport

#: Marker genes shown by the demo (those of the paper's panel that the model predicts).
DEMO_GENES = ("COX6C", "FASN", "CD74", "SPARC", "B2M", "TFF3")


@click.command()
@out_option("Output folder.", default=Path("stimage-demo-output"))
@overwrite_option("Redo everything instead of reusing finished work.")
@click.pass_context
def demo(ctx: click.Context, out: Path, overwrite: bool) -> None:
    """Run the pipeline on the bundled HER2ST example and say what it produced."""
    import time

    import cv2
    import numpy as np

    from stimage.constants import Key
    from stimage.data import load_dataset, open_sample_slide
    from stimage.examples import example_path
    from stimage.tiles import (
        TileSettings,
        TileStore,
        contact_sheet,
        detect_tissue,
        prepare_dataset,
        qc_overview,
    )

    t0 = time.perf_counter()
    example = example_path()
    ds = load_dataset(example)
    click.echo(
        f"example: {example.name} ({len(ds)} section, see {example / 'README.md'} for its source)"
    )
    settings = TileSettings()
    bars = ProgressBars.of(ctx)
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
    side = (settings.tile_px, settings.tile_px)
    raw = np.stack([slide.read_region(x, y, w, h, out_size=side) for x, y, w, h in boxes])
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
    predictor = _default_predictor(bars)
    page = _page(ctx, meta, mask.area_mm2, r, settings)
    if predictor is not None:
        wrote += _expression(ds, out, predictor, overwrite, bars, page)
        wrote += _cells_and_explanation(ds, out, predictor, bars, page)
    if (out / "expression_maps.png").exists():
        page.numbers.append(("seconds", f"{time.perf_counter() - t0:.1f}"))
        wrote.append((_write_page(page, out, wrote), "self-contained report of all the above"))
    write_run_metadata(out, "demo", ctx.params)
    click.echo("wrote:")
    for p, what in wrote:
        click.echo(f"  {p}  {what}")
    click.echo(f"done in {time.perf_counter() - t0:.1f} s")


def _page(ctx: click.Context, meta: dict, tissue_mm2: float, r: Any, settings: Any) -> RunReport:
    """The demo's report, with the numbers of its tiling."""
    from stimage.constants import Key
    from stimage.pipelines import RunReport

    return RunReport(
        title="STImage demo: HER2ST section B4 (crop)",
        intro=(
            "Predicted expression with aleatoric and epistemic uncertainty from the bundled "
            "default model, cells with types, and a LIME explanation by nuclei. Data: Andersson "
            "et al., Nat Commun 12, 6012 (2021). Open qupath_objects.geojson in QuPath by "
            "dragging it onto the image; Measure > Show measurement maps draws the genes."
        ),
        numbers=[
            ("µm per pixel", f"{meta[Key.MPP]:.4f} (from the {meta[Key.MPP_SOURCE]})"),
            ("tissue (mm²)", f"{tissue_mm2:.1f}"),
            ("spots", r.tiles),
            ("tiles kept", r.kept),
            ("tile size", f"{meta['tile_um']:g} µm -> {settings.tile_px} px"),
            ("stain normalisation", str(settings.stain)),
        ],
        settings=dict(ctx.params),
    )


def _write_page(page: RunReport, out: Path, wrote: list[tuple[Path, str]]) -> Path:
    """The report with the maps, cells and explanation first, then the tiling pictures."""
    first = ("expression_maps", "cells", "explanation_lime")

    def order(f: tuple[Path, str]) -> tuple[bool, int]:
        stem = f[0].stem
        return (stem not in first, first.index(stem) if stem in first else 0)

    page.figures = sorted([(p, w) for p, w in wrote if p.suffix == ".png"], key=order)
    page.files = [(p, w) for p, w in wrote if p.suffix != ".png"]
    return page.write(out / "report.html")


def _default_predictor(bars: ProgressBars) -> Predictor | None:
    """The bundled default model, ready (None, saying so, when this installation has none)."""
    from stimage.cli._common import load_predictor
    from stimage.errors import InputFileNotFoundError

    try:
        return load_predictor(None, bars=bars)
    except InputFileNotFoundError as e:
        click.echo(f"expression: skipped ({e})")
        click.echo(f"cells and explanation: skipped ({e})")
        return None


def _expression(
    ds: Dataset,
    out: Path,
    predictor: Predictor,
    overwrite: bool,
    bars: ProgressBars,
    report: RunReport,
) -> list[tuple[Path, str]]:
    """Predict marker genes with the default model; maps and tables."""
    import anndata as ad
    import numpy as np

    from stimage.constants import Key
    from stimage.data import open_sample_slide
    from stimage.evaluation import expression_maps
    from stimage.pipelines import predict_spots, write_predictions

    spec = ds.samples[0]
    h5 = out / f"{spec.sample_id}.h5ad"
    genes = [g for g in DEMO_GENES if g in predictor.bundle.genes]
    if h5.exists() and not overwrite:
        a = ad.read_h5ad(h5)
    else:
        try:
            a = predict_spots(
                predictor, spec.load(), progress=lambda d, t: bars("expression", d, t)
            )
        finally:
            bars.close()
        write_predictions(a, out, spec.sample_id)
    sample = spec.load()
    with open_sample_slide(sample) as slide:
        thumb = slide.thumbnail(max_side=2000)
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
    from stimage.data import sample_info
    from stimage.pipelines import model_section, training_overlap

    slide_path = str(sample_info(sample).get(Key.SLIDE_PATH, ""))
    seen = training_overlap(predictor.bundle, slide_path, spec.sample_id)
    note = " (this section was in its training data)" if seen else ""
    if seen:
        report.warnings.append(
            f"This section ({seen}) was in the model's training data: the maps show what the "
            "model learnt, not how it does on new tissue; the held-out accuracy in the model "
            "section is the honest measure."
        )
    report.numbers.append(("spots predicted", a.n_obs))
    report.add(model_section(predictor.bundle, [*genes, *EXPLAIN_GENES]))
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


#: The gene whose prediction the demo explains (HER2, the section's defining marker).
EXPLAIN_GENES = ("ERBB2", "COX6C")


def _cells_and_explanation(
    ds: Dataset, out: Path, predictor: Predictor, bars: ProgressBars, report: RunReport
) -> list[tuple[Path, str]]:
    """Cells around the most epithelial spot, LIME for its tile, one GeoJSON for QuPath."""
    import itertools

    import anndata as ad
    import numpy as np

    from stimage.constants import Key
    from stimage.data import open_sample_slide
    from stimage.errors import InputFileNotFoundError, StimageError
    from stimage.models import default_celltype_model_path, load_celltype_model
    from stimage.pipelines import (
        detect_cells,
        explain_tile,
        plot_cells,
        tile_box,
    )
    from stimage.qupath import tile_features, write_geojson

    spec = ds.samples[0]
    h5 = out / f"{spec.sample_id}.h5ad"
    try:
        cell_model = load_celltype_model(default_celltype_model_path())
    except InputFileNotFoundError as e:
        click.echo(f"cells and explanation: skipped ({e})")
        return []
    if not h5.exists():
        return []
    a = ad.read_h5ad(h5)
    genes = [g for g in EXPLAIN_GENES if g in predictor.bundle.genes]
    spot = int(np.argmax(a.X[:, list(a.var_names).index(genes[0])]))
    cx, cy = np.asarray(a.obsm[Key.SPATIAL])[spot]
    sample = spec.load()
    try:
        with open_sample_slide(sample) as slide:
            box = tile_box(slide, predictor.tile_um, (cx, cy))
            cells = detect_cells(slide, box, model=cell_model)
            plot_cells(slide, cells, out / "cells.png")
            try:
                lime = explain_tile(
                    predictor,
                    slide,
                    box,
                    genes,
                    method="lime",
                    num_samples=300,
                    progress=lambda d, t: bars("LIME", d, t),
                )
            except StimageError as e:
                click.echo(f"explanation: skipped ({e})")
                lime = None
    finally:
        bars.close()
    comp = ", ".join(f"{k} {v:.0%}" for k, v in cells.composition().items())
    click.echo(f"cells: {len(cells)} in the tile of spot {a.obs_names[spot]} ({comp})")
    from stimage.pipelines import cells_section

    report.add(cells_section(cells, f"in the tile of spot {a.obs_names[spot]}"))
    # One file for QuPath: every spot tile with its measurements, the cells, the explained nuclei.
    meas = _spot_measurements(a)
    boxes = np.asarray(a.obsm["tile_box"]) if "tile_box" in a.obsm else _boxes(a, predictor.tile_um)
    parts = [
        tile_features(boxes, meas, names=[str(n) for n in a.obs_names]),
        cells.features(),
    ]
    wrote = [(out / "cells.png", "cells of that tile, outlined by type")]
    if lime is not None:
        parts.append(_lime_outputs(lime, genes, out, report))
        wrote.append(
            (out / "explanation_lime.png", f"LIME score of each nucleus for {', '.join(genes)}")
        )
    n = write_geojson(out / "qupath_objects.geojson", itertools.chain(*parts))
    wrote.append(
        (
            out / "qupath_objects.geojson",
            f"{n} QuPath objects (spot tiles with measurements, cells, explained nuclei): drag onto the image",
        )
    )
    return wrote


def _lime_outputs(lime: Any, genes: list[str], out: Path, report: RunReport) -> Any:
    """The LIME figure, its warnings and numbers in the report; the nuclei as QuPath objects."""
    import numpy as np
    import pandas as pd

    from stimage.pipelines import explanation_warnings, plot_explanation, score_name
    from stimage.qupath import polygon_features

    expl = lime.explanation
    scores = pd.DataFrame(
        {score_name("lime", t): expl.scores[:, j] for j, t in enumerate(expl.targets)}
    )
    plot_explanation(lime, out / "explanation_lime.png")
    r2 = dict(zip(expl.targets, (float(v) for v in expl.fit_r2), strict=True))
    for w in explanation_warnings(r2):
        report.warnings.append(w)
    report.numbers.append(
        ("LIME: nuclei, samples, seconds", f"{len(lime.nuclei)}, 300, {expl.seconds:.0f}")
    )
    top = int(np.argmax(expl.scores[:, 0]))
    click.echo(
        f"explanation: LIME over {len(lime.nuclei)} nuclei of that tile for {', '.join(genes)} "
        f"(300 samples, {expl.seconds:.0f} s); the nucleus adding most to {genes[0]}: "
        f"+{expl.scores[top, 0]:.3f} at ({lime.nuclei.features['centroid_x'].iloc[top]:.0f}, "
        f"{lime.nuclei.features['centroid_y'].iloc[top]:.0f}) px"
    )
    return polygon_features(lime.nuclei.polygons, scores, classifications="LIME nucleus")


def _boxes(a: ad.AnnData, tile_um: float) -> np.ndarray:
    import numpy as np

    from stimage.constants import Key

    side = tile_um / float(a.uns[Key.UNS][Key.MPP])
    xy = np.asarray(a.obsm[Key.SPATIAL], dtype=np.float64)
    return np.column_stack([xy - side / 2, np.full((len(xy), 2), side)])


def _spot_measurements(a: ad.AnnData) -> pd.DataFrame:
    """The demo genes' measurements of every spot, named and ordered by the output schema."""
    import pandas as pd

    from stimage.models import anndata_values, measurement_columns

    keep = [g for g in a.var_names if g in DEMO_GENES or g in EXPLAIN_GENES]
    level = float(a.uns["stimage"]["interval_level"])
    return pd.DataFrame(measurement_columns(keep, level, anndata_values(a[:, keep])))
