"""Helpers shared by commands: progress, run metadata, parsing, loading a model cheaply first.

The options themselves live in :mod:`stimage.cli._options`.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from shapely.geometry.base import BaseGeometry

    from stimage.models import ModelBundle, Predictor, SpatialContext
    from stimage.tiles import TileSettings, TileStore

__all__ = [
    "ProgressBars",
    "check_image",
    "is_quiet",
    "load_predictor",
    "load_predictors",
    "parse_context",
    "parse_encoder_weights",
    "parse_genes",
    "parse_ids",
    "read_region_geojson",
    "settings_from_options",
    "store_from",
    "write_run_metadata",
]


def is_quiet(ctx: click.Context | None = None) -> bool:
    """Whether ``stimage -q`` asked for no progress output."""
    ctx = ctx or click.get_current_context(silent=True)
    if ctx is None:
        return False
    obj = ctx.find_root().obj
    return bool(obj.get("quiet", False)) if isinstance(obj, dict) else False


def settings_from_options(
    tile_um: float | None,
    tile_px: int,
    min_coverage: float,
    stain: str,
    stain_target: str,
    tissue_min_od: float,
) -> TileSettings:
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
    """One tqdm bar per key (sample, slide, stage), driven by ``progress(key, done, total)``.

    A bar starts at the ``done`` of its first call, so a resumed job or a first call made
    after a whole batch shows real rates, not a jump from zero in no time. :meth:`stage`
    prints a line for work that has no count yet (finding tissue, loading a model), so a
    long command says what it does from its first seconds.
    """

    def __init__(self, disable: bool = False) -> None:
        self.disable = disable
        self._bar: Any = None
        self._key: str | None = None

    @classmethod
    def of(cls, ctx: click.Context | None = None) -> ProgressBars:
        """Bars shown unless ``stimage -q``."""
        return cls(disable=is_quiet(ctx))

    def __call__(self, key: str, done: int, total: int) -> None:
        from tqdm import tqdm

        if key != self._key or self._bar is None or done < self._bar.n:
            self.close()
            self._key = key
            self._bar = tqdm(
                total=total,
                initial=done,
                desc=key,
                unit="tile",
                disable=self.disable,
                file=sys.stderr,
                leave=True,
                dynamic_ncols=True,
            )
            return
        if total != self._bar.total:
            self._bar.total = total
            self._bar.refresh()
        if done > self._bar.n:
            self._bar.update(done - self._bar.n)

    def stage(self, text: str) -> None:
        """Say on stderr what starts now (nothing with ``-q``)."""
        self.close()
        if not self.disable:
            click.echo(text, err=True)

    def close(self) -> None:
        """Finish the current bar."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self._key = None


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


def check_image(path: Path, mpp: float | None) -> None:
    """Open an image and read its scale, before a model is loaded for it (cheap).

    Raises:
        InputFileNotFoundError: No such file.
        UnknownScaleError: Neither the file nor ``--mpp`` gives its µm per pixel.
    """
    from stimage.data import open_slide

    with open_slide(path, mpp=mpp) as slide:
        _ = slide.mpp


def parse_ids(value: str | None) -> list[str] | None:
    """Comma-separated ids (``--samples A,B``), or None when not given."""
    if value is None:
        return None
    ids = [v.strip() for v in value.split(",") if v.strip()]
    if not ids:
        raise click.BadParameter("no ids given", param_hint="--samples")
    return ids


def load_predictors(
    models: Sequence[Path | None],
    *,
    device: str | None = None,
    encoder_weights: Iterable[str] = (),
    genes: Iterable[list[str] | None] = (),
    check: Callable[[ModelBundle], object] | None = None,
    bars: ProgressBars | None = None,
) -> list[Predictor]:
    """Model bundles checked cheaply first, then made ready to predict.

    Every bundle is read (its manifest and weights, about a second) and the genes and other
    cheap things are checked before any encoder is built (torch and the encoder weights take
    several seconds), so a wrong gene or option is answered at once.

    Args:
        models: Model folders (None: the bundled default model).
        device: Encoder device.
        encoder_weights: ``NAME=PATH`` options.
        genes: Gene lists (or None) that every model must predict.
        check: Called with each bundle before any encoder is built (raise to refuse).
        bars: Says which model is being loaded.

    Raises:
        InputFileNotFoundError: No model there, or an encoder weights file is missing.
        UnknownGeneError: A gene a model does not predict.
    """
    from stimage.errors import InputFileNotFoundError
    from stimage.models import Predictor, default_model_path, load_bundle

    weights = parse_encoder_weights(tuple(encoder_weights))
    for name, path in weights.items():
        if not Path(path).expanduser().is_file():
            raise InputFileNotFoundError(
                f"{path}: weights file of encoder {name!r} not found; check --encoder-weights"
            )
    bundles = [load_bundle(m or default_model_path()) for m in models]
    gene_lists = list(genes)
    for bundle in bundles:
        for g in gene_lists:
            bundle.check_genes(g)
        if check is not None:
            check(bundle)
    predictors = []
    for bundle in bundles:
        if bars is not None:
            bars.stage(f"model {bundle.name}: loading encoder(s) {', '.join(bundle.encoders)} ...")
        predictors.append(Predictor(bundle, device=device, encoder_weights=weights))
    return predictors


def load_predictor(
    model: Path | None,
    *,
    device: str | None = None,
    encoder_weights: Iterable[str] = (),
    genes: Iterable[list[str] | None] = (),
    check: Callable[[ModelBundle], object] | None = None,
    bars: ProgressBars | None = None,
) -> Predictor:
    """One model, checked cheaply first (see :func:`load_predictors`)."""
    return load_predictors(
        [model],
        device=device,
        encoder_weights=encoder_weights,
        genes=genes,
        check=check,
        bars=bars,
    )[0]


def store_from(data: Path, default_out: Path, progress: ProgressBars) -> TileStore:
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


def read_region_geojson(path: Path) -> BaseGeometry:
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


def parse_context(value: str | None) -> SpatialContext | None:
    """``--context``: ring radii in µm (``300,500``), or ``none``.

    Raises:
        click.BadParameter: Not increasing positive numbers.
    """
    from stimage.errors import ConfigError
    from stimage.models import SpatialContext

    if value is None or value.strip().lower() in ("", "none", "off"):
        return None
    try:
        return SpatialContext(tuple(float(v) for v in value.split(",") if v.strip()))
    except (ValueError, ConfigError) as e:
        raise click.BadParameter(
            f"{value!r}: give ring radii in µm like 300,500, or none ({e})", param_hint="--context"
        ) from None
