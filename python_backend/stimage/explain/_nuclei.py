"""Segmented nuclei: outlines in full-resolution pixels and one row of features per nucleus.

Coordinates follow QuPath: ``(x, y)`` in level-0 (full-resolution) pixels, pixel ``(i, j)``
covering ``[j, j + 1) x [i, i + 1)``, so its centre is ``(j + 0.5, i + 0.5)``. An image
that shows a window of the slide at ``downsample`` level-0 pixels per image pixel, with
its top-left corner at ``origin``, maps to the slide by ``x_full = origin_x + x_img *
downsample``.

Feature columns (see :data:`NUCLEUS_COLUMNS`):

* position: ``centroid_x``, ``centroid_y`` (full-resolution pixels);
* morphology (:data:`MORPHOLOGY_FEATURES`): ``area_um2`` (pixel count), ``perimeter_um``
  (length of the outline), ``eccentricity`` (0 for a circle, towards 1 for a line),
  ``solidity`` (outline area over the area of its convex hull), ``major_axis_um``,
  ``minor_axis_um`` (axes of the ellipse with the same second moments, as in
  ``skimage.measure.regionprops``);
* stain intensity (:data:`INTENSITY_FEATURES`): ``hematoxylin_mean``, ``hematoxylin_sd``,
  ``eosin_mean``, ``eosin_sd`` over the nucleus's pixels, in the units of
  :func:`skimage.color.rgb2hed` with its fixed Ruifrok & Johnston matrix (so values compare
  across tiles, slides and segmentation backends), and ``red_mean``, ``green_mean``,
  ``blue_mean`` (0-255): the features of the cell-type classifier;
* stain optical density as QuPath measures it (:data:`QUPATH_STAIN_FEATURES`):
  ``hematoxylin_od_mean``, ``hematoxylin_od_sd``, ``eosin_od_mean``, ``eosin_od_sd``, from
  QuPath's "H&E default" colour deconvolution (:func:`~stimage.explain._hed.qupath_stain_od`):
  what "Nucleus: Hematoxylin OD mean" and its kin mean in the GeoJSON.

Morphology is measured on the pixels of the image that was segmented, at its resolution.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import shapely
from shapely.geometry import Polygon, box
from shapely.geometry.base import BaseGeometry

from stimage.errors import ConfigError, UnsupportedFormatError

__all__ = [
    "INTENSITY_FEATURES",
    "MORPHOLOGY_FEATURES",
    "NUCLEUS_COLUMNS",
    "NUCLEUS_FEATURES",
    "POSITION_COLUMNS",
    "QUPATH_STAIN_FEATURES",
    "Nuclei",
    "measure_nuclei",
]

#: Centroid columns, in full-resolution pixels.
POSITION_COLUMNS: tuple[str, ...] = ("centroid_x", "centroid_y")
#: Shape features, in µm and µm² where they have a unit.
MORPHOLOGY_FEATURES: tuple[str, ...] = (
    "area_um2",
    "perimeter_um",
    "eccentricity",
    "solidity",
    "major_axis_um",
    "minor_axis_um",
)
#: Stain and colour features: haematoxylin and eosin (skimage ``rgb2hed`` units), RGB 0-255.
INTENSITY_FEATURES: tuple[str, ...] = (
    "hematoxylin_mean",
    "hematoxylin_sd",
    "eosin_mean",
    "eosin_sd",
    "red_mean",
    "green_mean",
    "blue_mean",
)
#: Features describing a nucleus (what a cell-type classifier or a GeoJSON writer uses).
NUCLEUS_FEATURES: tuple[str, ...] = MORPHOLOGY_FEATURES + INTENSITY_FEATURES
#: Haematoxylin and eosin optical density as QuPath measures them ("Nucleus: Hematoxylin OD
#: mean" ...): its "H&E default" stains, white 255, standard deviation over n - 1 pixels.
QUPATH_STAIN_FEATURES: tuple[str, ...] = (
    "hematoxylin_od_mean",
    "hematoxylin_od_sd",
    "eosin_od_mean",
    "eosin_od_sd",
)
#: All columns of :attr:`Nuclei.features`, in order.
NUCLEUS_COLUMNS: tuple[str, ...] = POSITION_COLUMNS + NUCLEUS_FEATURES + QUPATH_STAIN_FEATURES


def _empty_features() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=np.float64) for c in NUCLEUS_COLUMNS})


@dataclass(eq=False)
class Nuclei:
    """Nuclei of one image, region or slide.

    An empty result (no nucleus found) is a valid :class:`Nuclei` of length 0, so callers
    test ``len(nuclei) == 0`` to report it.

    Attributes:
        polygons: Outline of each nucleus in full-resolution pixel coordinates.
        features: One row per nucleus, index ``0..n-1`` in the order of ``polygons``;
            columns :data:`NUCLEUS_COLUMNS`.
        mpp: µm per pixel of the full-resolution coordinates.
        info: Provenance: segmenter, resolution, region, tiles (free-form, JSON-friendly).

    Example:
        >>> n = Nuclei.empty(mpp=0.5)
        >>> len(n), n.features.columns[0]
        (0, 'centroid_x')
    """

    polygons: list[Polygon]
    features: pd.DataFrame
    mpp: float
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.polygons = list(self.polygons)
        if len(self.polygons) != len(self.features):
            raise ConfigError(
                f"Nuclei needs one feature row per polygon; got {len(self.polygons)} polygons "
                f"and {len(self.features)} rows"
            )
        if not (np.isfinite(self.mpp) and self.mpp > 0):
            raise ConfigError(
                f"Nuclei.mpp must be a positive number of µm per pixel, got {self.mpp!r}"
            )
        missing = [c for c in POSITION_COLUMNS if c not in self.features.columns]
        if missing:
            raise ConfigError(f"Nuclei.features lacks the columns {missing}")
        self.features = self.features.reset_index(drop=True)
        self._bounds: np.ndarray | None = None

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def empty(cls, mpp: float, info: dict[str, Any] | None = None) -> Nuclei:
        """No nuclei, at ``mpp`` µm per full-resolution pixel."""
        return cls([], _empty_features(), float(mpp), dict(info or {}))

    @staticmethod
    def concat(parts: Sequence[Nuclei]) -> Nuclei:
        """Join several results at the same scale into one (rows renumbered from 0).

        Raises:
            ConfigError: ``parts`` is empty or mixes scales.
        """
        parts = list(parts)
        if not parts:
            raise ConfigError("Nuclei.concat needs at least one Nuclei")
        mpp = parts[0].mpp
        for p in parts[1:]:
            if abs(p.mpp - mpp) > 1e-6 * mpp:
                raise ConfigError(
                    f"cannot join nuclei at {mpp} and {p.mpp} µm per pixel; "
                    "segment them at the same full-resolution scale"
                )
        polygons = [poly for p in parts for poly in p.polygons]
        frames = [p.features for p in parts if len(p)]
        features = pd.concat(frames, ignore_index=True) if frames else _empty_features()
        return Nuclei(polygons, features, mpp, dict(parts[0].info))

    # -- access -----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.polygons)

    def __repr__(self) -> str:
        return f"Nuclei(n={len(self)}, mpp={self.mpp:.4g})"

    @property
    def centroids(self) -> np.ndarray:
        """``(n, 2)`` centroids ``(x, y)`` in full-resolution pixels."""
        return self.features[list(POSITION_COLUMNS)].to_numpy(dtype=np.float64)

    @property
    def bounds(self) -> np.ndarray:
        """``(n, 4)`` bounding boxes ``(xmin, ymin, xmax, ymax)`` in full-resolution pixels."""
        if self._bounds is None or len(self._bounds) != len(self):
            self._bounds = (
                shapely.bounds(np.asarray(self.polygons, dtype=object)).reshape(-1, 4)
                if len(self)
                else np.zeros((0, 4))
            )
        return self._bounds

    def subset(self, mask_or_indices: np.ndarray | Sequence[int] | Sequence[bool]) -> Nuclei:
        """The nuclei selected by a boolean mask (one value per nucleus) or by indices."""
        sel = np.asarray(mask_or_indices)
        if sel.dtype == bool:
            if sel.shape != (len(self),):
                raise ConfigError(
                    f"a boolean mask needs one value per nucleus ({len(self)}), got shape {sel.shape}"
                )
            idx = np.flatnonzero(sel)
        else:
            idx = sel.astype(np.int64).ravel()
            if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
                raise ConfigError(f"nucleus index out of range 0..{len(self) - 1}")
        return Nuclei(
            [self.polygons[i] for i in idx],
            self.features.iloc[idx],
            self.mpp,
            dict(self.info),
        )

    def within(self, polygon: BaseGeometry | tuple[float, float, float, float]) -> Nuclei:
        """The nuclei whose centroid lies inside ``polygon`` (or an ``(x, y, w, h)`` box)."""
        geom = _as_geometry(polygon)
        if not len(self):
            return self.subset(np.zeros(0, dtype=bool))
        c = self.centroids
        return self.subset(shapely.contains_xy(geom, c[:, 0], c[:, 1]))

    def to_full_resolution(self, x: float, y: float, downsample: float) -> Nuclei:
        """Nuclei found in an image mapped to full-resolution pixels (``x_full = x + x_img * d``).

        Args:
            x: Full-resolution x of the image's top-left pixel.
            y: Full-resolution y of the image's top-left pixel.
            downsample: Full-resolution pixels per image pixel.
        """
        from shapely.affinity import affine_transform

        d = float(downsample)
        feats = self.features.copy()
        feats["centroid_x"] = x + feats["centroid_x"].to_numpy(float) * d
        feats["centroid_y"] = y + feats["centroid_y"].to_numpy(float) * d
        polys = [affine_transform(g, [d, 0.0, 0.0, d, x, y]) for g in self.polygons]
        info = {**self.info, "origin": [x, y], "downsample": d}
        return Nuclei(polys, feats, self.mpp / d, info)

    def label_image(
        self, x: float, y: float, w: int, h: int, downsample: float = 1.0
    ) -> np.ndarray:
        """Rasterise the nuclei into a label image of a window of the slide.

        Args:
            x: Left edge of the window in full-resolution pixels.
            y: Top edge of the window in full-resolution pixels.
            w: Width of the label image in pixels.
            h: Height of the label image in pixels.
            downsample: Full-resolution pixels per label-image pixel.

        Returns:
            ``(h, w)`` int32; 0 is background and ``i + 1`` is nucleus ``i`` (row ``i`` of
            :attr:`features`). A pixel belongs to a nucleus when its centre lies inside the
            outline.
        """
        import cv2

        w, h = int(w), int(h)
        if w <= 0 or h <= 0 or not downsample > 0:
            raise ConfigError(
                f"label_image needs a positive size and downsample, got {w} x {h} at {downsample}"
            )
        out = np.zeros((h, w), dtype=np.int32)
        if not len(self):
            return out
        b = self.bounds
        x1, y1 = x + w * downsample, y + h * downsample
        hit = np.flatnonzero((b[:, 2] > x) & (b[:, 0] < x1) & (b[:, 3] > y) & (b[:, 1] < y1))
        scale = 256.0  # cv2 fixed point with shift=8
        for i in hit:
            xy = np.asarray(self.polygons[i].exterior.coords)
            u = ((xy[:, 0] - x) / downsample - 0.5) * scale
            v = ((xy[:, 1] - y) / downsample - 0.5) * scale
            pts = np.round(np.stack([u, v], axis=1)).astype(np.int32)
            cv2.fillPoly(out, [pts], int(i) + 1, lineType=cv2.LINE_8, shift=8)
        return out


def _as_geometry(region: BaseGeometry | tuple[float, float, float, float]) -> BaseGeometry:
    if isinstance(region, BaseGeometry):
        return region
    try:
        x, y, w, h = (float(v) for v in region)
    except (TypeError, ValueError) as e:
        raise ConfigError(
            f"a region is a shapely polygon or an (x, y, width, height) box; got {region!r}"
        ) from e
    if w <= 0 or h <= 0:
        raise ConfigError(f"region width and height must be positive, got {w} x {h}")
    return box(x, y, x + w, y + h)


def _check_labels(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != shape:
        raise UnsupportedFormatError(
            f"label image of shape {labels.shape} does not match the image's {shape}"
        )
    if labels.dtype.kind not in "iu":
        raise UnsupportedFormatError(f"label image must hold integers, got {labels.dtype}")
    return labels


def measure_nuclei(
    labels: np.ndarray,
    rgb: np.ndarray,
    mpp: float,
    origin: tuple[float, float] = (0.0, 0.0),
    downsample: float = 1.0,
) -> Nuclei:
    """Outlines and features of the nuclei of a label image.

    Args:
        labels: ``(h, w)`` integer labels, 0 = background (need not be consecutive).
        rgb: The ``(h, w, 3)`` uint8 RGB image that was segmented.
        mpp: µm per pixel of ``rgb``.
        origin: Full-resolution ``(x, y)`` of the image's top-left corner.
        downsample: Full-resolution pixels per image pixel.

    Returns:
        Nuclei in label order, at ``mpp / downsample`` µm per full-resolution pixel.
    """
    from skimage.segmentation import relabel_sequential

    from stimage.explain._hed import qupath_stain_od, rgb_to_hed

    labels = _check_labels(labels, rgb.shape[:2])
    full_mpp = mpp / downsample
    if labels.max(initial=0) <= 0:
        return Nuclei.empty(full_mpp)
    labels = relabel_sequential(np.where(labels > 0, labels, 0).astype(np.int32))[0]
    n = int(labels.max())
    flat = labels.ravel()

    def total(values: np.ndarray | None = None) -> np.ndarray:
        return np.bincount(flat, weights=values, minlength=n + 1)[1:]

    count = total().astype(np.float64)
    rows, cols = np.indices(labels.shape, dtype=np.float64)
    xs, ys = cols.ravel(), rows.ravel()
    mx, my = total(xs) / count, total(ys) / count
    # second central moments (as skimage's inertia tensor) -> equivalent ellipse
    cxx = np.maximum(total(xs * xs) / count - mx * mx, 0.0)
    cyy = np.maximum(total(ys * ys) / count - my * my, 0.0)
    cxy = total(xs * ys) / count - mx * my
    half_trace = (cxx + cyy) / 2
    root = np.sqrt(np.maximum(((cxx - cyy) / 2) ** 2 + cxy * cxy, 0.0))
    l1, l2 = half_trace + root, np.maximum(half_trace - root, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        eccentricity = np.where(l1 > 0, np.sqrt(np.clip(1.0 - l2 / l1, 0.0, 1.0)), 0.0)

    hed = rgb_to_hed(rgb).reshape(-1, 3).astype(np.float64)
    pix = rgb.reshape(-1, 3).astype(np.float64)

    def mean_sd(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        m = total(values) / count
        return m, np.sqrt(np.maximum(total(values * values) / count - m * m, 0.0))

    h_mean, h_sd = mean_sd(hed[:, 0])
    e_mean, e_sd = mean_sd(hed[:, 1])
    qp = qupath_stain_od(rgb).reshape(-1, 2).astype(np.float64)

    def qupath_mean_sd(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and sample standard deviation (n - 1), as ImageJ's statistics in QuPath."""
        m = total(values) / count
        ss = np.maximum(total(values * values) - count * m * m, 0.0)
        return m, np.where(count > 1, np.sqrt(ss / np.maximum(count - 1, 1)), 0.0)

    qh_mean, qh_sd = qupath_mean_sd(qp[:, 0])
    qe_mean, qe_sd = qupath_mean_sd(qp[:, 1])
    outlines = _outlines(labels, n)  # in image pixels
    hull_area = shapely.area(shapely.convex_hull(outlines))
    ox, oy = origin
    features = pd.DataFrame(
        {
            "centroid_x": ox + (mx + 0.5) * downsample,
            "centroid_y": oy + (my + 0.5) * downsample,
            "area_um2": count * mpp**2,
            "perimeter_um": shapely.length(outlines) * mpp,
            "eccentricity": eccentricity,
            "solidity": np.clip(shapely.area(outlines) / np.maximum(hull_area, 1e-9), 0.0, 1.0),
            "major_axis_um": 4.0 * np.sqrt(l1) * mpp,
            "minor_axis_um": 4.0 * np.sqrt(l2) * mpp,
            "hematoxylin_mean": h_mean,
            "hematoxylin_sd": h_sd,
            "eosin_mean": e_mean,
            "eosin_sd": e_sd,
            "red_mean": total(pix[:, 0]) / count,
            "green_mean": total(pix[:, 1]) / count,
            "blue_mean": total(pix[:, 2]) / count,
            "hematoxylin_od_mean": qh_mean,
            "hematoxylin_od_sd": qh_sd,
            "eosin_od_mean": qe_mean,
            "eosin_od_sd": qe_sd,
        },
        columns=list(NUCLEUS_COLUMNS),
    )
    full = shapely.transform(outlines, lambda c: c * downsample + np.array([ox, oy]))
    return Nuclei(list(full), features, full_mpp)


