"""The one representation of a spatial sample: an AnnData with stimage's conventions.

* ``X``: raw integer UMI counts, spots x genes, as a CSR matrix of int32.
* ``obs``: one row per spot, indexed by spot id, with :attr:`Key.SECTION`,
  :attr:`Key.PATIENT`, and where the platform has them :attr:`Key.ARRAY_ROW`,
  :attr:`Key.ARRAY_COL`, :attr:`Key.IN_TISSUE`.
* ``obsm[Key.SPATIAL]``: spot centres ``(x, y)`` in full-resolution pixels of the slide.
* ``uns[Key.UNS]``: section and patient ids, platform, the slide's path (the handle to the
  slide: :func:`open_sample_slide`), µm per pixel and where it came from, spot diameter and
  pitch in µm, and the source the sample was read from.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import sparse

from stimage.constants import Key
from stimage.errors import InvalidSampleError, SpotsOutsideImageError

if TYPE_CHECKING:
    import anndata as ad

    from stimage.data._slide import Slide

__all__ = [
    "check_spots_inside",
    "make_sample",
    "open_sample_slide",
    "sample_info",
    "validate_sample",
]


def make_sample(
    counts: Any,
    genes: list[str] | pd.Index,
    spot_ids: list[str] | pd.Index,
    spatial: np.ndarray,
    *,
    section_id: str,
    patient_id: str | None,
    platform: str,
    slide_path: str | os.PathLike[str] | None,
    mpp: float | None,
    mpp_source: str,
    spot_diameter_um: float | None,
    spot_pitch_um: float | None = None,
    obs: pd.DataFrame | None = None,
    var: pd.DataFrame | None = None,
    source_path: str | os.PathLike[str] | None = None,
) -> ad.AnnData:
    """Build a sample that follows the conventions of this module.

    Args:
        counts: Spots x genes raw counts (dense or sparse; must be non-negative integers).
        genes: Gene names (made unique by appending ``-1``, ``-2``...).
        spot_ids: Spot ids (unique).
        spatial: ``(n, 2)`` spot centres ``(x, y)`` in full-resolution pixels.
        section_id: Section (tissue slice) id.
        patient_id: Patient id; the section id when unknown.
        platform: One of :class:`~stimage.constants.Platform`.
        slide_path: The H&E image the pixel positions refer to.
        mpp: µm per full-resolution pixel, if known.
        mpp_source: Where ``mpp`` came from.
        spot_diameter_um: Spot (or pseudo-spot) diameter in µm.
        spot_pitch_um: Distance between neighbouring spots in µm.
        obs: Extra per-spot columns, indexed like ``spot_ids``.
        var: Extra per-gene columns, in the order of ``genes``.
        source_path: The file or folder the sample was read from.

    Raises:
        InvalidSampleError: Shapes disagree, ids repeat, or counts are not integers.
    """
    import anndata as ad

    x = sparse.csr_matrix(counts)
    n_spots, n_genes = x.shape
    spot_ids = pd.Index([str(s) for s in spot_ids])
    where = f"{source_path or section_id}"
    if len(spot_ids) != n_spots:
        raise InvalidSampleError(f"{where}: {n_spots} rows of counts but {len(spot_ids)} spot ids")
    if spot_ids.has_duplicates:
        dup = spot_ids[spot_ids.duplicated()][:3].tolist()
        raise InvalidSampleError(
            f"{where}: spot ids repeat (e.g. {dup}); each spot needs a unique id"
        )
    if len(genes) != n_genes:
        raise InvalidSampleError(
            f"{where}: {n_genes} columns of counts but {len(genes)} gene names"
        )
    spatial = np.asarray(spatial, dtype=np.float64)
    if spatial.shape != (n_spots, 2):
        raise InvalidSampleError(
            f"{where}: spot positions have shape {spatial.shape}, expected ({n_spots}, 2)"
        )
    if not np.isfinite(spatial).all():
        raise InvalidSampleError(f"{where}: some spot positions are missing (NaN)")
    x = _as_integer_counts(x, where)
    obs_df = pd.DataFrame(index=spot_ids) if obs is None else obs.copy()
    obs_df.index = spot_ids
    obs_df[Key.SECTION] = pd.Categorical([section_id] * n_spots)
    obs_df[Key.PATIENT] = pd.Categorical([patient_id or section_id] * n_spots)
    var_df = (
        pd.DataFrame(index=_make_unique([str(g) for g in genes])) if var is None else var.copy()
    )
    var_df.index = _make_unique([str(g) for g in genes])
    adata = ad.AnnData(X=x, obs=obs_df, var=var_df)
    adata.obsm[Key.SPATIAL] = spatial
    meta: dict[str, Any] = {
        Key.SECTION: str(section_id),
        Key.PATIENT: str(patient_id or section_id),
        Key.PLATFORM: platform,
        Key.SLIDE_PATH: str(Path(slide_path).resolve()) if slide_path else "",
        Key.MPP: float(mpp) if mpp is not None else float("nan"),
        Key.MPP_SOURCE: mpp_source if mpp is not None else "unknown",
        Key.SPOT_DIAMETER_UM: float(spot_diameter_um) if spot_diameter_um else float("nan"),
        Key.SPOT_PITCH_UM: float(spot_pitch_um) if spot_pitch_um else float("nan"),
        Key.SOURCE_PATH: str(Path(source_path).resolve()) if source_path else "",
    }
    adata.uns[Key.UNS] = meta
    return adata


def _make_unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        if n in seen:
            seen[n] += 1
            out.append(f"{n}-{seen[n]}")
        else:
            seen[n] = 0
            out.append(n)
    return out


def _as_integer_counts(x: sparse.csr_matrix, where: str) -> sparse.csr_matrix:
    data = x.data
    if data.size and (not np.isfinite(data).all() or data.min() < 0):
        raise InvalidSampleError(f"{where}: counts must be non-negative numbers")
    if data.size and not np.issubdtype(data.dtype, np.integer):
        if not np.allclose(data, np.round(data)):
            raise InvalidSampleError(
                f"{where}: counts are not integers (e.g. {data[np.abs(data - np.round(data)) > 1e-6][:3]}); "
                "give raw UMI counts, not normalised or log-transformed values"
            )
        data = np.round(data)
    out = sparse.csr_matrix((data.astype(np.int32), x.indices, x.indptr), shape=x.shape)
    out.eliminate_zeros()
    return out


def sample_info(adata: ad.AnnData) -> Mapping[str, Any]:
    """The ``uns[Key.UNS]`` metadata of a sample.

    Raises:
        InvalidSampleError: The AnnData was not made by stimage's readers.
    """
    meta = adata.uns.get(Key.UNS)
    if meta is None:
        raise InvalidSampleError(
            f"AnnData has no uns[{Key.UNS!r}]; read samples with stimage.data readers "
            "(read_sample, read_h5ad) so that slide, scale and ids are known"
        )
    return meta


def validate_sample(adata: ad.AnnData) -> None:
    """Check a sample against the conventions of this module.

    Raises:
        InvalidSampleError: Naming the first convention broken.
    """
    meta = sample_info(adata)
    for k in (Key.SECTION, Key.PATIENT, Key.PLATFORM, Key.SLIDE_PATH, Key.MPP):
        if k not in meta:
            raise InvalidSampleError(f"sample metadata uns[{Key.UNS!r}] lacks {k!r}")
    if Key.SPATIAL not in adata.obsm:
        raise InvalidSampleError(f"sample lacks obsm[{Key.SPATIAL!r}] (spot centres in pixels)")
    sp = np.asarray(adata.obsm[Key.SPATIAL])
    if sp.shape != (adata.n_obs, 2):
        raise InvalidSampleError(
            f"obsm[{Key.SPATIAL!r}] has shape {sp.shape}, expected ({adata.n_obs}, 2)"
        )
    x = adata.X
    data = x.data if sparse.issparse(x) else np.asarray(x)
    if data.size and not np.issubdtype(data.dtype, np.integer):
        raise InvalidSampleError("X must hold raw integer counts")
    for k in (Key.SECTION, Key.PATIENT):
        if k not in adata.obs:
            raise InvalidSampleError(f"obs lacks column {k!r}")


def open_sample_slide(adata: ad.AnnData, mpp: float | None = None) -> Slide:
    """Open the slide a sample refers to, with the sample's µm per pixel.

    Args:
        adata: A sample made by a stimage reader.
        mpp: Overrides the sample's µm per pixel.
    """
    from stimage.data._slide import open_slide

    meta = sample_info(adata)
    path = meta.get(Key.SLIDE_PATH) or ""
    if not path:
        raise InvalidSampleError(
            f"sample {meta.get(Key.SECTION)!r} has no slide path (uns[{Key.UNS!r}][{Key.SLIDE_PATH!r}]); "
            "give the H&E image when reading it"
        )
    slide = open_slide(path)
    if mpp is not None:
        slide.set_mpp(mpp, "user")
    else:
        m = float(meta.get(Key.MPP, float("nan")))
        if np.isfinite(m) and (meta.get(Key.MPP_SOURCE) != "metadata" or not slide.has_mpp):
            slide.set_mpp(m, str(meta.get(Key.MPP_SOURCE, "user")))
    return slide


def check_spots_inside(adata: ad.AnnData, width: int, height: int, where: str = "") -> None:
    """Raise if any spot centre lies outside a ``width`` x ``height`` image.

    Raises:
        SpotsOutsideImageError: Naming how many spots, an example, and the likely fix.
    """
    sp = np.asarray(adata.obsm[Key.SPATIAL])
    outside = (sp[:, 0] < 0) | (sp[:, 1] < 0) | (sp[:, 0] >= width) | (sp[:, 1] >= height)
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise SpotsOutsideImageError(
            f"{where or sample_info(adata).get(Key.SLIDE_PATH)}: {int(outside.sum())} of {len(sp)} spot "
            f"centres lie outside the {width} x {height} px image (e.g. spot {adata.obs_names[i]!r} at "
            f"x={sp[i, 0]:.0f}, y={sp[i, 1]:.0f}); the positions must be in full-resolution pixels of "
            "this image - check that the image is the full-resolution one and the scale factors match"
        )
