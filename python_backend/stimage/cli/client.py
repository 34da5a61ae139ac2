"""``stimage client``: talk to a running ``stimage serve`` from scripts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

_ADDRESS = "tcp://127.0.0.1:5557"


@click.group()
@click.option("--address", "-a", default=_ADDRESS, show_default=True, help="The server's endpoint.")
@click.option(
    "--curve-keys",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Folder with server.key and client.key_secret (for a server with --curve-keys).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=600.0,
    show_default=True,
    help="Seconds per request.",
)
@click.pass_context
def client(ctx: click.Context, address: str, curve_keys: Path | None, timeout: float) -> None:
    """Ask a stimage server for its models, or for predictions written as GeoJSON."""
    ctx.ensure_object(dict)
    ctx.obj["client_args"] = {"address": address, "curve_keys": curve_keys, "timeout": timeout}


def _connect(ctx: click.Context) -> Any:
    from stimage.server.client import Client

    a = ctx.obj["client_args"]
    return Client(
        a["address"],
        timeout=a["timeout"],
        curve_keys=a["curve_keys"],
        heartbeat_timeout=min(15.0, a["timeout"]),
    )


@client.command()
@click.option("--json", "as_json", is_flag=True, help="Print the whole reply as JSON.")
@click.pass_context
def hello(ctx: click.Context, as_json: bool) -> None:
    """Print the server's versions, models and limits."""
    with _connect(ctx) as c:
        info = c.hello()
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    click.echo(f"stimage {info['version']} (protocol {info['protocol']}) on {info['device']}")
    for m in info["models"]:
        star = " (default)" if m["default"] else ""
        click.echo(
            f"  {m['name']}{star}: {len(m['genes'])} genes, tiles of {m['tile_um']:g} µm at {m['tile_px']} px, "
            f"stain {m['stain'] or 'none'}"
        )
    click.echo(
        f"  slide paths: {'allowed' if info['slide_paths'] else 'refused'}; ops: {', '.join(info['ops'])}"
    )


@client.command()
@click.pass_context
def ping(ctx: click.Context) -> None:
    """Print the round-trip time."""
    with _connect(ctx) as c:
        click.echo(f"{c.ping() * 1000:.1f} ms")


def _parse_box(value: str | None) -> list[float] | None:
    if value is None:
        return None
    parts = [p for p in value.replace(" ", "").split(",") if p]
    try:
        box = [float(p) for p in parts]
    except ValueError:
        box = []
    if len(box) != 4 or box[2] <= 0 or box[3] <= 0:
        raise click.BadParameter(
            "expected X,Y,WIDTH,HEIGHT in full-resolution pixels", param_hint="--region"
        )
    return box


@client.command()
@click.argument("image", required=False, type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--slide",
    default=None,
    help="A slide path on the server's machine (under its --allow-root): the server reads it.",
)
@click.option(
    "--region",
    default=None,
    help="X,Y,WIDTH,HEIGHT in full-resolution pixels [default: all tissue].",
)
@click.option(
    "--mpp", type=click.FloatRange(min=0.01), default=None, help="µm per pixel of the image."
)
@click.option("--model", "-m", default=None, help="Model name (see `stimage client hello`).")
@click.option("--genes", default=None, help="Comma-separated genes (default: all).")
@click.option(
    "--out",
    "-o",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="GeoJSON to write.",
)
@click.option(
    "--min-coverage",
    type=click.FloatRange(0, 1),
    default=0.5,
    show_default=True,
    help="Minimum tissue fraction of an IMAGE tile.",
)
@click.option(
    "--batch", type=click.IntRange(1, 512), default=64, show_default=True, help="Tiles per request."
)
@click.pass_context
def predict(
    ctx: click.Context,
    image: Path | None,
    slide: str | None,
    region: str | None,
    mpp: float | None,
    model: str | None,
    genes: str | None,
    out: Path,
    min_coverage: float,
    batch: int,
) -> None:
    """Predict the tiles of IMAGE (read here, sent as tiles) or of --slide (read by the server).

    Writes a QuPath GeoJSON FeatureCollection of tiles with their measurements.
    """
    from stimage.cli._common import parse_genes
    from stimage.qupath import write_geojson

    if (image is None) == (slide is None):
        raise click.UsageError("give an IMAGE file or --slide PATH, one of them")
    box = _parse_box(region)
    gene_list = parse_genes(genes) if genes else None
    with _connect(ctx) as c:
        if slide is not None:
            res = c.predict_slide(slide, box, mpp=mpp, model=model, genes=gene_list)
            features = res["geojson"]["features"]
        else:
            assert image is not None
            features = _predict_image(c, image, box, mpp, model, gene_list, min_coverage, batch)
    n = write_geojson(out, features)
    click.echo(f"wrote {n} tiles to {out}")


