"""Options and helpers shared by commands."""

from __future__ import annotations

import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

__all__ = ["ProgressBars", "tile_options", "write_run_metadata"]


def tile_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Options that define how tiles are cut, checked and normalised."""
    opts = [
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
        click.option(
            "--mpp",
            type=click.FloatRange(min=0.01),
            default=None,
            help="µm per pixel for every image (overrides metadata and spot grids).",
        ),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def settings_from_options(
    tile_um: float | None,
    tile_px: int,
    min_coverage: float,
    stain: str,
    stain_target: str,
    tissue_min_od: float,
) -> Any:
    """TileSettings from the shared tile options."""
    from stimage.tiles import TileSettings, TissueParams

    return TileSettings(
        tile_um=tile_um,
        tile_px=tile_px,
        min_coverage=min_coverage,
        stain=None if stain == "none" else stain,
        stain_target=stain_target,
        tissue=TissueParams(min_od=tissue_min_od),
    )


class ProgressBars:
    """One tqdm bar per sample, driven by ``progress(sample_id, done, total)`` callbacks."""

    def __init__(self, disable: bool = False) -> None:
        self.disable = disable
        self._bar: Any = None
        self._key: str | None = None

    def __call__(self, key: str, done: int, total: int) -> None:
        from tqdm import tqdm

        if key != self._key:
            self.close()
            self._key = key
            self._bar = tqdm(
                total=total,
                desc=key,
                unit="tile",
                disable=self.disable,
                file=sys.stderr,
                leave=True,
                dynamic_ncols=True,
            )
        if self._bar is not None:
            self._bar.total = total
            self._bar.n = done
            self._bar.refresh()

    def close(self) -> None:
        """Finish the current bar."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def write_run_metadata(
    out: Path, command: str, arguments: dict[str, Any], extra: dict[str, Any] | None = None
) -> Path:
    """Write ``run_metadata.json`` (versions, arguments, time) beside a command's outputs."""
    from stimage._version import __version__

    data = {
        "command": command,
        "arguments": {k: (str(v) if isinstance(v, Path) else v) for k, v in arguments.items()},
        "stimage_version": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **(extra or {}),
    }
    out.mkdir(parents=True, exist_ok=True)
    p = out / "run_metadata.json"
    p.write_text(json.dumps(data, indent=2, default=str))
    return p


def parse_encoder_weights(items: tuple[str, ...]) -> dict[str, str]:
    """``NAME=PATH`` options as a dict."""
    out = {}
    for it in items:
        name, sep, path = it.partition("=")
        if not sep or not name or not path:
            raise click.BadParameter(
                f"expected NAME=PATH, got {it!r}", param_hint="--encoder-weights"
            )
        out[name.strip()] = path.strip()
    return out


def parse_genes(value: str) -> list[str]:
    """Comma-separated genes, or a file with one gene per line."""
    p = Path(value)
    if p.is_file():
        genes = [
            ln.strip() for ln in p.read_text().splitlines() if ln.strip() and not ln.startswith("#")
        ]
    else:
        genes = [g.strip() for g in value.split(",") if g.strip()]
    if not genes:
        raise click.BadParameter("no genes given", param_hint="--genes")
    return genes


def store_from(data: Path, default_out: Path, progress: Any) -> Any:
    """A tile store: ``data`` itself if it is one, else ``data`` prepared into ``default_out``."""
    from stimage.data import load_dataset
    from stimage.tiles import TileSettings, TileStore, prepare_dataset

    if (data / "store.json").exists():
        return TileStore(data)
    click.echo(
        f"{data} is not a tile store: preparing it into {default_out} with the default tile settings"
    )
    prepare_dataset(load_dataset(data), default_out, TileSettings(), progress=progress)
    return TileStore(default_out)


def read_region_geojson(path: Path) -> Any:
    """The union of the polygons of a GeoJSON file (a QuPath export), in pixels.

    Sizes are bounded before any geometry work (see :func:`stimage.qupath.region_geometry`).

    Raises:
        ConfigError: No polygon in the file, or it cannot be read.
    """
    import json

    from stimage.errors import ConfigError
    from stimage.qupath import GeoJSONError, union_regions

    max_bytes = 256 << 20
    try:
        if path.stat().st_size > max_bytes:
            raise ConfigError(
                f"{path}: {path.stat().st_size} bytes is too large for a region file "
                f"(at most {max_bytes >> 20} MiB); export only the region's annotation"
            )
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: cannot read the region GeoJSON ({e})") from e
    feats = data.get("features", [data]) if isinstance(data, dict) else data
    if not isinstance(feats, list):
        feats = []
    specs = []
    for f in feats:
        g = f.get("geometry", f) if isinstance(f, dict) else None
        if isinstance(g, dict) and g.get("type") in ("Polygon", "MultiPolygon"):
            specs.append(g)
    if not specs:
        raise ConfigError(
            f"{path}: no Polygon or MultiPolygon in the GeoJSON; export an annotation from QuPath"
        )
    try:
        return union_regions(specs, str(path))
    except GeoJSONError as e:
        raise ConfigError(str(e)) from e
