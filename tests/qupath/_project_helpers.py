"""QuPath projects for tests: a ``project.qpproj`` as QuPath writes it, and an in-memory project.

``make_qpproj`` writes the project JSON the way QuPath 0.7's ``DefaultProject.writeProject``
does with Gson (``version``, timestamps, ``uri``, ``lastID``, ``images`` with the serialised
``DefaultProjectImageEntry`` fields ``serverBuilder``, ``entryID``, ``randomizedName``,
``imageName``, ``metadata``, ``tags``; the server builder as ``ImageServers``' type adapter writes it,
``builderType`` first, with the ``ImageServerMetadata`` Gson fields), plus each entry's
``data/<id>/server.json`` and ``summary.json`` (``DefaultProject.ImageDataSummary``) and
``classifiers/classes.json``. ``FakeProject`` is a :class:`stimage.qupath.ProjectLike` test
double holding a hierarchy per image in memory.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from stimage.qupath import (
    ObjectGroup,
    ProjectImage,
    QuPathObject,
    is_stimage_id,
    read_geojson,
    read_qpproj,
    validate_feature,
)


def file_uri(path: Path) -> str:
    """A file URI as Java's ``File.toURI()`` writes it (``file:/abs/path``, percent-encoded)."""
    return "file:" + quote(str(Path(path).resolve()))


@dataclass
class QpImage:
    """One image of a test project."""

    path: Path | str
    name: str | None = None
    mpp: float | None = 0.5
    width: int = 1000
    height: int = 800
    metadata: dict[str, str] = field(default_factory=dict)
    builder: str = "uri"  # "uri", "pyramidize" (wraps a uri builder), "rotated", or "http"
    annotations: int = 0  # written to summary.json


