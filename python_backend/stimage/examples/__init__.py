"""Bundled example data (see each folder's README for its source and citation)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["example_path"]


def example_path(name: str = "her2st_B4_crop") -> Path:
    """Folder of a bundled example.

    Raises:
        FileNotFoundError: No such example.
    """
    p = Path(__file__).parent / name
    if not p.is_dir():
        names = sorted(
            c.name
            for c in Path(__file__).parent.iterdir()
            if c.is_dir() and not c.name.startswith("_")
        )
        raise FileNotFoundError(f"no bundled example {name!r}; there are {names}")
    return p
