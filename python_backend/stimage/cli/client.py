"""``stimage client``: talk to a running ``stimage serve`` from scripts."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from stimage.cli._options import (
    explain_options,
    folder_option,
    genes_option,
    model_option,
    mpp_option,
    out_option,
)

if TYPE_CHECKING:
    from stimage.server.client import Client

F = TypeVar("F", bound=Callable[..., Any])

_ADDRESS = "tcp://127.0.0.1:5557"
#: Genes of each model that ``client hello`` names.
_HELLO_GENES = 8
#: Seconds a command waits for a server's first answer.
_CONNECT_S = 3.0
_SERVED_MODEL = "Model name (see `stimage client hello`)."


@click.group()
@click.option("--address", "-a", default=_ADDRESS, show_default=True, help="The server's endpoint.")
@folder_option(
    "--curve-keys",
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


def _connect(ctx: click.Context) -> Client:
    from stimage.server.client import Client

    a = ctx.obj["client_args"]
    beat = min(15.0, a["timeout"])
    return Client(
        a["address"],
        timeout=a["timeout"],
        curve_keys=a["curve_keys"],
        heartbeat_timeout=beat,
        connect_timeout=min(_CONNECT_S, beat),
    )


@client.command()
@click.option("--json", "as_json", is_flag=True, help="Print the whole reply as JSON.")
@click.pass_context
def hello(ctx: click.Context, as_json: bool) -> None:
    """Print the server's versions, models (genes, tiles) and limits."""
    with _connect(ctx) as c:
        info = c.hello()
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    for line in _hello_lines(info):
        click.echo(line)


def _limit(key: str, value: Any) -> str:
    """A server limit as text: sizes in MiB, numbers without trailing zeros."""
    if key.endswith("_bytes") and isinstance(value, int) and value >= 1 << 20:
        return f"{value / (1 << 20):g} MiB"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _hello_lines(info: dict[str, Any]) -> list[str]:
    """The hello reply as text: server, each model with its genes, access and limits."""
    lines = [f"stimage {info['version']} (protocol {info['protocol']}) on {info['device']}"]
    for m in info["models"]:
        star = " (default)" if m["default"] else ""
        genes = list(m["genes"])
        more = ", ..." if len(genes) > _HELLO_GENES else ""
        lines.append(
            f"  {m['name']}{star}: {len(genes)} genes, tiles of {m['tile_um']:g} µm at "
            f"{m['tile_px']} px, stain {m['stain'] or 'none'}"
        )
        lines.append(f"    genes: {', '.join(genes[:_HELLO_GENES])}{more}")
    lines.append(
        f"  slide paths: {'allowed' if info['slide_paths'] else 'refused'}; "
        f"ops: {', '.join(info['ops'])}"
    )
    limits = info.get("limits") or {}
    if limits:
        text = ", ".join(f"{k} {_limit(k, v)}" for k, v in limits.items())
        lines += textwrap.wrap(
            f"limits: {text}", width=96, initial_indent="  ", subsequent_indent="    "
        )
    return lines


@client.command()
@click.pass_context
def ping(ctx: click.Context) -> None:
    """Print the round-trip time."""
    with _connect(ctx) as c:
        click.echo(f"{c.ping() * 1000:.1f} ms")


def _parse_box(value: str, option: str) -> tuple[float, float, float, float]:
    parts = [p for p in value.replace(" ", "").split(",") if p]
    try:
        box = [float(p) for p in parts]
    except ValueError:
        box = []
    if len(box) != 4 or box[2] <= 0 or box[3] <= 0:
        raise click.BadParameter(
            "expected X,Y,WIDTH,HEIGHT in full-resolution pixels", param_hint=option
        )
    return box[0], box[1], box[2], box[3]


def _image_or_slide(f: F) -> F:
    """IMAGE (read here and sent) or ``--slide`` (a path the server reads): one of them."""
    f = click.option(
        "--slide",
        default=None,
        help="A slide path on the server's machine (under its --allow-root): the server reads it.",
    )(f)
    return click.argument("image", required=False, type=click.Path(path_type=Path, dir_okay=False))(
        f
    )


