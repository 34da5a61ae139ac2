"""10x Xenium samples: cells mapped onto a registered H&E image and pooled into pseudo-spots.

A Xenium Onboard Analysis output folder holds::

    cell_feature_matrix.h5        cells x features (10x HDF5; genes plus control probes and
                                  codewords, only "Gene Expression" is kept)
    cells.parquet / cells.csv.gz  cell_id, x_centroid, y_centroid (µm), ...
    experiment.xenium             JSON manifest; "pixel_size": µm per morphology-image pixel
                                  (0.2125 on every Xenium instrument so far)
    <name>_he_image.ome.tif       the post-Xenium H&E (added to the folder by the user or 10x)
    <name>_he_imagealignment.csv  3 x 3 affine matrix exported by Xenium Explorer

The alignment's convention (H&E pixels to Xenium morphology pixels) is described in
:mod:`._xenium_alignment`; how cells are pooled into pseudo-spots in :mod:`._xenium_bins`.
This module finds the files of a run and reads them.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from stimage.constants import Key, Platform
from stimage.data._sample import make_sample
from stimage.data._tables import read_text_table
from stimage.data._tenx import TenxMatrix, read_10x_h5
from stimage.data._visium import IMAGE_SUFFIXES
from stimage.data._xenium_alignment import XENIUM_PIXEL_SIZE_UM, AlignmentLike, XeniumAlignment
from stimage.data._xenium_bins import CellBins, bin_cells
from stimage.errors import (
    ConfigError,
    InputFileNotFoundError,
    InvalidSampleError,
    MissingDependencyError,
    SpotMismatchError,
    SpotsOutsideImageError,
    UnreadableImageError,
)

if TYPE_CHECKING:
    import anndata as ad

__all__ = [
    "XENIUM_PIXEL_SIZE_UM",
    "XeniumAlignment",
    "is_xenium_folder",
    "read_xenium",
    "read_xenium_cells",
]

logger = logging.getLogger(__name__)

#: Column names of the H&E full-resolution pixel position of each cell.
X_FULLRES, Y_FULLRES = "x_fullres", "y_fullres"

_CELL_COLUMNS = ("cell_id", "x_centroid", "y_centroid")
_RASTER = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def is_xenium_folder(path: str | os.PathLike[str]) -> bool:
    """Whether a folder is Xenium Onboard Analysis output (matrix and cells table)."""
    p = Path(path)
    return (p / "cell_feature_matrix.h5").is_file() and any(
        (p / n).is_file() for n in ("cells.parquet", "cells.csv.gz", "cells.csv")
    )


def _pixel_size(folder: Path) -> float:
    path = folder / "experiment.xenium"
    if not path.is_file():
        logger.warning(
            "%s: no experiment.xenium; assuming the Xenium pixel size of %s µm",
            folder,
            XENIUM_PIXEL_SIZE_UM,
        )
        return XENIUM_PIXEL_SIZE_UM
    try:
        value = float(json.loads(path.read_text(encoding="utf-8"))["pixel_size"])
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InvalidSampleError(f"{path}: not valid JSON ({e}); copy it again") from e
    except (KeyError, TypeError, ValueError) as e:
        raise InvalidSampleError(
            f"{path}: no numeric 'pixel_size' (µm per morphology pixel); expected the "
            "experiment.xenium manifest of Xenium Onboard Analysis"
        ) from e
    if not (np.isfinite(value) and 0 < value < 10):
        raise InvalidSampleError(f"{path}: pixel_size {value} µm is not plausible")
    return value


def _find_image(folder: Path) -> Path | None:
    files = [
        p
        for p in sorted(folder.iterdir())
        if p.is_file()
        and p.suffix.lower() in IMAGE_SUFFIXES
        and not p.name.lower().startswith("morphology")
        and "if_image" not in p.name.lower()
    ]
    he = [p for p in files if "he_image" in p.name.lower()]
    pick = he or files
    if len(pick) == 1:
        return pick[0]
    if len(pick) > 1:
        raise InputFileNotFoundError(
            f"{folder}: {len(pick)} candidate H&E images ({', '.join(p.name for p in pick[:4])}); "
            "pass the registered H&E with image= (in a manifest: its 'image' column; see the README's manifest example)"
        )
    return None


def _find_alignment(folder: Path, image: Path | None) -> Path | None:
    if image is not None:
        stem = image.name
        for suf in (".ome.tiff", ".ome.tif", ".tiff", ".tif", ".btf"):
            if stem.lower().endswith(suf):
                stem = stem[: -len(suf)]
                break
        beside = image.parent / f"{stem}alignment.csv"
        if beside.is_file():
            return beside
    dirs = list(dict.fromkeys([folder] + ([image.parent] if image is not None else [])))
    found = sorted(
        {p for d in dirs for p in d.glob("*imagealignment.csv") if "keypoint" not in p.name.lower()}
    )
    he = [p for p in found if "he_image" in p.name.lower()]
    pick = he or found
    if len(pick) == 1:
        return pick[0]
    if len(pick) > 1:
        raise InputFileNotFoundError(
            f"{folder}: {len(pick)} alignment files ({', '.join(p.name for p in pick[:4])}); "
            "pass the one of the H&E with alignment="
        )
    return None


def _root(folder: str | os.PathLike[str]) -> Path:
    root = Path(folder)
    if not root.is_dir():
        raise InputFileNotFoundError(
            f"{root}: no such folder; give the Xenium Onboard Analysis output folder"
        )
    return root


def _image(root: Path, image: str | os.PathLike[str] | None) -> Path | None:
    if image is None:
        return _find_image(root)
    path = Path(image)
    if not path.is_file():
        raise InputFileNotFoundError(f"{path}: H&E image not found; check the path")
    return path


def _alignment(root: Path, image: Path | None, alignment: AlignmentLike | None) -> XeniumAlignment:
    pixel_size = _pixel_size(root)
    if alignment is None:
        found = _find_alignment(root, image)
        if found is None:
            raise InputFileNotFoundError(
                f"{root}: no *_imagealignment.csv found; pass the H&E alignment matrix exported "
                "by Xenium Explorer with alignment= (or alignment='identity' if the H&E is "
                "registered pixel for pixel to the morphology image)"
            )
        alignment = found
    align = XeniumAlignment.load(alignment, pixel_size)
    if align.anisotropy > 1.05:
        logger.warning(
            "%s scales x and y differently (ratio %.3f); µm per pixel is their geometric mean",
            align.source,
            align.anisotropy,
        )
    return align


def _has_parquet_engine() -> bool:
    return any(importlib.util.find_spec(m) is not None for m in ("pyarrow", "fastparquet"))


def _read_cells_table(folder: Path) -> tuple[pd.DataFrame, Path]:
    parquet = folder / "cells.parquet"
    csvs = [folder / n for n in ("cells.csv.gz", "cells.csv") if (folder / n).is_file()]
    if parquet.is_file() and (_has_parquet_engine() or not csvs):
        if not _has_parquet_engine():
            raise MissingDependencyError(
                f"{parquet}: reading parquet needs pyarrow (pip install pyarrow); or put the "
                "cells.csv.gz of the same Xenium output beside it"
            )
        path = parquet
    elif csvs:
        path = csvs[0]
    else:
        raise InputFileNotFoundError(
            f"{folder}: no cells.parquet or cells.csv.gz; expected the cells table of a "
            "Xenium Onboard Analysis output"
        )
    if path == parquet:
        try:
            df = pd.read_parquet(path)
        except (OSError, ValueError) as e:
            raise InvalidSampleError(
                f"{path}: cannot read the cells table ({e}); check the file is complete"
            ) from e
    else:
        df = read_text_table(path, "cells table")
    missing = [c for c in _CELL_COLUMNS if c not in df.columns]
    if missing:
        raise InvalidSampleError(
            f"{path}: lacks column(s) {missing}; expected cell_id, x_centroid, y_centroid (µm)"
        )
    ids = df["cell_id"].map(lambda v: v.decode("utf-8") if isinstance(v, bytes) else str(v))
    df = df.drop(columns="cell_id").set_index(pd.Index(ids, name="cell_id"))
    if df.index.has_duplicates:
        raise InvalidSampleError(f"{path}: cell id {df.index[df.index.duplicated()][0]!r} repeats")
    if not np.isfinite(df[["x_centroid", "y_centroid"]].to_numpy(float)).all():
        raise InvalidSampleError(f"{path}: some cells lack a centroid (NaN)")
    return df, path


def read_xenium_cells(
    folder: str | os.PathLike[str],
    image: str | os.PathLike[str] | None = None,
    alignment: AlignmentLike | None = None,
) -> pd.DataFrame:
    """Read the cells of a Xenium run with their position in H&E full-resolution pixels.

    Args:
        folder: Xenium Onboard Analysis output folder.
        image: The registered H&E image (used to find its alignment file; optional).
        alignment: The alignment CSV, a 3 x 3 array or ``"identity"``; by default the
            ``*imagealignment.csv`` beside the image or in ``folder``.

    Returns:
        The cells table indexed by ``cell_id`` with ``x_centroid``, ``y_centroid`` (µm) and
        ``x_fullres``, ``y_fullres`` (H&E pixels). ``attrs`` holds ``slide_path``, ``mpp``
        (µm per H&E pixel), ``pixel_size_um`` and the ``alignment`` matrix.

    Raises:
        InputFileNotFoundError: The folder, cells table or alignment is missing.
        InvalidSampleError: The cells table or alignment is malformed or singular.
        MissingDependencyError: Only ``cells.parquet`` exists and no parquet engine is installed.

    """
    root = _root(folder)
    image_p = _image(root, image)
    align = _alignment(root, image_p, alignment)
    cells, _ = _read_cells_table(root)
    xy = align.um_to_fullres(cells[["x_centroid", "y_centroid"]].to_numpy(float))
    cells[X_FULLRES], cells[Y_FULLRES] = xy[:, 0], xy[:, 1]
    cells.attrs.update(
        slide_path=str(image_p.resolve()) if image_p else "",
        mpp=align.mpp,
        pixel_size_um=align.pixel_size,
        alignment=align.matrix.tolist(),
    )
    return cells


def _image_size(path: Path) -> tuple[int, int]:
    """Width and height of an image; a plain image's header is read, not the pixels."""
    from stimage.data._raster import _open_raster
    from stimage.data._slide import open_slide

    if path.suffix.lower() in _RASTER:
        try:
            with _open_raster(path) as im:
                return im.size
        except (OSError, SyntaxError, ValueError) as e:
            raise UnreadableImageError(f"{path}: cannot read the image header ({e})") from e
    with open_slide(path) as slide:
        return slide.dimensions


