"""``stimage train-cells``: a cell-type model from spot proportions or from labelled nuclei."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from stimage.cli._common import write_run_metadata
from stimage.cli._options import mpp_option, out_option, overwrite_option, segmenter_option

if TYPE_CHECKING:
    from stimage.models import CellTypeClassifier


@click.command(name="train-cells")
@click.argument("data", type=click.Path(path_type=Path))
@click.option(
    "--labels",
    type=click.Path(path_type=Path),
    default=None,
    help="QuPath GeoJSON of classified cells/annotations on the slide DATA (labelled nuclei).",
)
@click.option(
    "--classes",
    default="immune,stromal,epithelial,endothelial",
    show_default=True,
    help="Comma-separated output classes.",
)
@click.option(
    "--map",
    "mapping",
    multiple=True,
    metavar="LABEL=CLASS",
    help="Map a label or source type onto a class (repeat; CLASS 'none' drops the label). "
    "Replaces the default HER2ST mapping when given.",
)
@click.option(
    "--hidden",
    type=click.IntRange(min=0),
    default=16,
    show_default=True,
    help="Units of the classifier's hidden layer (0: a linear classifier).",
)
@segmenter_option()
@mpp_option("µm per pixel of the slide DATA (with --labels).")
@out_option("Model folder.")
@overwrite_option("Replace an existing cell-type model.")
@click.pass_context
def train_cells(
    ctx: click.Context,
    data: Path,
    labels: Path | None,
    classes: str,
    mapping: tuple[str, ...],
    hidden: int,
    segmenter: str,
    mpp: float | None,
    out: Path,
    overwrite: bool,
) -> None:
    """Train a cell-type model.

    From spot proportions: DATA is a dataset whose samples carry per-spot cell-type
    proportions (e.g. HER2ST's ST-deconv-major); the nuclei inside each spot must on average
    match the spot's proportions.

    From labelled nuclei: DATA is a slide and --labels a QuPath GeoJSON export of classified
    objects (cells, or annotations drawn around cells of one type); nuclei are segmented inside
    the labelled objects and take their class.
    """
    from stimage.cli._common import is_quiet
    from stimage.errors import ConfigError
    from stimage.models import DEFAULT_CELLTYPE_MAPPING

    class_list = tuple(c.strip() for c in classes.split(",") if c.strip())
    if len(class_list) < 2:
        raise ConfigError(f"--classes needs two or more classes, got {classes!r}")
    maps: dict[str, str | None] = {}
    for item in mapping:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--map takes LABEL=CLASS, got {item!r}")
        maps[key.strip()] = None if value.strip().lower() == "none" else value.strip()
    if (out / "celltype_manifest.json").exists() and not overwrite:
        raise ConfigError(
            f"{out}: a cell-type model exists there; use --overwrite or another folder"
        )
    if labels is None:
        from stimage.models import train_celltypes_from_dataset

        model = train_celltypes_from_dataset(
            data,
            classes=class_list,
            mapping=maps or None,
            hidden=hidden,
            segmenter=segmenter,
            verbose=not is_quiet(ctx),
        )
    else:
        model = _from_labels(
            data, labels, class_list, maps or dict(DEFAULT_CELLTYPE_MAPPING), hidden, segmenter, mpp
        )
    model.save(out, overwrite=overwrite)
    write_run_metadata(out, "train-cells", ctx.params, {})
    click.echo(
        f"classes {list(model.classes)}; trained on {model.training.get('n_nuclei', '?')} nuclei"
    )
    click.echo(f"wrote {out}")


def _from_labels(
    slide_path: Path,
    labels: Path,
    classes: tuple[str, ...],
    mapping: dict[str, str | None],
    hidden: int,
    segmenter: str,
    mpp: float | None,
) -> CellTypeClassifier:
    """A cell-type model fitted to the nuclei inside classified QuPath objects of a slide."""
    from shapely.ops import unary_union

    from stimage.data import open_slide
    from stimage.errors import ConfigError
    from stimage.explain import segment_nuclei
    from stimage.models import CellTypeClassifier, labels_from_qupath, patch_features
    from stimage.qupath import read_geojson

    objs = [o for o in read_geojson(labels) if o.classification and o.geometry is not None]
    if not objs:
        raise ConfigError(
            f"{labels}: no classified object with a geometry; classify cells or "
            "annotations in QuPath and export them as GeoJSON"
        )
    area = unary_union([o.geometry.buffer(2.0) for o in objs if o.geometry is not None])
    model = CellTypeClassifier(classes=classes, mapping=mapping, hidden=hidden)
    with open_slide(slide_path, mpp=mpp) as slide:
        nuclei = segment_nuclei(slide, area, segmenter=segmenter)
        if not len(nuclei):
            raise ConfigError(f"no nuclei found inside the labelled objects of {labels}")
        y = labels_from_qupath(objs, nuclei.centroids)
        feats = nuclei.features
        if model.patch_um:
            feats = patch_features(slide, feats, model.patch_um)
    model.fit_labels(feats, y)
    model.training.update(
        {
            "labels": str(labels),
            "slide": str(slide_path),
            "n_nuclei": int(y.notna().sum()),
            "segmenter": segmenter,
        }
    )
    return model
