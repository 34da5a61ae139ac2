"""QuPath projects as STImage sees them: images, their files and pixel sizes, and a small interface.

A QuPath project is a folder with ``project.qpproj``, a JSON file QuPath writes with Gson
(``qupath.lib.projects.DefaultProject.writeProject``)::

    {"version": "0.7.0", "createTimestamp": ..., "modifyTimestamp": ..., "uri": "file:/.../project.qpproj",
     "lastID": 2,
     "images": [{"serverBuilder": {"builderType": "uri", "providerClassName": "...",
                                   "uri": "file:/data/slide.svs", "args": [...],
                                   "metadata": {"width": ..., "height": ...,
                                                "pixelCalibration": {"pixelWidth": {"value": 0.5, "unit": "µm"}, ...}}},
                 "entryID": 1, "randomizedName": "<uuid>", "imageName": "slide.svs",
                 "metadata": {"key": "value"}}]}

and per image ``data/<entryID>/`` with ``data.qpdata`` (the objects, Java-serialised: only
QuPath reads it), ``server.json`` and ``summary.json`` (object counts). :func:`read_qpproj`
reads the JSON (no QuPath needed): each image's name, id, local file (from the server
builder's URI, following a moved project like QuPath does), pixel size and metadata.

:class:`ProjectLike` is what the batch (:func:`stimage.qupath.annotate_project`) needs of a
project; :class:`stimage.qupath.PaquoProject` implements it over paquo (QuPath itself) and
:class:`stimage.qupath.GeoJSONDirProject` by writing one GeoJSON file per image.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Protocol, runtime_checkable
from urllib.parse import unquote, urlparse

from stimage.errors import InputFileNotFoundError, StimageError
from stimage.qupath._reader import QuPathObject

__all__ = [
    "ObjectGroup",
    "ProjectError",
    "ProjectImage",
    "ProjectLike",
    "project_file",
    "read_qpproj",
    "select_images",
]

logger = logging.getLogger(__name__)

#: Units QuPath writes for a calibrated pixel size (``GeneralTools.micrometerSymbol()`` is "µm").
_MICRONS = frozenset({"µm", "μm", "um", "micron", "microns", "micrometer", "micrometers"})

#: Server builders that wrap another one without moving pixels: the file and its coordinates
#: are those of the wrapped builder (``ImageServers.serverBuilderFactory``).
_SAME_PIXELS = frozenset({"pyramidize", "swapRedBlue", "color", "typeConvert", "normalized"})

#: Server builders whose pixel coordinates differ from the file's: STImage cannot read them.
_MOVED_PIXELS = frozenset(
    {
        "rotated",
        "affine",
        "cropped",
        "sparse",
        "flipped",
        "channels",
        "color_deconvolved",
        "sliced",
        "z_projected",
        "z_concatenated",
    }
)


class ProjectError(StimageError, ValueError):
    """A QuPath project that cannot be read or used as asked."""


@dataclass
class ProjectImage:
    """One image of a QuPath project.

    Attributes:
        id: QuPath's entry id (``entryID``, the ``data/<id>`` folder), as a string.
        name: The image name shown in QuPath.
        uri: The image's URI from its server builder (None when there is none).
        path: The local image file (None when the URI is not a local file).
        mpp: µm per pixel as the project records it (None when not calibrated).
        metadata: The entry's metadata (key -> value strings, QuPath's "Metadata" column).
        problem: Why STImage cannot read this image (e.g. a rotated server), else None.
        annotation_count: Annotations the project's ``summary.json`` counts (None: unknown).
    """

    id: str
    name: str
    uri: str | None
    path: Path | None
    mpp: float | None
    metadata: dict[str, str] = field(default_factory=dict)
    problem: str | None = None
    annotation_count: int | None = None


@dataclass
class ObjectGroup:
    """New objects of an image that share a parent.

    Attributes:
        parent: The id of an annotation already in the image (the objects become its
            children), a new annotation Feature to add first (the objects become its
            children), or None (top level).
        features: QuPath GeoJSON Features (from the builders of :mod:`stimage.qupath`).
    """

    parent: str | dict[str, Any] | None
    features: Iterable[dict[str, Any]]


@runtime_checkable
class ProjectLike(Protocol):
    """What the batch needs of a QuPath project (paquo, GeoJSON files, or a test double)."""

    @property
    def path(self) -> Path:
        """The ``project.qpproj`` file."""
        ...

    def reads_annotations(self, image: ProjectImage) -> bool:
        """Whether :meth:`annotations` sees the annotations the image has in the project."""
        ...

    def images(self) -> list[ProjectImage]:
        """All images of the project, in project order."""
        ...

    def annotations(self, image: ProjectImage) -> list[QuPathObject]:
        """The annotations of an image (geometry in full-resolution pixels, ids kept)."""
        ...

    def count_stimage_objects(self, image: ProjectImage) -> int:
        """How many objects STImage made earlier the image holds (ids with the marker)."""
        ...

    def replace_objects(self, image: ProjectImage, groups: Iterable[ObjectGroup]) -> int:
        """Remove the image's STImage objects (never the user's), add the groups; return the count added."""
        ...

    def set_metadata(self, image: ProjectImage, values: Mapping[str, str]) -> None:
        """Set entries of the image's metadata."""
        ...

    def save(self, image: ProjectImage) -> None:
        """Write the image's objects and the project file."""
        ...