def _server_metadata(im: QpImage, name: str) -> dict[str, Any]:
    unit = "µm" if im.mpp else "px"
    size = im.mpp or 1.0
    return {
        "name": name,
        "width": im.width,
        "height": im.height,
        "sizeZ": 1,
        "sizeT": 1,
        "channelType": "DEFAULT",
        "isRGB": True,
        "pixelType": "UINT8",
        "levels": [
            {"downsample": 1.0, "width": im.width, "height": im.height},
            {"downsample": 4.0, "width": im.width // 4, "height": im.height // 4},
        ],
        "channels": [
            {"name": "Red", "color": -65536},
            {"name": "Green", "color": -16711936},
            {"name": "Blue", "color": -16776961},
        ],
        "pixelCalibration": {
            "pixelWidth": {"value": size, "unit": unit},
            "pixelHeight": {"value": size, "unit": unit},
            "zSpacing": {"value": 1.0, "unit": "z-slice"},
            "timeUnit": "SECONDS",
            "timepoints": [],
        },
        "preferredTileWidth": 256,
        "preferredTileHeight": 256,
    }


def _builder(im: QpImage, name: str) -> dict[str, Any]:
    uri = (
        f"https://example.org/iiif/{quote(name)}"
        if im.builder == "http"
        else file_uri(Path(im.path))
    )
    inner = {
        "builderType": "uri",
        "providerClassName": "qupath.lib.images.servers.bioformats.BioFormatsServerBuilder",
        "uri": uri,
        "args": ["--series", "0"],
        "metadata": _server_metadata(im, name),
    }
    if im.builder in ("uri", "http"):
        return inner
    if im.builder == "pyramidize":
        return {"builderType": "pyramidize", "builder": inner}
    if im.builder == "rotated":
        return {"builderType": "rotated", "builder": inner, "rotation": "ROTATE_180"}
    raise ValueError(im.builder)


def make_qpproj(folder: Path, images: Iterable[QpImage], *, moved_from: Path | None = None) -> Path:
    """Write a QuPath project with these images; return its ``project.qpproj``.

    ``moved_from``: write the project's ``uri`` as if it had been saved in that folder
    (QuPath then looks for images relative to the new place).
    """
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for i, im in enumerate(images, start=1):
        name = im.name or Path(im.path).name
        entries.append(
            {
                "serverBuilder": _builder(im, name),
                "entryID": i,
                "randomizedName": str(uuid.uuid4()),
                "imageName": name,
                "metadata": dict(im.metadata),
                "tags": [],  # new in QuPath 0.7
            }
        )
        data = folder / "data" / str(i)
        data.mkdir(parents=True, exist_ok=True)
        (data / "server.json").write_text(json.dumps(entries[-1]["serverBuilder"], indent=2))
        counts = {"Root objects": 1}
        if im.annotations:
            counts["Annotations"] = im.annotations
        summary = {
            "timestamp": 1717171717000,
            "imageType": "BRIGHTFIELD_H_E",
            "server": {"width": im.width, "height": im.height, "sizeC": 3, "sizeZ": 1, "sizeT": 1},
            "hierarchy": {
                "nObjects": 1 + im.annotations,
                "objectTypeCounts": counts,
                "annotationClassificationCounts": {"Tumor": im.annotations}
                if im.annotations
                else {},
                "detectionClassificationCounts": {},
            },
        }
        (data / "summary.json").write_text(json.dumps(summary, indent=2))
    (folder / "classifiers").mkdir(exist_ok=True)
    (folder / "classifiers" / "classes.json").write_text(
        json.dumps({"pathClasses": [{"name": "Tumor", "color": -3670016}]}, indent=2)
    )
    qpproj = folder / "project.qpproj"
    saved_at = (moved_from or folder) / "project.qpproj"
    qpproj.write_text(
        json.dumps(
            {
                "version": "0.7.0",
                "createTimestamp": 1717171700000,
                "modifyTimestamp": 1717171717000,
                "uri": file_uri(saved_at) if moved_from is None else "file:" + quote(str(saved_at)),
                "lastID": len(entries),
                "images": entries,
            },
            indent=2,
            ensure_ascii=False,
        ),
        encoding="utf-8",
    )
    return qpproj


def user_annotation(polygon: Any, name: str = "ROI", cls: str = "Tumor") -> dict[str, Any]:
    """An annotation Feature as QuPath exports a user's one (a random version-4 id)."""
    import shapely

    return {
        "type": "Feature",
        "id": str(uuid.uuid4()),
        "geometry": shapely.geometry.mapping(polygon),
        "properties": {
            "objectType": "annotation",
            "name": name,
            "classification": {"name": cls, "color": [200, 0, 0]},
        },
    }


class FakeProject:
    """A :class:`stimage.qupath.ProjectLike` in memory: per image a flat hierarchy.

    Each object is ``(feature, parent id or None)``. Every added feature must pass
    ``validate_feature`` and name an existing annotation as parent, as QuPath would need.
    """

    def __init__(self, qpproj: Path, objects: Mapping[str, list[dict[str, Any]]] | None = None):
        self._path = qpproj
        self._images = read_qpproj(qpproj)
        self.objects: dict[str, list[tuple[dict[str, Any], str | None]]] = {
            im.id: [(f, None) for f in (objects or {}).get(im.id, [])] for im in self._images
        }
        self.saved: list[str] = []
        self.replaced: list[str] = []

    @property
    def path(self) -> Path:
        return self._path

    def reads_annotations(self, image: ProjectImage) -> bool:
        return True

    def images(self) -> list[ProjectImage]:
        return list(self._images)

    def annotations(self, image: ProjectImage) -> list[QuPathObject]:
        feats = [
            f for f, _ in self.objects[image.id] if f["properties"]["objectType"] == "annotation"
        ]
        return read_geojson(feats)

    def count_stimage_objects(self, image: ProjectImage) -> int:
        return sum(is_stimage_id(f.get("id")) for f, _ in self.objects[image.id])

    def replace_objects(self, image: ProjectImage, groups: Iterable[ObjectGroup]) -> int:
        kept = [(f, p) for f, p in self.objects[image.id] if not is_stimage_id(f.get("id"))]
        ids = {f["id"] for f, _ in kept}
        kept = [(f, p if p in ids else None) for f, p in kept]
        annotations = {f["id"] for f, _ in kept if f["properties"]["objectType"] == "annotation"}
        n = 0
        for g in groups:
            parent = g.parent
            if isinstance(parent, dict):
                validate_feature(parent)
                kept.append((parent, None))
                parent = parent["id"]
                n += 1
            elif parent is not None and parent not in annotations:
                raise AssertionError(f"parent {parent} is not an annotation of image {image.id}")
            for f in g.features:
                validate_feature(f)
                kept.append((f, parent))
                n += 1
        self.objects[image.id] = kept
        self.replaced.append(image.id)
        return n

    def set_metadata(self, image: ProjectImage, values: Mapping[str, str]) -> None:
        image.metadata.update(values)

    def save(self, image: ProjectImage) -> None:
        self.saved.append(image.id)
