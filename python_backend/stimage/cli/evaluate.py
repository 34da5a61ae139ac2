"""``stimage evaluate``: honest cross-validation of the expression model against baselines."""

from __future__ import annotations

from pathlib import Path

import click

from stimage.cli._common import ProgressBars, write_run_metadata
from stimage.cli._options import (
    context_option,
    device_option,
    encoder_weights_option,
    encoders_option,
    gene_sets_option,
    members_option,
    out_option,
)


@click.command()
@click.argument("data", type=click.Path(path_type=Path))
@out_option("Report folder.")
@click.option(
    "--cv",
    type=click.Choice(["section", "patient"]),
    default="section",
    show_default=True,
    help="Hold out one section, or all sections of one patient, per fold.",
)
@click.option(
    "--methods",
    default="mean,paper,ridge,ridge_cv,ridge_cv_tile,nb",
    show_default=True,
    help="Methods: mean (training mean), paper (stimage-paper), ridge (HEST), ridge_cv (alpha by "
    "inner CV), ridge_cv_tile (ridge_cv on each spot's own features: the gain of context), nb (ours).",
)
@encoders_option
@encoder_weights_option
@members_option
@context_option
@gene_sets_option
@device_option()
@click.pass_context
def evaluate(
    ctx: click.Context,
    data: Path,
    out: Path,
    cv: str,
    methods: str,
    encoders: tuple[str, ...],
    encoder_weights: tuple[str, ...],
    members: int,
    context_um: str,
    gene_sets: str,
    device: str | None,
) -> None:
    """Cross-validate on DATA (a tile store or a dataset) and write a report into OUT.

    Per gene and held-out section: Pearson and Spearman correlation, Moran's I of prediction
    and truth, bivariate Moran's I, the paper's IoU, interval coverage, uncertainty-error
    ranking and classifier AUC. Gene sets are fixed from the training sections of each fold.
    """
    from stimage.cli._common import parse_context, parse_encoder_weights, store_from
    from stimage.encoders import create_encoder
    from stimage.evaluation import (
        cross_validate,
        leave_one_patient_out,
        leave_one_section_out,
        write_report,
    )
    from stimage.models import NBEnsembleConfig
    from stimage.training import TrainConfig, load_spot_set

    weights = parse_encoder_weights(encoder_weights)
    context = parse_context(context_um)
    config = TrainConfig(
        context=context,
        encoders=tuple(encoders),
        encoder_weights=weights,
        ensemble=NBEnsembleConfig(members=members),
        gene_sets=tuple(s.strip() for s in gene_sets.split(",") if s.strip()),
    )
    method_names = tuple(m.strip() for m in methods.split(",") if m.strip())
    bars = ProgressBars.of(ctx)
    store = store_from(data, out / "tiles", bars)
    encs = [create_encoder(e, weights.get(e), device=device) for e in encoders]
    try:
        spots = load_spot_set(store, encs, progress=bars, context=context)
    finally:
        bars.close()
    folds = (
        leave_one_section_out(spots.sample_ids)
        if cv == "section"
        else leave_one_patient_out(spots.patients)
    )
    result = cross_validate(
        spots,
        folds,
        config,
        method_names,
        progress=None if bars.disable else (lambda msg: click.echo(f"  {msg}", err=True)),
    )
    write_report(
        result,
        spots,
        out,
        extra={
            "cv": cv,
            "encoders": list(encoders),
            "members": members,
            "store": str(store.path),
            "context": None if context is None else context.to_dict(),
        },
    )
    write_run_metadata(out, "evaluate", ctx.params)
    s = result.summary()
    click.echo(s.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    click.echo(f"report: {out} (genes.csv, summary.json, pcc_*.png, maps_*.png, calibration.png)")
