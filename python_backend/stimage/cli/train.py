"""``stimage train``: train a model bundle from a tile store (or a dataset, prepared first)."""

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
    genes_option,
    members_option,
    options,
    out_option,
    overwrite_option,
    samples_option,
)

#: How the expression model is built: ensemble, features, dispersion, classifier, fine-tuning.
_MODEL_OPTIONS = options(
    members_option,
    click.option(
        "--pca",
        "pca_dim",
        type=click.IntRange(2, 4096),
        default=256,
        show_default=True,
        help="Principal components of the features.",
    ),
    click.option(
        "--dispersion",
        type=click.Choice(["gene", "spot"]),
        default="gene",
        show_default=True,
        help="Negative-binomial dispersion: one per gene, or per spot from its features.",
    ),
    click.option(
        "--hidden",
        type=click.IntRange(1, 4096),
        default=None,
        help="Units of a hidden layer shared by all genes (NB MLP members) [default: linear NB GLM].",
    ),
    context_option,
    click.option("--no-classifier", is_flag=True, help="Skip the high/low classifier."),
    click.option(
        "--mode",
        type=click.Choice(["frozen", "finetune"]),
        default="frozen",
        show_default=True,
        help="frozen: NB ensemble on cached features; finetune: train the encoder end to end (GPU advised).",
    ),
    click.option(
        "--epochs",
        type=click.IntRange(1, 1000),
        default=10,
        show_default=True,
        help="Fine-tuning epochs.",
    ),
)


@click.command()
@click.argument("data", type=click.Path(path_type=Path))
@out_option("Model folder to write.")
@encoders_option
@encoder_weights_option
@genes_option("Comma-separated genes, or a file with one gene per line.")
@gene_sets_option
@_MODEL_OPTIONS
@samples_option("Comma-separated sample ids to train on (default: all).")
@click.option("--name", default=None, help="Model name [default: the output folder's name].")
@device_option()
@overwrite_option("Replace an existing model folder.")
@click.pass_context
def train(
    ctx: click.Context,
    data: Path,
    out: Path,
    encoders: tuple[str, ...],
    encoder_weights: tuple[str, ...],
    genes: str | None,
    gene_sets: str,
    members: int,
    pca_dim: int,
    dispersion: str,
    hidden: int | None,
    context_um: str,
    no_classifier: bool,
    mode: str,
    epochs: int,
    samples: str | None,
    name: str | None,
    device: str | None,
    overwrite: bool,
) -> None:
    """Train an expression model on DATA: a tile store (from `stimage prepare`) or a dataset.

    The model is a negative-binomial ensemble on frozen encoder features, fitted to raw
    counts with a library-size offset; genes are chosen from the training data; the penalty
    is chosen by leave-one-section-out inside it. A dataset is first prepared into
    OUT/tiles with the default tile settings.
    """
    from stimage.cli._common import (
        parse_context,
        parse_encoder_weights,
        parse_genes,
        parse_ids,
        store_from,
    )
    from stimage.models import NBEnsembleConfig, NBGLMConfig
    from stimage.training import TrainConfig, train_model

    if (out / "manifest.json").exists() and not overwrite:
        raise click.UsageError(f"{out} already holds a model; use --overwrite or another --out")
    context = parse_context(context_um)
    if context is not None and mode == "finetune":
        raise click.UsageError("--mode finetune trains each tile alone: add --context none")
    config = TrainConfig(
        encoders=tuple(encoders),
        encoder_weights=parse_encoder_weights(encoder_weights),
        genes=tuple(parse_genes(genes)) if genes else None,
        gene_sets=tuple(s.strip() for s in gene_sets.split(",") if s.strip()),
        ensemble=NBEnsembleConfig(
            members=members,
            pca_dim=pca_dim,
            glm=NBGLMConfig(dispersion=dispersion),
            hidden=hidden,
        ),
        classifier=not no_classifier,
        name=name or out.name,
        device=device,
        context=context,
    )
    ids = parse_ids(samples)
    bars = ProgressBars.of(ctx)
    store = store_from(data, out / "tiles", bars)
    try:
        if mode == "finetune":
            from stimage.training import FinetuneConfig, finetune_model

            bundle = finetune_model(
                store, config, FinetuneConfig(epochs=epochs), ids, progress=bars
            )
        else:
            bundle = train_model(store, config, ids, progress=bars)
    finally:
        bars.close()
    bundle.save(out, overwrite=overwrite)
    write_run_metadata(out, "train", ctx.params)
    click.echo(
        f"model: {out} ({len(bundle.genes)} genes, {sum(len(c.ensemble.members) for c in bundle.components)} "
        f"members, encoders {', '.join(bundle.encoders)}, trained on {', '.join(bundle.training['samples'])})"
    )
