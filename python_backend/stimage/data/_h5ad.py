"""Spatial samples stored as AnnData ``.h5ad`` files.

Any ``.h5ad`` with spot centres in ``obsm["spatial"]`` (``(x, y)`` in full-resolution pixels
of the H&E image) is read. Raw integer counts come from the layer named by the caller,
else ``layers["counts"]``, else ``X``.

Metadata. A file written by stimage carries ``uns["stimage"]``; it is kept, and arguments
override its entries. Otherwise the metadata is built: the slide from ``image=``, µm per
pixel from ``mpp=`` or, for files in the scanpy/squidpy Visium convention
(``uns["spatial"][library_id]["scalefactors"]``), from the Space Ranger scale factors as in
:func:`stimage.data.read_visium`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import sparse

from stimage.constants import Key, Platform
from stimage.data._grid import cross_check_mpp
from stimage.data._sample import make_sample
from stimage.data._scale import mpp_from_spot_grid
from stimage.data._visium import mpp_from_scalefactors
from stimage.errors import InputFileNotFoundError, InvalidSampleError, UnknownScaleError

if TYPE_CHECKING:
    import anndata as ad

__all__ = ["read_h5ad_sample"]

logger = logging.getLogger(__name__)

#: Layer holding raw counts by convention (scanpy tutorials, scvi-tools).
COUNTS_LAYER = "counts"


def _scalefactors(uns: Mapping[str, Any], where: Path) -> dict[str, Any]:
    """Return the scale factors of the one library in ``uns["spatial"]``, or ``{}``."""
    spatial = uns.get("spatial")
    if not isinstance(spatial, Mapping) or not spatial:
        return {}
    libs = [v for v in spatial.values() if isinstance(v, Mapping) and "scalefactors" in v]
    if len(libs) != 1:
        if libs:
            logger.warning(
                "%s: uns['spatial'] holds %d libraries; their scale factors are not used "
                "(give mpp=)",
                where,
                len(libs),
            )
        return {}
    sf = libs[0]["scalefactors"]
    return dict(sf) if isinstance(sf, Mapping) else {}


def _counts(src: ad.AnnData, layer: str | None, p: Path) -> tuple[Any, pd.DataFrame, str]:
    """Return the counts matrix, its var table and a description of where it came from."""
    if layer == "raw":
        if src.raw is None:
            raise InvalidSampleError(f"{p}: counts_layer='raw' but the file has no .raw")
        return src.raw.X, src.raw.var.copy(), "adata.raw.X"
    if layer is not None:
        if layer not in src.layers:
            raise InvalidSampleError(
                f"{p}: no layer {layer!r} (layers: {sorted(src.layers.keys())}); name the layer "
                "that holds raw counts, or 'raw' for adata.raw"
            )
        return src.layers[layer], src.var.copy(), f"layers[{layer!r}]"
    if COUNTS_LAYER in src.layers:
        return src.layers[COUNTS_LAYER], src.var.copy(), f"layers[{COUNTS_LAYER!r}]"
    return src.X, src.var.copy(), "X"


def _not_counts(x: Any) -> str | None:
    """Say why ``x`` is not a matrix of raw counts, or return None if it is one."""
    if x is None:
        return "nothing"
    data = x.data if sparse.issparse(x) else np.asarray(x).ravel()
    if data.size == 0:
        return None
    if not np.issubdtype(data.dtype, np.number) or np.issubdtype(data.dtype, np.bool_):
        return f"values of type {data.dtype}"
    if not np.isfinite(data).all():
        return "missing or infinite values"
    if data.min() < 0:
        return f"negative values (e.g. {data[data < 0][:3].tolist()}) - scaled data"
    if not np.issubdtype(data.dtype, np.integer):
        frac = np.abs(data - np.round(data)) > 1e-6
        if frac.any():
            return f"non-integer values (e.g. {np.round(data[frac][:3], 4).tolist()})"
    return None


def read_h5ad_sample(
    path: str | os.PathLike[str],
    *,
    image: str | os.PathLike[str] | None = None,
    section_id: str | None = None,
    patient_id: str | None = None,
    mpp: float | None = None,
    spot_diameter_um: float | None = None,
    platform: str | None = None,
    counts_layer: str | None = None,
) -> ad.AnnData:
    """Read a spatial sample from an ``.h5ad`` file.

    Args:
        path: The ``.h5ad`` file; ``obsm["spatial"]`` holds spot centres ``(x, y)`` in
            full-resolution pixels of the H&E image.
        image: The H&E image the positions refer to (overrides the file's).
        section_id: Section id; the file's, else the file name without suffix.
        patient_id: Patient id; the file's, else the section id.
        mpp: µm per pixel; the file's, else from Visium scale factors in ``uns["spatial"]``.
        spot_diameter_um: Spot diameter in µm; the file's, else the platform's.
        platform: One of :class:`~stimage.constants.Platform`; the file's, else ``visium``
            for scanpy/squidpy Visium files, else ``anndata``.
        counts_layer: Layer holding raw counts (``"raw"`` for ``adata.raw``); by default
            ``layers["counts"]`` if present, else ``X``.

    Raises:
        InputFileNotFoundError: The file or the image does not exist.
        InvalidSampleError: The file cannot be read, lacks ``obsm["spatial"]``, or its counts
            are not raw integer counts (normalised or log-transformed data).

    Example:
        >>> adata = read_h5ad_sample("A1.h5ad", image="A1.tif", mpp=0.5)  # doctest: +SKIP
        >>> adata.uns["stimage"]["mpp_source"]  # doctest: +SKIP
        'user'

    """
    p = Path(path)
    src, xy = _read_anndata(p, image)
    counts, var = _raw_counts(src, counts_layer, p)
    old: dict[str, Any] = dict(src.uns.get(Key.UNS) or {})
    sf = _scalefactors(src.uns, p)
    has_grid = Key.ARRAY_ROW in src.obs and Key.ARRAY_COL in src.obs
    plat = (
        platform
        or old.get(Key.PLATFORM)
        or (Platform.VISIUM if sf.get("spot_diameter_fullres") and has_grid else Platform.ANNDATA)
    )
    mpp_v, mpp_src = _resolve_mpp(src, p, mpp, old, sf, plat, xy, has_grid)
    section = section_id or old.get(Key.SECTION) or p.stem
    patient = patient_id or old.get(Key.PATIENT) or None
    adata = make_sample(
        counts,
        var.index,
        src.obs_names,
        xy,
        section_id=str(section),
        patient_id=str(patient) if patient else None,
        platform=plat,
        slide_path=_slide_path(p, image, old),
        mpp=mpp_v,
        mpp_source=mpp_src,
        spot_diameter_um=(
            spot_diameter_um
            or _finite(old.get(Key.SPOT_DIAMETER_UM))
            or Platform.DIAMETER_UM.get(plat)
        ),
        spot_pitch_um=_finite(old.get(Key.SPOT_PITCH_UM)) or Platform.PITCH_UM.get(plat),
        obs=src.obs.drop(columns=[c for c in (Key.SECTION, Key.PATIENT) if c in src.obs]),
        var=var,
        source_path=p,
    )
    _carry_over(src, adata, old)
    return adata


def _read_anndata(p: Path, image: str | os.PathLike[str] | None) -> tuple[ad.AnnData, np.ndarray]:
    """The AnnData of ``p`` and its spot centres; checks the file and the image exist."""
    import anndata as ad

    if not p.is_file():
        raise InputFileNotFoundError(f"{p}: no such .h5ad file; check the path")
    if image is not None and not Path(image).is_file():
        raise InputFileNotFoundError(f"{image}: H&E image not found; check the path")
    try:
        src = ad.read_h5ad(p)
    except (OSError, KeyError, ValueError, TypeError) as e:
        raise InvalidSampleError(
            f"{p}: cannot read the AnnData file ({e}); the file may be truncated or not "
            "an .h5ad - write it again with adata.write_h5ad()"
        ) from e
    if Key.SPATIAL not in src.obsm:
        raise InvalidSampleError(
            f"{p}: no obsm[{Key.SPATIAL!r}]; it must hold the spot centres (x, y) in "
            "full-resolution pixels of the H&E image - set adata.obsm['spatial'] and save again"
        )
    xy = np.asarray(src.obsm[Key.SPATIAL], dtype=np.float64)
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise InvalidSampleError(
            f"{p}: obsm[{Key.SPATIAL!r}] has shape {xy.shape}, expected ({src.n_obs}, 2) (x, y)"
        )
    return src, xy


def _raw_counts(src: ad.AnnData, layer: str | None, p: Path) -> tuple[Any, pd.DataFrame]:
    """The raw counts and their var table, or an error saying where raw counts may be."""
    counts, var, where = _counts(src, layer, p)
    problem = _not_counts(counts)
    if problem is None:
        return counts, var
    raw_hint = (
        "; adata.raw holds integer counts: pass counts_layer='raw'"
        if src.raw is not None and _not_counts(src.raw.X) is None and where != "adata.raw.X"
        else ""
    )
    raise InvalidSampleError(
        f"{p}: {where} holds {problem}, not raw counts. stimage models raw integer UMI "
        f"counts: store them in adata.layers['counts'] (or X), or name their layer with "
        f"counts_layer={raw_hint}"
    )


def _slide_path(p: Path, image: str | os.PathLike[str] | None, old: Mapping[str, Any]) -> Any:
    """The image given, else the one the file records (warning when it does not exist)."""
    slide = image or old.get(Key.SLIDE_PATH) or None
    if slide is None:
        logger.info("%s: no H&E image given (image=); the sample has no slide path", p)
    elif image is None and not Path(slide).exists():
        logger.warning("%s: the slide recorded in the file, %s, does not exist", p, slide)
    return slide


def _carry_over(src: ad.AnnData, adata: ad.AnnData, old: Mapping[str, Any]) -> None:
    """Keep the file's other obsm and uns entries, and its stimage metadata not overridden."""
    for key, value in src.obsm.items():
        if key != Key.SPATIAL:
            adata.obsm[key] = value
    for key, value in src.uns.items():
        if key != Key.UNS:
            adata.uns[key] = value
    meta = adata.uns[Key.UNS]
    for key, value in old.items():
        meta.setdefault(key, value)


def _finite(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) and v > 0 else None


def _resolve_mpp(
    src: ad.AnnData,
    p: Path,
    mpp: float | None,
    old: Mapping[str, Any],
    sf: Mapping[str, Any],
    plat: str,
    xy: np.ndarray,
    has_grid: bool,
) -> tuple[float | None, str]:
    """Return µm per pixel and its source: argument, file, scale factors, then spot grid."""
    grid_mpp = None
    if has_grid and plat in Platform.PITCH_UM:
        try:
            grid_mpp = mpp_from_spot_grid(
                src.obs[Key.ARRAY_ROW].to_numpy(int),
                src.obs[Key.ARRAY_COL].to_numpy(int),
                xy,
                plat,
                source=str(p),
            ).mpp
        except UnknownScaleError as e:
            logger.debug("no spot-grid scale for %s: %s", p, e)
    if mpp is not None:
        return float(mpp), "user"
    if (old_mpp := _finite(old.get(Key.MPP))) is not None:
        return old_mpp, str(old.get(Key.MPP_SOURCE) or "file")
    if (sf_mpp := mpp_from_scalefactors(sf)) is not None:
        cross_check_mpp(sf_mpp, "scalefactors", grid_mpp, str(p))
        return sf_mpp, "scalefactors"
    if grid_mpp is not None:
        return grid_mpp, "spot grid"
    logger.warning(
        "%s: µm per pixel unknown (no mpp=, no uns['stimage'], no Visium scale factors); "
        "give it with mpp= (--mpp) before tiling",
        p,
    )
    return None, "unknown"