def project_file(path: str | os.PathLike[str]) -> Path:
    """``project.qpproj`` of a project given as the file or its folder.

    Raises:
        InputFileNotFoundError: No such project.
    """
    p = Path(path)
    if p.is_dir():
        p = p / "project.qpproj"
    if not p.is_file():
        raise InputFileNotFoundError(
            f"{p}: no QuPath project here; give the project.qpproj file (or its folder)"
        )
    return p


def read_qpproj(path: str | os.PathLike[str]) -> list[ProjectImage]:
    """Read the images of a QuPath project from its ``project.qpproj`` JSON (no QuPath needed).

    Args:
        path: The ``project.qpproj`` file or the project folder.

    Returns:
        The images in project order.

    Raises:
        InputFileNotFoundError: No project file.
        ProjectError: The file is not a QuPath project.

    Example:
        >>> for im in read_qpproj("my_project"):  # doctest: +SKIP
        ...     print(im.id, im.name, im.path, im.mpp)
    """
    p = project_file(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ProjectError(f"{p}: not a QuPath project file ({e})") from e
    if not isinstance(data, dict) or not isinstance(data.get("images", []), list):
        raise ProjectError(f"{p}: not a QuPath project file (no 'images' list)")
    if "version" not in data and "lastID" not in data:
        raise ProjectError(
            f"{p}: a QuPath project file has a 'version' or 'lastID'; this one has neither"
        )
    moved_from = _path_of_uri(data.get("uri")) if isinstance(data.get("uri"), str) else None
    images = []
    for i, entry in enumerate(data.get("images", [])):
        if not isinstance(entry, dict):
            raise ProjectError(f"{p}: image {i} is not a JSON object")
        images.append(_image(entry, i, p.parent, moved_from))
    return images


def _image(entry: dict[str, Any], i: int, base: Path, moved_from: Path | None) -> ProjectImage:
    eid = entry.get("entryID", i + 1)
    image_id = str(int(eid)) if isinstance(eid, int | float) else str(eid)
    name = entry.get("imageName")
    name = str(name) if name else f"Image {image_id}"
    md = entry.get("metadata")
    metadata = {str(k): str(v) for k, v in md.items()} if isinstance(md, dict) else {}
    uri, server_md, problem = _resolve_builder(entry.get("serverBuilder"))
    path = None
    if uri is not None and problem is None:
        path = _path_of_uri(uri)
        if path is None:
            problem = f"not a local file ({uri}); STImage reads local image files"
        elif not path.exists() and moved_from is not None:
            path = _follow_move(path, moved_from.parent, base)
    return ProjectImage(
        id=image_id,
        name=name,
        uri=uri,
        path=path,
        mpp=_pixel_size(server_md),
        metadata=metadata,
        problem=problem,
        annotation_count=_annotation_count(base / "data" / image_id / "summary.json"),
    )


def _resolve_builder(sb: Any) -> tuple[str | None, dict[str, Any] | None, str | None]:
    """(URI, server metadata, problem) of a serialised ``ServerBuilder``."""
    if not isinstance(sb, dict):
        return None, None, "the project entry has no image server"
    md = sb.get("metadata") if isinstance(sb.get("metadata"), dict) else None
    kind = sb.get("builderType")
    if kind is None and "uri" in sb:
        kind = "uri"  # before QuPath 0.5 the type was implied (JsonImageServerBuilder)
    if kind == "uri":
        uri = sb.get("uri")
        return (str(uri) if uri else None), md, (None if uri else "the image server has no URI")
    if kind in _SAME_PIXELS and isinstance(sb.get("builder"), dict):
        uri, inner_md, problem = _resolve_builder(sb["builder"])
        return uri, md or inner_md, problem
    if kind in _MOVED_PIXELS:
        return (
            None,
            md,
            (
                f"a {kind!r} image server (QuPath transforms the pixels); STImage reads image files "
                "as they are: add the original file to the project instead"
            ),
        )
    return None, md, f"an image server of unknown type {kind!r}"


def _path_of_uri(uri: str | None) -> Path | None:
    """The local path of a ``file:`` URI as Java writes them (``file:/x``, ``file:///x``)."""
    if not uri:
        return None
    u = urlparse(uri)
    if u.scheme.lower() != "file":
        return None
    path = unquote(u.path)
    if u.netloc and u.netloc.lower() != "localhost":
        path = f"//{u.netloc}{path}"  # a network share
    return Path(path)


def _follow_move(path: Path, old_dir: Path, new_dir: Path) -> Path:
    """Where an image is now if the project moved with it (QuPath's relative-path fix)."""
    try:
        rel = os.path.relpath(PurePosixPath(path), PurePosixPath(old_dir))
    except ValueError:
        return path
    moved = Path(os.path.normpath(new_dir / rel))
    if moved.exists():
        logger.info("%s: not found; using %s (the project moved)", path, moved)
        return moved
    return path


def _pixel_size(md: dict[str, Any] | None) -> float | None:
    """µm per pixel of serialised ``ImageServerMetadata`` (None when not in µm)."""
    cal = md.get("pixelCalibration") if md else None
    if not isinstance(cal, dict):
        return None
    sizes = []
    for key in ("pixelWidth", "pixelHeight"):
        q = cal.get(key)
        if not isinstance(q, dict) or str(q.get("unit", "")).strip().lower() not in _MICRONS:
            return None
        try:
            v = float(q["value"])
        except (KeyError, TypeError, ValueError):
            return None
        if not (math.isfinite(v) and v > 0):
            return None
        sizes.append(v)
    return (sizes[0] + sizes[1]) / 2  # PixelCalibration.getAveragedPixelSizeMicrons


def _annotation_count(summary: Path) -> int | None:
    try:
        data = json.loads(summary.read_text(encoding="utf-8"))
        counts = data["hierarchy"]["objectTypeCounts"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(counts, dict):
        return None
    n = counts.get("Annotations", counts.get("Annotation", 0))
    return int(n) if isinstance(n, int | float) else None


def select_images(images: Sequence[ProjectImage], chosen: Sequence[str]) -> list[ProjectImage]:
    """The images picked by names, globs or entry ids (all of them when none are given).

    Each item of ``chosen`` is an image name, a glob over names (``"*HE*"``, ``"B?_*"``) or an
    entry id (``"3"`` or ``"id:3"``). Images keep project order; each is taken once.

    Raises:
        ProjectError: An item matches no image; the message lists the images there are.

    Example:
        >>> ims = [ProjectImage("1", "A1.svs", None, None, None), ProjectImage("2", "B1.svs", None, None, None)]
        >>> [im.name for im in select_images(ims, ["B*"])]
        ['B1.svs']
    """
    if not chosen:
        return list(images)
    picked: set[int] = set()
    missing = []
    for item in chosen:
        hits = _matches(images, item)
        if not hits:
            missing.append(item)
        picked.update(hits)
    if missing:
        names = [im.name for im in images]
        shown = ", ".join(f"{im.name!r} (id {im.id})" for im in images[:20])
        more = f" and {len(names) - 20} more" if len(names) > 20 else ""
        raise ProjectError(
            f"no image matches {', '.join(repr(m) for m in missing)}; the project has "
            f"{len(names)} image(s): {shown or 'none'}{more}. Give names, globs (quote them) "
            "or ids (id:N)"
        )
    return [im for k, im in enumerate(images) if k in picked]


def _matches(images: Sequence[ProjectImage], item: str) -> list[int]:
    exact = [k for k, im in enumerate(images) if im.name == item]
    if exact:
        return exact
    key = item[3:] if item.lower().startswith("id:") else item
    by_id = [k for k, im in enumerate(images) if im.id == key]
    if by_id:
        return by_id
    if any(c in item for c in "*?["):
        return [k for k, im in enumerate(images) if fnmatch.fnmatchcase(im.name, item)]
    return []
