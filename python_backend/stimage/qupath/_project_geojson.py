"""A QuPath project batched without QuPath: one GeoJSON file per image instead of the project.

The images come from ``project.qpproj`` (:func:`read_qpproj`); the objects of each image go
to ``DIR/<image name>.geojson``, ready for QuPath's *File > Import objects* (or a drag onto
the image). What was done is kept in ``DIR/stimage_project.json`` (per image: the file and the
metadata the batch sets, e.g. the model), which is how a second run skips finished images.
The project itself is never written.

The objects already in a project (``data/<id>/data.qpdata``) are Java-serialised and only
QuPath can read them, so annotations to predict over come from ``regions_dir`` when given:
GeoJSON files named after the images (QuPath's *Export objects*), else the tissue is used.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from stimage.constants import ObjectType
from stimage.qupath._format import is_stimage_id
from stimage.qupath._project import (
    ObjectGroup,
    ProjectError,
    ProjectImage,
    project_file,
    read_qpproj,
)
from stimage.qupath._reader import QuPathObject, read_geojson
from stimage.qupath._writer import write_geojson

__all__ = ["GeoJSONDirProject", "image_file_stem"]

logger = logging.getLogger(__name__)

INDEX = "stimage_project.json"

#: Extensions of image files left out of output names ("slide.svs" -> "slide.geojson").
_IMAGE_SUFFIXES = re.compile(
    r"\.(svs|tif|tiff|ome\.tif|ome\.tiff|ndpi|vms|vmu|scn|mrxs|bif|jpg|jpeg|png|czi|qptiff|dcm)$",
    re.IGNORECASE,
)


def image_file_stem(name: str) -> str:
    """A file-name stem for an image name: its image extension dropped, unsafe characters replaced.

    Example:
        >>> image_file_stem("B4 / HE.svs")
        'B4 _ HE'
    """
    stem = _IMAGE_SUFFIXES.sub("", name.strip())
    stem = re.sub(r"[\x00-\x1f/\\:*?\"<>|]+", "_", stem).strip(" .")
    return stem or "image"


class GeoJSONDirProject:
    """A QuPath project whose results go to GeoJSON files (implements :class:`ProjectLike`).

    Args:
        project: ``project.qpproj`` or its folder (read, never written).
        out_dir: Folder of the GeoJSON files (created).
        regions_dir: Folder of per-image GeoJSON with the annotations to predict over, named
            after the images: ``<name>.geojson`` with the image extension dropped (as
            :func:`image_file_stem` or QuPath's ``GeneralTools.stripExtension`` make it) or
            kept; None: no annotations (tissue).

    Raises:
        InputFileNotFoundError: No project, or ``regions_dir`` is not a folder.
        ProjectError: The project file or the index in ``out_dir`` cannot be read.
    """

    def __init__(
        self,
        project: str | os.PathLike[str],
        out_dir: str | os.PathLike[str],
        *,
        regions_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self._path = project_file(project)
        self.out_dir = Path(out_dir)
        self.regions_dir = Path(regions_dir) if regions_dir is not None else None
        if self.regions_dir is not None and not self.regions_dir.is_dir():
            raise ProjectError(
                f"{self.regions_dir}: --regions-dir must be a folder of GeoJSON files"
            )
        self._index = self._read_index()
        self._images = read_qpproj(self._path)
        self._files = self._file_names(self._images)
        for im in self._images:
            done = self._index["images"].get(im.id, {}).get("metadata", {})
            im.metadata.update(done)

    @property
    def path(self) -> Path:
        """The ``project.qpproj`` file."""
        return self._path

    def reads_annotations(self, image: ProjectImage) -> bool:
        """True when ``regions_dir`` has the image's file: the project's own objects need QuPath."""
        return self._regions_file(image) is not None

    def images(self) -> list[ProjectImage]:
        """All images of the project, with the metadata of earlier runs merged in."""
        return list(self._images)

    def output(self, image: ProjectImage) -> Path:
        """The GeoJSON file of an image."""
        return self.out_dir / self._files[image.id]

    def annotations(self, image: ProjectImage) -> list[QuPathObject]:
        """The annotations of the image's file in ``regions_dir`` (none without one)."""
        f = self._regions_file(image)
        if f is None:
            return []
        return [o for o in read_geojson(f) if o.object_type == ObjectType.ANNOTATION]

    def _regions_file(self, image: ProjectImage) -> Path | None:
        if self.regions_dir is None:
            return None
        names = (image_file_stem(image.name), Path(image.name).stem, image.name)
        for stem in dict.fromkeys(names):
            for ext in (".geojson", ".json", ".geojson.gz"):
                f = self.regions_dir / f"{stem}{ext}"
                if f.is_file():
                    return f
        return None

    def count_stimage_objects(self, image: ProjectImage) -> int:
        """STImage objects in the image's output file (0 when there is none)."""
        f = self.output(image)
        if not f.is_file():
            return 0
        return sum(1 for o in read_geojson(f) if is_stimage_id(o.id))

    def replace_objects(self, image: ProjectImage, groups: Iterable[ObjectGroup]) -> int:
        """Write the groups' objects to the image's file (replacing it); return the count.

        New parent annotations come first, then their children; QuPath's import adds all at
        the top level (*Objects > Annotations > Resolve hierarchy* nests them).
        """
        return write_geojson(self.output(image), _flatten(groups))

    def set_metadata(self, image: ProjectImage, values: Mapping[str, str]) -> None:
        """Record metadata of the image in the index (written by :meth:`save`)."""
        rec = self._index["images"].setdefault(image.id, {})
        rec["name"] = image.name
        rec["file"] = self._files[image.id]
        rec.setdefault("metadata", {}).update({str(k): str(v) for k, v in values.items()})
        image.metadata.update(rec["metadata"])

    def save(self, image: ProjectImage) -> None:
        """Write the index (the image's file is already written)."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.out_dir / (INDEX + ".part")
        tmp.write_text(json.dumps(self._index, indent=2, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, self.out_dir / INDEX)

    def _read_index(self) -> dict[str, Any]:
        f = self.out_dir / INDEX
        if not f.is_file():
            return {"project": str(self._path.resolve()), "images": {}}
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ProjectError(f"{f}: unreadable ({e}); delete it to start again") from e
        if not isinstance(data, dict) or not isinstance(data.get("images"), dict):
            raise ProjectError(f"{f}: not an STImage project index; delete it to start again")
        return data

    @staticmethod
    def _file_names(images: list[ProjectImage]) -> dict[str, str]:
        stems = [image_file_stem(im.name) for im in images]
        seen: dict[str, int] = {}
        for s in stems:
            seen[s.lower()] = seen.get(s.lower(), 0) + 1
        return {
            im.id: f"{s}-{im.id}.geojson" if seen[s.lower()] > 1 else f"{s}.geojson"
            for im, s in zip(images, stems, strict=True)
        }


def _flatten(groups: Iterable[ObjectGroup]) -> Iterator[dict[str, Any]]:
    for g in groups:
        if isinstance(g.parent, dict):
            yield g.parent
        yield from g.features