def _predict_image(
    c: Any,
    image: Path,
    box: list[float] | None,
    mpp: float | None,
    model: str | None,
    genes: list[str] | None,
    min_coverage: float,
    batch: int,
) -> list[dict[str, Any]]:
    """Tile an image here on the model's grid and send the tiles in batches."""
    from shapely.geometry import box as shapely_box

    from stimage.cli._common import ProgressBars
    from stimage.data import open_slide
    from stimage.errors import ConfigError, NoTissueError
    from stimage.tiles import detect_tissue, grid_tile_qc

    info = c.hello()
    name = model or next(m["name"] for m in info["models"] if m["default"])
    spec = next((m for m in info["models"] if m["name"] == name), None)
    if spec is None:
        raise ConfigError(
            f"the server has no model {name!r}; it has {[m['name'] for m in info['models']]}"
        )
    tile_um, tile_px = float(spec["tile_um"]), int(spec["tile_px"])
    features: list[dict[str, Any]] = []
    bars = ProgressBars(disable=click.get_current_context().find_root().obj.get("quiet", False))
    with open_slide(image, mpp=mpp) as slide:
        mask = detect_tissue(slide)
        geom = shapely_box(box[0], box[1], box[0] + box[2], box[1] + box[3]) if box else None
        grid, qc = grid_tile_qc(slide, mask, tile_um, min_coverage, region=geom)
        boxes = grid.boxes[qc.kept]
        if not len(boxes):
            raise NoTissueError(
                f"{image}: no tile has {min_coverage:.0%} tissue; lower --min-coverage"
            )
        image_id = f"{image.resolve()}:{image.stat().st_size}"
        try:
            for b0 in range(0, len(boxes), batch):
                part = boxes[b0 : b0 + batch]
                tiles = [
                    slide.read_region(x, y, w, h, out_size=(tile_px, tile_px))
                    for x, y, w, h in part
                ]
                res = c.predict(
                    tiles, part, tile_um / tile_px, model=name, genes=genes, image_id=image_id
                )
                features += res["geojson"]["features"]
                bars(image.stem, min(b0 + batch, len(boxes)), len(boxes))
        finally:
            bars.close()
    return features


