"""The slides of a cohort: a manifest (CSV or TSV) or every slide file of a folder.

A manifest has a header row and one slide per row::

    slide,id,region,mpp
    scans/A1.svs,A1,regions/A1.geojson,
    scans/A2.tif,,,0.5

``slide`` (required) is the slide file, relative to the manifest's folder unless absolute;
``id`` names the slide's outputs (default: the file name without its suffix); ``region``
is a GeoJSON of the region(s) to tile (a QuPath annotation export; empty: all tissue);
``mpp`` (also ``um_per_px`` or ``µm/px``) is the µm per pixel when the slide does not record
it. Other columns are ignored (a warning names them). Everything read is bounded: the file's
size, the number of rows and columns and the length of each field; a bad row is refused
with its line number, what is wrong and how to fix it.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from stimage.errors import ConfigError, InputFileNotFoundError

__all__ = [
    "MAX_MANIFEST_BYTES",
    "MAX_MANIFEST_ROWS",
    "SLIDE_SUFFIXES",
    "SlideSpec",
    "cohort_slides",
    "read_manifest",
    "slides_in_folder",
]

logger = logging.getLogger(__name__)

#: Largest manifest read (a million-slide cohort's manifest is about 100 MB; split it).
MAX_MANIFEST_BYTES = 64 << 20
#: Most slides in one manifest or folder.
MAX_MANIFEST_ROWS = 200_000
#: Most columns of a manifest.
MAX_COLUMNS = 64
#: Longest field (a path).
MAX_FIELD_CHARS = 4096
#: Longest slide id (it names files).
MAX_ID_CHARS = 128
#: µm per pixel accepted (as ``--mpp``: 40x is about 0.25, 10x about 1).
MPP_RANGE = (0.05, 4.0)
#: Slide files a folder run picks up (others are left alone).
SLIDE_SUFFIXES = frozenset(
    {".svs", ".tif", ".tiff", ".ndpi", ".mrxs", ".scn", ".vms", ".vmu", ".bif", ".btf",
     ".svslide", ".qptiff", ".jpg", ".jpeg", ".png"}
)  # fmt: skip

_COLUMNS = {
    "slide": "slide",
    "path": "slide",
    "id": "id",
    "region": "region",
    "mpp": "mpp",
    "um_per_px": "mpp",
    "µm/px": "mpp",
    "microns_per_pixel": "mpp",
}
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class SlideSpec:
    """One slide of a cohort.

    Attributes:
        id: Names the slide's outputs (``OUT/slides/<id>/<id>.geojson``); unique in the cohort.
        slide: The slide file.
        region: GeoJSON of the region(s) to tile; None for all tissue.
        mpp: µm per pixel overriding the slide's metadata; None to read it from the slide.
        index: Position in the manifest (0-based), as ``--only-index`` counts.
    """

    id: str
    slide: Path
    region: Path | None = None
    mpp: float | None = None
    index: int = 0


def _id_from(path: Path) -> str:
    name = path.name
    for suf in sorted(SLIDE_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suf):
            name = name[: -len(suf)]
            break
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip("._-")
    return (safe or "slide")[:MAX_ID_CHARS]


def _check_id(value: str, where: str) -> str:
    if len(value) > MAX_ID_CHARS or not _ID.match(value):
        raise ConfigError(
            f"{where}: id {value[:60]!r} is not usable as a file name; use letters, digits, "
            f"'.', '_' and '-' (starting with a letter or digit, at most {MAX_ID_CHARS})"
        )
    return value


def _parse_mpp(value: str, where: str) -> float | None:
    if not value:
        return None
    try:
        mpp = float(value)
    except ValueError:
        raise ConfigError(
            f"{where}: mpp {value[:40]!r} is not a number; give the µm per pixel (e.g. 0.25) "
            "or leave it empty to read it from the slide"
        ) from None
    lo, hi = MPP_RANGE
    if not (math.isfinite(mpp) and lo <= mpp <= hi):
        raise ConfigError(
            f"{where}: mpp {mpp:g} is not a plausible H&E scale (accepted {lo:g} to {hi:g}; "
            "40x ≈ 0.25, 20x ≈ 0.5); give the full-resolution µm per pixel"
        )
    return mpp


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise InputFileNotFoundError(f"{path}: no such manifest (a CSV or TSV of slides)")
    size = path.stat().st_size
    if size > MAX_MANIFEST_BYTES:
        raise ConfigError(
            f"{path}: {size} bytes is too large for a manifest (at most "
            f"{MAX_MANIFEST_BYTES >> 20} MiB); split the cohort into several manifests"
        )
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            return fh.read(MAX_MANIFEST_BYTES + 1)
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text ({e}); save the manifest as UTF-8 CSV") from e


def _header(row: list[str], path: Path) -> dict[str, int]:
    if len(row) > MAX_COLUMNS:
        raise ConfigError(f"{path}: {len(row)} columns; a manifest has at most {MAX_COLUMNS}")
    cols: dict[str, int] = {}
    ignored = []
    for i, name in enumerate(row):
        key = _COLUMNS.get(name.strip().lower())
        if key is None:
            ignored.append(name.strip()[:40])
        elif key in cols:
            raise ConfigError(f"{path}: two columns give {key!r}; keep one")
        else:
            cols[key] = i
    if "slide" not in cols:
        raise ConfigError(
            f"{path}: the header has no 'slide' column (found {[c[:40] for c in row[:8]]}); "
            "the first row names the columns: slide (required), id, region, mpp"
        )
    if ignored:
        logger.warning("%s: columns ignored: %s", path, ", ".join(ignored[:10]))
    return cols


def read_manifest(path: str | os.PathLike[str]) -> list[SlideSpec]:
    """The slides of a manifest (CSV, or TSV when it has tabs in its header).

    Args:
        path: The manifest; relative paths in it are relative to its folder.

    Returns:
        The slides in file order, with unique ids.

    Raises:
        InputFileNotFoundError: No such manifest.
        ConfigError: A bad header or row (the message gives the line), too large, or no rows.

    Example:
        >>> read_manifest("cohort.csv")[0].id  # doctest: +SKIP
        'A1'
    """
    path = Path(path)
    text = _read_text(path)
    first = text.split("\n", 1)[0]
    delim = "\t" if path.suffix.lower() in (".tsv", ".tab") or "\t" in first else ","
    base = path.parent.absolute()  # workers elsewhere (Ray, Slurm) may not share our cwd
    reader = csv.reader(io.StringIO(text), delimiter=delim, strict=True)
    specs: list[SlideSpec] = []
    try:
        cols: dict[str, int] | None = None
        for row in reader:
            where = f"{path} line {reader.line_num}"
            if cols is None:
                cols = _header(row, path)
                continue
            if not any(c.strip() for c in row):
                continue
            if len(specs) >= MAX_MANIFEST_ROWS:
                raise ConfigError(
                    f"{path}: more than {MAX_MANIFEST_ROWS} slides; split the cohort into "
                    "several manifests, each with its own --out"
                )
            specs.append(_row(row, cols, base, where, len(specs)))
    except csv.Error as e:
        raise ConfigError(
            f"{path} line {reader.line_num}: not valid CSV ({e}); check the quotes"
        ) from e
    if not specs:
        raise ConfigError(f"{path}: no slides (a header row, then one slide per row)")
    _check_unique(specs, path)
    return specs


def _row(row: list[str], cols: dict[str, int], base: Path, where: str, index: int) -> SlideSpec:
    if len(row) > MAX_COLUMNS:
        raise ConfigError(f"{where}: {len(row)} fields; a manifest has at most {MAX_COLUMNS}")
    for v in row:
        if len(v) > MAX_FIELD_CHARS or "\x00" in v:
            raise ConfigError(
                f"{where}: a field is longer than {MAX_FIELD_CHARS} characters or holds a NUL; "
                "give plain paths and numbers"
            )

    def get(key: str) -> str:
        i = cols.get(key)
        return row[i].strip() if i is not None and i < len(row) else ""

    slide = get("slide")
    if not slide:
        raise ConfigError(f"{where}: the slide column is empty; give the slide file's path")
    slide_path = _path(slide, base, where)
    region = get("region")
    sid = get("id")
    return SlideSpec(
        id=_check_id(sid, where) if sid else _id_from(slide_path),
        slide=slide_path,
        region=_path(region, base, where) if region else None,
        mpp=_parse_mpp(get("mpp"), where),
        index=index,
    )


def _path(value: str, base: Path, where: str) -> Path:
    """A path of the manifest: ``~`` expanded, relative to the manifest's folder."""
    try:
        return base / Path(value).expanduser()
    except RuntimeError as e:  # ~someone who is not a user here
        raise ConfigError(
            f"{where}: cannot expand {value[:60]!r} ({e}); give the full path"
        ) from None


