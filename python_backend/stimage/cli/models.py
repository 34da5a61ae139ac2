"""``stimage models``: list encoders and show a model bundle."""

from __future__ import annotations

from pathlib import Path

import click


@click.group()
def models() -> None:
    """Encoders and model bundles."""


@models.command("encoders")
def encoders() -> None:
    """List registered encoders and whether their weights are on this machine."""
    from stimage.encoders import MissingWeightsError, find_weights, get_encoder_spec, list_encoders

    for name in list_encoders():
        spec = get_encoder_spec(name)
        if spec.family == "test":
            continue
        try:
            where = f"weights: {find_weights(spec)}"
        except MissingWeightsError:
            where = f"weights missing ({spec.weights.filename if spec.weights else '-'}; see docs/encoders.md)"
        click.echo(
            f"{name:20s} {spec.family:9s} {spec.input_size:4d} px -> {spec.feature_dim:5d}  {where}"
        )


@models.command("show")
@click.argument("model", type=click.Path(path_type=Path), required=False)
@click.option("--genes", "show_genes", is_flag=True, help="List every gene.")
def show(model: Path | None, show_genes: bool) -> None:
    """Show what MODEL is (default: the bundled default model): tiles, encoders, genes, metrics."""
    from stimage.models import default_model_path, load_bundle

    b = load_bundle(model or default_model_path())
    click.echo(f"model: {b.name} ({b.path})")
    if b.description:
        click.echo(f"  {b.description}")
    t = b.tiles
    click.echo(
        f"tiles: {t['tile_um']:g} µm -> {t['tile_px']} px, stain {t.get('stain') or 'none'}, "
        f"min tissue {t.get('min_coverage', 0.7):.0%}"
    )
    for c in b.components:
        e = c.encoder
        click.echo(
            f"encoder: {e['name']} ({'fine-tuned' if e.get('finetuned') else 'frozen'}), "
            f"{len(c.ensemble.members)} NB members, PCA {c.ensemble.pipeline.n_components if c.ensemble.pipeline else '-'}"
        )
    if b.context is not None:
        rings = ", ".join(f"{r:g}" for r in b.context.rings_um)
        click.echo(
            f"spatial context: mean features of the neighbouring tiles within {rings} µm "
            "(rings); a tile alone when none is around"
        )
    else:
        click.echo("spatial context: none (each tile alone)")
    click.echo(
        f"genes: {len(b.genes)}"
        + ("" if show_genes else f" (e.g. {', '.join(b.genes[:10])}; --genes for all)")
    )
    if show_genes and not b.metrics.get("held_out"):
        click.echo("  " + ", ".join(b.genes))
    if b.classifier is not None:
        click.echo(f"high/low classifier: {len(b.classifier.genes)} genes")
    tr = b.training
    if tr.get("samples"):
        click.echo(f"trained on: {', '.join(tr['samples'])} ({tr.get('n_spots', '?')} spots)")
    _show_reliability(b, show_genes)
    cv = b.metrics.get("cv")
    if cv:
        click.echo(f"held-out ({cv.get('scheme')}):")
        for gs, m in cv.get("by_gene_set", {}).items():
            click.echo(f"  {gs:12s} mean PCC {m['mean_pcc']:.3f}, median {m['median_pcc']:.3f}")
        cov = cv.get("interval_coverage")
        if cov:
            click.echo(
                "  interval coverage: "
                + ", ".join(f"{float(k):.0%} -> {v:.2f}" for k, v in cov.items())
            )


def _show_reliability(b: object, show_genes: bool) -> None:
    """Held-out accuracy per gene, with the unreliable genes marked."""
    from stimage.models import RELIABLE_PCC, ModelBundle

    assert isinstance(b, ModelBundle)
    held = b.metrics.get("held_out")
    if not held:
        click.echo("per-gene reliability: not recorded (a model trained before stimage 0.2)")
        return
    rel = b.gene_reliability()
    bad = b.unreliable_genes()
    sections = [str(x) for x in held.get("sections", [])]
    left = (
        f"{len(sections)} spatial blocks of its one section left out in turn"
        if any("/block" in x for x in sections)
        else f"{len(sections)} sections left out in turn"
    )
    click.echo(
        f"held-out per gene ({left}): "
        f"mean PCC {held['mean_pcc']:.3f}, {held['level']:.0%} interval coverage "
        f"{held['coverage']:.2f} ({held['coverage_uncalibrated']:.2f} before calibration)"
    )
    click.echo(
        f"unreliable genes (held-out PCC under {RELIABLE_PCC:g}): {len(bad)} of {len(rel)}"
        + ("" if show_genes or not bad else f", e.g. {', '.join(bad[:10])}")
    )
    if show_genes:
        for g, r in rel.items():
            pcc = "n/a" if r["pcc"] is None else f"{r['pcc']:.3f}"
            cov = "n/a" if r["coverage"] is None else f"{r['coverage']:.2f}"
            mark = "" if r["reliable"] is not False else "  UNRELIABLE"
            click.echo(f"  {g:14s} PCC {pcc:>6s}  coverage {cov:>5s}{mark}")
