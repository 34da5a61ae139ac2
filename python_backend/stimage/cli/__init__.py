"""The ``stimage`` command: a thin layer over the library, one module per command."""

from stimage.cli._main import cli, main

__all__ = ["cli", "main"]
