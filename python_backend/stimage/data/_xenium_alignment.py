"""The affine alignment between a registered H&E image and a 10x Xenium run.

Convention. The matrix ``M`` maps a pixel ``(x, y)`` of the full-resolution H&E image to a
pixel ``(x', y')`` of the Xenium morphology (DAPI) image: ``[x', y', 1]^T = M @ [x, y, 1]^T``.
Xenium µm are morphology pixels times ``pixel_size``. So a cell at ``(u, v)`` µm lies at H&E
pixel ``M^-1 @ [u / pixel_size, v / pixel_size, 1]``, and one H&E pixel spans
``sqrt(|det M[:2, :2]|) * pixel_size`` µm. Sources: the 10x Genomics knowledge-base article
"How can I convert coordinates between H&E image and Xenium data"
(kb.10xgenomics.com/hc/en-us/articles/35386990499853: the exported matrix converts H&E image
coordinates to Xenium pixel coordinates, which are then multiplied by ``pixel_size`` from
``experiment.xenium``), and spatialdata-io's ``xenium_aligned_image``, which applies the CSV
as an ``Affine`` from the image's ``(x, y)`` to the global (morphology-pixel) frame.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stimage.errors import InputFileNotFoundError, InvalidSampleError

__all__ = ["XENIUM_PIXEL_SIZE_UM", "AlignmentLike", "XeniumAlignment"]

#: µm per pixel of the Xenium morphology image when ``experiment.xenium`` does not say.
XENIUM_PIXEL_SIZE_UM = 0.2125
#: What names an alignment: a CSV path, a 3 x 3 (or 2 x 3) array, or ``"identity"``.
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
