"""The ``stimage`` command group and its error handling.

User errors (:class:`~stimage.errors.StimageError`) print one line naming the problem and
the fix and exit with status 2; anything else prints one line asking for a report and exits
with status 1. ``--debug`` shows the traceback instead. Commands import their heavy
dependencies inside their bodies, so ``stimage --help`` is instant.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from stimage._version import __version__

__all__ = ["cli", "main"]

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 1
EXIT_INTERRUPTED = 130


class _Group(click.Group):
    """A group that turns errors into one-line messages and exit codes."""

    def invoke(self, ctx: click.Context) -> Any:
        from stimage.errors import StimageError

        debug = bool(ctx.params.get("debug"))
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except StimageError as e:
            if debug:
                raise
            click.echo(f"error: {e}", err=True)
            ctx.exit(EXIT_USER_ERROR)
        except KeyboardInterrupt:
            click.echo(
                "interrupted; finished work is kept - run the same command again to resume",
                err=True,
            )
            ctx.exit(EXIT_INTERRUPTED)
        except Exception as e:
            if debug:
                raise
            click.echo(
                f"internal error: {type(e).__name__}: {e} (run again with --debug for the "
                "traceback, and please report it)",
                err=True,
            )
            ctx.exit(EXIT_INTERNAL_ERROR)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)


@click.group(
    cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}
)
@click.version_option(__version__, prog_name="stimage")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logging.")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors; no progress bars.")
@click.pass_context
def cli(ctx: click.Context, debug: bool, quiet: bool) -> None:
    """STImage: spatial gene expression, cell types and explanations from H&E, for QuPath.

    Run `stimage demo` for a first look, `stimage doctor` to check the installation.
    """
    level = logging.DEBUG if debug else (logging.WARNING if quiet else logging.INFO)
    logging.basicConfig(
        level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    for noisy in ("PIL", "matplotlib", "h5py", "numcodecs", "zarr", "asyncio", "fsspec"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    ctx.obj["quiet"] = quiet


def _register() -> None:
    from stimage.cli import (
        annotate_project,
        cells,
        client,
        demo,
        doctor,
        evaluate,
        explain,
        models,
        predict,
        predict_slide,
        predict_slides,
        prepare,
        serve,
        train,
        train_cells,
    )

    cli.add_command(demo.demo)
    cli.add_command(prepare.prepare)
    cli.add_command(train.train)
    cli.add_command(predict.predict)
    cli.add_command(predict_slide.predict_slide)
    cli.add_command(predict_slides.predict_slides)
    cli.add_command(annotate_project.annotate_project)
    cli.add_command(evaluate.evaluate)
    cli.add_command(train_cells.train_cells)
    cli.add_command(cells.cells)
    cli.add_command(explain.explain)
    cli.add_command(models.models)
    cli.add_command(serve.serve)
    cli.add_command(client.client)
    cli.add_command(doctor.doctor)


_register()


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``stimage`` console script."""
    cli.main(args=argv, prog_name="stimage")
