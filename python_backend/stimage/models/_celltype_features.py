"""Per-nucleus features for cell typing, spots as bags of nuclei, and labels for nuclei.

Features. The morphology and stain-intensity columns of a nuclei table
(``stimage.explain.Nuclei.features``) plus, with ``context_um``, statistics of each nucleus'
neighbourhood: how many nuclei lie within ``context_um`` (``ctx_count``), the distance to the
nearest one (``ctx_nn_um``) and the neighbours' mean of a few columns (``ctx_mean_<col>``).
Lymphocytes crowd, fibroblasts lie scattered and elongated, tumour nuclei sit among large
nuclei. All of it is computed from centroids with a k-d tree: tens of thousands of nuclei
take well under a second. On HER2ST it did not raise the composition correlation, so models
leave it off by default.

With ``patch_um`` (20 µm by default in models), the colour and texture of a small square of
tissue around each nucleus (cytoplasm, stroma, lumen; ``ctx_patch_*``): mean haematoxylin,
eosin and RGB, the haematoxylin standard deviation and the mean edge strength (absolute
Laplacian), read at 1 µm per pixel with box filters: a few seconds per section. On HER2ST it
raised the mean composition Pearson by about 0.015.

Bags. A spot's bag is the nuclei whose centroid lies inside the spot disc.

Labels. Nuclei take the class of the QuPath object (a cell, detection or annotation) that
contains their centroid (the smallest one when several do), or the cell type of the nearest
Xenium cell registered onto the H&E (within a distance, one cell per nucleus).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from stimage.errors import ConfigError, InputFileNotFoundError, InvalidSampleError

if TYPE_CHECKING:
    from stimage.data import Slide

__all__ = [
    "CONTEXT_COLUMNS",
    "PATCH_COLUMNS",
    "celltype_features",
    "default_feature_columns",
    "labels_from_qupath",
    "labels_from_xenium",
    "morphology_anchors",
    "patch_features",
    "patch_features_image",
    "read_cell_type_table",
    "spot_bags",
]

logger = logging.getLogger(__name__)

CENTROID = ("centroid_x", "centroid_y")
#: Columns whose neighbourhood mean is added (when present).
CONTEXT_COLUMNS = ("area_um2", "eccentricity", "hematoxylin_mean", "eosin_mean")
#: Columns of the patch around each nucleus (:func:`patch_features`).
PATCH_COLUMNS = (
    "ctx_patch_hematoxylin_mean",
    "ctx_patch_eosin_mean",
    "ctx_patch_red_mean",
    "ctx_patch_green_mean",
    "ctx_patch_blue_mean",
    "ctx_patch_hematoxylin_sd",
    "ctx_patch_edges",
)
#: Resolution the patches are read at (µm per pixel).
PATCH_MPP = 1.0
#: Columns never used as features: positions and bookkeeping.
_NOT_FEATURES = {*CENTROID, "id", "nucleus_id", "label", "spot", "bag", "section", "tile"}


#: Morphology rules of :func:`morphology_anchors`: class -> what a textbook nucleus of it is.
ANCHOR_RULES: dict[str, str] = {
    "stromal": "spindle: major/minor axis >= 2.5, area >= 15 µm², haematoxylin below the "
    "section's 60th percentile (fibroblast nuclei in collagen)",
    "immune": "lymphocyte: area <= 25 µm², eccentricity <= 0.75, haematoxylin at or above "
    "the section's 60th percentile (small, round, dark)",
    "epithelial": "large: area >= 60 µm², eccentricity <= 0.85 (carcinoma nuclei)",
}
_ANCHOR_COLUMNS = ("area_um2", "eccentricity", "major_axis_um", "minor_axis_um", "hematoxylin_mean")


def morphology_anchors(
    features: pd.DataFrame, classes: Sequence[str], groups: np.ndarray | None = None
) -> np.ndarray:
    """Class index of the nuclei whose shape alone names their type (:data:`ANCHOR_RULES`).

    Weak labels for training from spot proportions: only clear-cut nuclei get one (on
    HER2ST about 8-10% each of spindle, lymphocyte-like and large nuclei), every other
    nucleus gets -1, and so do nuclei matching two rules. Haematoxylin is ranked within each
    group (a section: stain strength differs between slides); sizes are in µm. Classes
    without a rule (endothelial) get no anchors.

    Raises:
        ConfigError: A column the rules read is missing.
    """
    missing = [c for c in _ANCHOR_COLUMNS if c not in features.columns]
    if missing:
        raise ConfigError(f"morphology anchors need the nucleus columns {missing}")
    n = len(features)
    g = np.zeros(n, np.int64) if groups is None else np.asarray(groups)
    if g.shape != (n,):
        raise ConfigError(f"groups has shape {g.shape}, expected ({n},)")
    h = features["hematoxylin_mean"].to_numpy(np.float64)
    hq = pd.Series(h).groupby(pd.Series(g)).rank(pct=True).to_numpy()
    area = features["area_um2"].to_numpy(np.float64)
    ecc = features["eccentricity"].to_numpy(np.float64)
    ratio = features["major_axis_um"].to_numpy(np.float64) / np.maximum(
        features["minor_axis_um"].to_numpy(np.float64), 1e-6
    )
    rules = {
        "stromal": (ratio >= 2.5) & (area >= 15.0) & (hq < 0.6),
        "immune": (area <= 25.0) & (ecc <= 0.75) & (hq >= 0.6),
        "epithelial": (area >= 60.0) & (ecc <= 0.85),
    }
    out = np.full(n, -1, np.int64)
    hits = np.zeros(n, np.int64)
    for name, mask in rules.items():
        if name in classes:
            mask = mask & np.isfinite(h) & np.isfinite(area) & np.isfinite(ecc)
            out[mask] = list(classes).index(name)
            hits += mask
    out[hits > 1] = -1
    return out


def default_feature_columns(features: pd.DataFrame) -> list[str]:
    """The feature columns a model trains on by default.

    Morphology and intensity columns of :mod:`stimage.explain` that are present (all
    numeric columns but positions and ids when that module does not name them), then the
    ``ctx_`` neighbourhood columns.
    """
    try:
        from stimage.explain import INTENSITY_FEATURES, MORPHOLOGY_FEATURES

        known: list[str] | None = [*MORPHOLOGY_FEATURES, *INTENSITY_FEATURES]
    except ImportError:
        known = None
    numeric = [
        str(c)
        for c in features.columns
        if pd.api.types.is_numeric_dtype(features[c])
        and not pd.api.types.is_bool_dtype(features[c])
    ]
    if known is not None:
        base = [c for c in known if c in numeric and c not in _NOT_FEATURES]
    else:
        base = [c for c in numeric if c not in _NOT_FEATURES and not c.startswith("ctx_")]
    ctx = [c for c in numeric if c.startswith("ctx_")]
    return base + [c for c in ctx if c not in base]


def _centroids(features: pd.DataFrame) -> np.ndarray:
    missing = [c for c in CENTROID if c not in features.columns]
    if missing:
        raise ConfigError(f"the nuclei table lacks {missing}; expected full-resolution centroids")
    return features[list(CENTROID)].to_numpy(np.float64)


def celltype_features(
    features: pd.DataFrame,
    mpp: float,
    context_um: float | None = 25.0,
    *,
    groups: np.ndarray | None = None,
) -> pd.DataFrame:
    """The nuclei table with neighbourhood columns ``ctx_*`` added.

    Args:
        features: Nuclei table with ``centroid_x``, ``centroid_y`` (full-resolution pixels)
            and feature columns.
        mpp: µm per full-resolution pixel of the centroids.
        context_um: Neighbourhood radius in µm; None returns a copy without context.
        groups: Optional group per nucleus (e.g. section); neighbours are found within
            a group only.

    Returns:
        A copy of ``features`` with ``ctx_count``, ``ctx_nn_um`` and ``ctx_mean_<col>``
        for the :data:`CONTEXT_COLUMNS` present.
    """
    out = features.copy()
    if context_um is None:
        return out
    if not (np.isfinite(mpp) and mpp > 0):
        raise ConfigError(f"mpp={mpp} must be positive µm per pixel")
    xy = _centroids(features) * float(mpp)
    n = len(xy)
    grp = np.zeros(n, np.int64) if groups is None else pd.factorize(np.asarray(groups))[0]
    cols = [c for c in CONTEXT_COLUMNS if c in features.columns]
    vals = features[cols].to_numpy(np.float64) if cols else np.zeros((n, 0))
    count = np.zeros(n)
    nn = np.full(n, float(context_um))
    sums = np.zeros((n, len(cols)))
    from scipy.spatial import cKDTree

    for g in np.unique(grp):
        idx = np.flatnonzero(grp == g)
        if len(idx) < 2:
            continue
        tree = cKDTree(xy[idx])
        pairs = tree.query_pairs(float(context_um), output_type="ndarray")
        if len(pairs):
            a, b = idx[pairs[:, 0]], idx[pairs[:, 1]]
            np.add.at(count, a, 1)
            np.add.at(count, b, 1)
            v = np.nan_to_num(vals)
            np.add.at(sums, a, v[b])
            np.add.at(sums, b, v[a])
        d, _ = tree.query(xy[idx], k=2, distance_upper_bound=float(context_um))
        nn[idx] = np.minimum(d[:, 1], float(context_um))
    out["ctx_count"] = count
    out["ctx_nn_um"] = nn
    own = np.nan_to_num(vals)
    for j, c in enumerate(cols):
        # With no neighbour, the neighbourhood mean is the nucleus' own value.
        out[f"ctx_mean_{c}"] = np.where(count > 0, sums[:, j] / np.maximum(count, 1), own[:, j])
    return out


def patch_features_image(rgb: np.ndarray, xy: np.ndarray, size_px: int) -> np.ndarray:
    """:data:`PATCH_COLUMNS` of squares of ``size_px`` centred on pixel positions of an image.

    Args:
        rgb: ``(h, w, 3)`` uint8 image (at :data:`PATCH_MPP` µm per pixel for comparable
            values).
        xy: ``(n, 2)`` positions ``(x, y)`` in image pixels (clipped to the image).
        size_px: Side of the square (made odd).

    Returns:
        ``(n, 7)`` values in the order of :data:`PATCH_COLUMNS`.
    """
    import cv2

    from stimage.explain import rgb_to_hed

    k = max(1, int(size_px) | 1)
    img = np.ascontiguousarray(rgb[..., :3], dtype=np.uint8)
    hed = rgb_to_hed(img)
    h = np.ascontiguousarray(hed[..., 0], np.float32)
    chans = [h, np.ascontiguousarray(hed[..., 1], np.float32)]
    chans += [img[..., c].astype(np.float32) / 255.0 for c in range(3)]
    means = [cv2.blur(c, (k, k), borderType=cv2.BORDER_REFLECT) for c in chans]
    sq = cv2.blur(h * h, (k, k), borderType=cv2.BORDER_REFLECT)
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    edges = cv2.blur(np.abs(cv2.Laplacian(gray, cv2.CV_32F)), (k, k))
    p = np.asarray(xy, np.float64).reshape(-1, 2)
    px = np.clip(np.floor(p[:, 0]).astype(np.int64), 0, img.shape[1] - 1)
    py = np.clip(np.floor(p[:, 1]).astype(np.int64), 0, img.shape[0] - 1)
    vals = [m[py, px] for m in means]
    vals.append(np.sqrt(np.maximum(sq[py, px] - means[0][py, px] ** 2, 0.0)))
    vals.append(edges[py, px])
    return np.stack(vals, axis=1).astype(np.float64)


def patch_features(
    slide: Slide,
    features: pd.DataFrame,
    patch_um: float = 20.0,
    *,
    block_um: float = 400.0,
) -> pd.DataFrame:
    """The nuclei table with :data:`PATCH_COLUMNS` read from the slide around each centroid.

    The slide is read in blocks of ``block_um`` holding nuclei, at :data:`PATCH_MPP` µm per
    pixel, each with a margin of half a patch.

    Args:
        slide: The slide the centroids refer to (with its µm per pixel).
        features: Nuclei table with ``centroid_x``, ``centroid_y`` (full-resolution pixels).
        patch_um: Side of the square around each nucleus, in µm.
        block_um: Side of the blocks read.
    """
    if not (np.isfinite(patch_um) and patch_um > 0):
        raise ConfigError(f"patch_um={patch_um} must be positive µm")
    out = features.copy()
    xy = _centroids(features)
    vals = np.zeros((len(xy), len(PATCH_COLUMNS)))
    if len(xy):
        mpp = float(slide.mpp)
        block_px = block_um / mpp
        margin_px = patch_um / mpp
        keys = np.floor(xy / block_px).astype(np.int64)
        _, inv = np.unique(keys, axis=0, return_inverse=True)
        inv = np.asarray(inv).reshape(-1)
        size_px = round(patch_um / PATCH_MPP)
        for b in range(int(inv.max()) + 1):
            sel = np.flatnonzero(inv == b)
            x0, y0 = xy[sel].min(0) - margin_px
            x1, y1 = xy[sel].max(0) + margin_px
            w, h = x1 - x0, y1 - y0
            ow, oh = max(1, round(w * mpp / PATCH_MPP)), max(1, round(h * mpp / PATCH_MPP))
            rgb = slide.read_region(x0, y0, w, h, out_size=(ow, oh))
            local = (xy[sel] - [x0, y0]) * [ow / w, oh / h]
            vals[sel] = patch_features_image(rgb, local, size_px)
    for j, c in enumerate(PATCH_COLUMNS):
        out[c] = vals[:, j]
    return out


def spot_bags(centroids_px: np.ndarray, spots_px: np.ndarray, radius_px: float) -> np.ndarray:
    """The spot whose disc holds each centroid (index into ``spots_px``), -1 for none.

    Spots closer than twice the radius share nuclei; each goes to the nearest centre.
    """
    from scipy.spatial import cKDTree

    c = np.asarray(centroids_px, np.float64).reshape(-1, 2)
    s = np.asarray(spots_px, np.float64).reshape(-1, 2)
    if not len(s) or not len(c):
        return np.full(len(c), -1, np.int64)
    d, i = cKDTree(s).query(c, k=1, distance_upper_bound=float(radius_px))
    return np.where(np.isfinite(d), i, -1).astype(np.int64)


def _flatten(objects: Iterable[Any]) -> Iterable[Any]:
    for obj in objects:
        yield obj
        yield from _flatten(getattr(obj, "children", None) or [])


def labels_from_qupath(
    objects: str | os.PathLike[str] | Iterable[Any] | Mapping[str, Any],
    centroids_px: np.ndarray,
    *,
    object_types: Sequence[str] | None = None,
) -> pd.Series:
    """The class of the QuPath object containing each nucleus centroid (None where none does).

    Cells, detections and annotations with a class all label the nuclei inside them; where
    several contain a centroid (a cell inside a classified region) the smallest one wins.

    Args:
        objects: A QuPath GeoJSON file, decoded GeoJSON, or objects read with
            :func:`stimage.qupath.read_geojson` (children included), in the same
            full-resolution pixels as the centroids.
        centroids_px: ``(n, 2)`` nucleus centroids.
        object_types: Only objects of these types (e.g. ``("cell", "detection")``); all
            by default.

    Returns:
        The label of each nucleus (object dtype; None when unlabelled). Map them to classes
        with :meth:`CellTypeClassifier.fit_labels`, which names labels it does not know.

    Example:
        >>> labels = labels_from_qupath("labelled_cells.geojson", nuclei.centroids)  # doctest: +SKIP
        >>> model = CellTypeClassifier().fit_labels(nuclei.features, labels)  # doctest: +SKIP
    """
    from shapely import STRtree, points

    from stimage.qupath import QuPathObject, read_geojson

    if isinstance(objects, str | os.PathLike | Mapping):
        objs: list[Any] = read_geojson(objects)
    else:
        objs = list(objects)
        if objs and not all(isinstance(o, QuPathObject) for o in objs):
            objs = read_geojson(objs)
    geoms, names = [], []
    for obj in _flatten(objs):
        if object_types is not None and obj.object_type not in object_types:
            continue
        geom = obj.geometry
        if obj.classification and geom is not None and not geom.is_empty and geom.area > 0:
            geoms.append(geom)
            names.append(str(obj.classification))
    c = np.asarray(centroids_px, np.float64).reshape(-1, 2)
    out = pd.Series([None] * len(c), dtype=object)
    if not geoms:
        logger.warning("no classified QuPath object with an area; no nucleus is labelled")
        return out
    tree = STRtree(geoms)
    pt_idx, g_idx = tree.query(points(c), predicate="within")
    if len(pt_idx):
        area = np.array([g.area for g in geoms])[g_idx]
        order = np.lexsort((area, pt_idx))  # smallest containing object first per point
        pt_sorted, g_sorted = pt_idx[order], g_idx[order]
        first = np.r_[True, pt_sorted[1:] != pt_sorted[:-1]]
        out.iloc[pt_sorted[first]] = np.asarray(names, dtype=object)[g_sorted[first]]
    logger.info(
        "QuPath labels: %d of %d nuclei inside a classified object", len(set(pt_idx)), len(c)
    )
    return out


def read_cell_type_table(path: str | os.PathLike[str]) -> pd.Series:
    """Cell types per cell id from a CSV (e.g. Xenium Explorer's ``cell_groups.csv``).

    The first column named ``cell_id`` (or the first column) holds ids; the type column is
    ``group``, ``cell_type``, ``celltype``, ``type`` or ``label`` (or the second column).
    """
    p = Path(path)
    if not p.is_file():
        raise InputFileNotFoundError(f"{p}: cell-type table not found")
    try:
        df = pd.read_csv(p, sep=None, engine="python")
    except (OSError, ValueError, pd.errors.ParserError) as e:
        raise InvalidSampleError(f"{p}: cannot read the cell-type table ({e})") from e
    if df.shape[1] < 2:
        raise InvalidSampleError(f"{p}: expected columns cell_id and a cell type (e.g. group)")
    low = {str(c).lower(): c for c in df.columns}
    idc = low.get("cell_id", df.columns[0])
    typc = next(
        (low[k] for k in ("group", "cell_type", "celltype", "type", "label") if k in low),
        df.columns[1],
    )
    return pd.Series(df[typc].to_numpy(object), index=df[idc].astype(str).to_numpy(), name="type")


def labels_from_xenium(
    cells: pd.DataFrame,
    cell_types: pd.Series | Mapping[str, str] | str,
    centroids_px: np.ndarray,
    mpp: float,
    *,
    max_distance_um: float = 6.0,
) -> pd.Series:
    """Xenium cell types carried onto the nearest segmented nucleus.

    Args:
        cells: Cells with ``x_fullres``, ``y_fullres`` in H&E pixels, indexed by cell id
            (:func:`stimage.data.read_xenium_cells`, which applies the affine alignment).
        cell_types: Type per cell id, or the name of a column of ``cells``.
        centroids_px: ``(n, 2)`` nucleus centroids in the same H&E pixels.
        mpp: µm per H&E pixel.
        max_distance_um: A cell further than this from every nucleus labels none.

    Returns:
        Label per nucleus (None where no cell matched). Each nucleus takes its closest cell.
    """
    from scipy.spatial import cKDTree

    for col in ("x_fullres", "y_fullres"):
        if col not in cells.columns:
            raise ConfigError(f"cells lack {col!r}; read them with stimage.data.read_xenium_cells")
    if isinstance(cell_types, str):
        if cell_types not in cells.columns:
            raise ConfigError(f"cells have no column {cell_types!r}")
        types = cells[cell_types]
    else:
        types = pd.Series(cell_types)
        types.index = types.index.astype(str)
        types = types.reindex(cells.index.astype(str))
        types.index = cells.index
    have = types.notna().to_numpy()
    if not have.any():
        raise ConfigError("no cell of the table has a cell type; check the cell ids match")
    xy = cells.loc[have, ["x_fullres", "y_fullres"]].to_numpy(np.float64)
    lab = types.to_numpy(object)[have]
    c = np.asarray(centroids_px, np.float64).reshape(-1, 2)
    out = pd.Series([None] * len(c), dtype=object)
    if not len(c):
        return out
    d, i = cKDTree(c).query(xy, k=1, distance_upper_bound=float(max_distance_um) / float(mpp))
    ok = np.isfinite(d)
    order = np.argsort(d[ok])  # closest cell wins each nucleus
    nuc, lab_ok = i[ok][order], lab[ok][order]
    _, first = np.unique(nuc, return_index=True)
    out.iloc[nuc[first]] = lab_ok[first]
    logger.info("Xenium labels: %d of %d nuclei matched a cell", len(first), len(c))
    return out