def _one_source(image: Path | None, slide: str | None) -> None:
    if (image is None) == (slide is None):
        raise click.UsageError("give an IMAGE file or --slide PATH, one of them")


@client.command()
@_image_or_slide
@click.option(
    "--region",
    default=None,
    help="X,Y,WIDTH,HEIGHT in full-resolution pixels [default: all tissue].",
)
@mpp_option("µm per pixel of the image.")
@model_option(_SERVED_MODEL, path=False)
@genes_option("Comma-separated genes (default: all).")
@out_option("GeoJSON to write.", dir_okay=False)
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

    An IMAGE (or --region) of one model tile is sent as that one tile; a larger one is cut
    into the model's tiles where there is tissue. Writes a QuPath GeoJSON FeatureCollection
    of tiles with their measurements.
    """
    from stimage.cli._common import parse_genes
    from stimage.qupath import write_geojson

    _one_source(image, slide)
    box = _parse_box(region, "--region") if region is not None else None
    gene_list = parse_genes(genes) if genes else None
    with _connect(ctx) as c:
        if slide is not None:
            res = c.predict_slide(slide, box, mpp=mpp, model=model, genes=gene_list)
            features = res["geojson"]["features"]
        elif image is not None:
            from stimage.cli._client_tiles import predict_image

            features = predict_image(c, image, box, mpp, model, gene_list, min_coverage, batch)
    n = write_geojson(out, features)
    click.echo(f"wrote {n} tiles to {out}")


@client.command()
@_image_or_slide
@click.option(
    "--region", required=True, help="X,Y,WIDTH,HEIGHT in full-resolution pixels of the region."
)
@mpp_option("µm per pixel of the image.")
@click.option(
    "--downsample",
    type=click.FloatRange(min=1.0),
    default=1.0,
    show_default=True,
    help="Send an IMAGE region at this downsample (for regions too large to send at full size).",
)
@click.option("--no-classify", is_flag=True, help="Only segment; do not type the cells.")
@out_option("GeoJSON of the cells to write.", dir_okay=False)
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

    _one_source(image, slide)
    x, y, w, h = _parse_box(region, "--region")
    with _connect(ctx) as c:
        if slide is not None:
            res = c.cells(slide=slide, region=(x, y, w, h), slide_mpp=mpp, classify=not no_classify)
        elif image is not None:
            from stimage.data import open_slide

            with open_slide(image, mpp=mpp) as s:
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
@_image_or_slide
@click.option(
    "--box",
    required=True,
    help="X,Y,WIDTH,HEIGHT of the tile in full-resolution pixels (the model's tile µm square).",
)
@genes_option("Comma-separated genes to explain.", required=True)
@mpp_option("µm per pixel of the image.")
@model_option(_SERVED_MODEL, path=False)
@explain_options(both=False, max_samples=10000)
@out_option("GeoJSON of the scored nuclei to write.", dir_okay=False)
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

    _one_source(image, slide)
    b = _parse_box(box, "--box")
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
        elif image is not None:
            from stimage.cli._client_tiles import explain_inputs
            from stimage.data import open_slide

            with open_slide(image, mpp=mpp) as s:
                tile = s.read_region(*b)
                image_id = f"{image.resolve()}:{image.stat().st_size}"
                view, around = explain_inputs(c.hello(), s, image, b, model, min_coverage=0.5)
                res = c.explain(
                    gene_list,
                    tile,
                    b,
                    float(s.mpp),
                    image_id=image_id,
                    neighbours=around,
                    model_tile=view,
                    **opts,
                )
    n = write_geojson(out, res["geojson"]["features"])
    pred = ", ".join(f"{t} {v:.3g}" for t, v in zip(res["targets"], res["prediction"], strict=True))
    held = res.get("context_tiles")
    with_ctx = "" if held is None else f", with {held} neighbouring tiles held fixed"
    click.echo(f"wrote {n} nuclei to {out} (prediction: {pred}{with_ctx})")
