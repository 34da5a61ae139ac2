"""A QuPath project opened with paquo (QuPath's own code through a JVM): objects go into the project.

Thin on purpose: the images are listed from ``project.qpproj`` by :func:`read_qpproj` (tested
without QuPath); paquo is used for what only QuPath can do: reading an image's objects
(``data.qpdata``), adding and removing objects, the entry metadata and saving. Objects are
made from STImage's GeoJSON by QuPath's own reader (``GsonTools``, as *File > Import objects*
does), so they look exactly as an import would make them; tiles and cells are added below
their annotation (``PathObjectHierarchy.addObjectBelowParent``).

paquo needs a QuPath installation (0.4 or newer) at run time, found through the
``PAQUO_QUPATH_DIR`` environment variable (or paquo's ``.paquo.toml``).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from stimage.errors import MissingDependencyError
from stimage.qupath._format import is_stimage_id
from stimage.qupath._project import (
    ObjectGroup,
    ProjectError,
    ProjectImage,
    project_file,
    read_qpproj,
)
from stimage.qupath._reader import QuPathObject, read_geojson

__all__ = ["PaquoProject", "QuPathNotFoundError"]

logger = logging.getLogger(__name__)

_INSTALL = (
    "install QuPath (0.4 or newer) and set PAQUO_QUPATH_DIR to its folder (e.g. "
    "export PAQUO_QUPATH_DIR=/opt/QuPath), or use --geojson-dir DIR to write GeoJSON files "
    "to import instead"
)


class QuPathNotFoundError(MissingDependencyError):
    """paquo or the QuPath installation it needs is missing."""


def _load_paquo() -> Any:
    """The QuPathProject class of paquo, starting QuPath's JVM; one-line errors when it cannot."""
    try:
        import paquo  # noqa: F401
    except ImportError as e:
        raise QuPathNotFoundError(
            f"writing into a QuPath project needs paquo: pip install 'stimage[paquo]', then {_INSTALL}"
        ) from e
    try:
        from paquo.projects import QuPathProject
    except (ValueError, OSError, RuntimeError) as e:
        # paquo.java starts the JVM on import: "no valid qupath installation found" (ValueError),
        # "qupath installation is incompatible" (FileNotFoundError), a JVM that does not start.
        where = os.environ.get("PAQUO_QUPATH_DIR")
        found = f"PAQUO_QUPATH_DIR={where}" if where else "PAQUO_QUPATH_DIR is not set"
        raise QuPathNotFoundError(f"QuPath not found ({e}; {found}): {_INSTALL}") from e
    return QuPathProject


class PaquoProject:
    """A QuPath project opened read-write through paquo (implements :class:`ProjectLike`).

    Args:
        project: ``project.qpproj`` or its folder.

    Raises:
        QuPathNotFoundError: paquo is not installed or finds no QuPath.
        ProjectError: QuPath cannot open the project.
    """

    def __init__(self, project: str | os.PathLike[str]) -> None:
        self._path = project_file(project)
        self._images = read_qpproj(self._path)
        QuPathProject = _load_paquo()
        try:
            self._qp = QuPathProject(self._path, mode="r+")
        except (OSError, ValueError, RuntimeError) as e:
            raise ProjectError(f"{self._path}: QuPath cannot open the project ({e})") from e
        self._entries = {str(e.entry_id): e for e in self._qp.images}
        self._java: Any = None

    def _j(self) -> Any:
        """QuPath's Java classes (the JVM runs once paquo is imported)."""
        if self._java is None:
            from jpype import JClass

            self._java = {
                "gson": JClass("qupath.lib.io.GsonTools").getInstance(),
                "PathObject": JClass("qupath.lib.objects.PathObject"),
                "String": JClass("java.lang.String"),
                "ArrayList": JClass("java.util.ArrayList"),
            }
        return self._java

    @property
    def path(self) -> Path:
        """The ``project.qpproj`` file."""
        return self._path

    def reads_annotations(self, image: ProjectImage) -> bool:
        """True: QuPath reads the images' objects."""
        return True

    def images(self) -> list[ProjectImage]:
        """All images of the project."""
        return list(self._images)

    def _entry(self, image: ProjectImage) -> Any:
        try:
            return self._entries[image.id]
        except KeyError:
            raise ProjectError(
                f"{self._path}: QuPath has no image with id {image.id} ({image.name!r})"
            ) from None

    def _hierarchy(self, image: ProjectImage) -> Any:
        return self._entry(image).hierarchy

    def annotations(self, image: ProjectImage) -> list[QuPathObject]:
        """The image's annotations, as QuPath exports them (ids kept)."""
        return read_geojson(self._hierarchy(image).to_geojson())

    def _stimage_objects(self, image: ProjectImage) -> list[Any]:
        jh = self._hierarchy(image).java_object
        return [
            o
            for o in jh.getFlattenedObjectList(None)
            if not o.isRootObject() and is_stimage_id(str(o.getID()))
        ]

    def count_stimage_objects(self, image: ProjectImage) -> int:
        """Objects whose id carries the STImage marker."""
        return len(self._stimage_objects(image))

    def _to_java(self, feature: dict[str, Any]) -> Any:
        j = self._j()
        return j["gson"].fromJson(j["String"](json.dumps(feature)), j["PathObject"])

    def replace_objects(self, image: ProjectImage, groups: Iterable[ObjectGroup]) -> int:
        """Remove the STImage objects (the user's stay, with their children), add the groups."""
        h = self._hierarchy(image)
        jh = h.java_object
        old = self._stimage_objects(image)
        if old:
            jh.removeObjects(self._j()["ArrayList"](old), True)
            logger.info("%s: removed %d earlier STImage objects", image.name, len(old))
        annotations = {str(a.getID()): a for a in jh.getAnnotationObjects()}
        root = jh.getRootObject()
        n = 0
        for g in groups:
            if g.parent is None:
                parent = root
            elif isinstance(g.parent, str):
                parent = annotations.get(g.parent)
                if parent is None:
                    raise ProjectError(
                        f"{image.name}: annotation {g.parent} is gone from the image; run again"
                    )
            else:
                parent = self._to_java(g.parent)
                jh.addObjectBelowParent(root, parent, False)
                n += 1
            for f in g.features:
                jh.addObjectBelowParent(parent, self._to_java(f), False)
                n += 1
        h.flush(invalidate_proxy_cache=True)
        return n

    def set_metadata(self, image: ProjectImage, values: Mapping[str, str]) -> None:
        """Set entries of the image's project metadata."""
        entry = self._entry(image)
        for k, v in values.items():
            entry.metadata[str(k)] = str(v)
        image.metadata.update({str(k): str(v) for k, v in values.items()})

    def save(self, image: ProjectImage) -> None:
        """Save the image's data and the project file."""
        self._entry(image).save()
        self._qp.java_object.syncChanges()