@client.command()
@click.argument("image", required=False, type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--slide",
    default=None,
    help="A slide path on the server's machine (under its --allow-root): the server reads it.",
)
@click.option(
    "--region", required=True, help="X,Y,WIDTH,HEIGHT in full-resolution pixels of the region."
)
@click.option(
    "--mpp", type=click.FloatRange(min=0.01), default=None, help="µm per pixel of the image."
)
@click.option(
    "--downsample",
    type=click.FloatRange(min=1.0),
    default=1.0,
    show_default=True,
    help="Send an IMAGE region at this downsample (for regions too large to send at full size).",
)
@click.option("--no-classify", is_flag=True, help="Only segment; do not type the cells.")
@click.option(
    "--out",
    "-o",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="GeoJSON of the cells to write.",
)
@click.pass_context
def cells(
    ctx: click.Context,
    image: Path | None,
    slide: str | None,
    region: str,
    mpp: float | None,
    downsample: float,
    no_classify: bool,
    out: Path,
) -> None:
    """Segment and type the cells of a region of IMAGE (read here and sent) or of --slide.

    Writes the cells as QuPath cell objects and prints the count per class.
    """
    from stimage.qupath import write_geojson

    if (image is None) == (slide is None):
        raise click.UsageError("give an IMAGE file or --slide PATH, one of them")
    box = _parse_box(region)
    assert box is not None
    with _connect(ctx) as c:
        if slide is not None:
            res = c.cells(slide=slide, region=box, slide_mpp=mpp, classify=not no_classify)
        else:
            from stimage.data import open_slide

            assert image is not None
            with open_slide(image, mpp=mpp) as s:
                x, y, w, h = box
                rgb = s.read_region(x, y, w, h, downsample=downsample)
                sent_mpp = float(s.mpp) * w / rgb.shape[1]
            res = c.cells(
                rgb,
                sent_mpp,
                origin=(x, y),
                downsample=w / rgb.shape[1],
                classify=not no_classify,
            )
    n = write_geojson(out, res["geojson"]["features"])
    counts = ", ".join(f"{k} {v}" for k, v in res["counts"].items())
    click.echo(f"wrote {n} cells to {out}" + (f" ({counts})" if counts else ""))


@client.command()
@click.argument("image", required=False, type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--slide",
    default=None,
    help="A slide path on the server's machine (under its --allow-root): the server reads it.",
)
@click.option(
    "--box",
    required=True,
    help="X,Y,WIDTH,HEIGHT of the tile in full-resolution pixels (the model's tile µm square).",
)
@click.option("--genes", required=True, help="Comma-separated genes to explain.")
@click.option(
    "--mpp", type=click.FloatRange(min=0.01), default=None, help="µm per pixel of the image."
)
@click.option("--model", "-m", default=None, help="Model name (see `stimage client hello`).")
@click.option(
    "--method", type=click.Choice(["lime", "occlusion"]), default="lime", show_default=True
)
@click.option(
    "--target",
    type=click.Choice(["mean", "p_high"]),
    default="mean",
    show_default=True,
    help="Explain the predicted mean or P(high).",
)
@click.option(
    "--num-samples",
    type=click.IntRange(10, 10000),
    default=1000,
    show_default=True,
    help="LIME's perturbed tiles.",
)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option(
    "--out",
    "-o",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="GeoJSON of the scored nuclei to write.",
)
@click.pass_context
def explain(
    ctx: click.Context,
    image: Path | None,
    slide: str | None,
    box: str,
    genes: str,
    mpp: float | None,
    model: str | None,
    method: str,
    target: str,
    num_samples: int,
    seed: int,
    out: Path,
) -> None:
    """Score the nuclei of one tile of IMAGE (read here and sent) or of --slide for some genes.

    Writes the nuclei as detections with one measurement per gene ("LIME: VEGFA").
    """
    from stimage.cli._common import parse_genes
    from stimage.qupath import write_geojson

    if (image is None) == (slide is None):
        raise click.UsageError("give an IMAGE file or --slide PATH, one of them")
    b = _parse_box(box)
    assert b is not None
    gene_list = parse_genes(genes)
    opts: dict[str, Any] = {
        "model": model,
        "method": method,
        "target": target,
        "num_samples": num_samples,
        "seed": seed,
    }
    with _connect(ctx) as c:
        if slide is not None:
            res = c.explain(gene_list, slide=slide, box=b, slide_mpp=mpp, **opts)
        else:
            from stimage.data import open_slide

            assert image is not None
            with open_slide(image, mpp=mpp) as s:
                tile = s.read_region(*b)
                image_id = f"{image.resolve()}:{image.stat().st_size}"
                res = c.explain(gene_list, tile, b, float(s.mpp), image_id=image_id, **opts)
    n = write_geojson(out, res["geojson"]["features"])
    pred = ", ".join(f"{t} {v:.3g}" for t, v in zip(res["targets"], res["prediction"], strict=True))
    click.echo(f"wrote {n} nuclei to {out} (prediction: {pred})")
