"""What a project batch did, image by image, and its plain-text summary."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["ImageResult", "format_summary"]


@dataclass
class ImageResult:
    """What happened to one image.

    Attributes:
        id: QuPath entry id.
        name: Image name.
        status: ``"done"``, ``"skipped"``, ``"failed"`` or, for a dry run, ``"to do"``.
        regions: ``"N annotations"`` or ``"tissue"`` (empty when not got that far).
        tiles: Tiles added.
        cells: Cells added.
        seconds: Time spent on the image.
        note: Why skipped or failed, or a remark.
    """

    id: str
    name: str
    status: str
    regions: str = ""
    tiles: int = 0
    cells: int = 0
    seconds: float = 0.0
    note: str = ""


def format_summary(results: Sequence[ImageResult]) -> str:
    """A plain-text table of the results, one row per image, and a totals line.

    Example:
        >>> r = ImageResult("1", "A.svs", "done", "tissue", 12, 0, 3.2)
        >>> print(format_summary([r]))  # doctest: +NORMALIZE_WHITESPACE
        image  status  regions  tiles  cells  time  note
        A.svs  done    tissue   12     0      3s
        1 done, 0 skipped, 0 failed
    """
    head = ("image", "status", "regions", "tiles", "cells", "time", "note")
    rows = [
        (
            r.name,
            r.status,
            r.regions,
            str(r.tiles) if r.status == "done" else "",
            str(r.cells) if r.status == "done" else "",
            f"{r.seconds:.0f}s" if r.seconds else "",
            r.note,
        )
        for r in results
    ]
    widths = [max(len(x[i]) for x in [head, *rows]) for i in range(len(head) - 1)]
    lines = [
        "  ".join([*(c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)), row[-1]]).rstrip()
        for row in [head, *rows]
    ]
    counts = {s: sum(r.status == s for r in results) for s in ("done", "skipped", "failed")}
    tail = f"{counts['done']} done, {counts['skipped']} skipped, {counts['failed']} failed"
    todo = sum(r.status == "to do" for r in results)
    if todo:
        tail += f", {todo} to do"
    return "\n".join([*lines, tail])