def _check_unique(specs: list[SlideSpec], where: object) -> None:
    seen: dict[str, int] = {}
    for s in specs:
        key = s.id.lower()  # ids name files: a case-insensitive file system merges A1 and a1
        if key in seen:
            raise ConfigError(
                f"{where}: slides {seen[key] + 1} and {s.index + 1} both have the id {s.id!r} "
                "(ids name the outputs); give each slide its own id in an 'id' column"
            )
        seen[key] = s.index


def slides_in_folder(folder: str | os.PathLike[str]) -> list[SlideSpec]:
    """Every slide file directly in a folder (by suffix, see :data:`SLIDE_SUFFIXES`), by name.

    Raises:
        ConfigError: No slide files, too many, or two with the same id.
    """
    folder = Path(folder).absolute()
    found = []
    with os.scandir(folder) as it:
        for entry in it:
            p = Path(entry.path)
            if p.name.startswith("."):
                continue
            if p.suffix.lower() in SLIDE_SUFFIXES and (entry.is_file() or p.suffix == ".mrxs"):
                found.append(p)
                if len(found) > MAX_MANIFEST_ROWS:
                    raise ConfigError(
                        f"{folder}: more than {MAX_MANIFEST_ROWS} slides; split it into "
                        "manifests, each with its own --out"
                    )
    if not found:
        raise ConfigError(
            f"{folder}: no slide files (suffixes {', '.join(sorted(SLIDE_SUFFIXES))}); "
            "give a folder of slides or a manifest CSV"
        )
    specs = [SlideSpec(_id_from(p), p, index=i) for i, p in enumerate(sorted(found))]
    _check_unique(specs, folder)
    return specs


def cohort_slides(source: str | os.PathLike[str]) -> list[SlideSpec]:
    """The slides of a manifest file or of a folder.

    Raises:
        InputFileNotFoundError: ``source`` does not exist.
        ConfigError: A bad manifest, or a folder without slides.
    """
    p = Path(source)
    if p.is_dir() and p.suffix.lower() != ".mrxs":
        return slides_in_folder(p)
    if not p.exists():
        raise InputFileNotFoundError(
            f"{p}: no such manifest or folder; give a CSV/TSV of slides or a folder of slides"
        )
    return read_manifest(p)
