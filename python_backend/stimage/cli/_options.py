"""Options shared by commands, each defined once.

Each decorator adds one option with the same name, type and meaning wherever it is used; a
command may give its own help text where the option's object differs (``--out`` is a folder
for one command and a GeoJSON file for another). The scale option refuses values that no
H&E scan has, at parse time, so a wrong ``--mpp`` never starts hours of work.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

__all__ = [
    "MPP_MAX",
    "MPP_MIN",
    "MPP_WARN",
    "batch_size_option",
    "check_mpp",
    "device_option",
    "encoder_weights_option",
    "encoders_option",
    "explain_options",
    "folder_option",
    "gene_sets_option",
    "genes_option",
    "level_option",
    "members_option",
    "model_option",
    "mpp_option",
    "options",
    "out_option",
    "overwrite_option",
    "region_option",
    "samples_option",
    "seed_option",
    "segmenter_option",
    "tile_options",
]

F = TypeVar("F", bound=Callable[..., Any])

#: Finest µm per pixel accepted: below any brightfield scanner (a 100x objective gives ~0.1).
MPP_MIN = 0.05
#: Coarsest µm per pixel accepted: a 2.5x scan; nuclei are a pixel or two wide beyond it.
MPP_MAX = 4.0
#: Above this µm per pixel a warning asks to check the value (coarser than a 5x scan).
MPP_WARN = 2.0
#: The usual scales of H&E scans, named in messages.
USUAL_MPP = "40x ≈ 0.25, 20x ≈ 0.5, 10x ≈ 1 µm/px"

MODEL_HELP = "Model folder [default: the bundled default model]."
DEVICE_HELP = "cpu, cuda, cuda:1 ... [default: GPU if available]."


def options(*decorators: Callable[[F], F]) -> Callable[[F], F]:
    """Several option decorators as one, applied in the order given (top first)."""

    def decorate(f: F) -> F:
        for d in reversed(decorators):
            f = d(f)
        return f

    return decorate


def check_mpp(value: float | None, name: str = "--mpp") -> float | None:
    """A µm-per-pixel value checked for plausibility in H&E (None passes).

    Raises:
        click.BadParameter: Outside ``MPP_MIN`` to ``MPP_MAX`` (or not a number).
    """
    if value is None:
        return None
    if not (math.isfinite(value) and MPP_MIN <= value <= MPP_MAX):
        raise click.BadParameter(
            f"{value:g} µm per pixel is not a plausible scale for an H&E image (usual: "
            f"{USUAL_MPP}; accepted {MPP_MIN:g} to {MPP_MAX:g}); give the full-resolution "
            "µm per pixel from the scanner's metadata (or leave the option out when the image "
            "records its own scale)",
            param_hint=name,
        )
    if value > MPP_WARN:
        click.echo(
            f"warning: {name} {value:g}: coarser than usual for H&E ({USUAL_MPP}); check that it "
            "is the µm per pixel of the full-resolution image",
            err=True,
        )
    return value


def _mpp_callback(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    return check_mpp(value, "--mpp")


def mpp_option(help: str = "µm per pixel of the slide.") -> Callable[[F], F]:
    """``--mpp``: the image's µm per pixel, refused outside what H&E scans have."""
    return click.option(
        "--mpp",
        type=float,
        default=None,
        callback=_mpp_callback,
        help=f"{help} H&E: {USUAL_MPP}.",
    )


def model_option(
    help: str = MODEL_HELP, *, name: str = "model", multiple: bool = False, path: bool = True
) -> Callable[[F], F]:
    """``--model/-m``: a model folder (``path``) or a served model's name."""
    return click.option(
        "--model",
        "-m",
        name,
        type=click.Path(path_type=Path) if path else str,
        default=None,
        multiple=multiple,
        help=help,
    )


def device_option(help: str = DEVICE_HELP, default: str | None = None) -> Callable[[F], F]:
    """``--device``: where the encoders run."""
    return click.option("--device", default=default, show_default=default is not None, help=help)


def encoder_weights_option(f: F) -> F:
    """``--encoder-weights NAME=PATH`` (repeatable): an encoder's weights file."""
    return click.option(
        "--encoder-weights",
        multiple=True,
        metavar="NAME=PATH",
        help="Weights file of an encoder (repeat for several).",
    )(f)


def overwrite_option(help: str) -> Callable[[F], F]:
    """``--overwrite``: redo finished work (the help says what is replaced)."""
    return click.option("--overwrite", is_flag=True, help=help)


def genes_option(help: str, *, required: bool = False) -> Callable[[F], F]:
    """``--genes``: comma-separated genes, or a file with one gene per line."""
    return click.option("--genes", default=None, required=required, help=help)


def level_option(f: F) -> F:
    """``--level``: the level of the predictive intervals."""
    return click.option(
        "--level",
        type=click.FloatRange(0.01, 0.99),
        default=0.9,
        show_default=True,
        help="Level of the predictive intervals.",
    )(f)


def batch_size_option(help: str = "Tiles per encoder batch (memory bound).") -> Callable[[F], F]:
    """``--batch-size``: tiles per forward pass of the encoders."""
    return click.option(
        "--batch-size", type=click.IntRange(1, 4096), default=64, show_default=True, help=help
    )