def _bin_settings(spot_um: float, pitch_um: float | None, min_cells: int) -> float:
    """Check the pseudo-spot settings and return the pitch in µm."""
    pitch = float(spot_um if pitch_um is None else pitch_um)
    if not (np.isfinite(spot_um) and spot_um > 0 and np.isfinite(pitch) and pitch > 0):
        raise ConfigError(f"spot_um={spot_um} and pitch_um={pitch_um} must be positive µm")
    if int(min_cells) < 1:
        raise ConfigError(f"min_cells={min_cells} must be at least 1")
    return pitch


def _required_image(root: Path, image: str | os.PathLike[str] | None) -> Path:
    image_p = _image(root, image)
    if image_p is None:
        raise InputFileNotFoundError(
            f"{root}: no H&E image found (expected a *_he_image.ome.tif); pass the "
            "full-resolution H&E registered to this Xenium run with image= (in a manifest: "
            "its 'image' column; see the README's manifest example)"
        )
    return image_p


def _matrix_and_centroids(root: Path) -> tuple[TenxMatrix, np.ndarray]:
    """The cell-feature matrix and the ``(x, y)`` µm centroid of each of its cells."""
    matrix_p = root / "cell_feature_matrix.h5"
    m = read_10x_h5(matrix_p)
    cells, cells_p = _read_cells_table(root)
    no_pos = m.barcodes.difference(cells.index)
    if len(no_pos):
        raise SpotMismatchError(
            f"{matrix_p}: {len(no_pos)} of {len(m.barcodes)} cells have no row in {cells_p.name} "
            f"(e.g. {list(no_pos[:3])}); the matrix and the cells table must come from the same "
            "Xenium output"
        )
    return m, cells.loc[m.barcodes, ["x_centroid", "y_centroid"]].to_numpy(np.float64)


