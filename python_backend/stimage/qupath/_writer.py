"""Stream Features into a FeatureCollection file without holding them in memory."""

from __future__ import annotations

import gzip
import json
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from stimage.qupath._format import GeoJSONError
from stimage.qupath._validate import validate_feature

__all__ = ["FeatureCollectionWriter", "feature_collection", "write_geojson"]

logger = logging.getLogger(__name__)

_HEAD = '{"type": "FeatureCollection", "features": ['
_TAIL = "\n]}\n"


# One encoder for all features: json.dumps with options builds a new one per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _dumps(feature: Mapping[str, Any]) -> str:
    try:
        return _ENCODER.encode(feature)
    except ValueError as e:
        raise GeoJSONError(
            f"feature {feature.get('id', '?')} holds a NaN or infinite number outside "
            "measurements (coordinates?); build features with stimage.qupath's builders"
        ) from e
    except TypeError as e:
        raise GeoJSONError(f"feature {feature.get('id', '?')} is not JSON-serialisable: {e}") from e


class FeatureCollectionWriter:
    """Write a GeoJSON FeatureCollection one Feature at a time.

    Only the Feature being written is in memory, so any number of objects streams through.
    A path is written atomically: to ``<name>.part`` first, renamed when the ``with`` block
    ends without error (a failed run leaves no half-written file behind). A path ending in
    ``.gz`` is gzip-compressed, which QuPath's ``PathIO.readObjects`` also reads. A text
    stream is written as it is and left open.

    Args:
        target: A file path, or an open text stream.
        validate: Check each Feature with :func:`validate_feature` before writing it.
        metadata: Written as the collection's ``"stimage"`` member (a GeoJSON foreign member,
            which QuPath ignores on import): e.g. the model and its genes' reliability.

    Example:
        >>> import io, numpy as np
        >>> from stimage.qupath import tile_features
        >>> buf = io.StringIO()
        >>> with FeatureCollectionWriter(buf) as w:
        ...     w.write_all(tile_features(np.array([[0, 0, 10, 10]]), None))
        1
        >>> w.count
        1
    """

    def __init__(
        self,
        target: str | os.PathLike[str] | IO[str],
        *,
        validate: bool = False,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        self._validate = validate
        self._metadata = metadata
        self._path: Path | None = None
        self._tmp: Path | None = None
        self._fh: IO[str] | None = None
        self._own = False
        self._target = target
        self.count = 0
        self._closed = False

    def __enter__(self) -> FeatureCollectionWriter:
        target = self._target
        if isinstance(target, str | os.PathLike):
            self._path = Path(target)
            self._tmp = self._path.with_name(self._path.name + ".part")
            self._path.parent.mkdir(parents=True, exist_ok=True)
            if self._path.suffix == ".gz":
                self._fh = gzip.open(self._tmp, "wt", encoding="utf-8", compresslevel=6)
            else:
                self._fh = open(self._tmp, "w", encoding="utf-8")
            self._own = True
        else:
            self._fh = target
        if self._metadata is None:
            self._fh.write(_HEAD)
        else:
            self._fh.write(
                _HEAD.replace('"features"', f'"stimage": {_dumps(self._metadata)}, "features"')
            )
        return self

    def write(self, feature: Mapping[str, Any]) -> None:
        """Append one Feature.

        Raises:
            GeoJSONError: The Feature is invalid (with ``validate=True``) or not serialisable.
        """
        if self._fh is None or self._closed:
            raise GeoJSONError(
                "the writer is not open; use it as 'with FeatureCollectionWriter(...)'"
            )
        if self._validate:
            validate_feature(feature)
        text = _dumps(feature)
        self._fh.write("\n" if self.count == 0 else ",\n")
        self._fh.write(text)
        self.count += 1

    def write_all(self, features: Iterable[Mapping[str, Any]]) -> int:
        """Append every Feature of an iterable (consumed lazily); return how many were written."""
        before = self.count
        for f in features:
            self.write(f)
        return self.count - before

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        fh, self._fh = self._fh, None
        self._closed = True
        if fh is None:
            return
        if exc_type is None:
            fh.write(_TAIL)
        if not self._own:
            return
        fh.close()
        if self._tmp is None or self._path is None:  # pragma: no cover - set in __enter__
            return
        if exc_type is None:
            os.replace(self._tmp, self._path)
            logger.debug("wrote %d features to %s", self.count, self._path)
        else:
            self._tmp.unlink(missing_ok=True)


def write_geojson(
    path: str | os.PathLike[str] | IO[str],
    features: Iterable[Mapping[str, Any]],
    *,
    validate: bool = False,
) -> int:
    """Stream Features into a FeatureCollection file; return how many were written.

    Args:
        path: Output file (``.geojson``; ``.geojson.gz`` to compress) or a text stream.
        features: Any iterable of Features, e.g. a builder's generator (consumed lazily).
        validate: Check each Feature first.

    Returns:
        The number of Features written.
    """
    with FeatureCollectionWriter(path, validate=validate) as w:
        w.write_all(features)
    return w.count


def feature_collection(
    features: Iterable[Mapping[str, Any]], metadata: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A FeatureCollection dict held in memory, for small outputs (e.g. server replies).

    ``metadata`` becomes the ``"stimage"`` member, as :class:`FeatureCollectionWriter` writes it.

    Example:
        >>> feature_collection([])
        {'type': 'FeatureCollection', 'features': []}
    """
    out: dict[str, Any] = {"type": "FeatureCollection"}
    if metadata is not None:
        out["stimage"] = dict(metadata)
    out["features"] = list(features)
    return out