def out_option(
    help: str,
    *,
    dir_okay: bool = True,
    file_okay: bool = True,
    default: Path | None = None,
) -> Callable[[F], F]:
    """``--out/-o``: where a command writes (required unless it has a default)."""
    return click.option(
        "--out",
        "-o",
        type=click.Path(path_type=Path, dir_okay=dir_okay, file_okay=file_okay),
        required=default is None,
        default=default,
        show_default=default is not None,
        help=help,
    )


def samples_option(help: str) -> Callable[[F], F]:
    """``--samples A,B``: the sample (section) ids of a dataset to use."""
    return click.option("--samples", default=None, metavar="ID,ID", help=help)


def region_option(help: str) -> Callable[[F], F]:
    """``--region FILE``: a GeoJSON of the region(s), e.g. a QuPath annotation export."""
    return click.option("--region", type=click.Path(path_type=Path), default=None, help=help)


def segmenter_option(help: str = "Nucleus segmentation backend.") -> Callable[[F], F]:
    """``--segmenter``: ``classical`` or ``cellpose``."""
    return click.option("--segmenter", default="classical", show_default=True, help=help)


def seed_option(f: F) -> F:
    """``--seed``: the random seed of LIME's perturbations."""
    return click.option(
        "--seed",
        type=click.IntRange(min=0),
        default=0,
        show_default=True,
        help="Random seed of the perturbations.",
    )(f)


def encoders_option(f: F) -> F:
    """``--encoder`` (repeatable): the encoders of a model to train."""
    return click.option(
        "--encoder",
        "encoders",
        multiple=True,
        default=("efficientnet_lite0_stages",),
        show_default=True,
        help="Encoder; repeat for an ensemble across encoders (see `stimage models encoders`).",
    )(f)


def context_option(f: F) -> F:
    """``--context``: the spatial context of a model to train or evaluate."""
    return click.option(
        "--context",
        "context_um",
        default="300,500",
        show_default=True,
        help="Spatial context: outer radii in µm of the rings of neighbouring spots whose mean "
        "features join each spot's (300,500: the 8 and the next 12 neighbours on a 200 µm grid); "
        "'none' for each spot alone.",
    )(f)


def members_option(f: F) -> F:
    """``--members``: negative-binomial ensemble members per encoder."""
    return click.option(
        "--members",
        type=click.IntRange(1, 100),
        default=5,
        show_default=True,
        help="Ensemble members.",
    )(f)


def gene_sets_option(f: F) -> F:
    """``--gene-sets``: the gene sets chosen from the training data."""
    return click.option(
        "--gene-sets",
        default="paper_panel,hvg50,mean250",
        show_default=True,
        help="Gene sets chosen from the training data: paper_panel, hvg50, mean250, hvg1000.",
    )(f)


def tile_options(f: F) -> F:
    """Options that define how tiles are cut, checked and normalised (and ``--mpp``)."""
    return options(
        click.option(
            "--tile-um",
            type=click.FloatRange(min=1.0),
            default=None,
            help="Tile side in µm [default: the spot pitch: 200 legacy ST, 100 Visium].",
        ),
        click.option(
            "--tile-px",
            type=click.IntRange(16, 4096),
            default=224,
            show_default=True,
            help="Tile side in pixels after resizing (the encoder's input).",
        ),
        click.option(
            "--min-coverage",
            type=click.FloatRange(0, 1),
            default=0.7,
            show_default=True,
            help="Minimum tissue fraction of a tile.",
        ),
        click.option(
            "--stain",
            type=click.Choice(["vahadane", "macenko", "reinhard", "none"]),
            default="vahadane",
            show_default=True,
            help="Stain normalisation.",
        ),
        click.option(
            "--stain-target",
            default="default",
            show_default=True,
            help="Bundled template name, a template .json, or a reference H&E image.",
        ),
        click.option(
            "--tissue-min-od",
            type=click.FloatRange(min=0.01),
            default=0.3,
            show_default=True,
            help="Optical density over the background above which a pixel is tissue.",
        ),
        mpp_option("µm per pixel for every image (overrides metadata and spot grids)."),
    )(f)


#: The options of :func:`tile_options` that make a tile store's settings.
TILE_SETTING_OPTIONS = (
    "tile_um",
    "tile_px",
    "min_coverage",
    "stain",
    "stain_target",
    "tissue_min_od",
)


def folder_option(*decls: str, help: str, multiple: bool = False) -> Callable[[F], F]:
    """An option naming a folder (never a file), None or empty by default."""
    return click.option(
        *decls,
        type=click.Path(path_type=Path, file_okay=False),
        default=None,
        multiple=multiple,
        help=help,
    )


def explain_options(*, both: bool, max_samples: int | None = None) -> Callable[[F], F]:
    """``--method``, ``--target``, ``--num-samples`` and ``--seed`` of an explanation.

    Args:
        both: Offer ``--method both`` (LIME and occlusion, compared).
        max_samples: Most LIME perturbations accepted (a server's bound), if any.
    """
    methods = ["lime", "occlusion", *(["both"] if both else [])]
    return options(
        click.option(
            "--method",
            type=click.Choice(methods),
            default="lime",
            show_default=True,
            help="LIME (the paper's method) or the faster per-nucleus occlusion"
            + (", or both compared." if both else "."),
        ),
        click.option(
            "--target",
            type=click.Choice(["mean", "p_high"]),
            default="mean",
            show_default=True,
            help="Explain the predicted expression (mean) or P(high).",
        ),
        click.option(
            "--num-samples",
            type=click.IntRange(10, max_samples),
            default=1000,
            show_default=True,
            help="LIME perturbations.",
        ),
        seed_option,
    )
