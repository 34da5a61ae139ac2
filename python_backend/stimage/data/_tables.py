"""Delimited text tables (counts, spot files, positions, cells) with clear errors when damaged.

Tables downloaded or copied in pieces end early. Three ways show:

* a gzip stream cut short: Python raises ``EOFError`` (a damaged one ``BadGzipFile`` or
  ``zlib.error``); reported here as the file being cut short or damaged;
* a table cut inside a row: that row has fewer columns than the others, which pandas would
  silently pad with empty values; reported here with the file, the line, the columns
  expected and found;
* a table cut exactly at a line end: it reads cleanly. Only the caller knows which rows
  should be there (the spots under tissue of the spot file, :mod:`._grid`), so it checks.

Every message ends with the fix: download, copy or export the file again.
"""

from __future__ import annotations

import gzip
import io
import re
import zlib
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import pandas as pd

from stimage.errors import InvalidSampleError

__all__ = ["read_text_table"]

_FIX = "download, copy or export the file again"


def read_text_table(
    path: Path,
    what: str,
    *,
    header: Literal[0] | None = 0,
    dtype: Mapping[str | int, type] | None = None,
) -> pd.DataFrame:
    """Read a tab- or comma-separated table (gzipped or not) whole.

    The separator is a comma for ``*.csv*`` files, else a tab. A ``*.gz`` file must hold
    gzip data.

    Args:
        path: The table.
        what: What the table is, for messages (e.g. ``"counts table"``).
        header: ``0`` when the first line names the columns, ``None`` when it has no header.
        dtype: Types of some columns (by name, or by position without a header).

    Raises:
        InvalidSampleError: The file cannot be read, its gzip stream is cut short or damaged,
            or a row has fewer columns than the others (naming the line and the fix).
    """
    sep = "," if ".csv" in path.name.lower() else "\t"
    raw = _read_bytes(path, what)
    try:
        table = pd.read_csv(io.BytesIO(raw), sep=sep, header=header, dtype=dtype)
    except pd.errors.ParserError as e:
        raise InvalidSampleError(
            _short_row_message(path, what, raw, sep, header is not None)
            or _parser_message(path, what, e)
        ) from e
    except (pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as e:
        raise InvalidSampleError(
            f"{path}: cannot read the {what} ({e}); check the file is complete, or {_FIX}"
        ) from e
    if table.isna().to_numpy().any():
        # pandas pads a short row with empty values: tell a cut row from true gaps.
        problem = _short_row_message(path, what, raw, sep, header is not None)
        if problem is not None:
            raise InvalidSampleError(problem)
    return table


def _read_bytes(path: Path, what: str) -> bytes:
    """The file's bytes, decompressed when it is gzip."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InvalidSampleError(f"{path}: cannot read the {what} ({e})") from e
    if data[:2] != b"\x1f\x8b":
        if path.name.lower().endswith(".gz"):
            raise InvalidSampleError(
                f"{path}: cannot read the {what}: the file is named .gz but holds no gzip "
                f"data, so it is damaged or misnamed; {_FIX}"
            )
        return data
    try:
        return gzip.decompress(data)
    except EOFError as e:
        raise InvalidSampleError(
            f"{path}: the gzip stream ends early ({e}): the {what} is cut short, as an "
            f"interrupted download or copy leaves it; {_FIX}"
        ) from e
    except (gzip.BadGzipFile, zlib.error) as e:
        raise InvalidSampleError(f"{path}: the gzip data is damaged ({e}); {_FIX}") from e


def _short_row_message(path: Path, what: str, raw: bytes, sep: str, has_header: bool) -> str | None:
    """Describe the first row with fewer columns than the table's rows have, if any.

    The expected width is the most common one among the data rows (a header may be one
    column shorter, as R writes it when the first column holds row names). A last line
    with no line break after it that ends in an empty value is cut too.
    """
    sep_b = sep.encode()
    lines = [(i, line.rstrip(b"\r")) for i, line in enumerate(raw.split(b"\n"), start=1)]
    rows = [(i, line) for i, line in lines if line.strip()][1 if has_header else 0 :]
    if not rows:
        return None
    widths = [(i, line.count(sep_b) + 1) for i, line in rows]
    expected = Counter(w for _, w in widths).most_common(1)[0][0]
    last = widths[-1][0]
    for i, found in widths:
        if found < expected:
            return _cut_message(path, what, i, found, expected, i == last)
    if not raw.endswith(b"\n") and rows[-1][1].endswith(sep_b):
        return _cut_message(path, what, last, widths[-1][1], expected, True)
    return None


def _cut_message(path: Path, what: str, line: int, found: int, expected: int, at_end: bool) -> str:
    cols = "column" if found == 1 else "columns"
    why = (
        f"it is the last row: the {what} is cut short inside it (an interrupted download, "
        "copy or export)"
        if at_end
        else "the row is damaged (a line break or separator was lost)"
    )
    return f"{path}: line {line} has {found} {cols}, expected {expected}; {why}; {_FIX}"


def _parser_message(path: Path, what: str, error: pd.errors.ParserError) -> str:
    m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(error))
    if m is None:
        return f"{path}: cannot parse the {what} ({error}); {_FIX}"
    expected, line, found = m.groups()
    return (
        f"{path}: line {line} has {found} columns, expected {expected}; the row is damaged "
        f"(a separator or line break too many); {_FIX}"
    )
