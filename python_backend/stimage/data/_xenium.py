"""10x Xenium samples: cells mapped onto a registered H&E image and pooled into pseudo-spots.

A Xenium Onboard Analysis output folder holds::

    cell_feature_matrix.h5        cells x features (10x HDF5; genes plus control probes and
                                  codewords, only "Gene Expression" is kept)
    cells.parquet / cells.csv.gz  cell_id, x_centroid, y_centroid (µm), ...
    experiment.xenium             JSON manifest; "pixel_size": µm per morphology-image pixel
                                  (0.2125 on every Xenium instrument so far)
    <name>_he_image.ome.tif       the post-Xenium H&E (added to the folder by the user or 10x)
    <name>_he_imagealignment.csv  3 x 3 affine matrix exported by Xenium Explorer

Alignment convention. The matrix ``M`` maps a pixel ``(x, y)`` of the full-resolution H&E
image to a pixel ``(x', y')`` of the Xenium morphology (DAPI) image:
``[x', y', 1]^T = M @ [x, y, 1]^T``. Xenium µm are morphology pixels times ``pixel_size``.
So a cell at ``(u, v)`` µm lies at H&E pixel ``M^-1 @ [u / pixel_size, v / pixel_size, 1]``,
and one H&E pixel spans ``sqrt(|det M[:2, :2]|) * pixel_size`` µm. Sources: the 10x
Genomics knowledge-base article "How can I convert coordinates between H&E image and Xenium
data" (kb.10xgenomics.com/hc/en-us/articles/35386990499853: the exported matrix converts H&E
image coordinates to Xenium pixel coordinates, which are then multiplied by ``pixel_size``
from ``experiment.xenium``), and spatialdata-io's ``xenium_aligned_image``, which applies
the CSV as an ``Affine`` from the image's ``(x, y)`` to the global (morphology-pixel) frame.

Pseudo-spots. Square bins of side ``spot_um`` are laid on a grid of pitch ``pitch_um`` in
Xenium µm, anchored at the origin: bin ``(row, col)`` is centred at
``((col + 0.5) * pitch, (row + 0.5) * pitch)`` and holds the cells whose centroid lies in
``[centre - spot/2, centre + spot/2)`` on both axes. With ``pitch == spot`` the bins tile
the plane and each cell falls in exactly one; with ``pitch > spot`` cells between bins are
left out; with ``pitch < spot`` bins overlap and a cell may count in several.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import sparse

from stimage.constants import Key, Platform
from stimage.data._sample import make_sample
from stimage.data._tenx import read_10x_h5
from stimage.data._visium import IMAGE_SUFFIXES
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

#: µm per pixel of the Xenium morphology image when ``experiment.xenium`` does not say.
XENIUM_PIXEL_SIZE_UM = 0.2125
#: Column names of the H&E full-resolution pixel position of each cell.
X_FULLRES, Y_FULLRES = "x_fullres", "y_fullres"

_CELL_COLUMNS = ("cell_id", "x_centroid", "y_centroid")
_RASTER = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
AlignmentLike = str | os.PathLike[str] | np.ndarray


@dataclass(frozen=True)
class XeniumAlignment:
    """The affine map between H&E full-resolution pixels and Xenium µm.

    Attributes:
        matrix: 3 x 3 affine taking H&E pixels ``(x, y, 1)`` to Xenium morphology pixels.
        pixel_size: µm per Xenium morphology pixel.
        source: Where the matrix came from (named in messages).

    """

    matrix: np.ndarray
    pixel_size: float = XENIUM_PIXEL_SIZE_UM
    source: str = "identity"

    @classmethod
    def load(
        cls, alignment: AlignmentLike, pixel_size: float = XENIUM_PIXEL_SIZE_UM
    ) -> XeniumAlignment:
        """Read an alignment from a CSV file, an array, or ``"identity"``.

        ``"identity"`` means the H&E image is registered pixel for pixel to the morphology
        image.

        Raises:
            InputFileNotFoundError: The CSV does not exist.
            InvalidSampleError: Not a 3 x 3 affine matrix, or a singular one.

        Example:
            >>> a = XeniumAlignment.load(np.diag([2.0, 2.0, 1.0]))
            >>> a.um_to_fullres(np.array([[0.425, 0.85]])).tolist(), a.mpp
            ([[1.0, 2.0]], 0.425)

        """
        if isinstance(alignment, np.ndarray):
            return cls(
                _check_matrix(np.asarray(alignment, float), "alignment array"), pixel_size, "array"
            )
        if str(alignment) == "identity":
            return cls(np.eye(3), pixel_size, "identity")
        path = Path(alignment)
        if not path.is_file():
            raise InputFileNotFoundError(
                f"{path}: alignment matrix not found; give the *_imagealignment.csv exported by "
                "Xenium Explorer (or 'identity' if the H&E is registered to the morphology image)"
            )
        return cls(_check_matrix(_parse_matrix_csv(path), str(path)), pixel_size, str(path))

    @property
    def mpp(self) -> float:
        """µm per H&E full-resolution pixel: ``sqrt(|det|)`` of the linear part times pixel size."""
        return float(np.sqrt(abs(np.linalg.det(self.matrix[:2, :2]))) * self.pixel_size)

    @property
    def anisotropy(self) -> float:
        """Ratio of the larger to the smaller scale of the linear part (1 for a similarity)."""
        s = np.linalg.svd(self.matrix[:2, :2], compute_uv=False)
        return float(s[0] / s[1])

    def um_to_fullres(self, xy_um: np.ndarray) -> np.ndarray:
        """Map ``(n, 2)`` Xenium µm to H&E full-resolution pixels ``(x, y)``."""
        xy = np.asarray(xy_um, dtype=np.float64) / self.pixel_size
        inv = np.linalg.inv(self.matrix)
        return xy @ inv[:2, :2].T + inv[:2, 2]

    def fullres_to_um(self, xy_px: np.ndarray) -> np.ndarray:
        """Map ``(n, 2)`` H&E full-resolution pixels ``(x, y)`` to Xenium µm."""
        xy = np.asarray(xy_px, dtype=np.float64)
        return (xy @ self.matrix[:2, :2].T + self.matrix[:2, 2]) * self.pixel_size


def _parse_matrix_csv(path: Path) -> np.ndarray:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidSampleError(f"{path}: cannot read the alignment matrix ({e})") from e
    rows: list[list[float]] = []
    for line in text.splitlines():
        parts = [t.strip().strip('"') for t in line.strip().split(",")]
        if not any(parts):
            continue
        try:
            rows.append([float(t) for t in parts])
        except ValueError:
            if rows:
                raise InvalidSampleError(
                    f"{path}: non-numeric line {line.strip()!r} in the alignment matrix"
                ) from None
            continue  # a header line
    widths = {len(r) for r in rows}
    if len(widths) != 1:
        raise InvalidSampleError(f"{path}: rows of the alignment matrix differ in length")
    arr = np.array(rows, dtype=np.float64)
    if arr.shape == (2, 3):
        arr = np.vstack([arr, [0.0, 0.0, 1.0]])
    if arr.shape != (3, 3):
        hint = (
            " (this looks like a keypoints file; give the *_imagealignment.csv matrix instead)"
            if arr.ndim == 2 and arr.shape[1] == 4
            else ""
        )
        raise InvalidSampleError(
            f"{path}: the alignment has shape {arr.shape}, expected a 3 x 3 affine matrix as "
            f"exported by Xenium Explorer{hint}"
        )
    return arr


def _check_matrix(m: np.ndarray, where: str) -> np.ndarray:
    if m.shape == (2, 3):
        m = np.vstack([m, [0.0, 0.0, 1.0]])
    if m.shape != (3, 3) or not np.isfinite(m).all():
        raise InvalidSampleError(f"{where}: expected a finite 3 x 3 affine matrix, got {m.shape}")
    if not np.allclose(m[2], [0.0, 0.0, 1.0], atol=1e-6):
        raise InvalidSampleError(
            f"{where}: last row is {m[2].tolist()}, expected [0, 0, 1]; only affine alignments "
            "are supported"
        )
    lin = m[:2, :2]
    scale = float(np.abs(lin).max())
    if scale == 0 or abs(np.linalg.det(lin)) <= 1e-12 * scale * scale:
        raise InvalidSampleError(
            f"{where}: the alignment matrix is singular (its linear part {lin.tolist()} has no "
            "inverse), so Xenium positions cannot be mapped onto the H&E; export the alignment "
            "again from Xenium Explorer"
        )
    return m


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
            "pass the registered H&E with image= (CLI flag --image, manifest column 'image')"
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
    try:
        df = pd.read_parquet(path) if path == parquet else pd.read_csv(path)
    except (OSError, EOFError, ValueError, pd.errors.ParserError) as e:
        raise InvalidSampleError(
            f"{path}: cannot read the cells table ({e}); check the file is complete"
        ) from e
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


def _bin_membership(
    xy_um: np.ndarray, spot_um: float, pitch_um: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (cell index, bin row, bin col) of every cell in every bin that holds it."""
    n = len(xy_um)
    if np.isclose(spot_um, pitch_um, rtol=1e-12, atol=0):
        cols = np.floor(xy_um[:, 0] / pitch_um).astype(np.int64)
        rows = np.floor(xy_um[:, 1] / pitch_um).astype(np.int64)
        return np.arange(n), rows, cols
    reach = int(np.ceil(spot_um / pitch_um)) + 2

    def axis(v: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        base = np.floor((v - spot_um / 2) / pitch_um - 0.5).astype(np.int64)
        out = []
        for k in range(reach):
            idx = base + k
            lo = (idx + 0.5) * pitch_um - spot_um / 2
            out.append((idx, (v >= lo) & (v < lo + spot_um)))
        return out

    hit_cells: list[np.ndarray] = []
    hit_rows: list[np.ndarray] = []
    hit_cols: list[np.ndarray] = []
    for r, in_r in axis(xy_um[:, 1]):
        for c, in_c in axis(xy_um[:, 0]):
            hit = np.flatnonzero(in_r & in_c)
            hit_cells.append(hit)
            hit_rows.append(r[hit])
            hit_cols.append(c[hit])
    return np.concatenate(hit_cells), np.concatenate(hit_rows), np.concatenate(hit_cols)


def _image_size(path: Path) -> tuple[int, int]:
    if path.suffix.lower() in _RASTER:
        from PIL import Image

        from stimage.data._slide import _PIL_LOCK

        with _PIL_LOCK:
            old = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None
            try:
                with Image.open(path) as im:
                    return im.size
            except (OSError, SyntaxError, ValueError) as e:
                raise UnreadableImageError(f"{path}: cannot read the image header ({e})") from e
            finally:
                Image.MAX_IMAGE_PIXELS = old
    from stimage.data._slide import open_slide

    with open_slide(path) as slide:
        return slide.dimensions


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
    pitch = float(spot_um if pitch_um is None else pitch_um)
    if not (np.isfinite(spot_um) and spot_um > 0 and np.isfinite(pitch) and pitch > 0):
        raise ConfigError(f"spot_um={spot_um} and pitch_um={pitch_um} must be positive µm")
    if int(min_cells) < 1:
        raise ConfigError(f"min_cells={min_cells} must be at least 1")
    root = _root(folder)
    image_p = _image(root, image)
    if image_p is None:
        raise InputFileNotFoundError(
            f"{root}: no H&E image found (expected a *_he_image.ome.tif); pass the "
            "full-resolution H&E registered to this Xenium run with image= (CLI flag "
            "--image, manifest column 'image')"
        )
    align = _alignment(root, image_p, alignment)
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
    xy_um = cells.loc[m.barcodes, ["x_centroid", "y_centroid"]].to_numpy(np.float64)

    cell_idx, rows, cols = _bin_membership(xy_um, float(spot_um), pitch)
    keys, inverse = np.unique(np.c_[rows, cols], axis=0, return_inverse=True)
    inverse = np.asarray(inverse).reshape(-1)
    n_cells = np.bincount(inverse, minlength=len(keys))
    keep = n_cells >= int(min_cells)
    centres_um = (keys[:, ::-1] + 0.5) * pitch  # (col, row) -> (x, y)
    xy_px = align.um_to_fullres(centres_um)
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
    keep &= inside
    if not keep.any():
        raise InvalidSampleError(
            f"{root}: no pseudo-spot holds {min_cells} or more cells; lower min_cells or "
            "enlarge spot_um"
        )
    member = sparse.csr_matrix(
        (np.ones(len(cell_idx), np.int32), (inverse, cell_idx)), shape=(len(keys), len(xy_um))
    )
    sel = np.flatnonzero(keep)
    counts = (member[sel] @ m.counts).tocsr()
    bins = keys[sel]
    ids = [f"bin_{r}_{c}" for r, c in bins]
    obs = pd.DataFrame(
        {Key.ARRAY_ROW: bins[:, 0], Key.ARRAY_COL: bins[:, 1], Key.N_CELLS: n_cells[sel]},
        index=ids,
    )
    var = pd.DataFrame({Key.GENE_ID: m.gene_ids.to_numpy()})
    mpp_v, mpp_src = (float(mpp), "user") if mpp is not None else (align.mpp, "xenium alignment")
    return make_sample(
        counts,
        m.genes,
        ids,
        xy_px[sel],
        section_id=section_id or root.name,
        patient_id=patient_id,
        platform=Platform.XENIUM,
        slide_path=image_p,
        mpp=mpp_v,
        mpp_source=mpp_src,
        spot_diameter_um=float(spot_um),
        spot_pitch_um=pitch,
        obs=obs,
        var=var,
        source_path=root,
    )