def _outlines(labels: np.ndarray, n: int) -> np.ndarray:
    """Outer outline of labels ``1..n`` in image pixel coordinates (pixel corners at integers).

    The chain of boundary pixel centres (OpenCV) widened by half a pixel with mitred joins:
    on straight runs that is the pixels' outer edge, and every pixel's centre stays on its
    side, so that rasterising the outline by pixel centres gives the pixels back.
    """
    import cv2
    from scipy import ndimage as ndi

    lines = np.empty(n, dtype=object)
    for i, sl in enumerate(ndi.find_objects(labels, max_label=n)):
        if sl is None:  # cannot happen after relabelling; keeps the types honest
            lines[i] = shapely.points([0.0, 0.0])
            continue
        crop = (labels[sl] == i + 1).astype(np.uint8)
        contours, _ = cv2.findContours(crop, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        chain = max(contours, key=len)[:, 0, :].astype(np.float64)
        chain += (sl[1].start + 0.5, sl[0].start + 0.5)
        if len(chain) == 1:
            lines[i] = shapely.points(chain[0])
        else:
            lines[i] = shapely.linestrings(np.vstack([chain, chain[:1]]))
    thick = shapely.buffer(lines, 0.5, quad_segs=1, cap_style="square", join_style="mitre")
    # A chain that doubles back on itself (a one-pixel spur) can widen into several parts:
    # keep the largest, so that every nucleus has one simple outline with area.
    multi = np.flatnonzero(shapely.get_type_id(thick) == 6)
    for i in multi.tolist():
        thick[i] = max(thick[i].geoms, key=lambda g: g.area)
    out = shapely.polygons(shapely.get_exterior_ring(thick))
    bad = np.flatnonzero(shapely.is_empty(out) | ~(shapely.area(out) > 0))
    for i in bad.tolist():  # last resort: the hull of the label's pixel squares
        ys, xs = np.nonzero(labels == i + 1)
        corners = np.concatenate(
            [np.column_stack([xs + dx, ys + dy]) for dx in (0, 1) for dy in (0, 1)]
        ).astype(np.float64)
        out[i] = shapely.convex_hull(shapely.multipoints(corners))
    return out
