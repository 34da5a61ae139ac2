"""QuPath GeoJSON: the one writer (and reader) of the objects STImage gives to QuPath.

Builders turn predictions into Features as QuPath reads them (tiles, detections, cells with
nuclei, annotations; classifications with colours; measurements by readable names from
:class:`stimage.constants.Measurement`); :class:`FeatureCollectionWriter` streams them to a
file; :func:`read_geojson` reads ours and QuPath's own exports; :func:`validate_feature` and
:func:`validate_geojson` check output against QuPath's reader. Every object written has an
``id`` starting with :data:`STIMAGE_MARKER`, which QuPath keeps, so re-runs can replace
STImage objects and leave the user's own alone. The format is documented in docs/geojson.md.

QuPath projects: :func:`read_qpproj` lists a project's images (files, pixel sizes, metadata)
from ``project.qpproj``; :class:`ProjectLike` is how objects get into a project: with
:class:`PaquoProject` (QuPath via paquo) or as one GeoJSON file per image with
:class:`GeoJSONDirProject` (the batch that fills them is :func:`stimage.pipelines.annotate_project`;
docs/annotate_project.md). This room knows only QuPath's formats: nothing of models.
"""

from stimage.qupath._colors import KNOWN_CLASS_COLORS, class_color
from stimage.qupath._features import (
    annotation_feature,
    cell_features,
    classification_dict,
    polygon_features,
    tile_features,
)
from stimage.qupath._format import COORD_DECIMALS, STIMAGE_MARKER, GeoJSONError, is_stimage_id
from stimage.qupath._project import (
    ObjectGroup,
    ProjectError,
    ProjectImage,
    ProjectLike,
    read_qpproj,
    select_images,
)
from stimage.qupath._project_geojson import GeoJSONDirProject
from stimage.qupath._project_paquo import PaquoProject, QuPathNotFoundError
from stimage.qupath._reader import QuPathObject, read_geojson
from stimage.qupath._region import region_geometry, union_regions
from stimage.qupath._validate import validate_feature, validate_geojson
from stimage.qupath._writer import FeatureCollectionWriter, feature_collection, write_geojson

__all__ = [
    "COORD_DECIMALS",
    "KNOWN_CLASS_COLORS",
    "STIMAGE_MARKER",
    "FeatureCollectionWriter",
    "GeoJSONDirProject",
    "GeoJSONError",
    "ObjectGroup",
    "PaquoProject",
    "ProjectError",
    "ProjectImage",
    "ProjectLike",
    "QuPathNotFoundError",
    "QuPathObject",
    "annotation_feature",
    "cell_features",
    "class_color",
    "classification_dict",
    "feature_collection",
    "is_stimage_id",
    "polygon_features",
    "read_geojson",
    "read_qpproj",
    "region_geometry",
    "select_images",
    "tile_features",
    "union_regions",
    "validate_feature",
    "validate_geojson",
    "write_geojson",
]
