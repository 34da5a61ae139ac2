"""Cellpose as a nucleus segmentation backend (optional; weights only from local files).

Cellpose downloads its weights on first use; stimage never lets it. The weights file is
found here first, and Cellpose is then given that existing path, the one case in which it
downloads nothing (``CellposeModel`` and ``get_model_params`` fetch only names that are not
existing paths, in Cellpose 3 and 4 alike).

Where the file is looked for, in order:

1. ``model`` given as a path to a file;
2. ``$CELLPOSE_LOCAL_MODELS_PATH/<file>`` (Cellpose's own variable for its model folder);
3. ``~/.cellpose/models/<file>`` (Cellpose's default folder, if something is already there).

``<file>`` is Cellpose's name for the model: ``cpsam`` (Cellpose-SAM, the default of
Cellpose 4), ``nucleitorch_0`` for the ``nuclei`` model of Cellpose 3, and so on.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import logging
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from stimage.errors import ConfigError, InputFileNotFoundError, MissingDependencyError

__all__ = ["CELLPOSE_ENV", "CellposeSegmenter", "find_cellpose_weights"]

logger = logging.getLogger(__name__)

#: Environment variable naming the folder of Cellpose weights.
CELLPOSE_ENV = "CELLPOSE_LOCAL_MODELS_PATH"
_DEFAULT_DIR = Path("~/.cellpose/models")
#: Where each version of Cellpose downloads its built-in models from (for the message only).
_URLS = {
    3: "https://www.cellpose.org/models/{file}",
    4: "https://huggingface.co/mouseland/cellpose-sam/resolve/main/{file}",
}
#: Cellpose 3 stores these models under "<name>torch_0".
_V3_TORCH_NAMES = {"nuclei", "cyto", "cyto2"}


def _cellpose_major() -> int:
    """Major version of the installed Cellpose (4 when it cannot be read)."""
    try:
        text = importlib.metadata.version("cellpose")
    except importlib.metadata.PackageNotFoundError:
        text = str(getattr(importlib.import_module("cellpose"), "version", "4"))
    try:
        return int(text.split(".")[0])
    except ValueError:
        return 4


def _require_cellpose() -> None:
    if importlib.util.find_spec("cellpose") is None:
        raise MissingDependencyError(
            "the 'cellpose' nucleus segmenter needs the Cellpose package, which is not installed: "
            "run  pip install 'stimage[cellpose]'  (or  pip install cellpose ), then place its "
            f"weights in the folder named by {CELLPOSE_ENV}; or use the built-in "
            "segmenter='classical', which needs no weights."
        )


def _weights_file_name(model: str, major: int) -> str:
    if major < 4 and model in _V3_TORCH_NAMES:
        return f"{model}torch_0"
    return model


def find_cellpose_weights(model: str | os.PathLike[str] | None = None) -> Path:
    """The local Cellpose weights file for ``model`` (never downloads).

    Args:
        model: A path to a weights file, or a Cellpose model name (``"cpsam"``,
            ``"nuclei"``, ...); ``None`` = ``"cpsam"`` with Cellpose 4, ``"nuclei"`` with 3.

    Raises:
        MissingDependencyError: Cellpose is not installed.
        InputFileNotFoundError: ``model`` is a path and no file is there.
        MissingWeightsError: No file for the named model in the folders searched; the
            message names the file and where to put it.
    """
    from stimage.encoders import MissingWeightsError

    _require_cellpose()
    major = _cellpose_major()
    if model is None:
        model = "cpsam" if major >= 4 else "nuclei"
    text = os.fspath(model)
    p = Path(text).expanduser()
    looks_like_path = isinstance(model, os.PathLike) or os.sep in text or "/" in text
    if p.is_file():
        return p.resolve()
    if looks_like_path:
        raise InputFileNotFoundError(
            f"{p}: no Cellpose weights file there; check the path, or give a model name "
            f"such as 'cpsam' to look in ${CELLPOSE_ENV}."
        )
    file = _weights_file_name(text, major)
    env = os.environ.get(CELLPOSE_ENV)
    folders = ([Path(env).expanduser()] if env else []) + [_DEFAULT_DIR.expanduser()]
    for folder in folders:
        candidate = folder / file
        if candidate.is_file():
            return candidate.resolve()
    url = _URLS[4 if major >= 4 else 3].format(file=file)
    where = f"${CELLPOSE_ENV} ({env})" if env else f"${CELLPOSE_ENV} (not set)"
    raise MissingWeightsError(
        f"Cellpose weights for model {text!r} not found: looked for the file {file!r} in "
        f"{where} and {_DEFAULT_DIR}. stimage never downloads weights: download {url} "
        f"yourself, save it as <folder>/{file} and set {CELLPOSE_ENV}=<folder>, or pass the "
        "file's path as the model (segmenter options model=...)."
    )


class CellposeSegmenter:
    """Nuclei by Cellpose, from local weights only.

    Cellpose 4 (Cellpose-SAM) segments the RGB image as it is; Cellpose 3 models get the
    haematoxylin channel (bright nuclei on a dark background), as the STImage paper did.

    Args:
        model: Path to a weights file or a Cellpose model name (see
            :func:`find_cellpose_weights`).
        diameter_um: Typical nucleus diameter; the image is rescaled by Cellpose so that
            this many µm match the size the model was trained on.
        gpu: Use a GPU when there is one (``None``: whenever torch sees CUDA).
        flow_threshold: Cellpose's flow error threshold.
        cellprob_threshold: Cellpose's cell probability threshold.
        min_area_um2: Smaller masks are dropped.
        batch_size: Cellpose's batch of 256 px patches.

    Raises:
        MissingDependencyError: Cellpose is not installed.
        MissingWeightsError: The weights are not on disk.
    """

    name = "cellpose"

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        diameter_um: float = 8.0,
        gpu: bool | None = None,
        flow_threshold: float = 0.4,
        cellprob_threshold: float = 0.0,
        min_area_um2: float = 10.0,
        batch_size: int = 8,
    ) -> None:
        if not diameter_um > 0:
            raise ConfigError(f"diameter_um must be positive, got {diameter_um!r}")
        if min_area_um2 < 0:
            raise ConfigError(f"min_area_um2 must be >= 0, got {min_area_um2!r}")
        self.weights = find_cellpose_weights(model)
        self.major = _cellpose_major()
        self.diameter_um = float(diameter_um)
        self.gpu = gpu
        self.flow_threshold = float(flow_threshold)
        self.cellprob_threshold = float(cellprob_threshold)
        self.min_area_um2 = float(min_area_um2)
        self.batch_size = int(batch_size)
        self._model: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"CellposeSegmenter(weights={str(self.weights)!r}, cellpose {self.major}.x)"

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                try:
                    from cellpose import models
                except ImportError as e:
                    raise MissingDependencyError(
                        f"Cellpose is installed but cannot be imported ({e}); reinstall it "
                        "with its dependencies:  pip install --force-reinstall 'stimage[cellpose]'"
                    ) from e

                gpu = self.gpu
                if gpu is None:
                    import torch

                    gpu = bool(torch.cuda.is_available())
                # An existing path: Cellpose loads it and downloads nothing.
                self._model = models.CellposeModel(gpu=gpu, pretrained_model=str(self.weights))
                logger.info("loaded Cellpose weights %s (gpu=%s)", self.weights, gpu)
            return self._model

    def segment(self, rgb: np.ndarray, mpp: float) -> np.ndarray:
        """Label the nuclei of an RGB image (``(h, w)`` int32, 0 = background)."""
        from skimage.segmentation import relabel_sequential

        from stimage.explain._classical import _check_rgb
        from stimage.explain._hed import rgb_to_hed

        rgb = _check_rgb(rgb)
        if not (np.isfinite(mpp) and mpp > 0):
            raise ConfigError(f"mpp must be a positive number of µm per pixel, got {mpp!r}")
        model = self._load()
        diameter = self.diameter_um / mpp
        common = {
            "diameter": diameter,
            "flow_threshold": self.flow_threshold,
            "cellprob_threshold": self.cellprob_threshold,
            "batch_size": self.batch_size,
        }
        if self.major >= 4:
            out = model.eval(rgb, channel_axis=2, **common)
        else:
            haem = rgb_to_hed(rgb)[..., 0]
            scale = float(np.percentile(haem, 99.5)) or 1.0
            grey = np.clip(haem / scale * 255.0, 0, 255).astype(np.uint8)
            out = model.eval(grey, channels=[0, 0], **common)
        masks = np.asarray(out[0])
        if masks.shape != rgb.shape[:2]:
            raise ConfigError(
                f"Cellpose returned masks of shape {masks.shape} for an image of {rgb.shape[:2]}"
            )
        labels = masks.astype(np.int32, copy=False)
        area = np.bincount(labels.ravel()) * mpp**2
        drop = area < self.min_area_um2
        drop[0] = True
        labels = np.where(drop[labels], 0, labels)
        return relabel_sequential(labels)[0].astype(np.int32, copy=False)