def _bins_on_image(
    bins: CellBins, align: XeniumAlignment, image_p: Path, min_cells: int, root: Path
) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the bins kept (enough cells, centre on the image) and their H&E pixels."""
    keep = bins.n_cells >= min_cells
    xy_px = align.um_to_fullres(bins.centres_um)
    width, height = _image_size(image_p)
    inside = (
        (xy_px[:, 0] >= 0) & (xy_px[:, 1] >= 0) & (xy_px[:, 0] < width) & (xy_px[:, 1] < height)
    )
    if keep.any() and not (keep & inside).any():
        i = int(np.flatnonzero(keep)[0])
        raise SpotsOutsideImageError(
            f"{image_p}: all {int(keep.sum())} pseudo-spot centres fall outside the {width} x "
            f"{height} px image (e.g. x={xy_px[i, 0]:.0f}, y={xy_px[i, 1]:.0f}); the alignment "
            f"{align.source} must map this H&E image's pixels to Xenium pixels (as exported by "
            "Xenium Explorer) - check it belongs to this image and is not inverted"
        )
    if (keep & ~inside).any():
        logger.warning(
            "%s: %d of %d pseudo-spots lie outside the H&E image and are dropped",
            root,
            int((keep & ~inside).sum()),
            int(keep.sum()),
        )
    sel = np.flatnonzero(keep & inside)
    if not len(sel):
        raise InvalidSampleError(
            f"{root}: no pseudo-spot holds {min_cells} or more cells; lower min_cells or "
            "enlarge spot_um"
        )
    return sel, xy_px[sel]


def read_xenium(
    folder: str | os.PathLike[str],
    image: str | os.PathLike[str] | None = None,
    alignment: AlignmentLike | None = None,
    *,
    spot_um: float = 55.0,
    pitch_um: float | None = None,
    min_cells: int = 1,
    section_id: str | None = None,
    patient_id: str | None = None,
    mpp: float | None = None,
) -> ad.AnnData:
    """Read a Xenium run as pseudo-spots on its registered H&E image.

    Cells are pooled into square bins laid in Xenium µm (see the module docstring); each
    bin's counts are the sum over the cells whose centroid it holds. Bins whose centre falls
    outside the H&E image are dropped.

    Args:
        folder: Xenium Onboard Analysis output folder.
        image: The registered H&E image; by default the single ``*he_image*`` (or other
            non-morphology) image in ``folder``.
        alignment: The alignment CSV (H&E pixels -> Xenium pixels), a 3 x 3 array or
            ``"identity"``; by default the ``*imagealignment.csv`` beside the image.
        spot_um: Side of a pseudo-spot in µm.
        pitch_um: Distance between neighbouring pseudo-spot centres; ``spot_um`` by default
            (bins tile the section).
        min_cells: Keep bins holding at least this many cells.
        section_id: Section id; the folder name by default.
        patient_id: Patient id (the section id when unknown).
        mpp: µm per H&E pixel; derived from the alignment and the Xenium pixel size by default.

    Raises:
        ConfigError: ``spot_um``, ``pitch_um`` or ``min_cells`` out of range.
        InputFileNotFoundError: The matrix, cells table, image or alignment is missing.
        SpotMismatchError: Cells of the matrix have no row in the cells table.
        InvalidSampleError: Malformed inputs, a singular alignment, or no bin with enough cells.
        SpotsOutsideImageError: No bin centre lies inside the H&E image.

    Example:
        >>> adata = read_xenium("xenium_outs", spot_um=55)  # doctest: +SKIP
        >>> adata.uns["stimage"]["mpp_source"], adata.obs["n_cells"].min()  # doctest: +SKIP
        ('xenium alignment', 1)

    """
    pitch = _bin_settings(spot_um, pitch_um, min_cells)
    root = _root(folder)
    image_p = _required_image(root, image)
    align = _alignment(root, image_p, alignment)
    m, xy_um = _matrix_and_centroids(root)
    bins = bin_cells(xy_um, float(spot_um), pitch)
    sel, xy_px = _bins_on_image(bins, align, image_p, int(min_cells), root)
    keys = bins.keys[sel]
    ids = [f"bin_{r}_{c}" for r, c in keys]
    obs = pd.DataFrame(
        {Key.ARRAY_ROW: keys[:, 0], Key.ARRAY_COL: keys[:, 1], Key.N_CELLS: bins.n_cells[sel]},
        index=ids,
    )
    mpp_v, mpp_src = (float(mpp), "user") if mpp is not None else (align.mpp, "xenium alignment")
    return make_sample(
        bins.pool(m.counts, sel),
        m.genes,
        ids,
        xy_px,
        section_id=section_id or root.name,
        patient_id=patient_id,
        platform=Platform.XENIUM,
        slide_path=image_p,
        mpp=mpp_v,
        mpp_source=mpp_src,
        spot_diameter_um=float(spot_um),
        spot_pitch_um=pitch,
        obs=obs,
        var=pd.DataFrame({Key.GENE_ID: m.gene_ids.to_numpy()}),
        source_path=root,
    )
