"""``stimage serve``: the ZeroMQ backend QuPath and scripts talk to (see docs/protocol.md)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from stimage.cli._options import (
    batch_size_option,
    device_option,
    encoder_weights_option,
    folder_option,
    model_option,
    options,
)

if TYPE_CHECKING:
    from stimage.server import Server


#: Who may reach the server, and which slide files it may read.
_ACCESS_OPTIONS = options(
    click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on."),
    click.option(
        "--port", type=click.IntRange(0, 65535), default=5557, show_default=True, help="TCP port."
    ),
    folder_option(
        "--curve-keys",
        help="Folder made by --make-keys: encrypt and let in only clients whose keys are in DIR/authorized.",
    ),
    click.option(
        "--insecure",
        is_flag=True,
        help="Listen on a non-loopback interface without keys: anyone who reaches the port may use it.",
    ),
    folder_option(
        "--allow-root",
        "allow_roots",
        multiple=True,
        help="Folder whose slide files clients may ask the server to read (repeatable; none by default).",
    ),
)


@click.command()
@model_option(
    "Model folder; repeat to serve several (the first is the default) [default: the bundled model].",
    name="models",
    multiple=True,
)
@_ACCESS_OPTIONS
@device_option("auto (GPU when available), cpu, cuda, cuda:1...", default="auto")
@batch_size_option("Tiles per forward pass.")
@click.option(
    "--max-requests",
    type=click.IntRange(1, 10000),
    default=32,
    show_default=True,
    help="Requests queued or running at once; more are answered 'busy'.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=2,
    show_default=True,
    help="Tile decoding threads.",
)
@encoder_weights_option
@folder_option(
    "--cells-model",
    help="Cell-type model for the cells operation [default: the bundled one].",
)
@folder_option(
    "--make-keys",
    help="Create server and client CURVE keys in this folder, then exit.",
)
@click.option(
    "--exit-with-stdin",
    is_flag=True,
    help="Stop when standard input closes: a program that starts the server with a pipe "
    "(the QuPath extension's local backend) takes it down with it, even when killed.",
)
def serve(
    models: tuple[Path, ...],
    host: str,
    port: int,
    curve_keys: Path | None,
    insecure: bool,
    allow_roots: tuple[Path, ...],
    device: str,
    batch_size: int,
    max_requests: int,
    workers: int,
    encoder_weights: tuple[str, ...],
    cells_model: Path | None,
    make_keys: Path | None,
    exit_with_stdin: bool,
) -> None:
    """Serve models over ZeroMQ until interrupted (Ctrl+C or SIGTERM).

    Listens on 127.0.0.1 by default. Another interface needs --curve-keys (create them with
    --make-keys DIR; give clients DIR/server.key and DIR/client.key_secret) or --insecure.
    """
    from stimage.server import Limits, Server, ServerConfig

    if make_keys is not None:
        _make_keys(make_keys)
        return
    from stimage.cli._common import ProgressBars, load_predictors

    config = ServerConfig(
        host=host,
        port=port,
        curve_keys=curve_keys,
        insecure=insecure,
        allow_roots=allow_roots,
        device=device,
        limits=Limits(batch_size=batch_size, max_requests=max_requests),
        workers=workers,
    )
    if insecure:
        click.echo(
            "WARNING: --insecure: no authentication and no encryption; anyone who can reach "
            f"{host}:{port} can use this server and read its replies.",
            err=True,
        )
    folders: list[Path | None] = [*models] or [None]
    predictors = load_predictors(
        folders,
        device=None if device == "auto" else device,
        encoder_weights=encoder_weights,
        bars=ProgressBars.of(),
    )
    server = Server(predictors, config)
    from stimage.errors import InputFileNotFoundError

    try:
        server.use_cells_model(cells_model)
    except InputFileNotFoundError as e:
        if cells_model is not None:
            raise
        click.echo(f"warning: no cell-type model, cells requests will fail ({e})", err=True)
    server.start()
    _run_until_stopped(server, exit_with_stdin)


def _make_keys(folder: Path) -> None:
    """Create server and client CURVE keys and say what goes where."""
    from stimage.server import make_keys

    paths = make_keys(folder)
    click.echo(
        f"server keys: {paths['server_public']} (public), {paths['server_secret']} (keep here)"
    )
    click.echo(
        f"client keys: {paths['client_public']}, {paths['client_secret']} (give to the client)"
    )
    click.echo(f"authorised client keys: {paths['authorized']}/*.key")
    click.echo(f"start with: stimage serve --curve-keys {folder} --host 0.0.0.0")


def _run_until_stopped(server: Server, exit_with_stdin: bool = False) -> None:
    """Serve until Ctrl+C or SIGTERM (or, when asked, until stdin closes), then stop."""
    import logging
    import os
    import signal
    import sys
    import threading

    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if exit_with_stdin:

        def watch() -> None:
            # Reads until end of file, which comes when the process holding the pipe ends.
            try:
                while os.read(sys.stdin.fileno(), 4096):
                    pass
            except (OSError, ValueError):
                pass
            logging.getLogger(__name__).info("standard input closed: stopping")
            stop.set()

        threading.Thread(target=watch, name="stdin-watch", daemon=True).start()
    click.echo(
        f"stimage server on {server.address} ({server.device}); models: {', '.join(server.models)}; "
        "Ctrl+C to stop",
        err=True,
    )
    try:
        while server.running and not stop.is_set():
            stop.wait(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        logging.getLogger(__name__).info("stopping")
        server.stop()
