"""``stimage doctor``: what is installed, which weights are found, which device will run."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option(
    "--qupath",
    is_flag=True,
    help="Print what to paste into QuPath's STImage backend settings to start a backend from "
    "this Python environment.",
)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=5557,
    show_default=True,
    help="With --qupath: the port of the server address.",
)
@click.option(
    "--model",
    type=click.Path(file_okay=False, path_type=Path),
    help="With --qupath: a model folder to serve instead of the bundled one.",
)
@click.option(
    "--curve-keys",
    type=click.Path(file_okay=False, path_type=Path),
    help="With --qupath: the folder `stimage serve --make-keys` wrote (for a remote backend).",
)
def doctor(qupath: bool, port: int, model: Path | None, curve_keys: Path | None) -> None:
    """Print versions, optional parts, weights found and the device that will run.

    With --qupath, print instead the Python environment, the stimage program, the server
    address, the model folder and the CURVE keys to paste into QuPath's Extensions > STImage >
    Backend settings, so that its Start button starts `stimage serve` from this environment.
    """
    if qupath:
        _qupath(port, model, curve_keys)
        return
    from stimage._doctor import collect

    report = collect()
    for section, rows in report.items():
        click.echo(f"{section}:")
        width = max((len(k) for k in rows), default=0)
        for k, v in rows.items():
            click.echo(f"  {k.ljust(width)}  {v}")


def _qupath(port: int, model: Path | None, curve_keys: Path | None) -> None:
    import platform
    import sys

    from stimage._doctor import QUPATH_SETTINGS, qupath_settings
    from stimage._version import __version__
    from stimage.server import PROTOCOL_VERSION

    rows = qupath_settings(port=port, model=model, curve_keys=curve_keys)
    click.echo(f"Paste into QuPath, {QUPATH_SETTINGS}:")
    width = max(len(k) for k in rows)
    for k, v in rows.items():
        click.echo(f"  {k.ljust(width)}  {v}")
    click.echo(
        "Either path works as the Python environment. Then press Start; the backend runs until "
        "you press Stop or close QuPath."
    )
    click.echo(
        f"(stimage {__version__}, protocol {PROTOCOL_VERSION}, Python {platform.python_version()} "
        f"at {sys.executable})"
    )
