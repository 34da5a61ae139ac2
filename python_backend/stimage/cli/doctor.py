"""``stimage doctor``: what is installed, which weights are found, which device will run."""

from __future__ import annotations

import click


@click.command()
def doctor() -> None:
    """Print versions, optional parts, weights found and the device that will run."""
    from stimage._doctor import collect

    report = collect()
    for section, rows in report.items():
        click.echo(f"{section}:")
        width = max((len(k) for k in rows), default=0)
        for k, v in rows.items():
            click.echo(f"  {k.ljust(width)}  {v}")
